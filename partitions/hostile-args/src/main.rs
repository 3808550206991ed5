//! A guest that makes hypercalls with hostile arguments and checks that each gets
//! the right error code. It prints one `check` line per call and exits with the
//! number of checks that failed (0 when the kernel behaved).
#![no_std]
#![no_main]

use septum_sdk::{Boot, Call, Error, RAM_BASE, println};

septum_sdk::entry!(main);

/// One hostile call: its name, number, arguments and the answer the ABI requires.
type Check = (&'static str, u64, [u64; 6], Result<(), Error>);

fn main(boot: Boot) -> u64 {
    let ram_end = RAM_BASE + boot.ram_size;
    let console = Call::ConsoleWrite as u64;
    let checks: [Check; 12] = [
        ("unknown-call", 77, [0; 6], Err(Error::UnknownCall)),
        (
            "huge-call-number",
            u64::MAX,
            [0; 6],
            Err(Error::UnknownCall),
        ),
        (
            "write-below-ram",
            console,
            [RAM_BASE - 8, 8, 0, 0, 0, 0],
            Err(Error::BadAddress),
        ),
        (
            "write-past-ram",
            console,
            [ram_end - 4, 8, 0, 0, 0, 0],
            Err(Error::BadAddress),
        ),
        (
            "write-device",
            console,
            [0x0900_0000, 4, 0, 0, 0, 0],
            Err(Error::BadAddress),
        ),
        (
            "write-null",
            console,
            [0, 1, 0, 0, 0, 0],
            Err(Error::BadAddress),
        ),
        (
            "write-wraps",
            console,
            [u64::MAX - 3, 8, 0, 0, 0, 0],
            Err(Error::BadAddress),
        ),
        (
            "write-too-long",
            console,
            [RAM_BASE, 257, 0, 0, 0, 0],
            Err(Error::TooLong),
        ),
        (
            "write-max-len",
            console,
            [RAM_BASE, u64::MAX, 0, 0, 0, 0],
            Err(Error::TooLong),
        ),
        (
            "guest-ready",
            Call::Ready as u64,
            [0; 6],
            Err(Error::Denied),
        ),
        (
            "guest-shutdown",
            Call::Shutdown as u64,
            [0; 6],
            Err(Error::Denied),
        ),
        (
            "null-with-junk-args",
            Call::Null as u64,
            [u64::MAX; 6],
            Ok(()),
        ),
    ];
    let mut failed = 0;
    for (name, number, args, expected) in checks {
        let got = septum_sdk::call(number, args).map(|_| ());
        let pass = got == expected.map_err(Ok);
        failed += u64::from(!pass);
        println!(
            "check {name} got={} {}",
            describe(got),
            if pass { "pass" } else { "FAIL" }
        );
    }
    println!("hostile checks done failed={failed}");
    failed
}

fn describe(result: Result<(), Result<Error, u64>>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(Ok(error)) => error.name(),
        Err(Err(_)) => "unknown-status",
    }
}
