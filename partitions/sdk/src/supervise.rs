//! Supervision: the service VM's calls (events, control of partitions, the audit
//! ring, its own capability table) and every partition's watchdog heartbeat, as
//! typed wrappers over [`septum_abi`].

use septum_abi::event::{self, Kind};
use septum_abi::{
    CapType, Identified, Inspected, NAME_MAX, PartitionState, TrapAction, TrapClass, audit,
    balloon, resume,
};
use septum_abi::{net, usage};

use crate::{Call, Error, typed};

/// One supervision event, as the kernel reported it ([`event::Record`]), and how
/// many guests had not ended when it was taken.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// The partition it concerns (0, the service VM, for console events).
    pub partition: u64,
    /// The partition's generation at the time.
    pub generation: u32,
    /// Why, for traps, faults and missed heartbeats.
    pub reason: Option<septum_abi::Reason>,
    /// The faulting address (see [`septum_abi::event::WORD_ADDRESS`]).
    pub address: u64,
    /// The raw syndrome.
    pub syndrome: u64,
    /// Kind-specific detail (see [`septum_abi::event::WORD_DETAIL`]).
    pub detail: u64,
    /// Guests that have not ended, when the event was taken.
    pub live_guests: u64,
    /// When it happened, in µs since boot (the kernel's clock).
    pub time_us: u64,
    /// The register snapshot, or the typed bytes of an input event.
    pub snapshot: [u64; event::SNAPSHOT_WORDS],
    record: event::Record,
}

impl Event {
    /// The typed bytes of a [`Kind::Input`] event.
    pub fn input(&self) -> impl Iterator<Item = u8> + '_ {
        self.record.input()
    }
}

/// Waits for the next supervision event (system capability in `slot`, right
/// `monitor`). The service VM blocks, using no CPU, until there is one.
pub fn wait_event(slot: u64) -> Result<Event, Error> {
    loop {
        // None: woken from a block; ask again.
        if let Some(event) = take_event(slot, 0)? {
            return Ok(event);
        }
    }
}

/// The next supervision event if one is queued, without blocking (for a
/// service VM that polls a device between events).
pub fn poll_event(slot: u64) -> Result<Option<Event>, Error> {
    take_event(slot, event::NO_WAIT)
}

fn take_event(slot: u64, flags: u64) -> Result<Option<Event>, Error> {
    let mut words = [0u64; event::RECORD_WORDS];
    let [kind, _, live_guests] = typed(
        Call::WaitEvent,
        [slot, words.as_mut_ptr() as u64, flags, 0, 0, 0],
    )?;
    if Kind::from_number(kind).is_none() {
        return Ok(None);
    }
    let record = event::Record::from_words(&words).ok_or(Error::InvalidArgument)?;
    Ok(Some(Event {
        kind: record.kind,
        partition: record.partition,
        generation: record.generation,
        reason: record.reason,
        address: record.address,
        syndrome: record.syndrome,
        detail: record.detail,
        live_guests,
        time_us: record.time_us,
        snapshot: record.snapshot,
        record,
    }))
}

/// Where the caller's RAM starts in machine memory (system capability in
/// `slot`): what a device it drives must be given for DMA.
pub fn machine_base(slot: u64) -> Result<u64, Error> {
    typed(Call::MachineBase, [slot, 0, 0, 0, 0, 0]).map(|[base, _, _]| base)
}

/// A partition as [`inspect`] sees it ([`Inspected`], and its name).
#[derive(Clone, Copy, Debug)]
pub struct PartitionInfo {
    /// Its name, NUL-padded.
    pub name: [u8; NAME_MAX],
    /// Its state.
    pub state: PartitionState,
    /// Its generation.
    pub generation: u32,
    /// Restarts since boot.
    pub restarts: u32,
    /// Bytes of RAM.
    pub ram: u64,
    /// Whether it runs Linux.
    pub linux: bool,
}

impl PartitionInfo {
    /// Its name as text.
    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_MAX);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }
}

/// Reads the state of the partition that the control capability in `slot` names.
pub fn inspect(slot: u64) -> Result<PartitionInfo, Error> {
    let mut name = [0u8; NAME_MAX];
    let results = typed(Call::Inspect, [slot, name.as_mut_ptr() as u64, 0, 0, 0, 0])?;
    let inspected = Inspected::from_results(results).ok_or(Error::InvalidArgument)?;
    Ok(PartitionInfo {
        name,
        state: inspected.state,
        generation: inspected.generation,
        restarts: inspected.restarts,
        ram: inspected.ram,
        linux: inspected.linux,
    })
}

/// Lets the suspended partition of control capability `slot` run on, if it is
/// still at `generation` (0: any), skipping the trapped instruction if `skip`.
pub fn resume(slot: u64, generation: u32, skip: bool) -> Result<(), Error> {
    let flags = if skip { resume::SKIP } else { 0 };
    typed(Call::Resume, [slot, u64::from(generation), flags, 0, 0, 0]).map(|_| ())
}

/// Lets the suspended partition of control capability `slot` run on (if still at
/// `generation`; 0: any) by taking an undefined-instruction exception at the
/// instruction that trapped, in its own vectors: for a Linux partition only.
pub fn resume_undefined(slot: u64, generation: u32) -> Result<(), Error> {
    typed(
        Call::Resume,
        [slot, u64::from(generation), resume::UNDEFINED, 0, 0, 0],
    )
    .map(|_| ())
}

/// Restarts the partition of control capability `slot` (if still at `generation`;
/// 0: any). `Ok(true)`: the restart waits for the partition's own core.
pub fn restart(slot: u64, generation: u32) -> Result<bool, Error> {
    typed(Call::Restart, [slot, u64::from(generation), 0, 0, 0, 0]).map(|r| r[0] == 1)
}

/// Stops the partition of control capability `slot` for good.
pub fn stop(slot: u64, generation: u32) -> Result<(), Error> {
    typed(Call::Stop, [slot, u64::from(generation), 0, 0, 0, 0]).map(|_| ())
}

/// Starts evacuating the machine frames `first .. first + pages * 4096` of the
/// devirtualizable partition of control capability `slot` and does the first
/// part of the work: `Ok(true)` while work remains ([`relocate`] does it).
pub fn evacuate(slot: u64, first: u64, pages: u64) -> Result<bool, Error> {
    typed(Call::Evacuate, [slot, first, pages, 0, 0, 0]).map(|r| r[0] == 1)
}

/// Starts devirtualizing the partition of control capability `slot` and does
/// the first part of the work: `Ok(true)` while work remains ([`relocate`]
/// does it). When it is done the call does not return: the caller is stopped.
pub fn devirtualize(slot: u64) -> Result<bool, Error> {
    typed(Call::Devirtualize, [slot, 0, 0, 0, 0, 0]).map(|r| r[0] == 1)
}

/// Does the next part of the relocation under way for the partition of control
/// capability `slot`: `Ok(true)` while work remains.
pub fn relocate(slot: u64) -> Result<bool, Error> {
    typed(Call::Relocate, [slot, 0, 0, 0, 0, 0]).map(|r| r[0] == 1)
}

/// Before `ready`: sets trap class `class` of the partition of control capability
/// `slot` to `action`. Refused with [`Error::Loosening`] if that loosens the
/// policy.
pub fn set_policy(slot: u64, class: TrapClass, action: TrapAction) -> Result<(), Error> {
    typed(
        Call::SetPolicy,
        [slot, class as u64, action as u64, 0, 0, 0],
    )
    .map(|_| ())
}

/// Copies audit records into `records` (system capability in `slot`), as words
/// ([`audit::Record::from_words`] reads one). Returns how many were copied, how
/// many were lost to overflow since boot, and how many remain.
pub fn audit_read(
    slot: u64,
    records: &mut [[u64; audit::RECORD_WORDS]],
) -> Result<(usize, u64, u64), Error> {
    let [copied, lost, remaining] = typed(
        Call::AuditRead,
        [
            slot,
            records.as_mut_ptr() as u64,
            records.len() as u64,
            0,
            0,
            0,
        ],
    )?;
    Ok((copied as usize, lost, remaining))
}

/// Tells the kernel this partition is alive (watchdog capability in `slot`).
pub fn heartbeat(slot: u64) -> Result<(), Error> {
    typed(Call::Heartbeat, [slot, 0, 0, 0, 0, 0]).map(|_| ())
}

/// The capability in `slot` of this partition's own table, if the slot holds one.
pub fn identify(slot: u64) -> Result<Option<Identified>, Error> {
    typed(Call::Identify, [slot, 0, 0, 0, 0, 0]).map(Identified::from_results)
}

/// The slots of this partition's capabilities of type `ty`, with their objects.
pub fn slots_of(ty: CapType) -> impl Iterator<Item = (u64, u16)> {
    (0..septum_abi::CAP_SLOTS as u64).filter_map(move |slot| match identify(slot) {
        Ok(Some(cap)) if cap.ty == ty => Some((slot, cap.object)),
        _ => None,
    })
}

/// A guest's memory as [`memory_info`] reads it (pages): the kernel's counts,
/// then what the guest last claimed ([`balloon::Info`]), its weight and the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Pages it holds, as the kernel counts them.
    pub held: u64,
    /// Its target.
    pub target: u64,
    /// Its minimum.
    pub min: u64,
    /// Its maximum.
    pub max: u64,
    /// Its memory at entry.
    pub initial: u64,
    /// Claimed: free pages in its allocator.
    pub free: u64,
    /// Claimed: pages in use.
    pub used: u64,
    /// Claimed: failed allocations since it started.
    pub failures: u64,
    /// Reports since it started.
    pub reports: u64,
    /// Its weight in the memory scheduler (0 without a balloon).
    pub shares: u32,
    /// Frames free in the kernel's pool or on their way there (the same for
    /// every guest).
    pub pool: u64,
}

/// Reads the memory of the guest of control capability `slot`.
pub fn memory_info(slot: u64) -> Result<MemoryInfo, Error> {
    let mut words = [0u64; balloon::INFO_WORDS];
    let [shares, pool, _] = typed(
        Call::MemoryInfo,
        [slot, words.as_mut_ptr() as u64, 0, 0, 0, 0],
    )?;
    let info = balloon::Info::from_words(&words);
    Ok(MemoryInfo {
        held: info.held,
        target: info.target,
        min: info.min,
        max: info.max,
        initial: info.initial,
        free: info.free,
        used: info.used,
        failures: info.failures,
        reports: info.reports,
        shares: shares as u32,
        pool,
    })
}

/// The network port counters of the guest of control capability `slot`, or,
/// with the system capability, of the caller's own port (all zero if there is
/// no port).
pub fn net_info(slot: u64) -> Result<net::Counters, Error> {
    let mut words = [0u64; net::COUNTER_WORDS];
    typed(Call::NetInfo, [slot, words.as_mut_ptr() as u64, 0, 0, 0, 0])?;
    Ok(net::Counters::from_words(&words))
}

/// What the kernel counted about the guest of control capability `slot`, or,
/// with the system capability, about the caller itself.
pub fn usage(slot: u64) -> Result<usage::Usage, Error> {
    let mut words = [0u64; usage::USAGE_WORDS];
    typed(Call::Usage, [slot, words.as_mut_ptr() as u64, 0, 0, 0, 0])?;
    Ok(usage::Usage::from_words(&words))
}

/// Sets the memory target (pages) of the guest of control capability `slot`, if
/// still at `generation` (0: any).
pub fn set_memory_target(slot: u64, generation: u32, pages: u64) -> Result<(), Error> {
    typed(
        Call::SetMemoryTarget,
        [slot, u64::from(generation), pages, 0, 0, 0],
    )
    .map(|_| ())
}
