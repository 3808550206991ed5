//! The devirtualization front end through the dispatch the kernel uses: a
//! devirtualizable guest starts native and alone, virtualizes itself (the
//! service VM starts), has pages evacuated while translated, is refused
//! devirtualization while another guest lives, is devirtualized (every page
//! home, the service VM stopped) and virtualizes again (the service VM
//! restarted).

use septum_abi::audit::Relocation as Step;
use septum_abi::{Call, Error, PartitionState};

use super::tests::{
    FakeMachine, GUEST_BASE, RAM, SELF, SYSTEM, call, caps_for, enter, hcall, states,
};
use super::{Entry, Run, System, TurnEnd};
use crate::audit::AuditKind;
use crate::caps::{Cap, CapType};
use crate::memory::Range;
use crate::package::{Kind, PartitionSpec, encode};
use crate::relocation::model::Machine;
use crate::relocation::{Access, Frame, FrameRange, GuestPage, Layout};
use crate::resources::Resources;
use crate::supervision::Supervision;

/// Slots of the service VM's control capabilities for `devirt` and `other`.
const CONTROL_DEVIRT: u64 = 3;
const CONTROL_OTHER: u64 = 4;
/// The devirtualizable guest's partition and vCPU.
const DEVIRT: usize = 1;
/// Its RAM, placed identity, and the frames lent for its moves.
const PAGES: u64 = RAM / 4096;
const EXTRA: u64 = 0x5000_0000;

fn layout() -> Layout {
    Layout {
        guest_base: GuestPage(GUEST_BASE / 4096),
        home: Frame(GUEST_BASE / 4096),
        pages: PAGES,
        extra: FrameRange {
            first: Frame(EXTRA / 4096),
            count: PAGES + 1,
        },
    }
}

/// The service VM (core 0), the devirtualizable guest (core 1, placed
/// identity) and another guest (core 2), booted: the devirtualizable guest
/// runs natively, alone.
fn booted() -> (System, FakeMachine) {
    booted_with(Supervision::default())
}

/// As [`booted`], the devirtualizable guest supervised as `supervision` says.
fn booted_with(supervision: Supervision) -> (System, FakeMachine) {
    let image = [0u8; 16];
    let mut service_caps = caps_for(Kind::Service);
    for (slot, object) in [(CONTROL_DEVIRT, 1), (CONTROL_OTHER, 2)] {
        service_caps[slot as usize] = Some(Cap {
            ty: CapType::Control,
            rights: CapType::Control.possible_rights(),
            object,
            badge: 0,
        });
    }
    let spec = |name, kind, caps, core: u8| PartitionSpec {
        name,
        kind,
        profile: crate::package::Profile::Native,
        ram_size: RAM,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps,
        resources: Resources::on_cores(RAM, RAM, &[core]),
        supervision: Supervision::default(),
    };
    let service = spec("service", Kind::Service, service_caps, 0);
    let mut devirt = spec("devirt", Kind::Guest, caps_for(Kind::Guest), 1);
    devirt.supervision = supervision;
    devirt.resources.at = Some(GUEST_BASE);
    devirt.resources.devirtualize = true;
    let other = spec("other", Kind::Guest, caps_for(Kind::Guest), 2);
    let bytes = encode(&[service, devirt, other], &[], None).unwrap();
    let package = crate::package::Package::parse(&bytes).unwrap();
    let host = [
        Range::from_start_size(0x8000_0000, RAM).unwrap(),
        Range::from_start_size(GUEST_BASE, RAM).unwrap(),
        Range::from_start_size(0x8000_0000 + RAM, RAM).unwrap(),
    ];
    let mut sys = System::new(&package, GUEST_BASE, &host, Range::default()).unwrap();
    let extra = Range::from_start_size(EXTRA, (PAGES + 1) * 4096).unwrap();
    sys.enable_devirtualization(DEVIRT, extra).unwrap();
    let mut m = FakeMachine {
        ram: vec![0; 3 * RAM as usize],
        console: String::new(),
        now_us: 0,
        relocation: Machine::identity(&layout(), |page| page.0),
        translations: Vec::new(),
    };
    enter(&mut sys, 0, Entry::Start, &mut m);
    (sys, m)
}

/// The status of vCPU `vcpu`'s call.
fn status(sys: &mut System, m: &mut FakeMachine, vcpu: usize, number: Call, args: &[u64]) -> u64 {
    hcall(sys, m, vcpu, call(number, args))
        .reply
        .expect("a reply")
        .status
}

/// A relocation call ends with no page write-protected and every change
/// flushed: no guest waits on a move between calls.
fn assert_settled(m: &FakeMachine) {
    assert!(
        m.relocation
            .tables
            .values()
            .all(|entry| entry.access == Access::ReadWrite)
            && m.relocation.seen == m.relocation.tables,
        "a call ends with no page write-protected and every change flushed"
    );
}

/// The service VM relocates until the work is done.
fn relocate_to_the_end(sys: &mut System, m: &mut FakeMachine) {
    for _ in 0..1000 {
        let reply = hcall(sys, m, 0, call(Call::Relocate, &[CONTROL_DEVIRT])).reply;
        assert_settled(m);
        match reply {
            Some(reply) if reply.status == 0 && reply.results[0] == 1 => continue,
            _ => return,
        }
    }
    panic!("the relocation never ended");
}

/// Verifies: SK-ISO-013, SK-RIP-006, SK-HM-014
#[test]
fn a_devirtualizable_guest_starts_native_alone_and_goes_back_and_forth() {
    let (mut sys, mut m) = booted();
    let state = |sys: &System, index: usize| states(sys)[index].0;
    assert_eq!(state(&sys, DEVIRT), PartitionState::Runnable);
    assert_eq!(
        state(&sys, 0),
        PartitionState::Waiting,
        "native: nothing else runs"
    );
    assert_eq!(sys.devirtualizable(), Some((DEVIRT, false)));

    // Only the devirtualizable guest may virtualize itself, and only while native.
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        0
    );
    assert_eq!(m.translations, [(DEVIRT, true)]);
    assert!(m.console.contains("@@ partition devirt virtualized"));
    assert_eq!(
        state(&sys, 0),
        PartitionState::Runnable,
        "the service VM starts"
    );
    let refused = Error::BadState.code() as u64;
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        refused
    );
    assert_eq!(status(&mut sys, &mut m, 0, Call::Ready, &[SYSTEM]), 0);
    let not_devirtualizable = Error::NotDevirtualizable.code() as u64;
    assert_eq!(
        status(&mut sys, &mut m, 0, Call::Virtualize, &[SELF]),
        not_devirtualizable
    );
    assert_eq!(
        status(
            &mut sys,
            &mut m,
            0,
            Call::Evacuate,
            &[CONTROL_OTHER, GUEST_BASE, 1]
        ),
        not_devirtualizable
    );

    // Evacuate all but one of its frames while it runs (more than one call's
    // batch): the pages move with their contents, the frames left are
    // scrubbed, and the back map agrees.
    let half = PAGES - 1;
    let bad_range = Error::BadAddress.code() as u64;
    assert_eq!(
        status(
            &mut sys,
            &mut m,
            0,
            Call::Evacuate,
            &[CONTROL_DEVIRT, EXTRA, 1]
        ),
        bad_range,
        "a lent frame no page maps"
    );
    assert_eq!(
        status(
            &mut sys,
            &mut m,
            0,
            Call::Evacuate,
            &[CONTROL_DEVIRT, GUEST_BASE, half]
        ),
        0
    );
    assert_settled(&m);
    relocate_to_the_end(&mut sys, &mut m);
    assert!(
        m.console
            .contains("@@ partition devirt evacuated first=0x40000000 pages=15")
    );
    for page in layout().guest_pages() {
        let entry = m.relocation.tables[&page];
        let home = layout().home_of(page);
        assert_eq!(entry.frame != home, page.0 - layout().guest_base.0 < half);
        assert_eq!(entry.access, Access::ReadWrite);
        assert_eq!(m.relocation.guest_read(page), page.0, "no write lost");
    }
    assert!(
        (0..half).all(|i| m.relocation.scrubbed.contains(&Frame(layout().home.0 + i))),
        "every frame left is scrubbed"
    );
    // A restart would reload its RAM in its home frames: refused while its
    // pages are away.
    assert_eq!(
        status(&mut sys, &mut m, 0, Call::Restart, &[CONTROL_DEVIRT]),
        refused
    );
    let empty = Error::Empty.code() as u64;
    assert_eq!(
        status(&mut sys, &mut m, 0, Call::Relocate, &[CONTROL_DEVIRT]),
        empty
    );

    // Not while another guest lives; then, once it has ended, every page goes
    // home, the translation goes off and the service VM stops.
    assert_eq!(
        status(&mut sys, &mut m, 0, Call::Devirtualize, &[CONTROL_DEVIRT]),
        Error::NotAlone.code() as u64
    );
    assert_eq!(m.translations, [(DEVIRT, true)], "refused: nothing changed");
    assert_eq!(status(&mut sys, &mut m, 0, Call::Stop, &[CONTROL_OTHER]), 0);
    let first = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::Devirtualize, &[CONTROL_DEVIRT]),
    );
    assert_settled(&m);
    if first.reply.is_some_and(|reply| reply.results[0] == 1) {
        relocate_to_the_end(&mut sys, &mut m);
    }
    assert!(m.console.contains("@@ partition devirt devirtualized"));
    assert!(m.console.contains("@@ partition service stop"));
    assert_eq!(m.translations, [(DEVIRT, true), (DEVIRT, false)]);
    for page in layout().guest_pages() {
        assert_eq!(m.relocation.tables[&page].frame, layout().home_of(page));
        assert_eq!(m.relocation.guest_read(page), page.0);
    }
    assert_eq!(state(&sys, 0), PartitionState::Stopped);
    assert_eq!(sys.devirtualizable(), Some((DEVIRT, false)));

    // It was live on core 1 meanwhile: its next trap, whatever it is, is not
    // handled in the mode it left; it leaves the core, and the call runs again
    // natively.
    let first = hcall(&mut sys, &mut m, DEVIRT, call(Call::Virtualize, &[SELF]));
    assert_eq!((first.reply, first.store), (None, Some(DEVIRT)));
    assert_eq!(sys.devirtualizable(), Some((DEVIRT, false)));
    // Native again, it virtualizes once more: the service VM is restarted.
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        0
    );
    assert!(m.console.contains("@@ partition service restart gen=2"));
    assert_eq!(sys.devirtualizable(), Some((DEVIRT, true)));

    // Every step is in the audit ring, in order, under the partition.
    let mut steps = Vec::new();
    while let Some(record) = sys.audit.pop() {
        if record.kind == AuditKind::Relocation {
            assert_eq!(usize::from(record.partition), DEVIRT);
            steps.push(record.detail[0]);
        }
    }
    let expected = [
        Step::Virtualized,
        Step::EvacuationBegun,
        Step::Evacuated,
        Step::DevirtualizationBegun,
        Step::Devirtualized,
        Step::Virtualized,
    ]
    .map(|step| step as u64);
    assert_eq!(steps, expected);
}

/// Stops the other guest and devirtualizes the (translated) devirtualizable
/// one: it runs natively again and the service VM is stopped.
fn devirtualize(sys: &mut System, m: &mut FakeMachine) {
    assert_eq!(status(sys, m, 0, Call::Stop, &[CONTROL_OTHER]), 0);
    let first = hcall(sys, m, 0, call(Call::Devirtualize, &[CONTROL_DEVIRT]));
    if first.reply.is_some_and(|reply| reply.results[0] == 1) {
        relocate_to_the_end(sys, m);
    }
    assert_eq!(sys.devirtualizable(), Some((DEVIRT, false)));
    assert_eq!(states(sys)[0].0, PartitionState::Stopped);
}

/// A native guest's panic is not left to a service VM that does not run: the
/// kernel takes it under the translation at the identity, starts the service
/// VM, and suspends it for the service VM as any guest; restarted, it runs on
/// translated.
/// Verifies: SK-HM-015
#[test]
fn a_native_panic_virtualizes_the_guest_and_starts_the_service_vm() {
    let (mut sys, mut m) = booted();
    let panic = hcall(&mut sys, &mut m, DEVIRT, call(Call::Panic, &[SELF, 0x77]));
    assert_ne!(panic.run, Run::Vcpu(DEVIRT), "it leaves its core");
    assert_eq!(m.translations, [(DEVIRT, true)]);
    assert_eq!(sys.devirtualizable(), Some((DEVIRT, true)));
    let virtualized = m
        .console
        .find("@@ partition devirt virtualized native-faults=1")
        .expect("virtualized, its panic counted");
    let suspended = m
        .console
        .find("@@ partition devirt fault reason=panic")
        .expect("the fault reported");
    assert!(virtualized < suspended, "virtualized first:\n{}", m.console);
    assert!(m.console.contains("action=suspend"), "{}", m.console);
    assert_eq!(states(&sys)[DEVIRT].0, PartitionState::Suspended);
    assert_eq!(
        states(&sys)[0].0,
        PartitionState::Runnable,
        "the service VM starts"
    );
    assert_eq!(status(&mut sys, &mut m, 0, Call::Ready, &[SYSTEM]), 0);
    // The service VM decides: a restart, translated (it is no longer alone).
    assert_eq!(
        status(&mut sys, &mut m, 0, Call::Restart, &[CONTROL_DEVIRT]),
        0
    );
    assert!(m.console.contains("@@ partition devirt restart gen=2"));
    assert_eq!(sys.devirtualizable(), Some((DEVIRT, true)));
    assert_eq!(m.translations, [(DEVIRT, true)], "no other mode change");
}

/// A native guest that misses its heartbeat after a devirtualization stopped
/// the service VM: the kernel virtualizes it and restarts the service VM, which
/// gets it suspended rather than finding it stopped for want of a supervisor.
/// Verifies: SK-HM-015
#[test]
fn a_native_missed_heartbeat_after_devirtualizing_restarts_the_service_vm() {
    let (mut sys, mut m) = booted_with(Supervision {
        watchdog_ms: 10,
        ..Supervision::default()
    });
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        0
    );
    assert_eq!(status(&mut sys, &mut m, 0, Call::Ready, &[SYSTEM]), 0);
    devirtualize(&mut sys, &mut m);
    m.now_us += 1_000_000;
    let mut out = super::run::Outcome::new();
    sys.check_watchdogs(1, &mut out, &mut m);
    assert!(
        m.console.contains("@@ partition devirt watchdog gen=1"),
        "{}",
        m.console
    );
    assert_eq!(sys.devirtualizable(), Some((DEVIRT, true)));
    assert_eq!(
        m.translations,
        [(DEVIRT, true), (DEVIRT, false), (DEVIRT, true)]
    );
    assert!(m.console.contains("@@ partition service restart gen=2"));
    assert_eq!(states(&sys)[DEVIRT].0, PartitionState::Suspended);
    assert_eq!(out.effects.len(), 1, "the service VM's reset");
}

/// A fault of a translated guest, or of a guest that is not devirtualizable,
/// changes no translation and starts nothing.
/// Verifies: SK-HM-015
#[test]
fn only_a_native_guest_is_virtualized_by_its_fault() {
    let (mut sys, mut m) = booted();
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        0
    );
    assert_eq!(status(&mut sys, &mut m, 0, Call::Ready, &[SYSTEM]), 0);
    hcall(&mut sys, &mut m, DEVIRT, call(Call::Panic, &[SELF, 1]));
    hcall(&mut sys, &mut m, 2, call(Call::Panic, &[SELF, 1]));
    assert_eq!(m.translations, [(DEVIRT, true)]);
    assert_eq!(m.console.matches("virtualized").count(), 1, "{}", m.console);
    assert_eq!(states(&sys)[DEVIRT].0, PartitionState::Suspended);
    assert_eq!(states(&sys)[2].0, PartitionState::Suspended);
}

/// Core 1 enters until it runs the devirtualizable guest; the turn it gave it.
fn run_devirt(sys: &mut System, m: &mut FakeMachine, entry: Entry) -> Option<TurnEnd> {
    let mut out = enter(sys, 1, entry, m);
    for _ in 0..1000 {
        if out.run == Run::Vcpu(DEVIRT) {
            return out.turn;
        }
        out = enter(sys, 1, Entry::Resume, m);
    }
    panic!("core 1 never ran the devirtualizable guest");
}

/// Beside a native guest the kernel is dormant: its turns never end, unless
/// a watchdog needs the kernel when its heartbeat falls due; translated, it
/// takes round-robin turns again, and the virtualization reports how many of
/// its native turns the timer ended.
/// Verifies: SK-ISO-015
#[test]
fn the_kernel_is_dormant_beside_a_native_guest() {
    let (mut sys, mut m) = booted();
    assert_eq!(
        run_devirt(&mut sys, &mut m, Entry::Resume),
        Some(TurnEnd::Never)
    );
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        0
    );
    assert!(
        m.console
            .contains("@@ partition devirt virtualized native-faults=0 preempted=0"),
        "{}",
        m.console
    );
    let preempted = Entry::Trap(&super::run::Trap::Preempted);
    assert_eq!(
        run_devirt(&mut sys, &mut m, preempted),
        Some(TurnEnd::Slice)
    );

    let (mut sys, mut m) = booted_with(Supervision {
        watchdog_ms: 10,
        ..Supervision::default()
    });
    let Some(TurnEnd::At(end_us)) = run_devirt(&mut sys, &mut m, Entry::Resume) else {
        panic!("a watchdog's heartbeat ends the turn");
    };
    assert!(end_us > m.now_us && end_us <= m.now_us + 10_001);
    // Its turn ended by the timer while native: counted.
    run_devirt(&mut sys, &mut m, preempted);
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        0
    );
    assert!(
        m.console
            .contains("virtualized native-faults=0 preempted=1"),
        "{}",
        m.console
    );
}

/// Devirtualized while live on its core, the guest leaves it at its next trap,
/// whatever the trap, to be loaded natively; a preemption that ended its last
/// translated turn is not a native one, and it then runs with no turn end.
/// Verifies: SK-ISO-015
#[test]
fn a_live_guest_devirtualized_is_reloaded_at_its_next_trap() {
    let (mut sys, mut m) = booted();
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        0
    );
    assert_eq!(status(&mut sys, &mut m, 0, Call::Ready, &[SYSTEM]), 0);
    // Live on core 1 (it just called), it is devirtualized from core 0.
    devirtualize(&mut sys, &mut m);
    let preempted = Entry::Trap(&super::run::Trap::Preempted);
    let out = enter(&mut sys, 1, preempted, &mut m);
    assert_eq!(
        (out.store, out.load, out.turn),
        (Some(DEVIRT), Some(DEVIRT), Some(TurnEnd::Never)),
        "it leaves the core and comes back natively, dormant"
    );
    // Its next trap is an ordinary one.
    let out = hcall(&mut sys, &mut m, DEVIRT, call(Call::Null, &[]));
    assert_eq!((out.store, out.load), (None, None));
    assert_eq!(
        status(&mut sys, &mut m, DEVIRT, Call::Virtualize, &[SELF]),
        0
    );
    assert_eq!(
        m.console
            .matches("@@ partition devirt virtualized native-faults=0 preempted=0\n")
            .count(),
        2,
        "{}",
        m.console
    );
}
