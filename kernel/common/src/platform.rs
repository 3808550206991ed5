//! The core's view of the machine ([`Platform`]): RAM that the kernel maps at its
//! physical address, the partitions' translation tables, the console ring, the
//! clock, and the partitions' pristine images for reloads.

use core::fmt;

use septum_core::console::output::{Output, Source};
use septum_core::event::Event;
use septum_core::flip::Pages;
use septum_core::memory::Range;
use septum_core::package::Package;
use septum_core::system::Platform;
use septum_core::trace::{Kind, NONE, Note, Supervision};

use crate::paging::PAGE;
use crate::trace::Trace;
use crate::{AddressSpace, Machine};

/// The machine as the core sees it, for the length of one call into the core.
pub(crate) struct IdentityRam<'a, M, S> {
    pub(crate) machine: &'a mut M,
    pub(crate) spaces: &'a mut [S],
    pub(crate) console: &'a mut Output,
    pub(crate) package: &'a Package<'static>,
    pub(crate) trace: &'a mut Trace,
    /// The core in the kernel, where it is known: its trace ring records the
    /// core's supervision events.
    pub(crate) cpu: Option<usize>,
}

/// An [`IdentityRam`] over the fields of a [`Kernel`](crate::Kernel), borrowed
/// apart from its `system`, for core `cpu` if given.
macro_rules! identity_ram {
    ($kernel:expr) => {
        identity_ram!($kernel, None)
    };
    ($kernel:expr, $cpu:expr) => {
        $crate::platform::IdentityRam {
            machine: &mut $kernel.machine,
            spaces: &mut $kernel.spaces,
            console: &mut $kernel.console,
            package: &$kernel.package,
            trace: &mut $kernel.trace,
            cpu: $cpu,
        }
    };
}
pub(crate) use identity_ram;

impl<M: Machine, S: AddressSpace> Pages for IdentityRam<'_, M, S> {
    fn map_page(&mut self, partition: usize, guest: u64, frame: u64) {
        self.spaces[partition].map_page(guest, frame);
    }

    fn unmap_page(&mut self, partition: usize, guest: u64) {
        self.spaces[partition].unmap_page(guest);
    }

    fn flush_translations(&mut self, partition: usize) {
        self.spaces[partition].flush_translations();
    }

    fn scrub_page(&mut self, frame: u64) {
        // SAFETY: the ledger scrubs only frames it tracks (partition RAM or the
        // kernel's pool), page-aligned and mapped in no partition at this moment;
        // both back ends map RAM at its physical address.
        unsafe { self.machine.zero_page(frame) };
    }

    fn copy(&mut self, from: u64, to: u64, len: u64) {
        // SAFETY: one side is a copy slot of kernel memory, the other a buffer the
        // core checked to lie in the partition's own present RAM pages; they never
        // overlap. RAM is mapped at its physical address.
        unsafe { core::ptr::copy_nonoverlapping(from as *const u8, to as *mut u8, len as usize) };
    }
}

/// The kernel's own console lines go into the ring, charged to the kernel.
impl<M, S> fmt::Write for IdentityRam<'_, M, S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.write(Source::Kernel, s);
        Ok(())
    }
}

impl<M: Machine, S: AddressSpace> Platform for IdentityRam<'_, M, S> {
    fn set_translation(&mut self, partition: usize, on: bool) {
        self.spaces[partition].set_translation(on);
    }

    fn relocation_machine(
        &mut self,
        partition: usize,
        work: &mut dyn FnMut(&mut dyn septum_core::relocation::Machine),
    ) {
        self.spaces[partition].relocation_machine(work);
    }

    fn write_guest(&mut self, partition: usize, text: &str) {
        self.console.write(Source::Partition(partition), text);
    }

    fn take_console_dropped(&mut self, partition: usize, now: bool) -> Option<u64> {
        self.console.take_dropped(Source::Partition(partition), now)
    }

    fn read_ram(&mut self, addr: u64, buffer: &mut [u8]) {
        // SAFETY: the core passes only ranges it checked to lie inside a partition's
        // RAM; both back ends map all RAM at its physical address as normal memory.
        unsafe {
            core::ptr::copy_nonoverlapping(addr as *const u8, buffer.as_mut_ptr(), buffer.len())
        };
    }

    fn write_ram(&mut self, addr: u64, bytes: &[u8]) {
        // SAFETY: as for `read_ram`: a range the core checked to lie inside a
        // partition's RAM, which is never kernel memory.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
    }

    fn now_us(&mut self) -> u64 {
        self.machine.now_us()
    }

    fn reload_page(&mut self, partition: usize, offset: u64, frame: u64) {
        let image = self
            .package
            .partitions()
            .nth(partition)
            .expect("the system was built from this package")
            .image;
        let start = (offset as usize).min(image.len());
        let chunk = &image[start..(start + PAGE as usize).min(image.len())];
        // SAFETY: `frame` backs a page of this partition's RAM, which is live on no
        // core (the core reloads a restarted partition before it runs again, and
        // restarts a partition only once none of its vCPUs is live); both back
        // ends map
        // RAM at its physical address, and the chunk is at most a page.
        unsafe {
            self.machine.zero_page(frame);
            core::ptr::copy_nonoverlapping(chunk.as_ptr(), frame as *mut u8, chunk.len());
        }
        if !chunk.is_empty() {
            let code = Range::from_start_size(frame, chunk.len() as u64).expect("inside RAM");
            self.machine.code_written(code);
        }
    }

    fn lock_counts(&mut self, cpu: usize) -> Option<(u64, u64)> {
        crate::LOCK_COUNTS.get(cpu).map(crate::LockCount::get)
    }

    fn traced(&mut self, event: &Event<'_>) {
        let (Some(cpu), Some((name, what, generation))) = (self.cpu, Supervision::of_event(event))
        else {
            return;
        };
        let partition = self
            .package
            .partitions()
            .position(|spec| spec.name == name)
            .and_then(|index| u8::try_from(index).ok())
            .unwrap_or(NONE);
        let note = Note {
            kind: Kind::Supervision,
            code: what as u8,
            value: generation,
        };
        let now_us = self.machine.now_us();
        self.trace.push(cpu, &note.at(now_us, partition, NONE));
    }
}
