//! The kernel's own log: `defmt` frames on a channel of their own (the log
//! channel: a second UART, never the console that carries the partitions' lines
//! and the `@@` lines), which the host tool decodes against the kernel's ELF
//! (`cargo run -- logs`).
//!
//! This module is defmt's global logger for both back ends. A back end gives it
//! the channel at boot ([`attach`]): a function that sends bytes, and one that
//! names the core it runs on. Until then, and on a board without a log channel,
//! frames are encoded and dropped. The timestamp is the back end's
//! (`defmt::timestamp!`, in µs on its clock).
//!
//! Invariants:
//! - one core at a time writes a frame: a spin lock held from defmt's `acquire`
//!   to its `release` owns the encoder and the channel, so frames from several
//!   cores never interleave;
//! - no interrupt handler logs, so the only way a core comes back into the
//!   logger while it holds it is a panic inside a frame: that nested frame is
//!   dropped (the panic handler's own report still goes to the console), and
//!   the outer frame ends normally;
//! - logging is for rare events (boot, shutdown, panics, the trace at
//!   shutdown): no path a partition drives at will logs, so a frame never takes
//!   time from another partition's window.
//!
//! The messages the host tool reads by their words (`boot ...`, `shutdown
//! clean=...`, and the trace's `trace-ring` and `trace-records`, see
//! [`crate::trace`]) are parsed in `src/kernel_log.rs`: defmt needs its format
//! strings as literals at each call, so a change to one is a change to both.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Sends bytes on the log channel, waiting for room.
pub type Send = fn(&[u8]);
/// The index of the core that calls it.
pub type CoreIndex = fn() -> usize;

/// What the lock protects.
struct State {
    encoder: defmt::Encoder,
    send: Option<Send>,
    /// Frames begun on the holding core that are being dropped (nested ones).
    nested: usize,
}

/// The logger's state behind a spin lock.
struct Logger {
    state: UnsafeCell<State>,
    /// 0 when free, else 1 + the holding core.
    holder: AtomicUsize,
    /// Written once by [`attach`] on the boot core before any other core runs
    /// (starting a core orders it after), read-only from then on.
    core_index: UnsafeCell<Option<CoreIndex>>,
}

// SAFETY: `state` is reached only by the core that holds `holder` (taken with an
// acquire compare-exchange, given back with a release store), one at a time;
// `core_index` is written only before other cores run.
unsafe impl Sync for Logger {}

static LOGGER: Logger = Logger {
    state: UnsafeCell::new(State {
        encoder: defmt::Encoder::new(),
        send: None,
        nested: 0,
    }),
    holder: AtomicUsize::new(0),
    core_index: UnsafeCell::new(None),
};

/// The core index that [`attach`] gave, or 0 before it (boot is on one core).
fn core_index() -> usize {
    // SAFETY: `attach` wrote it, if at all, before any other core ran, and
    // nothing writes it again.
    let index = unsafe { *LOGGER.core_index.get() };
    index.map_or(0, |index| index())
}

/// Takes the log channel for this core; `false` if this core holds it already
/// (a nested frame, which is dropped).
fn lock() -> bool {
    let me = core_index() + 1;
    loop {
        match LOGGER
            .holder
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(holder) if holder == me => return false,
            Err(_) => crate::relax(),
        }
    }
}

/// Gives the log channel to the kernel's log: `send` writes bytes on it, and
/// `core_index` names the calling core.
///
/// # Safety
/// Called at most once, at boot, on the boot core, before any other core runs.
pub unsafe fn attach(send: Send, core_index: CoreIndex) {
    // SAFETY: the caller is the boot core and no other core runs yet, so nothing
    // reads the cell meanwhile.
    unsafe { *LOGGER.core_index.get() = Some(core_index) };
    if lock() {
        // SAFETY: this core holds the lock.
        unsafe { (*LOGGER.state.get()).send = Some(send) };
        LOGGER.holder.store(0, Ordering::Release);
    }
}

#[defmt::global_logger]
struct KernelLog;

// SAFETY: `acquire` takes the lock (or marks a nested frame on the holding core),
// `write` and `flush` run only between `acquire` and `release` on that core, and
// `release` gives the lock back only when the outermost frame ends.
unsafe impl defmt::Logger for KernelLog {
    fn acquire() {
        if lock() {
            // SAFETY: this core now holds the lock.
            let state = unsafe { &mut *LOGGER.state.get() };
            if let Some(send) = state.send {
                state.encoder.start_frame(send);
            }
        } else {
            // SAFETY: this core holds the lock (the outer frame's).
            unsafe { (*LOGGER.state.get()).nested += 1 };
        }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: defmt calls `release` on the core that acquired, which holds
        // the lock.
        let state = unsafe { &mut *LOGGER.state.get() };
        if state.nested > 0 {
            state.nested -= 1;
            return;
        }
        if let Some(send) = state.send {
            state.encoder.end_frame(send);
        }
        LOGGER.holder.store(0, Ordering::Release);
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: as for `release`: this core holds the lock.
        let state = unsafe { &mut *LOGGER.state.get() };
        if state.nested > 0 {
            return;
        }
        if let Some(send) = state.send {
            state.encoder.write(bytes, send);
        }
    }
}
