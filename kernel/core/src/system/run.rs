//! What runs next: the one way into the core from a back end
//! ([`System::handle`]) and the one answer ([`Outcome`], whose [`Run`] says what
//! the core runs). The back end only carries the answer out: registers, vCPU
//! switches, deadlines, kicks of other cores.
//!
//! A core runs vCPUs pinned to it. Without a schedule it takes them round robin,
//! each for the back end's time slice; with one, the owner of the current window
//! runs until the window ends, its vCPUs on this core taking turns of at most
//! [`VCPU_SLICE_US`] when more than one may run.
//!
//! Invariants:
//! - `loaded[cpu]` names the vCPU whose registers are live on core `cpu` (in its
//!   trap frame and on the CPU); it is written only here, as the outcome tells the
//!   back end to store and load; a vCPU is loaded only on its own core, and only
//!   while that core runs it or is handling its trap: an idle core holds none;
//! - a vCPU that may not run (its partition suspended, blocked, ended, or waiting
//!   for a restart or stop) is never chosen, and once its core has settled it is
//!   not loaded there; a core where one is still loaded is kicked;
//! - a trap from a vCPU whose partition may no longer run (a sibling's fault
//!   suspended it on another core) is held, not handled: its program counter
//!   stays on the trapping instruction, which it executes again when resumed;
//! - a restart or stop the service VM asked for while the target was live on
//!   another core is carried out by the last core to let go of one of its vCPUs,
//!   never under its feet;
//! - kernel work a partition owes is done in the turns of its vCPU 0, at most
//!   until the turn ends (or [`WORK_SLICE_US`] without a schedule), and the core
//!   leaves the kernel between slices;
//! - an idle core is woken by a kick, not by polling: an entry after which a
//!   vCPU pinned to an idle core may need it (woken, started, resumed, restarted,
//!   owing work: [`System::note_may_run`]) kicks that core. So a core without a
//!   schedule idles until it is kicked, except the service VM's, which polls the
//!   console for typed bytes every [`POLL_US`], and a core whose partitions'
//!   watchdogs are due, until the first is; a core with a schedule idles until
//!   its window or gap ends.

use super::dispatch::Caller;
use super::lifecycle::{Deferred, WaitOn};
use super::{CallRegisters, Dispatch, Next, Platform, Reply, System, emit};
use crate::event::{Event, Fault, StopCause};
use crate::schedule::Turn;

/// How long the service VM's core, with nothing to run, waits before it looks
/// for typed console bytes again, in µs.
pub const POLL_US: u64 = 1_000;
/// Longest turn of one vCPU in a window it shares with other vCPUs of its
/// partition on the same core, in µs.
pub const VCPU_SLICE_US: u64 = 1_000;
/// How long a core that owes no window works off what a partition owes before it
/// leaves the kernel and looks at the round robin again, in µs.
pub const WORK_SLICE_US: u64 = 1_000;

/// What a trap from a vCPU means, as the back end classified it. The back end
/// leaves the vCPU's program counter on the instruction that trapped.
#[derive(Clone, Copy, Debug)]
pub enum Trap {
    /// A Septum hypercall.
    Hypercall(CallRegisters),
    /// An SMCCC call (aarch64 `hvc #0` with bit 31 of the function number set):
    /// PSCI (see `psci.rs`).
    Smccc(CallRegisters),
    /// The vCPU waits for an event (WFI/WFE, HLT): it yields.
    Wait,
    /// Its time slice ended.
    Preempted,
    /// Another core asked this one to look again ([`Outcome::kick`]).
    Kicked,
    /// Anything else: a fault.
    Fault(Fault),
}

/// Why a core enters the core.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// The boot core starts the system.
    Start,
    /// A core that holds no vCPU (at bring-up, after an idle wait) asks what to run.
    Resume,
    /// The vCPU loaded on the core trapped (the trap stays where the back end
    /// classified it: a fault's is a hundred bytes).
    Trap(&'a Trap),
}

/// What a core runs once the back end has carried out an [`Outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Enter vCPU `.0`, whose registers are then in the frame.
    Vcpu(usize),
    /// Run nothing until `until_us` (on the platform clock), then enter with
    /// [`Entry::Resume`]. The back end waits outside the kernel lock.
    Idle {
        /// When to ask again.
        until_us: u64,
    },
    /// Power the machine off.
    PowerOff {
        /// Whether the shutdown was a clean one requested by the service VM.
        clean: bool,
    },
}

/// When a turn that begins now ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnEnd {
    /// At this time (µs on the platform clock): the window or slice ends.
    At(u64),
    /// No window ends: the back end's round-robin time slice.
    Slice,
    /// Never: the kernel's timer stays quiet and the vCPU keeps its core until
    /// it traps or the core is kicked (a native partition, running alone,
    /// leaves the kernel dormant: see `devirt.rs`).
    Never,
}

/// Work on a stored vCPU's registers (never one live on a core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Its partition restarted: back to the entry state, with the generation in
    /// the third argument register.
    Restart {
        /// The vCPU (a partition's vCPU 0).
        vcpu: usize,
        /// The new generation.
        generation: u32,
    },
    /// Move its program counter past the trapped instruction (a resume with skip).
    Skip {
        /// The vCPU.
        vcpu: usize,
        /// Bytes to skip.
        length: u8,
    },
    /// Make it take an undefined-instruction exception at the instruction that
    /// trapped, in its own vectors (a resume with
    /// [`Resumption::Undefined`](crate::event::Resumption::Undefined)).
    Undefined {
        /// The vCPU.
        vcpu: usize,
    },
    /// Start it at `entry` with `context` in its first argument register, in the
    /// entry state otherwise.
    PowerOn {
        /// The vCPU.
        vcpu: usize,
        /// Guest address where it starts.
        entry: u64,
        /// Its first argument.
        context: u64,
    },
}

/// Most effects of one entry.
pub const MAX_EFFECTS: usize = 2;

/// What the back end does after an entry, in this order: `reply` and `skip` on the
/// frame (the trapped vCPU's registers), `store` the frame into that vCPU,
/// the `effects`, `load` a vCPU into the frame, start a turn ending at `turn`,
/// `kick` other cores; then [`Run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Registers to hand back to the vCPU that trapped.
    pub reply: Option<Reply>,
    /// Whether that vCPU moves past the instruction that trapped (a call or wait
    /// that was handled).
    pub skip: bool,
    /// The vCPU whose registers leave the core: save the frame into it.
    pub store: Option<usize>,
    /// Work on stored vCPUs.
    pub effects: heapless::Vec<Effect, MAX_EFFECTS>,
    /// The vCPU whose registers come onto the core: load the frame from it.
    pub load: Option<usize>,
    /// A turn begins: arm the deadline.
    pub turn: Option<TurnEnd>,
    /// Bit `n`: interrupt core `n`, where a vCPU that may no longer run is live,
    /// or which idles and may have work now.
    pub kick: u8,
    /// What the core runs.
    pub run: Run,
}

impl Default for Outcome {
    fn default() -> Outcome {
        Outcome::new()
    }
}

impl Outcome {
    /// Nothing to do yet: what [`System::handle`] starts from (it sets `run`
    /// last).
    pub fn new() -> Outcome {
        Outcome {
            reply: None,
            skip: false,
            store: None,
            effects: heapless::Vec::new(),
            load: None,
            turn: None,
            kick: 0,
            run: Run::Idle { until_us: 0 },
        }
    }
}

/// What the scheduler picked for a core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    Run {
        vcpu: usize,
        end: TurnEnd,
    },
    Idle {
        until_us: u64,
    },
    PowerOff {
        clean: bool,
    },
    /// Nothing may run anywhere.
    Halt,
}

impl System {
    /// The vCPU whose registers are live on core `cpu`, if any.
    pub fn loaded(&self, cpu: usize) -> Option<usize> {
        self.loaded[cpu]
    }

    /// Core `cpu` enters the core: handles `entry` and writes what the core does
    /// next into `out`, which must be [`Outcome::new`] (the caller's, so that
    /// the answer is never copied on the way out).
    pub fn handle(
        &mut self,
        cpu: usize,
        entry: Entry<'_>,
        platform: &mut impl Platform,
        out: &mut Outcome,
    ) {
        self.kicked &= !(1 << cpu);
        self.idle &= !(1 << cpu);
        let trapped = self.loaded[cpu];
        let (next, new_turn) = match entry {
            Entry::Start => {
                if self.start_native(platform) {
                    (Next::Yield, true)
                } else {
                    self.start_partition(0, platform);
                    (Next::Service, true)
                }
            }
            Entry::Resume => {
                self.check_watchdogs(cpu, out, platform);
                self.virtio_timers(cpu, platform);
                (Next::Yield, true)
            }
            Entry::Trap(trap) => {
                let vcpu = trapped.expect("a trap comes from a loaded vCPU");
                if matches!(trap, Trap::Preempted) {
                    // The turn that ended is charged to its partition.
                    self.charge(cpu, platform);
                    self.check_watchdogs(cpu, out, platform);
                    self.virtio_timers(cpu, platform);
                }
                let next = self.on_trap(cpu, vcpu, trap, out, platform);
                (next, matches!(trap, Trap::Preempted))
            }
        };
        out.run = self.settle(cpu, trapped, next, new_turn, out, platform);
        if self.devirt.is_some() {
            self.dormant_turn(out);
        }
        if matches!(out.run, Run::Idle { .. }) {
            self.idle |= 1 << cpu;
        }
        if core::mem::take(&mut self.recheck_cores) {
            self.kick_held(cpu, out);
        }
        if self.woke != 0 {
            self.kick_idle(cpu, out);
        }
        out.kick |= self.take_interrupted(cpu);
    }

    /// Handles a trap from `vcpu`, loaded on `cpu`: what runs next.
    fn on_trap(
        &mut self,
        cpu: usize,
        vcpu: usize,
        trap: &Trap,
        out: &mut Outcome,
        platform: &mut impl Platform,
    ) -> Next {
        let slot = &self.vcpus[vcpu];
        let (partition, index) = (slot.partition, slot.index);
        self.count_trap(partition, trap);
        // A restart or stop asked for while it ran here comes first: this vCPU
        // leaves the core, and the last of its partition to leave a core carries
        // it out.
        let life = &self.partitions[partition].life;
        let deferred = life.deferred().is_some();
        if deferred || !life.vcpu_runnable(index) {
            // Its partition stopped running under it (a sibling on another core
            // faulted, or it ended, or a restart or stop waits for it): it leaves
            // the core, and a trap it made waits until it runs again. A restart
            // or stop asked for while it ran here is carried out by the last vCPU
            // of its partition to leave a core (`unload`).
            let event = Event::VcpuLeft {
                name: self.partitions[partition].name(),
                vcpu: index,
                cpu,
                state: life.abi(),
            };
            emit(platform, event);
            if deferred {
                self.unload(cpu, out, platform);
            }
            return Next::Yield;
        }
        let dispatch = match trap {
            Trap::Hypercall(call) => self.hypercall(Caller { partition, vcpu }, call, platform),
            Trap::Smccc(call) => self.smccc(vcpu, call, platform),
            Trap::Wait | Trap::Preempted => {
                self.end_loan(partition);
                Dispatch::new(None, Next::Yield)
            }
            Trap::Kicked => Dispatch::new(None, Next::Caller),
            Trap::Fault(fault) => self.fault(vcpu, fault, platform),
        };
        if let Some(Reply { status, results }) = dispatch.reply {
            out.reply = Some(Reply { status, results });
        }
        out.skip = matches!(trap, Trap::Hypercall(_) | Trap::Smccc(_) | Trap::Wait);
        if let Some(effect) = dispatch.effect {
            self.push_effect(cpu, effect, out, platform);
        }
        dispatch.next
    }

    /// Puts `effect` in the outcome; the vCPU it acts on leaves this core first if
    /// it is live here (it is live on no other: see the module invariants).
    pub(super) fn push_effect(
        &mut self,
        cpu: usize,
        effect: Effect,
        out: &mut Outcome,
        platform: &mut impl Platform,
    ) {
        let vcpu = match effect {
            Effect::Restart { vcpu, .. } | Effect::Skip { vcpu, .. } => vcpu,
            Effect::Undefined { vcpu } => vcpu,
            Effect::PowerOn { vcpu, .. } => vcpu,
        };
        if self.loaded[cpu] == Some(vcpu) {
            self.unload(cpu, out, platform);
        }
        debug_assert!(
            !self.loaded.contains(&Some(vcpu)),
            "an effect on a live vCPU"
        );
        // Cannot fail: an entry produces at most a watchdog's and a call's effect.
        let _ = out.effects.push(effect);
    }

    /// The vCPU live on `cpu` leaves it (its registers are stored). If its
    /// partition waits for a restart or stop and no vCPU of it is live on any
    /// core now, that is carried out.
    fn unload(&mut self, cpu: usize, out: &mut Outcome, platform: &mut impl Platform) {
        self.charge(cpu, platform);
        let Some(vcpu) = self.loaded[cpu].take() else {
            return;
        };
        out.store = Some(vcpu);
        let partition = self.vcpus[vcpu].partition;
        if self.live_anywhere(partition) {
            return;
        }
        match self.partitions[partition].life.take_deferred() {
            Some(Deferred::Restart) => {
                if let Ok(effect) = self.restart(partition, platform) {
                    self.push_effect(cpu, effect, out, platform);
                }
            }
            Some(Deferred::Stop) => self.stop(partition, StopCause::Service, platform),
            Some(Deferred::Reload) => self.native_run_begins(partition),
            None => {}
        }
    }

    /// Whether a vCPU of `partition` is live on any core.
    pub(super) fn live_anywhere(&self, partition: usize) -> bool {
        self.loaded
            .iter()
            .flatten()
            .any(|&vcpu| self.vcpus[vcpu].partition == partition)
    }

    /// Settles core `cpu` on what `next` asks for at the time: the vCPU to run
    /// (switching if it is not the loaded one), or nothing for a while, or
    /// power-off. A vCPU 0 whose turn it is but whose partition owes work gets the
    /// work done first, in that turn; if work is left when the turn ends, the
    /// round robin moves on (a schedule decides anyway), and the core leaves the
    /// kernel before it works again for the same partition. A turn begins
    /// (`new_turn`) at start, after a preemption or a wait, on a switch, and
    /// after work; a vCPU that traps and continues keeps the rest of its turn.
    fn settle(
        &mut self,
        cpu: usize,
        trapped: Option<usize>,
        mut next: Next,
        mut new_turn: bool,
        out: &mut Outcome,
        platform: &mut impl Platform,
    ) -> Run {
        if let (Next::Caller, Some(vcpu)) = (next, trapped)
            && self.loaded[cpu] == Some(vcpu)
            && self.keeps_core(cpu, vcpu)
        {
            // The common case, decided without the scheduler: a call answered,
            // its caller goes on in the same turn.
            return Run::Vcpu(vcpu);
        }
        if next == Next::Reload {
            // Its translation changed: it leaves the core, to be loaded again.
            self.unload(cpu, out, platform);
        }
        let mut after = trapped;
        let mut worked = None;
        loop {
            match self.decide(cpu, after, next, platform) {
                Decision::PowerOff { clean } => return Run::PowerOff { clean },
                Decision::Halt => {
                    let reason = "no-runnable-partition";
                    self.report_net(platform);
                    emit(platform, Event::KernelHalt { reason });
                    return Run::PowerOff { clean: false };
                }
                Decision::Idle { until_us } => {
                    self.unload(cpu, out, platform);
                    return Run::Idle { until_us };
                }
                Decision::Run { vcpu, end } if self.owes_work(self.vcpus[vcpu].partition) => {
                    self.unload(cpu, out, platform);
                    let now_us = platform.now_us();
                    if worked == Some(vcpu) {
                        // Out of the kernel before the next slice: other cores and
                        // the console go on meanwhile.
                        return Run::Idle { until_us: now_us };
                    }
                    let partition = self.vcpus[vcpu].partition;
                    let until_us = match end {
                        TurnEnd::At(until_us) => until_us,
                        TurnEnd::Slice | TurnEnd::Never => now_us + WORK_SLICE_US,
                    };
                    while self.work(partition, platform) && platform.now_us() < until_us {}
                    // Paid up and runnable: the rest of the turn is its own.
                    // Otherwise the round robin moves on.
                    (after, next, worked) = if self.owes_work(partition) {
                        (Some(vcpu), Next::Yield, Some(vcpu))
                    } else {
                        (after, Next::Switch(vcpu), None)
                    };
                    new_turn = true;
                }
                Decision::Run { vcpu, end } => {
                    if self.loaded[cpu] != Some(vcpu) {
                        self.unload(cpu, out, platform);
                        self.loaded[cpu] = Some(vcpu);
                        self.charged_us[cpu] = platform.now_us();
                        out.load = Some(vcpu);
                        new_turn = true;
                    }
                    if new_turn {
                        out.turn = Some(end);
                    }
                    return Run::Vcpu(vcpu);
                }
            }
        }
    }

    /// Whether vCPU `vcpu`, live on core `cpu` and continuing after a call, keeps
    /// the core without asking the scheduler: the core has no schedule, the vCPU
    /// may run and owes no work, and the service VM has no supervision work on
    /// this core. (Exactly when `decide` would answer the same.)
    fn keeps_core(&self, cpu: usize, vcpu: usize) -> bool {
        let slot = &self.vcpus[vcpu];
        let life = &self.partitions[slot.partition].life;
        self.schedules[cpu].is_none()
            && life.vcpu_runnable(slot.index)
            && life.deferred().is_none()
            && !self.owes_work(slot.partition)
            && !self.service_urgent(cpu, None)
    }

    /// What core `cpu` runs at the platform's time (read only when needed), given
    /// what the call or trap of `trapped` asked for. Without a schedule `next`
    /// stands if it can, else the round robin; with one, the owner of the current
    /// window runs until the window's end if it can run, else the core idles until
    /// the window ends or the next one starts. The service VM takes over whenever
    /// it has supervision work; power-off always stands.
    pub(super) fn decide(
        &self,
        cpu: usize,
        trapped: Option<usize>,
        next: Next,
        platform: &mut impl Platform,
    ) -> Decision {
        let wanted = match next {
            Next::PowerOff { clean } => return Decision::PowerOff { clean },
            Next::Caller | Next::Reload => trapped,
            Next::Switch(vcpu) => Some(vcpu),
            Next::Service => Some(self.partitions[0].vcpus.start),
            Next::Yield => None,
        }
        .filter(|&vcpu| self.vcpus[vcpu].cpu == cpu && self.needs_cpu(vcpu));
        let service = self.partitions[0].vcpus.start;
        let Some(schedule) = self.schedule(cpu) else {
            if self.service_urgent(cpu, None) {
                return Decision::Run {
                    vcpu: service,
                    end: TurnEnd::Slice,
                };
            }
            return match wanted.or_else(|| self.pick(cpu, trapped, |_| true)) {
                Some(vcpu) => Decision::Run {
                    vcpu,
                    end: TurnEnd::Slice,
                },
                // Something may still run: a vCPU that needs a core, one live on
                // another core (a restart or stop waits for it to leave), or the
                // service VM, waiting for an event (typed input is one).
                None if (0..self.vcpus.len()).any(|v| self.needs_cpu(v))
                    || (0..self.loaded.len()).any(|c| c != cpu && self.loaded[c].is_some())
                    || !self.partitions[0].life.ended() =>
                {
                    Decision::Idle {
                        until_us: self.idle_until(cpu, platform),
                    }
                }
                None => Decision::Halt,
            };
        };
        let now_us = platform.now_us();
        match schedule.at(now_us) {
            // The service VM takes over the window of a partition it has supervision
            // work about (usually the guest that trapped): that partition pays for
            // the switch, and no other partition's time is touched.
            Turn::Window {
                partition,
                until_us,
            } if self.service_urgent(cpu, Some(partition)) => Decision::Run {
                vcpu: service,
                end: TurnEnd::At(until_us),
            },
            Turn::Window {
                partition,
                until_us,
            } => {
                // A window lent by an immediate send: the receiver runs in it until
                // it waits or yields.
                let borrower = self.lent[cpu]
                    .filter(|&(lender, borrower)| lender == partition && self.needs_cpu(borrower))
                    .map(|(_, borrower)| borrower);
                let owner = |vcpu: usize| self.vcpus[vcpu].partition == partition;
                let chosen = borrower
                    .or(wanted.filter(|&vcpu| owner(vcpu)))
                    .or_else(|| self.pick(cpu, trapped, owner));
                match chosen {
                    Some(vcpu) => {
                        let sharing = self
                            .pick(cpu, Some(vcpu), owner)
                            .is_some_and(|other| other != vcpu);
                        let end = if sharing {
                            until_us.min(now_us + VCPU_SLICE_US)
                        } else {
                            until_us
                        };
                        Decision::Run {
                            vcpu,
                            end: TurnEnd::At(end),
                        }
                    }
                    None => Decision::Idle { until_us },
                }
            }
            Turn::Gap { until_us } => Decision::Idle { until_us },
        }
    }

    /// Until when core `cpu`, which has no schedule and nothing to run, idles
    /// unless kicked: the service VM's core polls the console for typed bytes
    /// every [`POLL_US`]; another core waits for the first heartbeat due of the
    /// partitions whose watchdogs it checks, or only for a kick.
    fn idle_until(&self, cpu: usize, platform: &mut impl Platform) -> u64 {
        if cpu == self.partitions[0].cpu {
            return platform.now_us() + POLL_US;
        }
        self.partitions
            .iter()
            .filter(|partition| partition.cpu == cpu)
            .filter_map(|partition| partition.life.heartbeat_due_us())
            .min()
            .map_or(u64::MAX, |due_us| due_us + 1)
    }

    /// Round robin on core `cpu` among the vCPUs pinned to it that need it and
    /// `eligible` accepts: the first after `after` (wrapping around to `after`
    /// itself last).
    fn pick(
        &self,
        cpu: usize,
        after: Option<usize>,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let pinned = &self.on_core[cpu];
        // The first of them after `after` in package order (they are in package
        // order), wrapping around, `after` itself last.
        let first = after.map_or(0, |after| pinned.partition_point(|&v| v <= after));
        (0..pinned.len())
            .map(|step| pinned[(first + step) % pinned.len()])
            .find(|&v| eligible(v) && self.needs_cpu(v))
    }

    /// Notes that a partition stopped running (suspended, ended, or a restart or
    /// stop waits for it), so that the cores where its vCPUs are live are kicked
    /// at the end of this entry.
    pub(super) fn note_stopped_running(&mut self) {
        self.recheck_cores = true;
    }

    /// Notes that a vCPU of partition `index` may need its core now (woken,
    /// started, resumed, restarted, owing work), so that those of its cores that
    /// idle are kicked at the end of this entry.
    pub(super) fn note_may_run(&mut self, index: usize) {
        for vcpu in self.partitions[index].vcpus() {
            self.woke |= 1 << self.vcpus[vcpu].cpu;
        }
    }

    /// Whether vCPU `vcpu` should have turns: it may run, or it is a partition's
    /// vCPU 0 and the partition owes work; not while a restart or stop waits for
    /// its partition to leave every core.
    pub(super) fn needs_cpu(&self, vcpu: usize) -> bool {
        let slot = &self.vcpus[vcpu];
        let life = &self.partitions[slot.partition].life;
        life.deferred().is_none()
            && (life.vcpu_runnable(slot.index)
                || (slot.index == 0 && self.owes_work(slot.partition)))
    }

    /// Kicks the other cores where a vCPU is live that may no longer run, once
    /// each until that core enters the kernel again. Called after an entry in
    /// which a partition stopped running or got a control action waiting
    /// ([`System::note_stopped_running`]).
    fn kick_held(&mut self, cpu: usize, out: &mut Outcome) {
        for (core, loaded) in self.loaded.iter().enumerate() {
            let bit = 1 << core;
            if core != cpu
                && self.kicked & bit == 0
                && loaded.is_some_and(|vcpu| !self.needs_cpu(vcpu))
            {
                out.kick |= bit;
            }
        }
        self.kicked |= out.kick;
    }

    /// Kicks the other cores that idle and where a vCPU may need the core now
    /// ([`System::note_may_run`]), once each until that core enters the core
    /// again: a kick ends its idle wait, and it looks again.
    fn kick_idle(&mut self, cpu: usize, out: &mut Outcome) {
        let wake = core::mem::take(&mut self.woke) & self.idle & !self.kicked & !(1 << cpu);
        out.kick |= wake;
        self.kicked |= wake;
    }

    /// The calling vCPU blocks in a call until `on` happens; it finds 0 in its
    /// result register when woken (it calls again).
    pub(super) fn block_caller(&mut self, caller: Caller, on: WaitOn) -> Dispatch {
        let index = self.vcpus[caller.vcpu].index;
        self.partitions[caller.partition]
            .life
            .block(index, on)
            .expect("the caller runs");
        self.end_loan(caller.partition);
        Dispatch::new(Some(Reply::ok([0; 3])), Next::Yield)
    }

    /// Lends the rest of `lender`'s window on its core to vCPU `borrower`.
    pub(super) fn lend(&mut self, lender: usize, borrower: usize) {
        self.lent[self.partitions[lender].cpu] = Some((lender, borrower));
    }

    /// Ends any loan of a window to a vCPU of `partition`, and any loan its own
    /// window made.
    pub(super) fn end_loan(&mut self, partition: usize) {
        for loan in &mut self.lent {
            if loan.is_some_and(|(lender, borrower)| {
                lender == partition || self.vcpus[borrower].partition == partition
            }) {
                *loan = None;
            }
        }
    }
}
