use super::*;
use crate::event::{Fault, Reason};
use proptest::prelude::*;

fn record(time_us: u64, value: u32) -> Record {
    Record {
        time_us,
        kind: Kind::Call,
        partition: 2,
        vcpu: 3,
        code: 16,
        value,
    }
}

/// Verifies: SK-AUD-011
#[test]
fn a_record_survives_its_wire_form_and_bad_bytes_are_refused() {
    let original = Record {
        time_us: 0x0102_0304_0506_0708,
        kind: Kind::Supervision,
        partition: 5,
        vcpu: NONE,
        code: Supervision::Restart as u8,
        value: 7,
    };
    let bytes = original.encode();
    assert_eq!(bytes[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
    let restart = Supervision::Restart as u8;
    assert_eq!(
        bytes[8..],
        [Kind::Supervision as u8, 5, NONE, restart, 7, 0, 0, 0]
    );
    assert_eq!(Record::decode(&bytes), Ok(original));
    assert_eq!(Record::decode(&bytes[..15]), Err(DecodeError::Length(15)));
    let mut unknown = bytes;
    unknown[8] = 0;
    assert_eq!(Record::decode(&unknown), Err(DecodeError::Kind(0)));
    for value in 0..=u8::MAX {
        if let Some(kind) = Kind::from_u8(value) {
            assert_eq!(kind as u8, value);
        }
        if let Some(code) = TrapCode::from_u8(value) {
            assert_eq!(code as u8, value);
        }
        if let Some(event) = Supervision::from_u8(value) {
            assert_eq!(event as u8, value);
        }
    }
}

/// Verifies: SK-AUD-011
#[test]
fn supervision_events_map_to_their_records_and_others_to_none() {
    let fault = Event::PartitionFault {
        name: "crasher",
        fault: Fault::new(Reason::UnhandledException, 0x4000_0000, 0),
        generation: 2,
        response: Response::Suspend,
        vcpu: 0,
    };
    assert_eq!(
        Supervision::of_event(&fault),
        Some(("crasher", Supervision::Fault, 2))
    );
    let stopped = Event::PartitionFault {
        name: "crasher",
        fault: Fault::new(Reason::UnhandledException, 0x4000_0000, 0),
        generation: 2,
        response: Response::Stop,
        vcpu: 0,
    };
    assert_eq!(
        Supervision::of_event(&stopped),
        Some(("crasher", Supervision::FaultStopped, 2))
    );
    let restart = Event::PartitionRestart {
        name: "crasher",
        generation: 3,
        in_period: 1,
    };
    assert_eq!(
        Supervision::of_event(&restart),
        Some(("crasher", Supervision::Restart, 3))
    );
    assert_eq!(Supervision::of_event(&Event::KernelPanic), None);
}

/// Verifies: SK-AUD-011
#[test]
fn a_ring_without_room_counts_every_record_as_overwritten() {
    let mut ring = Ring::new(&mut []);
    ring.push(&record(1, 1));
    assert_eq!((ring.capacity(), ring.len(), ring.overwritten()), (0, 0, 1));
    assert_eq!(ring.records().count(), 0);
}

proptest! {
    /// Verifies: SK-AUD-011
    #[test]
    fn the_ring_keeps_the_latest_records_in_order_and_counts_the_rest(
        capacity in 0usize..12,
        pushed in 0usize..40,
    ) {
        let mut slots = vec![[0; 2]; capacity];
        let mut ring = Ring::new(&mut slots);
        for n in 0..pushed {
            ring.push(&record(n as u64, n as u32));
            prop_assert!(ring.len() <= ring.capacity());
        }
        let held = pushed.min(capacity);
        prop_assert_eq!(ring.len(), held);
        prop_assert_eq!(ring.overwritten(), (pushed - held) as u64);
        let times: Vec<u64> = ring
            .records()
            .map(|bytes| Record::decode(&bytes).expect("a record the ring wrote").time_us)
            .collect();
        let expected: Vec<u64> = ((pushed - held) as u64..pushed as u64).collect();
        prop_assert_eq!(times, expected);
    }
}

/// Verifies: SK-AUD-011
#[test]
fn a_successful_queue_or_balloon_call_adds_its_own_note_and_a_refused_one_does_not() {
    let call = |number: Call, args: [u64; 6]| CallRegisters {
        number: number as u64,
        args,
    };
    let ok = Reply {
        status: 0,
        results: [3, 0, 0],
    };
    let send = call(Call::Send, [4, 0, 0, 0, 0, 0]);
    let (this, detail) = Note::of_call(&send, Some(&ok));
    assert_eq!((this.kind, this.code, this.value), (Kind::Call, 16, 0));
    let detail = detail.expect("a send that succeeded");
    assert_eq!(
        (detail.kind, detail.code, detail.value),
        (Kind::QueueSend, 4, 3)
    );
    let inflate = call(Call::Inflate, [2, 0x1000, 64, 0, 0, 0]);
    let (_, detail) = Note::of_call(&inflate, Some(&ok));
    assert_eq!(detail.map(|n| (n.kind, n.value)), Some((Kind::Inflate, 64)));
    let refused = Reply {
        status: (-15i64) as u64,
        results: [0; 3],
    };
    let (this, detail) = Note::of_call(&send, Some(&refused));
    assert_eq!((this.value as i32, detail), (-15, None));
    let (this, detail) = Note::of_call(&call(Call::WaitEvent, [0; 6]), None);
    assert_eq!((this.value, detail), (NO_REPLY, None));
    let wait = Note::of_trap(&Trap::Wait).expect("a wait is a trap");
    assert_eq!((wait.kind, wait.code), (Kind::Trap, TrapCode::Wait as u8));
    assert_eq!(Note::of_trap(&Trap::Hypercall(send)), None);
}
