//! More host tests of the balloon hypercalls through the dispatcher
//! (`balloon.rs`), beside `balloon_tests.rs`, whose system they share (and a
//! second ballooning guest, for memory to flow through the pool): a `deflate`
//! (its refusals, an empty pool, the wait that ends when another guest's
//! pages refill it, the scrubbed frame it gets), targets that change nothing,
//! what a restart and a stop do to a ballooned guest's memory, the one memory
//! event a guest has queued at a time, and `memory_info` of a guest without a
//! balloon.

use super::balloon_tests::*;
use super::tests::*;
use super::*;
use crate::caps::{Cap, CapType};
use crate::package::{Kind, PartitionSpec, encode};
use crate::resources::{DEFAULT_SHARES, Resources};
use crate::supervision::Supervision;
use septum_abi::balloon::{INFO_WORDS, Info};
use septum_abi::event::{Kind as EventKind, NO_WAIT};
use septum_abi::{Call, PartitionState};

/// Where the service VM has `memory_info` and `wait_event` write.
const BUFFER: u64 = GUEST_BASE + 0x800;
/// The second ballooning guest, and the service VM's control capability for it.
const BETA: usize = 2;
const CTL_BETA: u64 = 4;

/// The service VM, alpha and beta, both ballooning as alpha does in
/// `balloon_system` (beta's RAM after alpha's); all three run.
fn two_balloons() -> (System, FakeMachine) {
    let cap = |ty: CapType, object: u16| {
        Some(Cap {
            ty,
            rights: ty.possible_rights(),
            object,
            badge: 0,
        })
    };
    let mut service_caps = caps_for(Kind::Service);
    service_caps[SLOT as usize] = cap(CapType::Control, ALPHA as u16);
    service_caps[CTL_BETA as usize] = cap(CapType::Control, BETA as u16);
    let mut guest_caps = caps_for(Kind::Guest);
    guest_caps[SLOT as usize] = cap(CapType::Balloon, 0);
    let spec = |name, kind, caps, ram_size, min, max| PartitionSpec {
        name,
        kind,
        profile: crate::package::Profile::Native,
        ram_size,
        image: &[0; 16],
        entry_offset: 0,
        argument: 0,
        caps,
        resources: Resources::on_cores(min, max, &[0]),
        supervision: Supervision::default(),
    };
    let guest = |name| {
        spec(
            name,
            Kind::Guest,
            guest_caps,
            INITIAL * PAGE,
            MIN * PAGE,
            MAX * PAGE,
        )
    };
    let specs = [
        spec("service", Kind::Service, service_caps, RAM, RAM, RAM),
        guest("alpha"),
        guest("beta"),
    ];
    let bytes = encode(&specs, &[], None).unwrap();
    let package = Package::parse(&bytes).unwrap();
    let guest_ram = INITIAL * PAGE;
    let host = [
        Range::from_start_size(HOST_BASE, RAM).unwrap(),
        Range::from_start_size(HOST_BASE + RAM, guest_ram).unwrap(),
        Range::from_start_size(HOST_BASE + RAM + guest_ram, guest_ram).unwrap(),
    ];
    let balloon_specs = crate::balloon::specs(&package, &host);
    let words = vec![0u32; crate::balloon::Balloon::words_needed(&balloon_specs)].leak();
    let mut sys =
        System::with_balloon(&package, GUEST_BASE, &host, Range::default(), words).unwrap();
    let mut m = FakeMachine {
        ram: vec![0; (RAM + 2 * guest_ram) as usize],
        console: String::new(),
        now_us: 0,
        relocation: Default::default(),
        translations: Vec::new(),
    };
    start(&mut sys, &mut m);
    hcall(&mut sys, &mut m, 0, call(Call::Ready, &[SYSTEM]));
    (sys, m)
}

fn state(sys: &System) -> PartitionState {
    sys.partitions()[ALPHA].life().abi()
}

/// alpha inflates or deflates the guest pages `pages`.
fn batch(sys: &mut System, m: &mut FakeMachine, number: Call, pages: &[u64]) -> Outcome {
    list(m, pages);
    let count = pages.len() as u64;
    hcall(sys, m, ALPHA, call(number, &[SLOT, LIST, count]))
}

/// beta (of [`two_balloons`]) inflates or deflates the guest pages `pages`.
fn beta_batch(sys: &mut System, m: &mut FakeMachine, number: Call, pages: &[u64]) -> Outcome {
    let at = HOST_BASE + RAM + INITIAL * PAGE + (LIST - GUEST_BASE);
    for (i, page) in pages.iter().enumerate() {
        m.write_ram(at + 8 * i as u64, &(GUEST_BASE + page * PAGE).to_le_bytes());
    }
    let count = pages.len() as u64;
    hcall(sys, m, BETA, call(number, &[SLOT, LIST, count]))
}

/// The service VM sets the target of the guest it controls through `slot`.
fn target(sys: &mut System, m: &mut FakeMachine, slot: u64, pages: u64) {
    let o = hcall(sys, m, 0, call(Call::SetMemoryTarget, &[slot, 0, pages]));
    assert_eq!(status(&o), Ok([0; 3]), "target {pages} set");
}

/// Whether the 4 KiB at host address `at` are all zero.
fn zero(m: &mut FakeMachine, at: u64) -> bool {
    let mut bytes = [0xff; 4096];
    m.read_ram(at, &mut bytes);
    bytes.iter().all(|&b| b == 0)
}

/// Host address of alpha's natural frame for guest page `page`.
fn natural(page: u64) -> u64 {
    HOST_BASE + RAM + page * PAGE
}

/// The service VM's `memory_info` about alpha: the info and the results.
fn info(sys: &mut System, m: &mut FakeMachine) -> (Info, [u64; 3]) {
    let o = hcall(sys, m, 0, call(Call::MemoryInfo, &[SLOT, BUFFER]));
    let results = status(&o).expect("memory_info answers");
    let mut bytes = [0u8; INFO_WORDS * 8];
    m.read_ram(HOST_BASE + (BUFFER - GUEST_BASE), &mut bytes);
    let words =
        core::array::from_fn(|i| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap()));
    (Info::from_words(&words), results)
}

/// Partition `index` is given the turns to do the work it owes (scrubbing
/// the pages it gave up, reloading its RAM after a restart).
fn pay(sys: &mut System, m: &mut FakeMachine, index: usize) {
    while sys.owes_work(index) && sys.work(index, m) {}
}

/// A deflate finds the pool empty: that is flow, not a refusal. The guest
/// waits on its balloon; another guest's inflate, scrubbed in that guest's
/// own turns, refills the pool and wakes it, and the deflate then maps it a
/// frame that was scrubbed. Past its target, a page it holds, a page twice
/// and a page past its maximum are refused, each with its own error.
/// Verifies: SK-BAL-001, SK-BAL-002, SK-BAL-004, SK-RIP-003
#[test]
fn a_deflate_waits_for_the_pool_and_gets_a_scrubbed_frame() {
    let (mut sys, mut m) = two_balloons();
    target(&mut sys, &mut m, SLOT, INITIAL + 2);
    target(&mut sys, &mut m, CTL_BETA, INITIAL - 2);
    let news = hcall(&mut sys, &mut m, ALPHA, call(Call::Wait, &[SLOT]));
    assert_eq!(status(&news), Ok([INITIAL + 2, 0, 0]));
    let early = batch(&mut sys, &mut m, Call::Deflate, &[16]);
    assert_eq!(status(&early), Err(Error::PoolEmpty));
    assert!(!m.console.contains("denied"), "an empty pool is no refusal");
    let waits = hcall(&mut sys, &mut m, ALPHA, call(Call::Wait, &[SLOT]));
    assert_eq!(waits.reply, Some(Reply::ok([0; 3])), "no news: it blocks");
    assert_eq!(state(&sys), PartitionState::Blocked);

    let beta_base = HOST_BASE + RAM + INITIAL * PAGE;
    for page in [14, 15] {
        m.write_ram(beta_base + page * PAGE, &[0xa5; 4096]);
    }
    let given = beta_batch(&mut sys, &mut m, Call::Inflate, &[14, 15]);
    assert_eq!(status(&given), Ok([INITIAL - 2, INITIAL - 2, 0]));
    pay(&mut sys, &mut m, BETA);
    assert_eq!((sys.balloon.free(), sys.balloon.leaving()), (2, 0));
    assert_eq!(state(&sys), PartitionState::Runnable, "the refill wakes it");

    let deflated = batch(&mut sys, &mut m, Call::Deflate, &[16]);
    assert_eq!(status(&deflated), Ok([INITIAL + 1, INITIAL + 2, 0]));
    let frame = sys
        .balloon
        .frame(ALPHA, GUEST_BASE + 16 * PAGE)
        .expect("page 16 is backed now");
    let betas = [beta_base + 14 * PAGE, beta_base + 15 * PAGE];
    assert!(betas.contains(&frame), "a frame beta gave");
    assert!(zero(&mut m, frame), "scrubbed before it is mapped");

    let cases: [(&[u64], Error); 4] = [
        (&[16], Error::AlreadyBacked), // it holds that page
        (&[17, 17], Error::Duplicate),
        (&[40], Error::AboveMaximum), // past its maximum
        (&[17, 18], Error::OverTarget),
    ];
    for (pages, error) in cases {
        let o = batch(&mut sys, &mut m, Call::Deflate, pages);
        assert_eq!(status(&o), Err(error), "{pages:?}");
        let line = format!(
            "@@ partition alpha denied call={} error={}",
            Call::Deflate as u64,
            error.name()
        );
        assert!(m.console.contains(&line), "{line:?} not in\n{}", m.console);
        assert_eq!((held(&sys), sys.balloon.free()), (INITIAL + 1, 1));
    }
    let last = batch(&mut sys, &mut m, Call::Deflate, &[17]);
    assert_eq!(status(&last), Ok([INITIAL + 2, INITIAL + 2, 0]));
    assert_eq!(sys.balloon.free(), 0);
}

/// Setting the target a guest has already is no news: a guest waiting on its
/// balloon stays blocked, and `memory_info` shows the target unchanged.
/// Verifies: SK-BAL-003, SK-BAL-006
#[test]
fn the_target_a_guest_has_already_is_no_news() {
    let (mut sys, mut m) = balloon_system();
    let first = hcall(&mut sys, &mut m, ALPHA, call(Call::Wait, &[SLOT]));
    assert_eq!(status(&first), Ok([INITIAL, 0, 0]));
    hcall(&mut sys, &mut m, ALPHA, call(Call::Wait, &[SLOT]));
    assert_eq!(state(&sys), PartitionState::Blocked);
    let same = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::SetMemoryTarget, &[SLOT, 0, INITIAL]),
    );
    assert_eq!(status(&same), Ok([0; 3]));
    assert_eq!(state(&sys), PartitionState::Blocked, "nothing to tell");
    let (info, [shares, pool, _]) = info(&mut sys, &mut m);
    assert_eq!((info.held, info.target), (INITIAL, INITIAL));
    assert_eq!((shares, pool), (u64::from(DEFAULT_SHARES), 0));
    let min = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::SetMemoryTarget, &[SLOT, 0, MIN]),
    );
    assert_eq!(
        status(&min),
        Ok([0; 3]),
        "its minimum is a target it may have"
    );
    assert_eq!(state(&sys), PartitionState::Runnable);
}

/// A restart gives a ballooned guest its initial memory back, scrubbed, its
/// target its initial memory again (its first balloon wait says so), and
/// forgets its report; a restart the pool cannot give the initial memory back
/// to is refused whole.
/// Verifies: SK-BAL-005
#[test]
fn a_restart_gives_a_ballooned_guest_its_initial_memory_back_or_is_refused() {
    let (mut sys, mut m) = two_balloons();
    target(&mut sys, &mut m, SLOT, 12);
    let inflated = batch(&mut sys, &mut m, Call::Inflate, &[12, 13, 14, 15]);
    assert_eq!(status(&inflated), Ok([12, 12, 0]));
    pay(&mut sys, &mut m, ALPHA);
    hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::BalloonReport, &[SLOT, 2, 10, 0]),
    );
    // beta takes two of the four frames alpha gave.
    target(&mut sys, &mut m, CTL_BETA, INITIAL + 2);
    let taken = beta_batch(&mut sys, &mut m, Call::Deflate, &[16, 17]);
    assert!(status(&taken).is_ok());
    let restart = hcall(&mut sys, &mut m, 0, call(Call::Restart, &[SLOT, 0]));
    assert_eq!(status(&restart), Err(Error::PoolEmpty));
    assert_eq!(state(&sys), PartitionState::Runnable, "nothing changed");
    assert_eq!(held(&sys), 12);
    assert!(!m.console.contains("alpha restart"));

    let given = beta_batch(&mut sys, &mut m, Call::Inflate, &[16]);
    assert!(status(&given).is_ok());
    pay(&mut sys, &mut m, BETA);
    let restart = hcall(&mut sys, &mut m, 0, call(Call::Restart, &[SLOT, 0]));
    assert_eq!(status(&restart), Err(Error::PoolEmpty), "three of four");
    let given = beta_batch(&mut sys, &mut m, Call::Inflate, &[17]);
    assert!(status(&given).is_ok());
    pay(&mut sys, &mut m, BETA);
    let restart = hcall(&mut sys, &mut m, 0, call(Call::Restart, &[SLOT, 0]));
    assert_eq!(status(&restart), Ok([0; 3]));
    assert!(m.console.contains("@@ partition alpha restart gen=2"));
    let memory = sys.balloon.memory(ALPHA).unwrap();
    assert_eq!((memory.held, memory.target), (INITIAL, INITIAL));
    assert_eq!(sys.balloon.free(), 0, "the four frames it gave");
    for page in 12..INITIAL {
        let frame = sys.balloon.frame(ALPHA, GUEST_BASE + page * PAGE);
        assert!(zero(&mut m, frame.expect("backed again")), "page {page}");
    }
    let (info, _) = info(&mut sys, &mut m);
    assert_eq!((info.held, info.reports, info.used), (INITIAL, 0, 0));
    pay(&mut sys, &mut m, ALPHA);
    let news = hcall(&mut sys, &mut m, ALPHA, call(Call::Wait, &[SLOT]));
    assert_eq!(status(&news), Ok([INITIAL, 0, 0]), "its target is news");
}

/// A stopped guest keeps only its pinned memory: the rest is scrubbed into
/// the pool in its own turns, and its target drops to its minimum.
/// Verifies: SK-BAL-002, SK-BAL-006
#[test]
fn a_stopped_guest_leaves_its_balloon_memory_to_the_pool() {
    let (mut sys, mut m) = balloon_system();
    m.write_ram(natural(MIN), &[0x5a; 4096]);
    let stop = hcall(&mut sys, &mut m, 0, call(Call::Stop, &[SLOT, 0]));
    assert_eq!(status(&stop), Ok([0; 3]));
    assert_eq!(state(&sys), PartitionState::Stopped);
    assert!(sys.owes_work(ALPHA), "the scrub is its own work");
    pay(&mut sys, &mut m, ALPHA);
    let (info, [_, pool, _]) = info(&mut sys, &mut m);
    assert_eq!((info.held, info.target), (MIN, MIN));
    assert_eq!(pool, INITIAL - MIN, "the rest is in the pool");
    assert!(zero(&mut m, natural(MIN)), "scrubbed");
}

/// However often a guest reports, one memory event about it waits in the
/// service VM's queue; the next report after the service VM took it queues
/// another.
/// Verifies: SK-BAL-006
#[test]
fn one_memory_event_per_guest_waits_at_a_time() {
    let (mut sys, mut m) = balloon_system();
    for free in [5, 6, 7] {
        let o = hcall(
            &mut sys,
            &mut m,
            ALPHA,
            call(Call::BalloonReport, &[SLOT, free, 9, 0]),
        );
        assert!(status(&o).is_ok());
    }
    let take = |sys: &mut System, m: &mut FakeMachine| {
        let o = hcall(sys, m, 0, call(Call::WaitEvent, &[SYSTEM, BUFFER, NO_WAIT]));
        status(&o).expect("wait_event answers")[..2].to_vec()
    };
    let memory = vec![EventKind::Memory as u64, ALPHA as u64];
    assert_eq!(take(&mut sys, &mut m), memory);
    assert_eq!(take(&mut sys, &mut m), [0, 0], "one event, not three");
    assert_eq!(
        sys.balloon.memory(ALPHA).unwrap().report.free,
        7,
        "the last"
    );
    hcall(
        &mut sys,
        &mut m,
        ALPHA,
        call(Call::BalloonReport, &[SLOT, 8, 9, 0]),
    );
    assert_eq!(take(&mut sys, &mut m), memory);
}

/// A guest without a balloon: `memory_info` shows its fixed RAM as held,
/// target, minimum, maximum and initial memory; a target for it is refused.
/// Verifies: SK-BAL-006, SK-MED-002
#[test]
fn a_guest_without_a_balloon_has_its_fixed_memory() {
    let pages = 4;
    let (mut sys, mut m) = supervising(
        SLOT,
        PartitionSpec {
            name: "fixed",
            kind: Kind::Guest,
            profile: crate::package::Profile::Native,
            ram_size: pages * PAGE,
            image: &[0; 16],
            entry_offset: 0,
            argument: 0,
            caps: caps_for(Kind::Guest),
            resources: Resources::on_cores(pages * PAGE, pages * PAGE, &[0]),
            supervision: Supervision::default(),
        },
    );
    let (info, [shares, pool, _]) = info(&mut sys, &mut m);
    assert_eq!(
        (info.held, info.target, info.min, info.max, info.initial),
        (pages, pages, pages, pages, pages)
    );
    assert_eq!((info.reports, shares, pool), (0, 0, 0));
    let target = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::SetMemoryTarget, &[SLOT, 0, pages]),
    );
    assert_eq!(status(&target), Err(Error::BadState));
    let outside = hcall(
        &mut sys,
        &mut m,
        0,
        call(Call::MemoryInfo, &[SLOT, GUEST_BASE + RAM - 8]),
    );
    assert_eq!(status(&outside), Err(Error::BadAddress));
}
