//! A host on the far side of the uplink's NIC, for tests: QEMU hands every
//! frame the NIC sends to a UDP socket of this tool (`-netdev dgram`), and
//! frames this tool sends there come in through the NIC. The host has one IPv4
//! address; it answers ARP requests for it, ICMP echo requests to it and UDP
//! datagrams to its echo port ([`ECHO_PORT`]), and logs one line for every
//! frame it gets, so a scenario can check what left the system and that the
//! answer went back in. Its log is the harness's own record: nothing a
//! partition prints can add to it.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use septum_core::abi::net::checksum;

/// The UDP port the host echoes datagrams on.
pub const ECHO_PORT: u16 = 7;
/// The host's MAC address (locally administered).
const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
const ETHERNET: usize = septum_core::abi::net::ETHERNET_HEADER;

/// The running host.
pub struct OutsideHost {
    qemu_port: u16,
    host_port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<String>>,
}

impl OutsideHost {
    /// Starts a host at `address`, listening on a loopback port of its own.
    pub fn start(address: Ipv4Addr) -> Result<OutsideHost> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot bind the outside host's socket")?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let host_port = socket.local_addr()?.port();
        // A free port for QEMU's end (released here, taken by QEMU at once).
        let qemu_port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::clone(&stop);
        let qemu = SocketAddr::from((Ipv4Addr::LOCALHOST, qemu_port));
        let thread = std::thread::spawn(move || serve(&socket, qemu, address, &running));
        Ok(OutsideHost {
            qemu_port,
            host_port,
            stop,
            thread,
        })
    }

    /// QEMU's options for the NIC: a `virtio-net-device` (virtio-mmio version
    /// 2) on `virt`'s highest transport, its frames carried to this host.
    pub fn qemu_options(&self) -> Vec<String> {
        vec![
            "-global".into(),
            "virtio-mmio.force-legacy=false".into(),
            "-netdev".into(),
            format!(
                "dgram,id=uplink,local.type=inet,local.host=127.0.0.1,local.port={},\
                 remote.type=inet,remote.host=127.0.0.1,remote.port={}",
                self.qemu_port, self.host_port
            ),
            "-device".into(),
            "virtio-net-device,netdev=uplink,bus=virtio-mmio-bus.31".into(),
        ]
    }

    /// Stops the host; its log, one line per frame.
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn serve(
    socket: &UdpSocket,
    qemu: SocketAddr,
    address: Ipv4Addr,
    stop: &AtomicBool,
) -> Vec<String> {
    let mut log = Vec::new();
    let mut frame = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok(len) = socket.recv(&mut frame) else {
            continue;
        };
        let (line, reply) = answer(&frame[..len], address);
        log.push(line);
        if let Some(reply) = reply {
            let _ = socket.send_to(&reply, qemu);
        }
    }
    log
}

fn ip(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

/// The log line for `frame`, and the host's reply if it answers.
fn answer(frame: &[u8], address: Ipv4Addr) -> (String, Option<Vec<u8>>) {
    if frame.len() < ETHERNET {
        return (format!("runt frame of {} bytes", frame.len()), None);
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0806 if frame.len() >= ETHERNET + 28 => arp(frame, address),
        0x0800 if frame.len() >= ETHERNET + 20 => ipv4(frame, address),
        ethertype => (format!("frame of ethertype {ethertype:#06x}"), None),
    }
}

fn arp(frame: &[u8], address: Ipv4Addr) -> (String, Option<Vec<u8>>) {
    let arp = &frame[ETHERNET..ETHERNET + 28];
    let (sender, target) = (ip(&arp[14..18]), ip(&arp[24..28]));
    let line = format!("arp who-has {target} tell {sender}");
    if arp[6..8] != [0, 1] || target != address {
        return (line, None);
    }
    let mut reply = frame[..ETHERNET + 28].to_vec();
    reply[..6].copy_from_slice(&frame[6..12]);
    reply[6..12].copy_from_slice(&MAC);
    let body = &mut reply[ETHERNET..];
    body[7] = 2;
    body[8..14].copy_from_slice(&MAC);
    body[14..18].copy_from_slice(&address.octets());
    body[18..24].copy_from_slice(&frame[6..12]);
    body[24..28].copy_from_slice(&arp[14..18]);
    (line, Some(reply))
}

fn ipv4(frame: &[u8], address: Ipv4Addr) -> (String, Option<Vec<u8>>) {
    let packet = &frame[ETHERNET..];
    let header = usize::from(packet[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let (source, destination) = (ip(&packet[12..16]), ip(&packet[16..20]));
    if header < 20 || total < header || total > packet.len() {
        return (format!("malformed ipv4 {source} -> {destination}"), None);
    }
    let payload = &packet[header..total];
    let (line, answer) = match packet[9] {
        1 if payload.len() >= 8 && payload[0] == 8 => {
            let sequence = u16::from_be_bytes([payload[6], payload[7]]);
            let line = format!("icmp echo-request {source} -> {destination} seq={sequence}");
            let mut reply = payload.to_vec();
            reply[0] = 0;
            reply[2..4].fill(0);
            let sum = checksum(&reply);
            reply[2..4].copy_from_slice(&sum.to_be_bytes());
            (line, Some(reply))
        }
        17 if payload.len() >= 8 => {
            let from = u16::from_be_bytes([payload[0], payload[1]]);
            let to = u16::from_be_bytes([payload[2], payload[3]]);
            let data = &payload[8..];
            let mut line = format!(
                "udp {source}:{from} -> {destination}:{to} bytes={}",
                data.len()
            );
            // Short text is shown; other payloads only by their length.
            if data.len() <= 32 && data.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                line.push_str(&format!(" {:?}", String::from_utf8_lossy(data)));
            }
            let mut reply = payload.to_vec();
            reply[..2].copy_from_slice(&to.to_be_bytes());
            reply[2..4].copy_from_slice(&from.to_be_bytes());
            reply[6..8].fill(0); // no UDP checksum
            (line, (to == ECHO_PORT).then_some(reply))
        }
        protocol => (
            format!("ipv4 protocol {protocol} {source} -> {destination}"),
            None,
        ),
    };
    let reply = answer.filter(|_| destination == address).map(|payload| {
        let mut reply = Vec::with_capacity(ETHERNET + header + payload.len());
        reply.extend_from_slice(&frame[6..12]);
        reply.extend_from_slice(&MAC);
        reply.extend_from_slice(&frame[12..14]);
        let mut ip_header = packet[..header].to_vec();
        let total = (header + payload.len()) as u16;
        ip_header[2..4].copy_from_slice(&total.to_be_bytes());
        ip_header[8] = 64;
        ip_header[10..12].fill(0);
        ip_header[12..16].copy_from_slice(&destination.octets());
        ip_header[16..20].copy_from_slice(&source.octets());
        let sum = checksum(&ip_header);
        ip_header[10..12].copy_from_slice(&sum.to_be_bytes());
        reply.extend_from_slice(&ip_header);
        reply.extend_from_slice(&payload);
        reply
    });
    (line, reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_request(to: Ipv4Addr) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2];
        ip.extend_from_slice(&to.octets());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 5];
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&icmp);
        frame
    }

    /// The service VM drives the NIC where the board file grants it, which is
    /// where QEMU puts the device this host's options attach.
    /// Verifies: SK-IFC-006
    #[test]
    fn the_nic_is_where_the_board_grants_it() {
        let board = crate::boards::load("qemu-virt").unwrap();
        let nic = board.device("nic").expect("qemu-virt has a NIC");
        assert_eq!(nic.mmio[0].base, septum_core::abi::net::QEMU_VIRT_NIC);
        assert_eq!(
            nic.mmio[0].size,
            septum_core::abi::net::QEMU_VIRT_NIC_SIZE as u64
        );
        // Transport 31 of 32, each 0x200 bytes from 0x0a00_0000.
        assert_eq!(
            0x0a00_0000 + 31 * 0x200,
            septum_core::abi::net::QEMU_VIRT_NIC
        );
    }

    /// The harness's outside host answers only for its own address, with
    /// checksums right, so a scenario's echo proves the path both ways.
    /// Verifies: SK-IFC-006
    #[test]
    fn the_host_answers_echo_requests_to_its_address_only() {
        let me = Ipv4Addr::new(192, 0, 2, 1);
        let (line, reply) = answer(&echo_request(me), me);
        assert_eq!(line, "icmp echo-request 10.0.0.2 -> 192.0.2.1 seq=5");
        let reply = reply.expect("an answer");
        let ip = &reply[ETHERNET..];
        assert_eq!(&ip[12..16], &me.octets());
        assert_eq!(&ip[16..20], &[10, 0, 0, 2]);
        assert_eq!(checksum(&ip[..20]), 0);
        assert_eq!((ip[20], checksum(&ip[20..])), (0, 0), "an echo reply");
        let other = Ipv4Addr::new(192, 0, 2, 99);
        assert!(answer(&echo_request(other), me).1.is_none());
    }
}
