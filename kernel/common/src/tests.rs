//! Host tests of the shared kernel loop, with a fake vCPU and machine: what it
//! switches, and when it arms a turn's deadline.

use super::*;
use crate::paging::PAGE;
use septum_core::abi::Call;
use septum_core::abi::layout::RAM_BASE;
use septum_core::caps::{CAP_SLOTS, Cap, CapType};
use septum_core::event::Fault;
use septum_core::package::{Kind, Package, PartitionSpec, Profile, encode};
use septum_core::resources::Resources;
use septum_core::supervision::Supervision;
use septum_core::vgic::ListEntry;
use std::cell::RefCell;
use std::rc::Rc;

/// A register frame: which partition's registers it holds, and its reply.
#[derive(Debug, Default)]
struct Frame {
    owner: Option<usize>,
    status: Option<u64>,
    skipped: u32,
}

/// What the fake hardware saw.
#[derive(Debug, Default)]
struct Log {
    deadlines: Vec<TurnEnd>,
    stores: Vec<usize>,
    loads: Vec<usize>,
    restarts: Vec<(usize, u32)>,
    skips: Vec<(usize, u8)>,
    kicks: Vec<usize>,
    /// (partition, guest page, frame mapped there or `None` for an unmap).
    pages: Vec<(usize, u64, Option<u64>)>,
    /// Partitions whose translations were flushed, in order.
    flushes: Vec<usize>,
}

struct FakeVcpu {
    index: usize,
    log: Rc<RefCell<Log>>,
}

/// A partition's tables: they only log what is asked of them.
struct FakeSpace {
    index: usize,
    log: Rc<RefCell<Log>>,
}

impl AddressSpace for FakeSpace {
    fn map_page(&mut self, guest: u64, frame: u64) {
        self.log
            .borrow_mut()
            .pages
            .push((self.index, guest, Some(frame)));
    }
    fn unmap_page(&mut self, guest: u64) {
        self.log.borrow_mut().pages.push((self.index, guest, None));
    }
    fn flush_translations(&mut self) {
        self.log.borrow_mut().flushes.push(self.index);
    }
    fn set_translation(&mut self, _on: bool) {
        unreachable!("these tests have no devirtualizable partition");
    }
    fn relocation_machine(
        &mut self,
        _work: &mut dyn FnMut(&mut dyn septum_core::relocation::Machine),
    ) {
        unreachable!("these tests have no devirtualizable partition");
    }
}

impl Vcpu for FakeVcpu {
    type Frame = Frame;
    type Space = FakeSpace;
    fn set_reply(frame: &mut Frame, reply: Reply) {
        frame.status = Some(reply.status);
    }
    fn skip_instruction(frame: &mut Frame) {
        frame.skipped += 1;
    }
    fn store(&mut self, frame: &Frame) {
        assert_eq!(
            frame.owner,
            Some(self.index),
            "stored another partition's registers"
        );
        self.log.borrow_mut().stores.push(self.index);
    }
    fn load(&mut self, _space: &FakeSpace, frame: &mut Frame) {
        frame.owner = Some(self.index);
        self.log.borrow_mut().loads.push(self.index);
    }
    fn restart(&mut self, generation: u32) {
        self.log
            .borrow_mut()
            .restarts
            .push((self.index, generation));
    }
    fn power_on(&mut self, _entry: u64, _context: u64) {
        unreachable!("the test partitions have one vCPU each")
    }
    fn skip_stored(&mut self, length: u8) {
        self.log.borrow_mut().skips.push((self.index, length));
    }

    fn refill_interrupts(&mut self, _fill: impl FnOnce(&mut [ListEntry]) -> bool) {}

    fn take_undefined(&mut self) {}
}

struct FakeMachine {
    log: Rc<RefCell<Log>>,
    now: u64,
    /// What the UART sent (with `\r\n` line ends).
    console: String,
    /// How many more bytes the UART takes (`None`: any number).
    uart_room: Option<usize>,
    /// The last backlog the kernel reported.
    waiting: bool,
    /// How far the clock moves for each page zeroed (µs).
    us_per_page: u64,
}

impl fmt::Write for FakeMachine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.push_str(s);
        Ok(())
    }
}

impl Machine for FakeMachine {
    fn power_off(&mut self, clean: bool) -> ! {
        panic!("power off clean={clean}")
    }
    fn now_us(&mut self) -> u64 {
        self.now
    }
    fn set_deadline(&mut self, end: TurnEnd) {
        self.log.borrow_mut().deadlines.push(end);
    }
    fn kick(&mut self, cpu: usize) {
        self.log.borrow_mut().kicks.push(cpu);
    }
    fn receive(&mut self) -> Option<u8> {
        None
    }
    fn try_send(&mut self, byte: u8) -> bool {
        if self.uart_room == Some(0) {
            return false;
        }
        self.uart_room = self.uart_room.map(|room| room - 1);
        self.console.push(char::from(byte));
        true
    }
    fn console_waiting(&mut self, waiting: bool) {
        self.waiting = waiting;
    }
    fn code_written(&mut self, _range: Range) {}

    unsafe fn zero_page(&mut self, page: u64) {
        self.now += self.us_per_page;
        // SAFETY: the caller hands a page of the test's host memory that
        // nothing else uses.
        unsafe { core::ptr::write_bytes(page as *mut u8, 0, PAGE as usize) };
    }
}

const RAM: u64 = 0x1_0000;

/// A kernel over real host memory for the service VM and two guests (all on core 0,
/// round robin), each with console, self and (service) system capabilities.
fn kernel() -> (Kernel<FakeVcpu, FakeMachine>, Rc<RefCell<Log>>, Vec<u8>) {
    let log = Rc::new(RefCell::new(Log::default()));
    let image = [0x5eu8; 8];
    let specs: Vec<PartitionSpec> = [
        ("service", Kind::Service),
        ("alpha", Kind::Guest),
        ("beta", Kind::Guest),
    ]
    .into_iter()
    .map(|(name, kind)| {
        let mut caps = [None; CAP_SLOTS];
        let all = |ty: CapType| {
            Some(Cap {
                ty,
                rights: ty.possible_rights(),
                object: 0,
                badge: 0,
            })
        };
        caps[0] = all(CapType::Console);
        caps[1] = all(CapType::SelfPartition);
        if kind == Kind::Service {
            caps[2] = all(CapType::System);
        }
        PartitionSpec {
            name,
            kind,
            profile: Profile::Native,
            ram_size: RAM,
            image: &image,
            entry_offset: 0,
            argument: 0,
            caps,
            resources: Resources::on_cores(RAM, RAM, &[0]),
            supervision: Supervision::default(),
        }
    })
    .collect();
    let package_bytes = Box::leak(encode(&specs, &[], None).unwrap().into_boxed_slice());
    let package = Package::parse(package_bytes).unwrap();
    // "Machine RAM" for the three partitions: a host buffer, so console writes read
    // real memory.
    let ram = vec![0u8; 3 * RAM as usize + 4096];
    let base = (ram.as_ptr() as u64).next_multiple_of(4096);
    let host: Vec<Range> = (0..3)
        .map(|i| Range::from_start_size(base + i * RAM, RAM).unwrap())
        .collect();
    let system = System::new(&package, RAM_BASE, &host, Range::default()).unwrap();
    let vcpus = (0..3)
        .map(|index| FakeVcpu {
            index,
            log: log.clone(),
        })
        .collect();
    let spaces = (0..3)
        .map(|index| FakeSpace {
            index,
            log: log.clone(),
        })
        .collect();
    let machine = FakeMachine {
        log: log.clone(),
        now: 0,
        console: String::new(),
        uart_room: None,
        waiting: false,
        us_per_page: 0,
    };
    let console = Output::new(vec![0; septum_core::console::output::RING_SIZE].leak());
    let trace = crate::trace::Trace::over(vec![[0; 2]; crate::trace::RING_RECORDS].leak());
    (
        Kernel::new(system, spaces, vcpus, machine, package, console, trace),
        log,
        ram,
    )
}

fn call(number: Call, args: &[u64]) -> Trap {
    let mut regs = septum_core::system::CallRegisters {
        number: number as u64,
        args: [0; 6],
    };
    regs.args[..args.len()].copy_from_slice(args);
    Trap::Hypercall(regs)
}

/// Verifies: SK-INIT-001, SK-TMP-003
#[test]
fn a_trap_that_continues_the_turn_does_not_rearm_its_deadline() {
    let (mut kernel, log, _ram) = kernel();
    let mut frame = Frame::default();
    assert_eq!(kernel.start(&mut frame), Run::Vcpu(0));
    assert_eq!(frame.owner, Some(0));
    assert_eq!(log.borrow().deadlines, [TurnEnd::Slice]);
    // Hypercalls that return to the caller leave its turn (and deadline) alone.
    for _ in 0..3 {
        assert_eq!(
            kernel.on_trap(0, &call(Call::Null, &[]), &mut frame),
            Run::Vcpu(0)
        );
    }
    assert_eq!(
        kernel.on_trap(0, &call(Call::Ready, &[2]), &mut frame),
        Run::Vcpu(0)
    );
    assert_eq!(
        (frame.status, frame.skipped),
        (Some(0), 4),
        "each call skipped"
    );
    assert_eq!(log.borrow().deadlines.len(), 1);
    // A preemption starts a new turn (here alpha's).
    assert_eq!(
        kernel.on_trap(0, &Trap::Preempted, &mut frame),
        Run::Vcpu(1)
    );
    assert_eq!(frame.owner, Some(1));
    assert_eq!(log.borrow().deadlines.len(), 2);
}

/// Verifies: SK-TMP-002
#[test]
fn a_yield_switches_vcpus_and_starts_a_turn() {
    let (mut kernel, log, _ram) = kernel();
    let mut frame = Frame::default();
    kernel.start(&mut frame);
    kernel.on_trap(0, &call(Call::Ready, &[2]), &mut frame);
    assert_eq!(
        kernel.on_trap(0, &call(Call::Yield, &[1]), &mut frame),
        Run::Vcpu(1)
    );
    assert_eq!(frame.owner, Some(1));
    assert_eq!(kernel.loaded(0), Some(1));
    assert_eq!(log.borrow().stores, [0]);
    assert_eq!(log.borrow().loads, [0, 1]);
    assert_eq!(log.borrow().deadlines.len(), 2);
    // WFI/HLT: the instruction is skipped (after the two calls' own) and the
    // next partition gets the core.
    assert_eq!(frame.skipped, 2);
    assert_eq!(kernel.on_trap(0, &Trap::Wait, &mut frame), Run::Vcpu(2));
    assert_eq!((frame.owner, frame.skipped), (Some(2), 3));
}

/// Verifies: SK-AUD-011
#[test]
fn the_kernel_loop_records_switches_traps_calls_and_supervision_in_order() {
    use septum_core::trace::{Kind, Supervision, TrapCode};
    let (mut kernel, _log, _ram) = kernel();
    let mut frame = Frame::default();
    kernel.start(&mut frame);
    kernel.on_trap(0, &call(Call::Ready, &[2]), &mut frame);
    kernel.on_trap(0, &call(Call::Yield, &[1]), &mut frame);
    kernel.on_trap(0, &Trap::Wait, &mut frame);
    let records = kernel.trace.records(0);
    let seen: Vec<(Kind, u8, u8)> = records
        .iter()
        .map(|r| (r.kind, r.vcpu, r.code))
        .filter(|(kind, ..)| *kind != Kind::Supervision)
        .collect();
    assert_eq!(
        seen,
        [
            (Kind::Enter, 0, 0),
            (Kind::Call, 0, Call::Ready as u8),
            (Kind::Call, 0, Call::Yield as u8),
            (Kind::Leave, 0, 0),
            (Kind::Enter, 1, 0),
            (Kind::Trap, 1, TrapCode::Wait as u8),
            (Kind::Leave, 1, 0),
            (Kind::Enter, 2, 0),
        ]
    );
    let starts = records
        .iter()
        .filter(|r| r.kind == Kind::Supervision && r.code == Supervision::Start as u8)
        .count();
    assert_eq!(starts, 3, "the service VM and both guests started");
    assert!(records.windows(2).all(|w| w[0].time_us <= w[1].time_us));
}

/// Verifies: SK-HM-001
#[test]
fn a_fault_moves_on_and_the_last_exit_powers_off() {
    let (mut kernel, _log, _ram) = kernel();
    let mut frame = Frame::default();
    kernel.start(&mut frame);
    kernel.on_trap(0, &call(Call::Ready, &[2]), &mut frame);
    kernel.on_trap(0, &call(Call::Yield, &[1]), &mut frame);
    let fault = Fault::new(septum_core::event::Reason::Stage2Data, 0, 0);
    assert_eq!(
        kernel.on_trap(0, &Trap::Fault(fault), &mut frame),
        Run::Vcpu(0)
    );
    // Nothing supervises alpha, so it is stopped; the service VM hears of it first.
    assert_eq!(frame.owner, Some(0));
    let buffer = RAM_BASE + 0x100;
    kernel.on_trap(0, &call(Call::WaitEvent, &[2, buffer]), &mut frame);
    assert_eq!(frame.owner, Some(0));
    kernel.on_trap(0, &call(Call::WaitEvent, &[2, buffer]), &mut frame);
    assert_eq!(frame.owner, Some(2));
    kernel.on_trap(0, &call(Call::Exit, &[1, 0]), &mut frame);
    assert_eq!(frame.owner, Some(0));
    let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        kernel.on_trap(0, &call(Call::Exit, &[1, 0]), &mut frame)
    }));
    let message = *exit.unwrap_err().downcast::<String>().unwrap();
    assert_eq!(message, "power off clean=false");
}

/// Verifies: SK-INIT-001
#[test]
fn a_core_with_nothing_to_run_idles_outside_the_lock() {
    let (kernel, _log, _ram) = kernel();
    let global = Global::new();
    let mut core0 = Frame::default();
    assert_eq!(
        global.init(0, kernel, |kernel| kernel.start(&mut core0)),
        Run::Vcpu(0)
    );
    // Core 1 has no partition of its own, but core 0 has work: it waits, and the
    // back end waits without holding the kernel.
    let mut core1 = Frame::default();
    let run = global.with(1, |kernel| kernel.resume(1, &mut core1));
    assert!(
        matches!(run, Run::Idle { until_us } if until_us > 0),
        "{run:?}"
    );
    assert_eq!(core1.owner, None);
    global.with(0, |kernel| {
        let loaded: Vec<_> = (0..4).map(|cpu| kernel.loaded(cpu)).collect();
        assert_eq!(loaded, [Some(0), None, None, None])
    });
}

/// Verifies: SK-TMP-006
#[test]
fn an_idle_wait_ends_at_a_kick_and_the_lock_counts_contention() {
    let (kernel, _log, _ram) = kernel();
    let global = Global::new();
    global.init(0, kernel, |kernel| kernel.start(&mut Frame::default()));
    // A wait with no deadline sleeps until something wakes it: the time (it looks
    // at the clock and sleeps again) or a kick (it returns at once).
    let wakes = std::cell::RefCell::new(vec![Woken::Kicked, Woken::Time, Woken::Time]);
    global.idle(3, u64::MAX, |until_us| {
        assert_eq!(until_us, u64::MAX);
        wakes.borrow_mut().pop().unwrap()
    });
    assert!(
        wakes.borrow().is_empty(),
        "woken twice by time, then kicked"
    );
    // Core 3 finds the lock held by core 2 once: counted as taken and contended.
    let lock = Global::new();
    lock.init(2, 0u32, |_| ());
    let (taken, contended) = LOCK_COUNTS[3].get();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            lock.with(2, |_| {
                held_tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
            })
        });
        held_rx.recv().unwrap();
        lock.with(3, |value| *value += 1);
    });
    lock.with(3, |value| assert_eq!(*value, 1));
    // Core 3 took `lock` twice, once while core 2 held it.
    assert_eq!(LOCK_COUNTS[3].get(), (taken + 2, contended + 1));
}

/// Verifies: SK-AUD-003
#[test]
#[should_panic(expected = "kernel state re-entered on core 0")]
fn reentering_the_kernel_on_one_core_is_caught() {
    let (kernel, _log, _ram) = kernel();
    let global = Global::new();
    global.init(0, kernel, |_| ());
    global.with(0, |_| global.with(0, |_| ()));
}

/// Verifies: SK-HM-005, SK-RIP-001
#[test]
fn a_faulting_service_vm_is_reloaded_scrubbed_and_entered_afresh() {
    let (mut kernel, log, _ram) = kernel();
    let mut frame = Frame::default();
    kernel.start(&mut frame);
    kernel.on_trap(0, &call(Call::Ready, &[2]), &mut frame);
    let service_ram = kernel.system.partitions()[0].host_ram();
    let marker = service_ram.start + 0x800;
    // SAFETY: `marker` lies in the test's host buffer standing in for the service
    // VM's RAM.
    unsafe { (marker as *mut u64).write(0xdead_beef) };
    let fault = Fault::new(septum_core::event::Reason::UnhandledException, 0, 0);
    assert_eq!(
        kernel.on_trap(0, &Trap::Fault(fault), &mut frame),
        Run::Vcpu(0)
    );
    // SAFETY: as above.
    let (after, image) = unsafe {
        (
            (marker as *const u64).read(),
            (service_ram.start as *const u8).read(),
        )
    };
    assert_eq!((after, image), (0, 0x5e), "RAM scrubbed, image reloaded");
    assert_eq!(log.borrow().restarts, vec![(0, 2)]);
    assert_eq!(frame.owner, Some(0));
    assert_eq!(
        log.borrow().loads.last(),
        Some(&0),
        "entered from its reset state"
    );
    assert_eq!(kernel.system.partitions()[0].generation(), 2);
    assert!(
        kernel
            .machine
            .console
            .contains("@@ partition service restart gen=2")
    );
}

/// Verifies: SK-TMP-005
#[test]
fn console_output_never_waits_for_the_uart() {
    let (mut kernel, _log, _ram) = kernel();
    let mut frame = Frame::default();
    kernel.machine.uart_room = Some(5);
    kernel.start(&mut frame);
    // The start line went into the ring; the UART took 5 bytes and the kernel
    // went on, asking to hear when the UART has room.
    assert_eq!(kernel.machine.console, "@@ pa");
    assert!(kernel.machine.waiting);
    kernel.machine.uart_room = None;
    kernel.drain_console();
    assert_eq!(
        kernel.machine.console,
        "@@ partition service start gen=1 cpu=0\r\n"
    );
    assert!(!kernel.machine.waiting, "nothing waits any more");
}

/// A restarted partition's RAM is reloaded in its own turns, a few pages at a
/// time, while the others run; it is entered only once all of it is reloaded.
/// Verifies: SK-TMP-005, SK-HM-005, SK-RIP-001
#[test]
fn a_restart_reloads_in_the_restarted_partitions_own_turns() {
    let (mut kernel, log, _ram) = kernel();
    let mut frame = Frame::default();
    kernel.start(&mut frame);
    kernel.on_trap(0, &call(Call::Ready, &[2]), &mut frame);
    // Zeroing a page takes 300 µs: a 1 ms turn reloads four of the 16 pages.
    kernel.machine.us_per_page = 300;
    let fault = Fault::new(septum_core::event::Reason::UnhandledException, 0, 0);
    kernel.on_trap(0, &Trap::Fault(fault), &mut frame);
    assert!(kernel.system.owes_work(0));
    assert_eq!(
        frame.owner,
        Some(1),
        "alpha runs while the service VM reloads"
    );
    let mut turns = 1;
    while kernel.system.owes_work(0) {
        assert_ne!(frame.owner, Some(0), "entered before its reload was done");
        kernel.on_trap(0, &call(Call::Yield, &[1]), &mut frame);
        turns += 1;
    }
    assert!(turns >= 4, "16 pages at four a turn took {turns} turns");
    while frame.owner != Some(0) {
        kernel.on_trap(0, &call(Call::Yield, &[1]), &mut frame);
    }
    assert_eq!(log.borrow().restarts, vec![(0, 2)]);
}
