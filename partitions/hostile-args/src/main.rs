//! A guest that makes hypercalls with hostile arguments and checks that each gets
//! the right error code. It prints one `check` line per call and exits with the
//! number of checks that failed (0 when the kernel behaved).
//!
//! Its capabilities (see `tests/systems/hostile-args.toml`): console (slot 0), self
//! (slot 1), and a second self capability with only the `yield` right (slot 2).
#![no_std]
#![no_main]

use septum_sdk::{Boot, Call, Error, RAM_BASE, println};

septum_sdk::entry!(main);

/// One hostile call: what it tries, the call number, its arguments, and the answer
/// the ABI requires.
struct Check {
    name: &'static str,
    call: Call,
    args: [u64; 6],
    expected: Result<(), Error>,
}

const CONSOLE: u64 = 0;
const YIELD_ONLY: u64 = 2;

fn check(name: &'static str, call: Call, args: [u64; 4], expected: Result<(), Error>) -> Check {
    let [a1, a2, a3, a4] = args;
    Check {
        name,
        call,
        args: [a1, a2, a3, a4, 0, 0],
        expected,
    }
}

fn main(boot: Boot) -> u64 {
    let ram_end = RAM_BASE + boot.ram_size;
    let write = Call::ConsoleWrite;
    let checks = [
        check(
            "write-below-ram",
            write,
            [CONSOLE, RAM_BASE - 8, 8, 0],
            Err(Error::BadAddress),
        ),
        check(
            "write-past-ram",
            write,
            [CONSOLE, ram_end - 4, 8, 0],
            Err(Error::BadAddress),
        ),
        check(
            "write-device",
            write,
            [CONSOLE, 0x0900_0000, 4, 0],
            Err(Error::BadAddress),
        ),
        check(
            "write-null",
            write,
            [CONSOLE, 0, 1, 0],
            Err(Error::BadAddress),
        ),
        check(
            "write-wraps",
            write,
            [CONSOLE, u64::MAX - 3, 8, 0],
            Err(Error::BadAddress),
        ),
        check(
            "write-too-long",
            write,
            [CONSOLE, RAM_BASE, 257, 0],
            Err(Error::TooLong),
        ),
        check(
            "write-max-len",
            write,
            [CONSOLE, RAM_BASE, u64::MAX, 0],
            Err(Error::TooLong),
        ),
        check(
            "forged-slot",
            write,
            [16, RAM_BASE, 1, 0],
            Err(Error::NoSuchSlot),
        ),
        check(
            "huge-slot",
            write,
            [u64::MAX, RAM_BASE, 1, 0],
            Err(Error::NoSuchSlot),
        ),
        check(
            "empty-slot",
            Call::Ready,
            [5, 0, 0, 0],
            Err(Error::NoSuchSlot),
        ),
        check(
            "ready-with-self-cap",
            Call::Ready,
            [YIELD_ONLY, 0, 0, 0],
            Err(Error::WrongType),
        ),
        check(
            "shutdown-with-console",
            Call::Shutdown,
            [CONSOLE, 0, 0, 0],
            Err(Error::WrongType),
        ),
        check(
            "exit-without-right",
            Call::Exit,
            [YIELD_ONLY, 0, 0, 0],
            Err(Error::MissingRight),
        ),
        check("null-with-junk-args", Call::Null, [u64::MAX; 4], Ok(())),
    ];
    let mut failed = 0;
    for (name, number, expected) in [
        ("unknown-call", 77, Error::UnknownCall),
        ("huge-call-number", u64::MAX, Error::UnknownCall),
    ] {
        let got = septum_sdk::call(number, [0; 6]).map(|_| ());
        failed += report(name, got, Err(expected));
    }
    for check in checks {
        let got = septum_sdk::call(check.call as u64, check.args).map(|_| ());
        failed += report(check.name, got, check.expected);
    }
    println!("hostile checks done failed={failed}");
    failed
}

/// Prints one check's outcome; returns 1 if it failed.
fn report(name: &str, got: Result<(), Result<Error, u64>>, expected: Result<(), Error>) -> u64 {
    let pass = got == expected.map_err(Ok);
    let described = match got {
        Ok(()) => "ok",
        Err(Ok(error)) => error.name(),
        Err(Err(_)) => "unknown-status",
    };
    println!(
        "check {name} got={described} {}",
        if pass { "pass" } else { "FAIL" }
    );
    u64::from(!pass)
}
