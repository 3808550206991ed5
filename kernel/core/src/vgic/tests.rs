//! The virtual GICv3 register by register, Linux's boot sequence against it, and
//! the delivery rules: SGI targets, routing, list register refills and spills,
//! held-back interrupts, hardware entries, stopping a vCPU and reset.

use septum_abi::virt::{GICD_SIZE, GICR_STRIDE, UART_SPI, VTIMER_INTID};

use super::*;

const SGI: u64 = 0x1_0000;
const GICD_CTLR: u64 = 0x0000;
const GICD_TYPER: u64 = 0x0004;
const ISENABLER: u64 = 0x0100;
const ICENABLER: u64 = 0x0180;
const ISPENDR: u64 = 0x0200;
const ICPENDR: u64 = 0x0280;
const ISACTIVER: u64 = 0x0300;
const ICACTIVER: u64 = 0x0380;
const IPRIORITYR: u64 = 0x0400;
const ICFGR: u64 = 0x0c00;
const IROUTER: u64 = 0x6000;
const PIDR2: u64 = 0xffe8;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;

fn dist(vgic: &mut Vgic, offset: u64, width: u8, access: Access) -> Emulated {
    vgic.distributor(offset, width, access)
        .unwrap_or_else(|refused| panic!("GICD+{offset:#x}/{width}: {refused:?}"))
}

fn dist_read(vgic: &mut Vgic, offset: u64) -> u64 {
    dist(vgic, offset, 4, Access::Read).value
}

/// Writes a 32-bit distributor register; the vCPUs it woke.
fn dist_write(vgic: &mut Vgic, offset: u64, value: u64) -> u32 {
    dist(vgic, offset, 4, Access::Write(value)).wake
}

fn redist(vgic: &mut Vgic, vcpu: usize, offset: u64, width: u8, access: Access) -> Emulated {
    let offset = vcpu as u64 * GICR_STRIDE + offset;
    vgic.redistributor(offset, width, access)
        .unwrap_or_else(|refused| panic!("GICR+{offset:#x}/{width}: {refused:?}"))
}

fn redist_read(vgic: &mut Vgic, vcpu: usize, offset: u64) -> u64 {
    redist(vgic, vcpu, offset, 4, Access::Read).value
}

fn redist_write(vgic: &mut Vgic, vcpu: usize, offset: u64, value: u64) -> u32 {
    redist(vgic, vcpu, offset, 4, Access::Write(value)).wake
}

/// A GIC set up as Linux leaves it: distributor on, every interrupt enabled at
/// priority 0xa0, every SPI routed to vCPU 0, every redistributor awake.
fn linux_ready(vcpus: usize) -> Vgic {
    let mut vgic = Vgic::new(vcpus);
    for word in 1..INTIDS as u64 / 32 {
        dist_write(&mut vgic, ISENABLER + 4 * word, u64::from(u32::MAX));
    }
    for intid in (SPI_BASE as u64..INTIDS as u64).step_by(4) {
        dist_write(&mut vgic, IPRIORITYR + intid, 0xa0a0_a0a0);
    }
    for vcpu in 0..vcpus {
        redist_write(&mut vgic, vcpu, GICR_WAKER, 0);
        redist_write(&mut vgic, vcpu, SGI + ISENABLER, u64::from(u32::MAX));
        for word in 0..8 {
            redist_write(&mut vgic, vcpu, SGI + IPRIORITYR + 4 * word, 0xa0a0_a0a0);
        }
    }
    dist_write(&mut vgic, GICD_CTLR, 0x13);
    vgic
}

/// `ICC_SGI1R_EL1` for SGI `intid` to target list `targets` in cluster 0.
fn sgi1r(intid: u64, targets: u64) -> u64 {
    intid << 24 | targets
}

/// `ICC_SGI1R_EL1` with `IRM` set: every vCPU but the sender.
const TO_OTHERS: u64 = 1 << 40;

fn lists(count: usize) -> Vec<ListEntry> {
    vec![ListEntry::FREE; count]
}

fn entry(intid: u32, priority: u8, state: ListState) -> ListEntry {
    ListEntry {
        intid,
        priority,
        state,
        hardware: false,
    }
}

/// The valid entries' INTIDs, in list register order.
fn listed(lists: &[ListEntry]) -> Vec<u32> {
    lists
        .iter()
        .filter(|entry| entry.state != ListState::Invalid)
        .map(|entry| entry.intid)
        .collect()
}

/// What Linux 6.1 does to the GIC while it boots (irq-gic-v3's distributor
/// and per-CPU initialisation), then its first interrupts: the virtual timer
/// on a secondary vCPU, an IPI, and the UART.
/// Verifies: SK-LNX-003, SK-LNX-004
#[test]
fn linux_boots_against_it() {
    let mut vgic = Vgic::new(3);
    assert_eq!(dist_read(&mut vgic, PIDR2) & 0xf0, 0x30, "GICv3");
    dist_write(&mut vgic, GICD_CTLR, 0);
    assert_eq!(dist_read(&mut vgic, GICD_CTLR) & 1 << 31, 0, "RWP clear");
    let typer = dist_read(&mut vgic, GICD_TYPER);
    let lines = ((typer & 0x1f) + 1) * 32;
    assert_eq!(lines, u64::from(INTIDS));
    assert_eq!(
        typer & (1 << 17 | 1 << 16 | 1 << 8),
        0,
        "no LPIs, MBIs, ESPIs"
    );
    dist_read(&mut vgic, 0x0008);
    assert_eq!(dist_read(&mut vgic, 0x000c), 0, "GICD_TYPER2");
    for intid in (32..lines).step_by(32) {
        dist_write(&mut vgic, 0x0080 + intid / 8, u64::from(u32::MAX));
    }
    for intid in (32..lines).step_by(16) {
        dist_write(&mut vgic, ICFGR + intid / 4, 0);
    }
    for intid in (32..lines).step_by(4) {
        dist_write(&mut vgic, IPRIORITYR + intid, 0xa0a0_a0a0);
    }
    for intid in (32..lines).step_by(32) {
        dist_write(&mut vgic, ICACTIVER + intid / 8, u64::from(u32::MAX));
        dist_write(&mut vgic, ICENABLER + intid / 8, u64::from(u32::MAX));
    }
    dist_write(&mut vgic, GICD_CTLR, 0x13);
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x52, "ARE, DS, EnableGrp1");
    let boot_affinity = affinity(0);
    for intid in 32..lines {
        dist(
            &mut vgic,
            IROUTER + 8 * intid,
            8,
            Access::Write(boot_affinity),
        );
    }

    for cpu in 0..3 {
        // Find this CPU's frame by affinity, stopping at the Last one.
        let mut frame = 0;
        let found = loop {
            assert_eq!(redist_read(&mut vgic, frame, PIDR2) & 0xf0, 0x30);
            let typer = redist(&mut vgic, frame, GICR_TYPER, 8, Access::Read).value;
            if typer >> 32 == affinity(cpu) {
                break frame;
            }
            assert_eq!(
                typer & 1 << 4,
                0,
                "CPU {cpu} not found before the Last frame"
            );
            frame += 1;
        };
        assert_eq!(found, cpu);
        let waker = redist_read(&mut vgic, cpu, GICR_WAKER);
        assert_eq!(waker, 0b110, "asleep after reset");
        redist_write(&mut vgic, cpu, GICR_WAKER, waker & !0b10);
        assert_eq!(redist_read(&mut vgic, cpu, GICR_WAKER) & 0b100, 0, "awake");
        assert_eq!(
            redist_read(&mut vgic, cpu, 0x0000) & 1 << 3,
            0,
            "GICR_CTLR.RWP"
        );
        redist_write(&mut vgic, cpu, SGI + 0x0080, u64::from(u32::MAX));
        redist_write(&mut vgic, cpu, SGI + ICACTIVER, u64::from(u32::MAX));
        redist_write(&mut vgic, cpu, SGI + ICENABLER, u64::from(u32::MAX));
        for word in 0..8 {
            redist_write(&mut vgic, cpu, SGI + IPRIORITYR + 4 * word, 0xa0a0_a0a0);
        }
        redist_write(&mut vgic, cpu, SGI + ISENABLER, 0xffff);
        assert_eq!(redist_read(&mut vgic, cpu, SGI + ISENABLER), 0xffff);
        redist_write(&mut vgic, cpu, SGI + ISENABLER, 1 << VTIMER_INTID);
    }
    let last = redist(&mut vgic, 2, GICR_TYPER, 8, Access::Read).value;
    assert_ne!(last & 1 << 4, 0, "the last vCPU's frame is Last");

    assert_eq!(vgic.raise(VTIMER_INTID, 1), Some(1));
    let mut one = lists(4);
    assert!(!vgic.refill(1, &mut one));
    assert_eq!(one[0], entry(VTIMER_INTID, 0xa0, ListState::Pending));

    assert_eq!(vgic.send_sgi(0, sgi1r(1, 1 << 2)), 1 << 2);
    let mut two = lists(4);
    vgic.refill(2, &mut two);
    assert_eq!(listed(&two), [1]);

    let uart = SPI_BASE + UART_SPI;
    assert_eq!(dist_write(&mut vgic, ISENABLER + 4, 1 << UART_SPI), 0);
    assert_eq!(vgic.raise(uart, 2), Some(0), "routed to the boot vCPU");
    let mut zero = lists(4);
    vgic.refill(0, &mut zero);
    assert_eq!(listed(&zero), [uart]);
}

/// Verifies: SK-LNX-004
#[test]
fn the_distributor_describes_a_gicv3_without_lpis() {
    let mut vgic = Vgic::new(2);
    let typer = dist_read(&mut vgic, GICD_TYPER);
    assert_eq!(typer & 0x1f, 2, "ITLinesNumber: 96 INTIDs");
    assert_eq!(typer >> 19 & 0x1f, 9, "IDbits: 10-bit INTIDs");
    assert_eq!(typer & 1 << 25, 1 << 25, "No1N");
    assert_eq!(typer & 1 << 10, 0, "one security state");
    assert_eq!(dist_read(&mut vgic, 0x0008), 0, "GICD_IIDR");
    assert_eq!(dist_read(&mut vgic, PIDR2), 0x30);
    assert_eq!(redist_read(&mut vgic, 1, 0x0004), 0, "GICR_IIDR");
    assert_eq!(redist_read(&mut vgic, 1, PIDR2), 0x30);
    // Identification registers ignore writes.
    dist_write(&mut vgic, GICD_TYPER, 0);
    assert_eq!(dist_read(&mut vgic, GICD_TYPER), typer);
}

/// Verifies: SK-LNX-004
#[test]
fn only_group_1_enable_is_writable_in_the_distributor_control() {
    let mut vgic = Vgic::new(1);
    assert_eq!(
        dist_read(&mut vgic, GICD_CTLR),
        0x50,
        "ARE and DS, disabled"
    );
    dist_write(&mut vgic, GICD_CTLR, u64::from(u32::MAX));
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x52);
    dist_write(&mut vgic, GICD_CTLR, 0);
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x50);
}

/// Verifies: SK-LNX-004
#[test]
fn every_interrupt_is_group_1() {
    let mut vgic = Vgic::new(2);
    for word in [1, 2] {
        dist_write(&mut vgic, 0x0080 + 4 * word, 0);
        assert_eq!(dist_read(&mut vgic, 0x0080 + 4 * word), 0xffff_ffff);
    }
    assert_eq!(dist_read(&mut vgic, 0x0080), 0, "the redistributor's");
    assert_eq!(dist_read(&mut vgic, 0x0080 + 12), 0, "INTIDs 96 up");
    redist_write(&mut vgic, 1, SGI + 0x0080, 0);
    assert_eq!(redist_read(&mut vgic, 1, SGI + 0x0080), 0xffff_ffff);
}

/// The distributor's words for INTIDs 0-31 read as zero and change nothing:
/// with affinity routing the redistributors own them.
/// Verifies: SK-LNX-004
#[test]
fn the_distributor_leaves_private_interrupts_to_the_redistributors() {
    let mut vgic = linux_ready(2);
    redist_write(&mut vgic, 0, SGI + ICENABLER, u64::from(u32::MAX));
    let before = vgic.clone();
    for register in [ISENABLER, ISPENDR, ISACTIVER, ICFGR, ICFGR + 4] {
        dist_write(&mut vgic, register, u64::from(u32::MAX));
        assert_eq!(dist_read(&mut vgic, register), 0, "{register:#x}");
    }
    for intid in (0..32).step_by(4) {
        dist_write(&mut vgic, IPRIORITYR + intid, 0x1010_1010);
        assert_eq!(dist_read(&mut vgic, IPRIORITYR + intid), 0);
    }
    assert_eq!(vgic, before);
}

/// Set and clear registers of the SPIs (distributor) and of one vCPU's private
/// interrupts (its SGI frame): the set and clear aliases read the same state.
/// Verifies: SK-LNX-004
#[test]
fn set_and_clear_registers_change_only_their_bits() {
    let mut vgic = Vgic::new(2);
    for (set, clear) in [
        (ISENABLER, ICENABLER),
        (ISPENDR, ICPENDR),
        (ISACTIVER, ICACTIVER),
    ] {
        dist_write(&mut vgic, set + 8, 0b1010);
        dist_write(&mut vgic, set + 8, 0b0100);
        assert_eq!(dist_read(&mut vgic, set + 8), 0b1110);
        dist_write(&mut vgic, clear + 8, 0b0010);
        assert_eq!(dist_read(&mut vgic, clear + 8), 0b1100);
        assert_eq!(dist_read(&mut vgic, set + 4), 0, "other words untouched");

        redist_write(&mut vgic, 1, SGI + set, 1 << 31 | 1);
        redist_write(&mut vgic, 1, SGI + clear, 1);
        assert_eq!(redist_read(&mut vgic, 1, SGI + set), 1 << 31);
        assert_eq!(redist_read(&mut vgic, 0, SGI + set), 0, "vCPU 0's own");
    }
    assert_eq!(vgic.spis.enabled, 0b1100 << 32);
    assert_eq!(vgic.redistributors[1].private.pending, 1 << 31);
}

/// Verifies: SK-LNX-004
#[test]
fn priorities_take_bytes_and_words() {
    let mut vgic = Vgic::new(2);
    dist(&mut vgic, IPRIORITYR + 33, 1, Access::Write(0x80));
    dist(&mut vgic, IPRIORITYR + 34, 1, Access::Write(0x1ff));
    assert_eq!(dist_read(&mut vgic, IPRIORITYR + 32), 0x00ff_8000);
    dist_write(&mut vgic, IPRIORITYR + 92, 0x1122_3344);
    assert_eq!(
        dist(&mut vgic, IPRIORITYR + 95, 1, Access::Read).value,
        0x11
    );
    assert_eq!(vgic.priority(0, 92), 0x44);
    dist_write(&mut vgic, IPRIORITYR + 96, u64::from(u32::MAX));
    assert_eq!(dist_read(&mut vgic, IPRIORITYR + 96), 0, "INTID 96 up");

    redist(&mut vgic, 1, SGI + IPRIORITYR + 27, 1, Access::Write(0x60));
    assert_eq!(
        redist_read(&mut vgic, 1, SGI + IPRIORITYR + 24),
        0x6000_0000
    );
    redist_write(&mut vgic, 1, SGI + IPRIORITYR, 0x0403_0201);
    assert_eq!(vgic.priority(1, 3), 4);
    assert_eq!(vgic.priority(0, 3), 0, "vCPU 0's own");
}

/// Verifies: SK-LNX-004
#[test]
fn sgis_are_edge_and_the_rest_configurable() {
    let mut vgic = Vgic::new(1);
    assert_eq!(redist_read(&mut vgic, 0, SGI + ICFGR), 0xaaaa_aaaa);
    redist_write(&mut vgic, 0, SGI + ICFGR, 0);
    assert_eq!(
        redist_read(&mut vgic, 0, SGI + ICFGR),
        0xaaaa_aaaa,
        "read-only"
    );
    assert_eq!(redist_read(&mut vgic, 0, SGI + ICFGR + 4), 0, "PPIs level");
    redist_write(&mut vgic, 0, SGI + ICFGR + 4, u64::from(u32::MAX));
    assert_eq!(
        redist_read(&mut vgic, 0, SGI + ICFGR + 4),
        0xaaaa_aaaa,
        "bit 2n reserved"
    );
    redist_write(&mut vgic, 0, SGI + ICFGR + 4, 0b10 << 22);
    assert_eq!(vgic.redistributors[0].private.edge, 0xffff | 1 << 27);

    dist_write(&mut vgic, ICFGR + 12, 0b1000);
    assert_eq!(dist_read(&mut vgic, ICFGR + 12), 0b1000);
    assert_eq!(vgic.spis.edge, 1 << 17, "INTID 49");
    dist_write(&mut vgic, ICFGR + 24, u64::from(u32::MAX));
    assert_eq!(dist_read(&mut vgic, ICFGR + 24), 0, "INTID 96 up");
}

/// Verifies: SK-LNX-003, SK-LNX-004
#[test]
fn routers_read_back_their_fields_and_route() {
    let mut vgic = linux_ready(3);
    let spi40 = IROUTER + 8 * 40;
    dist(&mut vgic, spi40, 8, Access::Write(u64::MAX));
    assert_eq!(
        dist(&mut vgic, spi40, 8, Access::Read).value,
        0xff_00ff_ffff
    );
    assert_eq!(vgic.raise(40, 0), Some(0), "names no vCPU: vCPU 0");

    assert_eq!(
        dist(&mut vgic, spi40, 4, Access::Write(2)).wake,
        0,
        "Aff3 still 0xff"
    );
    assert_eq!(
        dist(&mut vgic, spi40 + 4, 4, Access::Write(0)).wake,
        0b100,
        "now vCPU 2"
    );
    assert_eq!(dist(&mut vgic, spi40, 8, Access::Read).value, 2);
    assert_eq!(dist(&mut vgic, spi40 + 4, 4, Access::Read).value, 0);
    dist(&mut vgic, IROUTER + 8 * 41, 8, Access::Write(1));
    assert_eq!(vgic.raise(41, 0), Some(1));
    assert_eq!(vgic.raise(40, 0), None, "already pending");
    let mut two = lists(4);
    vgic.refill(2, &mut two);
    assert_eq!(
        listed(&two),
        [40],
        "rerouted while pending: goes to the new route"
    );
    let mut one = lists(4);
    vgic.refill(1, &mut one);
    assert_eq!(listed(&one), [41]);

    dist(&mut vgic, IROUTER + 8 * 31, 8, Access::Write(1));
    assert_eq!(
        dist(&mut vgic, IROUTER + 8 * 31, 8, Access::Read).value,
        0,
        "not an SPI"
    );
    dist(&mut vgic, IROUTER + 8 * 96, 8, Access::Write(1));
    assert_eq!(
        dist(&mut vgic, IROUTER + 8 * 96, 8, Access::Read).value,
        0,
        "past the SPIs"
    );
}

/// Verifies: SK-LNX-004
#[test]
fn each_redistributor_names_its_vcpu_and_the_last_says_so() {
    for vcpus in 1..=MAX_VCPUS {
        let mut vgic = Vgic::new(vcpus);
        for vcpu in 0..vcpus {
            let typer = redist(&mut vgic, vcpu, GICR_TYPER, 8, Access::Read).value;
            let last = if vcpu == vcpus - 1 { 1 << 4 } else { 0 };
            assert_eq!(typer, affinity(vcpu) << 32 | (vcpu as u64) << 8 | last);
            assert_eq!(
                redist_read(&mut vgic, vcpu, GICR_TYPER),
                typer & 0xffff_ffff
            );
            assert_eq!(redist_read(&mut vgic, vcpu, GICR_TYPER + 4), typer >> 32);
        }
    }
}

/// Verifies: SK-LNX-004
#[test]
fn the_waker_handshake_follows_processor_sleep() {
    let mut vgic = Vgic::new(2);
    assert_eq!(redist_read(&mut vgic, 1, GICR_WAKER), 0b110);
    redist_write(&mut vgic, 1, GICR_WAKER, 0);
    assert_eq!(redist_read(&mut vgic, 1, GICR_WAKER), 0);
    assert_eq!(redist_read(&mut vgic, 0, GICR_WAKER), 0b110, "vCPU 0's own");
    redist_write(&mut vgic, 1, GICR_WAKER, 0b111);
    assert_eq!(redist_read(&mut vgic, 1, GICR_WAKER), 0b110);
}

/// Each refusal, in the order the checks run; a refused access changes nothing.
/// Verifies: SK-LNX-004
#[test]
fn bad_accesses_are_refused_and_change_nothing() {
    let mut vgic = linux_ready(2);
    let before = vgic.clone();
    let write = Access::Write(u64::MAX);
    let refusals = [
        // Width first, then alignment, then the window, then the register.
        (GICD_SIZE + 1, 3, Refused::BadWidth),
        (GICD_SIZE + 2, 4, Refused::Unaligned),
        (GICD_SIZE, 4, Refused::OutsideFrames),
        (u64::MAX - 7, 8, Refused::OutsideFrames),
        (GICD_CTLR, 8, Refused::BadWidth),
        (ISENABLER + 4, 1, Refused::BadWidth),
        (ISENABLER + 4, 2, Refused::BadWidth),
        (IPRIORITYR + 32, 2, Refused::BadWidth),
        (IPRIORITYR + 32, 8, Refused::BadWidth),
        (IROUTER + 8 * 32, 1, Refused::BadWidth),
        (IROUTER + 8 * 32 + 4, 8, Refused::Unaligned),
        (0x0034, 8, Refused::Unaligned),
        (0x0030, 8, Refused::BadWidth),
    ];
    for (offset, width, refused) in refusals {
        for access in [Access::Read, write] {
            let result = vgic.distributor(offset, width, access);
            assert_eq!(result, Err(refused), "GICD+{offset:#x}/{width}");
        }
    }
    let frames = [
        (2 * GICR_STRIDE, 4, Refused::OutsideFrames),
        (GICR_STRIDE + SGI + ISENABLER + 1, 1, Refused::BadWidth),
        (GICR_STRIDE + SGI + ISENABLER, 8, Refused::BadWidth),
        (GICR_STRIDE + GICR_TYPER + 4, 8, Refused::Unaligned),
        (GICR_STRIDE + GICR_WAKER, 2, Refused::BadWidth),
        (GICR_STRIDE, 0, Refused::BadWidth),
    ];
    for (offset, width, refused) in frames {
        for access in [Access::Read, write] {
            let result = vgic.redistributor(offset, width, access);
            assert_eq!(result, Err(refused), "GICR+{offset:#x}/{width}");
        }
    }
    assert_eq!(vgic, before);
}

/// Offsets that name nothing this GIC implements read as zero and ignore writes.
/// Verifies: SK-LNX-004
#[test]
fn reserved_offsets_read_as_zero_and_ignore_writes() {
    let mut vgic = linux_ready(2);
    let before = vgic.clone();
    // TYPER2, STATUSR, SETSPI_NSR, IGRPMODR, NSACR, SGIR, PIDR4, CIDR3.
    for offset in [
        0x000c, 0x0010, 0x0040, 0x0d04, 0x0e08, 0x0f00, 0xffd0, 0xfffc,
    ] {
        assert_eq!(dist_write(&mut vgic, offset, u64::from(u32::MAX)), 0);
        assert_eq!(dist_read(&mut vgic, offset), 0, "GICD+{offset:#x}");
    }
    // ITARGETSR and SPENDSGIR are byte-accessible and read as zero.
    for offset in [0x0820, 0x0f21] {
        dist(&mut vgic, offset, 1, Access::Write(0xff));
        assert_eq!(dist(&mut vgic, offset, 1, Access::Read).value, 0);
    }
    // GICR_CTLR, STATUSR, PROPBASER; SGI frame: IGRPMODR0, NSACR, a second
    // ISENABLER word (no extended PPIs).
    for offset in [
        0x0000,
        0x0010,
        0x0070,
        SGI + 0x0d00,
        SGI + 0x0e00,
        SGI + 0x0104,
    ] {
        assert_eq!(redist_write(&mut vgic, 1, offset, u64::from(u32::MAX)), 0);
        assert_eq!(redist_read(&mut vgic, 1, offset), 0, "GICR+{offset:#x}");
    }
    redist_write(&mut vgic, 1, GICR_TYPER, 0);
    assert_eq!(vgic, before);
}

/// Verifies: SK-LNX-003
#[test]
fn sgis_go_to_the_vcpus_of_the_target_list() {
    let mut vgic = linux_ready(4);
    assert_eq!(vgic.send_sgi(0, sgi1r(5, 0b1010)), 0b1010);
    assert_eq!(vgic.send_sgi(3, sgi1r(5, 0b0010)), 0, "already pending");
    for vcpu in 0..4 {
        let mut entries = lists(2);
        vgic.refill(vcpu, &mut entries);
        let expected: &[u32] = if vcpu % 2 == 1 { &[5] } else { &[] };
        assert_eq!(listed(&entries), expected, "vCPU {vcpu}");
    }
}

/// Verifies: SK-LNX-003
#[test]
fn irm_sends_to_every_vcpu_but_the_sender() {
    let mut vgic = linux_ready(3);
    assert_eq!(vgic.send_sgi(1, TO_OTHERS | sgi1r(2, 0)), 0b101);
    assert!(!vgic.wants_refill(1));
    let mut solo = linux_ready(1);
    assert_eq!(solo.send_sgi(0, TO_OTHERS | sgi1r(2, 0)), 0);
}

/// Targets outside the partition's vCPUs are no one.
/// Verifies: SK-LNX-003
#[test]
fn sgis_to_vcpus_that_do_not_exist_go_nowhere() {
    let mut vgic = linux_ready(2);
    let before = vgic.clone();
    assert_eq!(vgic.send_sgi(0, sgi1r(1, 0b1111_1100)), 0, "vCPUs 2-7");
    assert_eq!(vgic.send_sgi(0, 1 << 16 | sgi1r(1, 0b11)), 0, "Aff1 = 1");
    assert_eq!(vgic.send_sgi(0, 1 << 32 | sgi1r(1, 0b11)), 0, "Aff2 = 1");
    assert_eq!(vgic.send_sgi(0, 1 << 48 | sgi1r(1, 0b11)), 0, "Aff3 = 1");
    assert_eq!(vgic.send_sgi(0, 1 << 44 | sgi1r(1, 0b11)), 0, "RS = 1");
    assert_eq!(vgic, before);
}

/// A disabled interrupt stays pending and is delivered when enabled; the
/// enabling write says whom to wake.
/// Verifies: SK-LNX-003
#[test]
fn disabled_interrupts_wait_until_enabled() {
    let mut vgic = linux_ready(2);
    redist_write(&mut vgic, 1, SGI + ICENABLER, 1 << 3 | 1 << VTIMER_INTID);
    dist_write(&mut vgic, ICENABLER + 4, 1 << 8);
    assert_eq!(vgic.send_sgi(0, sgi1r(3, 0b10)), 0);
    assert_eq!(vgic.raise(VTIMER_INTID, 1), None);
    assert_eq!(vgic.raise(40, 0), None);
    assert!(!vgic.wants_refill(0) && !vgic.wants_refill(1));
    let mut entries = lists(4);
    assert!(!vgic.refill(1, &mut entries));
    assert_eq!(listed(&entries), []);

    assert_eq!(redist_write(&mut vgic, 1, SGI + ISENABLER, 1 << 3), 0b10);
    assert_eq!(dist_write(&mut vgic, ISENABLER + 4, 1 << 8), 0b01);
    assert_eq!(
        redist_write(&mut vgic, 1, SGI + ISENABLER, 1 << VTIMER_INTID),
        0b10,
        "another interrupt for vCPU 1"
    );
    vgic.refill(1, &mut entries);
    assert_eq!(listed(&entries), [3, VTIMER_INTID]);
}

/// Verifies: SK-LNX-003
#[test]
fn a_disabled_distributor_delivers_nothing() {
    let mut vgic = linux_ready(2);
    dist_write(&mut vgic, GICD_CTLR, 0);
    assert_eq!(vgic.raise(VTIMER_INTID, 1), None);
    assert_eq!(vgic.send_sgi(1, sgi1r(0, 1)), 0);
    assert!(!vgic.wants_refill(0) && !vgic.wants_refill(1));
    assert_eq!(dist_write(&mut vgic, GICD_CTLR, 0x13), 0b11);
}

/// An interrupt the guest marked active is held back while pending, until
/// it is deactivated.
/// Verifies: SK-LNX-003
#[test]
fn active_interrupts_are_held_back() {
    let mut vgic = linux_ready(1);
    dist_write(&mut vgic, ISACTIVER + 4, 1 << 2);
    assert_eq!(vgic.raise(34, 0), None);
    assert_eq!(dist_read(&mut vgic, ISPENDR + 4), 1 << 2);
    assert_eq!(dist_write(&mut vgic, ICACTIVER + 4, 1 << 2), 1);
    assert_eq!(dist_write(&mut vgic, ICPENDR + 4, 1 << 2), 0);
    assert!(!vgic.wants_refill(0), "no longer pending");
}

/// More pending interrupts than list registers: the most urgent go first
/// (lowest priority value, then lowest INTID), the rest after the guest frees
/// entries; nothing is lost or delivered twice.
/// Verifies: SK-LNX-003
#[test]
fn refills_go_by_priority_and_spill_over() {
    let mut vgic = linux_ready(1);
    let priorities = [
        (VTIMER_INTID, 0x80),
        (40, 0x20),
        (33, 0xa0),
        (5, 0xa0),
        (60, 0x20),
        (7, 0xf0),
    ];
    for (intid, priority) in priorities {
        let offset = u64::from(intid);
        if intid < SPI_BASE {
            redist(
                &mut vgic,
                0,
                SGI + IPRIORITYR + offset,
                1,
                Access::Write(priority),
            );
        } else {
            dist(&mut vgic, IPRIORITYR + offset, 1, Access::Write(priority));
        }
        vgic.raise(intid, 0);
    }
    let mut entries = lists(4);
    assert!(vgic.refill(0, &mut entries), "two did not fit");
    assert_eq!(listed(&entries), [40, 60, VTIMER_INTID, 5]);
    assert_eq!(entries[1], entry(60, 0x20, ListState::Pending));
    assert!(vgic.refill(0, &mut entries), "nothing free yet");
    assert_eq!(listed(&entries), [40, 60, VTIMER_INTID, 5]);

    entries[1].state = ListState::Invalid;
    entries[3].state = ListState::Invalid;
    assert!(!vgic.refill(0, &mut entries));
    assert_eq!(listed(&entries), [40, 33, VTIMER_INTID, 7]);
    assert!(!vgic.wants_refill(0));
    for entry in &mut entries {
        entry.state = ListState::Invalid;
    }
    assert!(!vgic.refill(0, &mut entries));
    assert_eq!(listed(&entries), []);
}

/// Verifies: SK-LNX-003
#[test]
fn pending_again_while_listed_is_folded_into_the_entry() {
    let mut vgic = linux_ready(1);
    vgic.raise(VTIMER_INTID, 0);
    vgic.raise(40, 0);
    let mut entries = lists(2);
    vgic.refill(0, &mut entries);
    entries[0].state = ListState::Active;
    assert_eq!(vgic.raise(VTIMER_INTID, 0), Some(0));
    assert_eq!(vgic.raise(40, 0), Some(0));
    assert!(!vgic.refill(0, &mut entries));
    assert_eq!(entries[0].state, ListState::PendingActive);
    assert_eq!(
        entries[1].state,
        ListState::Pending,
        "two edges, one interrupt"
    );
    assert!(!vgic.wants_refill(0));
}

/// Entries of hardware-linked interrupts are never changed or reused while
/// valid, and an emulated interrupt with the same INTID waits for them.
/// Verifies: SK-LNX-003
#[test]
fn hardware_entries_are_left_alone() {
    let mut vgic = linux_ready(1);
    let hardware = |intid, state| ListEntry {
        intid,
        priority: 0xa0,
        state,
        hardware: true,
    };
    let mut entries = [
        hardware(40, ListState::Active),
        ListEntry::FREE,
        hardware(41, ListState::Pending),
        ListEntry {
            hardware: true,
            ..ListEntry::FREE
        },
    ];
    vgic.raise(40, 0);
    vgic.raise(41, 0);
    vgic.raise(5, 0);
    assert!(vgic.refill(0, &mut entries), "40 and 41 wait");
    assert_eq!(entries[0], hardware(40, ListState::Active));
    assert_eq!(entries[2], hardware(41, ListState::Pending));
    assert_eq!(
        listed(&entries),
        [40, 5, 41],
        "an invalid hardware entry is free"
    );
    entries[0].state = ListState::Invalid;
    assert!(vgic.refill(0, &mut entries));
    assert_eq!(entries[0], entry(40, 0xa0, ListState::Pending));
}

/// An SPI stays with the vCPU whose list registers hold it, even rerouted,
/// and follows its route again once the guest is done with it.
/// Verifies: SK-LNX-003
#[test]
fn an_spi_in_flight_stays_where_it_is() {
    let mut vgic = linux_ready(2);
    vgic.raise(50, 0);
    let (mut zero, mut one) = (lists(2), lists(2));
    vgic.refill(0, &mut zero);
    zero[0].state = ListState::Active;
    dist(&mut vgic, IROUTER + 8 * 50, 8, Access::Write(affinity(1)));
    assert_eq!(vgic.raise(50, 1), Some(0), "still vCPU 0's");
    assert!(!vgic.wants_refill(1));
    vgic.refill(0, &mut zero);
    assert_eq!(zero[0], entry(50, 0xa0, ListState::PendingActive));
    zero[0].state = ListState::Invalid;
    vgic.refill(0, &mut zero);
    assert_eq!(vgic.raise(50, 0), Some(1), "released: follows the route");
    vgic.refill(1, &mut one);
    assert_eq!(listed(&one), [50]);
}

/// An SPI raised again after the guest completed it, before its vCPU refilled,
/// goes to that vCPU (the one the raise named to kick), though rerouted since.
/// Verifies: SK-LNX-003
#[test]
fn an_spi_raised_again_goes_where_the_raise_said() {
    let mut vgic = linux_ready(2);
    vgic.raise(50, 0);
    let mut zero = lists(2);
    vgic.refill(0, &mut zero);
    dist(&mut vgic, IROUTER + 8 * 50, 8, Access::Write(affinity(1)));
    zero[0].state = ListState::Invalid;
    assert_eq!(vgic.raise(50, 1), Some(0));
    assert!(!vgic.wants_refill(1));
    vgic.refill(0, &mut zero);
    assert_eq!(listed(&zero), [50]);
}

/// A stopping vCPU's pending entries go back to the model; an SPI among them
/// follows its route to another vCPU.
/// Verifies: SK-LNX-003
#[test]
fn a_stopping_vcpu_gives_its_list_registers_back() {
    let mut vgic = linux_ready(2);
    vgic.raise(50, 0);
    vgic.raise(VTIMER_INTID, 0);
    vgic.raise(3, 0);
    let mut entries = lists(4);
    vgic.refill(0, &mut entries);
    entries[0].state = ListState::Active;
    entries[3] = ListEntry {
        hardware: true,
        ..entry(70, 0xa0, ListState::Active)
    };
    dist(&mut vgic, IROUTER + 8 * 50, 8, Access::Write(affinity(1)));
    assert_eq!(vgic.take_back(0, &mut entries), 0b11);
    assert_eq!(&entries[..3], [ListEntry::FREE; 3]);
    assert!(entries[3].hardware, "left alone");
    let mut one = lists(4);
    vgic.refill(1, &mut one);
    assert_eq!(listed(&one), [50]);
    let mut zero = lists(4);
    vgic.refill(0, &mut zero);
    assert_eq!(listed(&zero), [VTIMER_INTID], "SGI 3 was active: forgotten");
}

/// Verifies: SK-LNX-003
#[test]
fn raising_what_does_not_exist_does_nothing() {
    let mut vgic = linux_ready(2);
    let before = vgic.clone();
    assert_eq!(vgic.raise(INTIDS, 0), None);
    assert_eq!(vgic.raise(1020, 0), None);
    assert_eq!(vgic.raise(VTIMER_INTID, 2), None, "no vCPU 2");
    assert_eq!(vgic, before);
}

/// Verifies: SK-LNX-003
#[test]
fn reset_forgets_everything() {
    let mut vgic = linux_ready(3);
    dist(&mut vgic, IROUTER + 8 * 40, 8, Access::Write(2));
    dist_write(&mut vgic, ICFGR + 8, u64::from(u32::MAX));
    redist_write(&mut vgic, 1, SGI + ISACTIVER, 1);
    vgic.raise(40, 0);
    vgic.send_sgi(0, TO_OTHERS | sgi1r(9, 0));
    let mut entries = lists(4);
    vgic.refill(2, &mut entries);
    vgic.reset();
    assert_eq!(vgic, Vgic::new(3));
    for vcpu in 0..3 {
        assert!(!vgic.wants_refill(vcpu));
        assert_eq!(redist_read(&mut vgic, vcpu, GICR_WAKER), 0b110);
    }
    assert_eq!(dist_read(&mut vgic, GICD_CTLR), 0x50);
    assert_eq!(dist(&mut vgic, IROUTER + 8 * 40, 8, Access::Read).value, 0);
}
