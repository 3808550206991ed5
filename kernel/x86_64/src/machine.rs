//! The machine under the kernel: the COM1 console, the clock, the interrupt
//! controllers and power control.

use core::fmt;

use septum_core::memory::Range;
use septum_core::system::TurnEnd;
use septum_kernel::{Console, Uart};

use crate::acpi::Processors;
use crate::clock::Clock;
use crate::irq::Interrupts;
use crate::serial::{self, Serial};

/// The console, the clock, the interrupt controllers and the power switch of a PC.
pub struct Pc {
    /// The console UART.
    pub console: Console<Serial>,
    /// The calibrated TSC and the preemption timer.
    pub clock: Clock,
    /// The local APIC, the I/O APIC and who owns each device interrupt.
    pub interrupts: Interrupts,
    /// Each core's local APIC id, by core index, to kick it.
    pub processors: Processors,
}

impl fmt::Write for Pc {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.write_str(s)
    }
}

impl septum_kernel::Machine for Pc {
    /// The `@@ kernel shutdown` line already says whether the shutdown was clean.
    fn power_off(&mut self, _clean: bool) -> ! {
        self.console.0.drain();
        serial::power_off()
    }

    fn now_us(&mut self) -> u64 {
        self.clock.now_us()
    }

    fn set_deadline(&mut self, end: TurnEnd) {
        self.clock.set_deadline(end);
    }

    fn kick(&mut self, cpu: usize) {
        if let Some(apic_id) = self.processors.apic_id(cpu) {
            self.interrupts.kick(apic_id);
        }
    }

    fn receive(&mut self) -> Option<u8> {
        self.console.0.receive()
    }

    fn try_send(&mut self, byte: u8) -> bool {
        self.console.0.try_put(byte)
    }

    /// COM1 interrupts (IRQ 4, the kernel's [`crate::irq::CONSOLE_VECTOR`]) when its
    /// transmitter empties, while bytes wait: the exit handler drains the console
    /// then, so output flows at the line's speed whoever runs.
    fn console_waiting(&mut self, waiting: bool) {
        self.console.0.interrupt_when_empty(waiting);
    }

    /// x86 keeps instruction fetch coherent with data writes: nothing to do.
    fn code_written(&mut self, _range: Range) {}

    unsafe fn zero_page(&mut self, page: u64) {
        // SAFETY: passed on from the caller.
        unsafe { zero_page(page) }
    }
}

/// Zeroes the 4 KiB page at `page` with `rep stosq`.
///
/// # Safety
///
/// `page` is page-aligned RAM, mapped at its physical address, that nothing else
/// uses.
pub unsafe fn zero_page(page: u64) {
    // SAFETY: the caller's page: 512 quadwords of RAM that nothing else uses;
    // the direction flag is clear (the kernel never sets it).
    unsafe {
        core::arch::asm!(
            "rep stosq",
            inout("rdi") page => _,
            inout("rcx") 512u64 => _,
            in("rax") 0u64,
            options(nostack, preserves_flags)
        )
    };
}
