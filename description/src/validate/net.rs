//! The rules of the network: each partition's port on the kernel's IP router
//! (`net = { address, uplink }`) and the system's `subnets`: `net`,
//! `net-subnet`, `net-duplicate` and `net-uplink` (the table of `super` says
//! what each forbids). Ports are compared by IP address alone, as the router
//! routes by it; the uplink must be the service VM because its driver, which
//! sees every frame leaving the system, is part of the trusted base.
//!
//! A port is a virtio device (`virtio-net`, `Device::Net`) for every other
//! rule: the partition's model lists it among its virtio devices, so it has one
//! vCPU (`vcpus`) and, for Linux, a device-tree node; it is not refused on the
//! service VM, which drives the uplink.
//!
//! A Linux partition with a port learns its address, and the system's gateway,
//! from its command line ([`crate::linux::network_parameters`]): they are
//! appended to its `bootargs` here, before the `linux` rule measures them.

use std::collections::{BTreeMap, BTreeSet};

use septum_core::abi::net::Address;
use septum_core::resources::NetPort;
use toml::Spanned;

use super::Checker;
use crate::board::{Board, NIC};
use crate::format::PartitionEntry;
use crate::limits::MAX_PARTITIONS;
use crate::linux::network_parameters;
use crate::model::{ImageSource, Kind, Partition};

/// `p`'s network port; rule `net` on an address that is not a host address
/// `a.b.c.d/n` of its subnet.
pub(super) fn port(check: &mut Checker<'_>, p: &PartitionEntry) -> Option<NetPort> {
    let entry = p.net.as_ref()?.get_ref();
    let text = entry.address.get_ref();
    match Address::parse(text) {
        Some(address) if address.is_host() => Some(NetPort {
            address,
            uplink: entry.uplink.as_ref().is_some_and(|u| *u.get_ref()),
        }),
        _ => {
            let message = format!(
                "`{}` has network address `{text}`, which is not a host address `a.b.c.d/n` of its subnet (n from {} to {})",
                p.name.get_ref(),
                Address::PREFIX_MIN,
                Address::PREFIX_MAX
            );
            check.fail(entry.address.span(), "net", message);
            None
        }
    }
}

/// A subnet as the router sees it: its network address and prefix.
type Subnet = (u32, u8);

fn subnet_of(address: Address) -> Subnet {
    (address.value() & address.mask(), address.prefix)
}

fn subnet_text((network, prefix): Subnet) -> String {
    Address {
        ip: network.to_be_bytes(),
        prefix,
    }
    .to_string()
}

/// Rules `net-subnet`, `net-duplicate` and `net-uplink` over the system's
/// `subnets` and every partition's port.
pub(super) fn check_net(
    check: &mut Checker<'_>,
    subnets: Option<&Spanned<Vec<Spanned<String>>>>,
    entries: &[Spanned<PartitionEntry>],
    partitions: &[Partition],
    board: &Board,
) {
    let listed = subnets.map(|s| check_subnets(check, s.get_ref()));
    let mut owners: BTreeMap<[u8; 4], &str> = BTreeMap::new();
    let mut uplink: Option<&str> = None;
    for (entry, partition) in entries.iter().zip(partitions) {
        let (Some(net), Some(port)) = (&entry.get_ref().net, partition.net) else {
            continue;
        };
        let net = net.get_ref();
        let name = partition.name.as_str();
        let address = port.address;
        let address_span = net.address.span();
        match &listed {
            None => {
                let message = format!(
                    "`{name}` has a network port, so the system needs `subnets = [\"a.b.c.d/n\", ...]`, its subnets"
                );
                check.fail(address_span.clone(), "net-subnet", message);
            }
            Some(listed) if !listed.contains(&subnet_of(address)) => {
                let message = format!(
                    "`{name}` has network address `{address}`, whose subnet `{}` is not one of `subnets`",
                    subnet_text(subnet_of(address))
                );
                check.fail(address_span.clone(), "net-subnet", message);
            }
            Some(_) => {}
        }
        // Past the partition-count limit, ports are not compared with each
        // other: that keeps the work linear in the size of the file.
        if owners.len() < MAX_PARTITIONS {
            if let Some(first) = owners.get(&address.ip) {
                let message =
                    format!("`{name}` has network address `{address}`, which `{first}` has too");
                check.fail(address_span, "net-duplicate", message);
            } else {
                owners.insert(address.ip, name);
            }
        }
        let Some(uplink_span) = net
            .uplink
            .as_ref()
            .filter(|_| port.uplink)
            .map(Spanned::span)
        else {
            continue;
        };
        if let Some(first) = uplink {
            let message =
                format!("`{name}` is a second uplink (`{first}` is the first); a system has one");
            check.fail(uplink_span.clone(), "net-uplink", message);
        } else {
            uplink = Some(name);
        }
        if partition.kind != Kind::Service {
            let message = format!(
                "the uplink `{name}` is not the service VM: the uplink's driver is part of the trusted base, so only the service VM may be the uplink"
            );
            check.fail(uplink_span.clone(), "net-uplink", message);
        }
        if board.device(NIC).is_none() {
            let message = format!(
                "the uplink `{name}` needs the board's NIC, and board {} has no NIC",
                board.name
            );
            check.fail(uplink_span, "net-uplink", message);
        } else if !partition.devices.iter().any(|d| d == NIC) {
            let message = format!(
                "the uplink `{name}` drives the board's NIC, so it must be granted it: add `{NIC}` to its `devices`"
            );
            check.fail(uplink_span, "net-uplink", message);
        }
    }
}

/// The listed subnets that are network addresses; rule `net-subnet` on those
/// that are not, and on those that overlap an earlier one (found in
/// `O(n log n)`: by network address, each against the widest before it).
fn check_subnets(check: &mut Checker<'_>, subnets: &[Spanned<String>]) -> BTreeSet<Subnet> {
    let mut valid = Vec::new();
    for spanned in subnets {
        let text = spanned.get_ref();
        match Address::parse(text) {
            Some(address)
                if (Address::PREFIX_MIN..=Address::PREFIX_MAX).contains(&address.prefix)
                    && address.value() & !address.mask() == 0 =>
            {
                valid.push((address, spanned));
            }
            _ => {
                let message = format!(
                    "subnet `{text}` is not a network address `a.b.c.d/n` (host bits all zero, n from {} to {})",
                    Address::PREFIX_MIN,
                    Address::PREFIX_MAX
                );
                check.fail(spanned.span(), "net-subnet", message);
            }
        }
    }
    let mut by_start: Vec<(u64, u64, usize)> = valid
        .iter()
        .enumerate()
        .map(|(index, (address, _))| {
            let start = u64::from(address.value());
            (start, start + (1u64 << (32 - address.prefix)), index)
        })
        .collect();
    by_start.sort_by_key(|&(start, end, index)| (start, std::cmp::Reverse(end), index));
    let mut widest: Option<(u64, usize)> = None;
    let mut overlapping = Vec::new();
    for &(start, end, index) in &by_start {
        match widest {
            Some((widest_end, other)) if start < widest_end => overlapping.push((index, other)),
            _ => {}
        }
        if widest.is_none_or(|(widest_end, _)| end > widest_end) {
            widest = Some((end, index));
        }
    }
    // In file order, each named against one subnet it overlaps.
    overlapping.sort_by_key(|&(index, other)| (index.max(other), index.min(other)));
    for (index, other) in overlapping {
        let (later, earlier) = (index.max(other), index.min(other));
        let message = format!(
            "subnet `{}` overlaps subnet `{}`",
            valid[later].0, valid[earlier].0
        );
        check.fail(valid[later].1.span(), "net-subnet", message);
    }
    valid
        .into_iter()
        .map(|(address, _)| subnet_of(address))
        .collect()
}

/// Appends the network parameters to the command line of each Linux
/// partition with a port: its address, and the gateway when the system has an
/// uplink.
pub(super) fn add_parameters(partitions: &mut [Partition]) {
    let uplink = partitions
        .iter()
        .filter_map(|p| p.net)
        .find(|port| port.uplink)
        .map(|port| port.address);
    for partition in partitions {
        if let (ImageSource::Linux(boot), Some(port)) = (&mut partition.image, partition.net) {
            boot.bootargs
                .push_str(&network_parameters(port.address, uplink));
        }
    }
}
