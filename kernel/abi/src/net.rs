//! IP networking between partitions: the vocabulary of the kernel's router,
//! which a partition reaches through its virtio-net device
//! ([`Device::Net`](crate::virtio::Device::Net)) and the service VM reads
//! through [`Call::NetInfo`](crate::Call::NetInfo).
//!
//! **The link.** Every port sees one Ethernet link whose only other station is
//! the router, at [`ROUTER_MAC`]. The router answers ARP for every address of
//! the port's subnet but the port's own (proxy ARP), so a guest sends every
//! datagram to it, and it delivers each frame with the receiver's MAC
//! ([`port_mac`]) as destination and its own as source. Only IPv4 crosses it.
//!
//! **Counters.** Every frame a port's driver sends is counted once in
//! [`Counters::sent`] and once in exactly one of [`Counters::routed`],
//! [`Counters::arp`] or [`Counters::dropped`] (by [`DropReason`]); every
//! frame written into a port's receive queue is counted in
//! [`Counters::received`], and every frame for it that found no buffer posted
//! in [`Counters::missed`]. Only [`Counters::to_words`] and
//! [`Counters::from_words`] know the order of [`COUNTER_WORDS`].

use core::fmt;

/// Largest IP datagram a port carries (its MTU).
pub const MTU: usize = 1500;
/// Bytes of an Ethernet header: destination, source, type.
pub const ETHERNET_HEADER: usize = 14;
/// Largest Ethernet frame a port carries (no frame check sequence).
pub const FRAME_MAX: usize = ETHERNET_HEADER + MTU;
/// Bytes of an IPv4 header without options.
pub const IPV4_HEADER: usize = 20;
/// Bytes of an ARP packet for Ethernet and IPv4.
pub const ARP_SIZE: usize = 28;
/// Ethernet type of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethernet type of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// Where the `qemu-virt` board's NIC is (QEMU's first `virtio-net-device`, on
/// its highest virtio-mmio transport), which the uplink's service VM drives.
/// The board file grants it as device `nic`; a host test keeps them equal.
pub const QEMU_VIRT_NIC: u64 = 0x0a00_3e00;
/// Bytes of the NIC's register window.
pub const QEMU_VIRT_NIC_SIZE: usize = 0x200;

/// The router's MAC address: locally administered, "SEP" and two ones.
pub const ROUTER_MAC: [u8; 6] = [0x02, 0x53, 0x45, 0x50, 0xff, 0xff];

/// The MAC address of partition `index`'s port (locally administered).
pub const fn port_mac(index: usize) -> [u8; 6] {
    [0x02, 0x53, 0x45, 0x50, 0x00, index as u8]
}

/// The Internet checksum of `bytes` (RFC 1071): the ones' complement of the
/// ones' complement sum of its 16-bit words; 0 over a header whose checksum
/// field is right.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A port's address: an IPv4 address and the length of its subnet's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// The address, most significant octet first.
    pub ip: [u8; 4],
    /// Bits of the subnet prefix (1 to 30).
    pub prefix: u8,
}

impl Address {
    /// Shortest prefix a port's subnet has.
    pub const PREFIX_MIN: u8 = 1;
    /// Longest prefix a port's subnet has (a /31 or /32 has no room for a
    /// second host).
    pub const PREFIX_MAX: u8 = 30;

    /// The address as one number.
    pub const fn value(self) -> u32 {
        u32::from_be_bytes(self.ip)
    }

    /// The subnet mask (all ones for a prefix of 32 or more).
    pub const fn mask(self) -> u32 {
        match self.prefix {
            0 => 0,
            1..=31 => u32::MAX << (32 - self.prefix as u32),
            _ => u32::MAX,
        }
    }

    /// Whether `ip` is in this address's subnet.
    pub const fn contains(self, ip: [u8; 4]) -> bool {
        u32::from_be_bytes(ip) & self.mask() == self.value() & self.mask()
    }

    /// Whether it is a host address of its subnet (neither the subnet's own
    /// address nor its broadcast address) with a prefix within
    /// [`Address::PREFIX_MIN`]..=[`Address::PREFIX_MAX`].
    pub const fn is_host(self) -> bool {
        let host = self.value() & !self.mask();
        self.prefix >= Self::PREFIX_MIN
            && self.prefix <= Self::PREFIX_MAX
            && host != 0
            && host != !self.mask()
    }

    /// Reads `a.b.c.d/n`; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Address> {
        let (ip, prefix) = text.split_once('/')?;
        let mut octets = [0u8; 4];
        let mut parts = ip.split('.');
        for octet in &mut octets {
            let part = parts.next()?;
            if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *octet = part.parse().ok()?;
        }
        if parts.next().is_some() || prefix.is_empty() || prefix.len() > 2 {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= 32).then_some(Address { ip: octets, prefix })
    }

    /// The word a package or a [`Counters`] record carries: the address in
    /// bits 8-39, the prefix in bits 0-7; 0 for no address.
    pub const fn to_word(self) -> u64 {
        (self.value() as u64) << 8 | self.prefix as u64
    }

    /// The address a word carries; `None` for 0, a word with bits above 39,
    /// or a prefix above 32.
    pub const fn from_word(word: u64) -> Option<Address> {
        if word == 0 || word >> 40 != 0 || word as u8 > 32 {
            return None;
        }
        Some(Address {
            ip: ((word >> 8) as u32).to_be_bytes(),
            prefix: word as u8,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.ip;
        write!(f, "{a}.{b}.{c}.{d}/{}", self.prefix)
    }
}

/// Why the router dropped a frame a port sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Neither IPv4 nor an ARP request (IPv6 among them).
    NotIpv4 = 0,
    /// Too short for its headers, a header that contradicts itself (length,
    /// version, checksum), or an ARP request that is not Ethernet/IPv4.
    Malformed = 1,
    /// Longer than [`FRAME_MAX`] (or a chain longer than a frame and its header).
    Oversize = 2,
    /// A source address that is not the sender's own (for the uplink: one a
    /// partition owns).
    Spoofed = 3,
    /// No partition owns the destination and there is no uplink (or it came
    /// from the uplink), or it is a broadcast or multicast address.
    NoRoute = 4,
    /// The receiver had no buffer posted, its driver is not running, or its
    /// next buffer broke the rules (read-only, or too small: the receiver's
    /// violation, which breaks its device).
    NoBuffer = 5,
}

impl DropReason {
    /// Every reason, in number order.
    pub const ALL: [DropReason; 6] = [
        DropReason::NotIpv4,
        DropReason::Malformed,
        DropReason::Oversize,
        DropReason::Spoofed,
        DropReason::NoRoute,
        DropReason::NoBuffer,
    ];

    /// Its number: its place in [`Counters::dropped`].
    pub const fn number(self) -> usize {
        self as usize
    }

    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::NotIpv4 => "not-ipv4",
            DropReason::Malformed => "malformed",
            DropReason::Oversize => "oversize",
            DropReason::Spoofed => "spoofed",
            DropReason::NoRoute => "no-route",
            DropReason::NoBuffer => "no-buffer",
        }
    }
}

/// Words of a [`Call::NetInfo`](crate::Call::NetInfo) record.
pub const COUNTER_WORDS: usize = 7 + DropReason::ALL.len();

/// A port's counters, as [`Call::NetInfo`](crate::Call::NetInfo) reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Its address ([`Address::to_word`]; 0: the partition has no port).
    pub address: u64,
    /// Whether it is the uplink (1) or not (0).
    pub uplink: u64,
    /// Frames its driver sent.
    pub sent: u64,
    /// Of those, frames delivered to a receiver's queue (the uplink's among them).
    pub routed: u64,
    /// Of those, ARP requests the router answered.
    pub arp: u64,
    /// Of those, frames dropped, by [`DropReason::number`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Frames written into its receive queue (ARP answers among them).
    pub received: u64,
    /// Frames for it dropped because it had no buffer posted.
    pub missed: u64,
}

impl Counters {
    /// The record's words: address, uplink, sent, routed, ARP, received,
    /// missed, then the drops by reason.
    pub fn to_words(&self) -> [u64; COUNTER_WORDS] {
        let mut words = [0; COUNTER_WORDS];
        words[..7].copy_from_slice(&[
            self.address,
            self.uplink,
            self.sent,
            self.routed,
            self.arp,
            self.received,
            self.missed,
        ]);
        words[7..].copy_from_slice(&self.dropped);
        words
    }

    /// The counters a record's words give.
    pub fn from_words(words: &[u64; COUNTER_WORDS]) -> Counters {
        let mut dropped = [0; DropReason::ALL.len()];
        dropped.copy_from_slice(&words[7..]);
        Counters {
            address: words[0],
            uplink: words[1],
            sent: words[2],
            routed: words[3],
            arp: words[4],
            received: words[5],
            missed: words[6],
            dropped,
        }
    }

    /// Frames it sent that were dropped, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// The counts as the kernel's `@@ net` line and the service VM's `net`
/// command show them: `sent= routed= arp= received= missed= dropped=`, then
/// `<reason>=<n>` for each reason that dropped any.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={} routed={} arp={} received={} missed={} dropped={}",
            self.sent,
            self.routed,
            self.arp,
            self.received,
            self.missed,
            self.dropped_total()
        )?;
        for reason in DropReason::ALL {
            match self.dropped[reason.number()] {
                0 => {}
                count => write!(f, " {}={count}", reason.name())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-IFC-002
    #[test]
    fn addresses_parse_and_round_trip() {
        let address = Address::parse("10.0.0.2/24").unwrap();
        assert_eq!(address.ip, [10, 0, 0, 2]);
        assert_eq!(address.prefix, 24);
        assert!(address.is_host());
        assert!(address.contains([10, 0, 0, 200]));
        assert!(!address.contains([10, 0, 1, 2]));
        assert_eq!(Address::from_word(address.to_word()), Some(address));
        for bad in [
            "10.0.0.2",
            "10.0.0/24",
            "10.0.0.256/24",
            "10.0.0.2/33",
            "a.b.c.d/8",
            "10.0.0.2/",
        ] {
            assert_eq!(Address::parse(bad), None, "{bad}");
        }
        assert!(!Address::parse("10.0.0.0/24").unwrap().is_host());
        assert!(!Address::parse("10.0.0.255/24").unwrap().is_host());
        assert!(!Address::parse("10.0.0.1/31").unwrap().is_host());
        assert_eq!(Address::from_word(0), None);
        assert_eq!(Address::from_word(1 << 40), None);
        assert_eq!(Address::from_word(0x000a_0000_0221), None, "prefix 33");
        assert_eq!(Address::parse("10.0.0.2/32").unwrap().mask(), u32::MAX);
    }

    /// Verifies: SK-IFC-004
    #[test]
    fn checksums_fold_their_carries() {
        // RFC 1071's example: the sum of these words is 0xddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        // An odd length pads with a zero byte: 0xffff + 0xff00 folds to 0xff00.
        assert_eq!(checksum(&[0xff; 3]), 0x00ff);
        let mut header = [
            0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 3,
        ];
        let sum = checksum(&header);
        header[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(checksum(&header), 0);
    }

    /// Verifies: SK-IFC-004
    #[test]
    fn counters_round_trip() {
        let counters = Counters {
            address: 7,
            uplink: 1,
            sent: 2,
            routed: 3,
            arp: 4,
            dropped: [5, 6, 7, 8, 9, 10],
            received: 11,
            missed: 12,
        };
        assert_eq!(Counters::from_words(&counters.to_words()), counters);
        assert_eq!(counters.dropped_total(), 45);
    }
}
