//! The device tree of a Linux partition, generated from its description: the
//! virtual machine of [`septum_core::abi::virt`] as Linux reads it. The kernel
//! itself parses no device tree and writes none; this one is part of the
//! partition's image.
//!
//! Nodes: the root (`linux,dummy-virt`, 64-bit addresses and sizes, the GIC as
//! interrupt parent), `memory@...` (the partition's RAM at [`RAM_BASE`]), `cpus`
//! (one `cpu@n` per vCPU, `reg` its MPIDR affinity, started by PSCI), `psci`
//! (1.0, through `hvc`), the GICv3 (distributor, then one redistributor region of
//! one frame pair per vCPU; no ITS), `timer` (the four architected timer PPIs,
//! level-high), the SBSA UART (with the `current-speed` Linux's driver needs, as
//! it has no clock), one `virtio_mmio@...` per virtio device the partition has
//! (its window of [`WINDOW_STRIDE`] bytes and its SPI, level-high; DMA-coherent,
//! as its queues are in the partition's cacheable RAM) and `chosen` (command
//! line, console, initrd range).

use std::ops::Range;

use septum_core::abi::layout::RAM_BASE;
use septum_core::abi::vcpu_mpidr;
use septum_core::abi::virt::{TIMER_PPIS, UART_SPI};
use septum_core::abi::virtio::{Device, WINDOW_STRIDE};
use vm_fdt::FdtWriter;

use super::EmulatedWindows;

/// What the device tree says about a partition.
pub(crate) struct Guest<'a> {
    /// Its vCPUs (1 to `MAX_VCPUS`).
    pub vcpus: usize,
    /// Bytes of its RAM, from [`RAM_BASE`].
    pub ram: u64,
    /// The kernel command line: no NUL (the `linux` rule).
    pub bootargs: &'a str,
    /// The initrd's guest-physical range.
    pub initrd: Range<u64>,
    /// The virtio devices the kernel emulates for it.
    pub virtio: &'a [Device],
}

/// The GIC's phandle, the only one in the tree.
const GIC_PHANDLE: u32 = 1;
/// Interrupt specifier: a shared peripheral interrupt, then a private one.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// Interrupt specifier flags: level-sensitive, active high.
const IRQ_LEVEL_HIGH: u32 = 4;
/// The MPIDR's affinity fields 0 to 2, which a `cpu` node's `reg` holds.
const MPIDR_AFFINITY: u64 = 0x00ff_ffff;
/// The baud rate the UART reports (an emulated UART has no real one).
const UART_BAUD: u32 = 115_200;

/// The device tree blob of `guest`.
pub(crate) fn device_tree(guest: &Guest<'_>) -> Vec<u8> {
    write(guest).expect("fixed node and property names, and bootargs without NUL")
}

fn write(guest: &Guest<'_>) -> Result<Vec<u8>, vm_fdt::Error> {
    let windows = EmulatedWindows::for_vcpus(guest.vcpus);
    let reg = |range: &Range<u64>| [range.start, range.end - range.start];
    let uart_node = format!("pl011@{:x}", windows.uart.start);
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let memory = fdt.begin_node(&format!("memory@{RAM_BASE:x}"))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[RAM_BASE, guest.ram])?;
    fdt.end_node(memory)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for index in 0..guest.vcpus {
        let affinity =
            u32::try_from(vcpu_mpidr(index) & MPIDR_AFFINITY).expect("24 bits of affinity");
        let cpu = fdt.begin_node(&format!("cpu@{affinity:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_u32("reg", affinity)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let gic = fdt.begin_node(&format!("intc@{:x}", windows.distributor.start))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    let mut gic_reg = reg(&windows.distributor).to_vec();
    gic_reg.extend(reg(&windows.redistributors));
    fdt.property_array_u64("reg", &gic_reg)?;
    fdt.property_u32("#redistributor-regions", 1)?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(gic)?;

    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    let interrupts: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|&ppi| [GIC_PPI, ppi, IRQ_LEVEL_HIGH])
        .collect();
    fdt.property_array_u32("interrupts", &interrupts)?;
    fdt.end_node(timer)?;

    let uart = fdt.begin_node(&uart_node)?;
    fdt.property_string("compatible", "arm,sbsa-uart")?;
    fdt.property_array_u64("reg", &reg(&windows.uart))?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, UART_SPI, IRQ_LEVEL_HIGH])?;
    fdt.property_u32("current-speed", UART_BAUD)?;
    fdt.end_node(uart)?;

    for device in guest.virtio {
        let node = fdt.begin_node(&format!("virtio_mmio@{:x}", device.window()))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[device.window(), WINDOW_STRIDE])?;
        fdt.property_array_u32("interrupts", &[GIC_SPI, device.spi(), IRQ_LEVEL_HIGH])?;
        fdt.property_null("dma-coherent")?;
        fdt.end_node(node)?;
    }

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", guest.bootargs)?;
    fdt.property_string("stdout-path", &format!("/{uart_node}"))?;
    fdt.property_u64("linux,initrd-start", guest.initrd.start)?;
    fdt.property_u64("linux,initrd-end", guest.initrd.end)?;
    fdt.end_node(chosen)?;

    fdt.end_node(root)?;
    fdt.finish()
}
