//! Delivering the interrupts of granted devices to their partitions, through the
//! GICv3 virtual CPU interface.
//!
//! At boot each granted shared peripheral interrupt gets an owner ([`set_owner`]),
//! and the distributor routes it to the owner's core. When it fires, the kernel
//! drops its priority and hands it to the owner as a virtual interrupt with the same
//! INTID in a list register linked to the physical one (HW = 1): the partition's
//! virtual end of interrupt deactivates the physical interrupt.
//!
//! Invariants:
//! - an interrupt is only ever placed in the list registers of its owner, while its
//!   owner's vCPU is loaded; if the owner is not loaded it waits in the owner's
//!   [`VirtualInterface`] until it is;
//! - the list registers, VMCR and active-priority state are switched with the vCPU,
//!   so no partition sees another's interrupts.

use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

/// No owner.
const NONE: u8 = u8::MAX;
/// The owner of each INTID (a partition index), or [`NONE`].
static OWNERS: [AtomicU8; 1024] = [const { AtomicU8::new(NONE) }; 1024];

/// The list registers this kernel uses (QEMU's GICv3 has 4).
pub const LIST_REGISTERS: usize = 4;
/// Priority of a delivered interrupt in the partition's virtual interface.
const VIRTUAL_PRIORITY: u64 = 0xa0;

/// Makes partition `partition` the owner of `intid`.
pub fn set_owner(intid: u32, partition: usize) {
    let partition = u8::try_from(partition).expect("at most MAX_PARTITIONS partitions");
    OWNERS[intid as usize].store(partition, Ordering::Release);
}

/// The partition that owns `intid`, if any.
pub fn owner(intid: u32) -> Option<usize> {
    let owner = OWNERS.get(intid as usize)?.load(Ordering::Acquire);
    (owner != NONE).then_some(usize::from(owner))
}

/// A list register asking the partition to take `intid`, linked to the physical
/// interrupt: state pending, hardware, group 1.
fn list_entry(intid: u32) -> u64 {
    let intid = u64::from(intid);
    (0b01 << 62) | (1 << 61) | (1 << 60) | (VIRTUAL_PRIORITY << 48) | (intid << 32) | intid
}

macro_rules! list_register {
    ($index:expr, read) => {{
        let value: u64;
        // SAFETY: reading a list register has no side effects.
        unsafe {
            match $index {
                0 => asm!("mrs {}, ich_lr0_el2", out(reg) value, options(nomem, nostack)),
                1 => asm!("mrs {}, ich_lr1_el2", out(reg) value, options(nomem, nostack)),
                2 => asm!("mrs {}, ich_lr2_el2", out(reg) value, options(nomem, nostack)),
                _ => asm!("mrs {}, ich_lr3_el2", out(reg) value, options(nomem, nostack)),
            }
        }
        value
    }};
    ($index:expr, write $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: the list registers hold only the loaded partition's virtual
        // interrupts, which is what the caller writes.
        unsafe {
            match $index {
                0 => asm!("msr ich_lr0_el2, {}", in(reg) value, options(nomem, nostack)),
                1 => asm!("msr ich_lr1_el2, {}", in(reg) value, options(nomem, nostack)),
                2 => asm!("msr ich_lr2_el2, {}", in(reg) value, options(nomem, nostack)),
                _ => asm!("msr ich_lr3_el2, {}", in(reg) value, options(nomem, nostack)),
            }
        }
    }};
}

/// Places `intid` in a free list register of the loaded partition; false if all
/// are in use.
pub fn inject(intid: u32) -> bool {
    for index in 0..LIST_REGISTERS {
        if list_register!(index, read) >> 62 == 0 {
            list_register!(index, write list_entry(intid));
            return true;
        }
    }
    false
}

/// One vCPU's virtual CPU interface while it is not loaded, and the interrupts
/// waiting for it.
#[derive(Clone, Debug, Default)]
pub struct VirtualInterface {
    lists: [u64; LIST_REGISTERS],
    vmcr: u64,
    ap1r0: u64,
    waiting: heapless::Vec<u32, 8>,
}

impl VirtualInterface {
    /// Keeps `intid` for when the vCPU is next loaded. An interrupt already waiting
    /// is not queued twice (it is still active, so it cannot have fired again).
    pub fn hold(&mut self, intid: u32) {
        if !self.waiting.contains(&intid) {
            // Cannot fail while fewer than 8 interrupts are granted to a partition.
            let _ = self.waiting.push(intid);
        }
    }

    /// Resets the (stored) interface for a restarted partition. An interrupt still
    /// in a list register stays active in the GIC until a partition deactivates it,
    /// so it is kept waiting, to be taken again by the new instance: the device's
    /// line is never left blocked.
    pub fn reset(&mut self) {
        for list in &mut self.lists {
            if *list >> 62 != 0 {
                let intid = (*list & 0xffff_ffff) as u32;
                if !self.waiting.contains(&intid) {
                    let _ = self.waiting.push(intid);
                }
            }
            *list = 0;
        }
        self.vmcr = 0;
        self.ap1r0 = 0;
    }

    /// Saves the loaded interface and clears the list registers.
    pub fn store(&mut self) {
        for (index, list) in self.lists.iter_mut().enumerate() {
            *list = list_register!(index, read);
            list_register!(index, write 0);
        }
        // SAFETY: reading the virtual interface's control state has no effects.
        unsafe {
            asm!("mrs {}, ich_vmcr_el2", out(reg) self.vmcr, options(nomem, nostack));
            asm!("mrs {}, ich_ap1r0_el2", out(reg) self.ap1r0, options(nomem, nostack));
        }
    }

    /// Loads the interface, then delivers what waited while it was not loaded.
    pub fn load(&mut self) {
        for (index, list) in self.lists.iter().enumerate() {
            list_register!(index, write * list);
        }
        // SAFETY: VMCR and the active priorities belong to this vCPU's virtual
        // interface, which is being loaded.
        unsafe {
            asm!("msr ich_vmcr_el2, {}", in(reg) self.vmcr, options(nomem, nostack));
            asm!("msr ich_ap1r0_el2, {}", in(reg) self.ap1r0, options(nomem, nostack));
        }
        self.waiting.retain(|&intid| !inject(intid));
    }
}
