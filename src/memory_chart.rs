//! Memory over time: the memory scheduler's per-round report lines from the service
//! VM's console, as [`Sample`]s, a CSV file of them, and a chart (SVG) of each
//! partition's actual and target memory against guest time.
//!
//! The service VM prints one line per guest per scheduler round; with the prefix
//! the kernel puts on partition output it reads
//!
//! ```text
//! [service] mem t=1234ms alpha target=8192K actual=8100K min=4096K max=32768K used=2048K
//! ```
//!
//! [`parse_console`] takes those lines and skips everything else; [`write_csv`] and
//! [`read_csv`] store samples as `time_ms,partition,target_kib,actual_kib,min_kib,max_kib,used_kib`;
//! [`plot`] draws them.

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// The prefix of a memory report line: the service VM's console prefix and `mem`.
const LINE_PREFIX: &str = "[service] mem ";

/// The header line of the CSV format.
pub const CSV_HEADER: &str = "time_ms,partition,target_kib,actual_kib,min_kib,max_kib,used_kib";

/// The series colours, one per partition in turn (the Tableau 10 palette, which
/// stays readable on white; plotters' `Palette99` has a pale yellow third).
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The number of fields in a CSV record.
const CSV_FIELDS: usize = 7;

/// One guest's memory at one scheduler round, as the service VM reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Guest time since boot, in milliseconds.
    pub time_ms: u64,
    /// The guest partition's name.
    pub partition: String,
    /// The memory the scheduler wants the guest to hold, in KiB.
    pub target_kib: u64,
    /// The memory the guest holds, in KiB.
    pub actual_kib: u64,
    /// The guest's minimum from its description, in KiB.
    pub min_kib: u64,
    /// The guest's maximum from its description, in KiB.
    pub max_kib: u64,
    /// The memory the guest reports in use, in KiB.
    pub used_kib: u64,
}

/// Whether `name` is a partition name as the report lines spell it: one or more of
/// `a-z`, `0-9`, `_` and `-`.
fn is_partition_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Parses a decimal number of ASCII digits only (no sign, no spaces).
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The number in `field` between `prefix` and `suffix`, such as `8192` in
/// `target=8192K`.
fn number_field(field: &str, prefix: &str, suffix: &str) -> Option<u64> {
    parse_digits(field.strip_prefix(prefix)?.strip_suffix(suffix)?)
}

/// The sample on one console line, if it is a memory report line.
fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim_start_matches('\r').trim_end();
    let fields: Vec<&str> = line.strip_prefix(LINE_PREFIX)?.split(' ').collect();
    let [time, partition, target, actual, min, max, used] = fields[..] else {
        return None;
    };
    if !is_partition_name(partition) {
        return None;
    }
    Some(Sample {
        time_ms: number_field(time, "t=", "ms")?,
        partition: partition.to_owned(),
        target_kib: number_field(target, "target=", "K")?,
        actual_kib: number_field(actual, "actual=", "K")?,
        min_kib: number_field(min, "min=", "K")?,
        max_kib: number_field(max, "max=", "K")?,
        used_kib: number_field(used, "used=", "K")?,
    })
}

/// The memory samples on a console, in console order. Lines that are not memory
/// report lines of exactly the documented form (other partitions' output, kernel
/// lines, malformed reports) are skipped; a leading `\r` and trailing whitespace
/// are tolerated.
pub fn parse_console(console: &str) -> Vec<Sample> {
    console.lines().filter_map(parse_line).collect()
}

/// Writes `samples` to `path` as CSV (header [`CSV_HEADER`], one record per sample),
/// creating the parent directories.
pub fn write_csv(samples: &[Sample], path: &Path) -> Result<()> {
    let mut text = String::with_capacity(CSV_HEADER.len() + 1 + samples.len() * 48);
    text.push_str(CSV_HEADER);
    text.push('\n');
    for s in samples {
        if !is_partition_name(&s.partition) {
            bail!(
                "cannot write {}: partition name {:?} is not [a-z0-9_-]+",
                path.display(),
                s.partition
            );
        }
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "{},{},{},{},{},{},{}",
            s.time_ms, s.partition, s.target_kib, s.actual_kib, s.min_kib, s.max_kib, s.used_kib
        );
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Reads samples from a CSV file that [`write_csv`] wrote. Refuses a file whose
/// header is not [`CSV_HEADER`], or with a record that has the wrong number of
/// fields, a non-numeric number or a bad partition name; the error names the file
/// and the line.
pub fn read_csv(path: &Path) -> Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text
        .lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    match lines.next() {
        Some(CSV_HEADER) => {}
        Some(other) => bail!(
            "{}:1: the header is {other:?}, expected {CSV_HEADER:?}",
            path.display()
        ),
        None => bail!(
            "{}:1: empty file, expected the header {CSV_HEADER:?}",
            path.display()
        ),
    }
    let mut samples = Vec::new();
    for (index, line) in lines.enumerate() {
        let number = index + 2;
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != CSV_FIELDS {
            bail!(
                "{}:{number}: {} fields, expected {CSV_FIELDS}: {line:?}",
                path.display(),
                fields.len()
            );
        }
        let column = |i: usize| -> Result<u64> {
            let name = CSV_HEADER.split(',').nth(i).unwrap_or("field");
            parse_digits(fields[i]).with_context(|| {
                format!(
                    "{}:{number}: {name} is {:?}, not a number",
                    path.display(),
                    fields[i]
                )
            })
        };
        if !is_partition_name(fields[1]) {
            bail!(
                "{}:{number}: partition is {:?}, not [a-z0-9_-]+",
                path.display(),
                fields[1]
            );
        }
        samples.push(Sample {
            time_ms: column(0)?,
            partition: fields[1].to_owned(),
            target_kib: column(2)?,
            actual_kib: column(3)?,
            min_kib: column(4)?,
            max_kib: column(5)?,
            used_kib: column(6)?,
        });
    }
    Ok(samples)
}

/// KiB as MiB, for the chart's y axis.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Draws `samples` as an SVG chart at `out` (whose extension must be `.svg`):
/// guest time in ms across, MiB up; for each partition its actual memory as a
/// solid line and its target as a dashed line of the same colour, with a legend
/// naming "`<name>` actual" and "`<name>` target". Creates the parent directories.
/// Refuses an empty sample list.
pub fn plot(samples: &[Sample], title: &str, out: &Path) -> Result<()> {
    let is_svg = out
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if !is_svg {
        bail!(
            "cannot write {}: charts are written as SVG only (give a .svg file)",
            out.display()
        );
    }
    if samples.is_empty() {
        bail!(
            "no memory samples in the data for {}: nothing to plot",
            out.display()
        );
    }
    // Partitions in order of first appearance, so colours follow the console.
    let mut partitions: Vec<&str> = Vec::new();
    for s in samples {
        if !partitions.contains(&s.partition.as_str()) {
            partitions.push(&s.partition);
        }
    }
    let first = samples.iter().map(|s| s.time_ms).min().unwrap_or(0);
    let last = samples.iter().map(|s| s.time_ms).max().unwrap_or(0);
    let last = last.max(first + 1);
    let top = samples
        .iter()
        .map(|s| mib(s.actual_kib.max(s.target_kib)))
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };

    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let root = SVGBackend::new(out, (1024, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(first..last, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("guest time (ms)")
            .y_desc("memory (MiB)")
            .draw()?;
        for (index, name) in partitions.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let own = || samples.iter().filter(|s| s.partition == *name);
            let actual_style = colour.stroke_width(2);
            chart
                .draw_series(LineSeries::new(
                    own().map(|s| (s.time_ms, mib(s.actual_kib))),
                    actual_style,
                ))?
                .label(format!("{name} actual"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], actual_style));
            let target_style = colour.stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(
                    own().map(|s| (s.time_ms, mib(s.target_kib))),
                    6,
                    4,
                    target_style,
                ))?
                .label(format!("{name} target"))
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (7, 0)], target_style)
                        + PathElement::new(vec![(13, 0), (20, 0)], target_style)
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("drawing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A unique path under the system's temporary folder.
    fn temp_path(name: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!(
            "septum-memory-chart-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn sample(time_ms: u64, partition: &str, target_kib: u64, actual_kib: u64) -> Sample {
        Sample {
            time_ms,
            partition: partition.into(),
            target_kib,
            actual_kib,
            min_kib: 4096,
            max_kib: 32768,
            used_kib: 2048,
        }
    }

    fn samples() -> Vec<Sample> {
        vec![
            sample(0, "alpha", 8192, 8192),
            sample(0, "beta-2", 8192, 8192),
            sample(500, "alpha", 12288, 10240),
            sample(500, "beta-2", 4096, 6144),
            sample(1000, "alpha", 16384, 16384),
            sample(1000, "beta-2", 4096, 4096),
        ]
    }

    /// Verifies: SK-BAL-006
    #[test]
    fn console_samples_are_parsed_in_order_and_noise_is_skipped() {
        let console = "\
@@ kernel boot arch=aarch64
[hello] mem t=5ms alpha target=1K actual=1K min=1K max=1K used=1K
[service] mem t=1234ms alpha target=8192K actual=8100K min=4096K max=32768K used=2048K
[service] scheduler round 3
\r[service] mem t=1234ms beta_1 target=4096K actual=4000K min=1024K max=8192K used=512K   \r
[service] mem t=1300ms alpha target=8192 actual=8100K min=4096K max=32768K used=2048K
[service] mem t=1300ms Alpha target=8192K actual=8100K min=4096K max=32768K used=2048K
[service] mem t=1300ms alpha target=8192K actual=8100K min=4096K max=32768K used=2048K extra=1K
[service] mem t=-1ms alpha target=8192K actual=8100K min=4096K max=32768K used=2048K
[service] mem  t=1300ms alpha target=8192K actual=8100K min=4096K max=32768K used=2048K
 [service] mem t=1300ms alpha target=8192K actual=8100K min=4096K max=32768K used=2048K
@@ kernel shutdown status=ok
[service] mem t=2000ms alpha target=9000K actual=8192K min=4096K max=32768K used=3000K
";
        let parsed = parse_console(console);
        assert_eq!(
            parsed,
            vec![
                Sample {
                    time_ms: 1234,
                    partition: "alpha".into(),
                    target_kib: 8192,
                    actual_kib: 8100,
                    min_kib: 4096,
                    max_kib: 32768,
                    used_kib: 2048,
                },
                Sample {
                    time_ms: 1234,
                    partition: "beta_1".into(),
                    target_kib: 4096,
                    actual_kib: 4000,
                    min_kib: 1024,
                    max_kib: 8192,
                    used_kib: 512,
                },
                Sample {
                    time_ms: 2000,
                    partition: "alpha".into(),
                    target_kib: 9000,
                    actual_kib: 8192,
                    min_kib: 4096,
                    max_kib: 32768,
                    used_kib: 3000,
                },
            ]
        );
        assert!(parse_console("").is_empty());
    }

    /// Verifies: SK-BAL-006
    #[test]
    fn csv_round_trips_through_a_file() {
        let folder = temp_path("round-trip");
        let path = folder.join("nested").join("memory.csv");
        let written = samples();
        write_csv(&written, &path).expect("CSV is written");
        let text = std::fs::read_to_string(&path).expect("CSV is readable");
        assert_eq!(text.lines().next(), Some(CSV_HEADER));
        assert_eq!(
            text.lines().nth(1),
            Some("0,alpha,8192,8192,4096,32768,2048")
        );
        assert_eq!(read_csv(&path).expect("CSV reads back"), written);

        write_csv(&[], &path).expect("an empty CSV is written");
        assert_eq!(read_csv(&path).expect("empty CSV reads back"), vec![]);
        std::fs::remove_dir_all(&folder).ok();
    }

    /// Verifies: SK-BAL-006
    #[test]
    fn read_csv_errors_name_the_file_and_line() {
        let path = temp_path("bad.csv");
        let good = "0,alpha,8192,8192,4096,32768,2048";
        let cases = [
            (String::new(), ":1:", "empty file"),
            (format!("time,partition\n{good}\n"), ":1:", "header"),
            (
                format!("{CSV_HEADER}\n{good}\n1,alpha,1,2,3\n"),
                ":3:",
                "5 fields",
            ),
            (
                format!("{CSV_HEADER}\n{good}\n{good}\n1,alpha,1,2x,3,4,5\n"),
                ":4:",
                "actual_kib is \"2x\", not a number",
            ),
            (
                format!("{CSV_HEADER}\n1,Alpha,1,2,3,4,5\n"),
                ":2:",
                "partition",
            ),
            (format!("{CSV_HEADER}\n{good}\n\n"), ":3:", "1 fields"),
        ];
        for (text, line, what) in cases {
            std::fs::write(&path, &text).expect("test file is written");
            let error = format!("{:#}", read_csv(&path).expect_err(&text));
            let at = format!("{}{line}", path.display());
            assert!(error.contains(&at), "{error:?} does not name {at:?}");
            assert!(error.contains(what), "{error:?} does not say {what:?}");
        }
        std::fs::remove_file(&path).ok();
        let missing = temp_path("missing.csv");
        let error = format!("{:#}", read_csv(&missing).expect_err("no such file"));
        assert!(error.contains(&missing.display().to_string()), "{error}");
    }

    /// Verifies: SK-BAL-006
    #[test]
    fn plot_writes_an_svg_naming_every_series() {
        let folder = temp_path("plot");
        let out = folder.join("charts").join("memory.svg");
        plot(&samples(), "memory <over> time", &out).expect("chart is drawn");
        let svg = std::fs::read_to_string(&out).expect("SVG is written");
        assert!(svg.contains("<svg"), "{svg}");
        for text in [
            "alpha actual",
            "alpha target",
            "beta-2 actual",
            "beta-2 target",
            "guest time (ms)",
            "memory (MiB)",
            "memory &lt;over&gt; time",
        ] {
            assert!(svg.contains(text), "the SVG lacks {text:?}");
        }
        // A dashed target line is many short segments; the solid line is one path.
        assert!(svg.matches("<polyline").count() > 4, "{svg}");

        // One sample (a zero-width time range) still draws.
        let single = folder.join("single.svg");
        plot(&samples()[..1], "one", &single).expect("one sample is drawn");
        assert!(
            std::fs::read_to_string(&single)
                .unwrap()
                .contains("alpha actual")
        );
        std::fs::remove_dir_all(&folder).ok();
    }

    /// Verifies: SK-BAL-006
    #[test]
    fn plot_refuses_other_formats_and_empty_input() {
        let folder = temp_path("refused");
        let png = folder.join("memory.png");
        let error = plot(&samples(), "t", &png).expect_err("PNG is refused");
        assert!(error.to_string().contains("SVG only"), "{error}");
        assert!(!png.exists());
        let bare = folder.join("memory");
        assert!(plot(&samples(), "t", &bare).is_err());

        let svg = folder.join("memory.svg");
        let error = plot(&[], "t", &svg).expect_err("no samples is refused");
        assert!(
            error.to_string().contains("no memory samples in"),
            "{error}"
        );
        assert!(!svg.exists());
        std::fs::remove_dir_all(&folder).ok();
    }
}
