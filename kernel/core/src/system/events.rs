//! The service VM's event queue: what the kernel tells the service VM
//! (suspensions, ends, memory reports, console input) and how it takes them
//! (`wait_event`), and when its supervision work may take the CPU.
//!
//! Invariants:
//! - events that suspend a guest are never dropped: the queue keeps room for one
//!   per partition; only notifications and console input give way when it is full;
//! - at most one event per suspended guest is queued (a decision drops the
//!   others about it), and at most one memory event per guest;
//! - the service VM is woken (if it waits on events) whenever an event is queued.

use septum_abi::event::{Kind as EventKind, Record};
use septum_abi::virtio::Device;

use super::dispatch::Caller;
use super::lifecycle::WaitOn;
use super::{Dispatch, Platform, Reply, System, emit};
use crate::event::Event;
use crate::fixed::FixedDeque;
use crate::memory::Range;

/// The console byte that gives the console to the service VM, and back: Ctrl-T.
pub const ESCAPE: u8 = 0x14;

/// Events queued beyond one per partition: room for notifications and input.
const SPARE_EVENTS: usize = 16;

/// The service VM's event queue and console state.
#[derive(Debug)]
pub struct Events {
    /// Room for one event per partition and [`SPARE_EVENTS`] more.
    queue: FixedDeque<Record>,
    /// Partitions in the system: the places only suspensions may take.
    reserved: usize,
    /// The service VM took an event about this partition and has not waited
    /// since: it is handling it.
    handling: Option<usize>,
    /// Where console input goes, if anywhere.
    focus: Option<Focus>,
}

/// A place console input can go: the service VM (its events), a Linux
/// partition's UART, or a partition's virtio console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Focus {
    partition: usize,
    /// Its virtio console (else its UART, or the service VM's events).
    hvc: bool,
}

impl Events {
    /// An empty queue for a system of `partitions` partitions.
    pub fn new(partitions: usize) -> Events {
        Events {
            queue: FixedDeque::with_capacity(partitions + SPARE_EVENTS),
            reserved: partitions,
            handling: None,
            focus: None,
        }
    }

    /// Whether an event about partition `index` waits, or the service VM is
    /// handling one.
    fn concerns(&self, index: usize) -> bool {
        self.handling == Some(index) || self.queue.iter().any(|r| r.partition == index as u64)
    }

    /// Whether anything waits or is being handled.
    fn busy(&self) -> bool {
        self.handling.is_some() || !self.queue.is_empty()
    }
}

impl System {
    /// Whether the service VM, on `cpu`, has supervision work that may take the
    /// CPU now: with a schedule, work about `window_owner` (so the switch is paid
    /// for by the partition that caused it, in its own window, and no other
    /// partition loses time); without one, any work.
    pub(super) fn service_urgent(&self, cpu: usize, window_owner: Option<usize>) -> bool {
        let work = match window_owner {
            None => self.events.busy(),
            Some(owner) => self.events.concerns(owner),
        };
        let service = &self.partitions[0];
        work && service.cpu == cpu && service.life.runnable()
    }

    /// A new record of `kind` about partition `index`, at its current generation.
    pub(super) fn record(
        &self,
        kind: EventKind,
        index: usize,
        platform: &mut impl Platform,
    ) -> Record {
        let generation = self.partitions[index].life.generation();
        Record::new(kind, index as u64, generation, platform.now_us())
    }

    /// Queues an event for the service VM and wakes it if it waits. Only
    /// suspensions may use the last places, one per partition.
    pub(super) fn post(&mut self, record: Record, platform: &mut impl Platform) {
        let queue = &mut self.events.queue;
        let reserved = queue.capacity() - queue.len() <= self.events.reserved;
        if reserved && !record.kind.suspends() {
            return;
        }
        // Cannot fail for a suspension: at most one per partition is queued.
        let _ = queue.push_back(record);
        let now_us = platform.now_us();
        if self.partitions[0].life.wake(WaitOn::Event, now_us) {
            self.note_may_run(0);
        }
    }

    /// Drops queued events that ask for a decision about `index`: it has had one.
    pub(super) fn forget_decisions(&mut self, index: usize) {
        self.events
            .queue
            .retain(|record| !(record.partition == index as u64 && record.kind.suspends()));
    }

    /// Tells the service VM that guest `index` ended (exited or was stopped).
    pub(super) fn notify_ended(
        &mut self,
        index: usize,
        kind: EventKind,
        detail: u64,
        platform: &mut impl Platform,
    ) {
        if index == 0 || self.partitions[0].life.ended() {
            return;
        }
        let mut record = self.record(kind, index, platform);
        record.detail = detail;
        self.post(record, platform);
    }

    /// Tells the service VM that `index` reported its memory, unless an event
    /// saying so already waits.
    pub(super) fn post_memory(&mut self, index: usize, platform: &mut impl Platform) {
        let queued = self
            .events
            .queue
            .iter()
            .any(|r| r.kind == EventKind::Memory && r.partition == index as u64);
        if queued || self.partitions[0].life.ended() {
            return;
        }
        let record = self.record(EventKind::Memory, index, platform);
        self.post(record, platform);
    }

    /// The service VM's events start afresh (it restarted): nothing is being
    /// handled, the console is its own no longer, and the queue is empty.
    pub(super) fn reset_events(&mut self, platform: &mut impl Platform) {
        if self.events.focus.is_some_and(|focus| focus.partition == 0) {
            self.events.focus = None;
            emit(
                platform,
                Event::KernelConsole {
                    owner: None,
                    hvc: false,
                },
            );
        }
        self.events.queue.clear();
        self.events.handling = None;
    }

    /// One byte typed on the console. [`ESCAPE`] moves the console focus on:
    /// from nobody to the service VM, then in package order to each Linux
    /// partition's UART and each partition's virtio console, then back to
    /// nobody. Other bytes go where the focus is, and are dropped when nobody
    /// has it.
    pub fn console_input(&mut self, byte: u8, platform: &mut impl Platform) {
        if byte == ESCAPE {
            self.move_focus(platform);
            return;
        }
        match self.events.focus {
            None => {}
            Some(Focus { partition: 0, .. }) => self.service_input(byte, platform),
            Some(Focus {
                partition,
                hvc: false,
            }) => self.uart_input(partition, byte),
            Some(Focus {
                partition,
                hvc: true,
            }) => self.hvc_input(partition, byte),
        }
    }

    /// Gives the console to the next place that takes input (see
    /// [`System::console_input`]).
    fn move_focus(&mut self, platform: &mut impl Platform) {
        let takes_input = |focus: &Focus| {
            let partition = &self.partitions[focus.partition];
            match (focus.partition, focus.hvc) {
                (0, false) => !partition.life.ended(),
                (_, false) => partition.machine.is_some(),
                (_, true) => partition
                    .virtio
                    .as_ref()
                    .is_some_and(|devices| devices.get(Device::Console).is_some()),
            }
        };
        let stops = (0..self.partitions.len())
            .flat_map(|partition| [false, true].map(|hvc| Focus { partition, hvc }));
        let next = match self.events.focus {
            None => stops.clone().find(takes_input),
            Some(focus) => stops
                .skip_while(|stop| *stop != focus)
                .skip(1)
                .find(takes_input),
        };
        self.events.focus = next;
        let owner = next.map(|focus| self.partitions[focus.partition].name());
        let hvc = next.is_some_and(|focus| focus.hvc);
        emit(platform, Event::KernelConsole { owner, hvc });
        if next.is_some_and(|focus| focus.partition == 0) {
            let record = self.record(EventKind::Console, 0, platform);
            self.post(record, platform);
        }
    }

    /// A typed byte for the service VM, which has focus.
    fn service_input(&mut self, byte: u8, platform: &mut impl Platform) {
        if self.partitions[0].life.ended() {
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

    /// `wait_event`: hands the oldest event to the service VM (`caller`), written
    /// to `buffer`, or blocks it until one is queued (unless `block` is false).
    pub(super) fn wait_event(
        &mut self,
        caller: Caller,
        buffer: Range,
        block: bool,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let live = self.live_guests();
        let Some(record) = self.events.queue.pop_front() else {
            self.events.handling = None;
            if !block {
                return Dispatch::resume(Reply::ok([0, 0, live]));
            }
            let mut dispatch = self.block_caller(caller, WaitOn::Event);
            dispatch.reply = Some(Reply::ok([0, 0, live]));
            return dispatch;
        };
        self.events.handling = Some(record.partition as usize);
        platform.write_ram(buffer.start, &record.to_bytes());
        Dispatch::resume(Reply::ok([record.kind as u64, record.partition, live]))
    }

    /// Guests that have not ended (kept by `transitions.rs` as guests end and
    /// restart).
    pub(super) fn live_guests(&self) -> u64 {
        self.live_guests
    }
}
