//! The kernel's IP router: the one owner of the network's routing table (which
//! partition owns which address, which port is the uplink) and of every port's
//! counters ([`Counters`]). The system hands it each frame a port's driver sent,
//! copied into kernel storage ([`Frame`]); it decides where the frame goes and
//! rewrites its Ethernet header; the system then writes it into the receiver's
//! queue and tells the router whether a buffer was there.
//!
//! The rules, in order, for a frame sent by port `S`:
//! 1. an ARP request from `S`'s own address (or a probe from 0.0.0.0) for
//!    another address of `S`'s subnet is answered with the router's MAC (proxy
//!    ARP); other ARP requests are dropped as no route, and one claiming
//!    another sender address as spoofed;
//! 2. anything else that is not IPv4 is dropped (not IPv4), and so is a frame
//!    whose headers are short or contradict themselves (malformed);
//! 3. a source address that is not `S`'s own is dropped (spoofed); from the
//!    uplink, a source address a partition owns is;
//! 4. a broadcast or multicast destination (the limited broadcast, or any
//!    port's subnet's own or broadcast address) is dropped (no route); a destination
//!    a port owns goes to that port; any other goes to the uplink, unless there
//!    is none or `S` is the uplink (no route);
//! 5. a frame routed to a port that has no buffer posted, or whose next
//!    buffer breaks the rules (the receiver's violation), is dropped (no
//!    buffer).
//!
//! Invariants (property-tested): a frame reaches at most one port, and only the
//! port that owns its destination, or the uplink for a destination no port
//! owns; for every port, `sent = routed + arp + Σ dropped`; over all ports,
//! `Σ received = Σ routed + Σ arp` and `Σ missed = Σ dropped(no buffer)`.

pub mod frame;

use alloc::vec::Vec;

use septum_abi::net::{Address, Counters, DropReason, port_mac};

use crate::resources::NetPort;
pub use frame::Frame;
use frame::Parsed;

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To partition `to`'s receive queue: an IPv4 datagram, or the router's ARP
    /// answer back to its sender.
    Deliver {
        /// The receiving partition.
        to: usize,
        /// Whether it is an ARP answer.
        arp: bool,
    },
    /// Nowhere: dropped (and counted) for this reason.
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug)]
struct Port {
    address: Address,
    uplink: bool,
    counters: Counters,
}

/// The routing table and the ports' counters.
#[derive(Debug, Default)]
pub struct Router {
    /// By partition index.
    ports: Vec<Option<Port>>,
}

impl Router {
    /// A router for ports `ports` (by partition index; `None`: no port).
    pub fn new(ports: impl IntoIterator<Item = Option<NetPort>>) -> Router {
        let ports = ports
            .into_iter()
            .map(|port| {
                port.map(|NetPort { address, uplink }| Port {
                    address,
                    uplink,
                    counters: Counters {
                        address: address.to_word(),
                        uplink: u64::from(uplink),
                        ..Counters::default()
                    },
                })
            })
            .collect();
        Router { ports }
    }

    /// Partition `index`'s counters (all zero if it has no port).
    pub fn counters(&self, index: usize) -> Counters {
        self.port(index)
            .map(|port| port.counters)
            .unwrap_or_default()
    }

    fn port(&self, index: usize) -> Option<&Port> {
        self.ports.get(index)?.as_ref()
    }

    fn port_mut(&mut self, index: usize) -> Option<&mut Port> {
        self.ports.get_mut(index)?.as_mut()
    }

    fn owner(&self, ip: [u8; 4]) -> Option<usize> {
        self.ports
            .iter()
            .position(|port| port.is_some_and(|port| port.address.ip == ip))
    }

    fn uplink(&self) -> Option<usize> {
        self.ports
            .iter()
            .position(|port| port.is_some_and(|port| port.uplink))
    }

    /// Decides where `frame`, sent by partition `sender`'s port, goes, and
    /// makes it the frame to deliver (its Ethernet header rewritten, or the
    /// ARP answer). Counts it as sent, and as dropped if it is.
    pub fn route(&mut self, sender: usize, frame: &mut Frame) -> Route {
        let Some(port) = self.port(sender).copied() else {
            return Route::Drop(DropReason::NoRoute);
        };
        let parsed = frame.parse();
        let route = match parsed {
            Err(reason) => Route::Drop(reason),
            Ok(parsed) => self.decide(sender, port, parsed),
        };
        match (route, parsed) {
            (Route::Deliver { to, arp: true }, Ok(Parsed::ArpRequest { sender, target })) => {
                frame.arp_reply(port_mac(to), sender, target);
            }
            (Route::Deliver { to, .. }, _) => frame.address_to(port_mac(to)),
            (Route::Drop(_), _) => {}
        }
        let counters = &mut self.port_mut(sender).expect("it has a port").counters;
        counters.sent += 1;
        if let Route::Drop(reason) = route {
            counters.dropped[reason.number()] += 1;
        }
        route
    }

    fn decide(&self, sender: usize, port: Port, parsed: Parsed) -> Route {
        let own = port.address.ip;
        match parsed {
            Parsed::ArpRequest { sender: asker, .. } if asker != own && asker != [0; 4] => {
                Route::Drop(DropReason::Spoofed)
            }
            Parsed::ArpRequest { target, .. } => {
                if target != own && port.address.contains(target) && !self.special(target) {
                    Route::Deliver {
                        to: sender,
                        arp: true,
                    }
                } else {
                    Route::Drop(DropReason::NoRoute)
                }
            }
            Parsed::Ipv4 {
                source,
                destination,
            } => {
                let spoofed = if port.uplink {
                    self.owner(source).is_some()
                } else {
                    source != own
                };
                if spoofed {
                    return Route::Drop(DropReason::Spoofed);
                }
                if self.special(destination) {
                    return Route::Drop(DropReason::NoRoute);
                }
                match (self.owner(destination), self.uplink()) {
                    (Some(to), _) => Route::Deliver { to, arp: false },
                    (None, Some(uplink)) if uplink != sender => Route::Deliver {
                        to: uplink,
                        arp: false,
                    },
                    _ => Route::Drop(DropReason::NoRoute),
                }
            }
        }
    }

    /// Whether `ip` is no single host's: the limited broadcast, a multicast
    /// address, or the subnet's own or broadcast address of any port's subnet.
    fn special(&self, ip: [u8; 4]) -> bool {
        let subnet_wide = |port: &Port| {
            let host = u32::from_be_bytes(ip) & !port.address.mask();
            port.address.contains(ip) && (host == 0 || host == !port.address.mask())
        };
        ip == [255; 4] || ip[0] & 0xf0 == 0xe0 || self.ports.iter().flatten().any(subnet_wide)
    }

    /// A frame partition `sender`'s port sent that is dropped before it is
    /// read (oversize, or too short for its headers): counted as sent and
    /// dropped.
    pub fn drop_unread(&mut self, sender: usize, reason: DropReason) -> Route {
        if let Some(port) = self.port_mut(sender) {
            port.counters.sent += 1;
            port.counters.dropped[reason.number()] += 1;
        }
        Route::Drop(reason)
    }

    /// The frame `route` sent from `sender` was written into the receiver's
    /// queue (`written`), or found no buffer posted there.
    pub fn delivered(&mut self, sender: usize, route: Route, written: bool) {
        let Route::Deliver { to, arp } = route else {
            return;
        };
        if let Some(port) = self.port_mut(sender) {
            let counters = &mut port.counters;
            match (written, arp) {
                (true, true) => counters.arp += 1,
                (true, false) => counters.routed += 1,
                (false, _) => counters.dropped[DropReason::NoBuffer.number()] += 1,
            }
        }
        if let Some(port) = self.port_mut(to) {
            match written {
                true => port.counters.received += 1,
                false => port.counters.missed += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests;
