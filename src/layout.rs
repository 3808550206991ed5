//! A picture of a system's layout as a standalone SVG document: the board's RAM
//! drawn to scale with the kernel's and firmware's reserved regions and the
//! partitions placed with `at` (the ones the kernel places at boot listed below
//! it), the time windows of each core over one major frame, and a legend of the
//! partitions with their colours, devices and queues.

use crate::escape_markup;
use std::fmt::Write;

use septum_description::{Board, Kind, MemoryRegion, Partition, System};

/// Width of the picture.
const WIDTH: f64 = 960.0;
/// Where bars and axes start; row labels go to its left.
const LEFT: f64 = 130.0;
/// Where bars and axes end.
const RIGHT: f64 = WIDTH - 30.0;
/// Height of a memory bar or a core's row.
const BAR: f64 = 28.0;
/// Height of a line of text.
const LINE: f64 = 16.0;
/// Width of one character of the 12 px monospace font.
const CHAR: f64 = 7.2;
/// Partition colours, by index in boot order.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
/// Text classes (`e`nd and `m`iddle anchors, `a`xis grey, `h`eading, `t`itle) and
/// the hatching of reserved memory.
const STYLE: &str = "<style>text{font-family:monospace;font-size:12px;fill:#222}\
.e{text-anchor:end}.m{text-anchor:middle}.a{fill:#666}\
.h{font-size:15px;font-weight:bold}.t{font-size:17px;font-weight:bold}</style>\n\
<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#ccc\"/>\
<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#888\" stroke-width=\"2\"/></pattern></defs>\n";
/// Paint of empty bars and rows.
const EMPTY: &str = "fill=\"#f4f4f4\" stroke=\"#888\"";
/// Paint of reserved memory.
const HATCH: &str = "fill=\"url(#hatch)\" stroke=\"#888\"";

/// Renders the memory and time layout of `system` on `board` as a standalone SVG document.
pub fn render_svg(system: &System, board: &Board) -> String {
    let palette = PALETTE.into_iter().cycle();
    let parts: Vec<(&Partition, &str)> = system.boot_order().zip(palette).collect();
    let file = system.path.file_name().unwrap_or_default().display();
    let mut svg = Svg::default();
    let title = format!("Septum layout: {file} on {}", board.name);
    svg.text(20.0, 28.0, "t", &title);
    svg.y = 44.0;
    memory(&mut svg, &parts, board);
    time(&mut svg, &parts, system.major_frame_us, board.cpus);
    legend(&mut svg, &parts, system);
    let height = svg.y + 10.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {WIDTH} {height:.0}\">\n{STYLE}\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n{}</svg>\n",
        svg.body
    )
}

/// The document being drawn, top to bottom.
#[derive(Default)]
struct Svg {
    body: String,
    /// Where the next row goes.
    y: f64,
}

impl Svg {
    /// `content`, escaped, at `(x, y)` in the classes `class` (see [`STYLE`]).
    fn text(&mut self, x: f64, y: f64, class: &str, content: &str) {
        let content = escape_markup(content);
        let _ = writeln!(
            self.body,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" class=\"{class}\">{content}</text>"
        );
    }

    /// A rectangle with the attributes `paint`, and a tooltip if `title` is not empty.
    fn rect(&mut self, (x, y, w, h): (f64, f64, f64, f64), paint: &str, title: &str) {
        let _ = write!(
            self.body,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" {paint}"
        );
        if title.is_empty() {
            self.body.push_str("/>\n");
        } else {
            let _ = writeln!(self.body, "><title>{}</title></rect>", escape_markup(title));
        }
    }

    /// A small square of `paint` left of the text line at `y`, then `label`.
    fn swatch(&mut self, x: f64, y: f64, paint: &str, label: &str) {
        self.rect((x, y - 10.0, 12.0, 12.0), paint, "");
        self.text(x + 18.0, y, "", label);
    }

    fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) {
        let _ = writeln!(
            self.body,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"#666\" \
             stroke-width=\"0.8\"/>"
        );
    }

    /// A section heading.
    fn heading(&mut self, content: &str) {
        self.y += 24.0;
        self.text(20.0, self.y, "h", content);
        self.y += 10.0;
    }
}

/// Paint of a partition's RAM.
fn solid(colour: &str) -> String {
    format!("fill=\"{colour}\" stroke=\"#333\" stroke-width=\"0.5\"")
}

/// `name 2 MiB (max 4 MiB)`.
fn sized(p: &Partition) -> String {
    if p.memory_max > p.ram {
        format!("{} {} (max {})", p.name, size(p.ram), size(p.memory_max))
    } else {
        format!("{} {}", p.name, size(p.ram))
    }
}

/// One bar per RAM region with the reserved regions and the placed partitions on it,
/// then the partitions the kernel places at boot.
fn memory(svg: &mut Svg, parts: &[(&Partition, &str)], board: &Board) {
    svg.heading("Memory");
    for region in &board.ram {
        let scale = (RIGHT - LEFT) / region.size as f64;
        let x_of =
            |at: u64| LEFT + (at.clamp(region.base, region.end()) - region.base) as f64 * scale;
        // Draws [base, base + size) on the bar; returns its left edge.
        let span = |svg: &mut Svg, base: u64, size: u64, paint: &str, title: &str| {
            let (x0, x1) = (x_of(base), x_of(base.saturating_add(size)));
            svg.rect((x0, svg.y, (x1 - x0).max(1.5), BAR), paint, title);
            x0
        };
        svg.y += 14.0;
        svg.text(LEFT, svg.y - 4.0, "a", &hex(region.base));
        svg.text(RIGHT, svg.y - 4.0, "a e", &hex(region.end()));
        let label = format!("RAM {}", size(region.size));
        svg.text(LEFT - 8.0, svg.y + BAR / 2.0 + 4.0, "e", &label);
        span(svg, region.base, region.size, EMPTY, "");
        let mut labels: Vec<(u64, f64, String)> = Vec::new();
        let on_bar = |r: &&MemoryRegion| region.overlaps(r.base, r.size);
        for r in board.reserved.iter().filter(on_bar) {
            let label = format!("kernel/firmware {} at {}", size(r.size), hex(r.base));
            let x = span(svg, r.base, r.size, HATCH, &label);
            labels.push((r.base, x, label));
        }
        for &(p, colour) in parts {
            let Some(at) = p.at.filter(|&at| region.overlaps(at, p.memory_max)) else {
                continue;
            };
            let label = sized(p);
            if p.memory_max > p.ram {
                let lighter =
                    format!("fill=\"{colour}\" fill-opacity=\"0.35\" stroke=\"{colour}\"");
                span(svg, at + p.ram, p.memory_max - p.ram, &lighter, &label);
            }
            let x = span(svg, at, p.ram, &solid(colour), &label);
            labels.push((at, x, format!("{label} at {}", hex(at))));
        }
        svg.y += BAR;
        // One label a line, the highest address first, so that each leader line only
        // crosses the lines of labels to its right.
        labels.sort_by_key(|&(base, ..)| std::cmp::Reverse(base));
        let top = svg.y;
        for (_, x, label) in &labels {
            svg.y += LINE;
            svg.line((*x, top), (*x, svg.y - 4.0));
            if x + 4.0 + label.chars().count() as f64 * CHAR <= WIDTH - 10.0 {
                svg.text(x + 4.0, svg.y, "", label);
            } else {
                svg.text(x - 4.0, svg.y, "e", label);
            }
        }
        svg.y += 26.0;
    }
    let off_bars = |r: &&MemoryRegion| !board.ram.iter().any(|m| m.overlaps(r.base, r.size));
    for r in board.reserved.iter().filter(off_bars) {
        let (size, at) = (size(r.size), hex(r.base));
        let label = format!("kernel/firmware {size} at {at}, outside partition RAM");
        svg.swatch(LEFT, svg.y, HATCH, &label);
        svg.y += LINE + 6.0;
    }
    let at_boot: Vec<_> = parts.iter().filter(|(p, _)| p.at.is_none()).collect();
    if at_boot.is_empty() {
        return;
    }
    svg.text(LEFT - 8.0, svg.y, "e", "placed at boot");
    let mut x = LEFT;
    for (p, colour) in at_boot {
        let label = sized(p);
        let width = 18.0 + label.chars().count() as f64 * CHAR;
        if x > LEFT && x + width > RIGHT {
            x = LEFT;
            svg.y += LINE + 4.0;
        }
        svg.swatch(x, svg.y, &solid(colour), &label);
        x += width + 24.0;
    }
    svg.y += 6.0;
}

/// One row per core with windows, over one major frame; or a note that there is no
/// schedule.
fn time(svg: &mut Svg, parts: &[(&Partition, &str)], frame: Option<u64>, cpus: u32) {
    svg.heading("Time");
    let Some(frame) = frame else {
        svg.y += LINE;
        let note = "No schedule: the partitions share core 0 round-robin.";
        svg.text(LEFT, svg.y, "", note);
        svg.y += 6.0;
        return;
    };
    let scale = (RIGHT - LEFT) / frame.max(1) as f64;
    let windows: Vec<_> = parts
        .iter()
        .flat_map(|&(p, colour)| p.windows.iter().map(move |w| (p, colour, w)))
        .collect();
    let cores: Vec<u32> = (0..cpus)
        .filter(|&cpu| windows.iter().any(|(.., w)| w.cpu == cpu))
        .collect();
    let top = svg.y;
    let row_y = |row: usize| top + row as f64 * (BAR + 6.0);
    let bottom = row_y(cores.len()) - 6.0;
    // The rows, then the grid, then the windows over them.
    for (row, cpu) in cores.iter().enumerate() {
        let label = format!("core {cpu}");
        svg.text(LEFT - 8.0, row_y(row) + BAR / 2.0 + 4.0, "e", &label);
        svg.rect((LEFT, row_y(row), RIGHT - LEFT, BAR), EMPTY, "");
    }
    for tick in (0..=frame).step_by(tick_step(frame) as usize) {
        let x = LEFT + tick as f64 * scale;
        svg.line((x, top), (x, bottom + 4.0));
        svg.text(x, bottom + 18.0, "a m", &tick.to_string());
    }
    for (row, &cpu) in cores.iter().enumerate() {
        for &(p, colour, w) in windows.iter().filter(|(.., w)| w.cpu == cpu) {
            let (x, y) = (LEFT + w.offset_us as f64 * scale, row_y(row));
            let width = w.length_us as f64 * scale;
            let (start, end) = (w.offset_us, w.offset_us + w.length_us);
            let title = format!("{} on core {cpu}: {start}–{end} µs", p.name);
            svg.rect((x, y, width.max(1.5), BAR), &solid(colour), &title);
            let fit = ((width - 6.0) / CHAR).max(0.0) as usize;
            let name: String = match p.name.chars().count() {
                n if n <= fit => p.name.clone(),
                _ if fit >= 2 => p.name.chars().take(fit - 1).chain(['…']).collect(),
                _ => continue,
            };
            svg.text(x + width / 2.0, y + BAR / 2.0 + 4.0, "m", &name);
        }
    }
    svg.y = bottom + 38.0;
    let caption = format!("µs into the major frame of {frame} µs");
    svg.text(LEFT, svg.y, "a", &caption);
}

/// Each partition with its colour, kind, cores, devices and queues, the service VM
/// first.
fn legend(svg: &mut Svg, parts: &[(&Partition, &str)], system: &System) {
    svg.heading("Partitions");
    let max_chars = ((WIDTH - 60.0) / CHAR) as usize;
    for &(p, colour) in parts {
        svg.y += LINE + 4.0;
        let kind = match p.kind {
            Kind::Service => "service VM",
            Kind::Guest => "guest",
        };
        let cores: Vec<String> = p.cpus.iter().map(u32::to_string).collect();
        let plural = if cores.len() == 1 { "" } else { "s" };
        let head = format!("{} ({kind}), core{plural} {}", p.name, cores.join(", "));
        svg.swatch(22.0, svg.y, &solid(colour), &head);
        let queues: Vec<String> = system
            .queues
            .iter()
            .filter(|q| q.from == p.name || q.to == p.name)
            .map(|q| format!("{}: {} → {} (depth {})", q.name, q.from, q.to, q.depth))
            .collect();
        for (what, items) in [("devices", &p.devices), ("queues", &queues)] {
            for line in wrap(what, items, max_chars) {
                svg.y += LINE;
                svg.text(40.0, svg.y, "a", &line);
            }
        }
    }
}

/// `what: a, b, c` in lines of at most about `max` characters; `what: none` if
/// there are no items.
fn wrap(what: &str, items: &[String], max: usize) -> Vec<String> {
    let mut lines = vec![format!("{what}:")];
    for (i, item) in items.iter().enumerate() {
        let last = lines.last_mut().expect("lines start with one");
        if i > 0 && last.chars().count() + item.chars().count() + 2 > max {
            last.push(',');
            lines.push(format!("  {item}"));
        } else {
            last.push_str(if i == 0 { " " } else { ", " });
            last.push_str(item);
        }
    }
    if items.is_empty() {
        lines[0].push_str(" none");
    }
    lines
}

/// A round step for about 5 to 10 ticks over `frame` µs.
fn tick_step(frame: u64) -> u64 {
    let raw = frame.div_ceil(8).max(1);
    let mut magnitude = 1;
    while magnitude * 10 <= raw {
        magnitude *= 10;
    }
    let steps = [1, 2, 5, 10].map(|m| m * magnitude);
    steps.into_iter().find(|&s| s >= raw).unwrap_or(raw)
}

/// `bytes` in the largest binary unit that divides it.
fn size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

/// `address` in hex, at least 8 digits, in groups of four as the board recipes write it.
fn hex(address: u64) -> String {
    let width = format!("{address:x}").len().next_multiple_of(4).max(8);
    let digits = format!("{address:0width$x}");
    let groups: Vec<&str> = (0..width).step_by(4).map(|i| &digits[i..i + 4]).collect();
    format!("0x{}", groups.join("_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::from_root;

    fn load(system: &str, board: &str) -> (System, Board) {
        let board = Board::load(&from_root(board)).expect("board loads");
        let system = septum_description::load(&from_root(system), &board).expect("system is valid");
        (system, board)
    }

    fn good() -> (System, Board) {
        load("description/tests/good.toml", "description/tests/board")
    }

    /// Verifies: SK-CFG-003
    #[test]
    fn renders_the_full_description() {
        let (system, board) = good();
        let svg = render_svg(&system, &board);
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        for partition in &system.partitions {
            assert!(svg.contains(&format!(">{}<", partition.name)));
        }
        assert!(svg.contains("alpha on core 1: 0–10000 µs"));
        assert!(svg.contains("alpha 2 MiB (max 4 MiB) at 0x4200_0000"));
        assert!(svg.contains("kernel/firmware 16 MiB at 0x4000_0000"));
        assert!(svg.contains("pings: alpha → service (depth 8)"));
        assert!(svg.contains("service (service VM)"));
        assert_eq!(svg, render_svg(&system, &board));
    }

    /// Verifies: SK-CFG-003
    #[test]
    fn without_a_schedule_says_round_robin() {
        let (system, board) = load("tests/systems/faulty.toml", "board-support/qemu-virt");
        let svg = render_svg(&system, &board);
        assert!(svg.contains("the partitions share core 0 round-robin"));
        assert!(svg.contains("placed at boot"));
        assert!(svg.ends_with("</svg>\n"));
    }

    /// Verifies: SK-CFG-003
    #[test]
    fn escapes_names() {
        let (mut system, board) = good();
        system.partitions[0].name = "a<b&\"c\">".into();
        let svg = render_svg(&system, &board);
        assert!(!svg.contains("a<b"));
        assert!(svg.contains("a&lt;b&amp;&quot;c&quot;&gt;"));
    }

    /// Verifies: SK-CFG-003
    #[test]
    fn formats_sizes_addresses_and_ticks() {
        assert_eq!(size(2 << 20), "2 MiB");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(512), "512 B");
        assert_eq!(hex(0x4000_0000), "0x4000_0000");
        assert_eq!(hex(0x1_0000), "0x0001_0000");
        assert_eq!(tick_step(10_000), 2000);
        assert_eq!(tick_step(1), 1);
    }
}
