//! Where a partition is in its life: the one owner of its state, its generation,
//! its restart budget and its watchdog.
//!
//! Only this module assigns a state. Every change is a method of [`Lifecycle`]
//! that checks the state it starts from, keeps the watchdog right by itself, and,
//! when it refuses (returns `Err` or `false`), changes nothing.
//!
//! Invariants (property-tested below):
//! - the watchdog is armed (a heartbeat is due) exactly while the partition is
//!   [`State::Runnable`] and has a watchdog period;
//! - a [`State::Suspended`] partition holds exactly one [`Suspension`]: the event
//!   the service VM decides about;
//! - the generation only grows: by one at the first start and at each restart;
//! - restarts within any budget period never exceed the budget; a restart past it
//!   is refused, and the caller stops the partition.

use heapless::Deque;
use septum_abi::PartitionState;
use septum_abi::event::Record;

use crate::supervision::{MAX_RESTARTS, Supervision};

/// What a blocked partition waits for.
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
    /// Length of the trapped instruction, 0 if unknown.
    pub length: u8,
}

/// Where a partition is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Loaded, but not started: a guest waiting for the service VM to be ready.
    Waiting,
    /// May be scheduled.
    Runnable,
    /// Restarted: its RAM is being reloaded from its image, from the page at this
    /// offset on, in its own turns (see `System::work`); it does not run before.
    Loading(u64),
    /// Waiting in a blocking call.
    Blocked(WaitOn),
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
    /// The state as the ABI numbers it.
    pub fn abi(&self) -> PartitionState {
        match self {
            State::Waiting => PartitionState::Waiting,
            State::Runnable => PartitionState::Runnable,
            State::Loading(_) => PartitionState::Loading,
            State::Blocked(_) => PartitionState::Blocked,
            State::Suspended(_) => PartitionState::Suspended,
            State::Exited(_) => PartitionState::Exited,
            State::Stopped => PartitionState::Stopped,
        }
    }

    /// Whether the partition has ended (exited or stopped for good).
    pub fn ended(&self) -> bool {
        matches!(self, State::Exited(_) | State::Stopped)
    }
}

/// A control action the service VM asked for while the partition ran on another
/// core: carried out by that core at the partition's next entry to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// Restart it.
    Restart,
    /// Stop it.
    Stop,
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
    /// A partition loaded and waiting to start, supervised as `supervision` says.
    pub fn new(supervision: Supervision) -> Lifecycle {
        Lifecycle {
            state: State::Waiting,
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

    /// Whether it may be scheduled.
    pub fn runnable(&self) -> bool {
        self.state == State::Runnable
    }

    /// Whether it has ended.
    pub fn ended(&self) -> bool {
        self.state.ended()
    }

    /// What it waits for, if it is blocked.
    pub fn waits_on(&self) -> Option<WaitOn> {
        match self.state {
            State::Blocked(on) => Some(on),
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
    /// `ready`): generation 1, runnable, watchdog armed from `now_us`.
    pub fn start(&mut self, now_us: u64) -> Result<(), Refused> {
        if self.state != State::Waiting {
            return Err(Refused);
        }
        self.generation += 1;
        self.enter_runnable(now_us);
        Ok(())
    }

    /// It blocks in a call until `on` happens; its watchdog rests meanwhile.
    pub fn block(&mut self, on: WaitOn) -> Result<(), Refused> {
        if self.state != State::Runnable {
            return Err(Refused);
        }
        self.state = State::Blocked(on);
        self.heartbeat_due_us = None;
        Ok(())
    }

    /// Wakes it if it is blocked on `on`; returns whether it was.
    pub fn wake(&mut self, on: WaitOn, now_us: u64) -> bool {
        if self.state != State::Blocked(on) {
            return false;
        }
        self.enter_runnable(now_us);
        true
    }

    /// Suspends it (it trapped, faulted or missed its heartbeat, so it was
    /// running) for the service VM's decision about `suspension`.
    pub fn suspend(&mut self, suspension: Suspension) -> Result<(), Refused> {
        if self.state != State::Runnable {
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
        self.enter_runnable(now_us);
        Ok(suspension)
    }

    /// Restarts it at `now_us` if its budget allows: a new generation, loading
    /// its RAM from the first page (its watchdog starts when that is done).
    /// Refused (changing nothing) if it is waiting to start or blocked in a call;
    /// [`BudgetSpent`] (changing nothing) past its budget. Returns the new
    /// generation.
    pub fn restart(&mut self, now_us: u64) -> Result<Result<u32, BudgetSpent>, Refused> {
        if matches!(self.state, State::Waiting | State::Blocked(_)) {
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
        self.heartbeat_due_us = None;
        self.deferred = None;
        Ok(Ok(self.generation))
    }

    /// Restarts within the current budget period, the last one included.
    pub fn restarts_in_period(&self) -> usize {
        self.restart_times.len()
    }

    /// One more page of its RAM is reloaded, of `ram` bytes in all, with pages of
    /// `page` bytes. Once the last is, it becomes runnable, its watchdog armed
    /// from `now_us`. Returns whether pages are left.
    pub fn reloaded_page(&mut self, ram: u64, page: u64, now_us: u64) -> Result<bool, Refused> {
        let State::Loading(offset) = self.state else {
            return Err(Refused);
        };
        let next = offset + page;
        if next < ram {
            self.state = State::Loading(next);
            return Ok(true);
        }
        self.enter_runnable(now_us);
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
        if self.state == State::Runnable {
            self.arm_watchdog(now_us);
        }
    }

    /// How late its heartbeat is at `now_us`, if it is runnable and past its
    /// deadline (the caller then suspends, stops or restarts it).
    pub fn late_by(&self, now_us: u64) -> Option<u64> {
        let due = self.heartbeat_due_us.filter(|&due| now_us > due)?;
        Some(now_us - due)
    }

    /// Records a control action to be carried out on its own core.
    pub fn defer(&mut self, action: Deferred) {
        self.deferred = Some(action);
    }

    /// Takes the control action waiting for its core, if any.
    pub fn take_deferred(&mut self) -> Option<Deferred> {
        self.deferred.take()
    }

    fn enter_runnable(&mut self, now_us: u64) {
        self.state = State::Runnable;
        self.arm_watchdog(now_us);
    }

    fn arm_watchdog(&mut self, now_us: u64) {
        let period_us = u64::from(self.supervision.watchdog_ms) * 1000;
        self.heartbeat_due_us = (period_us > 0).then_some(now_us + period_us);
    }

    fn end(&mut self, state: State) {
        self.state = state;
        self.heartbeat_due_us = None;
        self.deferred = None;
    }
}

#[cfg(test)]
mod tests;
