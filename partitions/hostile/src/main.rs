//! A hostile partition: each instance tries one forbidden thing, chosen by its boot
//! argument, and must be stopped by the kernel before it succeeds. Argument 99 makes
//! it the victim instead: it fills its RAM with a pattern, waits until every other
//! guest is gone, and checks that the pattern is intact.
//!
//! | argument | probe | aarch64 | x86_64 |
//! |---|---|---|---|
//! | 0 | read-other-ram | reads 32 MiB past its RAM base, where other partitions' RAM lies in machine memory | the same |
//! | 1 | write-kernel | writes just past its RAM, where the kernel lies in machine memory | the same |
//! | 2 | touch-interrupt-controller | writes the GIC distributor | writes the local APIC |
//! | 3 | privileged-register | writes HCR_EL2 from EL1 | writes IA32_LSTAR |
//! | 4 | firmware-or-console | calls the secure monitor (SMC) | writes COM1, the kernel's console port |
//! | 5 | execute-outside | jumps to guest-physical 0 | the same |
//!
//! Arguments from 100 are attacks on time instead (see [`time`]).
//!
//! The hypercall probes (forged and empty slots, wrong types, missing rights, bad
//! addresses) are `partitions/hostile-args`.
#![no_std]
#![no_main]

use septum_sdk::{Boot, RAM_BASE, println, slot};

septum_sdk::entry!(main);

/// The victim's argument.
const VICTIM: u64 = 99;

/// The probes, by argument.
const PROBES: [&str; 6] = [
    "read-other-ram",
    "write-kernel",
    "touch-interrupt-controller",
    "privileged-register",
    "firmware-or-console",
    "execute-outside",
];

mod time;

fn main(boot: Boot) -> u64 {
    if boot.argument == VICTIM {
        return victim(boot.ram_size);
    }
    if (time::FIRST..time::FIRST + time::COUNT).contains(&(boot.argument % 1000)) {
        return time::attack(&boot);
    }
    let Some(&name) = PROBES.get(boot.argument as usize) else {
        println!("no probe {}", boot.argument);
        return 2;
    };
    let what = probes::TARGETS[boot.argument as usize];
    println!("probe {name} attempting: {what}");
    probes::attempt(boot.argument, boot.ram_size);
    println!("probe {name} SUCCEEDED: the kernel failed to stop me");
    1
}

/// Fills the RAM above the stack's reach with a pattern, waits until no other
/// partition is runnable, and checks the pattern.
fn victim(ram_size: u64) -> u64 {
    let start = RAM_BASE + 0x10_0000;
    let end = RAM_BASE + ram_size - 0x1_0000;
    let words = (end - start) / 8;
    for i in 0..words {
        // SAFETY: [start, end) is this partition's own RAM, above its image and
        // below its stack.
        unsafe { core::ptr::write_volatile((start + i * 8) as *mut u64, pattern(i)) };
    }
    println!("victim wrote {} KiB of pattern", (end - start) / 1024);
    // Yield until no other partition is runnable (the service VM waiting for
    // events is not): every attacker has been stopped or has ended.
    while septum_sdk::yield_now(slot::SELF).is_ok_and(|others| others > 0) {}
    let mut damaged = 0u64;
    for i in 0..words {
        // SAFETY: as above.
        let value = unsafe { core::ptr::read_volatile((start + i * 8) as *const u64) };
        damaged += u64::from(value != pattern(i));
    }
    println!(
        "victim checked {} KiB: {}",
        (end - start) / 1024,
        if damaged == 0 { "intact" } else { "DAMAGED" }
    );
    damaged
}

fn pattern(index: u64) -> u64 {
    index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eb7_0000_0000_0000
}

#[cfg(target_arch = "aarch64")]
mod probes {
    use core::arch::asm;
    use septum_sdk::RAM_BASE;

    /// What each probe aims at, in [`super::PROBES`] order.
    pub const TARGETS: [&str; 6] = [
        "read other partitions' RAM",
        "write the kernel's memory",
        "write the GIC distributor",
        "write HCR_EL2",
        "call the secure monitor",
        "jump to address 0",
    ];

    pub fn attempt(probe: u64, ram_size: u64) {
        // SAFETY: every access below is meant to trap to the kernel, which
        // stops this partition before the access completes.
        unsafe {
            match probe {
                0 => {
                    let _ = core::ptr::read_volatile((RAM_BASE + 0x200_0000) as *const u64);
                }
                1 => core::ptr::write_volatile((RAM_BASE + ram_size) as *mut u64, 0),
                2 => core::ptr::write_volatile(0x0800_0000 as *mut u32, 0),
                3 => asm!("msr hcr_el2, xzr"),
                4 => asm!("smc #0"),
                _ => asm!("br {}", in(reg) 0u64),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod probes {
    use core::arch::asm;
    use septum_sdk::RAM_BASE;

    /// What each probe aims at, in [`super::PROBES`] order.
    pub const TARGETS: [&str; 6] = [
        "read other partitions' RAM",
        "write the kernel's memory",
        "write the local APIC",
        "write IA32_LSTAR",
        "write COM1, the kernel's console",
        "jump to address 0",
    ];

    pub fn attempt(probe: u64, ram_size: u64) {
        // SAFETY: every access below is meant to exit to the kernel, which
        // stops this partition before the access completes.
        unsafe {
            match probe {
                0 => {
                    let _ = core::ptr::read_volatile((RAM_BASE + 0x200_0000) as *const u64);
                }
                1 => core::ptr::write_volatile((RAM_BASE + ram_size) as *mut u64, 0),
                2 => core::ptr::write_volatile(0xfee0_00b0_u64 as *mut u32, 0),
                3 => asm!("wrmsr", in("ecx") 0xc000_0082_u32, in("eax") 0u32, in("edx") 0u32),
                4 => asm!("out dx, al", in("dx") 0x3f8_u16, in("al") b'!'),
                _ => asm!("jmp {}", in(reg) 0u64),
            }
        }
    }
}
