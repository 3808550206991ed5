//! Restarts on the ledger: what happens to the frames of a partition that is
//! restarted, and to the queues it is an end of (see the module docs of
//! [`flip`](super), "Restarts"). Keeps the ledger's invariants: after a restart
//! every slot of the partition is present, no frame is in two places, and the
//! pool still covers every orphan.

use septum_abi::layout::PAGE_SIZE;

use super::{End, Flip, Pages};
use crate::package::MAX_PARTITIONS;

impl Flip {
    /// Restarts `partition`'s side of every queue: every RAM slot of it is present
    /// again (frames come home from queues; held ones are orphaned and replaced from
    /// the pool), its window is emptied (frames scrubbed and sent home), messages
    /// waiting for it go home unread, and the other ends learn of the restart.
    /// Returns the partitions at the other ends, to wake.
    pub fn restart(&mut self, partition: usize, pages: &mut impl Pages) -> [bool; MAX_PARTITIONS] {
        self.reset(partition, true, pages)
    }

    /// Ends `partition`'s side of every queue (it exited or was stopped): its
    /// window is emptied and the messages waiting for it go home unread, as on a
    /// restart, but what it sent stays on its queues for the receivers to take
    /// (its pages come home when they release them), its slots are not refilled
    /// (it does not run), and the other ends are not told of a restart (the
    /// kernel tells them their peer ended). Returns the partitions at the other
    /// ends, to wake.
    pub fn end(&mut self, partition: usize, pages: &mut impl Pages) -> [bool; MAX_PARTITIONS] {
        self.reset(partition, false, pages)
    }

    /// A restart (`restarting`) or an end of `partition`'s side of every queue.
    fn reset(
        &mut self,
        partition: usize,
        restarting: bool,
        pages: &mut impl Pages,
    ) -> [bool; MAX_PARTITIONS] {
        let mut peers = [false; MAX_PARTITIONS];
        for queue in 0..self.queues.len() {
            let q = &mut self.queues[queue];
            let end = match (q.sender == partition, q.receiver == partition) {
                (true, _) => End::Receive,
                (_, true) => End::Send,
                _ => continue,
            };
            q.peer_restarted = [false; 2];
            q.peer_restarted[end as usize] = restarting;
            peers[if end == End::Receive {
                q.receiver
            } else {
                q.sender
            }] = true;
            if !restarting && end == End::Receive {
                // It sent these before it ended: they stay to be received.
                continue;
            }
            q.messages.clear();
            q.copy_used = 0;
            while let Some(page) = self.queues[queue].pages.pop_front() {
                self.go_home(page.frame, usize::from(page.origin), pages);
            }
        }
        while let Some(at) = self
            .held
            .iter()
            .position(|h| usize::from(h.partition) == partition)
        {
            let held = self.held.swap_remove(at);
            pages.unmap_page(partition, held.guest);
            self.go_home(held.frame, usize::from(held.origin), pages);
        }
        if !restarting {
            return peers;
        }
        self.bring_home_queued(partition, pages);
        for slot in 0..self.displaced.len() {
            let d = self.displaced[slot];
            if usize::from(d.partition) != partition || d.present {
                continue;
            }
            // The frame is held elsewhere: it stays there as an orphan.
            let substitute = self.pool.pop().expect("the pool covers every orphan");
            pages.map_page(partition, d.guest, substitute);
            self.displaced[slot].frame = substitute;
            self.displaced[slot].present = true;
        }
        for queue in self.queues.iter_mut().filter(|q| q.sender == partition) {
            queue.returned.clear();
        }
        pages.flush_translations(partition);
        peers
    }

    /// Takes every page of `partition`'s slots off every queue it is on (they may
    /// have been forwarded) and puts it home.
    fn bring_home_queued(&mut self, partition: usize, pages: &mut impl Pages) {
        for queue in 0..self.queues.len() {
            let mut index = 0;
            while index < self.queues[queue].pages.len() {
                let page = *self.queues[queue]
                    .pages
                    .iter()
                    .nth(index)
                    .expect("index < len");
                let own = self.displaced.iter().any(|d| {
                    usize::from(d.partition) == partition && d.frame == page.frame && !d.present
                });
                if !own {
                    index += 1;
                    continue;
                }
                self.remove_queued_page(queue, index);
                self.go_home(page.frame, usize::from(page.origin), pages);
            }
        }
    }

    /// Removes page `index` of `queue`'s ring, shrinking the message that holds it
    /// (a message left with no pages is dropped).
    fn remove_queued_page(&mut self, queue: usize, index: usize) {
        let q = &mut self.queues[queue];
        let mut first = 0;
        let mut owner = None;
        for (m, message) in q.messages.iter().enumerate() {
            let count = usize::from(message.pages);
            if message.copy_slot.is_none() && index < first + count {
                owner = Some(m);
                break;
            }
            first += count;
        }
        let owner = owner.expect("every queued page belongs to a message");
        let _ = q.pages.remove(index);
        let message = q.messages.get_mut(owner).expect("found above");
        message.pages -= 1;
        message.len = message.len.min(u32::from(message.pages) * PAGE_SIZE as u32);
        // A flipped message without pages is gone (copied ones never had any).
        q.messages
            .retain(|message| message.copy_slot.is_some() || message.pages > 0);
    }
}
