//! Host tests of the balloon hypercalls as partitions make them (`balloon.rs`):
//! a guest's `inflate`, `deflate`, `balloon_report` and balloon `wait`, and the
//! service VM's `set_memory_target` and `memory_info`. The ledger and pool are
//! property-tested in `balloon::tests`; here the front end is: what a call may
//! name, and what the caller and the service VM are told.

use super::tests::*;
use super::*;
use crate::caps::{Cap, CapTable, CapType};
use crate::package::{Kind, PartitionSpec};
use crate::resources::Resources;
use crate::supervision::Supervision;
use septum_abi::balloon::{INFO_WORDS, Info};
use septum_abi::event::Kind as EventKind;
use septum_abi::{Call, PartitionState};

/// The service VM's control capability for alpha, and alpha's balloon.
pub(super) const SLOT: u64 = 3;
pub(super) const ALPHA: usize = 1;
pub(super) const PAGE: u64 = 4096;
/// alpha keeps 8 pages, starts with 16 and may grow to 32.
pub(super) const MIN: u64 = 8;
pub(super) const INITIAL: u64 = 16;
pub(super) const MAX: u64 = 32;
/// Where alpha keeps its batch lists (in its kept memory).
pub(super) const LIST: u64 = GUEST_BASE + 0x100;

/// The service VM and alpha, which balloons; both run.
pub(super) fn balloon_system() -> (System, FakeMachine) {
    let mut alpha_caps: CapTable = caps_for(Kind::Guest);
    alpha_caps[SLOT as usize] = Some(Cap {
        ty: CapType::Balloon,
        rights: CapType::Balloon.possible_rights(),
        object: 0,
        badge: 0,
    });
    supervising(
        SLOT,
        PartitionSpec {
            name: "alpha",
            kind: Kind::Guest,
            profile: crate::package::Profile::Native,
            ram_size: INITIAL * PAGE,
            image: &[0; 16],
            entry_offset: 0,
            argument: 0,
            caps: alpha_caps,
            resources: Resources::on_cores(MIN * PAGE, MAX * PAGE, &[0]),
            supervision: Supervision::default(),
        },
    )
}

pub(super) fn status(o: &Outcome) -> Result<[u64; 3], Error> {
    let reply = o.reply.expect("the caller is answered");
    Error::from_status(reply.status)
        .map(|()| reply.results)
        .map_err(|error| error.expect("a known error"))
}

/// alpha writes `pages` (guest page numbers) as a batch list at [`LIST`].
pub(super) fn list(m: &mut FakeMachine, pages: &[u64]) {
    for (i, page) in pages.iter().enumerate() {
        let at = HOST_BASE + RAM + (LIST - GUEST_BASE) + 8 * i as u64;
        m.write_ram(at, &(GUEST_BASE + page * PAGE).to_le_bytes());
    }
}

pub(super) fn held(sys: &System) -> u64 {
    sys.balloon.memory(ALPHA).unwrap().held
}

/// Verifies: SK-BAL-001, SK-BAL-004
#[test]
fn an_inflate_gives_back_its_pages_and_a_bad_batch_changes_nothing() {
    let (mut sys, mut m) = balloon_system();
    list(&mut m, &[15, 14]);
    let o = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Inflate, &[SLOT, LIST, 2]),
    );
    assert_eq!(status(&o), Ok([INITIAL - 2, INITIAL, 0]), "held, target");
    let cases: [(&[u64], u64, Error); 5] = [
        (&[3], 1, Error::BelowMinimum),   // a page it always keeps
        (&[15], 1, Error::NotOwned),      // given back already
        (&[13, 13], 2, Error::Duplicate), // the same page twice
        (&[40], 1, Error::NotOwned),      // past its maximum
        (&[12], 65, Error::TooLong),      // more than a batch holds
    ];
    for (pages, count, error) in cases {
        list(&mut m, pages);
        let o = hcall(
            &mut sys,
            &mut m,
            ALPHA,
            call(Call::Inflate, &[SLOT, LIST, count]),
        );
        assert_eq!(status(&o), Err(error), "{pages:?}");
        assert_eq!(held(&sys), INITIAL - 2);
    }
    let outside = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Inflate, &[SLOT, GUEST_BASE + 12 * PAGE, 1]),
    );
    assert_eq!(
        status(&outside),
        Err(Error::BadAddress),
        "the list lies in kept memory"
    );
    let empty = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Inflate, &[SLOT, LIST, 0]),
    );
    assert_eq!(status(&empty), Err(Error::InvalidArgument));
}

/// Verifies: SK-BAL-001, SK-BAL-003
#[test]
fn the_service_vm_sets_a_target_within_the_limits_and_the_guest_hears_it() {
    let (mut sys, mut m) = balloon_system();
    let first = hcall(&mut sys, &mut m, ALPHA, call(Call::Wait, &[SLOT]));
    assert_eq!(
        status(&first),
        Ok([INITIAL, 0, 0]),
        "its first target is news"
    );
    let waits = hcall(&mut sys, &mut m, ALPHA, call(Call::Wait, &[SLOT]));
    assert_eq!(
        waits.reply,
        Some(Reply::ok([0; 3])),
        "blocked: finds 0 when woken"
    );
    assert_eq!(
        sys.partitions()[ALPHA].life().abi(),
        PartitionState::Blocked
    );
    for (pages, error) in [
        (MIN - 1, Error::BelowMinimum),
        (MAX + 1, Error::AboveMaximum),
    ] {
        let o = hcall(
            &mut sys,
            &mut m,
            0,
            call(Call::SetMemoryTarget, &[SLOT, 1, pages]),
        );
        assert_eq!(status(&o), Err(error));
        assert_eq!(
            sys.partitions()[ALPHA].life().abi(),
            PartitionState::Blocked
        );
    }
    let stale = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::SetMemoryTarget, &[SLOT, 2, 24]),
    );
    assert_eq!(
        status(&stale),
        Err(Error::PeerRestarted),
        "generation 2 is not alpha's"
    );
    let set = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::SetMemoryTarget, &[SLOT, 1, 24]),
    );
    assert_eq!(status(&set), Ok([0; 3]));
    assert_eq!(
        sys.partitions()[ALPHA].life().abi(),
        PartitionState::Runnable
    );
    let news = hcall(&mut sys, &mut m, ALPHA, call(Call::Wait, &[SLOT]));
    assert_eq!(status(&news), Ok([24, 0, 0]), "the new target, once");
    let buffer = GUEST_BASE + 0x800;
    let info = hcall(&mut sys, &mut m, 0, call(Call::MemoryInfo, &[SLOT, buffer]));
    assert!(status(&info).is_ok());
    let mut bytes = [0u8; INFO_WORDS * 8];
    m.read_ram(HOST_BASE + (buffer - GUEST_BASE), &mut bytes);
    let words =
        core::array::from_fn(|i| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap()));
    let info = Info::from_words(&words);
    assert_eq!(
        (info.held, info.target, info.min, info.max),
        (INITIAL, 24, MIN, MAX)
    );
}

/// Verifies: SK-BAL-006
#[test]
fn a_report_is_shown_beside_the_kernels_counts_and_tells_the_service_vm() {
    let (mut sys, mut m) = balloon_system();
    let o = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::BalloonReport, &[SLOT, 5, 9, 1]),
    );
    assert_eq!(
        status(&o),
        Ok([INITIAL, INITIAL, MAX]),
        "target, held, maximum"
    );
    let buffer = GUEST_BASE + 0x800;
    let event = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::WaitEvent, &[SYSTEM, buffer]),
    );
    let [kind, partition, _] = status(&event).unwrap();
    assert_eq!((kind, partition), (EventKind::Memory as u64, ALPHA as u64));
    let memory = sys.balloon.memory(ALPHA).unwrap();
    assert_eq!(
        (
            memory.report.free,
            memory.report.used,
            memory.report.failures
        ),
        (5, 9, 1)
    );
    assert_eq!(memory.held, INITIAL, "the guest's claim changes no count");
}
