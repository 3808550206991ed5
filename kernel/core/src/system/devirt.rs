//! Devirtualization: the one devirtualizable partition a system may have (its
//! description says `devirtualize = true`), whether the kernel translates its
//! memory, and the relocation of its pages ([`crate::relocation`]).
//!
//! It starts **native**: its translation is off (aarch64 `HCR_EL2.VM = 0`), it is
//! placed identity (guest-physical equal to machine), and nothing else runs, the
//! service VM included: a native partition can reach all of memory. When it asks
//! to be virtualized ([`Call::Virtualize`](septum_abi::Call::Virtualize)), its
//! translation goes on at the identity and the service VM starts (first time) or
//! restarts. The service VM may then move its pages while it runs
//! ([`Call::Evacuate`](septum_abi::Call::Evacuate)) and hand it the machine
//! back ([`Call::Devirtualize`](septum_abi::Call::Devirtualize)): every page
//! goes home, its translation goes off, and the service VM stops. A fault,
//! panic or missed heartbeat of the native partition is not left to nobody: the
//! kernel virtualizes it at the identity and starts (or restarts) the service
//! VM, which gets it as any guest's ([`System::monitor_native`]).
//!
//! Invariants:
//! - the partition is native only while every other partition, the service VM
//!   included, has ended or not started: devirtualizing is refused
//!   ([`Error::NotAlone`]) while another guest has not ended, and stops the
//!   service VM when it is done;
//! - its translation goes off only when the relocation's devirtualization is
//!   done, so every page is at its home frame (the identity) and writable;
//! - relocation work runs only inside the service VM's calls, a bounded batch at
//!   a time ([`RELOCATION_BATCH`]) that ends where no page is write-protected, so
//!   it is charged to the service VM and never to another partition's window;
//! - a stage-2 fault on one of the partition's RAM pages while it is translated
//!   is a write that met a move (or the break of a remap): the guest retries the
//!   access, and it lands in the page's frame as it is then; no write is lost;
//! - a vCPU whose translation changed while it was live on another core leaves
//!   that core at its next trap there, whatever the trap (the core is kicked
//!   so that it traps soon), and is loaded in the new mode: the trap waits and
//!   runs again then ([`Deferred::Reload`]); a preemption in the old mode is
//!   not counted as a native one.

use alloc::boxed::Box;

use septum_abi::Error;
use septum_abi::audit::Relocation as Step;
use septum_abi::layout::PAGE_SIZE as PAGE;
use septum_abi::usage::TrapKind;

use super::dispatch::Caller;
use super::lifecycle::Deferred;
use super::run::{Effect, Outcome, TurnEnd};
use super::{Dispatch, Next, Platform, Reply, Run, State, System, emit};
use crate::audit::AuditKind;
use crate::event::{Event, Fault, Reason, Resumption, StopCause};
use crate::memory::Range;
use crate::relocation::{
    Frame, FrameRange, GuestPage, Layout, Progress, Relocation, RelocationError,
};

/// Most relocation steps one call does (each is one stage of one page's move,
/// or a look at one page): the call then goes on to the end of the move under
/// way, so it returns with no page write-protected.
pub const RELOCATION_BATCH: usize = 64;

/// The devirtualizable partition and its relocation.
#[derive(Debug)]
pub(super) struct Devirt {
    /// Its index.
    partition: usize,
    /// Whether the kernel translates its memory.
    translated: bool,
    /// Its pages, frames and the relocation under way.
    relocation: Relocation,
    /// The frames of the evacuation under way, if one is.
    evacuating: Option<FrameRange>,
    /// Stage-2 faults it took on pages being moved (each retried).
    retried: u64,
    /// Faults and trapped instructions it took while native, since it last
    /// became native.
    native_faults: u64,
    /// Its count of preemptions (turns the kernel's timer ended) when its
    /// native run began (the end of its devirtualization, or the reload of its
    /// live vCPU in native mode): the kernel is dormant if it has not grown.
    preempted_when_native: u64,
    /// Whether an evacuation moved pages that have not come home since.
    moved: bool,
    /// When (µs) the relocation under way began.
    began_us: u64,
    /// Pages away from their home frames when the devirtualization under way
    /// began: those it brings home.
    away: u64,
}

impl System {
    /// Makes partition `index`, devirtualizable and placed identity, relocatable
    /// with `extra` (zeroed machine memory outside its RAM: the spare frame and
    /// the pool of its moves). The back end calls it once, after building the
    /// system and before it starts.
    pub fn enable_devirtualization(&mut self, index: usize, extra: Range) -> Result<(), Error> {
        let partition = self.partitions.get(index).ok_or(Error::InvalidArgument)?;
        if self.devirt.is_some() || partition.guest_ram.start != partition.host_ram.start {
            return Err(Error::BadState);
        }
        let layout = Layout {
            guest_base: GuestPage(partition.guest_ram.start / PAGE),
            home: Frame(partition.host_ram.start / PAGE),
            pages: partition.host_ram.size() / PAGE,
            extra: FrameRange {
                first: Frame(extra.start / PAGE),
                count: extra.size() / PAGE,
            },
        };
        let relocation = Relocation::new(layout).map_err(|_| Error::InvalidArgument)?;
        self.devirt = Some(Box::new(Devirt {
            partition: index,
            translated: false,
            relocation,
            evacuating: None,
            retried: 0,
            native_faults: 0,
            preempted_when_native: 0,
            moved: false,
            began_us: 0,
            away: 0,
        }));
        Ok(())
    }

    /// The devirtualizable partition, if the system has one, and whether it is
    /// translated.
    pub fn devirtualizable(&self) -> Option<(usize, bool)> {
        self.devirt.as_ref().map(|d| (d.partition, d.translated))
    }

    /// At boot: starts the devirtualizable partition natively, alone, if there
    /// is one (and then not the service VM). Whether it did.
    pub(super) fn start_native(&mut self, platform: &mut impl Platform) -> bool {
        let Some(partition) = self.devirt.as_ref().map(|d| d.partition) else {
            return false;
        };
        self.start_partition(partition, platform);
        true
    }

    /// A round-robin turn that begins for the native devirtualizable
    /// partition's vCPU ends later (`out.turn`): the kernel is dormant beside it
    /// (no other partition runs, so no round robin needs the timer), until its
    /// heartbeat falls due if it has a watchdog, else until it traps.
    #[inline(never)]
    pub(super) fn dormant_turn(&self, out: &mut Outcome) {
        let (Some(TurnEnd::Slice), Run::Vcpu(vcpu), Some(devirt)) =
            (out.turn, out.run, self.devirt.as_deref())
        else {
            return;
        };
        if devirt.translated || self.vcpus[vcpu].partition != devirt.partition {
            return;
        }
        let partition = &self.partitions[devirt.partition];
        out.turn = Some(
            partition
                .life
                .heartbeat_due_us()
                .map_or(TurnEnd::Never, |due_us| TurnEnd::At(due_us + 1)),
        );
    }

    /// Checks a `virtualize` by `caller`: the devirtualizable partition, native.
    pub(super) fn check_virtualize(&self, caller: usize) -> Result<(), Error> {
        match self.devirt.as_deref() {
            Some(devirt) if devirt.partition == caller => {
                if devirt.translated {
                    Err(Error::BadState)
                } else {
                    Ok(())
                }
            }
            _ => Err(Error::NotDevirtualizable),
        }
    }

    /// `virtualize`: the native devirtualizable partition is taken under the
    /// translation, at the identity; then the service VM starts or restarts.
    pub(super) fn virtualize(&mut self, caller: Caller, platform: &mut impl Platform) -> Dispatch {
        let service = self.take_under_translation(caller.partition, platform);
        Dispatch {
            reply: Some(Reply::ok([0; 3])),
            next: Next::Reload,
            effect: service,
        }
    }

    /// Before the kernel hands a fault, trap, panic or missed heartbeat of
    /// partition `index` to supervision: if `index` is the devirtualizable
    /// partition running natively, nothing monitors it (the service VM does not
    /// run beside a native partition), so it is taken under the translation at
    /// the identity, as `virtualize` does, and the service VM starts or
    /// restarts to decide what becomes of it. Its vCPU is on this core (the
    /// one that trapped, or whose watchdog this core checks) and leaves it,
    /// suspended or stopped. The work a service VM restart needs, if any.
    pub(super) fn monitor_native(
        &mut self,
        index: usize,
        platform: &mut impl Platform,
    ) -> Option<Effect> {
        self.devirt
            .as_deref()
            .filter(|devirt| devirt.partition == index && !devirt.translated)?;
        self.take_under_translation(index, platform)
    }

    /// Turns the native devirtualizable partition `index`'s translation on at
    /// the identity (its vCPU is loaded again, in the new mode, when it next
    /// runs), reports it, and starts the service VM, or restarts it when a
    /// devirtualization stopped it. The work the restart needs, if any.
    fn take_under_translation(
        &mut self,
        index: usize,
        platform: &mut impl Platform,
    ) -> Option<Effect> {
        let devirt = self
            .devirt
            .as_deref_mut()
            .expect("a devirtualizable partition");
        devirt.translated = true;
        let vcpu = self.partitions[index].vcpus.start;
        self.retranslate(index, true, Some(vcpu), platform);
        self.report(index, Step::Virtualized, None, 0, platform);
        if self.partitions[0].life.ended() {
            self.reset_events(platform);
            self.restart(0, platform).ok()
        } else {
            self.start_partition(0, platform);
            None
        }
    }

    /// Turns partition `index`'s translation on or off in the back end. Its
    /// vCPU, if live on a core, must be loaded again: the caller's own
    /// (`caller_vcpu`, its call answers [`Next::Reload`]) at once; on another
    /// core, at its next trap there, which a kick brings on
    /// ([`Deferred::Reload`]: the trap waits, and runs again in the new mode).
    fn retranslate(
        &mut self,
        index: usize,
        on: bool,
        caller_vcpu: Option<usize>,
        platform: &mut impl Platform,
    ) {
        platform.set_translation(index, on);
        let vcpu = self.partitions[index].vcpus.start;
        if caller_vcpu == Some(vcpu) {
            return;
        }
        let live = self.loaded.contains(&Some(vcpu));
        let life = &mut self.partitions[index].life;
        if live && life.deferred().is_none() {
            life.defer(Deferred::Reload);
            self.note_stopped_running();
        }
    }

    /// The devirtualizable partition `index`'s native run begins, if it is
    /// native: when its devirtualization ends, and again when its vCPU, live
    /// then, has left its core to be loaded natively ([`Deferred::Reload`]).
    /// Its count of native preemptions starts here (a turn the timer ended in
    /// the mode it left is not one).
    pub(super) fn native_run_begins(&mut self, index: usize) {
        let preempted = self.partitions[index].usage.count_of(TrapKind::Preempted);
        if let Some(devirt) = self.devirt.as_deref_mut()
            && !devirt.translated
        {
            devirt.preempted_when_native = preempted;
        }
    }

    /// The devirtualizable partition `target` as the service VM names it,
    /// translated and with no relocation under way unless `busy_ok`.
    fn translated_target(&self, target: usize) -> Result<&Devirt, Error> {
        let devirt = self
            .devirt
            .as_deref()
            .filter(|d| d.partition == target)
            .ok_or(Error::NotDevirtualizable)?;
        if !devirt.translated || self.partitions[target].life.ended() {
            return Err(Error::BadState);
        }
        Ok(devirt)
    }

    /// Checks an `evacuate` of `pages` machine frames from `first` for `target`.
    pub(super) fn check_evacuate(
        &self,
        target: usize,
        first: u64,
        pages: u64,
    ) -> Result<(), Error> {
        let devirt = self.translated_target(target)?;
        if devirt.relocation.is_busy() {
            return Err(Error::InFlight);
        }
        if !first.is_multiple_of(PAGE) || pages == 0 {
            return Err(Error::InvalidArgument);
        }
        Ok(())
    }

    /// `evacuate`: starts moving the pages on `pages` frames from `first`.
    pub(super) fn evacuate(
        &mut self,
        target: usize,
        first: u64,
        pages: u64,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let devirt = self.devirt.as_deref_mut().expect("checked by decode");
        let range = FrameRange {
            first: Frame(first / PAGE),
            count: pages,
        };
        if let Err(error) = devirt.relocation.evacuate(range) {
            return Dispatch::resume(Reply::error(match error {
                RelocationError::OutsidePartition | RelocationError::NotMapped(_) => {
                    Error::BadAddress
                }
                RelocationError::PoolShort { .. } => Error::PoolEmpty,
                RelocationError::InFlight => Error::InFlight,
            }));
        }
        devirt.evacuating = Some(range);
        devirt.moved = true;
        self.report(target, Step::EvacuationBegun, Some(first), pages, platform);
        self.relocate(target, platform)
    }

    /// Checks a `devirtualize` of `target`: translated, nothing under way, and
    /// every other guest ended.
    pub(super) fn check_devirtualize(&self, target: usize) -> Result<(), Error> {
        let devirt = self.translated_target(target)?;
        if devirt.relocation.is_busy() {
            return Err(Error::InFlight);
        }
        let others_live = (1..self.partitions.len())
            .any(|index| index != target && !self.partitions[index].life.ended());
        if others_live {
            return Err(Error::NotAlone);
        }
        Ok(())
    }

    /// `devirtualize`: starts bringing every page home.
    pub(super) fn devirtualize(&mut self, target: usize, platform: &mut impl Platform) -> Dispatch {
        let devirt = self.devirt.as_deref_mut().expect("checked by decode");
        let relocation = &devirt.relocation;
        let mut away = 0;
        platform.relocation_machine(target, &mut |machine| {
            away = relocation.pages_away(machine);
        });
        devirt.away = away;
        devirt
            .relocation
            .devirtualize()
            .expect("nothing is under way: checked by decode");
        self.report(target, Step::DevirtualizationBegun, None, 0, platform);
        self.relocate(target, platform)
    }

    /// Refuses ([`Error::BadState`]) to restart partition `index` while it is
    /// the devirtualizable partition and some of its pages are away from their
    /// home frames, or a relocation is under way: a restart reloads and scrubs
    /// its RAM in its home frames, which would then leave its pages' contents in
    /// the lent frames and write into free ones. Devirtualizing brings them home.
    pub(super) fn check_pages_home(&self, index: usize) -> Result<(), Error> {
        match self.devirt.as_deref() {
            Some(devirt)
                if devirt.partition == index && (devirt.moved || devirt.relocation.is_busy()) =>
            {
                Err(Error::BadState)
            }
            _ => Ok(()),
        }
    }

    /// Checks a `relocate` of `target`: work is under way.
    pub(super) fn check_relocate(&self, target: usize) -> Result<(), Error> {
        let devirt = self.translated_target(target)?;
        if !devirt.relocation.is_busy() {
            return Err(Error::Empty);
        }
        Ok(())
    }

    /// `relocate` (and the first part of `evacuate` and `devirtualize`): a
    /// bounded batch of the work under way; at its end, the end of the work.
    pub(super) fn relocate(&mut self, target: usize, platform: &mut impl Platform) -> Dispatch {
        let devirt = self.devirt.as_deref_mut().expect("checked by decode");
        let relocation = &mut devirt.relocation;
        let mut progress = Progress::Continue;
        platform.relocation_machine(target, &mut |machine| {
            let mut steps = 0;
            loop {
                progress = relocation.step(machine);
                steps += 1;
                let settled = matches!(progress, Progress::Resumable | Progress::Done);
                if progress == Progress::Done || (settled && steps >= RELOCATION_BATCH) {
                    break;
                }
            }
        });
        if progress != Progress::Done {
            return Dispatch::resume(Reply::ok([1, 0, 0]));
        }
        self.check_relocation(target, platform);
        let devirt = self.devirt.as_deref_mut().expect("checked by decode");
        match devirt.evacuating.take() {
            Some(range) => {
                let (first, pages) = (range.first.0 * PAGE, range.count);
                self.report(target, Step::Evacuated, Some(first), pages, platform);
                Dispatch::resume(Reply::ok([0; 3]))
            }
            None => self.finish_devirtualization(target, platform),
        }
    }

    /// Every page of `target` is home: its translation goes off, and the
    /// service VM, which asked, stops.
    fn finish_devirtualization(&mut self, target: usize, platform: &mut impl Platform) -> Dispatch {
        let devirt = self.devirt.as_deref_mut().expect("checked by decode");
        devirt.translated = false;
        devirt.native_faults = 0;
        devirt.moved = false;
        let came_home = devirt.away;
        self.native_run_begins(target);
        self.retranslate(target, false, None, platform);
        self.report(target, Step::Devirtualized, None, came_home, platform);
        // A trap that suspended it came from its translation, which is off:
        // the access runs again, natively.
        if matches!(self.partitions[target].life.state(), State::Suspended(_)) {
            let _ = self.resume(target, Resumption::Retry, platform);
        }
        self.stop(0, StopCause::Devirtualize, platform);
        Dispatch::new(None, Next::Yield)
    }

    /// After a relocation: the back map and the tables must agree; a kernel
    /// that finds otherwise stops rather than hand memory on.
    fn check_relocation(&mut self, target: usize, platform: &mut impl Platform) {
        let devirt = self.devirt.as_deref().expect("checked by decode");
        let relocation = &devirt.relocation;
        let mut disagreement = None;
        platform.relocation_machine(target, &mut |machine| {
            disagreement = relocation.disagreement(machine);
        });
        if let Some(page) = disagreement {
            panic!(
                "relocation: the tables and the back map disagree on guest page {:#x}",
                page.0 * PAGE
            );
        }
    }

    /// What becomes of `fault`, taken by partition `index`, if it is the
    /// devirtualizable partition's and the kernel handles it here (a fault
    /// taken in a mode it has left never comes here: see [`Deferred::Reload`]):
    /// - translated, a stage-2 fault on one of its RAM pages: the access met a
    ///   move (or the break of a remap) and is retried ([`Next::Caller`]);
    /// - native: a fault the translation did not cause, counted
    ///   (`native-faults=`) and handled as any fault (`None`), once
    ///   [`System::monitor_native`] has brought the service VM back.
    pub(super) fn devirt_fault(&mut self, index: usize, fault: &Fault) -> Option<Next> {
        let devirt = self
            .devirt
            .as_deref_mut()
            .filter(|d| d.partition == index)?;
        if !devirt.translated {
            devirt.native_faults += 1;
            return None;
        }
        let stage2 = matches!(fault.kind, Reason::Stage2Data | Reason::Stage2Instruction);
        if stage2
            && devirt
                .relocation
                .layout()
                .has_page(GuestPage(fault.addr / PAGE))
        {
            devirt.retried += 1;
            return Some(Next::Caller);
        }
        None
    }

    /// Reports a relocation step of `index` on the console and in the audit ring.
    fn report(
        &mut self,
        index: usize,
        step: Step,
        first: Option<u64>,
        pages: u64,
        platform: &mut impl Platform,
    ) {
        let (retried, native_faults, preempted_when_native, began_us) =
            self.devirt.as_deref().map_or((0, 0, 0, 0), |devirt| {
                let Devirt {
                    retried,
                    native_faults,
                    preempted_when_native,
                    began_us,
                    ..
                } = *devirt;
                (retried, native_faults, preempted_when_native, began_us)
            });
        let native_preemptions = self.partitions[index]
            .usage
            .count_of(TrapKind::Preempted)
            .saturating_sub(preempted_when_native);
        let now_us = platform.now_us();
        let us = match step {
            Step::Evacuated | Step::Devirtualized => now_us.saturating_sub(began_us),
            Step::Virtualized | Step::EvacuationBegun | Step::DevirtualizationBegun => 0,
        };
        if let Some(devirt) = self.devirt.as_deref_mut()
            && matches!(step, Step::EvacuationBegun | Step::DevirtualizationBegun)
        {
            devirt.began_us = now_us;
        }
        emit(
            platform,
            Event::PartitionRelocation {
                name: self.partitions[index].name(),
                step,
                first: first.unwrap_or(0),
                pages,
                retried,
                native_faults,
                native_preemptions,
                us,
            },
        );
        self.audit_now(index, AuditKind::Relocation, [step as u64, pages], platform);
    }
}

/// Copies the RAM of partition `index`'s hypercall buffer at `at` (as
/// `System::guest_buffer` gave it) into `buffer`. A translated
/// devirtualizable partition's pages may have moved, so its buffer (a
/// console line: it holds no other buffer capability) is read page by page
/// from the frames its tables map; every other partition's is read whole.
pub(super) fn read_buffer(
    devirt: Option<&Devirt>,
    index: usize,
    at: u64,
    buffer: &mut [u8],
    platform: &mut impl Platform,
) {
    let moving = devirt.is_some_and(|devirt| devirt.partition == index && devirt.translated);
    if !moving {
        platform.read_ram(at, buffer);
        return;
    }
    // Placed identity: the buffer's machine address is its guest address.
    let mut done = 0;
    while done < buffer.len() {
        let guest = at + done as u64;
        let len = ((PAGE - guest % PAGE) as usize).min(buffer.len() - done);
        let mut frame = None;
        platform.relocation_machine(index, &mut |machine| {
            frame = machine
                .entry(GuestPage(guest / PAGE))
                .map(|entry| entry.frame);
        });
        let frame = frame.expect("every page of a relocatable partition is mapped");
        platform.read_ram(frame.0 * PAGE + guest % PAGE, &mut buffer[done..done + len]);
        done += len;
    }
}
