//! The guest SDK: what a Septum partition program links against.
//!
//! It provides the entry stub (the program's `main` is named with [`entry!`]), typed
//! wrappers for every hypercall of [`septum_abi`], a console with [`println!`], and a
//! panic handler that prints the panic and exits the partition; beyond that, the
//! drivers of the kernel's devices: the balloon, its own small virtio driver, and IP
//! networking over virtio-net ([`net`]) with the heap it needs ([`heap`]). Only
//! `arch/<arch>.rs` differs between architectures: the entry stub, the hypercall
//! instruction and the counter.
#![no_std]

extern crate alloc;

#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
#[cfg_attr(target_arch = "x86_64", path = "arch/x86_64.rs")]
pub mod arch;
pub mod balloon;
pub mod heap;
pub mod net;
pub mod queue;
pub mod supervise;
pub mod virtio;

use core::fmt;

pub use septum_abi as abi;
pub use septum_abi::layout::RAM_BASE;
pub use septum_abi::{Call, Error};

/// What the kernel hands a partition at entry.
#[derive(Clone, Copy, Debug)]
pub struct Boot {
    /// Bytes of RAM, starting at [`RAM_BASE`].
    pub ram_size: u64,
    /// The boot argument from the system description.
    pub argument: u64,
    /// 1 at first start, one more after each restart.
    pub generation: u32,
}

unsafe extern "Rust" {
    /// The partition's main function, defined by [`entry!`].
    safe fn __septum_partition_main(boot: Boot) -> u64;
}

/// The capability slots the SDK's conveniences ([`println!`], the panic handler,
/// returning from `main`) use. By convention a partition's description lists its
/// console capability first and its self capability second, and the service VM's
/// system capability third; a program that lays out its table differently passes
/// its own slots to the calls below.
pub mod slot {
    /// The console capability (right `write`).
    pub const CONSOLE: u64 = 0;
    /// The self capability (rights `yield`, `exit`).
    pub const SELF: u64 = 1;
    /// The service VM's system capability (rights `ready`, `shutdown`).
    pub const SYSTEM: u64 = 2;
}

/// Called by the entry stub with the registers the kernel set.
extern "C" fn start(ram_size: u64, argument: u64, generation: u64) -> ! {
    let code = __septum_partition_main(Boot {
        ram_size,
        argument,
        generation: generation as u32,
    });
    exit(slot::SELF, code)
}

/// Names the partition's main function: `fn main(boot: Boot) -> u64`. Its return
/// value becomes the partition's exit code.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __septum_partition_main(boot: $crate::Boot) -> u64 {
            let main: fn($crate::Boot) -> u64 = $main;
            main(boot)
        }
    };
}

/// Makes a raw hypercall and splits the status into `Ok(results)` or the error.
/// Unknown non-zero statuses are returned as `Err(Err(status))`.
pub fn call(call: u64, args: [u64; 6]) -> Result<[u64; 3], Result<Error, u64>> {
    let (status, results) = arch::hypercall(call, args);
    Error::from_status(status).map(|()| results)
}

pub(crate) fn typed(call_number: Call, args: [u64; 6]) -> Result<[u64; 3], Error> {
    call(call_number as u64, args).map_err(|e| e.unwrap_or(Error::InvalidArgument))
}

/// The null hypercall: a round trip to the kernel and back.
pub fn null() -> Result<(), Error> {
    typed(Call::Null, [0; 6]).map(|_| ())
}

/// Writes bytes to the console through the console capability in `slot`, in
/// chunks the kernel accepts.
pub fn console_write(slot: u64, bytes: &[u8]) -> Result<(), Error> {
    for chunk in bytes.chunks(septum_abi::CONSOLE_WRITE_MAX as usize) {
        typed(
            Call::ConsoleWrite,
            [slot, chunk.as_ptr() as u64, chunk.len() as u64, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Service VM: reports ready through the system capability in `slot`, which lets
/// the guests start.
pub fn ready(slot: u64) -> Result<(), Error> {
    typed(Call::Ready, [slot, 0, 0, 0, 0, 0]).map(|_| ())
}

/// Gives up the rest of this turn (self capability in `slot`); returns how many
/// other partitions can run.
pub fn yield_now(slot: u64) -> Result<u64, Error> {
    typed(Call::Yield, [slot, 0, 0, 0, 0, 0]).map(|r| r[0])
}

/// Yields (self capability in the SDK's slot) until `ms` milliseconds have passed
/// on the counter. A yield returns at once when nothing else can run, so only the
/// counter paces a program. On x86, where the counter's frequency is not known, a
/// tick is taken as a nanosecond (Bochs' counter runs at its `ips`, 50 MHz on the
/// pc board: there a millisecond here lasts 20 of the emulated machine's).
pub fn pause_ms(ms: u64) {
    let ticks = ms_to_ticks(ms);
    let start = arch::counter();
    while arch::counter().wrapping_sub(start) < ticks {
        let _ = yield_now(slot::SELF);
    }
}

/// Counter ticks in `ms` milliseconds, as [`pause_ms`] counts them.
pub fn ms_to_ticks(ms: u64) -> u64 {
    ms.saturating_mul(arch::counter_frequency().unwrap_or(1_000_000_000) / 1000)
}

/// Starts vCPU `vcpu` of this partition (1 to its vCPU count minus one; it runs
/// on the core its description gives), running `main(argument)` on `stack`, which
/// it uses for as long as it runs. On aarch64 this is the standard PSCI `CPU_ON`,
/// on x86_64 Septum's `vcpu_start`. [`Error::BadState`] if it is already on.
pub fn start_vcpu(
    vcpu: u64,
    stack: &'static mut [u64],
    main: extern "C" fn(u64) -> !,
    argument: u64,
) -> Result<(), Error> {
    // The two words under the 16-byte aligned top hold what the entry stub calls.
    let range = stack.as_ptr_range();
    let top = (range.end as u64) & !15;
    let below = (top - range.start as u64) / 8;
    if below < 4 {
        return Err(Error::TooLong);
    }
    let at = below as usize - 2;
    stack[at] = main as usize as u64;
    stack[at + 1] = argument;
    arch::start_vcpu(vcpu, top)
}

/// A devirtualizable partition running natively asks to be taken under the
/// kernel's translation (self capability in `slot`); [`Error::BadState`] if it
/// already is.
pub fn virtualize(slot: u64) -> Result<(), Error> {
    typed(Call::Virtualize, [slot, 0, 0, 0, 0, 0]).map(|_| ())
}

/// Ends this partition with `code` (self capability in `slot`). If the kernel
/// refuses, the partition waits for good.
pub fn exit(slot: u64, code: u64) -> ! {
    let _ = typed(Call::Exit, [slot, code, 0, 0, 0, 0]);
    wait_forever()
}

/// Service VM: powers the system off through the system capability in `slot`;
/// `code` 0 is a clean shutdown. Returns only with the kernel's refusal.
pub fn shutdown(slot: u64, code: u64) -> Error {
    match typed(Call::Shutdown, [slot, code, 0, 0, 0, 0]) {
        Err(error) => error,
        // The kernel never returns from a successful shutdown.
        Ok(_) => wait_forever(),
    }
}

fn wait_forever() -> ! {
    loop {
        arch::wait();
    }
}

/// Interrupts of the devices a partition is granted. The kernel delivers each
/// granted device interrupt to its partition only, as a virtual interrupt with the
/// same number (aarch64: the GIC INTID; x86: the legacy IRQ line). Enabling them
/// installs the SDK's vectors; an exception still ends the partition with a fault
/// (aarch64: `unknown-trap` from those vectors; x86: `unhandled-exception`, since the
/// kernel intercepts every exception first).
pub mod interrupts {
    use core::sync::atomic::{AtomicUsize, Ordering};

    static HANDLER: AtomicUsize = AtomicUsize::new(0);

    /// Installs `handler`, called with each interrupt's number, and lets
    /// interrupts in.
    pub fn enable(handler: fn(u32)) {
        HANDLER.store(handler as usize, Ordering::Release);
        crate::arch::interrupts_enable();
    }

    /// Holds interrupts back (they stay pending) until [`unmask`].
    pub fn mask() {
        crate::arch::interrupts_mask();
    }

    /// Lets interrupts in again; one that became pending meanwhile is taken at once.
    pub fn unmask() {
        crate::arch::interrupts_unmask();
    }

    /// Called by the architecture's interrupt entry with the interrupt's number.
    pub(crate) fn dispatch(number: u32) {
        let handler = HANDLER.load(Ordering::Acquire);
        if handler != 0 {
            // SAFETY: HANDLER only ever holds a `fn(u32)` stored by `enable`.
            let handler: fn(u32) = unsafe { core::mem::transmute::<usize, fn(u32)>(handler) };
            handler(number);
        }
    }
}

/// The console capability in slot [`slot::CONSOLE`] as a `fmt::Write` sink.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        console_write(slot::CONSOLE, s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// Prints to the console (slot [`slot::CONSOLE`]), with a newline.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Console, $($arg)*);
    }};
}

/// Prints the panic and reports it to the kernel, which suspends this partition
/// for the service VM to decide; exits with code 101 if the kernel refuses.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic: {info}");
    let _ = typed(Call::Panic, [slot::SELF, 101, 0, 0, 0, 0]);
    exit(slot::SELF, 101)
}
