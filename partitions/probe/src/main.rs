//! A guest that uses the device its description grants, then touches one it was
//! not granted: the first access must work, the second must fault. The devices are
//! the board's (see `tests/systems/probe-*.toml`):
//!
//! | board | granted | touched without a grant |
//! |---|---|---|
//! | qemu-virt | the PL031 RTC at 0x0901_0000 (MMIO) | the PL061 GPIO at 0x0903_0000 |
//! | pc | the CMOS RTC at ports 0x70-0x71 | the I/O APIC at 0xfec0_0000 |
#![no_std]
#![no_main]

use septum_sdk::{Boot, println};

septum_sdk::entry!(main);

fn main(_boot: Boot) -> u64 {
    let value = board::read_granted();
    println!("granted device read ok: {value:#x}");
    println!("touching {:#x}, which is not granted", board::UNGRANTED);
    // SAFETY: this read is meant to fault; the kernel stops the partition before it
    // completes.
    let stolen = unsafe { core::ptr::read_volatile(board::UNGRANTED as *const u32) };
    println!("read {stolen:#x} from an ungranted device: the kernel failed to stop me");
    1
}

#[cfg(target_arch = "aarch64")]
mod board {
    /// The PL031's data register: seconds since the epoch.
    const RTC_DATA: u64 = 0x0901_0000;
    /// The PL061 GPIO block.
    pub const UNGRANTED: u64 = 0x0903_0000;

    pub fn read_granted() -> u32 {
        // SAFETY: the description grants the RTC; its data register is readable.
        unsafe { core::ptr::read_volatile(RTC_DATA as *const u32) }
    }
}

#[cfg(target_arch = "x86_64")]
mod board {
    use core::arch::asm;

    /// The I/O APIC's register window.
    pub const UNGRANTED: u64 = 0xfec0_0000;

    /// Reads CMOS status register A through ports 0x70 (index) and 0x71 (data).
    pub fn read_granted() -> u32 {
        let value: u8;
        // SAFETY: the description grants ports 0x70-0x71; selecting register 0x0a
        // and reading it has no effect on the machine.
        unsafe {
            asm!("out 0x70, al", in("al") 0x0a_u8);
            asm!("in al, 0x71", out("al") value);
        }
        u32::from(value)
    }
}
