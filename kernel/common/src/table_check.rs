//! The boot self-test of the partitions' translation tables: before any
//! partition runs, every partition's stage-2 or EPT hierarchy is walked, entry
//! by entry, and must translate exactly its grants (its RAM at its placement, its
//! granted devices, and what the back end adds for it, such as x86's boot page
//! tables), with each grant's attributes, and nothing else.
//!
//! The check reads the tables the hardware will read; what it compares them with
//! is the list of [`Grant`]s the tables were built from. It finds a leaf outside
//! every grant (a stray mapping), a leaf whose descriptor is not the one the
//! grant gives at that address (a wrong frame or attributes, a block that
//! straddles a grant's end), and a grant not wholly mapped.

use alloc::vec;
use core::fmt::{self, Write as _};

use septum_core::event::Event;
use septum_core::memory::Range;
use septum_core::package::Package;

use crate::paging::{Format, Tables, level_size};

/// One range a partition's tables must translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Guest-physical addresses.
    pub guest: Range,
    /// The machine address of `guest.start`.
    pub host: u64,
    /// The back end's attributes for it.
    pub attributes: u64,
}

/// What the check found wrong, by guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFault {
    /// A leaf that no grant covers.
    Stray {
        /// Its guest-physical address.
        guest: u64,
        /// Its level.
        level: u32,
        /// Its descriptor.
        entry: u64,
    },
    /// A leaf whose descriptor is not the grant's at that address.
    Wrong {
        /// Its guest-physical address.
        guest: u64,
        /// Its level.
        level: u32,
        /// The descriptor the tables hold.
        found: u64,
        /// The descriptor the grant gives there.
        expected: u64,
    },
    /// A grant not wholly translated.
    Missing {
        /// The grant's guest-physical start.
        guest: u64,
        /// Bytes of it translated.
        mapped: u64,
        /// Its size.
        size: u64,
    },
}

impl TableFault {
    /// A short name for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            TableFault::Stray { .. } => "stray",
            TableFault::Wrong { .. } => "wrong",
            TableFault::Missing { .. } => "missing",
        }
    }
}

impl fmt::Display for TableFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TableFault::Stray {
                guest,
                level,
                entry,
            } => write!(f, "stray guest={guest:#x} level={level} entry={entry:#x}"),
            TableFault::Wrong {
                guest,
                level,
                found,
                expected,
            } => write!(
                f,
                "wrong guest={guest:#x} level={level} found={found:#x} expected={expected:#x}"
            ),
            TableFault::Missing {
                guest,
                mapped,
                size,
            } => write!(
                f,
                "missing guest={guest:#x} mapped={mapped:#x} size={size:#x}"
            ),
        }
    }
}

/// Walks `tables` and checks them against `grants` (see the module docs).
/// Returns the number of leaves, or the first fault in address order.
pub fn check<F: Format>(tables: &Tables<F>, grants: &[Grant]) -> Result<usize, TableFault> {
    let mut covered = vec![0u64; grants.len()];
    let mut leaves = 0;
    let mut fault = None;
    tables.leaves(&mut |guest, level, entry| {
        if fault.is_some() {
            return;
        }
        leaves += 1;
        let size = level_size(level);
        let Some(index) = grants
            .iter()
            .position(|g| g.guest.start <= guest && guest < g.guest.end)
        else {
            fault = Some(TableFault::Stray {
                guest,
                level,
                entry,
            });
            return;
        };
        let grant = grants[index];
        let expected = F::leaf(
            grant.host + (guest - grant.guest.start),
            level,
            grant.attributes,
        );
        if entry != expected || guest + size > grant.guest.end {
            fault = Some(TableFault::Wrong {
                guest,
                level,
                found: entry,
                expected,
            });
            return;
        }
        covered[index] += size;
    });
    if let Some(fault) = fault {
        return Err(fault);
    }
    for (grant, mapped) in grants.iter().zip(covered) {
        if mapped != grant.guest.size() {
            return Err(TableFault::Missing {
                guest: grant.guest.start,
                mapped,
                size: grant.guest.size(),
            });
        }
    }
    Ok(leaves)
}

/// Reports the boot self-test of every partition's tables (`checks`, in package
/// order) on `console`: one `@@ kernel tables checked` line when all are right;
/// otherwise the first wrong partition's `@@ partition <name> tables ...` line,
/// and the kernel stops (a panic: no partition may run on tables that are not
/// what the package says).
pub fn report_table_checks(
    package: &Package<'_>,
    checks: &[Result<usize, TableFault>],
    console: &mut impl fmt::Write,
) {
    let mut leaves = 0;
    for (spec, checked) in package.partitions().zip(checks) {
        match checked {
            Ok(count) => leaves += count,
            Err(fault) => {
                let mut report = heapless::String::<128>::new();
                let _ = write!(report, "{fault}");
                let _ = writeln!(
                    console,
                    "{}",
                    Event::PartitionTablesWrong {
                        name: spec.name,
                        report: &report,
                    }
                );
                panic!("the boot self-test found the tables of {} wrong", spec.name);
            }
        }
    }
    let _ = writeln!(
        console,
        "{}",
        Event::KernelTablesChecked {
            partitions: checks.len(),
            leaves,
        }
    );
}
