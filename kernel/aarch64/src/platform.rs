//! What the firmware's device tree says about the machine: the board, RAM, CPUs,
//! the console UART, the interrupt controller (a GICv3, or a GICv2 such as the
//! Raspberry Pi 4's GIC-400) and how to power off. Nothing here is hard-coded; a
//! device tree that lacks something the kernel needs is a boot error.
//!
//! Addresses in `reg` are translated through every parent bus's `ranges` to
//! physical addresses (the Raspberry Pi 4's peripherals sit on a bus that the
//! `/soc` node maps from 0x7e00_0000 to 0xfe00_0000).

use fdt::Fdt;
use fdt::node::FdtNode;
use septum_abi::layout::{GICV2_CPU_INTERFACE_SIZE, PAGE_SIZE};
use septum_core::memory::Range;
use septum_kernel::self_test::SelfTest;

use crate::gic::GicBlocks;
use crate::machine::PowerOff;

/// The boards the kernel knows by a root `compatible` string, and the name
/// `@@ kernel boot` gives them (the host tool's board folder).
const BOARDS: &[(&str, &str)] = &[
    ("linux,dummy-virt", "qemu-virt"),
    ("raspberrypi,4-model-b", "rpi4"),
    ("brcm,bcm2711", "rpi4"),
];
/// The kernel command-line word that asks for the semihosting exit at power-off.
const SEMIHOSTING_EXIT: &str = "septum.exit=semihosting";
/// The kernel command-line word that limits the cores the kernel starts
/// (`maxcpus=<n>`, as Linux spells it).
const MAX_CPUS_ARGUMENT: &str = "maxcpus=";

/// The machine as the device tree describes it.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// The board's name, from the root `compatible` ("unknown" if none of [`BOARDS`]).
    pub board: &'static str,
    /// The RAM bank that holds the kernel image.
    pub ram: Range,
    /// Number of CPU nodes.
    pub cpus: u32,
    /// The affinity (MPIDR) of each CPU, in device-tree order, for as many as the
    /// kernel runs on.
    pub mpidrs: heapless::Vec<u64, { septum_core::system::MAX_CPUS }>,
    /// How many cores the kernel starts (the boot core among them): all the
    /// device tree lists, or fewer if the command line says `maxcpus=<n>`.
    pub started_cpus: usize,
    /// Each CPU's spin-table release address (`enable-method = "spin-table"`,
    /// `cpu-release-addr`), in device-tree order; `None` for a CPU started
    /// otherwise (PSCI).
    pub release_addrs: heapless::Vec<Option<u64>, { septum_core::system::MAX_CPUS }>,
    /// The PL011 console's register block (the first enabled one).
    pub uart: Range,
    /// The log channel's register block: the PL011 the device tree's
    /// `serial1` alias names, if it is another one (QEMU `virt` has it when
    /// given a second `-serial`).
    pub log_uart: Option<Range>,
    /// The GIC's register blocks.
    pub gic: GicBlocks,
    /// How the machine is powered off: PSCI through `smc`, else the semihosting
    /// exit if the command line asks for it, else not at all.
    pub power: PowerOff,
    /// Where the device tree blob itself lies, so it is not handed out as free RAM.
    pub blob: Range,
    /// The self-test the command line (`/chosen/bootargs`) asks for, if any.
    pub self_test: Option<SelfTest>,
}

/// Why the device tree could not be used.
#[derive(Clone, Copy, Debug)]
pub enum DtbError {
    /// No valid device tree at the address in x0.
    Invalid,
    /// No memory node has a bank holding the kernel.
    NoMemory,
    /// No enabled `arm,pl011` node with registers.
    NoUart,
    /// No `arm,gic-v3` node with two register blocks, nor a GICv2 node with four.
    NoGic,
}

impl MachineInfo {
    /// Reads the device tree at `address`; the kernel image starts at `kernel`.
    ///
    /// # Safety
    /// `address` must point at readable memory holding a device tree blob (or at
    /// least a header whose checks fail), mapped in the kernel's address space.
    pub unsafe fn from_device_tree(address: u64, kernel: u64) -> Result<MachineInfo, DtbError> {
        // SAFETY: the caller guarantees the blob is mapped and readable; `from_ptr`
        // validates the header before reading further.
        let fdt = unsafe { Fdt::from_ptr(address as *const u8) }.map_err(|_| DtbError::Invalid)?;
        // SAFETY: the header just validated gives the blob's size; the caller
        // guarantees the blob is mapped (as writable RAM, like all of RAM), and
        // nothing else uses it during boot.
        let blob = unsafe { core::slice::from_raw_parts_mut(address as *mut u8, fdt.total_size()) };
        drop_nops(blob).ok_or(DtbError::Invalid)?;
        let blob: &[u8] = blob;
        let fdt = Fdt::new(blob).map_err(|_| DtbError::Invalid)?;
        let tree = Tree { fdt, blob };
        let fdt = &tree.fdt;
        let ram = memory_banks(&tree)
            .find(|bank| bank.start <= kernel && kernel < bank.end)
            .ok_or(DtbError::NoMemory)?;
        let uart = fdt
            .all_nodes()
            .filter(|node| is_compatible(node, &["arm,pl011"]) && enabled(node))
            .find_map(|node| registers(&tree, node).next())
            .ok_or(DtbError::NoUart)?;
        let log_uart = fdt
            .aliases()
            .and_then(|aliases| aliases.resolve_node("serial1"))
            .filter(|node| is_compatible(node, &["arm,pl011"]) && enabled(node))
            .and_then(|node| registers(&tree, node).next())
            .filter(|log| *log != uart);
        let gic = gic_blocks(&tree).ok_or(DtbError::NoGic)?;
        let psci_smc = fdt
            .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
            .and_then(|node| node.property("method"))
            .and_then(|method| method.as_str())
            .is_some_and(|method| method == "smc");
        let cpus = fdt.cpus().count() as u32;
        let mut mpidrs = heapless::Vec::new();
        let mut release_addrs = heapless::Vec::new();
        for cpu in fdt.cpus() {
            let spin_table = cpu
                .property("enable-method")
                .and_then(|method| method.as_str())
                .is_some_and(|method| method == "spin-table");
            let release = cpu
                .property("cpu-release-addr")
                .filter(|_| spin_table)
                .map(|address| cells(address.value));
            if mpidrs.push(cpu.ids().first() as u64).is_err()
                || release_addrs.push(release).is_err()
            {
                break;
            }
        }
        let blob_range =
            Range::from_start_size(address, fdt.total_size() as u64).ok_or(DtbError::Invalid)?;
        let bootargs = fdt
            .find_node("/chosen")
            .and_then(|chosen| chosen.property("bootargs"))
            .and_then(|bootargs| bootargs.as_str())
            .unwrap_or("");
        let power = if psci_smc {
            PowerOff::Psci
        } else if bootargs
            .split_whitespace()
            .any(|word| word == SEMIHOSTING_EXIT)
        {
            PowerOff::Semihosting
        } else {
            PowerOff::Halt
        };
        let started_cpus = bootargs
            .split_whitespace()
            .find_map(|word| word.strip_prefix(MAX_CPUS_ARGUMENT)?.parse::<usize>().ok())
            .map_or(mpidrs.len(), |limit| limit.clamp(1, mpidrs.len()));
        let board = fdt
            .root()
            .compatible()
            .all()
            .find_map(|compatible| {
                BOARDS
                    .iter()
                    .find(|(known, _)| *known == compatible)
                    .map(|(_, name)| *name)
            })
            .unwrap_or("unknown");
        Ok(MachineInfo {
            board,
            ram,
            cpus,
            mpidrs,
            started_cpus,
            release_addrs,
            uart,
            log_uart,
            gic,
            power,
            blob: blob_range,
            self_test: SelfTest::from_command_line(bootargs),
        })
    }
}

impl MachineInfo {
    /// The pages from the RAM bank's start through the last spin-table release
    /// address, where the boot firmware's spin table (its code and the release
    /// words the waiting cores read) lives; `None` on a board whose cores start
    /// through PSCI.
    pub fn spin_table(&self) -> Option<Range> {
        let last = self.release_addrs.iter().flatten().max()?;
        let end = (last + 8).next_multiple_of(PAGE_SIZE);
        Some(Range {
            start: self.ram.start.min(*last),
            end,
        })
    }
}

/// The GICv3's distributor and redistributors, or the GICv2's distributor, CPU
/// interface and virtual interface control.
fn gic_blocks(tree: &Tree<'_>) -> Option<GicBlocks> {
    if let Some(node) = tree.fdt.find_compatible(&["arm,gic-v3"]) {
        let mut blocks = registers(tree, node);
        return Some(GicBlocks::V3 {
            distributor: blocks.next()?,
            redistributors: blocks.next()?,
        });
    }
    let node = tree
        .fdt
        .find_compatible(&["arm,gic-400", "arm,cortex-a15-gic"])?;
    let mut blocks = registers(tree, node);
    Some(GicBlocks::V2 {
        distributor: blocks.next()?,
        cpu: blocks.next()?,
        hypervisor: blocks.next()?,
        virtual_cpu: blocks
            .next()
            .filter(|block| block.size() >= GICV2_CPU_INTERFACE_SIZE)?,
    })
}

/// Every bank of every `device_type = "memory"` node.
fn memory_banks<'f>(tree: &'f Tree<'_>) -> impl Iterator<Item = Range> + 'f {
    tree.fdt
        .all_nodes()
        .filter(|node| {
            node.property("device_type")
                .and_then(|kind| kind.as_str())
                .is_some_and(|kind| kind == "memory")
        })
        .flat_map(|node| registers(tree, node))
}

fn is_compatible(node: &FdtNode<'_, '_>, with: &[&str]) -> bool {
    node.compatible()
        .is_some_and(|compatible| compatible.all().any(|c| with.contains(&c)))
}

/// A node without `status`, or with "okay" or "ok".
fn enabled(node: &FdtNode<'_, '_>) -> bool {
    node.property("status")
        .and_then(|status| status.as_str())
        .is_none_or(|status| status == "okay" || status == "ok")
}

/// `node`'s register blocks as physical addresses; blocks that no `ranges`
/// translates are left out.
fn registers<'f>(tree: &'f Tree<'_>, node: FdtNode<'f, '_>) -> impl Iterator<Item = Range> + 'f {
    node.reg().into_iter().flatten().filter_map(move |block| {
        let start = translate(tree, node, block.starting_address as u64)?;
        Range::from_start_size(start, block.size? as u64)
    })
}

/// The parsed device tree and its bytes.
struct Tree<'a> {
    fdt: Fdt<'a>,
    blob: &'a [u8],
}

/// The bus node `node` sits on, or `None` for a node on the root, found by
/// walking the blob's structure block (the `fdt` crate has no parent links).
fn parent<'f, 'a>(tree: &'f Tree<'a>, node: FdtNode<'f, 'a>) -> Option<FdtNode<'f, 'a>> {
    let parent_name = parent_name(tree.blob, node.name.as_ptr())?;
    tree.fdt
        .all_nodes()
        .find(|candidate| core::ptr::eq(candidate.name.as_ptr(), parent_name))
}

// Flattened device tree structure tokens.
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Where the name of the parent of the node named at `name` starts in `blob`;
/// `None` if that parent is the root (or `name` names no node).
fn parent_name(blob: &[u8], name: *const u8) -> Option<*const u8> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?))
    };
    let mut at = usize::try_from(word(8)?).ok()?;
    let mut open: heapless::Vec<*const u8, 16> = heapless::Vec::new();
    loop {
        match word(at)? {
            FDT_BEGIN_NODE => {
                let start = at + 4;
                let here = blob.get(start..)?;
                if core::ptr::eq(here.as_ptr(), name) {
                    // open[0] is the root.
                    return open.get(1..)?.last().copied();
                }
                let length = here.iter().position(|&byte| byte == 0)?;
                open.push(here.as_ptr()).ok()?;
                at = (start + length + 1).next_multiple_of(4);
            }
            FDT_END_NODE => {
                open.pop()?;
                at += 4;
            }
            FDT_PROP => at += (8 + usize::try_from(word(at + 4)?).ok()?).next_multiple_of(4) + 4,
            FDT_NOP => at += 4,
            _ => return None,
        }
    }
}

/// Removes the NOP tokens from the blob's structure block, in place, and
/// shortens the block to match. An emulator leaves them where it removed nodes
/// (QEMU `raspi4b` does), and the `fdt` crate stops at them with a panic.
fn drop_nops(blob: &mut [u8]) -> Option<()> {
    const SIZE_DT_STRUCT: usize = 36;
    let word = |blob: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?))
    };
    let start = usize::try_from(word(blob, 8)?).ok()?;
    let end = start.checked_add(usize::try_from(word(blob, SIZE_DT_STRUCT)?).ok()?)?;
    let (mut read, mut write) = (start, start);
    while read < end {
        let token = word(blob, read)?;
        let length = match token {
            FDT_BEGIN_NODE => {
                let name = blob.get(read + 4..)?.iter().position(|&byte| byte == 0)?;
                4 + (name + 1).next_multiple_of(4)
            }
            FDT_PROP => {
                12 + usize::try_from(word(blob, read + 4)?)
                    .ok()?
                    .next_multiple_of(4)
            }
            FDT_END_NODE | FDT_NOP | FDT_END => 4,
            _ => return None,
        };
        if token != FDT_NOP {
            blob.copy_within(read..read.checked_add(length)?, write);
            write += length;
        }
        read += length;
        if token == FDT_END {
            break;
        }
    }
    let size = u32::try_from(write - start).ok()?;
    blob.get_mut(SIZE_DT_STRUCT..SIZE_DT_STRUCT + 4)?
        .copy_from_slice(&size.to_be_bytes());
    Some(())
}

/// Translates `address`, in `node`'s parent bus, through each bus's `ranges` to
/// a physical address: `None` if a bus has no `ranges` or none covers it.
fn translate<'f, 'a>(tree: &'f Tree<'a>, node: FdtNode<'f, 'a>, address: u64) -> Option<u64> {
    let mut address = address;
    let mut bus = node;
    while let Some(above) = parent(tree, bus) {
        // `above` is a bus whose children's addresses its `ranges` maps into
        // its own parent's (the root's, if it has none).
        let outer = parent(tree, above)
            .map(|outer| outer.cell_sizes())
            .or_else(|| tree.fdt.find_node("/").map(|root| root.cell_sizes()))?;
        let ranges = above.property("ranges")?.value;
        if !ranges.is_empty() {
            let child = above.cell_sizes();
            let parent_cells = outer.address_cells;
            let entry = child.address_cells + parent_cells + child.size_cells;
            address = ranges.chunks_exact(entry * 4).find_map(|range| {
                let field = |from: usize, count: usize| cells(&range[from * 4..(from + count) * 4]);
                let child_base = field(0, child.address_cells);
                let parent_base = field(child.address_cells, parent_cells);
                let size = field(child.address_cells + parent_cells, child.size_cells);
                let offset = address.checked_sub(child_base)?;
                (offset < size).then(|| parent_base + offset)
            })?;
        }
        bus = above;
    }
    Some(address)
}

/// Big-endian cells as one number (at most two cells are meaningful).
fn cells(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(4).fold(0, |value, cell| {
        (value << 32) | u64::from(u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]))
    })
}
