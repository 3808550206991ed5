//! Lifecycle changes that reach beyond the partition itself: a start, an exit, a
//! stop, a restart, and the service VM's own restart. This module is the only
//! code that tells the queues, the balloon ledger and the service VM's event queue
//! that a partition started, ended or restarted; each change of state itself is
//! the [`Lifecycle`](super::lifecycle::Lifecycle)'s.
//!
//! Invariants:
//! - a partition that ends (exits or is stopped) keeps no page of another and
//!   leaves its balloon memory to the pool; its queue peers that wait are woken
//!   to learn it ended;
//! - a restart happens only within the partition's budget; past it the partition
//!   is stopped for good; a restarted partition owes the reload of its RAM and
//!   runs again only once that is done;
//! - a restarted service VM is told again about every guest still suspended.

use septum_abi::Error;
use septum_abi::event::Kind as EventKind;

use super::lifecycle::WaitOn;
use super::run::Effect;
use super::{Dispatch, Next, Platform, System, emit};
use crate::audit::AuditKind;
use crate::event::{Event, StopCause};
use crate::package::MAX_PARTITIONS;

impl System {
    /// Starts partition `index` for the first time.
    pub(super) fn start_partition(&mut self, index: usize, platform: &mut impl Platform) {
        let now_us = platform.now_us();
        let partition = &mut self.partitions[index];
        partition.life.start(now_us).expect("started from waiting");
        self.note_may_run(index);
        let partition = &self.partitions[index];
        emit(
            platform,
            Event::PartitionStart {
                name: partition.name(),
                generation: partition.life.generation(),
                cpu: partition.cpu,
            },
        );
    }

    /// Partition `index` ended itself with `code`.
    pub(super) fn exit(&mut self, index: usize, code: u64, platform: &mut impl Platform) {
        self.flush_console(index, platform);
        let partition = &mut self.partitions[index];
        partition
            .life
            .exit(code)
            .expect("a running partition exits");
        self.note_ended(index);
        let partition = &self.partitions[index];
        emit(
            platform,
            Event::PartitionExit {
                name: partition.name(),
                code,
            },
        );
        self.note_stopped_running();
        self.end_devices(index, platform);
        self.notify_ended(index, EventKind::Exited, code, platform);
    }

    /// Stops partition `index` for good, for `cause`.
    pub(super) fn stop(&mut self, index: usize, cause: StopCause, platform: &mut impl Platform) {
        self.flush_console(index, platform);
        self.forget_decisions(index);
        let partition = &mut self.partitions[index];
        partition
            .life
            .stop()
            .expect("a partition not ended is stopped");
        self.note_ended(index);
        let partition = &self.partitions[index];
        emit(
            platform,
            Event::PartitionStop {
                name: partition.name(),
                generation: partition.life.generation(),
                cause,
            },
        );
        self.audit_now(index, AuditKind::Stop, [cause.number(), 0], platform);
        self.note_stopped_running();
        self.end_devices(index, platform);
        if cause != StopCause::Service {
            self.notify_ended(index, EventKind::Stopped, cause.number(), platform);
        }
    }

    /// Restarts `index` if its budget allows: a new generation, loading its RAM
    /// (which it owes), its queues and balloon reset, vCPU 0 alone to run once
    /// loaded; returns its reset for the back end. The caller makes sure no vCPU
    /// of it is live on any core but its own, which it gives up. Past the budget it is stopped for good instead
    /// ([`Error::BudgetExhausted`]); without its initial memory to give back, the
    /// restart is refused whole ([`Error::PoolEmpty`]).
    pub(super) fn restart(
        &mut self,
        index: usize,
        platform: &mut impl Platform,
    ) -> Result<Effect, Error> {
        // Its initial memory must come back whole, or it is not restarted.
        self.balloon.can_restart(index)?;
        // A restart reloads and scrubs a partition's RAM in its home frames.
        self.check_pages_home(index)?;
        let now_us = platform.now_us();
        let was_ended = self.partitions[index].life.ended();
        let restarted = self.partitions[index].life.restart(now_us);
        let generation = match restarted {
            Ok(Ok(generation)) => {
                if was_ended && index != 0 {
                    self.live_guests += 1;
                }
                // Its reload is owed work, done in its own turns.
                self.note_may_run(index);
                generation
            }
            Ok(Err(_)) => {
                // One that has ended already stays as it is.
                if !self.partitions[index].life.ended() {
                    self.stop(index, StopCause::Budget, platform);
                }
                return Err(Error::BudgetExhausted);
            }
            Err(_) => return Err(Error::BadState),
        };
        self.forget_decisions(index);
        let partition = &mut self.partitions[index];
        partition.trap_lines = 0;
        for slot in &mut self.vcpus[partition.vcpus.clone()] {
            slot.console.clear();
        }
        if let Some(machine) = partition.machine.as_deref_mut() {
            machine.reset();
        }
        if let Some(devices) = partition.virtio.as_deref_mut() {
            devices.reset();
        }
        self.restart_queues(index, platform);
        self.balloon.restart(index, platform);
        let partition = &self.partitions[index];
        let in_period = partition.life.restarts_in_period();
        emit(
            platform,
            Event::PartitionRestart {
                name: partition.name(),
                generation,
                in_period,
            },
        );
        let detail = [u64::from(generation), in_period as u64];
        self.audit_now(index, AuditKind::Restart, detail, platform);
        Ok(Effect::Restart {
            vcpu: self.partitions[index].vcpus.start,
            generation,
        })
    }

    /// The service VM faulted or hung: restart it and tell the new instance about
    /// every guest still suspended. Past its budget it stays stopped, and the
    /// guests run on unsupervised: those suspended are stopped.
    pub(super) fn restart_service(&mut self, platform: &mut impl Platform) -> Dispatch {
        self.reset_events(platform);
        match self.restart(0, platform) {
            Ok(effect) => {
                for index in 1..self.partitions.len() {
                    if let Some(suspension) = self.partitions[index].life.suspension() {
                        let record = suspension.record;
                        self.post(record, platform);
                    }
                }
                Dispatch {
                    reply: None,
                    next: Next::Service,
                    effect: Some(effect),
                }
            }
            Err(_) => {
                for index in 1..self.partitions.len() {
                    if self.partitions[index].life.suspension().is_some() {
                        self.stop(index, StopCause::Policy, platform);
                    }
                }
                Dispatch::new(None, Next::Yield)
            }
        }
    }

    /// What `index` holds besides its RAM goes when it exits or is stopped: its
    /// queue ends, its balloon memory (scrubbed in its own turns) and its
    /// virtio devices' state.
    fn end_devices(&mut self, index: usize, platform: &mut impl Platform) {
        self.end_queues(index, platform);
        self.balloon.end(index, platform);
        if let Some(devices) = self.partitions[index].virtio.as_deref_mut() {
            devices.reset();
        }
        self.note_may_run(index);
    }

    /// Ends `index`'s side of its queues when it exits or is stopped: its pages
    /// come home, and peers that wait are woken to learn [`Error::PeerEnded`].
    fn end_queues(&mut self, index: usize, platform: &mut impl Platform) {
        let peers = self.flip.end(index, platform);
        self.wake_peers(peers, platform);
    }

    /// Restarts `index`'s side of its queues and wakes the peers that wait, with
    /// the ledger's totals before and after.
    fn restart_queues(&mut self, index: usize, platform: &mut impl Platform) {
        let has_queues = (0..self.flip.queue_count()).any(|q| {
            let (sender, receiver) = self.flip.ends(q);
            sender == index || receiver == index
        });
        if has_queues {
            self.emit_totals(index, "before", platform);
        }
        let peers = self.flip.restart(index, platform);
        self.wake_peers(peers, platform);
        if has_queues {
            self.emit_totals(index, "after", platform);
        }
    }

    /// Partition `index` has just ended: one guest fewer is live.
    fn note_ended(&mut self, index: usize) {
        if index != 0 {
            self.live_guests -= 1;
        }
    }

    /// Wakes the vCPUs of the partitions of `peers` that wait on a queue.
    fn wake_peers(&mut self, peers: [bool; MAX_PARTITIONS], platform: &mut impl Platform) {
        let now_us = platform.now_us();
        for (index, affected) in peers.into_iter().enumerate().take(self.partitions.len()) {
            let life = &mut self.partitions[index].life;
            let mut woken = false;
            for vcpu in 0..life.vcpu_count() {
                if let (true, Some(on @ WaitOn::Queue(_))) = (affected, life.waits_on(vcpu)) {
                    woken |= life.wake(on, now_us);
                }
            }
            if woken {
                self.note_may_run(index);
            }
        }
    }

    fn emit_totals(&self, index: usize, when: &'static str, platform: &mut impl Platform) {
        let event = Event::FrameTotals {
            name: self.partitions[index].name(),
            when,
            totals: self.flip.totals(),
        };
        emit(platform, event);
    }
}
