//! Host tests of the kernel's counts for the status view (`usage.rs`), through
//! [`System::handle`] as the kernel drives it: time run in round-robin turns
//! gives each partition its share of the frames, hypercalls and preemptions
//! are counted under the partition that trapped, a queue's waiting messages
//! show under its receiver, and the call is refused without its capability,
//! writing nothing.

use super::queue_tests::*;
use super::tests::*;
use super::*;
use crate::usage::{DEFAULT_FRAME_US, FRAMES};
use septum_abi::queue::flags;
use septum_abi::usage::{TrapKind, USAGE_WORDS, Usage};
use septum_abi::{Call, Error};

/// Where the service VM takes the record.
const RECORD: u64 = GUEST_BASE + 0x3000;
/// Length of every turn in these tests, in µs.
const TURN_US: u64 = 2_000;

/// The service VM reads the record of the partition its slot `slot` names.
fn read(sys: &mut System, m: &mut FakeMachine, slot: u64) -> Result<Usage, Error> {
    status(&hcall(sys, m, 0, call(Call::Usage, &[slot, RECORD])))?;
    let mut bytes = [0u8; USAGE_WORDS * 8];
    m.read_ram(host(0, RECORD), &mut bytes);
    let words: Vec<u64> = bytes
        .chunks(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .collect();
    Ok(Usage::from_words(&words.try_into().unwrap()))
}

/// Runs the round robin of core 0 until `until_us`, each turn [`TURN_US`]
/// long and ended by the timer, but beta's, which beta ends by yielding; alpha
/// makes `calls` `identify` calls in each of its turns. How many turns each
/// partition had.
fn run_turns(sys: &mut System, m: &mut FakeMachine, until_us: u64, calls: u64) -> [u64; 3] {
    let mut turns = [0; 3];
    while m.now_us + TURN_US <= until_us {
        let vcpu = sys.loaded(0).expect("someone runs");
        if vcpu == ALPHA {
            for _ in 0..calls {
                let identified = hcall(sys, m, ALPHA, call(Call::Identify, &[SELF]));
                assert_eq!(identified.run, Run::Vcpu(ALPHA), "a call keeps the turn");
            }
        }
        m.now_us += TURN_US;
        turns[vcpu] += 1;
        if vcpu == BETA {
            hcall(sys, m, BETA, call(Call::Yield, &[SELF]));
        } else {
            trap(sys, m, vcpu, Trap::Preempted);
        }
    }
    turns
}

/// Three partitions taking 2 ms turns in a round robin each ran a third of the
/// last frames, by the kernel's clock, whether its turns ended by the timer or
/// by a yield; every call and preemption is counted under the partition that
/// made it.
/// Verifies: SK-AUD-008, SK-AUD-009
#[test]
fn turns_give_each_partition_its_share_and_traps_are_counted_where_they_happen() {
    let (mut sys, mut m) = queue_system();
    let frames = FRAMES as u64 - 1;
    let end_us = (frames + 1) * DEFAULT_FRAME_US;
    let turns = run_turns(&mut sys, &mut m, end_us, 3);
    m.now_us = end_us + 500;
    for (slot, index) in [(CTL_ALPHA, ALPHA), (CTL_BETA, BETA)] {
        let usage = read(&mut sys, &mut m, slot).unwrap();
        assert_eq!(usage.time_us, end_us + 500);
        assert_eq!((usage.frame_us, usage.frames), (DEFAULT_FRAME_US, frames));
        // 150 ms of frames, 75 turns of 2 ms, 25 each.
        assert_eq!(usage.run_us, 50_000, "{index}");
        assert_eq!(usage.share_permille(), 333);
    }
    let alpha = read(&mut sys, &mut m, CTL_ALPHA).unwrap();
    assert_eq!(alpha.hypercalls(), 3 * turns[ALPHA]);
    assert_eq!(alpha.traps[TrapKind::Preempted.number()], turns[ALPHA]);
    assert_eq!(alpha.traps_total(), 4 * turns[ALPHA]);
    let beta = read(&mut sys, &mut m, CTL_BETA).unwrap();
    assert_eq!(beta.hypercalls(), turns[BETA]);
    assert_eq!(beta.traps_total(), turns[BETA]);
    // The service VM's own, through its system capability: its calls so far
    // (ready, and the four reads before this one) and this one.
    let own = read(&mut sys, &mut m, SYSTEM).unwrap();
    assert_eq!(own.hypercalls(), 6);
    assert_eq!(own.run_us, 50_000);
}

/// A message waiting on a queue shows under its receiver with the queue's
/// depth; the sender has none to receive.
/// Verifies: SK-AUD-008
#[test]
fn messages_waiting_show_under_the_receiver() {
    let (mut sys, mut m) = queue_system();
    let empty = read(&mut sys, &mut m, CTL_BETA).unwrap();
    assert_eq!((empty.waiting, empty.depth), (0, 4));
    for _ in 0..3 {
        let sent = hcall(
            &mut sys,
            &mut m,
            ALPHA,
            call(Call::Send, &[QUEUE_END, GUEST_BASE + 0x100, 1, flags::COPY]),
        );
        assert!(status(&sent).is_ok());
    }
    let beta = read(&mut sys, &mut m, CTL_BETA).unwrap();
    assert_eq!((beta.waiting, beta.depth), (3, 4));
    let alpha = read(&mut sys, &mut m, CTL_ALPHA).unwrap();
    assert_eq!((alpha.waiting, alpha.depth), (0, 0));
    assert_eq!(alpha.hypercalls(), 3);
}

/// Without the capability, or with a buffer outside the caller's RAM, the call
/// is refused and writes nothing.
/// Verifies: SK-AUD-008, SK-CAP-001
#[test]
fn the_call_needs_control_or_the_system_capability_and_writes_nothing_when_refused() {
    let (mut sys, mut m) = queue_system();
    let refused = |sys: &mut System, m: &mut FakeMachine, vcpu, args: &[u64]| {
        status(&hcall(sys, m, vcpu, call(Call::Usage, args))).unwrap_err()
    };
    // A guest has neither.
    assert_eq!(
        refused(&mut sys, &mut m, ALPHA, &[SELF, RECORD]),
        Error::WrongType
    );
    assert_eq!(
        refused(&mut sys, &mut m, ALPHA, &[SYSTEM, RECORD]),
        Error::NoSuchSlot
    );
    assert_eq!(
        refused(&mut sys, &mut m, 0, &[CONSOLE, RECORD]),
        Error::WrongType
    );
    assert_eq!(
        refused(&mut sys, &mut m, 0, &[CTL_ALPHA, GUEST_BASE + RAM - 8]),
        Error::BadAddress
    );
    let mut bytes = [0u8; USAGE_WORDS * 8];
    m.read_ram(host(0, RECORD), &mut bytes);
    assert!(bytes.iter().all(|&b| b == 0), "nothing written");
    assert!(
        m.console
            .contains("@@ partition alpha denied call=30 error=wrong-type")
    );
}
