//! The virtual machine a Linux partition finds (package profile `Linux`): where
//! its emulated devices are in its guest-physical space and which interrupts they
//! use. The addresses are QEMU `virt`'s, so its device tree reads as a familiar
//! one; the host tool writes them into the device tree it generates, and the
//! kernel emulates exactly these windows. None of them is RAM or a granted device
//! (the description's rules refuse an overlap).

/// The emulated GICv3 distributor: base and size.
pub const GICD_BASE: u64 = 0x0800_0000;
/// Bytes of the distributor window.
pub const GICD_SIZE: u64 = 0x1_0000;
/// The emulated redistributors: vCPU `n`'s frame pair (RD, then SGI) starts
/// at `GICR_BASE + n * GICR_STRIDE`.
pub const GICR_BASE: u64 = 0x080a_0000;
/// Bytes of one vCPU's redistributor frame pair.
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Bytes of the redistributor window: one frame pair per possible vCPU.
pub const GICR_SIZE: u64 = GICR_STRIDE * crate::MAX_VCPUS as u64;
/// The emulated SBSA UART (a PL011 subset): base and size.
pub const UART_BASE: u64 = 0x0900_0000;
/// Bytes of the UART window.
pub const UART_SIZE: u64 = 0x1000;
/// The UART's interrupt: shared peripheral interrupt 1 (INTID 33).
pub const UART_SPI: u32 = 1;
/// INTID of the first shared peripheral interrupt.
pub const SPI_BASE: u32 = 32;
/// Shared peripheral interrupts the distributor implements (INTIDs 32 up to
/// `SPI_BASE + SPIS`): few, since Linux writes one routing register for each.
pub const SPIS: u32 = 64;
/// Private interrupts of the architected timers, as the device tree lists
/// them (secure, non-secure physical, virtual, hypervisor): the kernel
/// delivers only the virtual timer's.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// INTID of the virtual timer's interrupt (PPI 11).
pub const VTIMER_INTID: u32 = 27;
/// The boot protocol's alignment of the kernel Image's base in RAM.
pub const IMAGE_ALIGN: u64 = 2 << 20;
/// The least RAM a Linux partition may have.
pub const MIN_RAM: u64 = 64 << 20;
