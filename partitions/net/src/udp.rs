//! The roles that speak UDP through the SDK's stack ([`septum_sdk::net`]):
//! the echo server and its client, and the throughput benchmark's sender and
//! sink. Every wait gives up the partition's turn, so that the peer (and the
//! kernel's router, which works in the sender's turns) can run.

use partition_bench::report;
use septum_sdk::net::smoltcp::iface::SocketHandle;
use septum_sdk::net::smoltcp::wire::{IpEndpoint, Ipv4Address};
use septum_sdk::net::{Stack, UDP_PAYLOAD_MAX};
use septum_sdk::{arch, println};

use crate::idle;

/// The echo server's port.
const ECHO_PORT: u16 = 7;
/// The benchmark sink's port.
const SINK_PORT: u16 = 9;
/// The clients' own port.
const CLIENT_PORT: u16 = 4000;
/// What ends a conversation.
const BYE: &[u8] = b"bye";
/// Datagrams the client sends.
const COUNT: usize = 16;
/// Turns a client waits for an answer before it sends again.
const PATIENCE: u32 = 2_000;
/// Times a client sends a datagram before it gives up.
const TRIES: u32 = 3;
/// Datagrams the benchmark sends, in windows of [`WINDOW`], each answered.
const BENCH_DATAGRAMS: u64 = 1_024;
/// Datagrams in flight before the benchmark waits for the sink's answer
/// (within the sink's posted receive buffers).
const WINDOW: usize = 8;

/// Echoes every datagram on port 7 to its sender; ends after echoing `bye`.
pub fn echo(stack: &mut Stack) -> Result<(), &'static str> {
    let socket = stack
        .udp(ECHO_PORT, 4)
        .map_err(|_| "cannot bind the echo port")?;
    println!("echo: listening on port {ECHO_PORT}");
    let mut buffer = [0u8; UDP_PAYLOAD_MAX];
    let mut echoed = 0u64;
    loop {
        stack.poll();
        let udp = stack.socket(socket);
        let mut bye = false;
        while let Ok((len, meta)) = udp.recv_slice(&mut buffer) {
            udp.send_slice(&buffer[..len], meta.endpoint)
                .map_err(|_| "echo queue full")?;
            bye |= &buffer[..len] == BYE;
            echoed += u64::from(&buffer[..len] != BYE);
        }
        if bye {
            flush(stack, socket);
            println!("echo: echoed {echoed} datagrams, then bye");
            return Ok(());
        }
        idle();
    }
}

/// Polls until every datagram of `socket` has left.
fn flush(stack: &mut Stack, socket: SocketHandle) {
    while stack.socket(socket).send_queue() > 0 {
        stack.poll();
        idle();
    }
}

/// Datagram `index`'s payload: its length (1 to the largest) and bytes known
/// to both ends.
fn payload(index: usize, out: &mut [u8; UDP_PAYLOAD_MAX]) -> usize {
    let len = if index + 1 == COUNT {
        UDP_PAYLOAD_MAX
    } else {
        1 + index * 97 % UDP_PAYLOAD_MAX
    };
    for (at, byte) in out[..len].iter_mut().enumerate() {
        *byte = (index * 31 + at * 7) as u8;
    }
    len
}

/// Sends [`COUNT`] datagrams to the echo server at `peer` one at a time,
/// checks each echo, and ends the conversation with `bye`.
pub fn client(stack: &mut Stack, peer: [u8; 4]) -> Result<(), &'static str> {
    let socket = stack.udp(CLIENT_PORT, 4).map_err(|_| "cannot bind")?;
    let server = IpEndpoint::new(Ipv4Address::from(peer).into(), ECHO_PORT);
    let [a, b, c, d] = peer;
    println!("client: {COUNT} datagrams to {a}.{b}.{c}.{d}:{ECHO_PORT}");
    let (mut intact, mut resent) = (0, 0);
    let mut sent = [0u8; UDP_PAYLOAD_MAX];
    let mut back = [0u8; UDP_PAYLOAD_MAX];
    for index in 0..=COUNT {
        let len = match index {
            COUNT => {
                sent[..BYE.len()].copy_from_slice(BYE);
                BYE.len()
            }
            _ => payload(index, &mut sent),
        };
        let mut tries = 0;
        let echoed = loop {
            if tries == TRIES {
                return Err("no echo");
            }
            tries += 1;
            stack
                .socket(socket)
                .send_slice(&sent[..len], server)
                .map_err(|_| "send queue full")?;
            match answer(stack, socket, &mut back) {
                Some(echoed) => break echoed,
                None => resent += 1,
            }
        };
        intact += usize::from(index < COUNT && back[..echoed] == sent[..len]);
    }
    println!(
        "client: {intact} of {COUNT} datagrams echoed intact, {resent} sent again, bye answered"
    );
    match intact {
        COUNT => Ok(()),
        _ => Err("echoes differ"),
    }
}

/// Waits up to [`PATIENCE`] turns for a datagram on `socket`; its length.
fn answer(stack: &mut Stack, socket: SocketHandle, into: &mut [u8]) -> Option<usize> {
    for _ in 0..PATIENCE {
        stack.poll();
        if let Ok((len, _)) = stack.socket(socket).recv_slice(into) {
            return Some(len);
        }
        idle();
    }
    None
}

/// The benchmark's sender: [`BENCH_DATAGRAMS`] datagrams of the largest
/// payload to the sink at `peer`, [`WINDOW`] at a time, each window answered
/// with the sink's count; prints the time it all took (`bench udp-1472`).
pub fn bench(stack: &mut Stack, peer: [u8; 4]) -> Result<(), &'static str> {
    let socket = stack.udp(CLIENT_PORT, WINDOW).map_err(|_| "cannot bind")?;
    let sink = IpEndpoint::new(Ipv4Address::from(peer).into(), SINK_PORT);
    let mut datagram = [0u8; UDP_PAYLOAD_MAX];
    let mut count = [0u8; 8];
    // One window first, untimed: the ARP exchange and the sink's start.
    let mut sent = 0u64;
    let mut start = 0;
    while sent < BENCH_DATAGRAMS + WINDOW as u64 {
        if sent == WINDOW as u64 {
            start = arch::counter();
        }
        for _ in 0..WINDOW {
            datagram[..8].copy_from_slice(&sent.to_le_bytes());
            stack
                .socket(socket)
                .send_slice(&datagram, sink)
                .map_err(|_| "send queue full")?;
            sent += 1;
        }
        let got = answer(stack, socket, &mut count).ok_or("the sink did not answer")?;
        if got != 8 || u64::from_le_bytes(count) != sent {
            return Err("the sink lost datagrams");
        }
    }
    let ticks = arch::counter() - start;
    report(
        format_args!("udp-{UDP_PAYLOAD_MAX}"),
        "datagrams",
        BENCH_DATAGRAMS,
        ticks,
        "datagram",
    );
    stack
        .socket(socket)
        .send_slice(BYE, sink)
        .map_err(|_| "send queue full")?;
    flush(stack, socket);
    Ok(())
}

/// The benchmark's sink: counts the datagrams on port 9, answers each
/// [`WINDOW`] with the count so far, and ends at `bye`.
pub fn sink(stack: &mut Stack) -> Result<(), &'static str> {
    let socket = stack.udp(SINK_PORT, WINDOW).map_err(|_| "cannot bind")?;
    let mut buffer = [0u8; UDP_PAYLOAD_MAX];
    let (mut count, mut in_order) = (0u64, 0u64);
    loop {
        stack.poll();
        let udp = stack.socket(socket);
        while let Ok((len, meta)) = udp.recv_slice(&mut buffer) {
            if &buffer[..len] == BYE {
                println!("sink: {count} datagrams, {in_order} in order, then bye");
                return Ok(());
            }
            in_order += u64::from(buffer[..8] == count.to_le_bytes());
            count += 1;
            if count.is_multiple_of(WINDOW as u64) {
                udp.send_slice(&count.to_le_bytes(), meta.endpoint)
                    .map_err(|_| "answer queue full")?;
            }
        }
        stack.poll();
        idle();
    }
}
