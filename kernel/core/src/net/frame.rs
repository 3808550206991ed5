//! The headers of one Ethernet frame in the kernel's own copy: what the router
//! reads of them and how it rewrites them. Every read is bounds-checked against
//! the frame's length; nothing here trusts a length field before checking it
//! against the bytes there are.

use septum_abi::net::{
    ARP_SIZE, DropReason, ETHERNET_HEADER, ETHERTYPE_ARP, ETHERTYPE_IPV4, FRAME_MAX,
    IPV4_HEADER as IPV4_HEADER_MIN, ROUTER_MAC, checksum,
};
/// ARP operation: request.
const ARP_REQUEST: u16 = 1;
/// ARP operation: reply.
const ARP_REPLY: u16 = 2;
/// ARP hardware type: Ethernet.
const ARP_ETHERNET: u16 = 1;

/// A frame in kernel storage.
#[derive(Clone)]
pub struct Frame {
    bytes: [u8; FRAME_MAX],
    len: usize,
}

impl Default for Frame {
    fn default() -> Frame {
        Frame {
            bytes: [0; FRAME_MAX],
            len: 0,
        }
    }
}

impl core::fmt::Debug for Frame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Frame({} bytes)", self.len)
    }
}

/// What a frame is, once its headers are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// An IPv4 datagram from `source` to `destination`.
    Ipv4 {
        /// Source address.
        source: [u8; 4],
        /// Destination address.
        destination: [u8; 4],
    },
    /// An ARP request from `sender` asking for `target`.
    ArpRequest {
        /// The asker's address (0.0.0.0 for a probe).
        sender: [u8; 4],
        /// The address asked for.
        target: [u8; 4],
    },
}

impl Frame {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Room for a frame of `len` bytes (at most [`FRAME_MAX`]), to be filled.
    pub fn fill(&mut self, len: usize) -> &mut [u8] {
        self.len = len.min(FRAME_MAX);
        &mut self.bytes[..self.len]
    }

    /// A frame holding a copy of `bytes` (at most [`FRAME_MAX`] of them).
    pub fn from_bytes(bytes: &[u8]) -> Frame {
        let mut frame = Frame::default();
        let len = bytes.len().min(FRAME_MAX);
        frame.fill(len).copy_from_slice(&bytes[..len]);
        frame
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    fn ip_at(&self, at: usize) -> [u8; 4] {
        let mut ip = [0; 4];
        ip.copy_from_slice(&self.bytes[at..at + 4]);
        ip
    }

    /// Checks the headers; an IPv4 datagram is trimmed to its total length
    /// (dropping the Ethernet padding after it).
    pub fn parse(&mut self) -> Result<Parsed, DropReason> {
        if self.len < ETHERNET_HEADER {
            return Err(DropReason::Malformed);
        }
        match self.u16_at(12) {
            ETHERTYPE_IPV4 => self.parse_ipv4(),
            ETHERTYPE_ARP => self.parse_arp(),
            _ => Err(DropReason::NotIpv4),
        }
    }

    fn parse_ipv4(&mut self) -> Result<Parsed, DropReason> {
        let ip = ETHERNET_HEADER;
        if self.len < ip + IPV4_HEADER_MIN {
            return Err(DropReason::Malformed);
        }
        let version = self.bytes[ip] >> 4;
        let header_len = usize::from(self.bytes[ip] & 0xf) * 4;
        let total_len = usize::from(self.u16_at(ip + 2));
        if version != 4
            || header_len < IPV4_HEADER_MIN
            || total_len < header_len
            || ip + total_len > self.len
            || checksum(&self.bytes[ip..ip + header_len]) != 0
        {
            return Err(DropReason::Malformed);
        }
        self.len = ip + total_len;
        Ok(Parsed::Ipv4 {
            source: self.ip_at(ip + 12),
            destination: self.ip_at(ip + 16),
        })
    }

    fn parse_arp(&self) -> Result<Parsed, DropReason> {
        let arp = ETHERNET_HEADER;
        if self.len < arp + ARP_SIZE
            || self.u16_at(arp) != ARP_ETHERNET
            || self.u16_at(arp + 2) != ETHERTYPE_IPV4
            || self.bytes[arp + 4] != 6
            || self.bytes[arp + 5] != 4
        {
            return Err(DropReason::Malformed);
        }
        match self.u16_at(arp + 6) {
            ARP_REQUEST => Ok(Parsed::ArpRequest {
                sender: self.ip_at(arp + 14),
                target: self.ip_at(arp + 24),
            }),
            // Nothing asks a port, so a reply answers nothing.
            ARP_REPLY => Err(DropReason::NotIpv4),
            _ => Err(DropReason::Malformed),
        }
    }

    /// Makes the frame an Ethernet frame from the router to `mac` (its
    /// payload as it is).
    pub fn address_to(&mut self, mac: [u8; 6]) {
        self.bytes[..6].copy_from_slice(&mac);
        self.bytes[6..12].copy_from_slice(&ROUTER_MAC);
    }

    /// Makes the frame the router's ARP reply to a port at `mac` and `ip` that
    /// asked for `target`: `target` is at the router's MAC.
    pub fn arp_reply(&mut self, mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) {
        self.len = ETHERNET_HEADER + ARP_SIZE;
        self.address_to(mac);
        let arp = ETHERNET_HEADER;
        let bytes = &mut self.bytes;
        bytes[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        bytes[arp..arp + 2].copy_from_slice(&ARP_ETHERNET.to_be_bytes());
        bytes[arp + 2..arp + 4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        bytes[arp + 4] = 6;
        bytes[arp + 5] = 4;
        bytes[arp + 6..arp + 8].copy_from_slice(&ARP_REPLY.to_be_bytes());
        bytes[arp + 8..arp + 14].copy_from_slice(&ROUTER_MAC);
        bytes[arp + 14..arp + 18].copy_from_slice(&target);
        bytes[arp + 18..arp + 24].copy_from_slice(&mac);
        bytes[arp + 24..arp + 28].copy_from_slice(&ip);
    }
}
