//! The machine under the kernel: the console, the clock and timer (`timer.rs`), and
//! power control: through PSCI, reached with `smc` (the firmware's conduit when the
//! kernel owns EL2), or on a board without PSCI (the Raspberry Pi 4) through an
//! emulator's semihosting exit when the command line asks for it.
//!
//! Invariant: the way to power off ([`POWER`]) is set once, at boot, before any
//! other core runs.

use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

use aarch64_cpu::asm::barrier;
use core::fmt::{self, Write as _};

use septum_core::memory::Range;
use septum_core::system::TurnEnd;

use crate::gic::GicBlocks;
use septum_kernel::{Console, Uart};

use crate::timer::Timer;
use crate::uart::Pl011;

use smccc::psci::{PSCI_CPU_ON_64, PSCI_SYSTEM_OFF};

/// The console, the clock and the power switch.
pub struct Board {
    /// The console UART.
    pub console: Console<Pl011>,
    /// The system counter and the EL2 timer.
    pub timer: Timer,
    /// The GIC's register blocks, for each core's own bring-up.
    pub gic: GicBlocks,
    /// Each core's affinity (MPIDR), by core index, to kick it.
    pub mpidrs: heapless::Vec<u64, { septum_core::system::MAX_CPUS }>,
}

impl fmt::Write for Board {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.write_str(s)
    }
}

impl septum_kernel::Machine for Board {
    fn power_off(&mut self, clean: bool) -> ! {
        self.console.0.drain();
        system_off(clean);
        let _ = writeln!(self.console, "no way to power off: halting (clean={clean})");
        self.console.0.drain();
        halt()
    }

    fn now_us(&mut self) -> u64 {
        self.timer.now_us()
    }

    fn set_deadline(&mut self, end: TurnEnd) {
        self.timer.set_deadline(end);
    }

    fn kick(&mut self, cpu: usize) {
        if let Some(&mpidr) = self.mpidrs.get(cpu) {
            crate::gic::kick(mpidr);
        }
    }

    fn receive(&mut self) -> Option<u8> {
        self.console.0.receive()
    }

    fn try_send(&mut self, byte: u8) -> bool {
        self.console.0.try_put(byte)
    }

    /// The kernel drains the PL011's FIFO on its own entries and in idle time; it
    /// does not take the UART's transmit interrupt (QEMU's PL011 never fills).
    fn console_waiting(&mut self, _waiting: bool) {}

    fn code_written(&mut self, range: Range) {
        sync_instruction_cache(range);
    }

    unsafe fn zero_page(&mut self, page: u64) {
        // SAFETY: passed on from the caller: a page of normal RAM, mapped at its
        // physical address, that nothing else uses.
        unsafe { zero_page(page) }
    }
}

/// Zeroes the 4 KiB page at `page` a cache block at a time with `dc zva` (the
/// block size is in DCZID_EL0), or with stores where `dc zva` is prohibited.
///
/// # Safety
///
/// `page` is page-aligned normal RAM, mapped at its physical address, that
/// nothing else uses (`dc zva` on device memory faults).
pub unsafe fn zero_page(page: u64) {
    const PAGE: u64 = 4096;
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    let prohibited = dczid & (1 << 4) != 0;
    let block = 4u64 << (dczid & 0xf);
    if prohibited || block > PAGE {
        // SAFETY: the caller's page, as above.
        unsafe { core::ptr::write_bytes(page as *mut u8, 0, PAGE as usize) };
        return;
    }
    for address in (page..page + PAGE).step_by(block as usize) {
        // SAFETY: `address` is a block-aligned address inside the caller's page
        // (the page is aligned to more than any block size).
        unsafe { asm!("dc zva, {}", in(reg) address, options(nostack)) };
    }
}

/// Makes freshly written code visible to instruction fetch, and to a partition
/// that reads memory with its caches off (Linux at entry): cleans and invalidates
/// the data cache to the point of coherency, then invalidates the instruction
/// cache.
pub fn sync_instruction_cache(range: Range) {
    clean_to_coherency(range);
    // SAFETY: invalidating the instruction cache only forces refetches.
    unsafe { asm!("ic ialluis", options(nostack)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// Cleans and invalidates the data cache over `range` to the point of
/// coherency, so that what the kernel wrote there is in memory and no stale line
/// can later overwrite what a partition writes with its caches off.
pub fn clean_to_coherency(range: Range) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 (cache type) has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut address = range.start & !(line - 1);
    while address < range.end {
        // SAFETY: cleaning and invalidating a line of normal RAM writes any dirty
        // data back first, so memory contents are unchanged; the address is
        // mapped RAM.
        unsafe { asm!("dc civac, {}", in(reg) address, options(nostack)) };
        address += line;
    }
    barrier::dsb(barrier::ISH);
}

/// Asks the firmware to start the core with affinity `mpidr` at `entry`, with `x0`
/// = `context`. Returns the PSCI error code if it refuses.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    let status: u64;
    // SAFETY: PSCI CPU_ON starts another core at `entry` (the kernel's secondary
    // entry point); it reads no memory of ours.
    unsafe {
        asm!("smc #0", inout("x0") u64::from(PSCI_CPU_ON_64) => status, in("x1") mpidr, in("x2") entry, in("x3") context, options(nomem, nostack));
    }
    match status as i64 {
        0 => Ok(()),
        code => Err(code),
    }
}

/// Releases a core waiting on a spin table: writes `entry` to its release
/// address, cleans the line to memory and signals an event.
///
/// # Safety
/// `release` must be the mapped, 8-byte aligned release address of a core that
/// polls it, in memory nothing else uses; `entry` must be where that core may
/// start (a `_spin_table_entries` entry).
pub unsafe fn release_spin_table(release: u64, entry: u64) {
    // SAFETY: per the contract, the word is the core's release address and ours.
    unsafe { (release as *mut u64).write_volatile(entry) };
    // SAFETY: cleaning one cache line by address has no effect on its contents.
    unsafe { asm!("dc civac, {}", in(reg) release, options(nostack)) };
    barrier::dsb(barrier::SY);
    aarch64_cpu::asm::sev();
}

/// How the machine is powered off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PowerOff {
    /// Nothing can: the kernel halts (a Raspberry Pi 4 on the hardware).
    Halt = 0,
    /// PSCI `SYSTEM_OFF` through `smc`.
    Psci = 1,
    /// The semihosting `SYS_EXIT` call (`hlt #0xf000`), which ends an emulator
    /// run with `-semihosting` (the kernel command line's `septum.exit=semihosting`).
    Semihosting = 2,
}

/// The [`PowerOff`] chosen at boot, as its number.
static POWER: AtomicU8 = AtomicU8::new(PowerOff::Halt as u8);

/// Chooses how [`system_off`] powers off (at boot, before other cores run).
pub fn set_power_off(power: PowerOff) {
    POWER.store(power as u8, Ordering::Relaxed);
}

/// Semihosting `SYS_EXIT`.
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: the program ended; the next word is its status.
const APPLICATION_EXIT: u64 = 0x2_0026;

/// Powers the machine off the way chosen at boot, with exit status 0 if `clean`
/// (where the way carries one). Returns only if nothing powered it off.
pub fn system_off(clean: bool) {
    match POWER.load(Ordering::Relaxed) {
        p if p == PowerOff::Psci as u8 => {
            // SAFETY: PSCI SYSTEM_OFF either powers off or returns an error in x0;
            // it reads no memory of ours.
            unsafe {
                asm!("smc #0", inout("x0") u64::from(PSCI_SYSTEM_OFF) => _, options(nomem, nostack))
            };
        }
        p if p == PowerOff::Semihosting as u8 => {
            let block = [APPLICATION_EXIT, u64::from(!clean)];
            // SAFETY: chosen only when the command line says the emulator runs with
            // semihosting, which reads the two-word block at x1 and ends the run.
            unsafe {
                asm!("hlt #0xf000", inout("x0") SYS_EXIT => _, in("x1") block.as_ptr(), options(nostack, readonly))
            };
        }
        _ => {}
    }
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}
