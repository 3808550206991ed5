//! Supervision: what happens when a guest traps, faults, panics or misses its
//! heartbeat, and the service VM's control calls (`inspect`, `resume`,
//! `restart`, `stop`, `set_policy`, `audit_read`) with the audit ring they read;
//! and every partition's `heartbeat` and `panic`.
//!
//! A guest whose trap policy says `service` for what it did, or that faulted, is
//! **suspended** and the service VM gets one event naming it, its generation, the
//! reason, the address and a register snapshot. The service VM answers with
//! `resume` (optionally skipping the trapped instruction), `restart` or `stop`. A
//! guest with nothing to supervise it (no service VM control capability for it, or
//! a service VM stopped for good), or whose policy says `stop`, is stopped at once.
//! The service VM itself is never suspended: when it faults or misses its
//! heartbeat the kernel restarts it, within its own restart budget, and tells the
//! new instance again about every guest still suspended. A devirtualizable guest
//! running natively has no service VM beside it: what it does that reaches the
//! kernel first takes it under the translation and brings the service VM back
//! (`devirt.rs`), which then decides as for any guest.
//!
//! Invariants:
//! - a suspended guest has exactly one suspension on record, and an event for it is
//!   queued or has been handed to the current service VM instance;
//! - every control call checks its capability, the generation the caller saw and
//!   the target's state before it changes anything (decode, then invoke:
//!   `dispatch.rs`);
//! - a restart or stop of a partition live on another core is carried out once it
//!   is live on none (`run.rs`), never under its feet.

use septum_abi::event::Kind as EventKind;
use septum_abi::{Inspected, NAME_MAX};

use super::dispatch::Caller;
use super::lifecycle::{Deferred, Suspension};
use super::run::{Effect, Outcome};
use super::{Dispatch, Next, Platform, Reply, System, emit};
use crate::audit::{AUDIT_RECORD_SIZE, AuditKind, AuditRecord};
use crate::caps::{CapType, Rights};
use crate::event::{Event, Fault, Reason, Response, Resumption, StopCause, trap_class};
use crate::memory::Range;
use crate::supervision::{TrapAction, TrapClass};

/// Traps of one generation of a partition reported line by line; the audit ring
/// records them all.
pub const TRAP_LINES: u32 = 16;

impl System {
    /// Whether a fault of guest `index` goes to the service VM.
    fn supervised(&self, index: usize) -> bool {
        let service = &self.partitions[0];
        !service.life.ended()
            && service.caps.iter().flatten().any(|cap| {
                cap.ty == CapType::Control
                    && usize::from(cap.object) == index
                    && cap.rights.contains(Rights::RESUME)
            })
    }

    /// vCPU `vcpu` trapped or faulted. Its partition, if a guest, is suspended for
    /// the service VM or stopped (see the module doc); the service VM is
    /// restarted.
    pub(super) fn fault(
        &mut self,
        vcpu: usize,
        fault: &Fault,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let culprit = self.vcpus[vcpu].partition;
        let index = self.vcpus[vcpu].index;
        if let Some(next) = self.devirt_fault(culprit, fault) {
            return Dispatch::new(None, next);
        }
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
            self.report_fault(vcpu, *fault, Response::Restart, platform);
            return self.restart_service(platform);
        }
        let service = self.monitor_native(culprit, platform);
        let stop = class.is_some_and(|c| {
            self.partitions[culprit].life.supervision().policy.action(c) == TrapAction::Stop
        });
        if stop || !self.supervised(culprit) {
            self.report_fault(vcpu, *fault, Response::Stop, platform);
            self.stop(culprit, StopCause::Policy, platform);
        } else {
            // Traps the service VM resumes can come by the thousand: after the first
            // few of a generation their lines are left out (the audit ring keeps
            // every one).
            let partition = &mut self.partitions[culprit];
            partition.trap_lines += 1;
            if class.is_none() || partition.trap_lines <= TRAP_LINES {
                self.report_fault(vcpu, *fault, Response::Suspend, platform);
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
            self.suspend(
                culprit,
                Suspension {
                    record,
                    vcpu: index,
                    length: fault.length,
                },
                platform,
            );
        }
        Dispatch {
            reply: None,
            next: Next::Yield,
            effect: service,
        }
    }

    /// Checks the watchdogs of the partitions whose vCPU 0 is on `cpu`: a guest
    /// that is late is suspended for the service VM (or stopped when
    /// unsupervised), a late service VM is restarted (its vCPU reset goes in
    /// `out`).
    pub(super) fn check_watchdogs(
        &mut self,
        cpu: usize,
        out: &mut Outcome,
        platform: &mut impl Platform,
    ) {
        let now_us = platform.now_us();
        let Some((late, late_us)) =
            self.partitions
                .iter()
                .enumerate()
                .find_map(|(i, partition)| {
                    let late_us = partition
                        .life
                        .late_by(now_us)
                        .filter(|_| partition.cpu == cpu)?;
                    Some((i, late_us))
                })
        else {
            return;
        };
        let partition = &self.partitions[late];
        let period_ms = partition.life.supervision().watchdog_ms;
        emit(
            platform,
            Event::PartitionWatchdog {
                name: partition.name(),
                generation: partition.life.generation(),
                period_ms,
                late_us,
            },
        );
        let detail = [u64::from(period_ms) * 1000, late_us];
        self.audit_now(late, AuditKind::Watchdog, detail, platform);
        if late == 0 {
            if let Some(effect) = self.restart_service(platform).effect {
                self.push_effect(cpu, effect, out, platform);
            }
            return;
        }
        if let Some(effect) = self.monitor_native(late, platform) {
            self.push_effect(cpu, effect, out, platform);
        }
        if !self.supervised(late) {
            self.stop(late, StopCause::Policy, platform);
            return;
        }
        let mut record = self.record(EventKind::Watchdog, late, platform);
        record.reason = Some(Reason::Watchdog);
        record.detail = late_us;
        let suspension = Suspension {
            record,
            vcpu: 0,
            length: 0,
        };
        self.suspend(late, suspension, platform);
    }

    /// `inspect`: the target's state, generation, restarts and memory, and its
    /// name if `name` is given.
    pub(super) fn inspect(
        &mut self,
        target: usize,
        name: Option<Range>,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let partition = &self.partitions[target];
        if let Some(buffer) = name {
            let mut bytes = [0u8; NAME_MAX];
            bytes[..partition.name.len()].copy_from_slice(partition.name.as_bytes());
            platform.write_ram(buffer.start, &bytes);
        }
        let inspected = Inspected {
            state: partition.life.abi(),
            generation: partition.life.generation(),
            restarts: partition.life.restarts(),
            ram: self.held_bytes(target),
            linux: partition.machine.is_some(),
        };
        Dispatch::resume(Reply::ok(inspected.to_results()))
    }

    /// `resume`: the suspended target runs on, past the trapped instruction if
    /// `resume`: the suspended `target` runs on, as `how` says.
    pub(super) fn resume(
        &mut self,
        target: usize,
        how: Resumption,
        platform: &mut impl Platform,
    ) -> Dispatch {
        self.forget_decisions(target);
        let now_us = platform.now_us();
        let partition = &mut self.partitions[target];
        let suspension = partition.life.resume(now_us).expect("checked by decode");
        self.note_may_run(target);
        let partition = &mut self.partitions[target];
        if partition.trap_lines <= TRAP_LINES {
            emit(
                platform,
                Event::PartitionResume {
                    name: partition.name(),
                    generation: partition.life.generation(),
                    how,
                },
            );
        }
        self.audit_now(target, AuditKind::Resume, [how as u64, 0], platform);
        let vcpu = self.partitions[target].vcpus.start + suspension.vcpu;
        let mut dispatch = Dispatch::resume(Reply::ok([0; 3]));
        dispatch.effect = match how {
            Resumption::Retry => None,
            Resumption::Skip => Some(Effect::Skip {
                vcpu,
                length: suspension.length,
            }),
            Resumption::Undefined => Some(Effect::Undefined { vcpu }),
        };
        dispatch
    }

    /// `restart`: now, or (result 1) once no vCPU of the target is live on a
    /// core, if one is.
    pub(super) fn control_restart(
        &mut self,
        target: usize,
        platform: &mut impl Platform,
    ) -> Dispatch {
        if self.live_anywhere(target) {
            self.partitions[target].life.defer(Deferred::Restart);
            self.note_stopped_running();
            return Dispatch::resume(Reply::ok([1, 0, 0]));
        }
        match self.restart(target, platform) {
            Ok(effect) => {
                let mut dispatch = Dispatch::resume(Reply::ok([0; 3]));
                dispatch.effect = Some(effect);
                dispatch
            }
            Err(error) => Dispatch::resume(Reply::error(error)),
        }
    }

    /// `stop`: now, or (result 1) once no vCPU of the target is live on a core.
    pub(super) fn control_stop(&mut self, target: usize, platform: &mut impl Platform) -> Dispatch {
        if self.live_anywhere(target) {
            self.partitions[target].life.defer(Deferred::Stop);
            self.note_stopped_running();
            return Dispatch::resume(Reply::ok([1, 0, 0]));
        }
        self.stop(target, StopCause::Service, platform);
        Dispatch::resume(Reply::ok([0; 3]))
    }

    /// `set_policy`: tightens one trap class of the target (before `ready`).
    pub(super) fn set_policy(
        &mut self,
        target: usize,
        class: TrapClass,
        action: TrapAction,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let partition = &mut self.partitions[target];
        let _ = partition
            .life
            .supervision_mut()
            .policy
            .tighten(class, action);
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
        Dispatch::resume(Reply::ok([0; 3]))
    }

    /// `audit_read`: up to `max` of the oldest audit records into `buffer`.
    pub(super) fn audit_read(
        &mut self,
        buffer: Range,
        max: usize,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let mut copied = 0;
        while copied < max {
            let Some(record) = self.audit.pop() else {
                break;
            };
            let at = buffer.start + (copied * AUDIT_RECORD_SIZE) as u64;
            platform.write_ram(at, &record.to_bytes());
            copied += 1;
        }
        let results = [copied as u64, self.audit.lost(), self.audit.len() as u64];
        Dispatch::resume(Reply::ok(results))
    }

    /// `heartbeat`: the caller is alive; its next heartbeat is due a period on.
    pub(super) fn heartbeat(&mut self, caller: usize, platform: &mut impl Platform) -> Dispatch {
        let now_us = platform.now_us();
        self.partitions[caller].life.heartbeat(now_us);
        Dispatch::resume(Reply::ok([0; 3]))
    }

    /// `panic`: the caller reports a panic: handled as a fault, and it finds 0 in
    /// its registers if it is resumed.
    pub(super) fn panic(
        &mut self,
        caller: Caller,
        code: u64,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let fault = Fault::new(Reason::Panic, 0, code);
        let mut dispatch = self.fault(caller.vcpu, &fault, platform);
        dispatch.reply = Some(Reply::ok([0; 3]));
        dispatch
    }

    fn suspend(&mut self, index: usize, suspension: Suspension, platform: &mut impl Platform) {
        let record = suspension.record;
        self.partitions[index]
            .life
            .suspend(suspension)
            .expect("a partition that trapped, faulted or was late runs");
        self.note_stopped_running();
        self.post(record, platform);
    }

    fn report_fault(
        &self,
        vcpu: usize,
        fault: Fault,
        response: Response,
        platform: &mut impl Platform,
    ) {
        let slot = &self.vcpus[vcpu];
        let partition = &self.partitions[slot.partition];
        emit(
            platform,
            Event::PartitionFault {
                name: partition.name(),
                fault,
                generation: partition.life.generation(),
                response,
                vcpu: slot.index,
            },
        );
    }

    pub(super) fn audit_now(
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
            generation: self.partitions[index].life.generation(),
            detail,
        });
    }
}
