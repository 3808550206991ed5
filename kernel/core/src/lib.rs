//! The portable core of the Septum separation kernel.
//!
//! It owns every decision that does not depend on the processor: which partitions
//! exist and in what state they are, which hypercalls are allowed and with what
//! arguments, which physical memory is free, how a system package is laid out, and
//! what the kernel says on the console. Architecture back ends (`septum-aarch64`,
//! later `septum-x86_64`) own the registers, page tables and traps, and ask the core
//! what to do.
//!
//! Invariants kept here, and tested on the host:
//! - no `unsafe` code (`#![forbid(unsafe_code)]`);
//! - every hypercall is fully validated before any state changes ("decode, then
//!   invoke"); a rejected call leaves the system exactly as it was;
//! - a guest partition never runs before the service VM has reported ready.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;

pub mod audit;
pub mod balloon;
pub mod caps;
pub mod console;
pub mod event;
#[cfg(test)]
mod fake_pages;
pub mod flip;
pub mod memory;
pub mod mmio_instruction;
pub mod package;
pub mod resources;
pub mod schedule;
pub mod supervision;
pub mod system;

pub use septum_abi as abi;
