//! The hostile role: a virtio-balloon driver that breaks the rules, one case
//! after another, on hand-built rings of [`SIZE`] buffers. Each case must put the
//! device in `DEVICE_NEEDS_RESET` (the kernel names the violation on its own
//! line) and change nothing else: after each the program reads the status
//! register, checks its memory, prints both, and resets the device.
//!
//! A partition has one balloon front end, so it cannot ask the kernel for its
//! count of pages through a balloon capability. Its memory is checked instead
//! through what a carried-out violation would do to it: wherever a chain
//! carries a page frame number, it names the *bait*, a page of its balloon
//! memory filled with a pattern. Had the kernel inflated it, reading it would
//! fault (and the partition stop); had it taken and given it back, it would
//! read zero. One page is inflated properly first, to give the cases a hole of
//! the partition's own; at the end the device, reset after every case, takes
//! it back, which it could not if a case had backed it.

use septum_abi::layout::PAGE_SIZE;
use septum_sdk::virtio::balloon::{DEFLATE_QUEUE, INFLATE_QUEUE, PFN_SHIFT};
use septum_sdk::virtio::{
    Descriptor, Device, DeviceMemory, Error, Queue, Rings, Transport, feature, register, status,
};
use septum_sdk::{RAM_BASE, println};

use crate::{Layout, fill, intact};
use septum_abi::virtio::descriptor::{INDIRECT, NEXT, WRITE};

/// Buffers of each hand-built queue.
const SIZE: u16 = 8;

static RINGS: [DeviceMemory<Rings>; 3] = [
    DeviceMemory::new(Rings::new()),
    DeviceMemory::new(Rings::new()),
    DeviceMemory::new(Rings::new()),
];
/// The frame numbers the chains carry.
static FRAMES: DeviceMemory<[u32; SIZE as usize]> = DeviceMemory::new([0; SIZE as usize]);

/// The device, its queues and the pages the cases name.
struct Lab {
    transport: Transport,
    queues: [Queue; 3],
    /// Address of the frame-number buffer.
    frames: u64,
    /// Pages this partition holds, by its own count.
    held: u64,
    /// A balloon page, filled, that every chain names.
    bait: u64,
    /// The page inflated properly: a hole of its own.
    hole: u64,
    /// Just past its maximum: outside its RAM.
    outside: u64,
    /// A hole since entry, 1 MiB above its initial RAM: in machine memory, a
    /// translation that ignored holes would land in the victim's pattern (the
    /// victim is placed right after this partition's initial RAM).
    entry_hole: u64,
    failures: u32,
}

/// Runs every case; `Err` only if the set-up fails.
pub fn run(layout: &Layout) -> Result<(), &'static str> {
    let held = layout.ram_pages;
    let top = RAM_BASE + held * PAGE_SIZE;
    if held < layout.kept / PAGE_SIZE + 2
        || layout.max_pages * PAGE_SIZE < held * PAGE_SIZE + (2 << 20)
    {
        return Err("needs two backed balloon pages and 2 MiB of holes");
    }
    let queue = |memory| Queue::new(memory, SIZE).ok_or("ring memory taken");
    let mut lab = Lab {
        transport: Transport::new(Device::Balloon),
        queues: [queue(&RINGS[0])?, queue(&RINGS[1])?, queue(&RINGS[2])?],
        frames: FRAMES.take().ok_or("frame buffer taken")?.as_ptr() as u64,
        held,
        hole: top - PAGE_SIZE,
        bait: top - 2 * PAGE_SIZE,
        outside: layout.end(),
        entry_hole: top + (1 << 20),
        failures: 0,
    };
    fill(lab.bait);
    println!(
        "hostile: {held} pages held, queues of {SIZE}, bait page {:#x}",
        lab.bait
    );
    lab.cases();
    lab.take_hole_back();
    match lab.failures {
        0 => Ok(()),
        _ => Err("a case went wrong"),
    }
}

impl Lab {
    fn cases(&mut self) {
        // Chains of one inflate queue.
        self.chain("loop", &[(0, NEXT, 1), (1, NEXT, 0)]);
        let long: [(u16, u16, u16); SIZE as usize] =
            core::array::from_fn(|i| (i as u16, NEXT, (i as u16 + 1) % SIZE));
        self.chain("long-chain", &long);
        let five: [(u16, u16, u16); 5] =
            core::array::from_fn(|i| (i as u16, if i < 4 { NEXT } else { 0 }, i as u16 + 1));
        self.chain("five-buffers", &five);
        self.chain("next-past-queue", &[(0, NEXT, SIZE)]);
        self.chain("indirect", &[(0, INDIRECT, 0)]);
        self.chain("device-writable", &[(0, WRITE, 0)]);
        self.buffer("outside", self.outside);
        self.buffer("below-ram", RAM_BASE - PAGE_SIZE);
        self.buffer("entry-hole", self.entry_hole);
        if self.inflate_hole() {
            self.buffer("hole", self.hole);
        }
        self.avail_jump();
        // Rings where they may not be.
        self.rings("ring-outside", [Some(self.outside), None, None]);
        self.rings("ring-hole", [None, None, Some(self.hole)]);
        self.rings("ring-entry-hole", [None, None, Some(self.entry_hole)]);
        self.rings(
            "ring-misaligned",
            [None, Some(self.queues[0].addresses()[1] + 1), None],
        );
        // Registers written in the wrong state.
        self.queue_num_after_driver_ok();
        self.queue_num_not_power_of_two();
        self.features_without_version_1(false);
        self.features_without_version_1(true);
        self.features_after_features_ok();
        self.status_bit_dropped();
        self.notify_missing_queue();
    }

    /// Resets the device and sets it up properly: features, three queues,
    /// `DRIVER_OK`.
    fn up(&mut self) -> Result<(), Error> {
        self.reset();
        self.transport.negotiate(
            Device::Balloon,
            feature::BALLOON_MUST_TELL_HOST | feature::BALLOON_STATS_VQ,
        )?;
        for (index, queue) in self.queues.iter().enumerate() {
            self.transport.set_queue(index as u16, queue)?;
        }
        self.transport.driver_ok()
    }

    fn reset(&mut self) {
        if !self.transport.reset() {
            println!("hostile: status not 0 after a reset: FAILED");
            self.failures += 1;
        }
        for queue in &mut self.queues {
            queue.reset();
        }
    }

    /// Writes `page`'s frame number in the buffer every chain names.
    fn set_frame(&mut self, page: u64) {
        // SAFETY: the buffer is this program's (taken from `FRAMES`); a device
        // never holds it across a case.
        unsafe { (self.frames as *mut u32).write_volatile((page >> PFN_SHIFT) as u32) };
    }

    /// Reports the case: the status register, whether the bait is intact
    /// (reading it faults if the kernel took it); then resets the device.
    fn verdict(&mut self, name: &str) {
        let now = self.transport.status();
        let kept = intact(self.bait);
        let reset = now & status::DEVICE_NEEDS_RESET != 0;
        println!(
            "hostile: {name}: {}, memory {} (status {now:#x})",
            if reset { "needs-reset" } else { "NO-RESET" },
            if kept { "unchanged" } else { "CHANGED" }
        );
        self.failures += u32::from(!reset || !kept);
        self.reset();
    }

    /// Brings the device up, or reports why not and counts a failure.
    fn up_or_fail(&mut self, name: &str) -> bool {
        match self.up() {
            Ok(()) => true,
            Err(error) => {
                println!("hostile: {name}: set-up failed: {}: FAILED", error.name());
                self.failures += 1;
                self.reset();
                false
            }
        }
    }

    /// A chain on the inflate queue of `links` (descriptor, flags, next), each
    /// naming the bait's frame number.
    fn chain(&mut self, name: &str, links: &[(u16, u16, u16)]) {
        if !self.up_or_fail(name) {
            return;
        }
        self.set_frame(self.bait);
        let queue = &mut self.queues[INFLATE_QUEUE];
        for &(index, flags, next) in links {
            let length = if flags & INDIRECT != 0 { 16 } else { 4 };
            queue.set_descriptor(
                index,
                Descriptor {
                    address: self.frames,
                    length,
                    flags,
                    next,
                },
            );
        }
        queue.publish(links[0].0);
        self.transport.notify(INFLATE_QUEUE as u16);
        self.verdict(name);
    }

    /// An inflate chain of one buffer at `address`.
    fn buffer(&mut self, name: &str, address: u64) {
        if !self.up_or_fail(name) {
            return;
        }
        let queue = &mut self.queues[INFLATE_QUEUE];
        let _ = queue.add(&[(address, 4, false)]);
        self.transport.notify(INFLATE_QUEUE as u16);
        self.verdict(name);
    }

    /// Inflates the hole page properly; `true` if the device took it.
    fn inflate_hole(&mut self) -> bool {
        if !self.up_or_fail("inflate") {
            return false;
        }
        self.set_frame(self.hole);
        let queue = &mut self.queues[INFLATE_QUEUE];
        let _ = queue.add(&[(self.frames, 4, false)]);
        self.transport.notify(INFLATE_QUEUE as u16);
        let ok = self.queues[INFLATE_QUEUE].take_used().is_some()
            && !self.transport.needs_reset()
            && intact(self.bait);
        self.held -= 1;
        println!(
            "hostile: inflated page {:#x} properly: {}, holds {}",
            self.hole,
            if ok { "used" } else { "FAILED" },
            self.held
        );
        self.failures += u32::from(!ok);
        self.reset();
        ok
    }

    /// A proper chain, then an available index more than the queue ahead.
    fn avail_jump(&mut self) {
        if !self.up_or_fail("avail-jump") {
            return;
        }
        self.set_frame(self.bait);
        let queue = &mut self.queues[INFLATE_QUEUE];
        queue.set_descriptor(
            0,
            Descriptor {
                address: self.frames,
                length: 4,
                flags: 0,
                next: 0,
            },
        );
        queue.publish(0);
        queue.set_avail_index(queue.avail_index().wrapping_add(SIZE));
        self.transport.notify(INFLATE_QUEUE as u16);
        self.verdict("avail-jump");
    }

    /// Sets up the inflate queue with the ring addresses of `moved` where given
    /// (descriptor table, available ring, used ring), then goes on as a driver
    /// would: ready, `DRIVER_OK`, a proper chain, a notify. The device must
    /// refuse the rings at one of those steps.
    fn rings(&mut self, name: &str, moved: [Option<u64>; 3]) {
        self.reset();
        if let Err(error) = self.transport.negotiate(Device::Balloon, 0) {
            println!("hostile: {name}: set-up failed: {}: FAILED", error.name());
            self.failures += 1;
            return;
        }
        let own = self.queues[INFLATE_QUEUE].addresses();
        let [descriptors, driver, device] = core::array::from_fn(|i| moved[i].unwrap_or(own[i]));
        self.transport
            .write(register::QUEUE_SEL, INFLATE_QUEUE as u32);
        self.transport.write(register::QUEUE_NUM, u32::from(SIZE));
        self.transport
            .set_queue_addresses(descriptors, driver, device);
        self.transport.write(register::QUEUE_READY, 1);
        if !self.transport.needs_reset() {
            let _ = self.transport.driver_ok();
        }
        if !self.transport.needs_reset() {
            self.set_frame(self.bait);
            let _ = self.queues[INFLATE_QUEUE].add(&[(self.frames, 4, false)]);
            self.transport.notify(INFLATE_QUEUE as u16);
        }
        self.verdict(name);
    }

    fn queue_num_after_driver_ok(&mut self) {
        if !self.up_or_fail("queue-num-after-driver-ok") {
            return;
        }
        self.transport
            .write(register::QUEUE_SEL, INFLATE_QUEUE as u32);
        self.transport
            .write(register::QUEUE_NUM, u32::from(SIZE / 2));
        self.verdict("queue-num-after-driver-ok");
    }

    fn queue_num_not_power_of_two(&mut self) {
        self.reset();
        let _ = self.transport.negotiate(Device::Balloon, 0);
        self.transport
            .write(register::QUEUE_SEL, INFLATE_QUEUE as u32);
        self.transport.write(register::QUEUE_NUM, 6);
        self.verdict("queue-num-not-power-of-two");
    }

    /// Features without `VERSION_1`, then `FEATURES_OK`: the device must
    /// refuse them by leaving `FEATURES_OK` clear. Then `DRIVER_OK`
    /// regardless: alone (`together` false), or in the same status write as
    /// `FEATURES_OK` again.
    fn features_without_version_1(&mut self, together: bool) {
        self.reset();
        let _ = self.transport.identify(Device::Balloon);
        let driver = status::ACKNOWLEDGE | status::DRIVER;
        self.transport.write(register::STATUS, status::ACKNOWLEDGE);
        self.transport.write(register::STATUS, driver);
        self.transport
            .write_features(feature::BALLOON_MUST_TELL_HOST | feature::BALLOON_STATS_VQ);
        if together {
            let all = driver | status::FEATURES_OK | status::DRIVER_OK;
            self.transport.write(register::STATUS, all);
            return self.verdict("features-ok-and-driver-ok-without-version-1");
        }
        self.transport
            .write(register::STATUS, driver | status::FEATURES_OK);
        let refused = self.transport.status() & status::FEATURES_OK == 0;
        println!(
            "hostile: features without VERSION_1: FEATURES_OK {}",
            if refused { "reads back clear" } else { "KEPT" }
        );
        self.failures += u32::from(!refused);
        self.transport
            .write(register::STATUS, driver | status::DRIVER_OK);
        self.verdict("driver-ok-without-features-ok");
    }

    /// Features written again once `FEATURES_OK` is set.
    fn features_after_features_ok(&mut self) {
        self.reset();
        let _ = self.transport.negotiate(Device::Balloon, 0);
        self.transport.write_features(feature::VERSION_1);
        self.verdict("features-after-features-ok");
    }

    /// A notify of a queue the balloon does not have.
    fn notify_missing_queue(&mut self) {
        if !self.up_or_fail("notify-missing-queue") {
            return;
        }
        self.transport.notify(3);
        self.verdict("notify-missing-queue");
    }

    /// A live device's status written with `DRIVER_OK` dropped.
    fn status_bit_dropped(&mut self) {
        if !self.up_or_fail("status-bit-dropped") {
            return;
        }
        let now = self.transport.status();
        self.transport
            .write(register::STATUS, now & !status::DRIVER_OK);
        self.verdict("status-bit-dropped");
    }

    /// After every case and reset the device still works: it takes the hole
    /// back on the deflate queue.
    fn take_hole_back(&mut self) {
        if !self.up_or_fail("deflate") {
            return;
        }
        self.set_frame(self.hole);
        let _ = self.queues[DEFLATE_QUEUE].add(&[(self.frames, 4, false)]);
        self.transport.notify(DEFLATE_QUEUE as u16);
        let used = self.queues[DEFLATE_QUEUE].take_used().is_some();
        // SAFETY: the page was just deflated: backed again, read as zero.
        let zero = used && unsafe { (self.hole as *const u64).read_volatile() } == 0;
        let ok = zero && !self.transport.needs_reset() && intact(self.bait);
        self.held += 1;
        println!(
            "hostile: after every reset the device took the page back: {}, holds {}",
            if ok { "ok" } else { "FAILED" },
            self.held
        );
        self.failures += u32::from(!ok);
        self.reset();
    }
}
