//! EPT invalidation on every core: what relocation needs when it changes the
//! EPT of a partition that runs on another core meanwhile.
//!
//! INVEPT acts on the core that executes it only (unlike aarch64's broadcast
//! TLBI). Relocation runs in the service VM's calls on its core while the
//! devirtualizable partition keeps running on its own, so a page write-protected
//! or remapped there must also be dropped from the other core's TLB before the
//! move goes on, or the partition would go on writing the old frame.
//!
//! Each core publishes the EPT pointer of the VMCS it is about to enter
//! ([`entering`]), and 0 again as soon as it leaves the guest ([`exited`]). A
//! flush ([`flush_everywhere`]) runs INVEPT here, leaves a request in every
//! other core's slot, and for each core that is in a guest of that EPT sends it
//! a kick and waits until that core has run the INVEPT itself; a core not in
//! such a guest runs it before its next entry. Each side stores its own slot
//! before it reads the other's (sequentially consistent), so of a core
//! entering and a flush at the same moment, at least one sees the other: no
//! core enters with stale translations, and no flush waits for a core that
//! will not exit.
//!
//! The waiting core holds the kernel; the core it waits for serves the request
//! on its exit path before it asks for the kernel, and a core in a guest exits
//! on the kick (external-interrupt exiting is always on), so the wait ends.
//!
//! Only relocation flushes this way, and a system has at most one
//! devirtualizable partition, so a request slot only ever holds its EPT. A
//! system without one has no relocation: the cores then skip their slots
//! ([`enable`] is never called), so their exits and entries pay one load.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use septum_core::resources::MAX_CPUS;

use crate::local_apic;
use crate::vmx::{self, field};

/// One core's slots.
struct Core {
    /// The EPT pointer of the guest it runs now; 0 while it is in the kernel.
    in_guest: AtomicU64,
    /// An EPT pointer whose translations it must drop before it enters a
    /// guest again; 0 when none.
    request: AtomicU64,
    /// Its local APIC id, for the kick.
    apic_id: AtomicU32,
}

static CORES: [Core; MAX_CPUS] = [const {
    Core {
        in_guest: AtomicU64::new(0),
        request: AtomicU64::new(0),
        apic_id: AtomicU32::new(0),
    }
}; MAX_CPUS];

/// Whether the cores keep their slots: set once at boot, before any core
/// enters a guest, when the system has a devirtualizable partition.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// At boot, before the other cores start: the cores keep their slots from now
/// on, and core `cpu`'s local APIC id is `apic_ids(cpu)` for each `cpu` below
/// `cores`.
pub fn enable(cores: usize, apic_ids: impl Fn(usize) -> u32) {
    for (cpu, core) in CORES.iter().enumerate().take(cores) {
        core.apic_id.store(apic_ids(cpu), SeqCst);
    }
    ENABLED.store(true, SeqCst);
}

/// Core `cpu` is about to enter the guest of its current VMCS: publishes its
/// EPT pointer, then serves a request left for it.
pub fn entering(cpu: usize) {
    if !ENABLED.load(Relaxed) {
        return;
    }
    CORES[cpu]
        .in_guest
        .store(vmx::read(field::EPT_POINTER), SeqCst);
    serve(cpu);
}

/// Core `cpu` has left its guest: publishes that, then serves a request left
/// for it (the one a kick that made it exit waits for).
pub fn exited(cpu: usize) {
    if !ENABLED.load(Relaxed) {
        return;
    }
    CORES[cpu].in_guest.store(0, SeqCst);
    serve(cpu);
}

fn serve(cpu: usize) {
    let eptp = CORES[cpu].request.load(SeqCst);
    if eptp != 0 {
        vmx::invept(eptp);
        CORES[cpu].request.store(0, SeqCst);
    }
}

/// Drops the translations derived from `eptp` on core `cpu` (this one) and on
/// every other core, waiting for each core that runs a guest of `eptp` now.
/// Only once [`enable`]d.
pub fn flush_everywhere(cpu: usize, eptp: u64) {
    assert!(
        ENABLED.load(Relaxed),
        "a cross-core flush without relocation"
    );
    vmx::invept(eptp);
    for (other, core) in CORES.iter().enumerate() {
        if other == cpu {
            continue;
        }
        core.request.store(eptp, SeqCst);
        if core.in_guest.load(SeqCst) == eptp {
            local_apic::send_command(
                core.apic_id.load(SeqCst),
                u32::from(crate::irq::KICK_VECTOR),
            );
            while core.request.load(SeqCst) != 0 {
                core::hint::spin_loop();
            }
        }
    }
}
