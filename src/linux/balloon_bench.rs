//! The virtio-balloon benchmark of a Linux partition, measured inside the guest
//! so that a run under Septum and one on bare QEMU (with QEMU's own
//! virtio-balloon device on the same slot) are measured the same way.
//!
//! With [`PARAMETER`]`=<kB>` on its command line, the busybox initramfs'
//! `/init` runs [`SCRIPT`] once it is up: it turns on Linux's function tracer
//! for two functions of the `virtio_balloon` driver, `virtballoon_changed`
//! (the device's configuration-change interrupt: the target moved) and
//! `balloon_ack` (the device's used-buffer interrupt: it took a page list),
//! and then, for each of `inflate` and `deflate`:
//!
//! 1. clears the trace and prints [`READY`]` <step> <kB> kB`: the harness then
//!    moves the target (Septum's service VM console, or QEMU's monitor);
//! 2. waits until `MemTotal` is its goal (`<kB>` less than at the start, then
//!    back where it started), reading `/proc/meminfo` every 100 ms: at 0.7 ms a
//!    read that takes under 1 % of the CPU from the driver's work;
//! 3. prints `septum-linux: balloon <step> <kB> kB in <µs> us (MemTotal <from>
//!    -> <to> kB)`: the time, by the tracer's clock, from the
//!    configuration-change interrupt to the used-buffer interrupt of the last
//!    page list.
//!
//! Both ends of the interval are interrupts the device raises, so the interval
//! is what it took the guest and the device together to move the memory;
//! polling only finds out that it is over. Then `/init` powers the guest off.
//! The figures are the guest's own measurement, read by the host tool: nothing
//! the kernel decides is read from them.

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::Parts;

/// The kernel command-line parameter that selects the benchmark, with the
/// amount to inflate and then deflate, in kB (Linux ignores it: it names no
/// module it has; `/init` reads it from `/proc/cmdline`).
pub const PARAMETER: &str = "septum.balloon-bench";

/// What `/init` prints before each step, followed by `<step> <kB> kB`.
pub const READY: &str = "septum-linux: balloon bench ready to";

/// The start of the line `/init` prints after each step.
const RESULT: &str = "septum-linux: balloon ";

/// The part of `/init` that runs the benchmark (see the module's
/// documentation); nothing without [`PARAMETER`] on the command line.
pub const SCRIPT: &str = r#"balloon_bench() {
    tracing=/sys/kernel/tracing
    mount -t tracefs tracefs $tracing
    echo 'virtballoon_changed balloon_ack' > $tracing/set_ftrace_filter
    echo function > $tracing/current_tracer
    mkfifo /tmp/balloon-tick
    read -r _ full _ < /proc/meminfo
    kb=$full
    for step in inflate deflate; do
        from=$kb
        goal=$full
        [ $step = inflate ] && goal=$((full - $1))
        echo > $tracing/trace
        echo "septum-linux: balloon bench ready to $step $1 kB"
        while read -r _ kb _ < /proc/meminfo; [ "$kb" != "$goal" ]; do
            read -t 0.1 _ <> /tmp/balloon-tick
        done
        us=$(awk '!/^#/ {
            for (i = 1; i < NF && $i !~ /^[0-9]+\.[0-9]+:$/; i++) {}
            split($i, t, /[.:]/)
            now = t[1] * 1000000 + t[2]
            if ($(i + 1) == "virtballoon_changed") changed = now
            else if ($(i + 1) == "balloon_ack") { if (start == "") start = changed; end = now }
        }
        END { if (start == "") print "?"; else printf "%d\n", end - start }' $tracing/trace)
        echo "septum-linux: balloon $step $1 kB in $us us (MemTotal $from -> $kb kB)"
    done
    echo nop > $tracing/current_tracer
    poweroff -f
}
for word in $(cat /proc/cmdline); do
    case $word in septum.balloon-bench=*) balloon_bench ${word#*=} ;; esac
done
"#;

/// Inflating or deflating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The target went down: the guest gave memory back.
    Inflate,
    /// The target went back up: the guest took it again.
    Deflate,
}

/// One step as the guest measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    /// Which step.
    pub step: Step,
    /// How much moved (kB).
    pub kib: u64,
    /// How long it took (µs of the guest's clock).
    pub us: u64,
}

impl Figure {
    /// The figure of a result line of `/init` (with or without a partition's
    /// tag), if `line` is one.
    pub fn parse(line: &str) -> Option<Figure> {
        let (_, rest) = line.split_once(RESULT)?;
        let mut words = rest.split_whitespace();
        let step = match words.next()? {
            "inflate" => Step::Inflate,
            "deflate" => Step::Deflate,
            _ => return None,
        };
        let kib = words.next()?.parse().ok()?;
        let ["kB", "in"] = [words.next()?, words.next()?] else {
            return None;
        };
        let us = words.next()?.parse().ok()?;
        (words.next()? == "us").then_some(Figure { step, kib, us })
    }

    /// Seconds it took.
    pub fn seconds(&self) -> f64 {
        self.us as f64 / 1e6
    }

    /// MiB a second.
    pub fn mib_per_s(&self) -> f64 {
        self.kib as f64 / 1024.0 / self.seconds()
    }
}

/// The inflate and the deflate figure in `console`, in that order.
pub fn figures(console: &str) -> Result<[Figure; 2]> {
    let found: Vec<Figure> = console.lines().filter_map(Figure::parse).collect();
    match found.as_slice() {
        [inflate, deflate] if inflate.step == Step::Inflate && deflate.step == Step::Deflate => {
            Ok([*inflate, *deflate])
        }
        _ => bail!("the guest printed {found:?}, not an inflate and a deflate figure"),
    }
}

/// Runs the benchmark on bare QEMU `virt`: `parts` (whose command line selects
/// it) on one core under `-icount shift=0`, with QEMU's own virtio-balloon on
/// its device's slot. When the guest is ready to inflate `<kB>`, QEMU's monitor
/// sets the target to its RAM less that; when it is ready to deflate, back to
/// its RAM. Returns the guest's console once QEMU has ended (the guest powers
/// off); fails if it has not within `timeout`.
///
/// The transport is the modern one, as Septum's, and takes a queue
/// notification in the vCPU's own thread (no `ioeventfd`): with one, QEMU's
/// main loop took the page lists on its own schedule, the guest idled waiting
/// for some and `-icount` moved its clock over the wait by host timing (one
/// deflate measured 163 ms, others 198 to 217). Without it, three runs agreed
/// within 0.8 ms.
pub fn bare(parts: &Parts, timeout: Duration) -> Result<String> {
    let folder = parts
        .device_tree
        .parent()
        .context("the parts are in a folder")?;
    let monitor = folder.join("monitor.sock");
    let _ = std::fs::remove_file(&monitor);
    let mut child = super::bare_qemu(parts)
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", monitor.display()))
        .args(["-global", "virtio-mmio.force-legacy=false"])
        .args(["-global", "virtio-mmio.ioeventfd=false"])
        .args(parts.qemu_virtio_options())
        .spawn()
        .context("cannot start qemu-system-aarch64 (run scripts/setup.sh)")?;
    // Lines come through a channel, so that a guest that goes quiet cannot
    // hold the run past its timeout.
    let output = child.stdout.take().expect("piped");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut console = String::new();
    let mut result = Ok(());
    while result.is_ok() {
        let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                result = Err(anyhow!(
                    "bare QEMU: the guest did not finish within {timeout:?}"
                ));
                break;
            }
        };
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                result = Err(anyhow!(error).context("reading bare QEMU's console"));
                break;
            }
        };
        console.push_str(&line);
        console.push('\n');
        if let Some((_, step)) = line.split_once(READY) {
            result = target_mib(step, parts.ram).and_then(|mib| set_target(&monitor, mib));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    result.with_context(|| format!("bare QEMU's console:\n{console}"))?;
    Ok(console)
}

/// The target in MiB for the step a ready line names (what follows
/// [`READY`]: `inflate <kB> kB` or `deflate <kB> kB`) in a guest of `ram`
/// bytes.
fn target_mib(step: &str, ram: u64) -> Result<u64> {
    let mut words = step.split_whitespace();
    let (what, kib) = (
        words.next(),
        words.next().and_then(|k| k.parse::<u64>().ok()),
    );
    match (what, kib) {
        (Some("deflate"), _) => Ok(ram >> 20),
        (Some("inflate"), Some(kib)) if kib % 1024 == 0 && kib << 10 < ram => {
            Ok((ram >> 20) - kib / 1024)
        }
        _ => bail!(
            "cannot set a balloon target for `{}` in {} MiB",
            step.trim(),
            ram >> 20
        ),
    }
}

/// Says `balloon <mib>` to QEMU's monitor at `socket`.
fn set_target(socket: &Path, mib: u64) -> Result<()> {
    let mut monitor = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach QEMU's monitor at {}", socket.display()))?;
    writeln!(monitor, "balloon {mib}")?;
    // QEMU reads the command before the connection closes.
    monitor.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    let _ = BufReader::new(monitor).read_line(&mut answer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Figure, READY, RESULT, SCRIPT, Step, figures, target_mib};

    /// The script prints the lines the host tool reads.
    ///
    /// Verifies: SK-BAL-007
    #[test]
    fn the_script_prints_what_the_tool_reads() {
        assert!(SCRIPT.contains(&format!("echo \"{READY} $step $1 kB\"")));
        assert!(SCRIPT.contains(&format!("echo \"{RESULT}$step $1 kB in $us us (MemTotal")));
    }

    /// The figures are read from the guest's lines, tagged or bare, and a
    /// console without both steps has none.
    ///
    /// Verifies: SK-BAL-007
    #[test]
    fn figures_are_read_from_tagged_and_bare_lines() {
        let inflate =
            "[linux] septum-linux: balloon inflate 786432 kB in 512345 us (MemTotal 1 -> 2 kB)";
        let deflate = "septum-linux: balloon deflate 786432 kB in 7 us (MemTotal 2 -> 1 kB)";
        let console = format!(
            "[linux] septum-linux: balloon bench ready to inflate 786432 kB\n{inflate}\n{deflate}\n"
        );
        let [i, d] = figures(&console).expect("two figures");
        assert_eq!(
            i,
            Figure {
                step: Step::Inflate,
                kib: 786_432,
                us: 512_345
            }
        );
        assert_eq!((d.step, d.us), (Step::Deflate, 7));
        assert!((i.mib_per_s() - 768.0 / 0.512_345).abs() < 1e-9);
        assert_eq!(
            Figure::parse("[linux] septum-linux: balloon inflate 1 kB in ? us"),
            None
        );
        assert!(figures(inflate).is_err());
    }

    /// Bare QEMU's targets come from what the guest is ready for: its RAM less
    /// what it is to inflate, then its RAM again.
    ///
    /// Verifies: SK-BAL-007
    #[test]
    fn bare_targets_follow_the_ready_lines() {
        let gib = 1 << 30;
        assert_eq!(target_mib(" inflate 786432 kB", gib).ok(), Some(256));
        assert_eq!(target_mib(" deflate 786432 kB", gib).ok(), Some(1024));
        assert!(target_mib(" inflate 786433 kB", gib).is_err());
        assert!(target_mib(" inflate 1048576 kB", gib).is_err());
        assert!(target_mib(" sideways", gib).is_err());
    }
}
