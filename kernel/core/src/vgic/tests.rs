//! The delivery rules: SGI targets, routing, list register refills and spills,
//! held-back interrupts, hardware entries, stopping a vCPU and reset; and the
//! helpers the register tests (`registers/tests.rs`) share.

use septum_abi::virt::{GICR_STRIDE, VTIMER_INTID};

use super::*;

pub(super) const SGI: u64 = 0x1_0000;
pub(super) const GICD_CTLR: u64 = 0x0000;
pub(super) const GICD_TYPER: u64 = 0x0004;
pub(super) const ISENABLER: u64 = 0x0100;
pub(super) const ICENABLER: u64 = 0x0180;
pub(super) const ISPENDR: u64 = 0x0200;
pub(super) const ICPENDR: u64 = 0x0280;
pub(super) const ISACTIVER: u64 = 0x0300;
pub(super) const ICACTIVER: u64 = 0x0380;
pub(super) const IPRIORITYR: u64 = 0x0400;
pub(super) const ICFGR: u64 = 0x0c00;
pub(super) const IROUTER: u64 = 0x6000;
pub(super) const PIDR2: u64 = 0xffe8;
pub(super) const GICR_TYPER: u64 = 0x0008;
pub(super) const GICR_WAKER: u64 = 0x0014;

pub(super) fn dist(vgic: &mut Vgic, offset: u64, width: u8, access: Access) -> Emulated {
    vgic.distributor(offset, width, access)
        .unwrap_or_else(|refused| panic!("GICD+{offset:#x}/{width}: {refused:?}"))
}

pub(super) fn dist_read(vgic: &mut Vgic, offset: u64) -> u64 {
    dist(vgic, offset, 4, Access::Read).value
}

/// Writes a 32-bit distributor register; the vCPUs it woke.
pub(super) fn dist_write(vgic: &mut Vgic, offset: u64, value: u64) -> u32 {
    dist(vgic, offset, 4, Access::Write(value)).wake
}

pub(super) fn redist(
    vgic: &mut Vgic,
    vcpu: usize,
    offset: u64,
    width: u8,
    access: Access,
) -> Emulated {
    let offset = vcpu as u64 * GICR_STRIDE + offset;
    vgic.redistributor(offset, width, access)
        .unwrap_or_else(|refused| panic!("GICR+{offset:#x}/{width}: {refused:?}"))
}

pub(super) fn redist_read(vgic: &mut Vgic, vcpu: usize, offset: u64) -> u64 {
    redist(vgic, vcpu, offset, 4, Access::Read).value
}

pub(super) fn redist_write(vgic: &mut Vgic, vcpu: usize, offset: u64, value: u64) -> u32 {
    redist(vgic, vcpu, offset, 4, Access::Write(value)).wake
}

/// A GIC set up as Linux leaves it: distributor on, every interrupt enabled at
/// priority 0xa0, every SPI routed to vCPU 0, every redistributor awake.
pub(super) fn linux_ready(vcpus: usize) -> Vgic {
    let mut vgic = Vgic::new(vcpus);
    for word in 1..INTIDS as u64 / 32 {
        dist_write(&mut vgic, ISENABLER + 4 * word, u64::from(u32::MAX));
    }
    for intid in (SPI_BASE as u64..INTIDS as u64).step_by(4) {
        dist_write(&mut vgic, IPRIORITYR + intid, 0xa0a0_a0a0);
    }
    for vcpu in 0..vcpus {
        redist_write(&mut vgic, vcpu, GICR_WAKER, 0);
        redist_write(&mut vgic, vcpu, SGI + ISENABLER, u64::from(u32::MAX));
        for word in 0..8 {
            redist_write(&mut vgic, vcpu, SGI + IPRIORITYR + 4 * word, 0xa0a0_a0a0);
        }
    }
    dist_write(&mut vgic, GICD_CTLR, 0x13);
    vgic
}

/// `ICC_SGI1R_EL1` for SGI `intid` to target list `targets` in cluster 0.
pub(super) fn sgi1r(intid: u64, targets: u64) -> u64 {
    intid << 24 | targets
}

/// `ICC_SGI1R_EL1` with `IRM` set: every vCPU but the sender.
pub(super) const TO_OTHERS: u64 = 1 << 40;

pub(super) fn lists(count: usize) -> Vec<ListEntry> {
    vec![ListEntry::FREE; count]
}

pub(super) fn entry(intid: u32, priority: u8, state: ListState) -> ListEntry {
    ListEntry {
        intid,
        priority,
        state,
        hardware: false,
    }
}

/// The valid entries' INTIDs, in list register order.
pub(super) fn listed(lists: &[ListEntry]) -> Vec<u32> {
    lists
        .iter()
        .filter(|entry| entry.state != ListState::Invalid)
        .map(|entry| entry.intid)
        .collect()
}

/// Verifies: SK-LNX-003
#[test]
fn sgis_go_to_the_vcpus_of_the_target_list() {
    let mut vgic = linux_ready(4);
    assert_eq!(vgic.send_sgi(0, sgi1r(5, 0b1010)), 0b1010);
    assert_eq!(vgic.send_sgi(3, sgi1r(5, 0b0010)), 0, "already pending");
    for vcpu in 0..4 {
        let mut entries = lists(2);
        vgic.refill(vcpu, &mut entries);
        let expected: &[u32] = if vcpu % 2 == 1 { &[5] } else { &[] };
        assert_eq!(listed(&entries), expected, "vCPU {vcpu}");
    }
}

/// Verifies: SK-LNX-003
#[test]
fn irm_sends_to_every_vcpu_but_the_sender() {
    let mut vgic = linux_ready(3);
    assert_eq!(vgic.send_sgi(1, TO_OTHERS | sgi1r(2, 0)), 0b101);
    assert!(!vgic.wants_refill(1));
    let mut solo = linux_ready(1);
    assert_eq!(solo.send_sgi(0, TO_OTHERS | sgi1r(2, 0)), 0);
}

/// Targets outside the partition's vCPUs are no one.
/// Verifies: SK-LNX-003
#[test]
fn sgis_to_vcpus_that_do_not_exist_go_nowhere() {
    let mut vgic = linux_ready(2);
    let before = vgic.clone();
    assert_eq!(vgic.send_sgi(0, sgi1r(1, 0b1111_1100)), 0, "vCPUs 2-7");
    assert_eq!(vgic.send_sgi(0, 1 << 16 | sgi1r(1, 0b11)), 0, "Aff1 = 1");
    assert_eq!(vgic.send_sgi(0, 1 << 32 | sgi1r(1, 0b11)), 0, "Aff2 = 1");
    assert_eq!(vgic.send_sgi(0, 1 << 48 | sgi1r(1, 0b11)), 0, "Aff3 = 1");
    assert_eq!(vgic.send_sgi(0, 1 << 44 | sgi1r(1, 0b11)), 0, "RS = 1");
    assert_eq!(vgic, before);
}

/// A disabled interrupt stays pending and is delivered when enabled; the
/// enabling write says whom to wake.
/// Verifies: SK-LNX-003
#[test]
fn disabled_interrupts_wait_until_enabled() {
    let mut vgic = linux_ready(2);
    redist_write(&mut vgic, 1, SGI + ICENABLER, 1 << 3 | 1 << VTIMER_INTID);
    dist_write(&mut vgic, ICENABLER + 4, 1 << 8);
    assert_eq!(vgic.send_sgi(0, sgi1r(3, 0b10)), 0);
    assert_eq!(vgic.raise(VTIMER_INTID, 1), None);
    assert_eq!(vgic.raise(40, 0), None);
    assert!(!vgic.wants_refill(0) && !vgic.wants_refill(1));
    let mut entries = lists(4);
    assert!(!vgic.refill(1, &mut entries));
    assert_eq!(listed(&entries), []);

    assert_eq!(redist_write(&mut vgic, 1, SGI + ISENABLER, 1 << 3), 0b10);
    assert_eq!(dist_write(&mut vgic, ISENABLER + 4, 1 << 8), 0b01);
    assert_eq!(
        redist_write(&mut vgic, 1, SGI + ISENABLER, 1 << VTIMER_INTID),
        0b10,
        "another interrupt for vCPU 1"
    );
    vgic.refill(1, &mut entries);
    assert_eq!(listed(&entries), [3, VTIMER_INTID]);
}

/// Verifies: SK-LNX-003
#[test]
fn a_disabled_distributor_delivers_nothing() {
    let mut vgic = linux_ready(2);
    dist_write(&mut vgic, GICD_CTLR, 0);
    assert_eq!(vgic.raise(VTIMER_INTID, 1), None);
    assert_eq!(vgic.send_sgi(1, sgi1r(0, 1)), 0);
    assert!(!vgic.wants_refill(0) && !vgic.wants_refill(1));
    assert_eq!(dist_write(&mut vgic, GICD_CTLR, 0x13), 0b11);
}

/// An interrupt the guest marked active is held back while pending, until
/// it is deactivated.
/// Verifies: SK-LNX-003
#[test]
fn active_interrupts_are_held_back() {
    let mut vgic = linux_ready(1);
    dist_write(&mut vgic, ISACTIVER + 4, 1 << 2);
    assert_eq!(vgic.raise(34, 0), None);
    assert_eq!(dist_read(&mut vgic, ISPENDR + 4), 1 << 2);
    assert_eq!(dist_write(&mut vgic, ICACTIVER + 4, 1 << 2), 1);
    assert_eq!(dist_write(&mut vgic, ICPENDR + 4, 1 << 2), 0);
    assert!(!vgic.wants_refill(0), "no longer pending");
}

/// More pending interrupts than list registers: the most urgent go first
/// (lowest priority value, then lowest INTID), the rest after the guest frees
/// entries; nothing is lost or delivered twice.
/// Verifies: SK-LNX-003
#[test]
fn refills_go_by_priority_and_spill_over() {
    let mut vgic = linux_ready(1);
    let priorities = [
        (VTIMER_INTID, 0x80),
        (40, 0x20),
        (33, 0xa0),
        (5, 0xa0),
        (60, 0x20),
        (7, 0xf0),
    ];
    for (intid, priority) in priorities {
        let offset = u64::from(intid);
        if intid < SPI_BASE {
            redist(
                &mut vgic,
                0,
                SGI + IPRIORITYR + offset,
                1,
                Access::Write(priority),
            );
        } else {
            dist(&mut vgic, IPRIORITYR + offset, 1, Access::Write(priority));
        }
        vgic.raise(intid, 0);
    }
    let mut entries = lists(4);
    assert!(vgic.refill(0, &mut entries), "two did not fit");
    assert_eq!(listed(&entries), [40, 60, VTIMER_INTID, 5]);
    assert_eq!(entries[1], entry(60, 0x20, ListState::Pending));
    assert!(vgic.refill(0, &mut entries), "nothing free yet");
    assert_eq!(listed(&entries), [40, 60, VTIMER_INTID, 5]);

    entries[1].state = ListState::Invalid;
    entries[3].state = ListState::Invalid;
    assert!(!vgic.refill(0, &mut entries));
    assert_eq!(listed(&entries), [40, 33, VTIMER_INTID, 7]);
    assert!(!vgic.wants_refill(0));
    for entry in &mut entries {
        entry.state = ListState::Invalid;
    }
    assert!(!vgic.refill(0, &mut entries));
    assert_eq!(listed(&entries), []);
}

/// Verifies: SK-LNX-003
#[test]
fn pending_again_while_listed_is_folded_into_the_entry() {
    let mut vgic = linux_ready(1);
    vgic.raise(VTIMER_INTID, 0);
    vgic.raise(40, 0);
    let mut entries = lists(2);
    vgic.refill(0, &mut entries);
    entries[0].state = ListState::Active;
    assert_eq!(vgic.raise(VTIMER_INTID, 0), Some(0));
    assert_eq!(vgic.raise(40, 0), Some(0));
    assert!(!vgic.refill(0, &mut entries));
    assert_eq!(entries[0].state, ListState::PendingActive);
    assert_eq!(
        entries[1].state,
        ListState::Pending,
        "two edges, one interrupt"
    );
    assert!(!vgic.wants_refill(0));
}

/// Entries of hardware-linked interrupts are never changed or reused while
/// valid, and an emulated interrupt with the same INTID waits for them.
/// Verifies: SK-LNX-003
#[test]
fn hardware_entries_are_left_alone() {
    let mut vgic = linux_ready(1);
    let hardware = |intid, state| ListEntry {
        intid,
        priority: 0xa0,
        state,
        hardware: true,
    };
    let mut entries = [
        hardware(40, ListState::Active),
        ListEntry::FREE,
        hardware(41, ListState::Pending),
        ListEntry {
            hardware: true,
            ..ListEntry::FREE
        },
    ];
    vgic.raise(40, 0);
    vgic.raise(41, 0);
    vgic.raise(5, 0);
    assert!(vgic.refill(0, &mut entries), "40 and 41 wait");
    assert_eq!(entries[0], hardware(40, ListState::Active));
    assert_eq!(entries[2], hardware(41, ListState::Pending));
    assert_eq!(
        listed(&entries),
        [40, 5, 41],
        "an invalid hardware entry is free"
    );
    entries[0].state = ListState::Invalid;
    assert!(vgic.refill(0, &mut entries));
    assert_eq!(entries[0], entry(40, 0xa0, ListState::Pending));
}

/// An SPI stays with the vCPU whose list registers hold it, even rerouted,
/// and follows its route again once the guest is done with it.
/// Verifies: SK-LNX-003
#[test]
fn an_spi_in_flight_stays_where_it_is() {
    let mut vgic = linux_ready(2);
    vgic.raise(50, 0);
    let (mut zero, mut one) = (lists(2), lists(2));
    vgic.refill(0, &mut zero);
    zero[0].state = ListState::Active;
    dist(&mut vgic, IROUTER + 8 * 50, 8, Access::Write(affinity(1)));
    assert_eq!(vgic.raise(50, 1), Some(0), "still vCPU 0's");
    assert!(!vgic.wants_refill(1));
    vgic.refill(0, &mut zero);
    assert_eq!(zero[0], entry(50, 0xa0, ListState::PendingActive));
    zero[0].state = ListState::Invalid;
    vgic.refill(0, &mut zero);
    assert_eq!(vgic.raise(50, 0), Some(1), "released: follows the route");
    vgic.refill(1, &mut one);
    assert_eq!(listed(&one), [50]);
}

/// An SPI raised again after the guest completed it, before its vCPU refilled,
/// goes to that vCPU (the one the raise named to kick), though rerouted since.
/// Verifies: SK-LNX-003
#[test]
fn an_spi_raised_again_goes_where_the_raise_said() {
    let mut vgic = linux_ready(2);
    vgic.raise(50, 0);
    let mut zero = lists(2);
    vgic.refill(0, &mut zero);
    dist(&mut vgic, IROUTER + 8 * 50, 8, Access::Write(affinity(1)));
    zero[0].state = ListState::Invalid;
    assert_eq!(vgic.raise(50, 1), Some(0));
    assert!(!vgic.wants_refill(1));
    vgic.refill(0, &mut zero);
    assert_eq!(listed(&zero), [50]);
}

/// A stopping vCPU's pending entries go back to the model; an SPI among them
/// follows its route to another vCPU.
/// Verifies: SK-LNX-003
#[test]
fn a_stopping_vcpu_gives_its_list_registers_back() {
    let mut vgic = linux_ready(2);
    vgic.raise(50, 0);
    vgic.raise(VTIMER_INTID, 0);
    vgic.raise(3, 0);
    let mut entries = lists(4);
    vgic.refill(0, &mut entries);
    entries[0].state = ListState::Active;
    entries[3] = ListEntry {
        hardware: true,
        ..entry(70, 0xa0, ListState::Active)
    };
    dist(&mut vgic, IROUTER + 8 * 50, 8, Access::Write(affinity(1)));
    assert_eq!(vgic.take_back(0, &mut entries), 0b11);
    assert_eq!(&entries[..3], [ListEntry::FREE; 3]);
    assert!(entries[3].hardware, "left alone");
    let mut one = lists(4);
    vgic.refill(1, &mut one);
    assert_eq!(listed(&one), [50]);
    let mut zero = lists(4);
    vgic.refill(0, &mut zero);
    assert_eq!(listed(&zero), [VTIMER_INTID], "SGI 3 was active: forgotten");
}

/// Verifies: SK-LNX-003
#[test]
fn raising_what_does_not_exist_does_nothing() {
    let mut vgic = linux_ready(2);
    let before = vgic.clone();
    assert_eq!(vgic.raise(INTIDS, 0), None);
    assert_eq!(vgic.raise(1020, 0), None);
    assert_eq!(vgic.raise(VTIMER_INTID, 2), None, "no vCPU 2");
    assert_eq!(vgic, before);
}

/// Verifies: SK-LNX-003
#[test]
fn reset_forgets_everything() {
    let mut vgic = linux_ready(3);
    dist(&mut vgic, IROUTER + 8 * 40, 8, Access::Write(2));
    dist_write(&mut vgic, ICFGR + 8, u64::from(u32::MAX));
    redist_write(&mut vgic, 1, SGI + ISACTIVER, 1);
    vgic.raise(40, 0);
    vgic.send_sgi(0, TO_OTHERS | sgi1r(9, 0));
    let mut entries = lists(4);
    vgic.refill(2, &mut entries);
    vgic.reset();
    assert_eq!(vgic, Vgic::new(3));
    for vcpu in 0..3 {
        assert!(!vgic.wants_refill(vcpu));
        assert_eq!(redist_read(&mut vgic, vcpu, GICR_WAKER), 0b110);
    }
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x50);
    assert_eq!(dist(&mut vgic, IROUTER + 8 * 40, 8, Access::Read).value, 0);
}
