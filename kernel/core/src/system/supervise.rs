//! Supervision: what happens when a guest traps, faults, panics or misses its
//! heartbeat, and the service VM's side of it (its event queue, its control calls,
//! the console it can take over, the audit ring it reads).
//!
//! A guest whose trap policy says `service` for what it did, or that faulted, is
//! **suspended** and the service VM gets one event naming it, its generation, the
//! reason, the address and a register snapshot. The service VM answers with
//! `resume` (optionally skipping the trapped instruction), `restart` or `stop`. A
//! guest with nothing to supervise it (no service VM control capability for it, or
//! a service VM stopped for good), or whose policy says `stop`, is stopped at once.
//! The service VM itself is never suspended: when it faults or misses its
//! heartbeat the kernel restarts it, within its own restart budget, and tells the
//! new instance again about every guest still suspended.
//!
//! Invariants:
//! - a suspended guest has exactly one suspension on record, and an event for it is
//!   queued or has been handed to the current service VM instance;
//! - events that suspend a guest are never dropped: the queue keeps room for one
//!   per partition; only notifications and console input give way when it is full;
//! - every control call checks its capability, the generation the caller saw and
//!   the target's state before it changes anything (decode, then invoke);
//! - a restart happens only within the partition's budget; past it the partition
//!   is stopped for good;
//! - a restart or stop of a partition running on another core is carried out by
//!   that core, at the partition's next entry to the kernel, never under its feet.

use heapless::Deque;
use septum_abi::event::{Kind as EventKind, RECORD_SIZE, Record};
use septum_abi::{Call, Error, Identified, Inspected, resume};

use super::{Dispatch, Effect, Next, Partition, Platform, Range, Reply, State, System, caps, emit};
use crate::audit::{AUDIT_CAPACITY, AUDIT_RECORD_SIZE, AuditKind, AuditRecord};
use crate::caps::{CapType, Rights};
use crate::event::{Event, Fault, Reason, Response, StopCause, trap_class};
use crate::package::{MAX_PARTITIONS, NAME_MAX};
use crate::supervision::{TrapAction, TrapClass};

/// The console byte that gives the console to the service VM, and back: Ctrl-T.
pub const ESCAPE: u8 = 0x14;

/// Traps of one generation of a partition reported line by line; the audit ring
/// records them all.
pub const TRAP_LINES: u32 = 16;

/// Events queued beyond one per partition: room for notifications and input.
const SPARE_EVENTS: usize = 16;
const EVENT_CAPACITY: usize = MAX_PARTITIONS + SPARE_EVENTS;

/// Why a guest is suspended: the event the service VM was (or will be) given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Suspension {
    record: Record,
    /// Length of the trapped instruction, 0 if unknown.
    length: u8,
}

/// A control action waiting for the target's own core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Deferred {
    Restart,
    Stop,
}

/// The service VM's event queue and console state.
#[derive(Debug, Default)]
pub struct Events {
    pub(super) queue: Deque<Record, EVENT_CAPACITY>,
    /// The service VM took an event about this partition and has not waited
    /// since: it is handling it.
    handling: Option<usize>,
    /// Console input goes to the service VM.
    console: bool,
}

/// A validated supervision call.
pub(super) enum Request {
    WaitEvent(Range),
    Inspect(usize, Option<Range>),
    Identify(Option<crate::caps::Cap>),
    Resume { target: usize, skip: bool },
    Restart(usize),
    Stop(usize),
    SetPolicy(usize, TrapClass, TrapAction),
    AuditRead(Range, usize),
    Heartbeat,
    Panic(u64),
}

impl Partition {
    /// Sets the next heartbeat deadline, if it has a watchdog.
    pub(super) fn arm_watchdog(&mut self, now_us: u64) {
        let period_us = u64::from(self.supervision.watchdog_ms) * 1000;
        self.heartbeat_due_us = (period_us > 0).then_some(now_us + period_us);
    }
}

impl System {
    /// The back end reports which partition's registers are live on `cpu`.
    pub fn note_loaded(&mut self, cpu: usize, partition: Option<usize>) {
        self.loaded[cpu] = partition;
    }

    /// Whether the service VM, on `cpu`, has supervision work that may take the
    /// CPU now: with a schedule, work about `window_owner` (so the switch is paid
    /// for by the partition that caused it, in its own window, and no other
    /// partition loses time); without one, any work.
    pub(super) fn service_urgent(&self, cpu: usize, window_owner: Option<usize>) -> bool {
        let service = &self.partitions[0];
        if service.cpu != cpu || service.state != State::Runnable {
            return false;
        }
        match window_owner {
            None => self.events.handling.is_some() || !self.events.queue.is_empty(),
            Some(owner) => {
                self.events.handling == Some(owner)
                    || self
                        .events
                        .queue
                        .iter()
                        .any(|record| record.partition == owner as u64)
            }
        }
    }

    /// Whether a fault of guest `index` goes to the service VM.
    fn supervised(&self, index: usize) -> bool {
        let service = &self.partitions[0];
        !service.state.ended()
            && service.caps.iter().flatten().any(|cap| {
                cap.ty == CapType::Control
                    && usize::from(cap.object) == index
                    && cap.rights.contains(Rights::RESUME)
            })
    }

    /// Partition `culprit` trapped or faulted. A guest is suspended for the service
    /// VM or stopped (see the module doc); the service VM is restarted.
    pub fn fault(
        &mut self,
        culprit: usize,
        fault: Fault,
        platform: &mut impl Platform,
    ) -> Dispatch {
        self.flush_console(culprit, platform);
        let class = trap_class(fault.kind);
        let audit_kind = if class.is_some() {
            AuditKind::Trap
        } else {
            AuditKind::Fault
        };
        self.audit_now(
            culprit,
            audit_kind,
            [fault.kind as u64, fault.addr],
            platform,
        );
        if culprit == 0 {
            self.report_fault(culprit, fault, Response::Restart, platform);
            return self.restart_service(platform);
        }
        let stop = class.is_some_and(|c| {
            self.partitions[culprit].supervision.policy.action(c) == TrapAction::Stop
        });
        if stop || !self.supervised(culprit) {
            self.report_fault(culprit, fault, Response::Stop, platform);
            self.stop(culprit, StopCause::Policy, platform);
        } else {
            // Traps the service VM resumes can come by the thousand: after the first
            // few of a generation their lines are left out (the audit ring keeps
            // every one).
            let partition = &mut self.partitions[culprit];
            partition.trap_lines += 1;
            if class.is_none() || partition.trap_lines <= TRAP_LINES {
                self.report_fault(culprit, fault, Response::Suspend, platform);
            }
            let kind = if class.is_some() {
                EventKind::Trap
            } else {
                EventKind::Fault
            };
            let mut record = self.record(kind, culprit, platform);
            record.reason = Some(fault.kind);
            record.address = fault.addr;
            record.syndrome = fault.syndrome;
            if fault.kind == Reason::Panic {
                record.detail = fault.syndrome;
            }
            record.snapshot = fault.snapshot;
            self.suspend(culprit, record, fault.length, platform);
        }
        Dispatch::new(None, self.after(culprit, platform))
    }

    /// Checks the watchdogs of the partitions on `cpu` at `now_us`: a guest that is
    /// late is suspended for the service VM (or stopped when unsupervised), a late
    /// service VM is restarted. Returns the reload the back end must do, if any.
    pub fn check_watchdogs(
        &mut self,
        cpu: usize,
        now_us: u64,
        platform: &mut impl Platform,
    ) -> Option<Effect> {
        let late = (0..self.partitions.len()).find(|&i| {
            let partition = &self.partitions[i];
            partition.cpu == cpu
                && partition.state == State::Runnable
                && partition.heartbeat_due_us.is_some_and(|due| now_us > due)
        })?;
        let partition = &mut self.partitions[late];
        let due = partition.heartbeat_due_us.take().expect("found late");
        let period_ms = partition.supervision.watchdog_ms;
        let late_us = now_us - due;
        emit(
            platform,
            Event::PartitionWatchdog {
                name: partition.name(),
                generation: partition.generation,
                period_ms,
                late_us,
            },
        );
        let detail = [u64::from(period_ms) * 1000, late_us];
        self.audit_now(late, AuditKind::Watchdog, detail, platform);
        if late == 0 {
            return self.restart_service(platform).effect;
        }
        if !self.supervised(late) {
            self.stop(late, StopCause::Policy, platform);
            return None;
        }
        let mut record = self.record(EventKind::Watchdog, late, platform);
        record.reason = Some(Reason::Watchdog);
        record.detail = late_us;
        self.suspend(late, record, 0, platform);
        None
    }

    /// Carries out a restart or stop the service VM asked for while `current` ran
    /// here (on its own core). The back end calls this first on every trap.
    pub fn take_deferred(
        &mut self,
        current: usize,
        platform: &mut impl Platform,
    ) -> Option<Dispatch> {
        let deferred = self.partitions[current].deferred.take()?;
        let effect = match deferred {
            Deferred::Restart => self.restart(current, platform).ok(),
            Deferred::Stop => {
                self.stop(current, StopCause::Service, platform);
                None
            }
        };
        Some(Dispatch {
            reply: None,
            next: self.after(current, platform),
            effect,
        })
    }

    /// One byte typed on the console. [`ESCAPE`] gives the console to the service
    /// VM, or takes it back; other bytes go to the service VM while it has it, and
    /// are dropped otherwise.
    pub fn console_input(&mut self, byte: u8, platform: &mut impl Platform) {
        if self.partitions[0].state.ended() {
            return;
        }
        if byte == ESCAPE {
            self.events.console = !self.events.console;
            emit(
                platform,
                Event::KernelConsole {
                    service: self.events.console,
                },
            );
            if self.events.console {
                let record = self.record(EventKind::Console, 0, platform);
                self.post(record, platform);
            }
            return;
        }
        if !self.events.console {
            return;
        }
        if let Some(last) = self.events.queue.back_mut()
            && last.kind == EventKind::Input
            && last.push_input(byte)
        {
            return;
        }
        let mut record = self.record(EventKind::Input, 0, platform);
        record.push_input(byte);
        self.post(record, platform);
    }

    /// Tells the service VM that guest `index` ended (exited or was stopped).
    pub(super) fn notify_ended(
        &mut self,
        index: usize,
        kind: EventKind,
        detail: u64,
        platform: &mut impl Platform,
    ) {
        if index == 0 || self.partitions[0].state.ended() {
            return;
        }
        let mut record = self.record(kind, index, platform);
        record.detail = detail;
        self.post(record, platform);
    }

    pub(super) fn decode_supervision(
        &self,
        caller: usize,
        call: Call,
        args: [u64; 6],
    ) -> Result<Request, Error> {
        let partition = &self.partitions[caller];
        let [slot, a2, a3, ..] = args;
        let need = |ty, right| caps::lookup(&partition.caps, slot, ty, right);
        // A control call names its target by capability and the generation the
        // caller last saw (0: whichever is current).
        let target = |right| -> Result<usize, Error> {
            let target = usize::from(need(CapType::Control, right)?.object);
            let generation = self.partitions[target].generation;
            if a2 != 0 && a2 != u64::from(generation) {
                return Err(Error::PeerRestarted);
            }
            Ok(target)
        };
        match call {
            Call::WaitEvent => {
                need(CapType::System, Rights::MONITOR)?;
                self.guest_buffer(caller, a2, RECORD_SIZE as u64)
                    .map(Request::WaitEvent)
            }
            Call::Inspect => {
                let target = usize::from(need(CapType::Control, Rights::INSPECT)?.object);
                let name = match a2 {
                    0 => None,
                    at => Some(self.guest_buffer(caller, at, NAME_MAX as u64)?),
                };
                Ok(Request::Inspect(target, name))
            }
            Call::Identify => usize::try_from(slot)
                .ok()
                .and_then(|slot| partition.caps.get(slot).copied())
                .map(Request::Identify)
                .ok_or(Error::NoSuchSlot),
            Call::Resume => {
                let target = target(Rights::RESUME)?;
                if a3 & !resume::ALL != 0 {
                    return Err(Error::InvalidArgument);
                }
                let suspension = match self.partitions[target].state {
                    State::Suspended => self.partitions[target].suspension,
                    _ => return Err(Error::BadState),
                };
                let skip = a3 & resume::SKIP != 0;
                if skip && suspension.is_none_or(|s| s.length == 0) {
                    return Err(Error::CannotSkip);
                }
                Ok(Request::Resume { target, skip })
            }
            Call::Restart => {
                let target = target(Rights::RESTART)?;
                match self.partitions[target].state {
                    State::Waiting | State::Blocked => Err(Error::BadState),
                    _ => Ok(Request::Restart(target)),
                }
            }
            Call::Stop => {
                let target = target(Rights::STOP)?;
                match self.partitions[target].state {
                    State::Waiting | State::Blocked | State::Exited(_) | State::Stopped => {
                        Err(Error::BadState)
                    }
                    _ => Ok(Request::Stop(target)),
                }
            }
            Call::SetPolicy => {
                let target = usize::from(need(CapType::Control, Rights::STOP)?.object);
                let class = TrapClass::from_number(a2).ok_or(Error::InvalidArgument)?;
                let action = TrapAction::from_number(a3).ok_or(Error::InvalidArgument)?;
                if self.service_ready {
                    return Err(Error::BadState);
                }
                let mut policy = self.partitions[target].supervision.policy;
                policy
                    .tighten(class, action)
                    .map_err(|_| Error::Loosening)?;
                Ok(Request::SetPolicy(target, class, action))
            }
            Call::AuditRead => {
                need(CapType::System, Rights::MONITOR)?;
                let max = usize::try_from(a3).map_err(|_| Error::TooLong)?;
                if max > AUDIT_CAPACITY {
                    return Err(Error::TooLong);
                }
                let buffer = self.guest_buffer(caller, a2, (max * AUDIT_RECORD_SIZE) as u64)?;
                Ok(Request::AuditRead(buffer, max))
            }
            Call::Heartbeat => {
                need(CapType::Watchdog, Rights::HEARTBEAT)?;
                if partition.supervision.watchdog_ms == 0 {
                    return Err(Error::BadState);
                }
                Ok(Request::Heartbeat)
            }
            Call::Panic => need(CapType::SelfPartition, Rights::EXIT).map(|_| Request::Panic(a2)),
            Call::Null
            | Call::ConsoleWrite
            | Call::Ready
            | Call::Yield
            | Call::Exit
            | Call::Shutdown
            | Call::Send
            | Call::SendBatch
            | Call::Receive
            | Call::Release
            | Call::Reclaim
            | Call::Wait
            | Call::Inflate
            | Call::Deflate
            | Call::BalloonReport
            | Call::SetMemoryTarget
            | Call::MemoryInfo => unreachable!("decoded by System::decode"),
        }
    }

    pub(super) fn invoke_supervision(
        &mut self,
        caller: usize,
        request: Request,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let ok = |results| Dispatch::new(Some(Reply::ok(results)), Next::Run(caller));
        match request {
            Request::WaitEvent(buffer) => {
                let live = self.live_guests();
                let Some(record) = self.events.queue.pop_front() else {
                    self.events.handling = None;
                    self.partitions[caller].state = State::Blocked;
                    let next = self.after(caller, platform);
                    return Dispatch::new(Some(Reply::ok([0, 0, live])), next);
                };
                self.events.handling = Some(record.partition as usize);
                platform.write_ram(buffer.start, &record.to_bytes());
                ok([record.kind as u64, record.partition, live])
            }
            Request::Identify(cap) => ok(Identified::to_results(cap.map(|cap| Identified {
                ty: cap.ty,
                rights: cap.rights,
                object: cap.object,
            }))),
            Request::Inspect(target, name) => {
                let partition = &self.partitions[target];
                if let Some(buffer) = name {
                    let mut bytes = [0u8; NAME_MAX];
                    bytes[..partition.name.len()].copy_from_slice(partition.name.as_bytes());
                    platform.write_ram(buffer.start, &bytes);
                }
                ok(Inspected {
                    state: partition.state.abi(),
                    generation: partition.generation,
                    restarts: partition.restarts,
                    ram: super::balloon::held_bytes(self, target),
                }
                .to_results())
            }
            Request::Resume { target, skip } => {
                self.forget_decisions(target);
                let now_us = platform.now_us();
                let partition = &mut self.partitions[target];
                let length = partition.suspension.take().map_or(0, |s| s.length);
                partition.state = State::Runnable;
                partition.arm_watchdog(now_us);
                if partition.trap_lines <= TRAP_LINES {
                    emit(
                        platform,
                        Event::PartitionResume {
                            name: partition.name(),
                            generation: partition.generation,
                            skip,
                        },
                    );
                }
                self.audit_now(target, AuditKind::Resume, [u64::from(skip), 0], platform);
                let mut dispatch = ok([0; 3]);
                dispatch.effect = skip.then_some(Effect::Skip(target, length));
                dispatch
            }
            Request::Restart(target) => {
                if self.elsewhere(target, caller) {
                    self.partitions[target].deferred = Some(Deferred::Restart);
                    return ok([1, 0, 0]);
                }
                match self.restart(target, platform) {
                    Ok(effect) => {
                        let mut dispatch = ok([0; 3]);
                        dispatch.effect = Some(effect);
                        dispatch
                    }
                    Err(error) => self.resume_caller(caller, Reply::error(error)),
                }
            }
            Request::Stop(target) => {
                if self.elsewhere(target, caller) {
                    self.partitions[target].deferred = Some(Deferred::Stop);
                    return ok([1, 0, 0]);
                }
                self.stop(target, StopCause::Service, platform);
                ok([0; 3])
            }
            Request::SetPolicy(target, class, action) => {
                let partition = &mut self.partitions[target];
                let _ = partition.supervision.policy.tighten(class, action);
                emit(
                    platform,
                    Event::PartitionPolicy {
                        name: partition.name(),
                        class,
                        action,
                    },
                );
                let detail = [class as u64, action as u64];
                self.audit_now(target, AuditKind::Policy, detail, platform);
                ok([0; 3])
            }
            Request::AuditRead(buffer, max) => {
                let mut copied = 0;
                while copied < max {
                    let Some(record) = self.audit.pop() else {
                        break;
                    };
                    let at = buffer.start + (copied * AUDIT_RECORD_SIZE) as u64;
                    platform.write_ram(at, &record.to_bytes());
                    copied += 1;
                }
                ok([copied as u64, self.audit.lost(), self.audit.len() as u64])
            }
            Request::Heartbeat => {
                let now_us = platform.now_us();
                self.partitions[caller].arm_watchdog(now_us);
                ok([0; 3])
            }
            Request::Panic(code) => {
                let fault = Fault::new(Reason::Panic, 0, code);
                let mut dispatch = self.fault(caller, fault, platform);
                dispatch.reply = Some(Reply::ok([0; 3]));
                dispatch
            }
        }
    }

    /// Whether `target`'s registers are live on a core other than the caller's.
    fn elsewhere(&self, target: usize, caller: usize) -> bool {
        let here = self.partitions[caller].cpu;
        self.loaded
            .iter()
            .enumerate()
            .any(|(cpu, loaded)| cpu != here && *loaded == Some(target))
    }

    /// Guests that have not ended.
    fn live_guests(&self) -> u64 {
        self.partitions[1..]
            .iter()
            .filter(|p| !p.state.ended())
            .count() as u64
    }

    /// Restarts `index` if its budget allows: a new generation, runnable, with a
    /// reload for the back end. Past the budget it is stopped for good instead.
    fn restart(&mut self, index: usize, platform: &mut impl Platform) -> Result<Effect, Error> {
        // Its initial memory must come back whole, or it is not restarted.
        self.balloon.can_restart(index)?;
        let now_us = platform.now_us();
        let partition = &mut self.partitions[index];
        let period_us = u64::from(partition.supervision.budget.period_ms) * 1000;
        while partition
            .restart_times
            .front()
            .is_some_and(|&at| now_us.saturating_sub(at) >= period_us)
        {
            partition.restart_times.pop_front();
        }
        if partition.restart_times.len() >= usize::from(partition.supervision.budget.restarts) {
            self.stop(index, StopCause::Budget, platform);
            return Err(Error::BudgetExhausted);
        }
        // Cannot fail: the budget is at most MAX_RESTARTS, the deque's capacity.
        let _ = partition.restart_times.push_back(now_us);
        self.forget_decisions(index);
        let partition = &mut self.partitions[index];
        partition.generation += 1;
        partition.restarts += 1;
        partition.trap_lines = 0;
        partition.state = State::Runnable;
        partition.suspension = None;
        partition.deferred = None;
        partition.console.clear();
        // Its watchdog starts once its RAM is reloaded, which it owes.
        partition.heartbeat_due_us = None;
        partition.reload_at = Some(0);
        self.restart_queues(index, platform);
        self.balloon.restart(index, platform);
        let partition = &mut self.partitions[index];
        emit(
            platform,
            Event::PartitionRestart {
                name: partition.name(),
                generation: partition.generation,
                in_period: partition.restart_times.len(),
            },
        );
        let generation = partition.generation;
        let in_period = partition.restart_times.len() as u64;
        self.audit_now(
            index,
            AuditKind::Restart,
            [u64::from(generation), in_period],
            platform,
        );
        Ok(Effect::ResetVcpu(index, generation))
    }

    /// The service VM faulted or hung: restart it and tell the new instance about
    /// every guest still suspended. Past its budget it stays stopped, and the
    /// guests run on unsupervised: those suspended are stopped.
    fn restart_service(&mut self, platform: &mut impl Platform) -> Dispatch {
        if self.events.console {
            emit(platform, Event::KernelConsole { service: false });
        }
        self.events = Events::default();
        match self.restart(0, platform) {
            Ok(effect) => {
                for index in 1..self.partitions.len() {
                    if let Some(suspension) = self.partitions[index].suspension {
                        self.post(suspension.record, platform);
                    }
                }
                Dispatch {
                    reply: None,
                    next: Next::Run(0),
                    effect: Some(effect),
                }
            }
            Err(_) => {
                for index in 1..self.partitions.len() {
                    if self.partitions[index].state == State::Suspended {
                        self.stop(index, StopCause::Policy, platform);
                    }
                }
                Dispatch::new(None, self.after(0, platform))
            }
        }
    }

    /// Drops queued events that ask for a decision about `index`: it has had one.
    fn forget_decisions(&mut self, index: usize) {
        let queue = core::mem::take(&mut self.events.queue);
        for record in queue {
            let decided = record.partition == index as u64 && record.kind.suspends();
            if !decided {
                // Cannot fail: no more than were there before.
                let _ = self.events.queue.push_back(record);
            }
        }
    }

    fn suspend(&mut self, index: usize, record: Record, length: u8, platform: &mut impl Platform) {
        let partition = &mut self.partitions[index];
        partition.state = State::Suspended;
        partition.heartbeat_due_us = None;
        partition.suspension = Some(Suspension { record, length });
        self.post(record, platform);
    }

    fn stop(&mut self, index: usize, cause: StopCause, platform: &mut impl Platform) {
        self.flush_console(index, platform);
        self.forget_decisions(index);
        let partition = &mut self.partitions[index];
        partition.state = State::Stopped;
        // It never runs again: a reload it still owed is moot.
        partition.reload_at = None;
        partition.suspension = None;
        partition.heartbeat_due_us = None;
        emit(
            platform,
            Event::PartitionStop {
                name: partition.name(),
                generation: partition.generation,
                cause,
            },
        );
        self.audit_now(index, AuditKind::Stop, [cause.number(), 0], platform);
        self.end_queues(index, platform);
        self.balloon.end(index, platform);
        if cause != StopCause::Service {
            self.notify_ended(index, EventKind::Stopped, cause.number(), platform);
        }
    }

    /// Queues an event for the service VM and wakes it if it waits. Only
    /// suspensions may use the last [`MAX_PARTITIONS`] places.
    pub(super) fn post(&mut self, record: Record, platform: &mut impl Platform) {
        let reserved = self.events.queue.capacity() - self.events.queue.len() <= MAX_PARTITIONS;
        if reserved && !record.kind.suspends() {
            return;
        }
        // Cannot fail for a suspension: at most one per partition is queued.
        let _ = self.events.queue.push_back(record);
        let now_us = platform.now_us();
        let service = &mut self.partitions[0];
        if service.state == State::Blocked {
            service.state = State::Runnable;
            service.arm_watchdog(now_us);
        }
    }

    pub(super) fn record(
        &self,
        kind: EventKind,
        index: usize,
        platform: &mut impl Platform,
    ) -> Record {
        let generation = self.partitions[index].generation;
        Record::new(kind, index as u64, generation, platform.now_us())
    }

    fn report_fault(
        &self,
        index: usize,
        fault: Fault,
        response: Response,
        platform: &mut impl Platform,
    ) {
        let partition = &self.partitions[index];
        emit(
            platform,
            Event::PartitionFault {
                name: partition.name(),
                fault,
                generation: partition.generation,
                response,
            },
        );
    }

    fn audit_now(
        &mut self,
        index: usize,
        kind: AuditKind,
        detail: [u64; 2],
        platform: &mut impl Platform,
    ) {
        self.audit.push(AuditRecord {
            time_us: platform.now_us(),
            partition: index as u8,
            kind,
            generation: self.partitions[index].generation,
            detail,
        });
    }
}
