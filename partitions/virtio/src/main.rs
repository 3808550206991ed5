//! A native guest of the kernel's virtio devices, through the SDK's virtio
//! driver (`septum_sdk::virtio`). Its role is in bits 0-7 of the boot argument;
//! bits 16-31 give its description's `ram` and bits 32-47 its `memory.max`, in
//! MiB, since a native partition learns only its kept memory at entry and the
//! device only says how many pages it wants in the balloon:
//!
//! 1. **balloon**: a virtio-balloon guest. It allocates and fills a few pages,
//!    then follows `num_pages`: inflates its free pages (keeping a reserve) and
//!    deflates holes, a chain at a time, writes `actual`, refreshes its
//!    statistics when the device hands their buffer back, and polls (native
//!    partitions get no virtio interrupt). Once it has given pages away it ends
//!    when its balloon is back to where it started, its pages intact.
//! 2. **hostile**: a driver that breaks the rules, one case after another, each
//!    followed by a device reset (see [`hostile`]).
//! 3. **bench**: times inflating and deflating 4,096 pages through virtio, or
//!    with bit 8 through the hypercalls (see [`bench`]).
//!
//! A partition has one balloon front end: a virtio balloon, or a balloon
//! capability (slot 2 here: the bench with bit 8 only).
#![no_std]
#![no_main]

mod bench;
mod hostile;

use septum_abi::layout::{PAGE_SIZE, RAM_BASE};
use septum_sdk::balloon::Allocator;
use septum_sdk::virtio::balloon::{Balloon, BalloonMemory};
use septum_sdk::{Boot, arch, println};

septum_sdk::entry!(main);

/// The balloon capability's slot (the bench's hypercall path).
pub const BALLOON: u64 = 2;

/// The partition's memory, in pages, from its boot argument.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Bytes of kept memory (its RAM size at entry).
    pub kept: u64,
    /// Pages backed at entry: the description's `ram`.
    pub ram_pages: u64,
    /// Pages at its maximum.
    pub max_pages: u64,
}

impl Layout {
    fn of(boot: &Boot) -> Option<Layout> {
        let mib = |shift: u32| (boot.argument >> shift & 0xffff) * (1 << 20) / PAGE_SIZE;
        let layout = Layout {
            kept: boot.ram_size,
            ram_pages: mib(16),
            max_pages: mib(32),
        };
        let kept_pages = layout.kept / PAGE_SIZE;
        (kept_pages <= layout.ram_pages && layout.ram_pages <= layout.max_pages).then_some(layout)
    }

    /// Pages of balloon memory not backed at entry (in the balloon).
    pub fn in_balloon(&self) -> u32 {
        (self.max_pages - self.ram_pages) as u32
    }

    /// Guest address just past the partition's maximum.
    pub fn end(&self) -> u64 {
        RAM_BASE + self.max_pages * PAGE_SIZE
    }

    /// An allocator over its balloon memory, as at entry.
    pub fn allocator(&self) -> Result<Allocator, &'static str> {
        let mut allocator = Allocator::empty();
        match allocator.init(self.kept, self.ram_pages, self.max_pages) {
            true => Ok(allocator),
            false => Err("balloon memory too large for the allocator"),
        }
    }
}

fn main(boot: Boot) -> u64 {
    let Some(layout) = Layout::of(&boot) else {
        println!("virtio: bad memory layout in the boot argument");
        return 1;
    };
    let result = match boot.argument & 0xff {
        1 => balloon(&layout),
        2 => hostile::run(&layout),
        3 => bench::run(&layout, boot.argument & 1 << 8 != 0),
        role => {
            println!("virtio: no role {role}");
            return 1;
        }
    };
    match result {
        Ok(()) => 0,
        Err(why) => {
            println!("virtio: {why}");
            1
        }
    }
}

/// What a page holds: its address, mixed with a salt, at both ends.
fn fill(address: u64) {
    let words = address as *mut u64;
    // SAFETY: a page of balloon memory the allocator just handed out, backed
    // and used by nothing else.
    unsafe {
        words.write_volatile(address ^ SALT);
        words.add(511).write_volatile(!address ^ SALT);
    }
}

fn intact(address: u64) -> bool {
    let words = address as *const u64;
    // SAFETY: a page this partition allocated and filled, still backed.
    unsafe {
        words.read_volatile() == address ^ SALT && words.add(511).read_volatile() == !address ^ SALT
    }
}

const SALT: u64 = 0x5eb7_0b00_1100_0000;

static MEMORY: BalloonMemory = BalloonMemory::new();

/// The balloon role.
fn balloon(layout: &Layout) -> Result<(), &'static str> {
    let mut allocator = layout.allocator()?;
    let mut driver = Balloon::new(&MEMORY, 64, 16).ok_or("no memory for the driver")?;
    let initial = layout.in_balloon();
    driver
        .start(&allocator, initial)
        .map_err(septum_sdk::virtio::Error::name)?;
    println!(
        "virtio balloon: up, num_pages={} actual={initial}",
        driver.num_pages()
    );
    let mut mine = [0u64; 64];
    for page in &mut mine {
        *page = allocator.allocate().ok_or("no page to fill")?;
        fill(*page);
    }
    let (mut gave, mut took, mut moving) = (0u64, 0u64, false);
    loop {
        let step = driver
            .step(&mut allocator)
            .map_err(septum_sdk::virtio::Error::name)?;
        gave += u64::from(step.inflated);
        took += u64::from(step.deflated);
        if !mine.iter().all(|&page| intact(page)) {
            return Err("data lost");
        }
        if step.inflated + step.deflated > 0 {
            moving = true;
            continue;
        }
        if moving {
            moving = false;
            println!(
                "virtio balloon: num_pages={} actual={}, {gave} pages inflated and {took} deflated so far",
                step.num_pages, step.actual
            );
        }
        if gave > 0 && step.actual <= initial {
            println!(
                "virtio balloon: inflated {gave} and deflated {took} pages, holds {} pages again; its {} pages are intact",
                allocator.held_pages(),
                mine.len()
            );
            return Ok(());
        }
        arch::wait();
    }
}

/// Prints `virtio-bench <what> pages=<n> ticks=<t>` and, where the counter's
/// frequency is known, the nanoseconds and pages per second (the host tool's
/// `bench` reads these lines).
pub fn bench_line(what: &str, pages: u64, ticks: u64) {
    match arch::counter_frequency() {
        Some(hz) => {
            let ns = u128::from(ticks) * 1_000_000_000 / u128::from(hz);
            let rate = u128::from(pages) * 1_000_000_000 / ns.max(1);
            println!("virtio-bench {what} pages={pages} ticks={ticks} ns={ns} pages_per_s={rate}");
        }
        None => println!("virtio-bench {what} pages={pages} ticks={ticks}"),
    }
}
