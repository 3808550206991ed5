//! The bench role: inflates and then deflates [`PAGES`] pages of its balloon
//! memory (the highest ones) and prints each direction's time (`virtio-bench`
//! lines, which `cargo run -- bench` reads). A partition has one balloon front
//! end, so the boot argument picks it: without bit 8, the virtio-balloon device,
//! in chains of 1, 64 and 256 frame numbers; with bit 8, the inflate and deflate
//! hypercalls (a balloon capability in slot 2), in batches of 1 and 64, once no
//! other partition is runnable, so that two bench partitions in one system
//! measure one after the other. Both are front ends of the one balloon ledger,
//! so the difference is the transport: a trapped register store and rings in
//! guest memory against a hypercall and a list of addresses. The scrubbing the
//! inflating guest owes is done in its own turn right after each call or
//! notify, and counted.

use septum_abi::balloon::BATCH_MAX;
use septum_abi::layout::PAGE_SIZE;
use septum_sdk::balloon;
use septum_sdk::virtio::balloon::{Balloon, BalloonMemory, PFNS_MAX};
use septum_sdk::{RAM_BASE, arch, println, slot};

use crate::{BALLOON, Layout, bench_line};

/// Pages each run moves.
const PAGES: usize = 4096;

static MEMORY: BalloonMemory = BalloonMemory::new();

/// How a run moves pages.
#[derive(Clone, Copy)]
enum Path {
    /// Chains of this many frame numbers on the device's queues.
    Virtio(usize),
    /// Hypercall batches of this many addresses.
    Hypercall(usize),
}

/// Runs the paths of the front end `hypercalls` picks and prints their figures.
pub fn run(layout: &Layout, hypercalls: bool) -> Result<(), &'static str> {
    let top = RAM_BASE + layout.ram_pages * PAGE_SIZE;
    if layout.ram_pages - layout.kept / PAGE_SIZE < PAGES as u64 {
        return Err("needs 4096 backed balloon pages");
    }
    let mut device = None;
    let paths: &[Path] = if hypercalls {
        while septum_sdk::yield_now(slot::SELF).is_ok_and(|others| others > 0) {}
        println!("virtio-bench: {PAGES} pages each way, hypercalls");
        &[Path::Hypercall(1), Path::Hypercall(BATCH_MAX)]
    } else {
        let allocator = layout.allocator()?;
        let driver = device.insert(Balloon::new(&MEMORY, 16, 0).ok_or("no memory for the driver")?);
        driver
            .start(&allocator, layout.in_balloon())
            .map_err(septum_sdk::virtio::Error::name)?;
        println!("virtio-bench: {PAGES} pages each way, virtio device up");
        &[
            Path::Virtio(1),
            Path::Virtio(BATCH_MAX),
            Path::Virtio(PFNS_MAX),
        ]
    };
    for &path in paths {
        let mut ticks = [0u64; 2];
        for (deflating, spent) in ticks.iter_mut().enumerate() {
            let start = arch::counter();
            move_pages(device.as_mut(), path, top, deflating == 1)?;
            *spent = arch::counter() - start;
        }
        let name = |what: &str| {
            let mut text = heapless::String::<40>::new();
            let _ = match path {
                Path::Virtio(n) => {
                    core::fmt::write(&mut text, format_args!("virtio-{what}-chain-{n}"))
                }
                Path::Hypercall(n) => {
                    core::fmt::write(&mut text, format_args!("hypercall-{what}-batch-{n}"))
                }
            };
            text
        };
        bench_line(&name("inflate"), PAGES as u64, ticks[0]);
        bench_line(&name("deflate"), PAGES as u64, ticks[1]);
    }
    Ok(())
}

/// Moves the [`PAGES`] pages below `top` out of (or back into) the partition.
fn move_pages(
    mut device: Option<&mut Balloon>,
    path: Path,
    top: u64,
    deflate: bool,
) -> Result<(), &'static str> {
    let mut list = [0u64; PFNS_MAX];
    let (Path::Virtio(size) | Path::Hypercall(size)) = path;
    let mut done = 0;
    while done < PAGES {
        for (i, page) in list[..size].iter_mut().enumerate() {
            *page = top - ((done + i) as u64 + 1) * PAGE_SIZE;
        }
        let pages = &list[..size];
        match (path, device.as_deref_mut(), deflate) {
            (Path::Virtio(_), Some(device), false) => {
                device.inflate(pages).map_err(|e| e.name())?
            }
            (Path::Virtio(_), Some(device), true) => device.deflate(pages).map_err(|e| e.name())?,
            (Path::Virtio(_), None, _) => return Err("no device"),
            (Path::Hypercall(_), _, false) => balloon::inflate(BALLOON, pages)
                .map(|_| ())
                .map_err(|e| e.name())?,
            (Path::Hypercall(_), _, true) => balloon::deflate(BALLOON, pages)
                .map(|_| ())
                .map_err(|e| e.name())?,
        }
        done += size;
    }
    Ok(())
}
