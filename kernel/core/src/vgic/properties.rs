//! Property tests of the delivery rules. Random sequences of raises, SGIs,
//! enables and disables, reroutes, distributor switches, refills, and the guest
//! acknowledging and completing entries, and vCPUs stopping, run against 1-4 vCPUs with 1-4 list
//! registers each (the first sometimes holding a hardware-linked interrupt,
//! with an INTID of its own or one the partition's SPIs use too).
//! After every refill:
//! - (a) no interrupt in a vCPU's list registers is still pending and
//!   deliverable to it in the model;
//! - (b) no INTID is in one vCPU's list registers twice, and no SPI is in two
//!   vCPUs' list registers;
//! - (d) a private interrupt reaches only the vCPU it was raised for or sent to,
//!   an SPI only a vCPU its route named; hardware entries never change;
//! - no interrupt is delivered more often than it was raised.
//!
//! After every step, a vCPU that wants a refill has been named by the raise,
//! SGI or register write that gave it something (or by its last refill, which
//! left something over), so the kernel knows to kick it.
//!
//! Then everything is enabled and the guest keeps completing entries, the
//! hardware-linked ones too:
//! - (c) every raised interrupt is delivered, and nothing is left pending.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use septum_abi::virt::GICR_STRIDE;

use super::tests::{GICD_CTLR, ICENABLER, IROUTER, ISENABLER, SGI};
use super::*;

/// An interrupt as the test counts it: a private one of a vCPU, or an SPI.
type Key = (Option<usize>, u32);

#[derive(Clone, Debug)]
enum Op {
    Raise {
        intid: u32,
        vcpu: usize,
    },
    Sgi {
        from: usize,
        intid: u32,
        targets: u64,
        others: bool,
    },
    Enable {
        intid: u32,
        vcpu: usize,
        on: bool,
    },
    /// Routes the SPI to vCPU `vcpu`, or to an affinity no vCPU has when
    /// `vcpu` is past the partition's.
    Route {
        spi: u32,
        vcpu: usize,
    },
    Distributor(bool),
    Refill(usize),
    Acknowledge {
        vcpu: usize,
        entry: usize,
    },
    Complete {
        vcpu: usize,
        entry: usize,
    },
    /// The vCPU stops and gives its list registers back (and starts again).
    Stop(usize),
}

/// A few INTIDs of each kind, so that they collide often.
fn intid() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..3, 26u32..28, SPI_BASE..SPI_BASE + 3, Just(INTIDS - 1)]
}

fn op() -> impl Strategy<Value = Op> {
    let vcpu = 0..MAX_VCPUS;
    let entry = 0usize..4;
    prop_oneof![
        4 => (intid(), vcpu.clone()).prop_map(|(intid, vcpu)| Op::Raise { intid, vcpu }),
        2 => (vcpu.clone(), 0u32..3, 0u64..16, any::<bool>())
            .prop_map(|(from, intid, targets, others)| Op::Sgi { from, intid, targets, others }),
        2 => (intid(), vcpu.clone(), prop::bool::weighted(0.7))
            .prop_map(|(intid, vcpu, on)| Op::Enable { intid, vcpu, on }),
        1 => (SPI_BASE..SPI_BASE + 3, 0..MAX_VCPUS + 1)
            .prop_map(|(spi, vcpu)| Op::Route { spi, vcpu }),
        1 => prop::bool::weighted(0.8).prop_map(Op::Distributor),
        4 => vcpu.clone().prop_map(Op::Refill),
        4 => (vcpu.clone(), entry.clone()).prop_map(|(vcpu, entry)| Op::Acknowledge { vcpu, entry }),
        1 => vcpu.clone().prop_map(Op::Stop),
        2 => (vcpu, entry).prop_map(|(vcpu, entry)| Op::Complete { vcpu, entry }),
    ]
}

/// The GIC, each vCPU's list registers, and what the test expects of them.
struct Run {
    vgic: Vgic,
    vcpus: usize,
    lists: Vec<Vec<ListEntry>>,
    /// The hardware-linked entry each vCPU's first list register holds, if any.
    hardware: Vec<Option<ListEntry>>,
    /// The vCPUs the kernel was told to kick and has not refilled since.
    kicked: u32,
    /// Raised and not yet delivered.
    owed: BTreeSet<Key>,
    raised: BTreeMap<Key, usize>,
    delivered: BTreeMap<Key, usize>,
    /// The vCPUs each SPI's route has named.
    routes: BTreeMap<u32, BTreeSet<usize>>,
}

impl Run {
    fn new(vcpus: usize, list_registers: usize, hardware_intid: Option<u32>) -> Run {
        let mut vgic = Vgic::new(vcpus);
        vgic.distributor(GICD_CTLR, 4, Access::Write(0b10)).unwrap();
        let mut lists = vec![vec![ListEntry::FREE; list_registers]; vcpus];
        let hardware: Vec<_> = (0..vcpus)
            .map(|_| {
                let intid = hardware_intid.filter(|_| list_registers > 1)?;
                Some(ListEntry {
                    intid,
                    priority: 0x80,
                    state: ListState::Active,
                    hardware: true,
                })
            })
            .collect();
        for (lists, hardware) in lists.iter_mut().zip(&hardware) {
            if let Some(hardware) = hardware {
                lists[0] = *hardware;
            }
        }
        let routes = (SPI_BASE..INTIDS)
            .map(|spi| (spi, BTreeSet::from([0])))
            .collect();
        Run {
            vgic,
            vcpus,
            lists,
            hardware,
            kicked: 0,
            owed: BTreeSet::new(),
            raised: BTreeMap::new(),
            delivered: BTreeMap::new(),
            routes,
        }
    }

    fn key(vcpu: usize, intid: u32) -> Key {
        ((intid < SPI_BASE).then_some(vcpu), intid)
    }

    fn note_raised(&mut self, vcpu: usize, intid: u32) {
        let key = Run::key(vcpu, intid);
        self.owed.insert(key);
        *self.raised.entry(key).or_default() += 1;
    }

    /// The kernel kicks the vCPUs of `woken`.
    fn kick(&mut self, woken: u32) {
        self.kicked |= woken;
    }

    /// Every vCPU that wants a refill has been kicked. A kicked vCPU that
    /// wants none finds nothing to do when it wakes: its kick is spent.
    fn check_kicked(&mut self) -> Result<(), TestCaseError> {
        for vcpu in 0..self.vcpus {
            if self.vgic.wants_refill(vcpu) {
                prop_assert!(
                    self.kicked >> vcpu & 1 == 1,
                    "vCPU {} wants a refill unasked",
                    vcpu
                );
            } else {
                self.kicked &= !(1 << vcpu);
            }
        }
        Ok(())
    }

    /// Enables or disables the 32 interrupts of `bits` in the word of `intid`
    /// (vCPU `vcpu`'s if they are private).
    fn set_enabled(&mut self, intid: u32, vcpu: usize, on: bool, bits: u32) {
        let register = if on { ISENABLER } else { ICENABLER };
        let write = Access::Write(u64::from(bits));
        let emulated = if intid < SPI_BASE {
            let offset = vcpu as u64 * GICR_STRIDE + SGI + register;
            self.vgic.redistributor(offset, 4, write)
        } else {
            self.vgic
                .distributor(register + u64::from(intid / 32) * 4, 4, write)
        };
        self.kick(emulated.unwrap().wake);
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let vcpus = self.vcpus;
        match *op {
            Op::Raise { intid, vcpu } => {
                let vcpu = vcpu % vcpus;
                let woken = self.vgic.raise(intid, vcpu);
                self.note_raised(vcpu, intid);
                if let Some(woken) = woken {
                    prop_assert!(self.vgic.wants_refill(woken));
                    self.kick(1 << woken);
                }
            }
            Op::Sgi {
                from,
                intid,
                targets,
                others,
            } => {
                let from = from % vcpus;
                let value = u64::from(others) << 40 | u64::from(intid) << 24 | targets;
                let woken = self.vgic.send_sgi(from, value);
                self.kick(woken);
                for vcpu in 0..vcpus {
                    let targeted = if others {
                        vcpu != from
                    } else {
                        targets >> vcpu & 1 == 1
                    };
                    if targeted {
                        self.note_raised(vcpu, intid);
                    } else {
                        prop_assert_eq!(woken >> vcpu & 1, 0, "woke an untargeted vCPU");
                    }
                }
            }
            Op::Enable { intid, vcpu, on } => {
                self.set_enabled(intid, vcpu % vcpus, on, 1 << (intid % 32))
            }
            Op::Route { spi, vcpu } => {
                let (router, target) = if vcpu < vcpus {
                    (affinity(vcpu), vcpu)
                } else {
                    (1 << 8, 0)
                };
                let offset = IROUTER + 8 * u64::from(spi);
                let emulated = self.vgic.distributor(offset, 8, Access::Write(router));
                self.kick(emulated.unwrap().wake);
                self.routes.get_mut(&spi).unwrap().insert(target);
            }
            Op::Distributor(on) => self.switch_distributor(on),
            Op::Refill(vcpu) => self.refill(vcpu % vcpus)?,
            Op::Acknowledge { vcpu, entry } => {
                if let Some(entry) = self.guest_entry(vcpu % vcpus, entry)
                    && entry.state == ListState::Pending
                {
                    entry.state = ListState::Active;
                }
            }
            Op::Complete { vcpu, entry } => {
                if let Some(entry) = self.guest_entry(vcpu % vcpus, entry) {
                    complete(entry);
                }
            }
            Op::Stop(vcpu) => self.stop(vcpu % vcpus)?,
        }
        self.check_kicked()
    }

    fn switch_distributor(&mut self, on: bool) {
        let emulated = self
            .vgic
            .distributor(GICD_CTLR, 4, Access::Write(u64::from(on) << 1));
        self.kick(emulated.unwrap().wake);
    }

    /// vCPU `vcpu` stops: what it was given and did not take is owed again.
    fn stop(&mut self, vcpu: usize) -> Result<(), TestCaseError> {
        for entry in self.lists[vcpu].iter().filter(|entry| !entry.hardware) {
            if matches!(entry.state, ListState::Pending | ListState::PendingActive) {
                let key = Run::key(vcpu, entry.intid);
                *self.delivered.get_mut(&key).unwrap() -= 1;
                self.owed.insert(key);
            }
        }
        let woken = self.vgic.take_back(vcpu, &mut self.lists[vcpu]);
        self.kick(woken);
        if let Some(hardware) = self.hardware[vcpu] {
            prop_assert_eq!(self.lists[vcpu][0], hardware, "a hardware entry changed");
        }
        let free = self.lists[vcpu]
            .iter()
            .all(|entry| entry.hardware || entry.state == ListState::Invalid);
        prop_assert!(free, "vCPU {} kept entries", vcpu);
        Ok(())
    }

    /// List register `entry` of `vcpu`, if it exists and the guest may change it.
    fn guest_entry(&mut self, vcpu: usize, entry: usize) -> Option<&mut ListEntry> {
        self.lists[vcpu]
            .get_mut(entry)
            .filter(|entry| !entry.hardware)
    }

    fn refill(&mut self, vcpu: usize) -> Result<(), TestCaseError> {
        let before = self.lists[vcpu].clone();
        let left_over = self.vgic.refill(vcpu, &mut self.lists[vcpu]);
        prop_assert_eq!(left_over, self.vgic.wants_refill(vcpu));
        // Something left over: the back end asks for a maintenance interrupt.
        self.kicked = self.kicked & !(1 << vcpu) | u32::from(left_over) << vcpu;
        let lists = &self.lists[vcpu];
        if let Some(hardware) = self.hardware[vcpu] {
            prop_assert_eq!(lists[0], hardware, "a hardware entry changed");
        }
        let (mut seen, mut emulated) = (BTreeSet::new(), BTreeSet::new());
        let deliverable = self.vgic.deliverable(vcpu);
        for (entry, old) in lists.iter().zip(&before) {
            if entry.state == ListState::Invalid {
                continue;
            }
            prop_assert!(
                seen.insert(entry.intid),
                "INTID {} listed twice",
                entry.intid
            );
            if entry.hardware {
                continue;
            }
            let key = Run::key(vcpu, entry.intid);
            emulated.insert(entry.intid);
            prop_assert_eq!(
                deliverable & intid_bit(entry.intid),
                0,
                "(a) INTID {}",
                entry.intid
            );
            match key {
                (Some(_), intid) => {
                    prop_assert!(self.raised.contains_key(&key), "(d) INTID {}", intid)
                }
                (None, spi) => prop_assert!(
                    self.routes[&spi].contains(&vcpu),
                    "(d) SPI {} on {}",
                    spi,
                    vcpu
                ),
            }
            let (home, bit) = self.vgic.locate(entry.intid, vcpu).unwrap();
            let still_pending = self.vgic.bank(home).pending >> bit & 1 == 1;
            if matches!(entry.state, ListState::Pending | ListState::PendingActive)
                && !still_pending
            {
                self.owed.remove(&key);
            }
            let new = old.state == ListState::Invalid
                || (old.state == ListState::Active && entry.state == ListState::PendingActive);
            if new {
                let delivered = self.delivered.entry(key).or_default();
                *delivered += 1;
                prop_assert!(
                    *delivered <= self.raised[&key],
                    "{:?} delivered more often than raised",
                    key
                );
            }
        }
        for (other, lists) in self
            .lists
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != vcpu)
        {
            for entry in lists
                .iter()
                .filter(|entry| !entry.hardware && entry.state != ListState::Invalid)
            {
                prop_assert!(
                    entry.intid < SPI_BASE || !emulated.contains(&entry.intid),
                    "(b) SPI {} on vCPUs {} and {}",
                    entry.intid,
                    vcpu,
                    other
                );
            }
        }
        Ok(())
    }

    /// Enables everything, then lets the guest complete every entry, the
    /// hardware-linked ones too, until nothing is left.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        self.switch_distributor(true);
        for intid in (0..INTIDS).step_by(32) {
            for vcpu in 0..self.vcpus {
                self.set_enabled(intid, vcpu, true, u32::MAX);
            }
        }
        for (lists, hardware) in self.lists.iter_mut().zip(&mut self.hardware) {
            if hardware.take().is_some() {
                lists[0].state = ListState::Invalid;
            }
        }
        self.check_kicked()?;
        for _ in 0..64 {
            for vcpu in 0..self.vcpus {
                self.refill(vcpu)?;
                self.lists[vcpu].iter_mut().for_each(complete);
            }
        }
        for vcpu in 0..self.vcpus {
            prop_assert!(
                !self.vgic.wants_refill(vcpu),
                "vCPU {} still has interrupts",
                vcpu
            );
            let free = self.lists[vcpu]
                .iter()
                .all(|entry| entry.state == ListState::Invalid);
            prop_assert!(free, "vCPU {} still has entries", vcpu);
        }
        prop_assert!(self.owed.is_empty(), "(c) never delivered: {:?}", self.owed);
        Ok(())
    }
}

/// The guest finishes with an entry: a pending one is taken and completed, an
/// active one completed; a pending and active one stays pending.
fn complete(entry: &mut ListEntry) {
    entry.state = match entry.state {
        ListState::PendingActive => ListState::Pending,
        _ => ListState::Invalid,
    };
}

proptest! {
    /// Verifies: SK-LNX-003
    #[test]
    fn delivery_is_confined_complete_and_never_doubled(
        vcpus in 1..=MAX_VCPUS,
        list_registers in 1usize..=4,
        hardware_intid in prop_oneof![Just(None), Just(Some(INTIDS + 4)), Just(Some(SPI_BASE + 2))],
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let mut run = Run::new(vcpus, list_registers, hardware_intid);
        for op in &ops {
            run.apply(op)?;
        }
        run.drain()?;
    }
}
