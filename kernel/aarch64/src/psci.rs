//! Power control through PSCI, reached with `smc` (the firmware's conduit when the
//! kernel owns EL2).

use core::arch::asm;

const SYSTEM_OFF: u64 = 0x8400_0008;

/// Asks the firmware to power the machine off. Returns only if the firmware refuses.
pub fn system_off() {
    // SAFETY: PSCI SYSTEM_OFF either powers off or returns an error in x0; it reads
    // no memory of ours.
    unsafe { asm!("smc #0", inout("x0") SYSTEM_OFF => _, options(nomem, nostack)) };
}

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}
