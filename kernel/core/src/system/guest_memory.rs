//! How the kernel reaches a partition's memory outside a hypercall buffer: the
//! frame that backs each of its pages now, which a restart (substitute frames for
//! pages a receiver holds) and ballooning (frames that come and go) change.

use septum_abi::Error;
use septum_abi::layout::PAGE_SIZE;

use super::{Platform, System};
use crate::memory::Range;

/// The pages `range` touches, by their addresses.
fn pages_of(range: Range) -> impl Iterator<Item = u64> {
    (range.start / PAGE_SIZE..range.end.div_ceil(PAGE_SIZE)).map(|page| page * PAGE_SIZE)
}

impl System {
    /// A guest buffer of `caller` that the kernel may reach at the same offset of
    /// its machine RAM: inside the RAM it always keeps (never balloon memory,
    /// whose pages may be backed by any frame or by none), in pages it has not
    /// sent away (nor had replaced after a restart; see
    /// [`Flip`](crate::flip::Flip)). Returns the buffer in machine memory.
    pub(super) fn guest_buffer(&self, caller: usize, guest: u64, len: u64) -> Result<Range, Error> {
        let partition = &self.partitions[caller];
        let buffer = Range::from_start_size(guest, len).ok_or(Error::BadAddress)?;
        let kept = Range::from_start_size(partition.guest_ram.start, partition.kept_ram)
            .expect("inside its RAM");
        if !kept.contains_range(&buffer) || !self.flip.natural(caller, buffer) {
            return Err(Error::BadAddress);
        }
        let offset = guest - partition.guest_ram.start;
        Ok(
            Range::from_start_size(partition.host_ram.start + offset, len)
                .expect("inside host RAM, which does not wrap"),
        )
    }

    /// The machine frame that backs RAM page `guest` of partition `index`: for
    /// kept memory its natural frame unless a restart replaced one (see
    /// [`Flip`]); for a backed balloon page the frame the balloon gave it.
    pub fn ram_frame(&self, index: usize, guest: u64) -> u64 {
        self.balloon
            .frame(index, guest)
            .unwrap_or_else(|| self.flip.slot_frame(index, guest))
    }

    /// Copies partition `index`'s memory at guest address `guest` into `buffer`,
    /// page by page from the frames that back it now: its kept RAM (natural frames,
    /// or the substitutes a restart gave it while a receiver held the originals)
    /// and its backed balloon pages. Refuses, reading nothing, a range that leaves
    /// its RAM or touches a page it does not have now (sent away, or a balloon
    /// hole). The kernel reads a partition's memory outside a hypercall buffer
    /// (such as its code) only through this.
    pub fn read_guest(
        &self,
        index: usize,
        guest: u64,
        buffer: &mut [u8],
        platform: &mut impl Platform,
    ) -> Result<(), Error> {
        let range = self.check_guest(index, guest, buffer.len() as u64)?;
        for page in pages_of(range) {
            let frame = self.present_frame(index, page).expect("checked above");
            let (from, to) = (range.start.max(page), range.end.min(page + PAGE_SIZE));
            let at = (from - range.start) as usize..(to - range.start) as usize;
            platform.read_ram(frame + (from - page), &mut buffer[at]);
        }
        Ok(())
    }

    /// Copies `bytes` to partition `index`'s memory at guest address `guest`,
    /// page by page into the frames that back it now; refuses, writing
    /// nothing, a range [`System::read_guest`] would refuse. The kernel writes
    /// a partition's memory outside a hypercall buffer (such as the used ring of
    /// a virtio queue) only through this.
    pub fn write_guest(
        &self,
        index: usize,
        guest: u64,
        bytes: &[u8],
        platform: &mut impl Platform,
    ) -> Result<(), Error> {
        let range = self.check_guest(index, guest, bytes.len() as u64)?;
        for page in pages_of(range) {
            let frame = self.present_frame(index, page).expect("checked above");
            let (from, to) = (range.start.max(page), range.end.min(page + PAGE_SIZE));
            let at = (from - range.start) as usize..(to - range.start) as usize;
            platform.write_ram(frame + (from - page), &bytes[at]);
        }
        Ok(())
    }

    /// The range of `len` bytes at guest address `guest` of partition `index`,
    /// if every page of it is memory the partition has now (see
    /// [`System::read_guest`]).
    pub fn check_guest(&self, index: usize, guest: u64, len: u64) -> Result<Range, Error> {
        let range = Range::from_start_size(guest, len).ok_or(Error::BadAddress)?;
        let mut pages = pages_of(range);
        if pages.any(|page| self.present_frame(index, page).is_none()) {
            return Err(Error::BadAddress);
        }
        Ok(range)
    }

    /// The frame mapped at RAM page `page` of partition `index` now, if it has
    /// one there (see [`System::read_guest`]).
    fn present_frame(&self, index: usize, page: u64) -> Option<u64> {
        let partition = &self.partitions[index];
        let kept = partition.guest_ram.start..partition.guest_ram.start + partition.kept_ram;
        if kept.contains(&page) {
            self.flip.present_frame(index, page)
        } else {
            self.balloon.frame(index, page)
        }
    }
}
