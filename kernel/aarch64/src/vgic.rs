//! Delivering interrupts to partitions through the GIC's virtual CPU interface
//! (GICv3 system registers, or a GICv2's GICH list registers: the list registers
//! are kept in the GICv3 form either way, translated at the GICv2's registers):
//! the interrupts of granted devices, and for a Linux partition those of its
//! emulated GIC (its SGIs, its virtual timer, its UART), which the core's
//! `septum_core::vgic` keeps pending until [`VirtualInterface::refill`] puts
//! them in list registers.
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
//! - the list registers, VMCR, active-priority state and ICH_HCR_EL2 are switched
//!   with the vCPU, so no partition sees another's interrupts or takes another's
//!   maintenance interrupt;
//! - the underflow maintenance interrupt (ICH_HCR_EL2.UIE) is asked for only
//!   while interrupts of the loaded vCPU wait that did not fit its list
//!   registers, so it fires only when there is something to refill.

use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

use septum_core::vgic::{ListEntry, ListState};

use crate::gic::{self, v2};

/// No owner.
const NONE: u8 = u8::MAX;
/// The owner of each INTID (a partition index), or [`NONE`].
static OWNERS: [AtomicU8; 1024] = [const { AtomicU8::new(NONE) }; 1024];

/// The list registers this kernel uses (QEMU's GICv3 and GIC-400s have 4).
pub const LIST_REGISTERS: usize = 4;
/// Priority of a delivered interrupt in the partition's virtual interface.
const VIRTUAL_PRIORITY: u64 = 0xa0;
/// The GIC's maintenance interrupt (PPI 9): the list registers have room.
pub const MAINTENANCE: u32 = 25;
/// ICH_HCR_EL2: the virtual CPU interface is enabled (En).
const HCR_ENABLE: u64 = 1 << 0;
/// ICH_HCR_EL2: a maintenance interrupt while at most one list register is valid
/// (UIE).
const HCR_UNDERFLOW: u64 = 1 << 1;

// ICH_LR<n>_EL2 fields.
const LR_STATE_SHIFT: u32 = 62;
const LR_HW: u64 = 1 << 61;
const LR_GROUP1: u64 = 1 << 60;
const LR_PRIORITY_SHIFT: u32 = 48;
const LR_PHYSICAL_SHIFT: u32 = 32;
const LR_VIRTUAL_MASK: u64 = 0xffff_ffff;

/// A list register's value as the core's vGIC reads it.
fn decode(list: u64) -> ListEntry {
    let state = match list >> LR_STATE_SHIFT {
        0 => ListState::Invalid,
        1 => ListState::Pending,
        2 => ListState::Active,
        _ => ListState::PendingActive,
    };
    ListEntry {
        intid: (list & LR_VIRTUAL_MASK) as u32,
        priority: (list >> LR_PRIORITY_SHIFT) as u8,
        state,
        hardware: list & LR_HW != 0,
    }
}

/// The list register value for `entry`, an interrupt of the core's vGIC
/// (group 1, not linked to a physical one); `old` is kept for a hardware-linked
/// entry, which the vGIC leaves alone.
fn encode(entry: &ListEntry, old: u64) -> u64 {
    if entry.hardware {
        return old;
    }
    let state: u64 = match entry.state {
        ListState::Invalid => return 0,
        ListState::Pending => 1,
        ListState::Active => 2,
        ListState::PendingActive => 3,
    };
    (state << LR_STATE_SHIFT)
        | LR_GROUP1
        | (u64::from(entry.priority) << LR_PRIORITY_SHIFT)
        | u64::from(entry.intid)
}

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
    (0b01 << LR_STATE_SHIFT)
        | LR_HW
        | LR_GROUP1
        | (VIRTUAL_PRIORITY << LR_PRIORITY_SHIFT)
        | (intid << LR_PHYSICAL_SHIFT)
        | intid
}

/// List register `index` of the loaded vCPU, in the GICv3 form whatever the GIC.
fn read_list(index: usize) -> u64 {
    if gic::is_v2() {
        return v2::read_list(index);
    }
    let value: u64;
    // SAFETY: reading a list register has no side effects.
    unsafe {
        match index {
            0 => asm!("mrs {}, ich_lr0_el2", out(reg) value, options(nomem, nostack)),
            1 => asm!("mrs {}, ich_lr1_el2", out(reg) value, options(nomem, nostack)),
            2 => asm!("mrs {}, ich_lr2_el2", out(reg) value, options(nomem, nostack)),
            _ => asm!("mrs {}, ich_lr3_el2", out(reg) value, options(nomem, nostack)),
        }
    }
    value
}

/// Writes list register `index` of the loaded vCPU from its GICv3 form.
fn write_list(index: usize, value: u64) {
    if gic::is_v2() {
        return v2::write_list(index, value);
    }
    // SAFETY: the list registers hold only the loaded partition's virtual
    // interrupts, which is what the caller writes.
    unsafe {
        match index {
            0 => asm!("msr ich_lr0_el2, {}", in(reg) value, options(nomem, nostack)),
            1 => asm!("msr ich_lr1_el2, {}", in(reg) value, options(nomem, nostack)),
            2 => asm!("msr ich_lr2_el2, {}", in(reg) value, options(nomem, nostack)),
            _ => asm!("msr ich_lr3_el2, {}", in(reg) value, options(nomem, nostack)),
        }
    }
}

/// Writes the virtual interface's control (ICH_HCR_EL2, or GICH_HCR).
fn write_control(hcr: u64) {
    if gic::is_v2() {
        return v2::write_control(hcr);
    }
    // SAFETY: ICH_HCR_EL2 belongs to the loaded vCPU's virtual interface; the
    // callers keep it enabled.
    unsafe { asm!("msr ich_hcr_el2, {}", in(reg) hcr, options(nomem, nostack)) };
}

/// Places `intid` in a free list register of the loaded partition; false if all
/// are in use.
pub fn inject(intid: u32) -> bool {
    for index in 0..LIST_REGISTERS {
        if read_list(index) >> 62 == 0 {
            write_list(index, list_entry(intid));
            return true;
        }
    }
    false
}

/// One vCPU's virtual CPU interface while it is not loaded, and the interrupts
/// waiting for it.
#[derive(Clone, Debug)]
pub struct VirtualInterface {
    lists: [u64; LIST_REGISTERS],
    /// ICH_VMCR_EL2 or GICH_VMCR.
    vmcr: u64,
    /// ICH_AP1R0_EL2 or GICH_APR.
    ap1r0: u64,
    /// Its ICH_HCR_EL2: enabled, and asking for the underflow interrupt while
    /// interrupts wait for room.
    hcr: u64,
    waiting: heapless::Vec<u32, 8>,
}

impl Default for VirtualInterface {
    fn default() -> VirtualInterface {
        VirtualInterface {
            lists: [0; LIST_REGISTERS],
            vmcr: 0,
            ap1r0: 0,
            hcr: HCR_ENABLE,
            waiting: heapless::Vec::new(),
        }
    }
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
            // A hardware-linked entry is a granted device's interrupt; the others
            // were the emulated GIC's, which restarts empty.
            if *list >> LR_STATE_SHIFT != 0 && *list & LR_HW != 0 {
                let intid = (*list & 0xffff_ffff) as u32;
                if !self.waiting.contains(&intid) {
                    let _ = self.waiting.push(intid);
                }
            }
            *list = 0;
        }
        self.vmcr = 0;
        self.ap1r0 = 0;
        self.hcr = HCR_ENABLE;
    }

    /// Refills the loaded vCPU's list registers through `fill` (see
    /// `septum_kernel::Vcpu::refill_interrupts`), writing back only the entries
    /// it changed, and asks for the underflow interrupt exactly while
    /// interrupts are left waiting.
    pub fn refill(&mut self, fill: impl FnOnce(&mut [ListEntry]) -> bool) {
        let old: [u64; LIST_REGISTERS] = core::array::from_fn(read_list);
        let mut entries = old.map(decode);
        let more = fill(&mut entries);
        for (index, entry) in entries.iter().enumerate() {
            let new = encode(entry, old[index]);
            if new != old[index] {
                write_list(index, new);
            }
        }
        let hcr = if more {
            HCR_ENABLE | HCR_UNDERFLOW
        } else {
            HCR_ENABLE
        };
        if hcr != self.hcr {
            self.hcr = hcr;
            write_control(hcr);
        }
    }

    /// Saves the loaded interface and clears the list registers.
    pub fn store(&mut self) {
        for (index, list) in self.lists.iter_mut().enumerate() {
            *list = read_list(index);
            write_list(index, 0);
        }
        if gic::is_v2() {
            self.vmcr = v2::read_vmcr();
            self.ap1r0 = v2::read_active_priorities();
        } else {
            // SAFETY: reading the virtual interface's control state has no effects.
            unsafe {
                asm!("mrs {}, ich_vmcr_el2", out(reg) self.vmcr, options(nomem, nostack));
                asm!("mrs {}, ich_ap1r0_el2", out(reg) self.ap1r0, options(nomem, nostack));
            }
        }
        // No maintenance interrupt while no vCPU's interface is loaded (the list
        // registers are empty: it would be an underflow).
        write_control(HCR_ENABLE);
    }

    /// Loads the interface, then delivers what waited while it was not loaded.
    pub fn load(&mut self) {
        for (index, list) in self.lists.iter().enumerate() {
            write_list(index, *list);
        }
        if gic::is_v2() {
            v2::write_vmcr(self.vmcr);
            v2::write_active_priorities(self.ap1r0);
        } else {
            // SAFETY: VMCR and the active priorities belong to this vCPU's virtual
            // interface, which is being loaded.
            unsafe {
                asm!("msr ich_vmcr_el2, {}", in(reg) self.vmcr, options(nomem, nostack));
                asm!("msr ich_ap1r0_el2, {}", in(reg) self.ap1r0, options(nomem, nostack));
            }
        }
        write_control(self.hcr);
        self.waiting.retain(|&intid| !inject(intid));
    }
}
