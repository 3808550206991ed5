//! Self-tests the kernel runs at boot when its command line asks: fault
//! injection that proves a protection works in the booted system, for the
//! emulator scenarios. A normal boot has no such argument and runs none.
//!
//! The command line is the firmware's (the device tree's `/chosen/bootargs` on
//! aarch64, the multiboot2 command line on x86); the kernel reads only the
//! `septum.self-test=` argument from it.

use core::hint::black_box;

/// The argument that names a self-test.
const ARGUMENT: &str = "septum.self-test=";

/// A self-test the command line may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// Overflow the boot core's boot stack: its guard page must stop the kernel
    /// with a `@@ kernel stack-overflow` report.
    StackOverflow,
    /// Map one stray page into the last partition's tables (an alias of its
    /// RAM's first page at guest-physical 0x1000) after they are built: the boot
    /// self-test of the tables must find it and stop the kernel with a
    /// `@@ partition <name> tables stray ...` report before any partition runs.
    TableCorruption,
    /// x86: put the boot core's local APIC in x2APIC mode before the kernel
    /// takes it, as some PC firmware leaves it: the kernel must run in x2APIC
    /// mode on every core and report the handoff with a `@@ kernel apic` line.
    /// Nothing on aarch64.
    X2apicHandoff,
}

/// Where [`SelfTest::TableCorruption`] maps its stray page: below every
/// partition's RAM and every device window of both boards.
pub const STRAY_PAGE: u64 = 0x1000;

impl SelfTest {
    /// The self-test `command_line` asks for, if any (an unknown name is none).
    pub fn from_command_line(command_line: &str) -> Option<SelfTest> {
        command_line
            .split_whitespace()
            .find_map(|argument| argument.strip_prefix(ARGUMENT))
            .and_then(|name| match name {
                "stack-overflow" => Some(SelfTest::StackOverflow),
                "table-corruption" => Some(SelfTest::TableCorruption),
                "x2apic-handoff" => Some(SelfTest::X2apicHandoff),
                _ => None,
            })
    }

    /// Its name in the kernel's report.
    pub fn name(self) -> &'static str {
        match self {
            SelfTest::StackOverflow => "stack-overflow",
            SelfTest::TableCorruption => "table-corruption",
            SelfTest::X2apicHandoff => "x2apic-handoff",
        }
    }
}

/// Uses the stack without bound: 1 KiB more per call, until the stack's guard
/// page stops it (no stack holds the 2^64 calls it would take to return).
pub fn overflow_the_stack(depth: u64) -> u64 {
    if depth == u64::MAX {
        return depth;
    }
    let frame = black_box([depth; 128]);
    let deeper = overflow_the_stack(black_box(depth + 1));
    black_box(frame[(deeper % 128) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-INIT-007, SK-TST-001, SK-TST-002
    #[test]
    fn only_the_named_argument_asks_for_a_self_test() {
        assert_eq!(
            SelfTest::from_command_line("console=ttyAMA0 septum.self-test=stack-overflow"),
            Some(SelfTest::StackOverflow)
        );
        assert_eq!(
            SelfTest::from_command_line("septum.self-test=table-corruption quiet"),
            Some(SelfTest::TableCorruption)
        );
        assert_eq!(SelfTest::from_command_line(""), None);
        assert_eq!(SelfTest::from_command_line("septum.self-test=reboot"), None);
        assert_eq!(
            SelfTest::from_command_line("xseptum.self-test=stack-overflow"),
            None
        );
    }
}
