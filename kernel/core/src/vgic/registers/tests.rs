//! The register windows, register by register, and Linux's boot sequence
//! against them.

use septum_abi::virt::{GICD_SIZE, GICR_STRIDE, UART_SPI, VTIMER_INTID};

use crate::vgic::tests::*;
use crate::vgic::*;

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
