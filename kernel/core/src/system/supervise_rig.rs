//! The rig the supervision tests share (`supervise_tests.rs`, `supervise_props.rs`):
//! the service VM, alpha and beta on a fake machine, with the calls and checks
//! those tests make.

pub(super) use super::tests::{
    CONSOLE, FakeMachine, GUEST_BASE, HOST_BASE, RAM, SELF, SYSTEM, call,
};
pub(super) use super::tests::{answer, enter, hcall, start, trap as trap_on};
use super::*;
pub(super) use crate::audit::AuditKind;
pub(super) use crate::caps::CapType;
pub(super) use crate::caps::{CAP_SLOTS, Cap, CapTable};
pub(super) use crate::event::{Fault, Reason};
pub(super) use crate::package::{Kind, PartitionSpec, Profile, encode};
pub(super) use crate::resources::Resources;
pub(super) use crate::supervision::{Supervision, TrapAction, TrapClass};
pub(super) use septum_abi::event::{Kind as EventKind, RECORD_SIZE, WORD_DETAIL, WORD_GENERATION};
pub(super) use septum_abi::event::{WORD_KIND, WORD_PARTITION, WORD_REASON, WORD_TIME};
pub(super) use septum_abi::resume::{SKIP, UNDEFINED};
pub(super) use septum_abi::{Call, PartitionState};

/// Service VM slots beyond the common ones: control of alpha, of beta, and its own
/// watchdog. Guests hold their watchdog in slot 2.
pub(super) const CTL_ALPHA: u64 = 3;
pub(super) const CTL_BETA: u64 = 4;
pub(super) const SERVICE_WATCHDOG: u64 = 5;
pub(super) const WATCHDOG: u64 = 2;
/// The service VM's event buffer, and where it lies in the fake machine's RAM (the
/// service VM's RAM comes first).
pub(super) const BUFFER: u64 = GUEST_BASE + 0x200;
pub(super) const AT: usize = 0x200;
pub(super) const END: u64 = GUEST_BASE + RAM;
pub(super) const TRAP: u64 = EventKind::Trap as u64;
pub(super) const INPUT: u64 = EventKind::Input as u64;

pub(super) fn cap(ty: CapType, object: u16) -> Option<Cap> {
    let rights = ty.possible_rights();
    Some(Cap {
        ty,
        rights,
        object,
        badge: 0,
    })
}

/// Only a watchdog of `ms` milliseconds.
pub(super) fn watchdog(ms: u32) -> Supervision {
    Supervision {
        watchdog_ms: ms,
        ..Supervision::default()
    }
}

/// An unassigned MMIO access by an instruction of `length` bytes.
pub(super) fn trap(addr: u64, length: u8) -> Fault {
    let snapshot = [0x4000_1000, 0x4000_8000, 0x3c5, 10, 11, 12, 13, 14];
    let syndrome = 0x9200_0046;
    let kind = Reason::Stage2Data;
    Fault {
        kind,
        addr,
        syndrome,
        length,
        snapshot,
    }
}

/// What an outcome without a reply runs, and its effect.
pub(super) fn dispatch(run: Run, effect: Option<Effect>) -> (Option<Reply>, Run, Vec<Effect>) {
    (None, run, effect.into_iter().collect())
}

/// The last effect an outcome asks for.
pub(super) fn effect(o: &Outcome) -> Option<Effect> {
    o.effects.last().copied()
}

pub(super) fn results(d: &Outcome) -> [u64; 3] {
    let reply = d.reply.expect("a reply");
    assert_eq!(reply.status, 0, "{:?}", Error::from_status(reply.status));
    reply.results
}

pub(super) fn refused(d: &Outcome) -> Error {
    let status = d.reply.expect("a reply").status;
    Error::from_status(status).unwrap_err().expect("known")
}

/// The service VM, alpha and beta on a fake machine.
pub(super) struct Rig {
    pub(super) sys: System,
    pub(super) m: FakeMachine,
}

/// Started, on core 0 all three, with default supervision; not yet ready.
pub(super) fn rig() -> Rig {
    rig_with([0; 3], [Default::default(); 3])
}

/// As [`rig`], and ready.
pub(super) fn running() -> Rig {
    let mut t = rig();
    t.svc(Call::Ready, &[SYSTEM]);
    t
}

/// Started, pinned to the cores `cpus` gives, supervised as `sup` says.
pub(super) fn rig_with(cpus: [u8; 3], sup: [Supervision; 3]) -> Rig {
    rig_of([Profile::Native; 3], cpus, sup)
}

/// As [`running`], with `beta` a Linux partition.
pub(super) fn linux_running() -> Rig {
    linux_running_on([0; 3])
}

/// As [`linux_running`], pinned to the cores `cpus` gives.
pub(super) fn linux_running_on(cpus: [u8; 3]) -> Rig {
    let native = Profile::Native;
    let mut t = rig_of(
        [native, native, Profile::Linux],
        cpus,
        [Default::default(); 3],
    );
    t.svc(Call::Ready, &[SYSTEM]);
    t
}

/// Started, with the profiles, cores and supervision given.
fn rig_of(profiles: [Profile; 3], cpus: [u8; 3], sup: [Supervision; 3]) -> Rig {
    let image = [0u8; 16];
    let names = ["service", "alpha", "beta"];
    let specs: Vec<PartitionSpec> = (0..3)
        .map(|i| {
            let kind = if i == 0 { Kind::Service } else { Kind::Guest };
            let mut caps: CapTable = [None; CAP_SLOTS];
            caps[CONSOLE as usize] = cap(CapType::Console, 0);
            caps[SELF as usize] = cap(CapType::SelfPartition, 0);
            if i == 0 {
                caps[SYSTEM as usize] = cap(CapType::System, 0);
                caps[CTL_ALPHA as usize] = cap(CapType::Control, 1);
                caps[CTL_BETA as usize] = cap(CapType::Control, 2);
                caps[SERVICE_WATCHDOG as usize] = cap(CapType::Watchdog, 0);
            } else {
                caps[WATCHDOG as usize] = cap(CapType::Watchdog, 0);
            }
            PartitionSpec {
                name: names[i],
                kind,
                profile: profiles[i],
                ram_size: RAM,
                image: &image,
                entry_offset: 0,
                argument: 0,
                caps,
                resources: Resources::on_cores(RAM, RAM, &[cpus[i]]),
                supervision: sup[i],
            }
        })
        .collect();
    let bytes = encode(&specs, &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let host: Vec<Range> = (0..3)
        .map(|i| Range::from_start_size(HOST_BASE + i * RAM, RAM).unwrap())
        .collect();
    let (ram, console) = (vec![0; RAM as usize * 3], String::new());
    let m = FakeMachine {
        ram,
        console,
        now_us: 0,
        relocation: Default::default(),
        translations: Vec::new(),
    };
    let mut t = Rig {
        sys: System::new(&package, GUEST_BASE, &host, Range::default()).unwrap(),
        m,
    };
    start(&mut t.sys, &mut t.m);
    t
}

impl Rig {
    /// Partition `caller` makes a call. As on a machine, a partition runs only
    /// once it owes no work: a restarted one is reloaded first.
    pub(super) fn call(&mut self, caller: usize, number: Call, args: &[u64]) -> Outcome {
        while self.sys.owes_work(caller) {
            self.sys.work(caller, &mut self.m);
        }
        hcall(&mut self.sys, &mut self.m, caller, call(number, args))
    }
    /// The service VM makes a call.
    pub(super) fn svc(&mut self, number: Call, args: &[u64]) -> Outcome {
        self.call(0, number, args)
    }
    pub(super) fn wait(&mut self) -> [u64; 3] {
        results(&self.svc(Call::WaitEvent, &[SYSTEM, BUFFER]))
    }
    pub(super) fn fault(&mut self, culprit: usize, fault: Fault) -> Outcome {
        trap_on(&mut self.sys, &mut self.m, culprit, Trap::Fault(fault))
    }
    /// Checks the watchdogs of core `cpu` at `now_us` (the clock stays where it
    /// was); returns the vCPU reset it asks for, if any.
    pub(super) fn watchdogs(&mut self, cpu: usize, now_us: u64) -> Option<Effect> {
        let clock = core::mem::replace(&mut self.m.now_us, now_us);
        let mut out = Outcome::new();
        self.sys.check_watchdogs(cpu, &mut out, &mut self.m);
        self.m.now_us = clock;
        effect(&out)
    }
    pub(super) fn key(&mut self, byte: u8) {
        self.sys.console_input(byte, &mut self.m);
    }
    pub(super) fn state(&self, index: usize) -> PartitionState {
        self.sys.partitions()[index].life().abi()
    }
    pub(super) fn states(&self) -> Vec<(PartitionState, u32)> {
        super::tests::states(&self.sys)
    }
    pub(super) fn says(&self, text: &str) {
        let console = &self.m.console;
        assert!(console.contains(text), "{text:?} not in\n{console}");
    }
    /// `count` little-endian words of the fake RAM at byte offset `at`.
    pub(super) fn words(&self, at: usize, count: usize) -> Vec<u64> {
        let bytes = &self.m.ram[at..at + count * 8];
        bytes
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect()
    }
    /// The header of the event record last written to the buffer.
    pub(super) fn header(&self) -> Vec<u64> {
        self.words(AT, 8)
    }
    /// Reads up to `max` audit records into the buffer and decodes them as [time,
    /// partition, kind, generation, detail 0, detail 1].
    pub(super) fn audit(&mut self, max: u64) -> ([u64; 3], Vec<[u64; 6]>) {
        let got = results(&self.svc(Call::AuditRead, &[SYSTEM, BUFFER, max]));
        let decode = |w: &[u64]| [w[0], w[1] & 0xff, w[1] >> 8 & 0xff, w[1] >> 32, w[2], w[3]];
        let raw = self.words(AT, got[0] as usize * 4);
        (got, raw.chunks_exact(4).map(decode).collect())
    }
    /// The service VM makes call `number`, which does not exist.
    pub(super) fn unknown(&mut self, number: u64) {
        let args = [0; 6];
        hcall(
            &mut self.sys,
            &mut self.m,
            0,
            CallRegisters { number, args },
        );
    }
}
