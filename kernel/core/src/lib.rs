//! The portable core of the Septum separation kernel.
//!
//! It owns every decision that does not depend on the processor: which partitions
//! exist and in what state they are, which hypercalls are allowed and with what
//! arguments, which physical memory is free, how a system package is laid out, and
//! what the kernel says on the console. The architecture back ends
//! (`septum-aarch64` and `septum-x86_64`, through the loop they share in
//! `septum-kernel`) own the registers, page tables and traps, and ask the core
//! what to do.
//!
//! What is not the kernel's to decide, or not portable, lives elsewhere: the
//! hypercall ABI and its vocabularies in `septum-abi`, the x86 instruction decoder
//! in the x86 back end (`septum-x86-decode`), and the service VM's memory
//! scheduler in `septum-memsched`.
//!
//! Invariants kept here, and tested on the host:
//! - no `unsafe` code (`#![forbid(unsafe_code)]`) and no architecture code;
//! - every hypercall is fully validated before any state changes ("decode, then
//!   invoke"); a rejected call leaves the system exactly as it was;
//! - a guest partition never runs before the service VM has reported ready.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod audit;
pub mod balloon;
pub mod caps;
pub mod console;
pub mod event;
#[cfg(test)]
mod fake_pages;
pub mod fixed;
pub mod flip;
pub mod memory;
pub mod net;
pub mod package;
pub mod relocation;
pub mod resources;
pub mod schedule;
pub mod supervision;
pub mod system;
pub mod trace;
pub mod uart;
pub mod usage;
pub mod vgic;
pub mod virtio;

pub use septum_abi as abi;
