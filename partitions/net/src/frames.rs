//! Raw Ethernet frames built by hand for the hostile role: an IPv4 datagram
//! carrying UDP (its header checksum right unless a case spoils it), ARP
//! packets, and frames of any other type. The wire layout is Ethernet's, IPv4's
//! (RFC 791) and ARP's (RFC 826); the constants the router shares come from
//! [`septum_abi::net`].

pub use septum_abi::net::IPV4_HEADER;
use septum_abi::net::{
    ARP_SIZE, ETHERNET_HEADER, ETHERTYPE_ARP, ETHERTYPE_IPV4, ROUTER_MAC, checksum,
};

/// Bytes of a UDP header.
const UDP_HEADER: usize = 8;
/// Ethernet type of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// A frame being built, in a buffer of the caller's.
pub struct Builder<'a> {
    bytes: &'a mut [u8],
    len: usize,
}

impl<'a> Builder<'a> {
    /// An Ethernet frame from `source` to the router, of type `ethertype`.
    pub fn ethernet(bytes: &'a mut [u8], source: [u8; 6], ethertype: u16) -> Builder<'a> {
        bytes[..6].copy_from_slice(&ROUTER_MAC);
        bytes[6..12].copy_from_slice(&source);
        bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
        Builder {
            bytes,
            len: ETHERNET_HEADER,
        }
    }

    /// Appends `payload`.
    pub fn push(mut self, payload: &[u8]) -> Builder<'a> {
        self.bytes[self.len..self.len + payload.len()].copy_from_slice(payload);
        self.len += payload.len();
        self
    }

    /// Appends `count` bytes of a pattern.
    pub fn pad(mut self, count: usize) -> Builder<'a> {
        for (i, byte) in self.bytes[self.len..self.len + count]
            .iter_mut()
            .enumerate()
        {
            *byte = i as u8;
        }
        self.len += count;
        self
    }

    /// The frame's length.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// An IPv4 frame from `mac` carrying a UDP datagram with `payload` from
/// `source` to `destination` (port 9, discard), with a right header checksum.
pub fn udp<'a>(
    bytes: &'a mut [u8],
    mac: [u8; 6],
    source: [u8; 4],
    destination: [u8; 4],
    payload: &[u8],
) -> Builder<'a> {
    let total = (IPV4_HEADER + UDP_HEADER + payload.len()) as u16;
    let mut header = [0u8; IPV4_HEADER];
    header[0] = 0x45;
    header[2..4].copy_from_slice(&total.to_be_bytes());
    header[8] = 64;
    header[9] = 17;
    header[12..16].copy_from_slice(&source);
    header[16..20].copy_from_slice(&destination);
    let sum = checksum(&header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut udp = [0u8; UDP_HEADER];
    udp[0..2].copy_from_slice(&9u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&((UDP_HEADER + payload.len()) as u16).to_be_bytes());
    // A UDP checksum of 0: none (the router reads only the IPv4 header).
    Builder::ethernet(bytes, mac, ETHERTYPE_IPV4)
        .push(&header)
        .push(&udp)
        .push(payload)
}

/// An ARP packet (`operation` 1: request, 2: reply) from `mac` at `sender`
/// about `target`.
pub fn arp(
    bytes: &mut [u8],
    mac: [u8; 6],
    operation: u16,
    sender: [u8; 4],
    target: [u8; 4],
) -> Builder<'_> {
    let mut arp = [0u8; ARP_SIZE];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes());
    arp[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&operation.to_be_bytes());
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&sender);
    arp[24..28].copy_from_slice(&target);
    Builder::ethernet(bytes, mac, ETHERTYPE_ARP).push(&arp)
}

/// Spoils the IPv4 header of a frame built by [`udp`] with `spoil` and puts
/// its checksum right again (unless `spoil` breaks the checksum itself).
pub fn spoil_ipv4(frame: &mut [u8], spoil: impl FnOnce(&mut [u8]), fix_checksum: bool) {
    let header = &mut frame[ETHERNET_HEADER..ETHERNET_HEADER + IPV4_HEADER];
    spoil(header);
    if fix_checksum {
        header[10..12].fill(0);
        let sum = checksum(header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}
