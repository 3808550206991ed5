//! How `virtio-drivers` reaches the device's registers: its `safe-mmio`
//! accesses, made with the SDK's own single loads and stores
//! (`crate::arch::mmio_read8` and the rest). The kernel emulates a trapped
//! access only in the forms it decodes (aarch64: a load or store whose
//! syndrome is valid; x86: a plain `mov`), while a compiler may fold a
//! volatile load into another instruction (on x86, `cmp` with a memory
//! operand: `safe-mmio`'s default backend did, reading `ConfigGeneration`).

use safe_mmio::MmioOps;

use crate::arch;

/// The SDK's register accesses.
pub struct Mmio;

impl MmioOps for Mmio {
    unsafe fn read_u8(src: *const u8) -> u8 {
        // SAFETY: the caller names a readable register.
        unsafe { arch::mmio_read8(src as u64) }
    }

    unsafe fn read_u16(src: *const u16) -> u16 {
        // SAFETY: the caller names a readable, aligned register.
        unsafe { arch::mmio_read16(src as u64) }
    }

    unsafe fn read_u32(src: *const u32) -> u32 {
        // SAFETY: the caller names a readable, aligned register.
        unsafe { arch::mmio_read32(src as u64) }
    }

    unsafe fn read_u64(src: *const u64) -> u64 {
        // SAFETY: the caller names a readable, aligned register.
        unsafe { arch::mmio_read64(src as u64) }
    }

    unsafe fn write_u8(dst: *mut u8, value: u8) {
        // SAFETY: the caller names a writable register.
        unsafe { arch::mmio_write8(dst as u64, value) }
    }

    unsafe fn write_u16(dst: *mut u16, value: u16) {
        // SAFETY: the caller names a writable, aligned register.
        unsafe { arch::mmio_write16(dst as u64, value) }
    }

    unsafe fn write_u32(dst: *mut u32, value: u32) {
        // SAFETY: the caller names a writable, aligned register.
        unsafe { arch::mmio_write32(dst as u64, value) }
    }

    unsafe fn write_u64(dst: *mut u64, value: u64) {
        // SAFETY: the caller names a writable, aligned register.
        unsafe { arch::mmio_write64(dst as u64, value) }
    }
}

safe_mmio::set_mmio_ops!(Mmio);
