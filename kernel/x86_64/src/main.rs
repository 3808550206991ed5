//! Septum's x86_64 back end: the kernel that runs in VMX root operation with
//! Intel VT-x, loaded by GRUB (multiboot2).
//!
//! Boot, in order (each step finishes before the next begins, so no partition runs
//! before isolation is set up):
//! 1. the 32-bit entry switches to long mode with an identity map of 4 GiB;
//! 2. the COM1 console, the kernel's GDT, TSS and IDT; the 8259 PICs masked;
//!    the local APIC enabled and every I/O APIC input masked;
//! 3. RAM from the multiboot2 memory map, the processors from the ACPI MADT
//!    (through the loader's copy of the RSDP where it gave one, as GRUB does on
//!    UEFI), `@@ kernel boot`, the system package from the GRUB module named
//!    `system`;
//! 4. VT-x checks (every VMX control the kernel needs) and VMXON, and the
//!    TSC-deadline timer's check; on a machine without them the kernel says so
//!    (`@@ kernel unsupported`) and powers off before anything is placed or runs;
//!    the TSC calibrated;
//! 5. the other cores started (`smp.rs`): each sets itself up, enters VMX root
//!    operation and waits;
//! 6. for each partition: take RAM from the free pool, scrub it, copy the image,
//!    build its boot page tables (a devirtualizable partition's at their
//!    guest-physical address, identity, claimed before anything else) and EPT
//!    (its RAM and nothing else), write its VMCS
//!    for the core it is pinned to; route its granted IRQ lines to that core in the
//!    I/O APIC (see `irq.rs`);
//! 7. start the service VM, and only it, on the boot core; then let the other cores
//!    run the partitions pinned to them.
#![no_std]
#![no_main]

mod acpi;
mod boot;
mod clock;
mod cpu;
mod ept;
mod exit;
mod idle;
mod irq;
mod local_apic;
mod machine;
mod mmio;
mod serial;
mod shootdown;
mod smp;
mod stacks;
mod vcpu;
mod vmx;

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};
use septum_abi::layout::RAM_BASE;
use septum_core::event::Event;
use septum_core::memory::{FreeRanges, Range};
use septum_core::package::Package;
use septum_core::resources::Ports;
use septum_kernel::arena::{BootArena, reserve_bytes};
use septum_kernel::paging::PAGE;
use septum_kernel::self_test::{STRAY_PAGE, SelfTest};
use septum_kernel::table_check::{self, Grant};
use septum_kernel::{Console, Kernel, Uart};
use x86_64::instructions::port::Port;

use crate::boot::GuestRegisters;
use crate::clock::Clock;
use crate::ept::Ept;
use crate::exit::KERNEL;
use crate::irq::Interrupts;
use crate::machine::Pc;
use crate::serial::Serial;
use crate::vcpu::{Bitmaps, Host, Space, Start, Vcpu};
use crate::vmx::Page;

/// The board this build targets, as `@@ kernel boot` reports it.
const BOARD: &str = "pc";
/// The index of the core the loader started (the boot processor).
const BOOT_CPU: usize = 0;
/// What GRUB puts in EAX for a multiboot2 boot.
const MULTIBOOT2_MAGIC: u64 = 0x36d7_6289;
/// The GRUB module that carries the system package (its command line).
const PACKAGE_MODULE: &str = "system";
/// Partition RAM is placed on 2 MiB boundaries so EPT can use large pages.
const PARTITION_ALIGN: u64 = 2 << 20;
/// The boot page tables map the first 4 GiB; RAM above is not used yet.
const MAPPED_LIMIT: u64 = 1 << 32;
/// Low memory holds the BIOS data and GRUB's structures; the kernel leaves it alone.
const LOW_MEMORY: u64 = 1 << 20;

static MSR_BITMAP: Page = Page::zeroed();
/// The MSR bitmap of a partition while it runs natively: all zeros, no MSR exits.
static NATIVE_MSR_BITMAP: Page = Page::zeroed();

/// Where the kernel's state is built at boot (see `septum_kernel::arena`).
#[global_allocator]
static ARENA: BootArena = BootArena::new();

/// Set once the console is programmed, for the panic handler.
static CONSOLE_READY: AtomicBool = AtomicBool::new(false);

/// The log channel: Bochs' port 0xE9 (its `port_e9_hack`), which reads back
/// 0xE9 where it exists. No partition is granted it.
const LOG_PORT: u16 = 0xe9;
/// TSC ticks per µs for the log's timestamps (0 until the clock is calibrated),
/// written once at boot before other cores run.
static LOG_TICKS_PER_US: AtomicU64 = AtomicU64::new(0);

defmt::timestamp!(
    "{=u64:us}",
    clock::tsc()
        .checked_div(LOG_TICKS_PER_US.load(Ordering::Relaxed))
        .unwrap_or(0)
);

/// Sends the kernel log's bytes on the log channel (see `septum_kernel::log`).
fn send_log(bytes: &[u8]) {
    let mut port = Port::<u8>::new(LOG_PORT);
    for &byte in bytes {
        // SAFETY: port 0xE9 is the log channel, which only the kernel's log
        // writes (under its lock); writing it has no other effect.
        unsafe { port.write(byte) };
    }
}

/// Whether the log channel exists: Bochs' port 0xE9 reads back 0xE9.
fn log_channel_present() -> bool {
    // SAFETY: reading port 0xE9 has no side effects (nothing else is there on a
    // PC; Bochs answers 0xE9).
    unsafe { Port::<u8>::new(LOG_PORT).read() == 0xe9 }
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Called by the 64-bit entry with the multiboot2 magic and boot information.
extern "C" fn kernel_main(magic: u64, boot_information: u64) -> ! {
    // SAFETY: first thing at boot; nothing else uses COM1.
    let mut console = Console(unsafe { Serial::com1() });
    CONSOLE_READY.store(true, Ordering::Relaxed);
    // SAFETY: masking every line of both 8259 PICs stops legacy interrupts; the
    // kernel uses none.
    unsafe {
        Port::<u8>::new(0x21).write(0xff);
        Port::<u8>::new(0xa1).write(0xff);
    }
    // SAFETY: once, at boot, on the boot core, interrupts disabled.
    let selectors = unsafe { cpu::init(BOOT_CPU) };
    // SAFETY: once, on the boot core, interrupts disabled, before the other cores
    // start, with the boot page tables in CR3; the guard pages are the lowest page
    // of each stack, and the boot stack in use is far above its own.
    unsafe { stacks::unmap_guard_pages() };
    assert!(
        magic == MULTIBOOT2_MAGIC,
        "not booted by a multiboot2 loader (magic {magic:#x})"
    );
    // SAFETY: the loader passed the address of its boot information, which lies in
    // the identity-mapped first 4 GiB; `load` checks its header.
    let info = unsafe { BootInformation::load(boot_information as *const BootInformationHeader) }
        .expect("valid multiboot2 boot information");
    let command_line = info.command_line_tag().and_then(|tag| tag.cmdline().ok());
    let self_test = command_line.and_then(SelfTest::from_command_line);
    // The `x2apic-handoff` self-test leaves the local APIC as some firmware does.
    // SAFETY: on the boot core, at boot, interrupts disabled, before the kernel
    // takes the local APIC.
    let x2apic_entered =
        self_test == Some(SelfTest::X2apicHandoff) && unsafe { local_apic::enter_x2apic_mode() };
    // SAFETY: once, at boot, interrupts disabled; the boot page tables identity-map
    // the first 4 GiB, the local APIC and I/O APIC included, and only this object
    // uses them.
    let (mut interrupts, handoff) = unsafe { Interrupts::init() };

    let mut frames = FreeRanges::<32>::new();
    let mut ram_bytes = 0;
    let mut trampoline_free = false;
    let trampoline = Range::from_start_size(smp::TRAMPOLINE, PAGE).expect("fixed range");
    let areas = info.memory_map_tag().expect("a memory map from the loader");
    for area in areas.memory_areas() {
        if area.typ() != MemoryAreaType::Available {
            continue;
        }
        ram_bytes += area.size();
        trampoline_free |=
            area.start_address() <= trampoline.start && trampoline.end <= area.end_address();
        let usable = Range {
            start: area.start_address().max(LOW_MEMORY),
            end: area.end_address().min(MAPPED_LIMIT),
        };
        if !usable.is_empty() {
            frames.add(usable).expect("memory map fits the free list");
        }
    }
    // SAFETY: at boot; the boot page tables identity-map the first 4 GiB, which
    // hold the BIOS area and the ACPI tables.
    let processors = unsafe { acpi::processors(interrupts.boot_apic_id(), acpi_root(&info)) };
    let _ = writeln!(
        console,
        "{}",
        Event::KernelBoot {
            arch: "x86_64",
            board: BOARD,
            ram: ram_bytes,
            cpus: processors.count() as u32
        }
    );
    if handoff != local_apic::Handoff::Xapic {
        let _ = writeln!(
            console,
            "{}",
            Event::KernelApicHandoff {
                found: handoff.found(),
                mode: handoff.mode(),
            }
        );
    }
    if let Some(test) = self_test {
        let _ = writeln!(console, "{}", Event::KernelSelfTest { name: test.name() });
        // The fault's report reprograms the UART: what is in its FIFO goes first.
        console.0.drain();
        match test {
            SelfTest::StackOverflow => {
                septum_kernel::self_test::overflow_the_stack(0);
            }
            // Applied below, once the partitions' tables are built.
            SelfTest::TableCorruption => {}
            // Applied above, before the kernel took the local APIC.
            SelfTest::X2apicHandoff if x2apic_entered => {}
            SelfTest::X2apicHandoff => {
                let _ = writeln!(console, "septum: this processor has no x2APIC mode");
            }
        }
    }

    let module = info
        .module_tags()
        .find(|m| m.cmdline().is_ok_and(|c| c.trim() == PACKAGE_MODULE))
        .expect("a GRUB module named `system` holding the system package");
    let module_range = Range {
        start: u64::from(module.start_address()),
        end: u64::from(module.end_address()),
    };
    // SAFETY: GRUB loaded the module there, in RAM below 4 GiB (identity-mapped); the
    // kernel reserves the range below and never writes it.
    let bytes = unsafe {
        core::slice::from_raw_parts(
            module_range.start as *const u8,
            module_range.size() as usize,
        )
    };
    let package =
        Package::parse(bytes).unwrap_or_else(|e| panic!("system package rejected: {e:?}"));
    let _ = writeln!(
        console,
        "{}",
        Event::KernelSystem {
            partitions: package.len()
        }
    );

    let image = Range {
        start: &raw const __kernel_start as u64,
        end: &raw const __kernel_end as u64,
    };
    let info_range = Range::from_start_size(boot_information, info.total_size() as u64)
        .expect("boot information");
    for reserved in [image, module_range, info_range] {
        frames.remove(reserved).expect("free list has room");
    }

    // SAFETY: once, on the boot core, interrupts disabled.
    if let Err(error) = unsafe { vmx::enable(BOOT_CPU) }.and_then(|()| vcpu::check_controls()) {
        stop_unsupported(
            &mut console,
            "vt-x",
            error.reason(),
            format_args!(
                "{error}; it needs Intel VT-x with EPT, enabled in the firmware's settings"
            ),
        );
    }
    if !local_apic::has_tsc_deadline() {
        stop_unsupported(
            &mut console,
            "tsc-deadline",
            "absent",
            format_args!("its local APIC timer has no TSC-deadline mode"),
        );
    }
    // SAFETY: once, at boot, interrupts off; nothing else uses the PIT.
    let clock = unsafe { Clock::calibrate() };
    LOG_TICKS_PER_US.store(clock.ticks_per_us(), Ordering::Relaxed);
    let log_channel = log_channel_present();
    if log_channel {
        // SAFETY: boot, on the boot core (its per-core data is set up, so
        // `cpu::index` works); no other core runs yet.
        unsafe { septum_kernel::log::attach(send_log, cpu::index) };
    }
    defmt::info!(
        "boot arch=x86_64 board={=str} ram={=u64} cpus={=u32} log-channel={=bool}",
        BOARD,
        ram_bytes,
        processors.count() as u32,
        log_channel
    );
    if package.partitions().any(|spec| spec.resources.devirtualize) {
        shootdown::enable(processors.count(), |cpu| {
            processors.apic_id(cpu).expect("counted")
        });
    }
    if processors.count() > 1 {
        assert!(
            trampoline_free && !trampoline.overlaps(&module_range),
            "the page at {:#x} for starting the other cores is not free RAM",
            trampoline.start
        );
        // SAFETY: once, at boot, on the boot core, after its set-up above; the
        // trampoline page is free RAM (checked), below the RAM the kernel hands out.
        unsafe { smp::start_secondaries(&interrupts, &processors, &clock) };
    }
    // SAFETY: the MSR bitmap is the kernel's; no VMCS uses it yet. All ones: every
    // MSR access by a partition exits.
    unsafe { core::ptr::write_bytes(MSR_BITMAP.address() as *mut u8, 0xff, PAGE as usize) };
    let host = |cpu: usize| Host {
        selectors,
        tables: cpu::table_addresses(cpu),
        gs_base: cpu::per_cpu_address(cpu),
        stack_top: boot::trap_stack_top(cpu),
        exit_entry: boot::vm_exit_entry as *const () as u64,
    };

    let fixed = septum_kernel::claim_fixed_placements(&package, &mut frames);
    let identity_tables = claim_identity_boot_tables(&package, &mut frames);
    let arena = reserve_bytes(&package, size_of::<Vcpu>(), size_of::<Space>());
    ARENA.give(
        frames
            .allocate(arena, PAGE)
            .expect("RAM for the kernel's state"),
    );
    let mut vpids = 1u16..;
    let mut table_checks = heapless::Vec::<_, { septum_core::package::MAX_PARTITIONS }>::new();
    let (system, spaces, vcpus) = septum_kernel::load_partitions(
        &package,
        &fixed,
        &mut frames,
        PARTITION_ALIGN,
        &mut console,
        machine::zero_page,
        |index, spec, placement, frames| {
            let mut ept = Ept::new(frames).expect("RAM for EPT tables");
            let mut grants =
                septum_kernel::map_grants(&mut ept, frames, spec, placement, ept::RAM, ept::DEVICE);
            let tables = if spec.resources.devirtualize {
                identity_tables.expect("claimed for the devirtualizable partition")
            } else {
                frames
                    .allocate(vcpu::BOOT_TABLE_PAGES * PAGE, PAGE)
                    .expect("RAM for boot page tables")
                    .start
            };
            write_boot_page_tables(tables);
            let guest_tables =
                Range::from_start_size(vcpu::BOOT_TABLES, vcpu::BOOT_TABLE_PAGES * PAGE)
                    .expect("fixed range");
            ept.map(frames, guest_tables, tables, ept::READ_ONLY)
                .expect("EPT mapping of the boot page tables");
            grants.push(Grant {
                guest: guest_tables,
                host: tables,
                attributes: ept::READ_ONLY,
            });
            if self_test == Some(SelfTest::TableCorruption) && index + 1 == package.len() {
                let stray = Range::from_start_size(STRAY_PAGE, PAGE).expect("one page");
                ept.map(frames, stray, placement.host_ram.start, ept::RAM)
                    .expect("the stray page of the table-corruption self-test");
            }
            let _ = table_checks.push(table_check::check(&ept, &grants));
            let space = Space::new(ept, !spec.resources.devirtualize);
            let apic_id = |core: u8| {
                processors.apic_id(usize::from(core)).unwrap_or_else(|| {
                    panic!(
                        "partition {} has a vCPU on core {core}, which this machine lacks",
                        spec.name
                    )
                })
            };
            // vCPU 0 takes the partition's device interrupts.
            let cores = spec.resources.vcpu_cores();
            for &line in spec.resources.irqs() {
                interrupts.route(line, index, spec.name, apic_id(cores[0]));
            }
            let (io_a, io_b) = io_bitmaps(frames, spec.resources.ports());
            let bitmaps = Bitmaps {
                io_a,
                io_b,
                msr: MSR_BITMAP.address(),
                msr_native: NATIVE_MSR_BITMAP.address(),
            };
            let vcpus = cores
                .iter()
                .map(|&core| {
                    apic_id(core);
                    let start = Start {
                        entry: RAM_BASE + spec.entry_offset,
                        ram_size: spec.kept_ram(),
                        argument: spec.argument,
                        vpid: vpids.next().expect("at most MAX_SYSTEM_VCPUS vCPUs"),
                    };
                    let host = host(usize::from(core));
                    Vcpu::new(frames, &space, start, &bitmaps, &host).expect("RAM for a VMCS")
                })
                .collect();
            (space, vcpus)
        },
    );
    septum_kernel::report_table_checks(&package, &table_checks, &mut console);

    let output = septum_kernel::console_output(&mut frames);
    let trace = septum_kernel::trace::trace_rings(&mut frames, processors.count());
    ARENA.close_and_report(&mut console);
    interrupts.route_console(interrupts.boot_apic_id());
    let mut first = GuestRegisters::default();
    let pc = Pc {
        console,
        clock,
        interrupts,
        processors,
    };
    let run = KERNEL.init(
        BOOT_CPU,
        Kernel::new(system, spaces, vcpus, pc, package, output, trace),
        |kernel| kernel.start(&mut first),
    );
    smp::release();
    exit::until_runnable(BOOT_CPU, run, &mut first);
    // SAFETY: `first` holds the registers of a partition pinned to this core (the
    // service VM first), whose VMCS is current here.
    unsafe { boot::enter_partition(&first, boot::trap_stack_top(BOOT_CPU)) }
}

/// The ACPI root table from the loader's copy of the RSDP (multiboot2's ACPI
/// tags, the ACPI 2.0 one first), if it gave one whose checksums hold. GRUB gives
/// them on UEFI and BIOS machines alike; on UEFI they are the only way to the
/// tables.
fn acpi_root(info: &BootInformation) -> Option<acpi::Root> {
    let xsdt = info
        .rsdp_v2_tag()
        .filter(|tag| tag.checksum_is_valid() && tag.xsdt_address() != 0)
        .map(|tag| acpi::Root::Xsdt(tag.xsdt_address() as u64));
    xsdt.or_else(|| {
        info.rsdp_v1_tag()
            .filter(|tag| tag.checksum_is_valid())
            .map(|tag| acpi::Root::Rsdt(tag.rsdt_address() as u64))
    })
}

/// Stops on a machine that lacks what the kernel needs (`need`: VT-x that it can
/// use, or the TSC-deadline timer): `why` in a line for a person, the `@@ kernel
/// unsupported` line, then power-off. Nothing has been started.
fn stop_unsupported(
    console: &mut Console<Serial>,
    need: &str,
    reason: &str,
    why: core::fmt::Arguments<'_>,
) -> ! {
    let _ = writeln!(console, "septum: this machine cannot run Septum: {why}");
    let _ = writeln!(console, "{}", Event::KernelUnsupported { need, reason });
    console.0.drain();
    serial::power_off()
}

/// Builds a partition's I/O bitmaps (A for ports 0 to 0x7fff, B for the rest) in two
/// kernel frames: every port exits to the kernel except those of `granted`.
fn io_bitmaps<const N: usize>(frames: &mut FreeRanges<N>, granted: &[Ports]) -> (u64, u64) {
    let pages = frames
        .allocate(2 * PAGE, PAGE)
        .expect("RAM for I/O bitmaps");
    let mut bits = [0xffu8; 2 * PAGE as usize];
    for range in granted {
        for port in range.first..=range.first + (range.count - 1) {
            bits[usize::from(port / 8)] &= !(1 << (port % 8));
        }
    }
    // SAFETY: the two pages were free and are now this partition's bitmaps alone;
    // identity mapped and page-aligned.
    unsafe { core::ptr::copy_nonoverlapping(bits.as_ptr(), pages.start as *mut u8, bits.len()) };
    (pages.start, pages.start + PAGE)
}

/// Takes the machine frames at [`vcpu::BOOT_TABLES`] out of `frames` for the
/// devirtualizable partition's boot page tables, if the package has one: they
/// are placed identity like its RAM, because while it runs natively its CR3
/// names machine memory (see `vcpu::write_translation_mode`). Also checks that
/// the processor can run it natively. Panics if either fails: this runs at
/// boot, before the kernel takes memory for itself, and such a system cannot
/// start.
fn claim_identity_boot_tables<const N: usize>(
    package: &Package<'_>,
    frames: &mut FreeRanges<N>,
) -> Option<u64> {
    let spec = package
        .partitions()
        .find(|spec| spec.resources.devirtualize)?;
    if let Err(why) = vcpu::check_native_mode() {
        panic!(
            "partition {} is devirtualizable, but it cannot run natively: {why}",
            spec.name
        );
    }
    let wanted = Range::from_start_size(vcpu::BOOT_TABLES, vcpu::BOOT_TABLE_PAGES * PAGE)
        .expect("fixed range");
    let tables = frames.take(wanted).unwrap_or_else(|e| {
        panic!(
            "the boot page tables of devirtualizable partition {} need machine RAM at {:#x}, which is not free: {e:?}",
            spec.name, wanted.start
        )
    });
    Some(tables.start)
}

/// Builds a partition's boot page tables in the [`vcpu::BOOT_TABLE_PAGES`] kernel
/// frames at `pages`: a PML4, a PDPT and four page directories of 2 MiB pages that
/// identity-map guest-physical 0 to 4 GiB. Whether an address is reachable is EPT's
/// decision, not these tables' (but for a devirtualizable partition while it runs
/// natively). The entries are guest-physical addresses (the tables sit at
/// [`vcpu::BOOT_TABLES`]) with the accessed and dirty bits preset, so the page
/// walk never writes them.
fn write_boot_page_tables(pages: u64) {
    const PRESENT_WRITABLE_ACCESSED: u64 = 0b1 | 0b10 | (1 << 5);
    const LARGE_DIRTY: u64 = (1 << 7) | (1 << 6);
    const DIRECTORIES: usize = 4;
    let mut entries = [[0u64; 512]; 2 + DIRECTORIES];
    let table = |index: usize| vcpu::BOOT_TABLES + index as u64 * PAGE;
    entries[0][0] = table(1) | PRESENT_WRITABLE_ACCESSED;
    for directory in 0..DIRECTORIES {
        entries[1][directory] = table(2 + directory) | PRESENT_WRITABLE_ACCESSED;
        for (index, entry) in entries[2 + directory].iter_mut().enumerate() {
            let address = ((directory * 512 + index) as u64) << 21;
            *entry = address | PRESENT_WRITABLE_ACCESSED | LARGE_DIRTY;
        }
    }
    // SAFETY: the pages were free and are now these tables alone; identity mapped
    // and page-aligned.
    unsafe {
        core::ptr::copy_nonoverlapping(entries.as_ptr(), pages as *mut [u64; 512], entries.len())
    };
}

/// Writes `event` on the console as the kernel stops (for a fault in the kernel
/// itself), behind the back of the console object, which may be held.
pub fn report_on_stop(event: Event<'_>) {
    if CONSOLE_READY.load(Ordering::Relaxed) {
        // SAFETY: the kernel is about to stop; reprogramming and writing COM1
        // behind the back of the console object is the only way left to report.
        let mut console = Console(unsafe { Serial::com1() });
        let _ = writeln!(console, "{event}");
        console.0.drain();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if CONSOLE_READY.load(Ordering::Relaxed) {
        // SAFETY: the kernel is about to stop; reprogramming and writing COM1 behind
        // the back of the console object is the only way left to report why.
        let mut console = Console(unsafe { Serial::com1() });
        // The console may have been in the middle of a line, whose rest is lost
        // with the console object: the report starts on a line of its own.
        let _ = writeln!(console);
        let _ = writeln!(console, "kernel panic: {info}");
        let _ = writeln!(console, "{}", Event::KernelPanic);
        console.0.drain();
    }
    defmt::error!("panic: {}", defmt::Display2Format(info));
    serial::power_off()
}
