//! What the firmware's device tree says about the machine: RAM, CPUs, the console
//! UART, the interrupt controller and the PSCI conduit. Nothing here is hard-coded;
//! a device tree that lacks something the kernel needs is a boot error.

use fdt::Fdt;
use septum_core::memory::Range;
use septum_kernel::self_test::SelfTest;

/// The machine as the device tree describes it.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// The first RAM bank.
    pub ram: Range,
    /// Number of CPU nodes.
    pub cpus: u32,
    /// The affinity (MPIDR) of each CPU, in device-tree order, for as many as the
    /// kernel runs on.
    pub mpidrs: heapless::Vec<u64, { septum_core::system::MAX_CPUS }>,
    /// The PL011 console's register block.
    pub uart: Range,
    /// The log channel's register block: the PL011 the device tree's
    /// `serial1` alias names, if it is another one (QEMU `virt` has it when
    /// given a second `-serial`).
    pub log_uart: Option<Range>,
    /// The GICv3 distributor and redistributor register blocks.
    pub gic: [Range; 2],
    /// Whether PSCI is reached with `smc` (the only conduit usable from EL2).
    pub psci_smc: bool,
    /// Where the device tree blob itself lies, so it is not handed out as free RAM.
    pub blob: Range,
    /// The self-test the command line (`/chosen/bootargs`) asks for, if any.
    pub self_test: Option<SelfTest>,
}

/// Why the device tree could not be used.
#[derive(Clone, Copy, Debug)]
pub enum DtbError {
    /// No valid device tree at the address in x0.
    Invalid,
    /// The device tree has no memory node.
    NoMemory,
    /// No `arm,pl011` node with registers.
    NoUart,
    /// No `arm,gic-v3` node with two register blocks.
    NoGic,
}

impl MachineInfo {
    /// Reads the device tree at `address`.
    ///
    /// # Safety
    /// `address` must point at readable memory holding a device tree blob (or at
    /// least a header whose checks fail), mapped in the kernel's address space.
    pub unsafe fn from_device_tree(address: u64) -> Result<MachineInfo, DtbError> {
        // SAFETY: the caller guarantees the blob is mapped and readable; `from_ptr`
        // validates the header before reading further.
        let fdt = unsafe { Fdt::from_ptr(address as *const u8) }.map_err(|_| DtbError::Invalid)?;
        let bank = fdt.memory().regions().next().ok_or(DtbError::NoMemory)?;
        let ram = region(bank.starting_address as u64, bank.size).ok_or(DtbError::NoMemory)?;
        let uart = fdt
            .find_compatible(&["arm,pl011"])
            .and_then(|node| node.reg()?.next())
            .and_then(|r| region(r.starting_address as u64, r.size))
            .ok_or(DtbError::NoUart)?;
        let log_uart = fdt
            .aliases()
            .and_then(|aliases| aliases.resolve_node("serial1"))
            .filter(|node| {
                node.compatible()
                    .is_some_and(|compatible| compatible.all().any(|c| c == "arm,pl011"))
            })
            .and_then(|node| node.reg()?.next())
            .and_then(|r| region(r.starting_address as u64, r.size))
            .filter(|log| *log != uart);
        let mut gic_regs = fdt
            .find_compatible(&["arm,gic-v3"])
            .and_then(|node| node.reg())
            .ok_or(DtbError::NoGic)?
            .filter_map(|r| region(r.starting_address as u64, r.size));
        let gic = [
            gic_regs.next().ok_or(DtbError::NoGic)?,
            gic_regs.next().ok_or(DtbError::NoGic)?,
        ];
        let psci_smc = fdt
            .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
            .and_then(|node| node.property("method"))
            .and_then(|method| method.as_str())
            .is_some_and(|method| method == "smc");
        let cpus = fdt.cpus().count() as u32;
        let mut mpidrs = heapless::Vec::new();
        for cpu in fdt.cpus() {
            if mpidrs.push(cpu.ids().first() as u64).is_err() {
                break;
            }
        }
        let blob =
            Range::from_start_size(address, fdt.total_size() as u64).ok_or(DtbError::Invalid)?;
        let self_test = fdt
            .find_node("/chosen")
            .and_then(|chosen| chosen.property("bootargs"))
            .and_then(|bootargs| bootargs.as_str())
            .and_then(SelfTest::from_command_line);
        Ok(MachineInfo {
            ram,
            cpus,
            mpidrs,
            uart,
            log_uart,
            gic,
            psci_smc,
            blob,
            self_test,
        })
    }
}

fn region(start: u64, size: Option<usize>) -> Option<Range> {
    Range::from_start_size(start, size? as u64)
}
