//! The console output the kernel has written but the UART has not sent yet.
//!
//! Console output must never make the kernel wait: a UART sends about 11,500
//! bytes a second at 115,200 baud, and a kernel that waited for it inside a
//! hypercall or a trap would spend other partitions' windows doing so. So the
//! kernel writes whole lines into this ring, and the back end drains it whenever
//! it is in the kernel anyway (every trap, idle time, the transmitter's
//! interrupt where it has one), as fast as the UART takes bytes and no faster.
//!
//! Every line is charged to a [`Source`]: the kernel itself, or the partition
//! that printed it. A partition may have at most [`PARTITION_SHARE`] bytes
//! waiting, and partitions together leave [`KERNEL_RESERVE`] bytes free for the
//! kernel's own lines; a line that does not fit is dropped whole and counted, so
//! a partition that floods the console loses only its own lines, and the
//! kernel's lines and the other partitions' keep flowing.
//!
//! Invariants (property-tested below):
//! - lines go out whole, in the order they were written, each as its source
//!   wrote it (cut at [`LINE_CAP`] bytes if longer), ended by `\r\n`; a line is
//!   never merged with another or sent in part before it is finished;
//! - a partition's waiting bytes never exceed [`PARTITION_SHARE`], and lines of
//!   partitions never take the last [`KERNEL_RESERVE`] bytes;
//! - every line written is either sent or counted as dropped for its source.

use crate::package::MAX_PARTITIONS;

/// The longest line the ring keeps, in bytes (its text, without the line end).
pub const LINE_CAP: usize = 256;
/// Most bytes of one partition's lines waiting at once.
pub const PARTITION_SHARE: usize = 8 * 1024;
/// Bytes the partitions' lines leave free for the kernel's.
pub const KERNEL_RESERVE: usize = 8 * 1024;
/// The ring size the kernel gives the console.
pub const RING_SIZE: usize = 32 * 1024;

/// Each line is stored after a header: its source and its length.
const HEADER: usize = 3;
/// What a line may take in the ring: its header, its text and `\r\n`.
const LINE_ROOM: usize = HEADER + LINE_CAP + 2;
const SOURCES: usize = MAX_PARTITIONS + 1;

/// Who a console line is charged to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The kernel's own lines (`@@`).
    Kernel,
    /// The lines partition `.0` printed.
    Partition(usize),
}

impl Source {
    fn index(self) -> usize {
        match self {
            Source::Kernel => MAX_PARTITIONS,
            Source::Partition(index) => index,
        }
    }
}

/// The line being written.
#[derive(Clone, Copy, Debug)]
struct Open {
    source: usize,
    /// Where its header is in the ring, if it was admitted (else it is dropped).
    header: Option<usize>,
    /// Its text so far.
    len: usize,
}

/// The line being sent.
#[derive(Clone, Copy, Debug)]
struct Sending {
    source: usize,
    /// Bytes of it not sent yet.
    left: usize,
}

/// Console lines waiting for the UART (see the module documentation).
#[derive(Debug)]
pub struct Output {
    ring: &'static mut [u8],
    /// The next byte to send.
    head: usize,
    /// Bytes in the ring, headers included.
    used: usize,
    /// Bytes from `head` that belong to finished lines.
    ready: usize,
    open: Option<Open>,
    sending: Option<Sending>,
    /// Bytes in the ring per source.
    waiting: [usize; SOURCES],
    /// Lines dropped per source since last reported.
    dropped: [u64; SOURCES],
}

impl Output {
    /// An empty ring in `ring` (the kernel gives it [`RING_SIZE`] bytes; one too
    /// small for a line drops every line).
    pub fn new(ring: &'static mut [u8]) -> Output {
        Output {
            ring,
            head: 0,
            used: 0,
            ready: 0,
            open: None,
            sending: None,
            waiting: [0; SOURCES],
            dropped: [0; SOURCES],
        }
    }

    /// Whether nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.ready == 0
    }

    /// Adds `text`, written by `source`: each `\n` ends a line. A line begun by
    /// another source is ended first.
    pub fn write(&mut self, source: Source, text: &str) {
        let source = source.index();
        if let Some(open) = self.open
            && open.source != source
        {
            self.end_line(open.source);
        }
        for (at, piece) in text.split('\n').enumerate() {
            if at > 0 {
                self.end_line(source);
            }
            if !piece.is_empty() {
                self.append(source, piece.as_bytes());
            }
        }
    }

    /// Sends bytes while `send` takes them (it returns false when the UART is
    /// full); returns how many it took.
    pub fn drain(&mut self, mut send: impl FnMut(u8) -> bool) -> usize {
        let mut sent = 0;
        while self.ready > 0 {
            let sending = match self.sending {
                Some(sending) => sending,
                None => {
                    let source = usize::from(self.byte_at(0));
                    let left = usize::from(self.byte_at(1)) | usize::from(self.byte_at(2)) << 8;
                    self.consume(source, HEADER);
                    let sending = Sending { source, left };
                    self.sending = Some(sending);
                    sending
                }
            };
            if !send(self.byte_at(0)) {
                break;
            }
            self.consume(sending.source, 1);
            sent += 1;
            self.sending = (sending.left > 1).then_some(Sending {
                left: sending.left - 1,
                ..sending
            });
        }
        sent
    }

    /// Lines of `source` dropped since last asked, once all its waiting lines
    /// have been sent (so a report follows the last line that made it), or at
    /// once if `now`; `None` if none were dropped, or some still wait.
    pub fn take_dropped(&mut self, source: Source, now: bool) -> Option<u64> {
        let index = source.index();
        if self.dropped[index] == 0 || (self.waiting[index] != 0 && !now) {
            return None;
        }
        Some(core::mem::take(&mut self.dropped[index]))
    }

    /// Appends `bytes` (no `\n`) to `source`'s open line, opening one if needed.
    fn append(&mut self, source: usize, bytes: &[u8]) {
        let open = match self.open {
            Some(open) => open,
            None => {
                let header = self.admits(source).then(|| {
                    let at = self.tail();
                    self.push(source, &[source as u8, 0, 0]);
                    at
                });
                Open {
                    source,
                    header,
                    len: 0,
                }
            }
        };
        let take = bytes.len().min(LINE_CAP - open.len);
        if open.header.is_some() {
            self.push(source, &bytes[..take]);
        }
        self.open = Some(Open {
            len: open.len + take,
            ..open
        });
    }

    /// Ends `source`'s open line (an empty one if none is open): it becomes
    /// ready to send, or is counted as dropped.
    fn end_line(&mut self, source: usize) {
        if self.open.is_none() {
            self.append(source, &[]);
        }
        let open = self.open.take().expect("a line is open");
        let Some(header) = open.header else {
            self.dropped[open.source] += 1;
            return;
        };
        self.push(open.source, b"\r\n");
        let len = open.len + 2;
        let size = self.ring.len();
        self.ring[(header + 1) % size] = len as u8;
        self.ring[(header + 2) % size] = (len >> 8) as u8;
        self.ready += HEADER + len;
    }

    /// Whether a new line of `source` fits: partitions within their share and
    /// above the kernel's reserve, the kernel anywhere there is room.
    fn admits(&self, source: usize) -> bool {
        let free = self.ring.len() - self.used;
        if source == MAX_PARTITIONS {
            return free >= LINE_ROOM;
        }
        self.waiting[source] + LINE_ROOM <= PARTITION_SHARE && free >= LINE_ROOM + KERNEL_RESERVE
    }

    fn tail(&self) -> usize {
        (self.head + self.used) % self.ring.len()
    }

    fn push(&mut self, source: usize, bytes: &[u8]) {
        for &byte in bytes {
            let at = self.tail();
            self.ring[at] = byte;
            self.used += 1;
        }
        self.waiting[source] += bytes.len();
    }

    /// The byte `offset` bytes after the head.
    fn byte_at(&self, offset: usize) -> u8 {
        self.ring[(self.head + offset) % self.ring.len()]
    }

    /// Drops `count` sent (or header) bytes of `source` from the head.
    fn consume(&mut self, source: usize, count: usize) {
        self.head = (self.head + count) % self.ring.len();
        self.used -= count;
        self.ready -= count;
        self.waiting[source] -= count;
    }
}

#[cfg(test)]
mod tests;
