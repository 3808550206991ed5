//! The kernel's limits that descriptions are checked against. Each is the constant
//! the kernel itself enforces (when it parses the system package or sets the
//! system up at boot), re-exported from the crate that owns it, so that one fact
//! lives in one place: a limit changed in the kernel changes the validator's rule
//! with it.

pub use septum_core::abi::layout::{PAGE_SIZE, RAM_BASE, RECEIVE_WINDOW_BASE};
pub use septum_core::caps::CAP_SLOTS;
pub use septum_core::flip::{FLIGHT_MAX, MAX_QUEUES};
pub use septum_core::package::{MAX_PARTITIONS, MAX_SYSTEM_VCPUS, NAME_MAX, RAM_MAX};
pub use septum_core::resources::{
    MAX_IRQS, MAX_MMIO, MAX_PORTS, MAX_RECEIVE_WINDOW, MAX_VCPUS, MAX_WINDOWS,
};
pub use septum_core::supervision::MAX_RESTARTS;
pub use septum_core::system::MAX_CPUS;

/// Deepest queue: the smaller of the package format's limit and the capacity of
/// the kernel's message rings (both 64 today).
pub const QUEUE_DEPTH_MAX: u32 = {
    let package = septum_core::package::MAX_QUEUE_DEPTH;
    let ring = septum_core::flip::QUEUE_MAX as u32;
    if package < ring { package } else { ring }
};

/// Longest major frame in µs: the package carries it in 32 bits.
pub const MAJOR_FRAME_MAX_US: u64 = u32::MAX as u64;
