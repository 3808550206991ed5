//! The virtual GICv3 of a Linux partition: the state of every interrupt the
//! partition can see, and the choice of what goes into its vCPUs' list registers.
//!
//! One [`Vgic`] belongs to one partition. The kernel traps the partition's
//! accesses to its distributor and redistributor windows (`septum_abi::virt`) and
//! hands them to [`Vgic::distributor`] and [`Vgic::redistributor`] (decoded in
//! `vgic/registers.rs`); it raises interrupts for the partition with
//! [`Vgic::raise`] (virtual timer, emulated devices) and [`Vgic::send_sgi`] (a
//! trapped `ICC_SGI1R_EL1` write); and before it enters a vCPU that
//! [`Vgic::wants_refill`], it lets [`Vgic::refill`] fill that vCPU's list
//! registers. The guest then takes, acknowledges and completes those interrupts
//! through the hardware's virtual CPU interface (`ICV_*`) without the kernel. The
//! list registers' bit layout is the back end's: the core sees [`ListEntry`].
//!
//! **The GIC it is.** GICv3 with affinity routing always on (`ARE` reads as one),
//! one security state (`DS` reads as one), no LPIs, no ITS, no message-based
//! SPIs. INTIDs 0-15 are SGIs and 16-31 PPIs, private to each vCPU and programmed
//! through its redistributor; then [`SPIS`] shared peripheral interrupts from
//! [`SPI_BASE`], programmed through the distributor, whose copies of the private
//! interrupts' registers read as zero. Choices where the architecture leaves room:
//! - every interrupt is group 1 (`IGROUPR` reads as ones and ignores writes;
//!   `GICD_CTLR.EnableGrp0` reads as zero), and `GICD_CTLR.EnableGrp1` gates all
//!   delivery, private interrupts included;
//! - no 1-of-N routing (`GICD_TYPER.No1N`): an SPI goes to the vCPU whose
//!   affinity its `IROUTER` names, or to vCPU 0 when it names none;
//! - the model keeps no line levels: `ICFGR` is stored and read back, and every
//!   interrupt is latched pending when raised; the back end raises a
//!   level-sensitive source again while it still asserts it (the virtual timer
//!   after the guest completes it);
//! - what a list register holds is the hardware's: `ISACTIVER` reports only the
//!   active state the guest set through it, and `ICPENDR`, `ICENABLER` and
//!   `ICACTIVER` do not reach into list registers; an interrupt that is pending
//!   and active in the model is held back, as the architecture holds it;
//! - a list register is never taken back for a more urgent interrupt: that one
//!   waits for a free entry (the back end asks for a maintenance interrupt);
//! - `GICR_WAKER.ProcessorSleep` only changes what `GICR_WAKER` reads.
//!
//! **SPIs in flight.** An SPI placed in vCPU `v`'s list registers is *held* by
//! `v` until a refill of `v` finds it gone from them; while held it is delivered
//! only to `v` (folded into its entry if it is pending again), whatever its
//! `IROUTER` now says, as a GIC finishes an active interrupt where it is. A
//! change of route takes effect once the interrupt has left. A vCPU that stops
//! gives its list registers back with [`Vgic::take_back`].
//!
//! Invariants (property-tested in `vgic/properties.rs`):
//! - an SPI is held by at most one vCPU, and a vCPU's list registers receive
//!   only its own private interrupts and the SPIs routed to it or held by it;
//! - [`Vgic::refill`] never places an INTID that a valid entry already holds and
//!   never changes an entry that holds a hardware-linked interrupt; what it places
//!   or folds into an entry is no longer pending in the model;
//! - nothing here names another partition; the state is fixed-size, so nothing
//!   allocates and every operation is bounded by the list registers and the
//!   [`INTIDS`] bits.

mod registers;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

use septum_abi::virt::{SPI_BASE, SPIS};
use septum_abi::{MAX_VCPUS, vcpu_mpidr};

pub use registers::{Access, Emulated, Refused};

/// INTIDs the model implements: the private ones, then the SPIs.
pub const INTIDS: u32 = SPI_BASE + SPIS;
/// SGIs: INTIDs 0-15 of each vCPU.
const SGIS: u32 = 16;

// The banks below keep SPIs in one `u64` and the private interrupts below
// `SPI_BASE`; an `IntidSet` holds every INTID.
const _: () = assert!(SPI_BASE == 32 && SPIS.is_multiple_of(32) && SPIS <= 64);

/// A set of INTIDs below [`INTIDS`]: bit n is INTID n.
type IntidSet = u128;

/// One list register, as the back end decoded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// The virtual INTID.
    pub intid: u32,
    /// Its priority (lower is more urgent).
    pub priority: u8,
    /// Its state.
    pub state: ListState,
    /// Linked to a physical interrupt (a passthrough device's): never changed here.
    pub hardware: bool,
}

impl ListEntry {
    /// A free list register.
    pub const FREE: ListEntry = ListEntry {
        intid: 0,
        priority: 0,
        state: ListState::Invalid,
        hardware: false,
    };
}

/// The state of a list register's interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListState {
    /// Free.
    Invalid,
    /// Waiting for the guest to acknowledge it.
    Pending,
    /// Acknowledged, not yet completed.
    Active,
    /// Acknowledged, and pending again.
    PendingActive,
}

/// The state of the interrupts that share a home (one vCPU's private ones, or
/// the SPIs): bit n of each set, and `priority[n]`, for its n-th interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bank {
    enabled: u64,
    pending: u64,
    /// Active as the guest set it through `ISACTIVER` (see the module doc).
    active: u64,
    /// Edge-triggered (`ICFGR`'s `Int_config[1]`); level-sensitive otherwise.
    edge: u64,
    priority: [u8; 64],
}

impl Bank {
    /// Reset: nothing enabled, pending or active, priority 0, the interrupts in
    /// `edge` edge-triggered.
    const fn reset(edge: u64) -> Bank {
        Bank {
            enabled: 0,
            pending: 0,
            active: 0,
            edge,
            priority: [0; 64],
        }
    }

    /// Pending, enabled and not active: what may go to a list register.
    fn deliverable(&self) -> u64 {
        self.pending & self.enabled & !self.active
    }
}

/// Where an interrupt's state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Home {
    /// vCPU n's private interrupts (bank bit = INTID).
    Private(usize),
    /// The SPIs (bank bit = INTID - [`SPI_BASE`]).
    Shared,
}

/// One vCPU's redistributor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Redistributor {
    private: Bank,
    /// `GICR_WAKER.ProcessorSleep`.
    asleep: bool,
    /// The SPIs this vCPU holds (bit n = SPI n; see "SPIs in flight").
    held_spis: u64,
}

/// The affinity fields of an MPIDR (Aff3 at bits 39:32, Aff2, Aff1, Aff0 at
/// 23:0), which `GICD_IROUTER` shares.
const AFFINITY_FIELDS: u64 = 0xff_00ff_ffff;

/// vCPU `vcpu`'s affinity in the MPIDR layout.
fn affinity(vcpu: usize) -> u64 {
    vcpu_mpidr(vcpu) & AFFINITY_FIELDS
}

/// The emulated GICv3 of one partition (see the module doc). A `vcpu`
/// argument is one of the partition's vCPUs, an index below the count given to
/// [`Vgic::new`]: [`Vgic::raise`] and [`Vgic::send_sgi`] ignore any other, the
/// rest may panic on one past [`MAX_VCPUS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vgic {
    vcpus: usize,
    /// `GICD_CTLR.EnableGrp1`.
    enabled: bool,
    spis: Bank,
    /// Each SPI's `GICD_IROUTER`, as written, masked to [`AFFINITY_FIELDS`].
    routers: [u64; SPIS as usize],
    /// `routed[v]`: the SPIs whose router sends them to vCPU `v`. Derived from
    /// `routers`; [`Vgic::route`] writes both.
    routed: [u64; MAX_VCPUS],
    redistributors: [Redistributor; MAX_VCPUS],
}

impl Vgic {
    /// The GIC of a partition with `vcpus` vCPUs (1 to [`MAX_VCPUS`]), in its
    /// reset state.
    pub fn new(vcpus: usize) -> Vgic {
        assert!(
            (1..=MAX_VCPUS).contains(&vcpus),
            "a partition has 1 to MAX_VCPUS vCPUs"
        );
        let redistributor = Redistributor {
            private: Bank::reset((1 << SGIS) - 1),
            asleep: true,
            held_spis: 0,
        };
        let mut vgic = Vgic {
            vcpus,
            enabled: false,
            spis: Bank::reset(0),
            routers: [0; SPIS as usize],
            routed: [0; MAX_VCPUS],
            redistributors: [redistributor; MAX_VCPUS],
        };
        for spi in 0..SPIS as usize {
            vgic.route(spi, 0);
        }
        vgic
    }

    /// Back to the reset state, as when the partition restarts: the distributor
    /// disabled, every interrupt disabled, not pending and not active, priorities
    /// 0, SPIs routed to vCPU 0, every redistributor asleep, nothing held.
    pub fn reset(&mut self) {
        *self = Vgic::new(self.vcpus);
    }

    /// Raises `intid`: a private interrupt (SGI or PPI) of vCPU `vcpu`, or an SPI,
    /// for which `vcpu` is not used (it goes to the vCPU that holds it, else to
    /// its route). It stays pending until it is put in a list register.
    ///
    /// Returns the vCPU that now has it to take, to be kicked; `None` when nothing
    /// changed for any vCPU: it was already pending, or it is held back
    /// (disabled, active, or the distributor disabled) until the guest lets it
    /// through, or there is no such INTID or vCPU.
    pub fn raise(&mut self, intid: u32, vcpu: usize) -> Option<usize> {
        let (home, bit) = self.locate(intid, vcpu)?;
        let before = self.deliverable_all();
        self.bank_mut(home).pending |= 1 << bit;
        let woken = self.woken(&before);
        (woken != 0).then(|| woken.trailing_zeros() as usize)
    }

    /// A trapped write of `value` to `ICC_SGI1R_EL1` by vCPU `from`: the SGI it
    /// names becomes pending on every vCPU of this partition it targets. With
    /// `IRM` set that is every vCPU but `from`; otherwise those whose affinity is
    /// `Aff3.Aff2.Aff1` and `RS * 16 + n` for a set bit n of the target list.
    /// Targets that do not exist are ignored.
    ///
    /// Returns the vCPUs (bit n = vCPU n) that now have it to take.
    pub fn send_sgi(&mut self, from: usize, value: u64) -> u32 {
        let field = |shift: u32, bits: u32| (value >> shift) & ((1 << bits) - 1);
        let intid = field(24, 4) as u32;
        let everyone_else = field(40, 1) == 1;
        let (targets, range) = (field(0, 16), field(44, 4));
        let cluster = field(48, 8) << 32 | field(32, 8) << 16 | field(16, 8) << 8;
        let before = self.deliverable_all();
        for vcpu in 0..self.vcpus {
            let targeted = if everyone_else {
                vcpu != from
            } else {
                let affinity = affinity(vcpu);
                let aff0 = affinity & 0xff;
                affinity & !0xff == cluster
                    && aff0 >> 4 == range
                    && targets >> (aff0 & 0xf) & 1 == 1
            };
            if targeted {
                self.redistributors[vcpu].private.pending |= 1 << intid;
            }
        }
        self.woken(&before)
    }

    /// Whether vCPU `vcpu` has a deliverable interrupt (pending, enabled, not
    /// active, the distributor enabled) that is not yet in its list registers.
    pub fn wants_refill(&self, vcpu: usize) -> bool {
        self.deliverable(vcpu) != 0
    }

    /// Refills vCPU `vcpu`'s list registers, `lists` being what they hold now.
    /// An interrupt that is deliverable again while an entry holds it is folded
    /// into that entry (`Active` becomes `PendingActive`; a `Pending` one stays
    /// as it is). Then each free (`Invalid`) entry takes the most urgent
    /// deliverable interrupt (lowest priority value, then lowest INTID) that no
    /// valid entry holds. Entries of hardware-linked interrupts are left alone.
    /// What is placed or folded is no longer pending in the model.
    ///
    /// Returns [`Vgic::wants_refill`] afterwards: true when deliverable interrupts
    /// are still waiting (the back end asks for the "no pending" maintenance
    /// interrupt and refills again when it comes).
    pub fn refill(&mut self, vcpu: usize, lists: &mut [ListEntry]) -> bool {
        let (mut occupied, mut emulated) = (0, 0);
        for entry in lists
            .iter()
            .filter(|entry| entry.state != ListState::Invalid)
        {
            occupied |= intid_bit(entry.intid);
            if !entry.hardware {
                emulated |= intid_bit(entry.intid);
            }
        }
        let deliverable = self.deliverable(vcpu);
        // SPIs the guest has finished with go back to their routes, unless one
        // is deliverable again here (then this vCPU owes it a delivery).
        self.redistributors[vcpu].held_spis &= spi_bits(emulated | deliverable);
        for entry in lists.iter_mut() {
            let listed = !entry.hardware && entry.state != ListState::Invalid;
            if listed && deliverable & intid_bit(entry.intid) != 0 {
                if entry.state == ListState::Active {
                    entry.state = ListState::PendingActive;
                }
                self.deliver(vcpu, entry.intid);
            }
        }
        let mut waiting = self.deliverable(vcpu) & !occupied;
        for entry in lists.iter_mut() {
            if entry.state != ListState::Invalid {
                continue;
            }
            let Some(intid) =
                intids(waiting).min_by_key(|&intid| (self.priority(vcpu, intid), intid))
            else {
                break;
            };
            waiting &= !intid_bit(intid);
            *entry = ListEntry {
                intid,
                priority: self.priority(vcpu, intid),
                state: ListState::Pending,
                hardware: false,
            };
            self.deliver(vcpu, intid);
        }
        self.wants_refill(vcpu)
    }

    /// vCPU `vcpu` stops (PSCI `CPU_OFF`): what its list registers `lists` hold
    /// comes back to the model and the entries are freed, except hardware-linked
    /// ones. A pending interrupt (`Pending`, or the pending half of
    /// `PendingActive`) is pending again; an active one is forgotten, since the
    /// guest will not complete it there. The SPIs it held go back to their
    /// routes.
    ///
    /// Returns the vCPUs (bit n = vCPU n) that now have an interrupt to take.
    pub fn take_back(&mut self, vcpu: usize, lists: &mut [ListEntry]) -> u32 {
        let before = self.deliverable_all();
        for entry in lists.iter_mut().filter(|entry| !entry.hardware) {
            let pending = matches!(entry.state, ListState::Pending | ListState::PendingActive);
            if let (true, Some((home, bit))) = (pending, self.locate(entry.intid, vcpu)) {
                self.bank_mut(home).pending |= 1 << bit;
            }
            *entry = ListEntry::FREE;
        }
        self.redistributors[vcpu].held_spis = 0;
        self.woken(&before)
    }

    /// Where `intid` lives when vCPU `vcpu` raises or takes it: its home and its
    /// bit there. `None` for an INTID past [`INTIDS`] or a private interrupt of a
    /// vCPU the partition lacks.
    fn locate(&self, intid: u32, vcpu: usize) -> Option<(Home, u32)> {
        match intid {
            _ if intid < SPI_BASE && vcpu < self.vcpus => Some((Home::Private(vcpu), intid)),
            SPI_BASE..INTIDS => Some((Home::Shared, intid - SPI_BASE)),
            _ => None,
        }
    }

    fn bank(&self, home: Home) -> &Bank {
        match home {
            Home::Private(vcpu) => &self.redistributors[vcpu].private,
            Home::Shared => &self.spis,
        }
    }

    fn bank_mut(&mut self, home: Home) -> &mut Bank {
        match home {
            Home::Private(vcpu) => &mut self.redistributors[vcpu].private,
            Home::Shared => &mut self.spis,
        }
    }

    /// The priority of `intid` as vCPU `vcpu` sees it (an implemented INTID).
    fn priority(&self, vcpu: usize, intid: u32) -> u8 {
        let (home, bit) = self.locate(intid, vcpu).expect("an implemented INTID");
        self.bank(home).priority[bit as usize]
    }

    /// `intid`, deliverable to `vcpu`, goes into one of its list registers: it
    /// is no longer pending, and an SPI is now held by `vcpu`.
    fn deliver(&mut self, vcpu: usize, intid: u32) {
        let (home, bit) = self.locate(intid, vcpu).expect("an implemented INTID");
        self.bank_mut(home).pending &= !(1 << bit);
        if home == Home::Shared {
            self.redistributors[vcpu].held_spis |= 1 << bit;
        }
    }

    /// The SPIs that go to vCPU `vcpu`: those it holds, and those routed to it
    /// that no vCPU holds.
    fn spis_of(&self, vcpu: usize) -> u64 {
        let held = self.redistributors[..self.vcpus]
            .iter()
            .fold(0, |held, redistributor| held | redistributor.held_spis);
        self.redistributors[vcpu].held_spis | (self.routed[vcpu] & !held)
    }

    /// The interrupts vCPU `vcpu` may be given now.
    fn deliverable(&self, vcpu: usize) -> IntidSet {
        if !self.enabled {
            return 0;
        }
        let private = self.redistributors[vcpu].private.deliverable() & ((1 << SPI_BASE) - 1);
        let spis = self.spis.deliverable() & self.spis_of(vcpu);
        IntidSet::from(private) | IntidSet::from(spis) << SPI_BASE
    }

    /// [`Vgic::deliverable`] of every vCPU, to compare with later.
    fn deliverable_all(&self) -> [IntidSet; MAX_VCPUS] {
        core::array::from_fn(|vcpu| {
            if vcpu < self.vcpus {
                self.deliverable(vcpu)
            } else {
                0
            }
        })
    }

    /// The vCPUs (bit n = vCPU n) that may be given an interrupt now that they
    /// could not be given when `before` was taken.
    fn woken(&self, before: &[IntidSet; MAX_VCPUS]) -> u32 {
        (0..self.vcpus)
            .filter(|&vcpu| self.deliverable(vcpu) & !before[vcpu] != 0)
            .fold(0, |woken, vcpu| woken | 1 << vcpu)
    }

    /// Sets SPI `spi`'s router to `router`: it goes to the vCPU whose affinity
    /// that names, or to vCPU 0 when it names none (no 1-of-N routing, so the
    /// `IRM` bit is not kept).
    fn route(&mut self, spi: usize, router: u64) {
        let router = router & AFFINITY_FIELDS;
        self.routers[spi] = router;
        let target = (0..self.vcpus)
            .find(|&vcpu| affinity(vcpu) == router)
            .unwrap_or(0);
        for (vcpu, routed) in self.routed.iter_mut().enumerate() {
            *routed = (*routed & !(1 << spi)) | u64::from(vcpu == target) << spi;
        }
    }
}

/// `intid` as a one-INTID set; empty for an INTID the model does not implement.
fn intid_bit(intid: u32) -> IntidSet {
    if intid < INTIDS { 1 << intid } else { 0 }
}

/// The SPIs of `set`, bit n for SPI n.
fn spi_bits(set: IntidSet) -> u64 {
    (set >> SPI_BASE) as u64
}

/// The INTIDs in `set`, lowest first.
fn intids(mut set: IntidSet) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        let intid = (set != 0).then(|| set.trailing_zeros())?;
        set &= set - 1;
        Some(intid)
    })
}
