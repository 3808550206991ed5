//! Host tests of the console ring: whole lines in order, shares and the kernel's
//! reserve, nothing lost without being counted.

use super::*;
use alloc::string::String;
use alloc::vec::Vec;
use proptest::prelude::*;

fn ring(size: usize) -> Output {
    Output::new(alloc::vec![0u8; size].leak())
}

/// Everything the UART would get, taking at most `max` bytes.
fn sent(output: &mut Output, max: usize) -> String {
    let mut bytes = Vec::new();
    output.drain(|byte| {
        if bytes.len() == max {
            return false;
        }
        bytes.push(byte);
        true
    });
    String::from_utf8(bytes).expect("ASCII")
}

/// Verifies: SK-TMP-005, SK-AUD-002
#[test]
fn lines_go_out_whole_in_order_with_crlf() {
    let mut out = ring(RING_SIZE);
    out.write(Source::Kernel, "@@ kernel ");
    assert!(out.is_empty(), "an unfinished line is not sent");
    out.write(Source::Partition(1), "[a] hi\n");
    out.write(Source::Kernel, "boot\n\n");
    assert_eq!(
        sent(&mut out, usize::MAX),
        "@@ kernel \r\n[a] hi\r\nboot\r\n\r\n"
    );
    assert!(out.is_empty());
}

/// Verifies: SK-TMP-005
#[test]
fn a_slow_uart_gets_the_bytes_a_few_at_a_time_and_nothing_twice() {
    let mut out = ring(RING_SIZE);
    out.write(Source::Kernel, "one\ntwo\n");
    let mut all = String::new();
    for _ in 0..20 {
        all.push_str(&sent(&mut out, 3));
    }
    assert_eq!(all, "one\r\ntwo\r\n");
}

/// Verifies: SK-TMP-005
#[test]
fn a_long_line_is_cut_not_merged() {
    let mut out = ring(RING_SIZE);
    let long: String = core::iter::repeat_n('x', LINE_CAP + 10).collect();
    out.write(Source::Kernel, &long);
    out.write(Source::Kernel, "\nnext\n");
    let text = sent(&mut out, usize::MAX);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0].len(), LINE_CAP);
    assert_eq!(lines[1], "next");
}

/// Verifies: SK-TMP-005
#[test]
fn a_flooding_partition_loses_only_its_own_lines_and_hears_how_many() {
    let mut out = ring(RING_SIZE);
    let line: String = core::iter::repeat_n('#', 120).collect::<String>() + "\n";
    for _ in 0..1000 {
        out.write(Source::Partition(3), &line);
    }
    out.write(Source::Partition(4), "[quiet] still here\n");
    out.write(Source::Kernel, "@@ kernel line\n");
    assert_eq!(
        out.take_dropped(Source::Partition(3), false),
        None,
        "its lines still wait"
    );
    let text = sent(&mut out, usize::MAX);
    let flood = text.lines().filter(|l| l.starts_with('#')).count();
    assert!(
        flood * 123 <= PARTITION_SHARE && flood > 0,
        "{flood} lines kept"
    );
    assert!(text.contains("[quiet] still here") && text.contains("@@ kernel line"));
    assert_eq!(
        out.take_dropped(Source::Partition(3), false),
        Some(1000 - flood as u64)
    );
    assert_eq!(
        out.take_dropped(Source::Partition(3), true),
        None,
        "reported once"
    );
    assert_eq!(out.take_dropped(Source::Partition(4), true), None);
}

/// Verifies: SK-TMP-005
#[test]
fn a_ring_too_small_drops_everything_and_counts_it() {
    let mut out = ring(0);
    out.write(Source::Kernel, "@@ kernel boot\n");
    assert!(out.is_empty());
    assert_eq!(sent(&mut out, usize::MAX), "");
    assert_eq!(out.take_dropped(Source::Kernel, false), Some(1));
}

#[derive(Clone, Debug)]
enum Op {
    /// A line of `len` bytes from source `.0`, written in two pieces split at
    /// `.2` (a fraction of its length, in per mille).
    Line(usize, usize, usize),
    Drain(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..=MAX_PARTITIONS, 0..400usize, 0..=1000usize).prop_map(|(s, n, at)| Op::Line(s, n, at)),
        1 => (0..3000usize).prop_map(Op::Drain),
    ]
}

fn source(index: usize) -> Source {
    if index == MAX_PARTITIONS {
        Source::Kernel
    } else {
        Source::Partition(index)
    }
}

proptest! {
    /// Whatever sources write and however slowly the UART drains, every line
    /// goes out whole (cut at LINE_CAP), in its source's order, or is counted
    /// as dropped; partitions stay within their share and the kernel's reserve.
    /// Verifies: SK-TMP-005, SK-AUD-002
    #[test]
    fn lines_are_whole_ordered_and_accounted(ops in proptest::collection::vec(op(), 1..200)) {
        let mut out = ring(RING_SIZE);
        let mut written: Vec<Vec<String>> = alloc::vec![Vec::new(); SOURCES];
        let mut text = String::new();
        for op in &ops {
            match *op {
                Op::Line(index, len, at) => {
                    // Each line names its source and its number.
                    let mut line = alloc::format!("{index}:{}:", written[index].len());
                    line.extend(core::iter::repeat_n('a', len));
                    let split = line.len() * at / 1000;
                    out.write(source(index), &line[..split]);
                    out.write(source(index), &line[split..]);
                    out.write(source(index), "\n");
                    written[index].push(line);
                }
                Op::Drain(max) => text.push_str(&sent(&mut out, max)),
            }
            for index in 0..MAX_PARTITIONS {
                prop_assert!(out.waiting[index] <= PARTITION_SHARE);
            }
            let partitions: usize = out.waiting[..MAX_PARTITIONS].iter().sum();
            prop_assert!(partitions + KERNEL_RESERVE <= RING_SIZE);
        }
        text.push_str(&sent(&mut out, usize::MAX));
        prop_assert!(text.is_empty() || text.ends_with("\r\n"));
        let mut got: Vec<Vec<&str>> = alloc::vec![Vec::new(); SOURCES];
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let index: usize = line.split(':').next().unwrap().parse().unwrap();
            got[index].push(line);
        }
        for index in 0..SOURCES {
            let dropped = out.take_dropped(source(index), false).unwrap_or(0) as usize;
            prop_assert_eq!(got[index].len() + dropped, written[index].len());
            // In order: each line sent is the next one written that was not
            // dropped, cut at LINE_CAP.
            let mut expected = written[index].iter().map(|l| &l[..l.len().min(LINE_CAP)]);
            for line in &got[index] {
                prop_assert!(expected.any(|w| w == *line), "{} out of order or changed", line);
            }
        }
    }
}

/// A line interrupted by another source's is ended first, never merged.
/// Verifies: SK-AUD-002
#[test]
fn another_source_ends_an_unfinished_line() {
    let mut out = ring(RING_SIZE);
    out.write(Source::Partition(2), "[b] half");
    out.write(Source::Kernel, "@@ kernel line\n");
    assert_eq!(sent(&mut out, usize::MAX), "[b] half\r\n@@ kernel line\r\n");
}
