//! The hypercall dispatcher: every call is decoded once, here, into a typed
//! [`Request`], and carried out by exactly one handler.
//!
//! Decode, then invoke: [`System::decode`] checks the call number, then the
//! capability the call names (slot, type, right, from the one table
//! [`Call::need`] in the ABI crate), then every other argument, and changes
//! nothing; only [`System::invoke`] changes state, one match arm per request,
//! each handing the request to its handler (in `calls.rs`, `supervise.rs`,
//! `events.rs`, `queues.rs`, `balloon.rs`, `net.rs` or `usage.rs`).

use septum_abi::{CONSOLE_WRITE_MAX, Call, CapType, Error, NAME_MAX, PartitionState, resume};

use super::calls::VcpuStart;
use super::lifecycle::State;
use super::queues;
use super::{CallRegisters, Dispatch, Next, Platform, Reply, System, emit};
use crate::audit::{AUDIT_CAPACITY, AUDIT_RECORD_SIZE, AuditKind, AuditRecord};
use crate::balloon::Direction;
use crate::caps::{self, Cap};
use crate::event::{Event, Resumption};
use crate::flip::End;
use crate::memory::Range;
use crate::supervision::{TrapAction, TrapClass};

/// Refused hypercalls per partition reported one by one; later ones are counted and
/// their total reported when the partition ends or the system shuts down.
pub const DENIED_LINES: u64 = 16;

/// A validated hypercall, ready to be carried out: a few words, so that deciding
/// and invoking costs no copying (a send's page list is read when it is carried
/// out).
pub(super) enum Request {
    Null,
    ConsoleWrite(Range),
    Ready,
    Yield,
    Exit(u64),
    Shutdown(u64),
    WaitEvent {
        buffer: Range,
        block: bool,
    },
    MachineBase,
    Inspect {
        target: usize,
        name: Option<Range>,
    },
    Identify(Option<Cap>),
    Resume {
        target: usize,
        how: Resumption,
    },
    Restart(usize),
    Stop(usize),
    SetPolicy {
        target: usize,
        class: TrapClass,
        action: TrapAction,
    },
    AuditRead {
        buffer: Range,
        max: usize,
    },
    Heartbeat,
    Panic(u64),
    Queue(queues::Request),
    QueueWait(usize, End),
    Batch {
        direction: Direction,
        list: Range,
    },
    Report {
        free: u64,
        used: u64,
        failures: u64,
    },
    BalloonWait,
    SetTarget {
        target: usize,
        pages: u64,
    },
    MemoryInfo {
        target: usize,
        buffer: Range,
    },
    VcpuStart(VcpuStart),
    Virtualize,
    Evacuate {
        target: usize,
        first: u64,
        pages: u64,
    },
    Devirtualize(usize),
    Relocate(usize),
    NetInfo {
        target: usize,
        buffer: Range,
    },
    Usage {
        target: usize,
        buffer: Range,
    },
}

/// Who made a call: the vCPU (system-wide number) and its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Caller {
    pub(super) partition: usize,
    pub(super) vcpu: usize,
}

impl System {
    /// Handles a hypercall made by `caller`.
    pub(super) fn hypercall(
        &mut self,
        caller: Caller,
        call: &CallRegisters,
        platform: &mut impl Platform,
    ) -> Dispatch {
        match self.decode(caller.partition, call) {
            Ok(ref request) => self.invoke(caller, request, platform),
            Err(error) => {
                self.note_refusal(caller.partition, call.number, error, platform);
                Dispatch::resume(Reply::error(error))
            }
        }
    }

    /// Checks a call whole (number, capability, arguments) and types it; changes
    /// nothing.
    fn decode(&self, caller: usize, registers: &CallRegisters) -> Result<Request, Error> {
        let call = Call::from_number(registers.number).ok_or(Error::UnknownCall)?;
        let partition = &self.partitions[caller];
        let [slot, a2, a3, a4, ..] = registers.args;
        let cap = caps::lookup_for(&partition.caps, call, slot)?;
        // The object a capability names: a partition (control), a queue (its ends).
        let object = || usize::from(cap.expect("a call that needs a capability").object);
        let queue_end = || cap.expect("a queue call names a queue end");
        // A control call names its target by capability and the generation the
        // caller last saw (0: whichever is current).
        let target = || -> Result<usize, Error> {
            let target = object();
            if a2 != 0 && a2 != u64::from(self.partitions[target].life.generation()) {
                return Err(Error::PeerRestarted);
            }
            Ok(target)
        };
        let state = |target: usize| self.partitions[target].life.state();
        let abi = |target: usize| self.partitions[target].life.abi();
        Ok(match call {
            Call::Null => Request::Null,
            Call::ConsoleWrite => {
                if a3 > CONSOLE_WRITE_MAX {
                    return Err(Error::TooLong);
                }
                Request::ConsoleWrite(self.guest_buffer(caller, a2, a3)?)
            }
            Call::Ready => {
                // A restarted service VM reports ready again, which changes nothing;
                // the first instance may do it once.
                if self.service_ready && partition.life.generation() == 1 {
                    return Err(Error::BadState);
                }
                Request::Ready
            }
            Call::Yield => Request::Yield,
            Call::Exit => Request::Exit(a2),
            Call::Shutdown => Request::Shutdown(a2),
            Call::WaitEvent => Request::WaitEvent {
                buffer: self.guest_buffer(caller, a2, septum_abi::event::RECORD_SIZE as u64)?,
                block: match a3 {
                    0 => true,
                    septum_abi::event::NO_WAIT => false,
                    _ => return Err(Error::InvalidArgument),
                },
            },
            Call::MachineBase => Request::MachineBase,
            Call::Inspect => Request::Inspect {
                target: object(),
                name: match a2 {
                    0 => None,
                    at => Some(self.guest_buffer(caller, at, NAME_MAX as u64)?),
                },
            },
            Call::Identify => Request::Identify(cap),
            Call::Resume => {
                let target = target()?;
                if a3 & !resume::ALL != 0 {
                    return Err(Error::InvalidArgument);
                }
                let State::Suspended(suspension) = state(target) else {
                    return Err(Error::BadState);
                };
                let how = match (a3 & resume::SKIP != 0, a3 & resume::UNDEFINED != 0) {
                    (false, false) => Resumption::Retry,
                    (true, false) => Resumption::Skip,
                    (false, true) if self.partitions[target].machine.is_some() => {
                        Resumption::Undefined
                    }
                    _ => return Err(Error::InvalidArgument),
                };
                if how != Resumption::Retry && suspension.length == 0 {
                    return Err(Error::CannotSkip);
                }
                Request::Resume { target, how }
            }
            // A guest whose every vCPU waits in a call may be restarted or
            // stopped like a running one: nothing else would ever end its wait.
            Call::Restart => {
                let target = target()?;
                if abi(target) == PartitionState::Waiting {
                    return Err(Error::BadState);
                }
                self.check_pages_home(target)?;
                Request::Restart(target)
            }
            Call::Stop => {
                let target = target()?;
                if abi(target) == PartitionState::Waiting || state(target).ended() {
                    return Err(Error::BadState);
                }
                Request::Stop(target)
            }
            Call::SetPolicy => {
                let target = object();
                let class = TrapClass::from_number(a2).ok_or(Error::InvalidArgument)?;
                let action = TrapAction::from_number(a3).ok_or(Error::InvalidArgument)?;
                if self.service_ready {
                    return Err(Error::BadState);
                }
                let mut policy = self.partitions[target].life.supervision().policy;
                policy
                    .tighten(class, action)
                    .map_err(|_| Error::Loosening)?;
                Request::SetPolicy {
                    target,
                    class,
                    action,
                }
            }
            Call::AuditRead => {
                let max = usize::try_from(a3).map_err(|_| Error::TooLong)?;
                if max > AUDIT_CAPACITY {
                    return Err(Error::TooLong);
                }
                let buffer = self.guest_buffer(caller, a2, (max * AUDIT_RECORD_SIZE) as u64)?;
                Request::AuditRead { buffer, max }
            }
            Call::Heartbeat => {
                if partition.life.supervision().watchdog_ms == 0 {
                    return Err(Error::BadState);
                }
                Request::Heartbeat
            }
            Call::Panic => Request::Panic(a2),
            Call::Send => Request::Queue(self.decode_send(caller, queue_end(), [a2, a3, a4])?),
            Call::SendBatch => {
                Request::Queue(self.decode_send_batch(caller, queue_end(), [a2, a3, a4])?)
            }
            Call::Receive => Request::Queue(self.decode_receive(caller, queue_end(), [a2, a3, a4])),
            Call::Release => Request::Queue(queues::Request::Release {
                queue: object(),
                guest: a2,
                count: a3,
            }),
            Call::Reclaim => Request::Queue(queues::Request::Reclaim(object())),
            Call::Wait => match cap.expect("wait needs a capability").ty {
                caps::CapType::QueueSend => Request::QueueWait(object(), End::Send),
                caps::CapType::QueueReceive => Request::QueueWait(object(), End::Receive),
                _ => Request::BalloonWait,
            },
            Call::Inflate | Call::Deflate => {
                let direction = if call == Call::Inflate {
                    Direction::Inflate
                } else {
                    Direction::Deflate
                };
                Request::Batch {
                    direction,
                    list: self.decode_batch(caller, a2, a3)?,
                }
            }
            Call::BalloonReport => Request::Report {
                free: a2,
                used: a3,
                failures: a4,
            },
            Call::SetMemoryTarget => {
                let target = target()?;
                self.check_target(target, a3)?;
                Request::SetTarget { target, pages: a3 }
            }
            Call::MemoryInfo => Request::MemoryInfo {
                target: object(),
                buffer: self.guest_buffer(
                    caller,
                    a2,
                    (septum_abi::balloon::INFO_WORDS * 8) as u64,
                )?,
            },
            Call::VcpuStart => Request::VcpuStart(self.decode_vcpu_start(caller, slot, a2, a3)?),
            Call::NetInfo => Request::NetInfo {
                target: match cap.map(|cap| cap.ty) {
                    Some(CapType::Control) => object(),
                    _ => caller,
                },
                buffer: self.guest_buffer(
                    caller,
                    a2,
                    (septum_abi::net::COUNTER_WORDS * 8) as u64,
                )?,
            },
            Call::Virtualize => {
                self.check_virtualize(caller)?;
                Request::Virtualize
            }
            Call::Evacuate => {
                self.check_evacuate(object(), a2, a3)?;
                Request::Evacuate {
                    target: object(),
                    first: a2,
                    pages: a3,
                }
            }
            Call::Devirtualize => {
                self.check_devirtualize(object())?;
                Request::Devirtualize(object())
            }
            Call::Relocate => {
                self.check_relocate(object())?;
                Request::Relocate(object())
            }
            Call::Usage => Request::Usage {
                target: match cap.map(|cap| cap.ty) {
                    Some(CapType::Control) => object(),
                    _ => caller,
                },
                buffer: self.guest_buffer(
                    caller,
                    a2,
                    (septum_abi::usage::USAGE_WORDS * 8) as u64,
                )?,
            },
        })
    }

    /// Carries out a decoded call: one arm, one handler, per request.
    fn invoke(
        &mut self,
        caller: Caller,
        request: &Request,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let index = caller.partition;
        match *request {
            Request::Null => Dispatch::resume(Reply::ok([0; 3])),
            Request::ConsoleWrite(range) => self.console_write(caller, range, platform),
            Request::Ready => self.ready(index, platform),
            Request::Yield => self.yield_turn(index),
            Request::Exit(code) => {
                self.exit(index, code, platform);
                Dispatch::new(None, Next::Yield)
            }
            Request::Shutdown(code) => self.shutdown(code, platform),
            Request::WaitEvent { buffer, block } => {
                self.wait_event(caller, buffer, block, platform)
            }
            Request::MachineBase => Dispatch::resume(Reply::ok([
                self.partitions[caller.partition].host_ram.start,
                0,
                0,
            ])),
            Request::Inspect { target, name } => self.inspect(target, name, platform),
            Request::Identify(cap) => Self::identify(cap),
            Request::Resume { target, how } => self.resume(target, how, platform),
            Request::Restart(target) => self.control_restart(target, platform),
            Request::Stop(target) => self.control_stop(target, platform),
            Request::SetPolicy {
                target,
                class,
                action,
            } => self.set_policy(target, class, action, platform),
            Request::AuditRead { buffer, max } => self.audit_read(buffer, max, platform),
            Request::Heartbeat => self.heartbeat(index, platform),
            Request::Panic(code) => self.panic(caller, code, platform),
            Request::Queue(request) => self.invoke_queue(index, request, platform),
            Request::QueueWait(queue, end) => self.queue_wait(caller, queue, end, platform),
            Request::Batch { direction, list } => {
                self.balloon_batch(index, direction, list, platform)
            }
            Request::Report {
                free,
                used,
                failures,
            } => self.balloon_report(index, free, used, failures, platform),
            Request::BalloonWait => self.balloon_wait(caller),
            Request::SetTarget { target, pages } => self.set_target(target, pages, platform),
            Request::MemoryInfo { target, buffer } => self.memory_info(target, buffer, platform),
            Request::VcpuStart(start) => self.vcpu_start(start, platform),
            Request::NetInfo { target, buffer } => self.net_info(target, buffer, platform),
            Request::Usage { target, buffer } => self.usage_info(target, buffer, platform),
            Request::Virtualize => self.virtualize(caller, platform),
            Request::Evacuate {
                target,
                first,
                pages,
            } => self.evacuate(target, first, pages, platform),
            Request::Devirtualize(target) => self.devirtualize(target, platform),
            Request::Relocate(target) => self.relocate(target, platform),
        }
    }

    /// Audits a refused call and reports it on the console (the first
    /// [`DENIED_LINES`] of the partition).
    pub(super) fn note_refusal(
        &mut self,
        caller: usize,
        number: u64,
        error: Error,
        platform: &mut impl Platform,
    ) {
        let time_us = platform.now_us();
        let partition = &mut self.partitions[caller];
        self.audit.push(AuditRecord {
            time_us,
            partition: caller as u8,
            kind: AuditKind::CapabilityError,
            generation: partition.life.generation(),
            detail: [number, error.code() as u64],
        });
        partition.denied += 1;
        if partition.denied <= DENIED_LINES {
            emit(
                platform,
                Event::HypercallDenied {
                    name: partition.name(),
                    call: number,
                    error,
                },
            );
        }
    }
}
