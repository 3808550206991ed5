//! Host tests of the queue hypercalls as a partition makes them (`queues.rs`):
//! decoding against the caller's capabilities, copies and flips through the
//! ledger, blocking and waking, and the answers a peer's end brings. The
//! ledger's own invariants are property-tested in `flip::tests`; here the
//! front end is: what reaches the ledger, and what the caller is told.

use super::tests::*;
use super::*;
use crate::caps::{Cap, CapTable, CapType};
use crate::package::{Kind, PartitionSpec, QueueSpec, encode};
use crate::resources::Resources;
use crate::supervision::Supervision;
use septum_abi::queue::{BatchEntry, COPY_MAX, Received, flags};
use septum_abi::{Call, PartitionState};

/// alpha's send end and beta's receive end of the one queue.
pub(super) const QUEUE_END: u64 = 3;
/// The service VM's control capabilities for alpha and beta.
pub(super) const CTL_ALPHA: u64 = 3;
pub(super) const CTL_BETA: u64 = 4;
pub(super) const ALPHA: usize = 1;
pub(super) const BETA: usize = 2;
/// Where beta's receive window starts.
pub(super) const WINDOW: u64 = septum_abi::layout::RECEIVE_WINDOW_BASE;
pub(super) const PAGE: u64 = 4096;

/// The service VM (holding control of alpha and beta), alpha and beta, with a
/// queue from alpha to beta of depth 4 and 4 pages in flight; all three run.
pub(super) fn queue_system() -> (System, FakeMachine) {
    let image = [0u8; 16];
    let caps = |index: usize| -> CapTable {
        let kind = if index == 0 {
            Kind::Service
        } else {
            Kind::Guest
        };
        let mut caps = caps_for(kind);
        let end = match index {
            ALPHA => Some((CapType::QueueSend, ALPHA as u16)),
            BETA => Some((CapType::QueueReceive, 0)),
            _ => None,
        };
        if index == 0 {
            for (slot, guest) in [(CTL_ALPHA, ALPHA), (CTL_BETA, BETA)] {
                caps[slot as usize] = Some(Cap {
                    ty: CapType::Control,
                    rights: CapType::Control.possible_rights(),
                    object: guest as u16,
                    badge: 0,
                });
            }
        }
        if let Some((ty, badge)) = end {
            caps[QUEUE_END as usize] = Some(Cap {
                ty,
                rights: ty.possible_rights(),
                object: 0,
                badge,
            });
        }
        caps
    };
    let names = ["service", "alpha", "beta"];
    let specs: Vec<PartitionSpec> = (0..3)
        .map(|i| {
            let mut resources = Resources::on_cores(RAM, RAM, &[0]);
            if i == BETA {
                resources.receive_window = 4 * PAGE;
            }
            PartitionSpec {
                name: names[i],
                kind: if i == 0 { Kind::Service } else { Kind::Guest },
                profile: crate::package::Profile::Native,
                ram_size: RAM,
                image: &image,
                entry_offset: 0,
                argument: 0,
                caps: caps(i),
                resources,
                supervision: Supervision::default(),
            }
        })
        .collect();
    let queues = [QueueSpec {
        sender: ALPHA,
        receiver: BETA,
        depth: 4,
        max_in_flight: 4,
    }];
    let bytes = encode(&specs, &queues, None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host: Vec<Range> = (0..3u64)
        .map(|i| Range::from_start_size(HOST_BASE + i * RAM, RAM).unwrap())
        .collect();
    let flip_bytes = crate::flip::Flip::kernel_memory(queues.into_iter());
    let flip = Range::from_start_size(HOST_BASE + 3 * RAM, flip_bytes).unwrap();
    let mut sys = System::new(&package, GUEST_BASE, &host, flip).unwrap();
    let mut m = FakeMachine {
        ram: vec![0; (3 * RAM + flip_bytes) as usize],
        console: String::new(),
        now_us: 0,
        relocation: Default::default(),
        translations: Vec::new(),
    };
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    (sys, m)
}

/// Host address of guest address `guest` of partition `index`.
pub(super) fn host(index: usize, guest: u64) -> u64 {
    HOST_BASE + index as u64 * RAM + (guest - GUEST_BASE)
}

pub(super) fn status(o: &Outcome) -> Result<[u64; 3], Error> {
    let reply = o.reply.expect("the caller is answered");
    Error::from_status(reply.status)
        .map(|()| reply.results)
        .map_err(|error| error.expect("a known error"))
}

/// Verifies: SK-MSG-001
#[test]
fn a_copied_message_arrives_whole_with_the_senders_badge() {
    let (mut sys, mut m) = queue_system();
    let text = b"through the kernel";
    m.write_ram(host(ALPHA, GUEST_BASE + 0x100), text);
    let sent = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(
            Call::Send,
            &[
                QUEUE_END,
                GUEST_BASE + 0x100,
                text.len() as u64,
                flags::COPY,
            ],
        ),
    );
    assert_eq!(status(&sent), Ok([1, 0, 0]), "one message waits");
    let buffer = GUEST_BASE + 0x2000;
    let got = hcall(
        &mut sys,
        &mut m,
        BETA,
        call(Call::Receive, &[QUEUE_END, WINDOW, buffer]),
    );
    let received = Received::from_results(status(&got).unwrap()).expect("a received message");
    assert_eq!(
        (received.len, received.badge, received.pages),
        (text.len() as u64, ALPHA as u16, 0)
    );
    let mut bytes = vec![0; text.len()];
    m.read_ram(host(BETA, buffer), &mut bytes);
    assert_eq!(bytes, text);
    let empty = hcall(
        &mut sys,
        &mut m,
        BETA,
        call(Call::Receive, &[QUEUE_END, WINDOW, buffer]),
    );
    assert_eq!(status(&empty), Err(Error::Empty));
}

/// Verifies: SK-MSG-001
#[test]
fn a_flipped_page_goes_out_comes_back_on_release_and_is_reclaimed() {
    let (mut sys, mut m) = queue_system();
    let page = GUEST_BASE + 4 * PAGE;
    let sent = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Send, &[QUEUE_END, page, PAGE, 0]),
    );
    assert_eq!(status(&sent), Ok([1, 0, 0]));
    let again = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Send, &[QUEUE_END, page, PAGE, 0]),
    );
    assert_eq!(status(&again), Err(Error::InFlight), "the page is away");
    let nothing = hcall(&mut sys, &mut m, ALPHA, call(Call::Reclaim, &[QUEUE_END]));
    assert_eq!(
        status(&nothing),
        Err(Error::Empty),
        "nothing has come home yet"
    );
    let got = hcall(
        &mut sys,
        &mut m,
        BETA,
        call(Call::Receive, &[QUEUE_END, WINDOW, 0]),
    );
    let received = Received::from_results(status(&got).unwrap()).expect("a received message");
    assert_eq!((received.len, received.pages), (PAGE, 1));
    let released = hcall(
        &mut sys,
        &mut m,
        BETA,
        call(Call::Release, &[QUEUE_END, WINDOW, 1]),
    );
    assert_eq!(status(&released), Ok([0; 3]));
    let home = hcall(&mut sys, &mut m, ALPHA, call(Call::Reclaim, &[QUEUE_END]));
    assert_eq!(status(&home), Ok([page, 1, 0]));
}

/// Verifies: SK-MSG-001
#[test]
fn a_batch_sends_each_page_of_its_list() {
    let (mut sys, mut m) = queue_system();
    let list = GUEST_BASE + 0x800;
    for (i, page) in [6u64, 7].into_iter().enumerate() {
        let entry = BatchEntry {
            page: GUEST_BASE + page * PAGE,
            len: PAGE,
        };
        m.write_ram(
            host(ALPHA, list + 8 * i as u64),
            &entry.to_word().expect("a valid entry").to_le_bytes(),
        );
    }
    let sent = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::SendBatch, &[QUEUE_END, list, 2, 0]),
    );
    assert_eq!(status(&sent), Ok([2, 0, 0]));
    let too_long = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::SendBatch, &[QUEUE_END, list, 17, 0]),
    );
    assert_eq!(status(&too_long), Err(Error::TooLong));
    let copy = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::SendBatch, &[QUEUE_END, list, 1, flags::COPY]),
    );
    assert_eq!(status(&copy), Err(Error::InvalidArgument));
}

/// Verifies: SK-MSG-001, SK-CAP-001
#[test]
fn bad_queue_calls_are_refused_and_change_nothing() {
    let (mut sys, mut m) = queue_system();
    let before = sys.flip.totals();
    let cases: [(usize, Call, [u64; 4], Error); 5] = [
        // beta holds the receive end: it cannot send on it.
        (
            BETA,
            Call::Send,
            [QUEUE_END, GUEST_BASE, PAGE, 0],
            Error::WrongType,
        ),
        // An unknown flag.
        (
            ALPHA,
            Call::Send,
            [QUEUE_END, GUEST_BASE, PAGE, 1 << 40],
            Error::InvalidArgument,
        ),
        // A copy longer than a copy slot.
        (
            ALPHA,
            Call::Send,
            [QUEUE_END, GUEST_BASE, COPY_MAX + 1, flags::COPY],
            Error::TooLong,
        ),
        // A copy from outside the sender's RAM.
        (
            ALPHA,
            Call::Send,
            [QUEUE_END, GUEST_BASE + RAM, 8, flags::COPY],
            Error::BadAddress,
        ),
        // A page that is not the sender's.
        (
            ALPHA,
            Call::Send,
            [QUEUE_END, GUEST_BASE + RAM, PAGE, 0],
            Error::NotOwned,
        ),
    ];
    for (caller, number, args, error) in cases {
        let o = hcall(&mut sys, &mut m, caller, call(number, &args));
        assert_eq!(status(&o), Err(error), "{number:?} {args:x?}");
    }
    assert_eq!(sys.flip.totals(), before);
    assert_eq!(sys.flip.waiting(0), 0);
}

/// Verifies: SK-MSG-001
#[test]
fn a_full_queue_says_so_and_keeps_its_messages() {
    let (mut sys, mut m) = queue_system();
    for waiting in 1..=4 {
        let o = hcall(
            &mut sys,
            &mut m,
            ALPHA,
            call(Call::Send, &[QUEUE_END, GUEST_BASE, 1, flags::COPY]),
        );
        assert_eq!(status(&o), Ok([waiting, 0, 0]));
    }
    let full = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Send, &[QUEUE_END, GUEST_BASE, 1, flags::COPY]),
    );
    assert_eq!(status(&full), Err(Error::QueueFull));
    assert_eq!(sys.flip.waiting(0), 4);
}

/// Verifies: SK-MSG-001
#[test]
fn a_receiver_waiting_on_its_end_is_woken_by_a_send() {
    let (mut sys, mut m) = queue_system();
    let waits = hcall(&mut sys, &mut m, BETA, call(Call::Wait, &[QUEUE_END]));
    assert_eq!(
        waits.reply,
        Some(Reply::ok([0; 3])),
        "blocked: finds 0 when woken"
    );
    assert_eq!(sys.partitions()[BETA].life().abi(), PartitionState::Blocked);
    hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Send, &[QUEUE_END, GUEST_BASE, 1, flags::COPY]),
    );
    assert_eq!(
        sys.partitions()[BETA].life().abi(),
        PartitionState::Runnable
    );
    let has_work = hcall(&mut sys, &mut m, BETA, call(Call::Wait, &[QUEUE_END]));
    assert_eq!(status(&has_work), Ok([1, 0, 0]), "work waits: at once");
}

/// A guest blocked in a wait is not out of the service VM's reach: it can be
/// restarted (and runs again, its wait forgotten) or stopped.
/// Verifies: SK-HM-002
#[test]
fn a_guest_blocked_in_a_wait_can_be_restarted_and_stopped() {
    let (mut sys, mut m) = queue_system();
    hcall(&mut sys, &mut m, BETA, call(Call::Wait, &[QUEUE_END]));
    assert_eq!(sys.partitions()[BETA].life().abi(), PartitionState::Blocked);
    let restart = hcall(&mut sys, &mut m, 0, call(Call::Restart, &[CTL_BETA, 0]));
    assert_eq!(status(&restart), Ok([0; 3]));
    assert_eq!(sys.partitions()[BETA].life().abi(), PartitionState::Loading);
    while sys.owes_work(BETA) && sys.work(BETA, &mut m) {}
    assert_eq!(
        sys.partitions()[BETA].life().abi(),
        PartitionState::Runnable
    );
    hcall(&mut sys, &mut m, BETA, call(Call::Wait, &[QUEUE_END]));
    assert_eq!(sys.partitions()[BETA].life().abi(), PartitionState::Blocked);
    let stop = hcall(&mut sys, &mut m, 0, call(Call::Stop, &[CTL_BETA, 0]));
    assert_eq!(status(&stop), Ok([0; 3]));
    assert_eq!(sys.partitions()[BETA].life().abi(), PartitionState::Stopped);
    // Its peer still gets on: a send finds the receiver ended.
    let send = hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Send, &[QUEUE_END, GUEST_BASE, 1, flags::COPY]),
    );
    assert_eq!(status(&send), Err(Error::PeerEnded));
}

/// Verifies: SK-MSG-001
#[test]
fn an_ended_peer_is_reported_after_what_it_sent() {
    let (mut sys, mut m) = queue_system();
    hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::Send, &[QUEUE_END, GUEST_BASE, 1, flags::COPY]),
    );
    hcall(&mut sys, &mut m, ALPHA, call(Call::Exit, &[SELF, 0]));
    let buffer = GUEST_BASE + 0x2000;
    let sent_before = hcall(
        &mut sys,
        &mut m,
        BETA,
        call(Call::Receive, &[QUEUE_END, WINDOW, buffer]),
    );
    assert!(
        status(&sent_before).is_ok(),
        "what it sent before it ended is received"
    );
    let ended = hcall(
        &mut sys,
        &mut m,
        BETA,
        call(Call::Receive, &[QUEUE_END, WINDOW, buffer]),
    );
    assert_eq!(status(&ended), Err(Error::PeerEnded));
    let waits = hcall(&mut sys, &mut m, BETA, call(Call::Wait, &[QUEUE_END]));
    assert_eq!(status(&waits), Err(Error::PeerEnded));
}
