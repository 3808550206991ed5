//! Page-flip messaging: flags, limits and message kinds of
//! [`Call::Send`](crate::Call::Send), [`Call::SendBatch`](crate::Call::SendBatch)
//! and [`Call::Receive`](crate::Call::Receive), and the two records that cross the
//! boundary: a batch entry ([`BatchEntry`]) and what a receive delivered
//! ([`Received`]). Only their `to_*`/`from_*` functions know the layout.

/// Flags of [`Call::Send`](super::Call::Send) and
/// [`Call::SendBatch`](super::Call::SendBatch).
pub mod flags {
    /// Switch to the receiver at once if it waits on the same core
    /// (the "immediate exit"); else it is woken for its next window.
    pub const IMMEDIATE: u64 = 1 << 0;
    /// Copy the bytes into the kernel instead of flipping pages.
    pub const COPY: u64 = 1 << 1;
    /// Every defined flag.
    pub const ALL: u64 = IMMEDIATE | COPY;
}

/// What [`Call::Receive`](super::Call::Receive) delivered (result 3, low byte).
pub mod kind {
    /// Pages mapped into the receive window.
    pub const FLIP: u64 = 1;
    /// Bytes copied into the caller's buffer.
    pub const COPY: u64 = 2;
}

/// Longest flipped message, in bytes (16 pages).
pub const MESSAGE_MAX: u64 = 64 * 1024;
/// Most messages in one [`Call::SendBatch`](super::Call::SendBatch).
pub const BATCH_MAX: usize = 16;
/// Longest copied message, in bytes; the size of each message slot the kernel
/// keeps per queue. See the README, "Messaging", for how it was chosen.
pub const COPY_MAX: u64 = 4096;

/// One message of a [`Call::SendBatch`](crate::Call::SendBatch) list: a page
/// address plus the message's length minus one in its low 12 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    /// The page (aligned to 4 KiB).
    pub page: u64,
    /// The message's length in bytes: 1 to 4096.
    pub len: u64,
}

impl BatchEntry {
    /// The list word; `None` if the page is not aligned or the length not 1 to
    /// 4096.
    pub fn to_word(self) -> Option<u64> {
        let aligned = self.page & 0xfff == 0;
        (aligned && (1..=4096).contains(&self.len)).then(|| self.page | (self.len - 1))
    }

    /// Reads a list word (every word is some entry).
    pub fn from_word(word: u64) -> BatchEntry {
        BatchEntry {
            page: word & !0xfff,
            len: (word & 0xfff) + 1,
        }
    }
}

/// What a [`Call::Receive`](crate::Call::Receive) delivered: its three results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The message's length in bytes.
    pub len: u64,
    /// The sender's badge (its partition index).
    pub badge: u16,
    /// Pages mapped in the receive window; 0 for a copied message.
    pub pages: u64,
}

impl Received {
    /// The call's results: length, badge, [`kind`] | pages << 8.
    pub fn to_results(self) -> [u64; 3] {
        let kind = if self.pages == 0 {
            kind::COPY
        } else {
            kind::FLIP
        };
        [self.len, u64::from(self.badge), kind | self.pages << 8]
    }

    /// Reads the call's results; `None` for a kind the ABI does not define.
    pub fn from_results([len, badge, what]: [u64; 3]) -> Option<Received> {
        let pages = what >> 8;
        let consistent = match what & 0xff {
            kind::FLIP => pages > 0,
            kind::COPY => pages == 0,
            _ => false,
        };
        consistent.then_some(Received {
            len,
            badge: badge as u16,
            pages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-API-001
    #[test]
    fn batch_entries_and_receive_results_round_trip() {
        for (page, len) in [(0x4000_1000, 1), (0x4000_2000, 4096), (0, 17)] {
            let entry = BatchEntry { page, len };
            assert_eq!(BatchEntry::from_word(entry.to_word().unwrap()), entry);
        }
        assert_eq!(
            BatchEntry {
                page: 0x1001,
                len: 1
            }
            .to_word(),
            None
        );
        assert_eq!(
            BatchEntry {
                page: 0x1000,
                len: 0
            }
            .to_word(),
            None
        );
        assert_eq!(
            BatchEntry {
                page: 0x1000,
                len: 4097
            }
            .to_word(),
            None
        );
        for received in [
            Received {
                len: 64,
                badge: 3,
                pages: 0,
            },
            Received {
                len: 8192,
                badge: 1,
                pages: 2,
            },
        ] {
            assert_eq!(
                Received::from_results(received.to_results()),
                Some(received)
            );
        }
        assert_eq!(Received::from_results([1, 1, kind::COPY | 1 << 8]), None);
        assert_eq!(Received::from_results([1, 1, 9]), None);
    }
}
