//! What the kernel did, in time: the trace rings the kernel sent at the end
//! ([`crate::kernel_log`]) made into a [`Timeline`] of runs (a vCPU on a core from
//! the record of its coming on to that of its leaving) and marks (traps, calls,
//! queue and balloon work, supervision events), written as a trace the Perfetto
//! UI opens ([`Timeline::perfetto_json`]) and drawn as a picture
//! ([`Timeline::svg`]).
//!
//! The trace file is in the Chrome trace-event JSON format, which
//! `ui.perfetto.dev` opens as it is: one process `cores` with a track per core,
//! one process `partitions` with a track per partition. (No well-kept Rust
//! crate writes Perfetto's protobuf format; this one needs only `serde_json`.)
//!
//! Invariants [`Timeline::build`] checks, and fails on: on each core, every
//! vCPU that comes on leaves before another comes on, and every leaving vCPU
//! is the one that came on (except a first leave whose coming on the ring
//! overwrote); a vCPU still on a core at the end runs until the trace ends.

use crate::escape_markup;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fmt::Write as _;

use crate::kernel_log::CoreTrace;
use septum_core::abi::{Call, Reason};
use septum_core::trace::{Kind, NONE, Record, Supervision, TrapCode};

/// A vCPU's time on a core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The core.
    pub cpu: usize,
    /// Its partition's index.
    pub partition: usize,
    /// The vCPU's index in the system's vCPU table.
    pub vcpu: usize,
    /// When it came on, in µs on the kernel's clock.
    pub start_us: u64,
    /// When it left (or the trace ended).
    pub end_us: u64,
}

/// A moment worth showing: a trap, a call, queue or balloon work, a
/// supervision event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The core that recorded it.
    pub cpu: usize,
    /// The partition it is about, if any.
    pub partition: Option<usize>,
    /// When, in µs.
    pub time_us: u64,
    /// What it is.
    pub kind: Kind,
    /// Its name, such as `call send status=0` or `restart gen=2`.
    pub name: String,
}

/// The runs and marks of a trace.
#[derive(Debug)]
pub struct Timeline {
    /// Partition names, by index.
    pub partitions: Vec<String>,
    /// Records each core's ring overwrote.
    pub overwritten: Vec<u64>,
    /// The runs, by core and then in time order.
    pub runs: Vec<Run>,
    /// The marks, by core and then in time order.
    pub marks: Vec<Mark>,
    /// The first record's time.
    pub start_us: u64,
    /// The last record's time.
    pub end_us: u64,
}

impl Timeline {
    /// The timeline of `cores`, whose partitions are named `partitions` (in
    /// package order). Fails if a core's switches do not match (see the module
    /// documentation).
    pub fn build(cores: &[CoreTrace], partitions: Vec<String>) -> Result<Timeline> {
        let times = cores
            .iter()
            .flat_map(|core| &core.records)
            .map(|r| r.time_us);
        let start_us = times.clone().min().unwrap_or(0);
        let end_us = times.max().unwrap_or(0);
        let mut timeline = Timeline {
            partitions,
            overwritten: cores.iter().map(|core| core.overwritten).collect(),
            runs: Vec::new(),
            marks: Vec::new(),
            start_us,
            end_us,
        };
        for (cpu, core) in cores.iter().enumerate() {
            timeline.add_core(cpu, core)?;
        }
        Ok(timeline)
    }

    fn add_core(&mut self, cpu: usize, core: &CoreTrace) -> Result<()> {
        let mut live: Option<(Record, u64)> = None;
        let mut switched = false;
        let first_us = core.records.first().map_or(0, |r| r.time_us);
        for record in &core.records {
            match record.kind {
                Kind::Enter => {
                    if let Some((on, _)) = live {
                        bail!(
                            "core {cpu}: vCPU {} came on at {} µs while vCPU {} was on",
                            record.vcpu,
                            record.time_us,
                            on.vcpu
                        );
                    }
                    live = Some((*record, record.time_us));
                }
                Kind::Leave => {
                    let start_us = match live.take() {
                        Some((on, since)) if on.vcpu == record.vcpu => since,
                        None if !switched && core.overwritten > 0 => first_us,
                        _ => bail!(
                            "core {cpu}: vCPU {} left at {} µs without coming on",
                            record.vcpu,
                            record.time_us
                        ),
                    };
                    self.runs.push(Run {
                        cpu,
                        partition: usize::from(record.partition),
                        vcpu: usize::from(record.vcpu),
                        start_us,
                        end_us: record.time_us,
                    });
                }
                _ => self.marks.push(Mark {
                    cpu,
                    partition: (record.partition != NONE).then_some(usize::from(record.partition)),
                    time_us: record.time_us,
                    kind: record.kind,
                    name: mark_name(record),
                }),
            }
            switched |= matches!(record.kind, Kind::Enter | Kind::Leave);
        }
        if let Some((on, since)) = live {
            self.runs.push(Run {
                cpu,
                partition: usize::from(on.partition),
                vcpu: usize::from(on.vcpu),
                start_us: since,
                end_us: self.end_us,
            });
        }
        Ok(())
    }

    /// A partition's name, or `partition <n>` for an index the names lack.
    pub fn partition_name(&self, partition: usize) -> String {
        self.partitions
            .get(partition)
            .cloned()
            .unwrap_or_else(|| format!("partition {partition}"))
    }

    /// The supervision marks of partition `name`, in time order, as
    /// `(time_us, name)`.
    pub fn supervision_of(&self, name: &str) -> Vec<(u64, String)> {
        let mut marks: Vec<(u64, String)> = self
            .marks
            .iter()
            .filter(|mark| mark.kind == Kind::Supervision)
            .filter(|mark| mark.partition.map(|p| self.partition_name(p)).as_deref() == Some(name))
            .map(|mark| (mark.time_us, mark.name.clone()))
            .collect();
        marks.sort();
        marks
    }

    /// The trace in the Chrome trace-event JSON format (see the module
    /// documentation); times relative to the first record.
    pub fn perfetto_json(&self) -> Value {
        const CORES: u32 = 1;
        const PARTITIONS: u32 = 2;
        let at = |time_us: u64| time_us - self.start_us;
        let mut events = vec![
            json!({"ph": "M", "name": "process_name", "pid": CORES, "args": {"name": "cores"}}),
            json!({"ph": "M", "name": "process_name", "pid": PARTITIONS, "args": {"name": "partitions"}}),
        ];
        for (cpu, overwritten) in self.overwritten.iter().enumerate() {
            events.push(
                json!({"ph": "M", "name": "thread_name", "pid": CORES, "tid": cpu,
                "args": {"name": format!("core {cpu}"), "overwritten": overwritten}}),
            );
        }
        for (index, name) in self.partitions.iter().enumerate() {
            events.push(
                json!({"ph": "M", "name": "thread_name", "pid": PARTITIONS, "tid": index,
                "args": {"name": name}}),
            );
        }
        for run in &self.runs {
            let name = self.partition_name(run.partition);
            let duration = run.end_us - run.start_us;
            events.push(json!({"ph": "X", "cat": "run", "name": name, "pid": CORES,
                "tid": run.cpu, "ts": at(run.start_us), "dur": duration,
                "args": {"vcpu": run.vcpu}}));
            events.push(
                json!({"ph": "X", "cat": "run", "name": format!("core {}", run.cpu),
                "pid": PARTITIONS, "tid": run.partition, "ts": at(run.start_us), "dur": duration,
                "args": {"vcpu": run.vcpu}}),
            );
        }
        for mark in &self.marks {
            let (pid, tid) = match mark.partition {
                Some(partition) => (PARTITIONS, partition),
                None => (CORES, mark.cpu),
            };
            events.push(
                json!({"ph": "i", "s": "t", "cat": mark.kind.name(), "name": mark.name,
                "pid": pid, "tid": tid, "ts": at(mark.time_us), "args": {"cpu": mark.cpu}}),
            );
        }
        json!({"traceEvents": events, "displayTimeUnit": "ms"})
    }

    /// A picture of the timeline: a row per core, then a row per partition,
    /// with the runs coloured by partition and the supervision events marked.
    pub fn svg(&self, title: &str) -> String {
        const WIDTH: f64 = 960.0;
        const LEFT: f64 = 110.0;
        const ROW: f64 = 26.0;
        const TOP: f64 = 50.0;
        let span = (self.end_us - self.start_us).max(1) as f64;
        let x =
            |time_us: u64| LEFT + (time_us - self.start_us) as f64 / span * (WIDTH - LEFT - 20.0);
        let cores = self.overwritten.len();
        let rows = cores + self.partitions.len();
        let height = TOP + rows as f64 * ROW + 70.0;
        let mut body = String::new();
        let _ = writeln!(
            body,
            "<text x=\"20\" y=\"28\" class=\"t\">{}</text>",
            escape_markup(title)
        );
        let row_y = |row: usize| TOP + row as f64 * ROW;
        let labels = (0..cores)
            .map(|cpu| format!("core {cpu}"))
            .chain(self.partitions.iter().cloned());
        for (row, label) in labels.enumerate() {
            let y = row_y(row);
            let _ = writeln!(
                body,
                "<rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f4f4f4\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" class=\"e\">{}</text>",
                WIDTH - LEFT - 20.0,
                ROW - 6.0,
                LEFT - 8.0,
                y + ROW / 2.0 + 1.0,
                escape_markup(&label)
            );
        }
        for run in &self.runs {
            let colour = PALETTE[run.partition % PALETTE.len()];
            let (x0, x1) = (x(run.start_us), x(run.end_us));
            let width = (x1 - x0).max(0.5);
            let tip = format!(
                "{} on core {}: {}..{} µs",
                self.partition_name(run.partition),
                run.cpu,
                run.start_us - self.start_us,
                run.end_us - self.start_us
            );
            for row in [run.cpu, cores + run.partition] {
                let _ = writeln!(
                    body,
                    "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" \
                     fill=\"{colour}\"><title>{}</title></rect>",
                    row_y(row),
                    ROW - 6.0,
                    escape_markup(&tip)
                );
            }
        }
        let supervision = self.marks.iter().filter(|m| m.kind == Kind::Supervision);
        for mark in supervision {
            let Some(partition) = mark.partition else {
                continue;
            };
            let colour = if mark.name.starts_with("fault") {
                "#c00"
            } else if mark.name.starts_with("restart") {
                "#080"
            } else {
                "#333"
            };
            let (mx, y) = (x(mark.time_us), row_y(cores + partition));
            let _ = writeln!(
                body,
                "<path d=\"M{:.1} {:.1}h8l-4 7z\" fill=\"{colour}\"><title>{} {}: {} µs</title></path>",
                mx - 4.0,
                y - 4.0,
                escape_markup(&self.partition_name(partition)),
                escape_markup(&mark.name),
                mark.time_us - self.start_us
            );
        }
        let axis_y = row_y(rows) + 14.0;
        let span_ms = span / 1000.0;
        let step_ms = [
            1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
        ]
        .into_iter()
        .find(|step| span_ms / step <= 10.0)
        .unwrap_or(10_000.0);
        let mut tick = 0.0;
        while tick <= span_ms {
            let tx = LEFT + tick / span_ms * (WIDTH - LEFT - 20.0);
            let _ = writeln!(
                body,
                "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>\
                 <text x=\"{tx:.1}\" y=\"{:.1}\" class=\"m a\">{tick} ms</text>",
                axis_y - 6.0,
                axis_y,
                axis_y + 14.0
            );
            tick += step_ms;
        }
        let _ = writeln!(
            body,
            "<text x=\"{LEFT}\" y=\"{:.1}\" class=\"a\">runs coloured by partition; \
             \u{25bc} supervision events (red: fault, green: restart)</text>",
            axis_y + 36.0
        );
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {WIDTH} {height:.0}\">\n{STYLE}\
             <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n{body}</svg>\n"
        )
    }
}

/// The first line of a records file ([`write_records`]).
const RECORDS_HEADER: &str = "septum trace records 1";

/// The trace's rings as text, to keep beside a picture drawn from them: a
/// header line, `partitions <names>`, then per core `core <n> overwritten=<k>`
/// followed by its records, one per line in their wire form as hex.
pub fn write_records(cores: &[CoreTrace], partitions: &[String]) -> String {
    let mut text = format!("{RECORDS_HEADER}\npartitions {}\n", partitions.join(" "));
    for (cpu, core) in cores.iter().enumerate() {
        let _ = writeln!(text, "core {cpu} overwritten={}", core.overwritten);
        for record in &core.records {
            let hex: String = record.encode().iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(text, "{hex}");
        }
    }
    text
}

/// The rings and partition names of a records file ([`write_records`]).
pub fn parse_records(text: &str) -> Result<(Vec<CoreTrace>, Vec<String>)> {
    let mut lines = text.lines();
    if lines.next() != Some(RECORDS_HEADER) {
        bail!("not a trace records file (no `{RECORDS_HEADER}` line)");
    }
    let partitions = lines
        .next()
        .and_then(|line| line.strip_prefix("partitions "))
        .context("no `partitions` line")?
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut cores: Vec<CoreTrace> = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("core ") {
            let overwritten = rest
                .split_once(" overwritten=")
                .and_then(|(_, n)| n.parse().ok())
                .with_context(|| format!("bad core line `{line}`"))?;
            cores.push(CoreTrace {
                overwritten,
                ..CoreTrace::default()
            });
            continue;
        }
        let core = cores
            .last_mut()
            .context("a record before any `core` line")?;
        let bytes = (0..line.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(line.get(at..at + 2).unwrap_or("?"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .with_context(|| format!("bad record line `{line}`"))?;
        let record = Record::decode(&bytes)
            .map_err(|e| anyhow::anyhow!("bad record line `{line}`: {e:?}"))?;
        core.records.push(record);
        core.held += 1;
    }
    Ok((cores, partitions))
}

/// Run colours, by partition index.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
/// Text classes: `e`nd and `m`iddle anchors, `a`xis grey, `t`itle.
const STYLE: &str = "<style>text{font-family:monospace;font-size:12px;fill:#222}\
.e{text-anchor:end}.m{text-anchor:middle}.a{fill:#666}.t{font-size:17px;font-weight:bold}</style>\n";

/// How a mark's record reads.
fn mark_name(record: &Record) -> String {
    let (code, value) = (record.code, record.value);
    match record.kind {
        Kind::Trap => match TrapCode::from_u8(code) {
            Some(TrapCode::Fault) => {
                let reason = Reason::from_number(u64::from(value)).map_or("unknown", Reason::name);
                format!("trap fault {reason}")
            }
            Some(trap) => format!("trap {}", trap.name()),
            None => format!("trap {code}"),
        },
        Kind::Call => {
            let name = Call::from_number(u64::from(code)).map_or("unknown", Call::name);
            if value == septum_core::trace::NO_REPLY {
                format!("call {name} (no reply yet)")
            } else {
                format!("call {name} status={}", value as i32)
            }
        }
        Kind::QueueSend => format!("queue-send slot={code} waiting={value}"),
        Kind::QueueReceive => format!("queue-receive slot={code} length={value}"),
        Kind::Inflate | Kind::Deflate => format!("{} {value} pages", record.kind.name()),
        Kind::Supervision => match Supervision::from_u8(code) {
            Some(Supervision::Exit) => format!("exit code={value}"),
            Some(event) => format!("{} gen={value}", event.name()),
            None => format!("supervision {code}"),
        },
        Kind::Enter | Kind::Leave => record.kind.name().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time_us: u64, kind: Kind, vcpu: u8) -> Record {
        Record {
            time_us,
            kind,
            partition: vcpu,
            vcpu,
            code: 0,
            value: 0,
        }
    }

    fn core(records: Vec<Record>, overwritten: u64) -> CoreTrace {
        CoreTrace {
            held: records.len(),
            overwritten,
            records,
        }
    }

    /// Verifies: SK-AUD-011
    #[test]
    fn matched_switches_make_runs_and_unmatched_ones_are_refused() {
        let names = || vec!["service".to_owned(), "hello".to_owned()];
        let good = core(
            vec![
                record(10, Kind::Enter, 0),
                record(20, Kind::Leave, 0),
                record(20, Kind::Enter, 1),
                record(30, Kind::Leave, 1),
                record(35, Kind::Enter, 0),
            ],
            0,
        );
        let timeline = Timeline::build(&[good], names()).expect("matched switches");
        let spans: Vec<(usize, u64, u64)> = timeline
            .runs
            .iter()
            .map(|run| (run.partition, run.start_us, run.end_us))
            .collect();
        assert_eq!(spans, vec![(0, 10, 20), (1, 20, 30), (0, 35, 35)]);
        let json = timeline.perfetto_json().to_string();
        assert!(json.contains("\"name\":\"hello\""));
        assert!(timeline.svg("t").starts_with("<svg"));
        let twice = core(
            vec![record(1, Kind::Enter, 0), record(2, Kind::Enter, 1)],
            0,
        );
        assert!(Timeline::build(&[twice], names()).is_err());
        let stranger = core(
            vec![record(1, Kind::Enter, 0), record(2, Kind::Leave, 1)],
            0,
        );
        assert!(Timeline::build(&[stranger], names()).is_err());
        let lost_start = || vec![record(5, Kind::Leave, 1), record(6, Kind::Enter, 0)];
        assert!(Timeline::build(&[core(lost_start(), 0)], names()).is_err());
        assert!(Timeline::build(&[core(lost_start(), 3)], names()).is_ok());
    }

    /// Verifies: SK-AUD-011
    #[test]
    fn records_survive_their_text_form_and_bad_text_is_refused() {
        let cores = vec![
            core(vec![record(10, Kind::Enter, 0)], 2),
            core(Vec::new(), 0),
        ];
        let names = vec!["service".to_owned(), "hello".to_owned()];
        let text = write_records(&cores, &names);
        let (parsed, parsed_names) = parse_records(&text).expect("its own text");
        assert_eq!(parsed_names, names);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].records, cores[0].records);
        assert_eq!((parsed[0].held, parsed[0].overwritten), (1, 2));
        assert!(parse_records("partitions a\n").is_err());
        assert!(parse_records(&text.replace("core 0 overwritten=2\n", "")).is_err());
        assert!(parse_records(&format!("{text}zz\n")).is_err());
    }
}
