//! The relocation core's hands on the machine: a partition's second-stage
//! tables (stage 2 or EPT) as a [`Translation`], and machine memory as
//! [`FrameMemory`]. `septum_core::relocation` decides what moves where and in
//! which order; this module only carries its decisions out, a page at a time.
//!
//! Invariants:
//! - a page's frame changes only through break-before-make: its entry is made
//!   invalid, every processor's cached translations of the partition are
//!   flushed, and only then is the new frame written; a change of permissions
//!   alone (write protection) is a single store, which the architecture allows
//!   without the break;
//! - every entry written is a level-3 page with the back end's RAM attributes,
//!   with or without the write permission ([`Format::WRITE`]).

use septum_core::relocation::{Access, Entry, Frame, FrameMemory, GuestPage, Translation};

use septum_core::memory::Range;

use crate::paging::{Format, PAGE, Tables};

/// A partition's tables and machine memory, as relocation drives them.
pub struct RelocatableTables<'a, F> {
    tables: &'a mut Tables<F>,
    /// The attributes of a writable RAM page.
    attributes: u64,
    /// Makes every processor drop its cached translations of this partition,
    /// and waits until they have (the back end's broadcast TLB maintenance).
    flush: &'a mut dyn FnMut(),
    /// Where frames are copied and scrubbed.
    memory: MachineMemory,
}

impl<'a, F: Format> RelocatableTables<'a, F> {
    /// Relocation's view of `tables`, whose RAM pages carry `attributes`, with
    /// the back end's `flush`, and of `memory`.
    pub fn new(
        tables: &'a mut Tables<F>,
        attributes: u64,
        flush: &'a mut dyn FnMut(),
        memory: MachineMemory,
    ) -> Self {
        RelocatableTables {
            tables,
            attributes,
            flush,
            memory,
        }
    }

    fn attributes_for(&self, access: Access) -> u64 {
        match access {
            Access::ReadWrite => self.attributes,
            Access::ReadOnly => self.attributes & !F::WRITE,
        }
    }
}

impl<F: Format> Translation for RelocatableTables<'_, F> {
    fn entry(&self, page: GuestPage) -> Option<Entry> {
        let entry = self.tables.page(page.0 * PAGE)?;
        Some(Entry {
            frame: Frame((entry & F::ADDRESS_MASK) / PAGE),
            access: if entry & F::WRITE == F::WRITE {
                Access::ReadWrite
            } else {
                Access::ReadOnly
            },
        })
    }

    fn set(&mut self, page: GuestPage, entry: Entry) {
        let guest = page.0 * PAGE;
        let attributes = self.attributes_for(entry.access);
        let current = self.entry(page);
        if current.is_some_and(|current| current.frame == entry.frame) {
            self.tables
                .set_page_attributes(guest, attributes)
                .expect("the page is mapped");
            return;
        }
        if current.is_some() {
            self.tables
                .set_page(guest, None)
                .expect("the page's level-3 table exists");
            (self.flush)();
        }
        self.tables
            .set_page(guest, Some((entry.frame.0 * PAGE, attributes)))
            .expect("relocatable RAM is mapped with pages, and the entry was just broken");
    }

    fn write_protect(&mut self, page: GuestPage) {
        let attributes = self.attributes_for(Access::ReadOnly);
        self.tables
            .set_page_attributes(page.0 * PAGE, attributes)
            .expect("relocation protects only mapped pages");
    }

    fn flush(&mut self) {
        (self.flush)();
    }
}

impl<F: Format> FrameMemory for RelocatableTables<'_, F> {
    fn copy_frame(&mut self, from: Frame, to: Frame) {
        self.memory.copy_frame(from, to);
    }

    fn scrub_frame(&mut self, frame: Frame) {
        self.memory.scrub_frame(frame);
    }
}

/// Machine memory, which the kernel maps at its own address.
pub struct MachineMemory {
    zero_page: unsafe fn(u64),
    /// Makes what was just copied into a frame visible to the partition's
    /// instruction fetch (a moved page may hold its code).
    sync_code: fn(Range),
}

impl MachineMemory {
    /// Machine memory, scrubbed with the back end's `zero_page`; a frame a page
    /// is copied into is handed to `sync_code` (aarch64: clean the data cache,
    /// invalidate the instruction cache; nothing on x86, whose caches are
    /// coherent with instruction fetch).
    ///
    /// # Safety
    /// Every frame relocation names (the partition's home and extra frames) must
    /// be RAM the kernel maps at its machine address, which no one but the
    /// partition (through its tables) and relocation uses, and `zero_page` must
    /// zero the page at the address it is given.
    pub unsafe fn new(zero_page: unsafe fn(u64), sync_code: fn(Range)) -> Self {
        MachineMemory {
            zero_page,
            sync_code,
        }
    }
}

impl FrameMemory for MachineMemory {
    fn copy_frame(&mut self, from: Frame, to: Frame) {
        // SAFETY: per `new`'s contract both frames are mapped RAM; they are
        // distinct frames, so the pages do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (from.0 * PAGE) as *const u8,
                (to.0 * PAGE) as *mut u8,
                PAGE as usize,
            )
        };
        (self.sync_code)(Range::from_start_size(to.0 * PAGE, PAGE).expect("a frame"));
    }

    fn scrub_frame(&mut self, frame: Frame) {
        // SAFETY: per `new`'s contract the frame is mapped RAM, page-aligned.
        unsafe { (self.zero_page)(frame.0 * PAGE) };
    }
}

#[cfg(test)]
mod tests;
