//! The register windows of the virtual GICv3: which register an offset names,
//! which widths it takes, and what reading or writing it does to the [`Vgic`].
//!
//! An access is checked in one order: its width (1, 2, 4 or 8 bytes), its
//! alignment (a multiple of its width), that it falls in the window (for the
//! redistributors, in a frame pair of one of the partition's vCPUs), then that
//! the register it names takes that width. Anything that fails is [`Refused`]
//! and changes nothing. Offsets that name no register this GIC implements are
//! reserved: 32-bit, read as zero, writes ignored.
//!
//! Widths: 32-bit registers take 32-bit accesses; `IPRIORITYR` (and the
//! `ITARGETSR` and SGI-pending registers, which read as zero with affinity
//! routing) also single bytes; `GICD_IROUTER` and `GICR_TYPER` 64-bit accesses
//! and either 32-bit half.

use septum_abi::virt::{GICD_SIZE, GICR_STRIDE};

use super::{Home, INTIDS, SGIS, SPI_BASE, Vgic, affinity};

/// One guest access to an emulated register window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store of this value (its low `width` bytes).
    Write(u64),
}

/// Why an access was not emulated. Nothing changed; the kernel reports the
/// access to the service VM as a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The offset is not a multiple of the access's width.
    Unaligned,
    /// A width other than 1, 2, 4 or 8 bytes, or one the register does not take.
    BadWidth,
    /// Past the end of the distributor window, or in the redistributor frames of
    /// a vCPU the partition does not have.
    OutsideFrames,
}

/// A completed access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emulated {
    /// What a read loads, zero-extended from its width; 0 for a write.
    pub value: u64,
    /// The vCPUs (bit n = vCPU n) that a write gave an interrupt to take, to be
    /// kicked; 0 for a read.
    pub wake: u32,
}

// Offsets shared by the distributor and a redistributor's frames.
const CTLR: u64 = 0x0000;
const PIDR2_OFFSET: u64 = 0xffe8;
/// The first bit-per-interrupt array (`IGROUPR`); the others follow, each
/// [`BIT_ARRAY_BYTES`] long, in the order of [`BIT_ARRAYS`].
const IGROUPR: u64 = 0x0080;
const BIT_ARRAY_BYTES: u64 = 0x80;
const IPRIORITYR: u64 = 0x0400;
const ITARGETSR: u64 = 0x0800;
const ICFGR: u64 = 0x0c00;
/// The distributor's `ICFGR` words end where `IGRPMODR` begins.
const ICFGR_END: u64 = 0x0d00;
const GICD_TYPER: u64 = 0x0004;
const GICD_IIDR: u64 = 0x0008;
/// `GICD_CPENDSGIR` then `GICD_SPENDSGIR`, 16 bytes each.
const GICD_SGI_PENDING: u64 = 0x0f10;
const GICD_SGI_PENDING_END: u64 = 0x0f30;
const GICD_IROUTER: u64 = 0x6000;
const GICD_IROUTER_END: u64 = 0x8000;
const GICR_IIDR: u64 = 0x0004;
const GICR_TYPER: u64 = 0x0008;
const GICR_TYPER_END: u64 = GICR_TYPER + 8;
const GICR_WAKER: u64 = 0x0014;
/// A vCPU's SGI frame, after its RD frame.
const SGI_FRAME: u64 = 0x1_0000;
/// The SGI frame's priority bytes and `ICFGR0`-`ICFGR1`: one vCPU's 32 private
/// interrupts.
const PRIVATE_PRIORITIES_END: u64 = IPRIORITYR + 32;
const PRIVATE_CONFIG_END: u64 = ICFGR + 8;

/// `GICD_CTLR`: `EnableGrp1` (the only writable bit), `ARE` and `DS` (read as
/// one). `RWP` reads as zero: writes take effect at once.
const CTLR_ENABLE_GRP1: u64 = 1 << 1;
const CTLR_ARE: u64 = 1 << 4;
const CTLR_DS: u64 = 1 << 6;
/// `GICD_TYPER`: `ITLinesNumber` for [`INTIDS`], `IDbits` = 9 (10-bit INTIDs),
/// `A3V`, `No1N`; no LPIs, MBIs or extended SPIs, one security state.
const TYPER: u64 = (INTIDS as u64 / 32 - 1) | 9 << 19 | 1 << 24 | 1 << 25;
/// `GICD_IIDR` and `GICR_IIDR`: no JEP106 implementer code, product or
/// revision, so none of Linux's implementation quirks applies.
const IIDR: u64 = 0;
/// `GICD_PIDR2` and `GICR_PIDR2`: `ArchRev` 3, GICv3.
const PIDR2: u64 = 0x30;
/// `GICR_TYPER.Last`: the partition's last redistributor.
const TYPER_LAST: u64 = 1 << 4;
/// `GICR_WAKER`: `ProcessorSleep`, and `ChildrenAsleep`, which follows it.
const WAKER_SLEEP: u64 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u64 = 1 << 2;

/// The widths a register takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Word,
    ByteOrWord,
    DoubleOrWord,
}

impl Shape {
    fn takes(self, width: u8) -> bool {
        match self {
            Shape::Word => width == 4,
            Shape::ByteOrWord => matches!(width, 1 | 4),
            Shape::DoubleOrWord => matches!(width, 4 | 8),
        }
    }
}

/// The bit-per-interrupt arrays, in offset order from [`IGROUPR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitArray {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

const BIT_ARRAYS: [BitArray; 7] = [
    BitArray::Group,
    BitArray::SetEnable,
    BitArray::ClearEnable,
    BitArray::SetPending,
    BitArray::ClearPending,
    BitArray::SetActive,
    BitArray::ClearActive,
];

/// What an offset names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Register {
    /// `GICD_CTLR`.
    DistributorControl,
    /// `GICD_TYPER`.
    DistributorType,
    /// `GICD_IIDR` or `GICR_IIDR`.
    Implementer,
    /// `GICD_PIDR2` or `GICR_PIDR2`.
    PeripheralId2,
    /// One word of a bit-per-interrupt array: 32 interrupts of `home` from its
    /// bit `first`.
    Bits {
        array: BitArray,
        home: Home,
        first: u32,
    },
    /// `IPRIORITYR` bytes: one per interrupt of `home` from its bit `first`.
    Priority { home: Home, first: u32 },
    /// One `ICFGR` word: 16 interrupts of `home` from its bit `first`.
    Config { home: Home, first: u32 },
    /// `GICD_IROUTER` of SPI n.
    Router(usize),
    /// `GICR_TYPER` of vCPU n.
    RedistributorType(usize),
    /// `GICR_WAKER` of vCPU n.
    Waker(usize),
    /// Reads as zero, ignores writes: reserved offsets, registers of features
    /// this GIC lacks (`GICR_CTLR` has nothing without LPIs), and the
    /// distributor's copies of the private interrupts' registers.
    Ignored(Shape),
}

impl Register {
    fn shape(self) -> Shape {
        match self {
            Register::Priority { .. } => Shape::ByteOrWord,
            Register::Router(_) | Register::RedistributorType(_) => Shape::DoubleOrWord,
            Register::Ignored(shape) => shape,
            _ => Shape::Word,
        }
    }
}

/// The register at `offset` in the distributor window.
fn distributor_register(offset: u64) -> Register {
    match offset {
        CTLR => Register::DistributorControl,
        GICD_TYPER => Register::DistributorType,
        GICD_IIDR => Register::Implementer,
        PIDR2_OFFSET => Register::PeripheralId2,
        IGROUPR..IPRIORITYR => {
            let first_intid = (offset % BIT_ARRAY_BYTES) as u32 / 4 * 32;
            match spi_bit(first_intid) {
                Some(first) => Register::Bits {
                    array: bit_array(offset),
                    home: Home::Shared,
                    first,
                },
                None => Register::Ignored(Shape::Word),
            }
        }
        IPRIORITYR..ITARGETSR => match spi_bit((offset - IPRIORITYR) as u32) {
            Some(first) => Register::Priority {
                home: Home::Shared,
                first,
            },
            None => Register::Ignored(Shape::ByteOrWord),
        },
        ITARGETSR..ICFGR => Register::Ignored(Shape::ByteOrWord),
        ICFGR..ICFGR_END => match spi_bit((offset - ICFGR) as u32 / 4 * 16) {
            Some(first) => Register::Config {
                home: Home::Shared,
                first,
            },
            None => Register::Ignored(Shape::Word),
        },
        GICD_SGI_PENDING..GICD_SGI_PENDING_END => Register::Ignored(Shape::ByteOrWord),
        GICD_IROUTER..GICD_IROUTER_END => match spi_bit(((offset - GICD_IROUTER) / 8) as u32) {
            Some(spi) => Register::Router(spi as usize),
            None => Register::Ignored(Shape::DoubleOrWord),
        },
        _ => Register::Ignored(Shape::Word),
    }
}

/// The array a bit-per-interrupt register at `offset` belongs to.
fn bit_array(offset: u64) -> BitArray {
    BIT_ARRAYS[((offset - IGROUPR) / BIT_ARRAY_BYTES) as usize]
}

/// `intid`'s bit in the SPI bank, if it is an SPI the distributor implements.
fn spi_bit(intid: u32) -> Option<u32> {
    (SPI_BASE..INTIDS)
        .contains(&intid)
        .then(|| intid - SPI_BASE)
}

/// The register at `offset` in vCPU `vcpu`'s redistributor frame pair.
fn redistributor_register(vcpu: usize, offset: u64) -> Register {
    let private = Home::Private(vcpu);
    match offset {
        GICR_IIDR => Register::Implementer,
        GICR_TYPER..GICR_TYPER_END => Register::RedistributorType(vcpu),
        GICR_WAKER => Register::Waker(vcpu),
        PIDR2_OFFSET => Register::PeripheralId2,
        _ if offset < SGI_FRAME => Register::Ignored(Shape::Word),
        _ => match offset - SGI_FRAME {
            sgi @ IGROUPR..IPRIORITYR if sgi.is_multiple_of(BIT_ARRAY_BYTES) => Register::Bits {
                array: bit_array(sgi),
                home: private,
                first: 0,
            },
            sgi @ IPRIORITYR..PRIVATE_PRIORITIES_END => Register::Priority {
                home: private,
                first: (sgi - IPRIORITYR) as u32,
            },
            sgi @ ICFGR..PRIVATE_CONFIG_END => Register::Config {
                home: private,
                first: (sgi - ICFGR) as u32 * 4,
            },
            _ => Register::Ignored(Shape::Word),
        },
    }
}

/// Checks an access's width, alignment and place in a window of `window` bytes.
fn check(offset: u64, width: u8, window: u64) -> Result<(), Refused> {
    if !matches!(width, 1 | 2 | 4 | 8) {
        return Err(Refused::BadWidth);
    }
    if !offset.is_multiple_of(u64::from(width)) {
        return Err(Refused::Unaligned);
    }
    if offset >= window {
        return Err(Refused::OutsideFrames);
    }
    Ok(())
}

/// The `width` bytes at `offset` of the 8-byte register whose value is `value`.
fn lane(value: u64, offset: u64, width: u8) -> u64 {
    (value >> ((offset % 8) * 8)) & width_mask(width)
}

/// `old` with the `width` bytes at `offset` replaced by the low bytes of `new`.
fn with_lane(old: u64, offset: u64, width: u8, new: u64) -> u64 {
    let shift = (offset % 8) * 8;
    (old & !(width_mask(width) << shift)) | (new & width_mask(width)) << shift
}

fn width_mask(width: u8) -> u64 {
    u64::MAX >> (64 - 8 * u32::from(width))
}

/// An `ICFGR` word from 16 edge bits: `Int_config[1]` (bit 2n+1) set for each
/// edge-triggered interrupt n; bit 2n is reserved.
fn config_word(edges: u64) -> u64 {
    (0..16)
        .filter(|n| edges >> n & 1 == 1)
        .fold(0, |word, n| word | 2 << (2 * n))
}

/// The 16 edge bits an `ICFGR` word sets.
fn config_edges(word: u64) -> u64 {
    (0..16)
        .filter(|n| word >> (2 * n + 1) & 1 == 1)
        .fold(0, |edges, n| edges | 1 << n)
}

impl Vgic {
    /// An access at `offset` into the distributor window, `width` bytes wide.
    /// No distributor register is private to a vCPU (affinity routing), so it
    /// does not matter which vCPU made it.
    pub fn distributor(
        &mut self,
        offset: u64,
        width: u8,
        access: Access,
    ) -> Result<Emulated, Refused> {
        check(offset, width, GICD_SIZE)?;
        self.complete(distributor_register(offset), offset, width, access)
    }

    /// An access at `offset` into the redistributor window, `width` bytes wide:
    /// frame pair `offset / GICR_STRIDE`, its RD frame then its SGI frame. Any
    /// vCPU may access any of the partition's frames (Linux's boot vCPU reads
    /// them all to find its own).
    pub fn redistributor(
        &mut self,
        offset: u64,
        width: u8,
        access: Access,
    ) -> Result<Emulated, Refused> {
        check(offset, width, GICR_STRIDE * self.vcpus as u64)?;
        let vcpu = (offset / GICR_STRIDE) as usize;
        let register = redistributor_register(vcpu, offset % GICR_STRIDE);
        self.complete(register, offset, width, access)
    }

    fn complete(
        &mut self,
        register: Register,
        offset: u64,
        width: u8,
        access: Access,
    ) -> Result<Emulated, Refused> {
        if !register.shape().takes(width) {
            return Err(Refused::BadWidth);
        }
        Ok(match access {
            Access::Read => Emulated {
                value: self.read(register, offset, width),
                wake: 0,
            },
            Access::Write(value) => {
                let before = self.deliverable_all();
                self.write(register, offset, width, value & width_mask(width));
                Emulated {
                    value: 0,
                    wake: self.woken(&before),
                }
            }
        })
    }

    fn read(&self, register: Register, offset: u64, width: u8) -> u64 {
        match register {
            Register::DistributorControl => {
                CTLR_ARE | CTLR_DS | if self.enabled { CTLR_ENABLE_GRP1 } else { 0 }
            }
            Register::DistributorType => TYPER,
            Register::Implementer => IIDR,
            Register::PeripheralId2 => PIDR2,
            Register::Bits { array, home, first } => {
                let bank = self.bank(home);
                let bits = match array {
                    BitArray::Group => u64::MAX,
                    BitArray::SetEnable | BitArray::ClearEnable => bank.enabled,
                    BitArray::SetPending | BitArray::ClearPending => bank.pending,
                    BitArray::SetActive | BitArray::ClearActive => bank.active,
                };
                (bits >> first) & width_mask(4)
            }
            Register::Priority { home, first } => {
                let priority = &self.bank(home).priority[first as usize..][..usize::from(width)];
                priority
                    .iter()
                    .rev()
                    .fold(0, |value, &byte| value << 8 | u64::from(byte))
            }
            Register::Config { home, first } => config_word(self.bank(home).edge >> first),
            Register::Router(spi) => lane(self.routers[spi], offset, width),
            Register::RedistributorType(vcpu) => lane(self.redistributor_type(vcpu), offset, width),
            Register::Waker(vcpu) => {
                if self.redistributors[vcpu].asleep {
                    WAKER_SLEEP | WAKER_CHILDREN_ASLEEP
                } else {
                    0
                }
            }
            Register::Ignored(_) => 0,
        }
    }

    fn write(&mut self, register: Register, offset: u64, width: u8, value: u64) {
        match register {
            Register::DistributorControl => self.enabled = value & CTLR_ENABLE_GRP1 != 0,
            Register::Bits { array, home, first } => {
                let bits = value << first;
                let bank = self.bank_mut(home);
                match array {
                    BitArray::Group => {}
                    BitArray::SetEnable => bank.enabled |= bits,
                    BitArray::ClearEnable => bank.enabled &= !bits,
                    BitArray::SetPending => bank.pending |= bits,
                    BitArray::ClearPending => bank.pending &= !bits,
                    BitArray::SetActive => bank.active |= bits,
                    BitArray::ClearActive => bank.active &= !bits,
                }
            }
            Register::Priority { home, first } => {
                let priority = &mut self.bank_mut(home).priority[first as usize..];
                for (byte, priority) in priority.iter_mut().take(usize::from(width)).enumerate() {
                    *priority = (value >> (8 * byte)) as u8;
                }
            }
            Register::Config { home, first } => {
                // SGIs are always edge-triggered.
                let fixed = match home {
                    Home::Private(_) => (1 << SGIS) - 1,
                    Home::Shared => 0,
                };
                let writable = (0xffff << first) & !fixed;
                let bank = self.bank_mut(home);
                bank.edge = (bank.edge & !writable) | (config_edges(value) << first & writable);
            }
            Register::Router(spi) => {
                let router = with_lane(self.routers[spi], offset, width, value);
                self.route(spi, router);
            }
            Register::Waker(vcpu) => self.redistributors[vcpu].asleep = value & WAKER_SLEEP != 0,
            Register::DistributorType
            | Register::Implementer
            | Register::PeripheralId2
            | Register::RedistributorType(_)
            | Register::Ignored(_) => {}
        }
    }

    /// `GICR_TYPER` of vCPU `vcpu`: its affinity (`Aff3.Aff2.Aff1.Aff0` in bits
    /// 63:32), its index as `Processor_Number`, and `Last` on the partition's
    /// last vCPU; no LPIs, 16 PPIs.
    fn redistributor_type(&self, vcpu: usize) -> u64 {
        let affinity = affinity(vcpu);
        let packed = (affinity >> 8 & 0xff00_0000) | (affinity & 0xff_ffff);
        let last = if vcpu + 1 == self.vcpus {
            TYPER_LAST
        } else {
            0
        };
        packed << 32 | (vcpu as u64) << 8 | last
    }
}

#[cfg(test)]
mod tests;
