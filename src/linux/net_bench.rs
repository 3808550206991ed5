//! The network benchmark of Linux partitions: what the guests of
//! `bench-linux-net-aarch64` measured, read back from its console.
//!
//! Two Linux guests, each alone on its core under `-icount`, have ports on one
//! subnet. The scenario types the measuring commands into guest `a`, which
//! prints one [`PREFIX`] line a figure, all by its own clock (guest-virtual
//! time): busybox `ping`'s least and average round trips, 20 pings 50 ms
//! apart, over its loopback interface and to `b` through the kernel's router
//! (`ping-loopback`, `ping-router`: `round-trip min/avg/max = <ms>/<ms>/<ms>
//! ms`), and the time to receive 8 MiB over TCP with busybox `nc`, from a
//! server on its own loopback and from one on `b` (`tcp-loopback`,
//! `tcp-router`: `<bytes> bytes in <ns> ns`, from before `nc` connects to its
//! end, when the server has closed the connection after the last byte). The
//! figures are the guest's own measurement: nothing the kernel decides is read
//! from them.

use anyhow::{Context, Result, bail};

use crate::console_lines::{Source, split};

/// The start of every figure's text on `a`'s lines.
pub const PREFIX: &str = "net-bench ";

/// The scenario that runs the benchmark.
pub const SCENARIO: &str = "bench-linux-net-aarch64";

/// Bytes each TCP transfer moves (128 blocks of 64 KiB).
const TRANSFER_BYTES: u64 = 8 << 20;

/// One path's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Path {
    /// Shortest ping round trip, in µs.
    pub ping_min_us: f64,
    /// Average ping round trip, in µs.
    pub ping_us: f64,
    /// Time to receive [`TRANSFER_BYTES`], in ns.
    pub transfer_ns: u64,
}

impl Path {
    /// The TCP throughput, in MiB a second.
    pub fn mib_per_s(&self) -> f64 {
        TRANSFER_BYTES as f64 / (1 << 20) as f64 / (self.transfer_ns as f64 / 1e9)
    }
}

/// The guest that measures.
const MEASURING: &str = "a";

/// The text after `net-bench <name> ` on the first line of the measuring
/// guest that starts with it (the shell's echo of a typed command does not).
fn figure<'a>(console: &'a str, name: &str) -> Result<&'a str> {
    let wanted = format!("{PREFIX}{name} ");
    console
        .lines()
        .find_map(|line| match split(line) {
            Some((Source::Partition(MEASURING), text)) => text.strip_prefix(&wanted),
            _ => None,
        })
        .with_context(|| format!("no `[{MEASURING}] {wanted}` figure on the console"))
}

/// The least and the average of `round-trip min/avg/max = <min>/<avg>/<max>
/// ms`, in µs.
fn ping_us(text: &str) -> Result<(f64, f64)> {
    let times: Vec<&str> = text
        .strip_prefix("round-trip min/avg/max = ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .map(|times| times.split('/').collect())
        .unwrap_or_default();
    let [min, average, _] = times.as_slice() else {
        bail!("not a ping summary: `{text}`");
    };
    Ok((min.parse::<f64>()? * 1e3, average.parse::<f64>()? * 1e3))
}

/// The ns of `<bytes> bytes in <ns> ns`, if `<bytes>` is the whole transfer.
fn transfer_ns(text: &str) -> Result<u64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [bytes, "bytes", "in", ns, "ns"] = words.as_slice() else {
        bail!("not a transfer figure: `{text}`");
    };
    if bytes.parse::<u64>()? != TRANSFER_BYTES {
        bail!("the transfer moved {bytes} bytes, not {TRANSFER_BYTES}: `{text}`");
    }
    Ok(ns.parse()?)
}

/// The loopback's and the router's figures on the benchmark's console.
pub fn figures(console: &str) -> Result<[Path; 2]> {
    let path = |name: &str| -> Result<Path> {
        let (ping_min_us, ping_us) = ping_us(figure(console, &format!("ping-{name}"))?)?;
        Ok(Path {
            ping_min_us,
            ping_us,
            transfer_ns: transfer_ns(figure(console, &format!("tcp-{name}"))?)?,
        })
    };
    Ok([path("loopback")?, path("router")?])
}

/// The figures as a table, under a line saying what they are.
pub fn report(console: &str, clock: &str) -> Result<String> {
    let [loopback, router] = figures(console)?;
    let rows = [
        (
            "ping round trip, least of 20 (µs)",
            format!("{:.0}", loopback.ping_min_us),
            format!("{:.0}", router.ping_min_us),
            router.ping_min_us / loopback.ping_min_us,
        ),
        (
            "ping round trip, average of 20 (µs)",
            format!("{:.0}", loopback.ping_us),
            format!("{:.0}", router.ping_us),
            router.ping_us / loopback.ping_us,
        ),
        (
            "TCP, 8 MiB received with nc (MiB/s)",
            format!(
                "{:.1} ({:.1} ms)",
                loopback.mib_per_s(),
                loopback.transfer_ns as f64 / 1e6
            ),
            format!(
                "{:.1} ({:.1} ms)",
                router.mib_per_s(),
                router.transfer_ns as f64 / 1e6
            ),
            router.mib_per_s() / loopback.mib_per_s(),
        ),
    ];
    let mut out = format!(
        "Linux networking, two guests each alone on its core, guest-virtual time by the guest's clock (aarch64, {clock}):\n\
         | figure | loopback inside one guest | between two guests through Septum's router | router / loopback |\n\
         |---|---|---|---|\n"
    );
    for (what, loopback, router, ratio) in rows {
        out.push_str(&format!(
            "| {what} | {loopback} | {router} | {ratio:.3} |\n"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures are read from `a`'s tagged lines; a transfer that moved
    /// another number of bytes, or a missing figure, is an error.
    ///
    /// Verifies: SK-LNX-011
    #[test]
    fn the_figures_are_read_from_the_guests_lines() {
        let console = "[a] net-bench ping-loopback round-trip min/avg/max = 0.101/0.150/0.300 ms\n\
                       [a] net-bench ping-router round-trip min/avg/max = 0.400/0.600/1.000 ms\n\
                       [a] net-bench tcp-loopback 8388608 bytes in 100000000 ns\n\
                       [a] net-bench tcp-router 8388608 bytes in 400000000 ns\n";
        let [loopback, router] = figures(console).expect("figures");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(loopback.ping_us, 150.0) && close(router.ping_us, 600.0));
        assert!(close(loopback.ping_min_us, 101.0) && close(router.ping_min_us, 400.0));
        assert_eq!(
            (loopback.transfer_ns, router.transfer_ns),
            (100_000_000, 400_000_000)
        );
        assert!(close(loopback.mib_per_s(), 80.0));
        let table = report(console, "icount").expect("a table");
        assert!(table.contains("| ping round trip, least of 20 (µs) | 101 | 400 | 3.960 |"));
        assert!(table.contains("| ping round trip, average of 20 (µs) | 150 | 600 | 4.000 |"));
        assert!(table.contains("| 80.0 (100.0 ms) | 20.0 (400.0 ms) | 0.250 |"));
        let short = console.replace("8388608 bytes in 4", "8388000 bytes in 4");
        assert!(figures(&short).is_err());
        assert!(figures(&console.replace("tcp-router", "tcp-elsewhere")).is_err());
        let echoed = console.replace(
            "[a] net-bench ping-loopback",
            "[a] / # net-bench ping-loopback",
        );
        assert!(
            figures(&echoed).is_err(),
            "only lines that start with the figure"
        );
        assert!(
            figures(&console.replace("[a] ", "[b] ")).is_err(),
            "only a's lines"
        );
    }
}
