//! The virtio-net device's own part (one queue pair, no offloads, no control
//! queue): its read-only configuration, and the copying of one frame out of a
//! transmit chain into kernel storage and of one frame into a receive chain.
//! Where a frame goes is the router's business ([`crate::net`]).
//!
//! Invariants:
//! - a transmit chain is only device-readable buffers, a receive chain only
//!   device-writable ones; anything else is the driver's violation;
//! - a transmit chain longer than a header and [`FRAME_MAX`] is not copied at
//!   all (oversize), one too short for a header and an Ethernet header is
//!   malformed; both are dropped, not violations: frames are the driver's data;
//! - a delivered frame is the kernel's copy, after an all-zero header whose
//!   `num_buffers` is 1.

use septum_abi::net::{DropReason, ETHERNET_HEADER, FRAME_MAX, MTU, port_mac};
use septum_abi::virtio::Violation;
use septum_abi::virtio::net::{
    CONFIG_MAC, CONFIG_MAX_QUEUE_PAIRS, CONFIG_MTU, CONFIG_SIZE, CONFIG_STATUS, HEADER_NUM_BUFFERS,
    HEADER_SIZE, STATUS_LINK_UP,
};

use super::queue::{Chain, GuestMemory};
use super::transport::read_config;
use crate::net::Frame;

/// The configuration partition `index`'s device shows, read `width` bytes at
/// `offset`.
pub fn config_read(index: usize, offset: u64, width: u8) -> u64 {
    let mut config = [0u8; CONFIG_SIZE as usize];
    let field = |at: u64, len: usize| at as usize..at as usize + len;
    config[field(CONFIG_MAC, 6)].copy_from_slice(&port_mac(index));
    config[field(CONFIG_STATUS, 2)].copy_from_slice(&STATUS_LINK_UP.to_le_bytes());
    config[field(CONFIG_MAX_QUEUE_PAIRS, 2)].copy_from_slice(&1u16.to_le_bytes());
    config[field(CONFIG_MTU, 2)].copy_from_slice(&(MTU as u16).to_le_bytes());
    read_config(&config, offset, width)
}

/// Copies the frame of transmit chain `chain` into `frame`: `Ok(Err(_))` for
/// a frame the router drops unread (oversize or too short).
pub fn read_frame(
    chain: &Chain,
    memory: &mut impl GuestMemory,
    frame: &mut Frame,
) -> Result<Result<(), DropReason>, Violation> {
    let len = chain.readable_len().ok_or(Violation::BadChain)?;
    let Some(frame_len) = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_sub(HEADER_SIZE))
    else {
        return Ok(Err(DropReason::Malformed));
    };
    if frame_len > FRAME_MAX {
        return Ok(Err(DropReason::Oversize));
    }
    if frame_len < ETHERNET_HEADER {
        return Ok(Err(DropReason::Malformed));
    }
    let mut bytes = [0u8; HEADER_SIZE + FRAME_MAX];
    chain.read(memory, &mut bytes[..HEADER_SIZE + frame_len])?;
    frame
        .fill(frame_len)
        .copy_from_slice(&bytes[HEADER_SIZE..HEADER_SIZE + frame_len]);
    Ok(Ok(()))
}

/// Writes `frame`, after its header, into receive chain `chain`; returns the
/// bytes written (for the used ring).
pub fn write_frame(
    chain: &Chain,
    memory: &mut impl GuestMemory,
    frame: &Frame,
) -> Result<u32, Violation> {
    let buffers = chain.buffers();
    let room: u64 = buffers.iter().map(|b| u64::from(b.len)).sum();
    let len = HEADER_SIZE + frame.bytes().len();
    if buffers.iter().any(|b| !b.writable) || room < len as u64 {
        return Err(Violation::BadChain);
    }
    let mut bytes = [0u8; HEADER_SIZE + FRAME_MAX];
    bytes[HEADER_NUM_BUFFERS..HEADER_NUM_BUFFERS + 2].copy_from_slice(&1u16.to_le_bytes());
    bytes[HEADER_SIZE..len].copy_from_slice(frame.bytes());
    chain.write(memory, &bytes[..len])?;
    Ok(len as u32)
}
