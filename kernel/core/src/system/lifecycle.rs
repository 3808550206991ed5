//! Where a partition is in its life: the one owner of its state, the run state of
//! each of its vCPUs, its generation, its restart budget and its watchdog.
//!
//! Only this module assigns a state. Every change is a method of [`Lifecycle`]
//! that checks the state it starts from, keeps the watchdog right by itself, and,
//! when it refuses (returns `Err` or `false`), changes nothing.
//!
//! A partition's state ([`State`]) is one for all its vCPUs: a trap or fault of
//! any vCPU suspends the whole partition, and resume, restart and stop act on all
//! of them. While it runs, each vCPU is off, ready or blocked in a call
//! ([`VcpuState`]); a restart brings back vCPU 0 alone.
//!
//! Invariants (property-tested below):
//! - the watchdog is armed (a heartbeat is due) exactly while the partition is
//!   runnable (running, with a vCPU ready) and has a watchdog period;
//! - a [`State::Suspended`] partition holds exactly one [`Suspension`]: the event
//!   the service VM decides about; no vCPU of a partition that is not
//!   [`State::Running`] may run, so all its vCPUs agree on a suspension;
//! - vCPU 0 is never off while the partition runs or loads;
//! - the generation only grows: by one at the first start and at each restart;
//! - restarts within any budget period never exceed the budget; a restart past it
//!   is refused, and the caller stops the partition.

use heapless::Deque;
use septum_abi::event::Record;
use septum_abi::{MAX_VCPUS, PartitionState};

use crate::supervision::{MAX_RESTARTS, Supervision};

/// What a blocked vCPU waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOn {
    /// A supervision event (the service VM in `wait_event`).
    Event,
    /// Work on its end of queue `.0` (`wait` on a queue end).
    Queue(usize),
    /// News from its balloon: a target it was not told (`wait` on a balloon).
    Balloon,
}

/// Why a partition is suspended: the event the service VM was (or will be) given,
/// and what a resume may skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suspension {
    /// The event.
    pub record: Record,
    /// The vCPU (index within the partition) that trapped or faulted.
    pub vcpu: usize,
    /// Length of its trapped instruction, 0 if unknown.
    pub length: u8,
}

/// Where a partition is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Loaded, but not started: a guest waiting for the service VM to be ready.
    Waiting,
    /// Started: its vCPUs run, wait or are off as their [`VcpuState`]s say.
    Running,
    /// Restarted: its RAM is being reloaded from its image, from the page at this
    /// offset on, in its own turns (see `System::work`); it does not run before.
    Loading(u64),
    /// Suspended after a trap, a fault or a missed heartbeat: the service VM
    /// decides whether it resumes, restarts or stops.
    Suspended(Suspension),
    /// Ended itself with this exit code.
    Exited(u64),
    /// Stopped for good: by its policy, by the service VM, past its restart budget,
    /// or after a fault with nothing to supervise it.
    Stopped,
}

impl State {
    /// Whether the partition has ended (exited or stopped for good).
    pub fn ended(&self) -> bool {
        matches!(self, State::Exited(_) | State::Stopped)
    }
}

/// Where one vCPU of a started partition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// Not started (vCPUs past 0 until the partition starts them), or not
    /// brought back by a restart.
    Off,
    /// May be scheduled whenever its partition runs.
    Ready,
    /// Waiting in a blocking call.
    Blocked(WaitOn),
}

/// An action asked for while the partition ran on another core: carried out
/// once none of its vCPUs is live on any core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// Restart it (the service VM asked).
    Restart,
    /// Stop it (the service VM asked).
    Stop,
    /// Load its vCPU again, in the translation mode its partition has now: the
    /// devirtualizable partition, whose mode changed while it ran (`devirt.rs`).
    /// A restart or stop asked for meanwhile takes its place.
    Reload,
}

/// A transition the partition's state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// A restart refused because the budget is spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetSpent;

/// One partition's life.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    state: State,
    /// Each vCPU's run state; those past `vcpu_count` stay off.
    vcpus: [VcpuState; MAX_VCPUS],
    vcpu_count: usize,
    generation: u32,
    restarts: u32,
    /// When each restart within the last budget period happened (µs), oldest
    /// first.
    restart_times: Deque<u64, { MAX_RESTARTS as usize }>,
    supervision: Supervision,
    /// When its next heartbeat is due (µs): set exactly while it is runnable with
    /// a watchdog.
    heartbeat_due_us: Option<u64>,
    deferred: Option<Deferred>,
}

impl Lifecycle {
    /// A partition of `vcpu_count` vCPUs (1 to [`MAX_VCPUS`]) loaded and waiting
    /// to start, supervised as `supervision` says.
    pub fn new(supervision: Supervision, vcpu_count: usize) -> Lifecycle {
        Lifecycle {
            state: State::Waiting,
            vcpus: [VcpuState::Off; MAX_VCPUS],
            vcpu_count: vcpu_count.clamp(1, MAX_VCPUS),
            generation: 0,
            restarts: 0,
            restart_times: Deque::new(),
            supervision,
            heartbeat_due_us: None,
            deferred: None,
        }
    }

    /// Its state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state as the ABI numbers it: a running partition none of whose
    /// vCPUs is ready is blocked.
    pub fn abi(&self) -> PartitionState {
        match self.state {
            State::Waiting => PartitionState::Waiting,
            State::Running if self.any_ready() => PartitionState::Runnable,
            State::Running => PartitionState::Blocked,
            State::Loading(_) => PartitionState::Loading,
            State::Suspended(_) => PartitionState::Suspended,
            State::Exited(_) => PartitionState::Exited,
            State::Stopped => PartitionState::Stopped,
        }
    }

    /// How many vCPUs it has.
    pub fn vcpu_count(&self) -> usize {
        self.vcpu_count
    }

    /// Where its vCPU `vcpu` is (off past its count).
    pub fn vcpu_state(&self, vcpu: usize) -> VcpuState {
        self.vcpus.get(vcpu).copied().unwrap_or(VcpuState::Off)
    }

    /// Whether it may be scheduled: it runs and a vCPU of it is ready.
    pub fn runnable(&self) -> bool {
        matches!(self.state, State::Running) && self.any_ready()
    }

    /// Whether its vCPU `vcpu` may be scheduled.
    pub fn vcpu_runnable(&self, vcpu: usize) -> bool {
        matches!(self.state, State::Running)
            && matches!(self.vcpus.get(vcpu), Some(VcpuState::Ready))
    }

    /// Whether it has ended.
    pub fn ended(&self) -> bool {
        self.state.ended()
    }

    /// What its vCPU `vcpu` waits for, if it is blocked.
    pub fn waits_on(&self, vcpu: usize) -> Option<WaitOn> {
        match self.vcpu_state(vcpu) {
            VcpuState::Blocked(on) => Some(on),
            _ => None,
        }
    }

    /// Why it is suspended, if it is.
    pub fn suspension(&self) -> Option<&Suspension> {
        match &self.state {
            State::Suspended(suspension) => Some(suspension),
            _ => None,
        }
    }

    /// The offset of the next page of its RAM to reload, if it is loading.
    pub fn loading_at(&self) -> Option<u64> {
        match self.state {
            State::Loading(offset) => Some(offset),
            _ => None,
        }
    }

    /// 0 before its first start, then 1, plus one per restart.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Restarts since boot.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// How it is supervised.
    pub fn supervision(&self) -> &Supervision {
        &self.supervision
    }

    /// Its trap policy, which the service VM may tighten before `ready`.
    pub fn supervision_mut(&mut self) -> &mut Supervision {
        &mut self.supervision
    }

    /// When its next heartbeat is due, if one is.
    pub fn heartbeat_due_us(&self) -> Option<u64> {
        self.heartbeat_due_us
    }

    /// Starts it for the first time (the service VM at boot, the guests at
    /// `ready`): generation 1, running on vCPU 0, watchdog armed from `now_us`.
    pub fn start(&mut self, now_us: u64) -> Result<(), Refused> {
        if !matches!(self.state, State::Waiting) {
            return Err(Refused);
        }
        self.generation += 1;
        self.run_from_vcpu_0(now_us);
        Ok(())
    }

    /// Its vCPU `vcpu`, which is off, starts (the partition runs: one of its
    /// vCPUs asked).
    pub fn start_vcpu(&mut self, vcpu: usize, now_us: u64) -> Result<(), Refused> {
        if !matches!(self.state, State::Running) || vcpu >= self.vcpu_count {
            return Err(Refused);
        }
        if self.vcpus[vcpu] != VcpuState::Off {
            return Err(Refused);
        }
        self.set_vcpu(vcpu, VcpuState::Ready, now_us);
        Ok(())
    }

    /// Its vCPU `vcpu` (not vCPU 0, which carries the partition's work and
    /// device interrupts), which is ready, powers itself off (the partition
    /// runs: the vCPU asked); it stays off until started again.
    pub fn stop_vcpu(&mut self, vcpu: usize, now_us: u64) -> Result<(), Refused> {
        let ready = vcpu < self.vcpu_count && self.vcpus[vcpu] == VcpuState::Ready;
        if !matches!(self.state, State::Running) || vcpu == 0 || !ready {
            return Err(Refused);
        }
        self.set_vcpu(vcpu, VcpuState::Off, now_us);
        Ok(())
    }

    /// Its vCPU `vcpu`, which is ready, blocks in a call until `on` happens; the
    /// watchdog rests while no vCPU is ready.
    pub fn block(&mut self, vcpu: usize, on: WaitOn) -> Result<(), Refused> {
        if !self.vcpu_runnable(vcpu) {
            return Err(Refused);
        }
        self.set_vcpu(vcpu, VcpuState::Blocked(on), 0);
        Ok(())
    }

    /// Wakes every vCPU blocked on `on` (even while the partition is suspended:
    /// they are ready when it is resumed); returns whether one was.
    pub fn wake(&mut self, on: WaitOn, now_us: u64) -> bool {
        let mut woken = false;
        for vcpu in 0..self.vcpu_count {
            if self.vcpus[vcpu] == VcpuState::Blocked(on) {
                self.set_vcpu(vcpu, VcpuState::Ready, now_us);
                woken = true;
            }
        }
        woken
    }

    /// Suspends it (a vCPU of it trapped, faulted or it missed its heartbeat, so
    /// it was runnable) for the service VM's decision about `suspension`.
    pub fn suspend(&mut self, suspension: Suspension) -> Result<(), Refused> {
        if !self.runnable() || suspension.vcpu >= self.vcpu_count {
            return Err(Refused);
        }
        self.state = State::Suspended(suspension);
        self.heartbeat_due_us = None;
        Ok(())
    }

    /// Lets it run on after a suspension; returns what suspended it.
    pub fn resume(&mut self, now_us: u64) -> Result<Suspension, Refused> {
        let State::Suspended(suspension) = self.state else {
            return Err(Refused);
        };
        self.state = State::Running;
        self.keep_watchdog(now_us);
        Ok(suspension)
    }

    /// Restarts it at `now_us` if its budget allows: a new generation, loading
    /// its RAM from the first page (its watchdog starts when that is done), then
    /// vCPU 0 alone. Refused (changing nothing) if it is waiting to start; a
    /// partition whose vCPUs all wait in calls is restarted, its waits
    /// forgotten. [`BudgetSpent`] (changing nothing) past its budget.
    /// Returns the new generation.
    pub fn restart(&mut self, now_us: u64) -> Result<Result<u32, BudgetSpent>, Refused> {
        if self.abi() == PartitionState::Waiting {
            return Err(Refused);
        }
        let budget = self.supervision.budget;
        let period_us = u64::from(budget.period_ms) * 1000;
        let in_period = self
            .restart_times
            .iter()
            .filter(|&&at| now_us.saturating_sub(at) < period_us)
            .count();
        if in_period >= usize::from(budget.restarts) {
            return Ok(Err(BudgetSpent));
        }
        while self
            .restart_times
            .front()
            .is_some_and(|&at| now_us.saturating_sub(at) >= period_us)
        {
            self.restart_times.pop_front();
        }
        // Cannot fail: fewer than the budget, at most MAX_RESTARTS, are kept.
        let _ = self.restart_times.push_back(now_us);
        self.generation += 1;
        self.restarts += 1;
        self.state = State::Loading(0);
        self.vcpus = [VcpuState::Off; MAX_VCPUS];
        self.vcpus[0] = VcpuState::Ready;
        self.heartbeat_due_us = None;
        self.deferred = None;
        Ok(Ok(self.generation))
    }

    /// Restarts within the current budget period, the last one included.
    pub fn restarts_in_period(&self) -> usize {
        self.restart_times.len()
    }

    /// One more page of its RAM is reloaded, of `ram` bytes in all, with pages of
    /// `page` bytes. Once the last is, it runs on vCPU 0, its watchdog armed from
    /// `now_us`. Returns whether pages are left.
    pub fn reloaded_page(&mut self, ram: u64, page: u64, now_us: u64) -> Result<bool, Refused> {
        let State::Loading(offset) = self.state else {
            return Err(Refused);
        };
        let next = offset + page;
        if next < ram {
            self.state = State::Loading(next);
            return Ok(true);
        }
        self.run_from_vcpu_0(now_us);
        Ok(false)
    }

    /// It ended itself with `code`.
    pub fn exit(&mut self, code: u64) -> Result<(), Refused> {
        if self.state.ended() {
            return Err(Refused);
        }
        self.end(State::Exited(code));
        Ok(())
    }

    /// It is stopped for good.
    pub fn stop(&mut self) -> Result<(), Refused> {
        if self.state.ended() {
            return Err(Refused);
        }
        self.end(State::Stopped);
        Ok(())
    }

    /// Its heartbeat: the next is due a period from `now_us`.
    pub fn heartbeat(&mut self, now_us: u64) {
        if self.runnable() {
            self.arm_watchdog(now_us);
        }
    }

    /// How late its heartbeat is at `now_us`, if it is runnable and past its
    /// deadline (the caller then suspends, stops or restarts it).
    pub fn late_by(&self, now_us: u64) -> Option<u64> {
        let due = self.heartbeat_due_us.filter(|&due| now_us > due)?;
        Some(now_us - due)
    }

    /// Records a control action to be carried out once it is live on no core.
    pub fn defer(&mut self, action: Deferred) {
        self.deferred = Some(action);
    }

    /// The control action waiting, if any.
    pub fn deferred(&self) -> Option<Deferred> {
        self.deferred
    }

    /// Takes the control action waiting, if any.
    pub fn take_deferred(&mut self) -> Option<Deferred> {
        self.deferred.take()
    }

    fn any_ready(&self) -> bool {
        self.vcpus
            .iter()
            .any(|vcpu| matches!(vcpu, VcpuState::Ready))
    }

    /// Runs from vCPU 0 alone, the watchdog armed from `now_us`.
    fn run_from_vcpu_0(&mut self, now_us: u64) {
        self.state = State::Running;
        self.vcpus = [VcpuState::Off; MAX_VCPUS];
        self.vcpus[0] = VcpuState::Ready;
        self.arm_watchdog(now_us);
    }

    /// Puts vCPU `vcpu` in `state` and keeps the watchdog right.
    fn set_vcpu(&mut self, vcpu: usize, state: VcpuState, now_us: u64) {
        self.vcpus[vcpu] = state;
        self.keep_watchdog(now_us);
    }

    /// Arms the watchdog from `now_us` if it is runnable and the watchdog is not
    /// armed; disarms it if it is not runnable.
    fn keep_watchdog(&mut self, now_us: u64) {
        match (self.runnable(), self.heartbeat_due_us) {
            (true, None) => self.arm_watchdog(now_us),
            (false, Some(_)) => self.heartbeat_due_us = None,
            _ => {}
        }
    }

    fn arm_watchdog(&mut self, now_us: u64) {
        let period_us = u64::from(self.supervision.watchdog_ms) * 1000;
        self.heartbeat_due_us = (period_us > 0).then_some(now_us + period_us);
    }

    fn end(&mut self, state: State) {
        self.state = state;
        self.vcpus = [VcpuState::Off; MAX_VCPUS];
        self.heartbeat_due_us = None;
        self.deferred = None;
    }
}

#[cfg(test)]
mod tests;
