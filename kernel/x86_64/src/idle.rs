//! The idle wait: a core with nothing to run sleeps in HLT until its deadline
//! (the local APIC timer in TSC-deadline mode) or an interrupt, and never polls
//! or takes the kernel lock while asleep.
//!
//! The kernel runs with interrupts disabled (IF = 0) everywhere but in one place:
//! the `sti; hlt; cli` of [`halt`]. An interrupt is taken there through the IDT,
//! by a stub per vector (0x20 to 0xff) that records the vector in the core's own
//! set ([`TAKEN`]), ends it at the local APIC (all but the spurious vector, which
//! has no end) and returns to the `cli` after the `hlt`. The wait then looks at
//! what was taken, with interrupts disabled again:
//! - [`KICK_VECTOR`]: another core kicked this one; the wait ends at once
//!   ([`Woken::Kicked`]);
//! - [`TIMER_VECTOR`]: the deadline came (the TSC says so);
//! - any other vector (a partition's device interrupt, the console's): handed
//!   to the caller, which makes it pending in its owner's vCPU or drains the
//!   console under the kernel lock, as the VM-exit path does for an interrupt
//!   acknowledged on exit; the wait goes on.
//!
//! Why HLT and not MWAIT: MWAIT with its interrupt-break extension (ECX bit 0)
//! could wake with IF = 0, but the local APIC has no register that acknowledges
//! an interrupt (unlike the GIC's IAR), so the interrupt would still have to be
//! taken through the IDT with IF = 1; MWAIT would add a monitored line and
//! nothing else. HLT after STI is atomic for this purpose: STI enables
//! interrupts only after the next instruction starts, so an interrupt (a kick)
//! that arrives between the last check and the HLT is pending, and wakes the HLT
//! at once instead of being slept through.
//!
//! Invariants:
//! - interrupts are enabled only inside [`halt`]; so the stubs interrupt only a
//!   `hlt`, on the stack of the core's idle wait, and never kernel code holding
//!   the kernel lock or a half-written structure;
//! - only core `n` writes or reads `TAKEN[n]` (the stubs record on the core that
//!   took the interrupt, the wait reads on the same core with interrupts off);
//! - the deadline timer is armed only during a wait, and disarmed before it
//!   returns; one that fired meanwhile is only recorded (on a later VM exit it is
//!   ended and belongs to nobody, see `irq.rs`).

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use septum_core::system::MAX_CPUS;
use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

use crate::cpu;
use crate::irq::{KICK_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::local_apic;

/// The first vector an interrupt can have (0 to 31 are exceptions).
const FIRST_VECTOR: usize = 32;
/// Bytes between two interrupt stubs (`.balign` in the assembly).
const STUB_BYTES: u64 = 16;

/// A set of interrupt vectors, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vectors([u64; 4]);

impl Vectors {
    /// Whether `vector` is in the set.
    pub fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector / 64)] & (1 << (vector % 64)) != 0
    }

    /// Takes `vector` out of the set.
    fn remove(&mut self, vector: u8) {
        self.0[usize::from(vector / 64)] &= !(1 << (vector % 64));
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The vectors in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..=u8::MAX).filter(move |&vector| self.contains(vector))
    }
}

/// Per core: the vectors taken since its wait last looked.
static TAKEN: [[AtomicU64; 4]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 4] }; MAX_CPUS];

// One stub per vector from 32 to 255, each `STUB_BYTES` long: push the vector and
// go to the common part, which saves the registers a call may change, calls
// `interrupt_taken` and returns from the interrupt. The CPU has aligned RSP to 16
// bytes before pushing its 5-quadword frame; with the vector and 9 registers, one
// more quadword keeps the call aligned.
global_asm!(
    ".balign 16",
    ".global idle_interrupt_stubs",
    "idle_interrupt_stubs:",
    ".set vector, 32",
    ".rept 224",
    "    .balign 16",
    "    push vector",
    "    jmp idle_interrupt_common",
    "    .set vector, vector + 1",
    ".endr",
    "idle_interrupt_common:",
    "    push rax",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    mov rdi, [rsp + 72]",
    "    sub rsp, 8",
    "    call {taken}",
    "    add rsp, 8",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rax",
    "    add rsp, 8",
    "    iretq",
    taken = sym interrupt_taken,
);

unsafe extern "C" {
    fn idle_interrupt_stubs();
}

/// Called by the stubs, with interrupts disabled, for an interrupt taken in
/// [`halt`]: records it for this core's wait and ends it at the local APIC.
extern "C" fn interrupt_taken(vector: u64) {
    let vector = vector as u8;
    TAKEN[cpu::index()][usize::from(vector / 64)].fetch_or(1 << (vector % 64), Ordering::Relaxed);
    if vector != SPURIOUS_VECTOR {
        local_apic::end_of_interrupt();
    }
}

/// Points IDT vectors 32 to 255 at their stubs.
pub fn install(idt: &mut InterruptDescriptorTable) {
    let base = idle_interrupt_stubs as *const () as u64;
    for (index, vector) in (FIRST_VECTOR..=255).enumerate() {
        let stub = VirtAddr::new(base + index as u64 * STUB_BYTES);
        // SAFETY: the address is vector `vector`'s stub above (they are
        // `STUB_BYTES` apart, from vector 32), which takes an interrupt without
        // an error code, as every vector from 32 is, and returns with IRETQ
        // after restoring every register it changed.
        unsafe { idt[vector as u8].set_handler_addr(stub) };
    }
}

/// Sleeps until an interrupt comes (one already pending wakes it at once), takes
/// it (and any other that comes before interrupts are disabled again), and
/// returns what this core took since the last call.
fn halt() -> Vectors {
    // SAFETY: `sti` enables interrupts only after `hlt` has started, so an
    // interrupt pending before it ends the `hlt` instead of being missed. The
    // IDT has a stub for every interrupt vector, which preserves every register
    // and the flags (IRETQ) and uses only the stack below RSP: nothing here is
    // changed behind the compiler's back. Interrupts are off again after `cli`.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    let core = &TAKEN[cpu::index()];
    let mut taken = Vectors::default();
    for (word, bits) in taken.0.iter_mut().zip(core) {
        *word = bits.swap(0, Ordering::Relaxed);
    }
    taken
}

/// Why a wait ended, and the device interrupts it took.
pub struct Wait {
    /// Another core kicked this one.
    pub kicked: bool,
    /// Interrupts for the kernel to hand on (not the kick, the timer or the
    /// spurious vector).
    pub taken: Vectors,
}

/// Sleeps until the TSC reaches `until_tsc` (`u64::MAX`: no deadline), a kick,
/// or an interrupt for the kernel to hand on, whichever comes first.
pub fn wait(until_tsc: u64) -> Wait {
    let deadline = until_tsc != u64::MAX;
    if deadline {
        local_apic::arm_deadline(until_tsc);
    }
    let mut taken = Vectors::default();
    while taken.is_empty() && crate::clock::tsc() < until_tsc {
        taken = halt();
        taken.remove(TIMER_VECTOR);
        taken.remove(SPURIOUS_VECTOR);
    }
    if deadline {
        local_apic::disarm_deadline();
    }
    let kicked = taken.contains(KICK_VECTOR);
    taken.remove(KICK_VECTOR);
    Wait { kicked, taken }
}
