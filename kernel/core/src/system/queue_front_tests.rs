//! More host tests of the queue hypercalls through the dispatcher (`queues.rs`),
//! beside `queue_tests.rs`, whose system they share: who runs after a send
//! (an immediate send lends the core to the receiver that waits for it), who
//! is woken and when (room on a full queue, a page to reclaim, a peer that
//! restarted or ended), what a restart of a queue end does to the ledger and
//! its peer, and the refusals of `send_batch`, `release` and `reclaim`.

use super::queue_tests::*;
use super::tests::*;
use super::*;
use septum_abi::queue::{BatchEntry, Received, flags};
use septum_abi::{Call, PartitionState};

/// Where alpha keeps the text it copies, and beta its copy buffer.
const TEXT: u64 = GUEST_BASE + 0x100;
const BUFFER: u64 = GUEST_BASE + 0x2000;

fn state(sys: &System, index: usize) -> PartitionState {
    sys.partitions()[index].life().abi()
}

/// alpha copies one byte to beta, with `flags` besides the copy flag.
fn copy(sys: &mut System, m: &mut FakeMachine, flags: u64) -> Outcome {
    hcall(
        sys,
        m,
        ALPHA,
        call(Call::Send, &[QUEUE_END, TEXT, 1, flags::COPY | flags]),
    )
}

fn receive(sys: &mut System, m: &mut FakeMachine) -> Outcome {
    hcall(
        sys,
        m,
        BETA,
        call(Call::Receive, &[QUEUE_END, WINDOW, BUFFER]),
    )
}

fn wait(sys: &mut System, m: &mut FakeMachine, caller: usize) -> Outcome {
    hcall(sys, m, caller, call(Call::Wait, &[QUEUE_END]))
}

/// An immediate send to a receiver that waits on the queue, on the sender's
/// core, runs the receiver at once in the sender's stead; the loan ends when
/// the receiver waits again. Without a waiting receiver it changes nothing.
/// Verifies: SK-MSG-004
#[test]
fn an_immediate_send_runs_the_receiver_that_waits_for_it() {
    let (mut sys, mut m) = queue_system();
    let alone = copy(&mut sys, &mut m, flags::IMMEDIATE);
    assert_eq!(status(&alone), Ok([1, 0, 0]));
    assert_eq!(
        alone.run,
        Run::Vcpu(ALPHA),
        "nobody waits: the sender goes on"
    );
    assert_eq!(sys.lent[0], None);
    assert!(status(&receive(&mut sys, &mut m)).is_ok());

    let waits = wait(&mut sys, &mut m, BETA);
    assert_eq!(waits.reply, Some(Reply::ok([0; 3])));
    assert_eq!(state(&sys, BETA), PartitionState::Blocked);
    let sent = copy(&mut sys, &mut m, flags::IMMEDIATE);
    assert_eq!(status(&sent), Ok([1, 0, 0]), "the sender is answered");
    assert_eq!(sent.run, Run::Vcpu(BETA), "and the receiver runs at once");
    assert_eq!(sys.lent[0], Some((ALPHA, BETA)), "in the sender's stead");
    assert_eq!(state(&sys, BETA), PartitionState::Runnable);

    assert!(status(&receive(&mut sys, &mut m)).is_ok());
    wait(&mut sys, &mut m, BETA);
    assert_eq!(sys.lent[0], None, "waiting again ends the loan");
    // A plain send wakes the receiver but leaves the core to the sender.
    let plain = copy(&mut sys, &mut m, 0);
    assert_eq!(plain.run, Run::Vcpu(ALPHA));
    assert_eq!(state(&sys, BETA), PartitionState::Runnable);
    assert_eq!(sys.lent[0], None);
}

/// A sender told its queue is full waits on its end and runs again when a
/// receive makes room; its wait then returns at once.
/// Verifies: SK-MSG-004
#[test]
fn a_sender_told_the_queue_is_full_is_woken_by_the_receive_that_makes_room() {
    let (mut sys, mut m) = queue_system();
    for _ in 0..4 {
        assert!(status(&copy(&mut sys, &mut m, 0)).is_ok());
    }
    assert_eq!(status(&copy(&mut sys, &mut m, 0)), Err(Error::QueueFull));
    assert!(
        !m.console.contains("denied"),
        "a full queue is flow control, not a refusal"
    );
    wait(&mut sys, &mut m, ALPHA);
    assert_eq!(state(&sys, ALPHA), PartitionState::Blocked);
    assert!(status(&receive(&mut sys, &mut m)).is_ok());
    assert_eq!(state(&sys, ALPHA), PartitionState::Runnable);
    assert_eq!(status(&wait(&mut sys, &mut m, ALPHA)), Ok([1, 0, 0]));
    assert_eq!(status(&copy(&mut sys, &mut m, 0)), Ok([4, 0, 0]));
}

/// A sender waiting for its page is woken by the receiver's release, and
/// reclaims the page it sent.
/// Verifies: SK-MSG-004, SK-MSG-001
#[test]
fn a_sender_waiting_for_its_page_is_woken_by_the_release() {
    let (mut sys, mut m) = queue_system();
    let page = GUEST_BASE + 5 * PAGE;
    flip(&mut sys, &mut m, page);
    wait(&mut sys, &mut m, ALPHA);
    assert_eq!(state(&sys, ALPHA), PartitionState::Blocked);
    assert!(status(&receive(&mut sys, &mut m)).is_ok());
    assert_eq!(
        state(&sys, ALPHA),
        PartitionState::Blocked,
        "a receive gives nothing back"
    );
    let released = hcall(
        &mut sys,
        &mut m,
        BETA,
        call(Call::Release, &[QUEUE_END, WINDOW, 1]),
    );
    assert_eq!(status(&released), Ok([0; 3]));
    assert_eq!(state(&sys, ALPHA), PartitionState::Runnable);
    assert_eq!(status(&wait(&mut sys, &mut m, ALPHA)), Ok([1, 0, 0]));
    let home = hcall(&mut sys, &mut m, ALPHA, call(Call::Reclaim, &[QUEUE_END]));
    assert_eq!(status(&home), Ok([page, 1, 0]));
}

/// The `@@ ... frames` line of `partition`, `when` the restart is: the total
/// and the mapped, queued and free counts.
fn totals(console: &str, partition: &str, when: &str) -> [u64; 4] {
    let prefix = format!("@@ partition {partition} frames total=");
    let line = console
        .lines()
        .find(|line| line.starts_with(&prefix) && line.contains(&format!(" {when}: ")))
        .unwrap_or_else(|| panic!("no {when} totals in\n{console}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|word| !word.is_empty())
        .map(|word| word.parse().unwrap())
        .collect();
    numbers.try_into().expect("four numbers")
}

/// alpha flips the page at `page` to beta.
fn flip(sys: &mut System, m: &mut FakeMachine, page: u64) {
    let sent = hcall(sys, m, ALPHA, call(Call::Send, &[QUEUE_END, page, PAGE, 0]));
    assert!(status(&sent).is_ok());
}

/// The service VM restarts beta while it holds one page alpha sent, another
/// waits for it on the queue and alpha waits on its end: the ledger's totals
/// are shown before and after (the same number of frames, none left
/// queued), both pages go home to alpha, and alpha is woken to be told once
/// that its peer restarted.
/// Verifies: SK-MSG-002, SK-MSG-004
#[test]
fn a_restarted_receiver_sends_the_pages_home_and_its_peer_is_told_once() {
    let (mut sys, mut m) = queue_system();
    let (held, queued) = (GUEST_BASE + 6 * PAGE, GUEST_BASE + 7 * PAGE);
    flip(&mut sys, &mut m, held);
    assert!(status(&receive(&mut sys, &mut m)).is_ok(), "beta holds it");
    flip(&mut sys, &mut m, queued);
    wait(&mut sys, &mut m, ALPHA);
    assert_eq!(state(&sys, ALPHA), PartitionState::Blocked);

    let restart = hcall(&mut sys, &mut m, 0, call(Call::Restart, &[CTL_BETA, 0]));
    assert_eq!(status(&restart), Ok([0; 3]));
    let [total, _, queued_before, _] = totals(&m.console, "beta", "before");
    let [total_after, _, queued_after, _] = totals(&m.console, "beta", "after");
    assert_eq!(queued_before, 1);
    assert_eq!((total_after, queued_after), (total, 0), "none made or lost");
    assert!(m.console.contains("@@ partition beta restart gen=2"));
    assert_eq!(
        state(&sys, ALPHA),
        PartitionState::Runnable,
        "alpha is woken"
    );
    assert_eq!(status(&wait(&mut sys, &mut m, ALPHA)), Ok([1, 0, 0]));
    let reclaim = |sys: &mut System, m: &mut FakeMachine| {
        status(&hcall(sys, m, ALPHA, call(Call::Reclaim, &[QUEUE_END])))
    };
    assert_eq!(
        reclaim(&mut sys, &mut m),
        Err(Error::PeerRestarted),
        "told once, on its next call"
    );
    let mut home = [0; 2].map(|_| reclaim(&mut sys, &mut m).expect("a page home")[0]);
    home.sort_unstable();
    assert_eq!(home, [held, queued], "both pages came home");
    assert!(
        status(&copy(&mut sys, &mut m, 0)).is_ok(),
        "and it sends on"
    );
    assert!(!m.console.contains("alpha denied"), "news, not refusals");
}

/// A receiver that waits when its sender exits is woken to learn it ended;
/// what the sender sent before is still received first.
/// Verifies: SK-MSG-004
#[test]
fn a_receiver_waiting_on_a_sender_that_exits_is_woken_and_told() {
    let (mut sys, mut m) = queue_system();
    wait(&mut sys, &mut m, BETA);
    assert_eq!(state(&sys, BETA), PartitionState::Blocked);
    hcall(&mut sys, &mut m, ALPHA, call(Call::Exit, &[SELF, 3]));
    assert!(m.console.contains("@@ partition alpha exit code=3"));
    assert_eq!(state(&sys, BETA), PartitionState::Runnable, "woken");
    assert_eq!(status(&wait(&mut sys, &mut m, BETA)), Err(Error::PeerEnded));
    assert_eq!(status(&receive(&mut sys, &mut m)), Err(Error::PeerEnded));
    assert_eq!(state(&sys, BETA), PartitionState::Runnable, "never blocked");
    assert!(!m.console.contains("beta denied"), "news, not refusals");
}

/// A sender waiting on a receiver that is stopped is woken too, and its
/// sends are answered `peer-ended` until the receiver is restarted.
/// Verifies: SK-MSG-004
#[test]
fn a_sender_waiting_on_a_stopped_receiver_is_woken_and_told() {
    let (mut sys, mut m) = queue_system();
    let page = GUEST_BASE + 7 * PAGE;
    flip(&mut sys, &mut m, page);
    wait(&mut sys, &mut m, ALPHA);
    assert_eq!(state(&sys, ALPHA), PartitionState::Blocked);
    let stop = hcall(&mut sys, &mut m, 0, call(Call::Stop, &[CTL_BETA, 0]));
    assert_eq!(status(&stop), Ok([0; 3]));
    assert_eq!(state(&sys, ALPHA), PartitionState::Runnable);
    // The page waiting for beta went home unread.
    assert_eq!(status(&wait(&mut sys, &mut m, ALPHA)), Ok([1, 0, 0]));
    let home = hcall(&mut sys, &mut m, ALPHA, call(Call::Reclaim, &[QUEUE_END]));
    assert_eq!(status(&home), Ok([page, 1, 0]));
    assert_eq!(status(&copy(&mut sys, &mut m, 0)), Err(Error::PeerEnded));
    assert_eq!(
        status(&wait(&mut sys, &mut m, ALPHA)),
        Err(Error::PeerEnded),
        "nothing left to wait for"
    );
    let restart = hcall(&mut sys, &mut m, 0, call(Call::Restart, &[CTL_BETA, 0]));
    assert_eq!(status(&restart), Ok([0; 3]));
    let after = copy(&mut sys, &mut m, 0);
    assert_eq!(
        status(&after),
        Err(Error::PeerRestarted),
        "its restart is news once"
    );
    assert_eq!(status(&copy(&mut sys, &mut m, 0)), Ok([1, 0, 0]));
}

/// Refusals of `send_batch`, `receive`, `release` and `reclaim` get their own
/// error, are reported as denied calls, and change no count of the ledger.
/// Verifies: SK-MSG-003, SK-AUD-001
#[test]
fn bad_batches_releases_and_reclaims_are_refused_and_change_nothing() {
    let (mut sys, mut m) = queue_system();
    let list = GUEST_BASE + 0x800;
    let entry = BatchEntry {
        page: GUEST_BASE + 8 * PAGE,
        len: PAGE,
    };
    m.write_ram(
        host(ALPHA, list),
        &entry.to_word().expect("a valid entry").to_le_bytes(),
    );
    // A copied message for beta, which it then receives without a buffer.
    assert!(status(&copy(&mut sys, &mut m, 0)).is_ok());
    let before = sys.flip.totals();
    let cases: [(usize, Call, [u64; 4], Error); 7] = [
        (
            ALPHA,
            Call::SendBatch,
            [QUEUE_END, list, 1, 1 << 40],
            Error::InvalidArgument,
        ),
        (
            ALPHA,
            Call::SendBatch,
            [QUEUE_END, list, 0, 0],
            Error::InvalidArgument,
        ),
        (
            ALPHA,
            Call::SendBatch,
            [QUEUE_END, GUEST_BASE + RAM - 8, 2, 0],
            Error::BadAddress,
        ),
        // A copied message needs a copy buffer in the receiver's RAM.
        (
            BETA,
            Call::Receive,
            [QUEUE_END, WINDOW, GUEST_BASE + RAM, 0],
            Error::BadAddress,
        ),
        // Nothing of the window was received.
        (
            BETA,
            Call::Release,
            [QUEUE_END, WINDOW, 1, 0],
            Error::NotOwned,
        ),
        // The ends are not interchangeable.
        (
            ALPHA,
            Call::Release,
            [QUEUE_END, WINDOW, 1, 0],
            Error::WrongType,
        ),
        (BETA, Call::Reclaim, [QUEUE_END, 0, 0, 0], Error::WrongType),
    ];
    for (caller, number, args, error) in cases {
        let o = hcall(&mut sys, &mut m, caller, call(number, &args));
        assert_eq!(status(&o), Err(error), "{number:?} {args:x?}");
        let name = sys.partitions()[caller].name();
        let line = format!(
            "@@ partition {name} denied call={} error={}",
            number as u64,
            error.name()
        );
        assert!(m.console.contains(&line), "{line:?} not in\n{}", m.console);
    }
    assert_eq!(sys.flip.totals(), before);
    assert_eq!(sys.flip.waiting(0), 1, "the message still waits");
    let got = receive(&mut sys, &mut m);
    let received = Received::from_results(status(&got).unwrap()).expect("a message");
    assert_eq!((received.len, received.badge), (1, ALPHA as u16));
}
