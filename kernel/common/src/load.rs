//! Loading a system at boot: placing every partition's RAM, scrubbing it, copying
//! its image, mapping its grants, and building the core's [`System`]; and the
//! kernel memory the core needs beside it (the queues' pool, the balloon's map,
//! the console ring). Runs once, on the boot core, before any partition.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use septum_abi::layout::{RAM_BASE, RECEIVE_WINDOW_BASE};
use septum_abi::{CapType, MAX_PARTITIONS};
use septum_core::balloon::Balloon;
use septum_core::console::output::{Output, RING_SIZE};
use septum_core::event::Event;
use septum_core::flip::Flip;
use septum_core::memory::{FreeRanges, Range};
use septum_core::package::{Package, PartitionSpec};
use septum_core::resources::MAX_VCPUS;
use septum_core::system::System;

use crate::paging::{self, PAGE};
use crate::table_check::Grant;

/// Where the kernel placed one partition.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// Its RAM in the machine.
    pub host_ram: Range,
    /// Its RAM as the partition sees it.
    pub guest_ram: Range,
    /// The machine memory holding its image (the start of its RAM).
    pub image: Range,
    /// Its receive window as it sees it (at
    /// [`RECEIVE_WINDOW_BASE`](septum_abi::layout::RECEIVE_WINDOW_BASE)); empty if
    /// it receives on no queue. Nothing is mapped there at boot.
    pub receive_window: Range,
    /// Whether its RAM and receive window are mapped page by page, with every
    /// last-level table allocated at boot, so that [`Vcpu::map_page`] and
    /// [`Vcpu::unmap_page`] work on them. True for a partition holding a queue end
    /// or a balloon.
    pub page_granular: bool,
    /// Its balloon memory above its RAM at entry, up to its maximum, as it sees
    /// it: nothing is mapped there at boot, but every level-3 table is allocated
    /// (empty without a balloon).
    pub balloon_holes: Range,
}

/// Maps a partition's second-stage tables: its RAM with `ram` attributes at its
/// guest-physical base, and each MMIO block of its granted devices with `device`
/// attributes at the block's own address. Nothing else. A page-granular partition's
/// RAM is mapped with 4 KiB pages only, and the level-3 tables of its receive
/// window are allocated with nothing mapped, so [`Vcpu::map_page`] and
/// [`Vcpu::unmap_page`] find a table for every page of either. Returns what it
/// mapped, for the boot self-test of the tables
/// ([`table_check`](crate::table_check)). Panics with the partition's name if a
/// mapping is refused: this runs at boot, and a system whose grants cannot be
/// mapped must not start.
pub fn map_grants<F: paging::Format, const N: usize>(
    tables: &mut paging::Tables<F>,
    frames: &mut FreeRanges<N>,
    spec: &PartitionSpec<'_>,
    placement: Placement,
    ram: u64,
    device: u64,
) -> Vec<Grant> {
    let (guest, host) = (placement.guest_ram, placement.host_ram.start);
    let mapped = if placement.page_granular {
        tables.map_pages(frames, guest, host, ram)
    } else {
        tables.map(frames, guest, host, ram)
    };
    mapped.unwrap_or_else(|e| panic!("cannot map the RAM of {}: {e:?}", spec.name));
    let mut grants = vec![Grant {
        guest,
        host,
        attributes: ram,
    }];
    if placement.page_granular && !placement.receive_window.is_empty() {
        tables
            .reserve(frames, placement.receive_window)
            .unwrap_or_else(|e| {
                panic!("cannot reserve the receive window of {}: {e:?}", spec.name)
            });
    }
    if !placement.balloon_holes.is_empty() {
        tables
            .reserve(frames, placement.balloon_holes)
            .unwrap_or_else(|e| {
                panic!("cannot reserve the balloon memory of {}: {e:?}", spec.name)
            });
    }
    for block in spec.resources.mmio() {
        let range = Range::from_start_size(block.base, block.size).expect("checked by the package");
        tables
            .map(frames, range, block.base, device)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot map device {:#x} into {}: {e:?}",
                    block.base, spec.name
                )
            });
        grants.push(Grant {
            guest: range,
            host: block.base,
            attributes: device,
        });
    }
    grants
}

/// Each partition's fixed placement (`at`), in package order; `None` where the
/// kernel chooses.
pub type FixedPlacements = heapless::Vec<Option<Range>, MAX_PARTITIONS>;

/// Takes the RAM of every partition placed at a fixed address out of `frames`.
/// The back ends call it first, before the kernel takes any memory for itself,
/// so that the kernel's own choices never take memory a description placed a
/// partition in (a partition placed identity starts at the bottom of guest
/// RAM's machine memory). Panics with the partition's name if its RAM is not
/// free: this runs at boot, and a system that does not fit cannot start.
pub fn claim_fixed_placements<const N: usize>(
    package: &Package<'_>,
    frames: &mut FreeRanges<N>,
) -> FixedPlacements {
    package
        .partitions()
        .map(|spec| {
            let at = spec.resources.at?;
            let wanted = Range::from_start_size(at, spec.ram_size).expect("checked by the package");
            Some(frames.take(wanted).unwrap_or_else(|e| {
                panic!(
                    "RAM of partition {} at {at:#x} is not free: {e:?}",
                    spec.name
                )
            }))
        })
        .collect()
}

/// Loads every partition of `package`: takes its RAM from `frames` (at its fixed
/// placement, else on an `align` boundary), reports where it went on `console`,
/// scrubs all of it with the back end's `zero_page` (the primitive ballooning
/// scrubs with: `dc zva`, `rep stosq`), copies the image to its start, and asks
/// the back end
/// (`make_partition`) to build its translation tables and one vCPU for each core
/// its resources list, vCPU 0 first. Returns the system, the partitions' tables in
/// package order, and the vCPUs in the core's order (`System::vcpus`).
///
/// `fixed` holds the fixed placements [`claim_fixed_placements`] claimed before
/// the kernel took any memory for itself. Panics with the partition's name if
/// its RAM is not free: this runs at boot, before any partition, and a system
/// that does not fit cannot start.
#[allow(clippy::type_complexity)]
pub fn load_partitions<S, V, const N: usize>(
    package: &Package<'_>,
    fixed: &FixedPlacements,
    frames: &mut FreeRanges<N>,
    align: u64,
    console: &mut impl fmt::Write,
    zero_page: unsafe fn(u64),
    mut make_partition: impl FnMut(
        usize,
        &PartitionSpec<'_>,
        Placement,
        &mut FreeRanges<N>,
    ) -> (S, heapless::Vec<V, MAX_VCPUS>),
) -> (System, Box<[S]>, Box<[V]>) {
    let mut host_ram = Vec::with_capacity(package.len());
    let mut spaces = Vec::with_capacity(package.len());
    let mut vcpus = Vec::with_capacity(package.vcpu_count());
    for (index, spec) in package.partitions().enumerate() {
        let ram = fixed[index].unwrap_or_else(|| {
            frames
                .allocate(spec.ram_size, align)
                .unwrap_or_else(|e| panic!("no RAM for partition {}: {e:?}", spec.name))
        });
        let event = Event::PartitionPlaced {
            name: spec.name,
            base: ram.start,
            size: ram.size(),
        };
        let _ = writeln!(console, "{event}");
        // SAFETY: `ram` was free and is now this partition's alone, page-aligned
        // (placements are), and both back ends map RAM at its physical address, so
        // `zero_page`'s contract holds for each of its pages. The image fits in it
        // (Package::parse checks).
        unsafe {
            for page in (ram.start..ram.end).step_by(PAGE as usize) {
                zero_page(page);
            }
            core::ptr::copy_nonoverlapping(
                spec.image.as_ptr(),
                ram.start as *mut u8,
                spec.image.len(),
            );
        }
        let placement = Placement {
            host_ram: ram,
            guest_ram: Range::from_start_size(RAM_BASE, spec.ram_size).expect("RAM size checked"),
            image: Range::from_start_size(ram.start, spec.image.len() as u64).expect("inside RAM"),
            receive_window: Range::from_start_size(
                RECEIVE_WINDOW_BASE,
                spec.resources.receive_window,
            )
            .expect("window size checked by the package"),
            page_granular: spec.balloon()
                || spec.resources.devirtualize
                || spec
                    .caps
                    .iter()
                    .flatten()
                    .any(|cap| matches!(cap.ty, CapType::QueueSend | CapType::QueueReceive)),
            balloon_holes: if spec.balloon() {
                Range::from_start_size(
                    RAM_BASE + spec.ram_size,
                    spec.resources.memory_max - spec.ram_size,
                )
                .expect("limits checked by the package")
            } else {
                Range::default()
            },
        };
        let (space, own) = make_partition(index, &spec, placement, frames);
        assert_eq!(
            own.len(),
            spec.resources.vcpu_cores().len(),
            "one vCPU per core listed"
        );
        spaces.push(space);
        vcpus.extend(own);
        host_ram.push(ram);
    }
    let flip_memory = match Flip::kernel_memory(package.queues()) {
        0 => Range::default(),
        size => frames
            .allocate(size, PAGE)
            .expect("RAM for the queues' pool and copy slots"),
    };
    // SAFETY: the range was free and is now the kernel's alone; RAM is mapped at its
    // physical address.
    unsafe { core::ptr::write_bytes(flip_memory.start as *mut u8, 0, flip_memory.size() as usize) };
    let balloon_specs = septum_core::balloon::specs(package, &host_ram);
    let words = Balloon::words_needed(&balloon_specs);
    let balloon_words: &'static mut [u32] = if words == 0 {
        &mut []
    } else {
        let memory = frames
            .allocate((words as u64 * 4).next_multiple_of(PAGE), PAGE)
            .expect("RAM for the balloon's map and pool");
        // SAFETY: the range was free and is now the kernel's alone, for as long as
        // the kernel runs; RAM is mapped at its physical address, page-aligned
        // (so aligned for u32), and it is zeroed here before the slice exists.
        unsafe {
            core::ptr::write_bytes(memory.start as *mut u8, 0, memory.size() as usize);
            core::slice::from_raw_parts_mut(memory.start as *mut u32, words)
        }
    };
    let mut system = System::with_balloon(package, RAM_BASE, &host_ram, flip_memory, balloon_words)
        .expect("placements match the package");
    if let Some(index) = package
        .partitions()
        .position(|spec| spec.resources.devirtualize)
    {
        lend_relocation_frames(&mut system, index, host_ram[index], frames, zero_page);
    }
    (system, spaces.into_boxed_slice(), vcpus.into_boxed_slice())
}

/// Lends the devirtualizable partition `index` (RAM `ram`) the frames its
/// pages may move to: as many as it has pages, so that any range of them can be
/// evacuated, and the spare that devirtualization needs, zeroed.
fn lend_relocation_frames<const N: usize>(
    system: &mut System,
    index: usize,
    ram: Range,
    frames: &mut FreeRanges<N>,
    zero_page: unsafe fn(u64),
) {
    let extra = frames
        .allocate(ram.size() + PAGE, PAGE)
        .expect("RAM for the devirtualizable partition's moves");
    // SAFETY: the range was free and is now the kernel's, lent to the partition's
    // moves; RAM is mapped at its physical address and the pages are aligned.
    unsafe {
        for page in (extra.start..extra.end).step_by(PAGE as usize) {
            zero_page(page);
        }
    }
    system
        .enable_devirtualization(index, extra)
        .expect("the package placed it identity");
}
/// The console ring (see [`Output`]), in [`RING_SIZE`] bytes of kernel memory
/// taken from `frames`. Panics if there is none: this runs at boot.
pub fn console_output<const N: usize>(frames: &mut FreeRanges<N>) -> Output {
    let memory = frames
        .allocate(RING_SIZE as u64, PAGE)
        .expect("RAM for the console ring");
    // SAFETY: the range was free and is now the kernel's alone, for as long as the
    // kernel runs; RAM is mapped at its physical address, and the slice covers
    // exactly the range.
    Output::new(unsafe { core::slice::from_raw_parts_mut(memory.start as *mut u8, RING_SIZE) })
}
