//! Septum's aarch64 back end: the kernel image that runs at EL2 on ARMv8-A.
//!
//! Boot, in order (each step finishes before the next begins, so no partition runs
//! before isolation is set up):
//! 1. enable the EL2 MMU over the kernel image and the device tree;
//! 2. read RAM, CPUs, the UART, the GIC and the PSCI conduit from the device tree;
//! 3. map RAM and devices, start the console, print `@@ kernel boot`, bring up the
//!    GIC with only the EL2 timer's interrupt enabled;
//! 4. read the system package appended to the image;
//! 5. for each partition: take RAM from the free pool, scrub it, copy the image, and
//!    build its stage-2 tables (its RAM and nothing else);
//! 6. configure the EL2 traps, then start the service VM, and only it.
#![no_std]
#![no_main]

mod boot;
mod cpu;
mod gic;
mod machine;
mod mmu;
mod platform;
mod stage2;
mod timer;
mod trap;
mod uart;
mod vcpu;
mod vgic;

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    CNTHCTL_EL2, CNTVOFF_EL2, HCR_EL2, MDCR_EL2, MIDR_EL1, Readable, VTCR_EL2, Writeable,
};
use septum_abi::layout::{GICV2_CPU_INTERFACE, PAGE_SIZE, RAM_BASE};
use septum_core::event::Event;
use septum_core::memory::{FreeRanges, Range};
use septum_core::package::{Package, Profile};

use septum_kernel::arena::{BootArena, reserve_bytes};
use septum_kernel::self_test::{STRAY_PAGE, SelfTest};
use septum_kernel::table_check;
use septum_kernel::{Console, Kernel, Uart};

use crate::boot::TrapFrame;
use crate::gic::Gic;
use crate::machine::Board;
use crate::platform::MachineInfo;
use crate::stage2::Stage2;
use crate::timer::Timer;
use crate::trap::KERNEL;
use crate::uart::Pl011;
use crate::vcpu::{Space, Vcpu};

/// Partition RAM is placed on 2 MiB boundaries so stage 2 can use block mappings.
const PARTITION_ALIGN: u64 = 2 << 20;

/// MDCR_EL2 trap bits: PMU (TPM, TPMCR) and debug registers (TDA, TDOSA, TDRA).
const MDCR_TRAPS: u64 = (1 << 6) | (1 << 5) | (1 << 9) | (1 << 10) | (1 << 11);
/// CPTR_EL2: RES1 bits, trace (TTA) and CPACR (TCPAC) trapped, FP/SIMD not trapped
/// (the kernel switches the FP registers itself).
const CPTR_VALUE: u64 = 0x33ff | (1 << 20) | (1 << 31);

/// Where the kernel's state is built at boot (see `septum_kernel::arena`).
#[global_allocator]
static ARENA: BootArena = BootArena::new();

/// The console's base address, for the panic handler.
static PANIC_CONSOLE: AtomicU64 = AtomicU64::new(0);
/// The log channel's base address (0: the board has none), written once at boot
/// before other cores run.
static LOG_CHANNEL: AtomicU64 = AtomicU64::new(0);

defmt::timestamp!("{=u64:us}", timer::counter_us());

/// Sends the kernel log's bytes on the log channel (see `septum_kernel::log`).
fn send_log(bytes: &[u8]) {
    let base = LOG_CHANNEL.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: `kernel_main` set this PL011 up and mapped it as a device; the
    // kernel log's lock makes the caller its only user while it sends.
    let mut channel = unsafe { Pl011::set_up(base) };
    for &byte in bytes {
        channel.put(byte);
    }
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Called by `_start` with the device tree's address.
extern "C" fn kernel_main(device_tree: u64) -> ! {
    let image_start = &raw const __kernel_start as u64;
    let image_end = &raw const __kernel_end as u64;
    // SAFETY: the Image header sits at __kernel_start; the loader wrote it and
    // nothing writes it afterwards.
    let claimed_end = image_start + unsafe { claimed_image_size(image_start) };
    let stacks_start = claimed_end - cpu::STACKS_BYTES;
    cpu::set_stacks_start(stacks_start);
    let image = Range {
        start: image_start,
        end: claimed_end,
    };
    // SAFETY: first thing at boot, MMU off, on the boot CPU with interrupts masked;
    // the kernel image (code, data, package and stacks) and the device tree are
    // mapped normal, except the stacks' guard pages, which hold nothing: each is
    // the lowest page of a stack, and the boot stack in use is far above its own.
    unsafe {
        mmu::enable(
            &[
                image,
                Range {
                    start: device_tree,
                    end: device_tree + 1,
                },
            ],
            &cpu::guard_pages(stacks_start),
        )
    };

    // SAFETY: QEMU and Linux-style loaders pass the device tree's address in x0, and
    // its gigabyte is mapped above.
    let Ok(info) = (unsafe { MachineInfo::from_device_tree(device_tree, image_start) }) else {
        // No console is known without a device tree: all we can do is stop.
        machine::halt()
    };
    // SAFETY: still in single-threaded start-up; RAM is normal memory, the UART and
    // GIC are devices.
    unsafe {
        mmu::map(info.ram, false);
        mmu::map(info.uart, true);
        if let Some(log) = info.log_uart {
            mmu::map(log, true);
        }
        for block in info.gic.kernel_blocks() {
            mmu::map(block, true);
        }
    }
    machine::set_power_off(info.power);
    PANIC_CONSOLE.store(info.uart.start, Ordering::Relaxed);
    if let Some(log) = info.log_uart {
        // SAFETY: the device tree names this PL011 (another than the console's)
        // and it is mapped as a device; only the kernel log uses it.
        unsafe { Pl011::new(log.start) };
        LOG_CHANNEL.store(log.start, Ordering::Relaxed);
        // SAFETY: boot, on the boot core; no other core runs yet.
        unsafe { septum_kernel::log::attach(send_log, cpu::index) };
    }
    defmt::info!(
        "boot arch=aarch64 board={=str} ram={=u64} cpus={=u32} log-channel={=bool}",
        info.board,
        info.ram.size(),
        info.cpus,
        info.log_uart.is_some()
    );
    // SAFETY: the device tree names this PL011 and it is now mapped as a device; the
    // kernel is its only user.
    let mut console = Console(unsafe { Pl011::new(info.uart.start) });
    let _ = writeln!(
        console,
        "{}",
        Event::KernelBoot {
            arch: "aarch64",
            board: info.board,
            ram: info.ram.size(),
            cpus: info.cpus
        }
    );
    if let Some(test) = info.self_test {
        let _ = writeln!(console, "{}", Event::KernelSelfTest { name: test.name() });
        // The fault's report reprograms the UART: what is in its FIFO goes first.
        console.0.drain();
        match test {
            SelfTest::StackOverflow => {
                septum_kernel::self_test::overflow_the_stack(0);
            }
            // Applied below, once the partitions' tables are built.
            SelfTest::TableCorruption => {}
            // The x86 local APIC's; nothing to do here.
            SelfTest::X2apicHandoff => {}
        }
    }
    let timer = Timer::new();
    // SAFETY: the device tree names these GIC blocks and they are mapped as
    // devices above; the kernel is their only user; this is single-threaded boot
    // with every interrupt masked.
    let gic = unsafe { Gic::init(info.gic) };
    gic.and_then(|gic| enable_private_interrupts(&gic))
        .unwrap_or_else(|error| panic!("GIC initialisation failed: {error:?}"));

    // SAFETY: the host tool appends the package at __kernel_end; it lies in RAM
    // mapped above. Its header is read first and the length it gives is bounded by
    // the RAM bank before the whole package is read.
    let package = unsafe { find_package(image_end, info.ram) };
    let package = match package.map(Package::parse) {
        Some(Ok(package)) => package,
        Some(Err(error)) => panic!("system package rejected: {error:?}"),
        None => panic!("no system package after the kernel image"),
    };
    assert!(
        image_end + package.byte_len() as u64 <= stacks_start,
        "the Image header's image_size leaves no room for the package and the stacks"
    );
    assert!(
        info.ram.start <= image_start && claimed_end <= info.ram.end,
        "the kernel image ({image_start:#x}..{claimed_end:#x}) is not inside RAM {:#x}..{:#x}",
        info.ram.start,
        info.ram.end
    );
    let _ = writeln!(
        console,
        "{}",
        Event::KernelSystem {
            partitions: package.len()
        }
    );

    // RAM below the kernel is free, except what the boot firmware leaves there
    // for later (the spin table the other cores wait in); the boot loader's own
    // code (QEMU's stub at the bank's start) ran before the kernel and is dead.
    let mut frames = FreeRanges::<32>::new();
    let carved = frames
        .add(info.ram)
        .and_then(|()| frames.remove(image))
        .and_then(|()| frames.remove(info.blob))
        .and_then(|()| {
            info.spin_table()
                .map_or(Ok(()), |table| frames.remove(table))
        });
    carved.expect("RAM bank split into too many pieces");

    let fixed = septum_kernel::claim_fixed_placements(&package, &mut frames);
    let arena = reserve_bytes(&package, size_of::<Vcpu>(), size_of::<Space>());
    ARENA.give(
        frames
            .allocate(arena, PAGE_SIZE)
            .expect("RAM for the kernel's state"),
    );
    let mut table_checks = heapless::Vec::<_, { septum_core::package::MAX_PARTITIONS }>::new();
    let (system, spaces, vcpus) = septum_kernel::load_partitions(
        &package,
        &fixed,
        &mut frames,
        PARTITION_ALIGN,
        &mut console,
        machine::zero_page,
        |index, spec, placement, frames| {
            if spec.profile == Profile::Linux {
                // Linux starts with its MMU and caches off, reading memory
                // non-cacheably: its RAM (image, device tree, initrd, the
                // scrubbed rest) must be in memory, not only in the caches.
                machine::clean_to_coherency(placement.host_ram);
            }
            machine::sync_instruction_cache(placement.image);
            let mut tables = Stage2::new(frames).expect("RAM for stage-2 tables");
            let mut grants = septum_kernel::map_grants(
                &mut tables,
                frames,
                spec,
                placement,
                stage2::RAM,
                stage2::DEVICE,
            );
            if let Some(interface) = info.gic.partition_cpu_interface()
                && spec.profile != Profile::Linux
            {
                grants.push(map_virtual_cpu_interface(&mut tables, frames, interface));
            }
            if info.self_test == Some(SelfTest::TableCorruption) && index + 1 == package.len() {
                let stray = Range::from_start_size(STRAY_PAGE, PAGE_SIZE).expect("one page");
                tables
                    .map(frames, stray, placement.host_ram.start, stage2::RAM)
                    .expect("the stray page of the table-corruption self-test");
            }
            let _ = table_checks.push(table_check::check(&tables, &grants));
            let vmid = u8::try_from(index + 1).expect("at most MAX_PARTITIONS partitions");
            let vcpus = (0..spec.resources.vcpu_cores().len())
                .map(|index| {
                    let start = vcpu::Start {
                        entry: RAM_BASE + spec.entry_offset,
                        ram_size: spec.kept_ram(),
                        argument: spec.argument,
                        index,
                        linux: spec.profile == Profile::Linux,
                    };
                    Vcpu::new(start)
                })
                .collect();
            (
                Space::new(tables, vmid, !spec.resources.devirtualize),
                vcpus,
            )
        },
    );
    septum_kernel::report_table_checks(&package, &table_checks, &mut console);
    let output = septum_kernel::console_output(&mut frames);
    let trace = septum_kernel::trace::trace_rings(&mut frames, info.cpus as usize);
    ARENA.close_and_report(&mut console);
    configure_el2_traps();

    let board = Board {
        console,
        timer,
        gic: info.gic,
        mpidrs: info.mpidrs.clone(),
    };
    let mut first = TrapFrame::default();
    let cpu = cpu::index();
    let step = KERNEL.init(
        cpu,
        Kernel::new(system, spaces, vcpus, board, package, output, trace),
        |kernel| kernel.start(&mut first),
    );
    route_device_interrupts(&package, &info);
    start_secondaries(&info);
    KERNEL.until_runnable(cpu, step, &mut first, trap::idle);
    // SAFETY: `first` holds a complete register state for the service VM, whose EL1
    // state, stage-2 tables and VMID `start` has loaded.
    unsafe { boot::enter_partition(&first) }
}

/// Maps a GICv2's virtual CPU interface (`interface`, the GICV block) into a
/// native partition's stage-2 tables at [`GICV2_CPU_INTERFACE`], as device
/// memory: its GIC driver acknowledges and ends there the interrupts the kernel
/// puts in its list registers. Returns the grant for the boot self-test.
fn map_virtual_cpu_interface<const N: usize>(
    tables: &mut Stage2,
    frames: &mut FreeRanges<N>,
    interface: Range,
) -> table_check::Grant {
    let guest = Range::from_start_size(GICV2_CPU_INTERFACE, interface.size())
        .expect("the ABI's fixed window");
    tables
        .map(frames, guest, interface.start, stage2::DEVICE)
        .expect("stage-2 mapping of the virtual CPU interface");
    table_check::Grant {
        guest,
        host: interface.start,
        attributes: stage2::DEVICE,
    }
}

/// Gives each partition the interrupts of its granted devices: the owner table for
/// the kernel, and a route in the distributor to the partition's core.
fn route_device_interrupts(package: &Package<'_>, info: &MachineInfo) {
    for (partition, spec) in package.partitions().enumerate() {
        // vCPU 0 takes its partition's device interrupts.
        let core = usize::from(spec.resources.vcpu_cores()[0]);
        let Some(&mpidr) = info.mpidrs.get(core) else {
            panic!(
                "partition {} is pinned to core {core}, which this machine lacks",
                spec.name
            )
        };
        for &pinned in spec.resources.vcpu_cores() {
            assert!(
                usize::from(pinned) < info.started_cpus,
                "partition {} is pinned to core {pinned}, which the command line's maxcpus={} leaves off",
                spec.name,
                info.started_cpus
            );
        }
        for &intid in spec.resources.irqs() {
            vgic::set_owner(intid, partition);
            // SAFETY: the distributor was initialised above and is mapped; boot is
            // single-threaded until the secondaries start.
            unsafe { gic::route_spi(info.gic, intid, mpidr) }
                .unwrap_or_else(|e| panic!("cannot route INTID {intid} to {}: {e:?}", spec.name));
        }
    }
}

/// Starts every other core the device tree lists (up to
/// [`septum_core::system::MAX_CPUS`], and to the command line's `maxcpus=<n>`)
/// at `_secondary_start` with its index: with
/// PSCI CPU_ON, or for a core with a spin table (the Raspberry Pi 4) by writing
/// its entry in `_spin_table_entries` to its release address.
fn start_secondaries(info: &MachineInfo) {
    mmu::publish_for_secondaries();
    unsafe extern "C" {
        fn _secondary_start();
        fn _spin_table_entries();
    }
    let entry = _secondary_start as *const () as u64;
    let spin_entries = _spin_table_entries as *const () as u64;
    let started = info.mpidrs.iter().take(info.started_cpus);
    for (index, &mpidr) in started.enumerate().skip(1) {
        if info.power == machine::PowerOff::Psci {
            if let Err(code) = machine::cpu_on(mpidr, entry, index as u64) {
                panic!("PSCI could not start core {index} (MPIDR {mpidr:#x}): {code}");
            }
        } else if let Some(Some(release)) = info.release_addrs.get(index) {
            assert!(
                info.ram.start <= *release && *release < claimed_kernel_start(),
                "core {index}'s release address {release:#x} is not in the RAM below the kernel"
            );
            let entry = spin_entries + index as u64 * boot::SPIN_TABLE_ENTRY_BYTES;
            // SAFETY: the release address is the word the firmware's spin loop
            // of this core polls, in the RAM below the kernel that no partition
            // is given (checked above); the core, with its MMU and caches off,
            // reads it from memory, so it is cleaned there before the event.
            unsafe { machine::release_spin_table(*release, entry) };
        }
    }
}

/// Where the kernel image starts: everything below it is reserved at boot.
fn claimed_kernel_start() -> u64 {
    &raw const __kernel_start as u64
}

/// A secondary core, after `_secondary_start` has given it a stack and the kernel's
/// address space: configures its own EL2 controls, GIC redistributor and timer,
/// then runs the partitions pinned to it.
extern "C" fn secondary_main(index: u64) -> ! {
    let cpu = index as usize;
    configure_el2_traps();
    let blocks = KERNEL.with(cpu, |kernel| kernel.machine.gic);
    // SAFETY: the boot core initialised the GIC with these blocks and mapped
    // them; this is the core's own bring-up, once, with interrupts masked.
    let gic = unsafe { Gic::init_this_core(blocks) };
    gic.and_then(|gic| enable_private_interrupts(&gic))
        .unwrap_or_else(|error| panic!("GIC initialisation failed on core {cpu}: {error:?}"));
    timer::disable();
    let mut frame = TrapFrame::default();
    let step = KERNEL.with(cpu, |kernel| {
        kernel.log(Event::KernelCpuUp { cpu });
        kernel.resume(cpu, &mut frame)
    });
    KERNEL.until_runnable(cpu, step, &mut frame, trap::idle);
    // SAFETY: `frame` holds the registers of a partition pinned to this core, whose
    // EL1 state, stage-2 tables and VMID `resume` has loaded.
    unsafe { boot::enter_partition(&frame) }
}

/// The arm64 Image header's `image_size`: code, data, the appended package and
/// the per-core stacks.
///
/// # Safety
/// `head` must be the address of the kernel's Image header.
unsafe fn claimed_image_size(head: u64) -> u64 {
    // SAFETY: per the contract, the header's aligned image_size field is readable.
    unsafe { ((head + boot::IMAGE_SIZE_OFFSET) as *const u64).read_volatile() }
}

/// Finds the system package at `at`, if its header is there; returns the bytes from
/// `at` to the length the header gives, bounded by `ram`.
///
/// # Safety
/// `at` must lie in `ram`, which must be mapped and readable.
unsafe fn find_package(at: u64, ram: Range) -> Option<&'static [u8]> {
    const HEADER: usize = 32;
    let available = ram.end.checked_sub(at)? as usize;
    // SAFETY: `at..ram.end` is mapped RAM per the caller's contract.
    let window = unsafe { core::slice::from_raw_parts(at as *const u8, available) };
    let header = window.get(..HEADER)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[16..24]);
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    window.get(..len)
}

/// Enables the private interrupts the kernel takes on each core: its timer, the
/// kick, the virtual timer (delivered to the partition whose vCPU it belongs to)
/// and the GIC's maintenance interrupt (list registers have room).
fn enable_private_interrupts(gic: &Gic) -> Result<(), gic::GicError> {
    [
        timer::INTID,
        gic::KICK,
        septum_abi::virt::VTIMER_INTID,
        vgic::MAINTENANCE,
    ]
    .into_iter()
    .try_for_each(|intid| gic.enable_private(intid))
}

/// Sets the EL2 controls that confine every partition (see the constants above).
fn configure_el2_traps() {
    HCR_EL2.set(vcpu::HCR_NATIVE);
    let counters = MDCR_EL2.get() & 0x1f; // keep HPMN: partitions see no PMU anyway
    MDCR_EL2.set(counters | MDCR_TRAPS);
    // SAFETY: CPTR_EL2 controls traps of lower ELs (and EL2 FP use, left enabled).
    unsafe { core::arch::asm!("msr cptr_el2, {}", in(reg) CPTR_VALUE, options(nostack)) };
    // EL1 may read the physical counter but not program the physical timer.
    CNTHCTL_EL2.set(1);
    CNTVOFF_EL2.set(0);
    VTCR_EL2.set(stage2::vtcr());
    // SAFETY: VPIDR_EL2 is what partitions read as MIDR_EL1; the real value is fine.
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) MIDR_EL1.get(), options(nostack)) };
    barrier::isb(barrier::SY);
    // SAFETY: invalidates stale EL1&0 translations of every VMID; no memory effect.
    unsafe { core::arch::asm!("tlbi alle1is", options(nostack)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// Writes `event` on the console as the kernel stops (for a fault in the kernel
/// itself), behind the back of the console object, which may be held.
pub fn report_on_stop(event: Event<'_>) {
    let base = PANIC_CONSOLE.load(Ordering::Relaxed);
    if base != 0 {
        // SAFETY: the kernel is about to stop; writing the UART directly is the
        // only way left to report why.
        let mut console = Console(unsafe { Pl011::new(base) });
        let _ = writeln!(console, "{event}");
        console.0.drain();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let base = PANIC_CONSOLE.load(Ordering::Relaxed);
    if base != 0 {
        // SAFETY: the kernel is about to stop; writing the UART behind the back of
        // the console object is the only way left to report why.
        let mut console = Console(unsafe { Pl011::new(base) });
        // The console may have been in the middle of a line, whose rest is lost
        // with the console object: the report starts on a line of its own.
        let _ = writeln!(console);
        let _ = writeln!(console, "kernel panic: {info}");
        let _ = writeln!(console, "{}", Event::KernelPanic);
        console.0.drain();
    }
    defmt::error!("panic: {}", defmt::Display2Format(info));
    machine::system_off(false);
    machine::halt()
}
