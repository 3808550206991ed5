use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;
use septum_abi::net::{
    ARP_SIZE, Address, DropReason, ETHERNET_HEADER, ETHERTYPE_ARP, ETHERTYPE_IPV4, FRAME_MAX,
    ROUTER_MAC, checksum, port_mac,
};

use super::*;

const A: [u8; 4] = [10, 0, 0, 2];
const B: [u8; 4] = [10, 0, 0, 3];
const C: [u8; 4] = [10, 0, 0, 4];
const UPLINK: [u8; 4] = [10, 0, 0, 1];
const OUTSIDE: [u8; 4] = [192, 168, 1, 9];

fn port(ip: [u8; 4], uplink: bool) -> Option<NetPort> {
    Some(NetPort {
        address: Address { ip, prefix: 24 },
        uplink,
    })
}

/// Partition 0 the uplink, 1 to 3 ports A to C, 4 no port.
fn router() -> Router {
    Router::new([
        port(UPLINK, true),
        port(A, false),
        port(B, false),
        port(C, false),
        None,
    ])
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&ROUTER_MAC);
    frame.extend_from_slice(&port_mac(9));
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 datagram from `source` to `destination` with `payload` bytes of UDP-ish data.
fn ipv4(source: [u8; 4], destination: [u8; 4], payload: usize) -> Vec<u8> {
    let total = 20 + payload;
    let mut ip = vec![0u8; total];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&source);
    ip[16..20].copy_from_slice(&destination);
    let sum = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    for (i, byte) in ip[20..].iter_mut().enumerate() {
        *byte = i as u8;
    }
    ethernet(ETHERTYPE_IPV4, &ip)
}

fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut arp = vec![0u8; ARP_SIZE];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes());
    arp[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes());
    arp[8..14].copy_from_slice(&port_mac(1));
    arp[14..18].copy_from_slice(&sender);
    arp[24..28].copy_from_slice(&target);
    ethernet(ETHERTYPE_ARP, &arp)
}

fn route(router: &mut Router, sender: usize, bytes: &[u8]) -> (Route, Frame) {
    let mut frame = Frame::from_bytes(bytes);
    let route = router.route(sender, &mut frame);
    (route, frame)
}

/// Verifies: SK-IFC-002
#[test]
fn datagrams_go_to_the_owner_of_their_destination_with_the_kernels_header() {
    let mut router = router();
    let sent = ipv4(A, B, 100);
    let (r, frame) = route(&mut router, 1, &sent);
    assert_eq!(r, Route::Deliver { to: 2, arp: false });
    assert_eq!(&frame.bytes()[..6], &port_mac(2));
    assert_eq!(&frame.bytes()[6..12], &ROUTER_MAC);
    assert_eq!(&frame.bytes()[12..], &sent[12..], "the payload as sent");
    router.delivered(1, r, true);
    assert_eq!(router.counters(1).routed, 1);
    assert_eq!(router.counters(2).received, 1);
    // Outside addresses go to the uplink, and from it to their owner.
    assert_eq!(
        route(&mut router, 1, &ipv4(A, OUTSIDE, 8)).0,
        Route::Deliver { to: 0, arp: false }
    );
    assert_eq!(
        route(&mut router, 0, &ipv4(OUTSIDE, C, 8)).0,
        Route::Deliver { to: 3, arp: false }
    );
    // Not back out: the uplink has no route to outside addresses.
    assert_eq!(
        route(&mut router, 0, &ipv4(OUTSIDE, OUTSIDE, 8)).0,
        Route::Drop(DropReason::NoRoute)
    );
}

/// Verifies: SK-IFC-002
#[test]
fn padding_is_trimmed_to_the_datagram() {
    let mut router = router();
    let mut sent = ipv4(A, B, 4);
    sent.extend_from_slice(&[0xee; 20]);
    let (_, frame) = route(&mut router, 1, &sent);
    assert_eq!(frame.bytes().len(), ETHERNET_HEADER + 24);
}

/// Verifies: SK-IFC-003
#[test]
fn spoofed_sources_are_dropped_and_counted() {
    let mut router = router();
    for (sender, frame) in [
        (1, ipv4(B, C, 8)),
        (1, ipv4(OUTSIDE, C, 8)),
        (0, ipv4(A, C, 8)), // the uplink may not speak for a partition
        (1, arp_request(B, C)),
    ] {
        assert_eq!(
            route(&mut router, sender, &frame).0,
            Route::Drop(DropReason::Spoofed)
        );
    }
    assert_eq!(router.counters(1).dropped[DropReason::Spoofed.number()], 3);
    assert_eq!(router.counters(0).dropped[DropReason::Spoofed.number()], 1);
}

/// Verifies: SK-IFC-004, SK-IFC-007
#[test]
fn bad_frames_are_dropped_by_reason() {
    let mut router = router();
    let good = ipv4(A, B, 40);
    let mut bad_checksum = good.clone();
    bad_checksum[ETHERNET_HEADER + 10] ^= 1;
    let mut long_length = good.clone();
    long_length[ETHERNET_HEADER + 3] += 1;
    let mut version_6 = good.clone();
    version_6[ETHERNET_HEADER] = 0x65;
    let mut short_header = good.clone();
    short_header[ETHERNET_HEADER] = 0x44;
    let mut arp_reply = arp_request(A, B);
    arp_reply[ETHERNET_HEADER + 7] = 2;
    let mut arp_not_ethernet = arp_request(A, B);
    arp_not_ethernet[ETHERNET_HEADER + 1] = 6;
    let cases = [
        (&good[..10], DropReason::Malformed),
        (&good[..ETHERNET_HEADER + 19], DropReason::Malformed),
        (&good[..good.len() - 1], DropReason::Malformed),
        (&bad_checksum, DropReason::Malformed),
        (&long_length, DropReason::Malformed),
        (&version_6, DropReason::Malformed),
        (&short_header, DropReason::Malformed),
        (&arp_not_ethernet, DropReason::Malformed),
        (&arp_reply, DropReason::NotIpv4),
        (&ethernet(0x86dd, &[0; 40]), DropReason::NotIpv4),
        (&ipv4(A, [255; 4], 8), DropReason::NoRoute),
        (&ipv4(A, [10, 0, 0, 255], 8), DropReason::NoRoute),
        (&ipv4(A, [224, 0, 0, 1], 8), DropReason::NoRoute),
    ];
    for (bytes, reason) in cases {
        assert_eq!(route(&mut router, 1, bytes).0, Route::Drop(reason));
    }
    let counters = router.counters(1);
    assert_eq!(counters.sent, cases.len() as u64);
    assert_eq!(counters.dropped_total(), cases.len() as u64);
    // A partition without a port, or a port with no uplink for outside
    // addresses, routes nothing.
    assert_eq!(
        route(&mut router, 4, &ipv4(A, B, 8)).0,
        Route::Drop(DropReason::NoRoute)
    );
    // Another port's subnet-wide addresses are no host's either.
    let mut two_subnets = Router::new([
        port(UPLINK, true),
        port(A, false),
        Some(NetPort {
            address: Address {
                ip: [10, 0, 1, 2],
                prefix: 24,
            },
            uplink: false,
        }),
    ]);
    for destination in [[10, 0, 1, 255], [10, 0, 1, 0]] {
        assert_eq!(
            route(&mut two_subnets, 1, &ipv4(A, destination, 8)).0,
            Route::Drop(DropReason::NoRoute)
        );
    }
    let mut alone = Router::new([None, port(A, false), port(B, false)]);
    assert_eq!(
        route(&mut alone, 1, &ipv4(A, OUTSIDE, 8)).0,
        Route::Drop(DropReason::NoRoute)
    );
}

/// Verifies: SK-IFC-002
#[test]
fn arp_for_the_subnet_is_answered_by_the_router() {
    let mut router = router();
    let (r, frame) = route(&mut router, 1, &arp_request(A, B));
    assert_eq!(r, Route::Deliver { to: 1, arp: true });
    let bytes = frame.bytes();
    assert_eq!(bytes.len(), ETHERNET_HEADER + ARP_SIZE);
    assert_eq!(&bytes[..6], &port_mac(1));
    let arp = &bytes[ETHERNET_HEADER..];
    assert_eq!(&arp[6..8], &2u16.to_be_bytes(), "a reply");
    assert_eq!(&arp[8..14], &ROUTER_MAC);
    assert_eq!(&arp[14..18], &B);
    assert_eq!(&arp[24..28], &A);
    router.delivered(1, r, true);
    assert_eq!(router.counters(1).arp, 1);
    assert_eq!(router.counters(1).received, 1);
    // Its own address, and addresses outside the subnet, are not answered.
    for request in [arp_request(A, A), arp_request(A, OUTSIDE)] {
        assert_eq!(
            route(&mut router, 1, &request).0,
            Route::Drop(DropReason::NoRoute)
        );
    }
    // A probe (from 0.0.0.0) for a taken address is answered.
    assert_eq!(
        route(&mut router, 1, &arp_request([0; 4], C)).0,
        Route::Deliver { to: 1, arp: true }
    );
}

/// Verifies: SK-IFC-004, SK-IFC-008
#[test]
fn no_buffer_is_a_drop_on_the_sender_and_a_miss_on_the_receiver() {
    let mut router = router();
    let (r, _) = route(&mut router, 1, &ipv4(A, B, 8));
    router.delivered(1, r, false);
    assert_eq!(router.counters(1).dropped[DropReason::NoBuffer.number()], 1);
    assert_eq!(router.counters(1).routed, 0);
    assert_eq!(router.counters(2).missed, 1);
    assert_eq!(router.counters(2).received, 0);
    router.drop_unread(3, DropReason::Oversize);
    assert_eq!(router.counters(3).sent, 1);
    assert_eq!(router.counters(3).dropped[DropReason::Oversize.number()], 1);
}

/// The owner of `ip` in [`router`]'s table.
fn owner(ip: [u8; 4]) -> Option<usize> {
    [UPLINK, A, B, C].iter().position(|&owned| owned == ip)
}

fn any_ip() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![
        Just(A),
        Just(B),
        Just(C),
        Just(UPLINK),
        Just(OUTSIDE),
        Just([10, 0, 0, 255]),
        Just([255; 4]),
        any::<[u8; 4]>(),
    ]
}

/// A frame: a datagram, an ARP request, or random bytes, possibly corrupted.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let datagram = (any_ip(), any_ip(), 0usize..200).prop_map(|(s, d, n)| ipv4(s, d, n));
    let arp = (any_ip(), any_ip()).prop_map(|(s, t)| arp_request(s, t));
    let random = proptest::collection::vec(any::<u8>(), 0..FRAME_MAX);
    let base = prop_oneof![3 => datagram, 1 => arp, 1 => random];
    (base, proptest::option::of((any::<usize>(), any::<u8>()))).prop_map(|(mut frame, flip)| {
        if let Some((at, value)) = flip
            && !frame.is_empty()
        {
            let at = at % frame.len();
            frame[at] = value;
        }
        frame
    })
}

proptest! {
    /// Any sequence of frames from any ports, with receivers that have a
    /// buffer or not: each frame reaches at most one port, only the owner of
    /// its destination (or the uplink for an address nobody owns, or its
    /// sender for an ARP answer), with the source it was sent with; and the
    /// counters add up, per port and over all ports.
    /// Verifies: SK-IFC-001, SK-IFC-002, SK-IFC-003, SK-IFC-004
    #[test]
    fn frames_reach_at_most_their_owner_and_the_counters_add_up(
        frames in proptest::collection::vec((0usize..5, any_frame(), any::<bool>()), 1..60)
    ) {
        let mut router = router();
        for (sender, bytes, has_buffer) in frames {
            let mut frame = Frame::from_bytes(&bytes);
            let route = router.route(sender, &mut frame);
            if let Route::Deliver { to, arp } = route {
                let out = frame.bytes();
                prop_assert_eq!(&out[..6], &port_mac(to));
                prop_assert_eq!(&out[6..12], &ROUTER_MAC);
                if arp {
                    prop_assert_eq!(to, sender);
                } else {
                    let ip = &out[ETHERNET_HEADER..];
                    let source: [u8; 4] = ip[12..16].try_into().unwrap();
                    let destination: [u8; 4] = ip[16..20].try_into().unwrap();
                    prop_assert_eq!(ip, &bytes[ETHERNET_HEADER..out.len()]);
                    match owner(source) {
                        Some(from) => prop_assert_eq!(from, sender),
                        None => prop_assert_eq!(sender, 0, "only the uplink speaks for outside"),
                    }
                    prop_assert_eq!(Some(to), owner(destination).or(Some(0)));
                    prop_assert!(sender != 0 || owner(destination).is_some());
                }
            }
            router.delivered(sender, route, has_buffer);
        }
        let all: Vec<_> = (0..5).map(|index| router.counters(index)).collect();
        for counters in &all {
            prop_assert_eq!(
                counters.sent,
                counters.routed + counters.arp + counters.dropped_total()
            );
        }
        let sum = |f: fn(&septum_abi::net::Counters) -> u64| all.iter().map(f).sum::<u64>();
        prop_assert_eq!(sum(|c| c.received), sum(|c| c.routed) + sum(|c| c.arp));
        prop_assert_eq!(
            sum(|c| c.missed),
            sum(|c| c.dropped[DropReason::NoBuffer.number()])
        );
        prop_assert_eq!(all[4], septum_abi::net::Counters::default());
    }
}
