//! Host tests of a Linux partition's fast lane (`virt.rs`), as the back ends
//! drive it: trapped accesses to its emulated GIC and UART completed by the
//! kernel, SGIs and timer interrupts made pending, list registers refilled,
//! the cores a new interrupt must reach kicked; anything not for the fast
//! lane (a native partition, a refused access, a suspended partition) left to
//! the full path; and the devices reset by a restart. The GIC's and the
//! UART's own rules are tested in `vgic` and `uart`; here the wiring is.

use super::supervise_rig::*;
use super::*;
use crate::vgic::{Access, ListEntry, ListState};
use septum_abi::virt::{
    GICD_BASE, GICR_BASE, GICR_STRIDE, SPI_BASE, UART_BASE, UART_SIZE, UART_SPI, VTIMER_INTID,
};

/// alpha's and beta's vCPUs (one each); beta is the Linux partition.
const ALPHA_VCPU: usize = 1;
const BETA_VCPU: usize = 2;

// The registers these tests touch (offsets into their windows).
const GICD_CTLR: u64 = 0x0000;
const CTLR_ENABLE_GRP1: u64 = 1 << 1;
const ISENABLER: u64 = 0x0100;
const ISPENDR: u64 = 0x0200;
const GICR_TYPER: u64 = 0x0008;
const TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: u64 = 0x0014;
const SGI_FRAME: u64 = 0x1_0000;
const UART_DR: u64 = 0x000;
const UART_IMSC: u64 = 0x038;
const UART_RX_INTERRUPT: u64 = 1 << 4;

/// The UART's interrupt, as the GIC numbers it.
const UART_INTID: u32 = SPI_BASE + UART_SPI;

fn emulate(t: &mut Rig, vcpu: usize, address: u64, width: u8, access: Access) -> Option<Completed> {
    t.sys.emulate_access(vcpu, address, width, access, &mut t.m)
}

/// beta reads the 32-bit register at `address`.
fn read(t: &mut Rig, address: u64) -> u64 {
    emulate(t, BETA_VCPU, address, 4, Access::Read)
        .expect("the fast lane takes beta's own registers")
        .value
}

/// beta writes the 32-bit register at `address`.
fn write(t: &mut Rig, address: u64, value: u64) -> Completed {
    emulate(t, BETA_VCPU, address, 4, Access::Write(value))
        .expect("the fast lane takes beta's own registers")
}

/// The bit of `intid` in its `ISENABLER`/`ISPENDR` word: the word's offset
/// from the array and the bit.
fn bit(intid: u32) -> (u64, u64) {
    (4 * u64::from(intid / 32), 1 << (intid % 32))
}

/// beta brings its GIC up as Linux does: its redistributor awake, the
/// distributor on, and the interrupts `intids` enabled.
fn gic_up(t: &mut Rig, intids: &[u32]) {
    write(t, GICR_BASE + GICR_WAKER, 0);
    for &intid in intids {
        let (word, mask) = bit(intid);
        let at = if intid < SPI_BASE {
            GICR_BASE + SGI_FRAME + ISENABLER
        } else {
            GICD_BASE + ISENABLER + word
        };
        write(t, at, mask);
    }
    write(t, GICD_BASE + GICD_CTLR, CTLR_ENABLE_GRP1);
}

/// Refills beta's list registers (four free); the INTIDs placed.
fn refill(t: &mut Rig, vcpu: usize) -> (bool, Vec<u32>) {
    let mut lists = [ListEntry::FREE; 4];
    let more = t.sys.refill(vcpu, &mut lists);
    let placed = lists
        .iter()
        .filter(|entry| entry.state != ListState::Invalid)
        .map(|entry| entry.intid)
        .collect();
    (more, placed)
}

/// A Linux partition's loads and stores of its GIC's registers are completed
/// by the kernel; an access the GIC refuses, one outside every emulated
/// window, and any access by a native partition are left to the full path
/// and change nothing.
/// Verifies: SK-LNX-004, SK-LNX-003
#[test]
fn the_fast_lane_completes_a_linux_partitions_gic_accesses_and_nothing_else() {
    let mut t = linux_running();
    let ctlr = GICD_BASE + GICD_CTLR;
    assert_eq!(read(&mut t, ctlr) & CTLR_ENABLE_GRP1, 0, "off at reset");
    let typer = emulate(&mut t, BETA_VCPU, GICR_BASE + GICR_TYPER, 8, Access::Read);
    let typer = typer.expect("a 64-bit read of GICR_TYPER").value;
    assert_ne!(typer & TYPER_LAST, 0, "its one vCPU's frame is the last");
    let on = write(&mut t, ctlr, CTLR_ENABLE_GRP1);
    assert_eq!(
        on,
        Completed {
            value: 0,
            interrupts: false,
            reschedule: false
        },
        "nothing pending: nobody to wake"
    );
    assert_ne!(read(&mut t, ctlr) & CTLR_ENABLE_GRP1, 0);

    let refused = [
        (ctlr, 3),                    // no such width
        (ctlr + 2, 4),                // unaligned
        (GICR_BASE + GICR_STRIDE, 4), // a vCPU it does not have
        (UART_BASE + UART_SIZE, 4),   // past every window
        (UART_BASE + UART_DR + 1, 4), // unaligned, in the UART
    ];
    for (address, width) in refused {
        let write = Access::Write(0);
        assert_eq!(
            emulate(&mut t, BETA_VCPU, address, width, write),
            None,
            "{address:#x}/{width}"
        );
    }
    assert_ne!(read(&mut t, ctlr) & CTLR_ENABLE_GRP1, 0, "still on");
    for address in [ctlr, GICR_BASE + GICR_TYPER, UART_BASE] {
        let access = emulate(&mut t, ALPHA_VCPU, address, 4, Access::Read);
        assert_eq!(access, None, "alpha is native: {address:#x} is a fault");
    }
}

/// An interrupt made deliverable to a vCPU live on another core (here a key
/// typed into the Linux partition's UART with its receive interrupt
/// unmasked, or a store that enables a pending SPI) gets that core kicked,
/// once; the refill then puts it in the vCPU's list registers. SGIs and the
/// virtual timer are made pending by the fast lane too; a native partition
/// has none of this.
/// Verifies: SK-LNX-003, SK-LNX-007
#[test]
fn a_new_interrupt_kicks_the_core_where_its_vcpu_is_live_and_is_refilled() {
    let mut t = linux_running_on([0, 0, 1]);
    t.sys.loaded[1] = Some(BETA_VCPU);
    let sgi = 1;
    gic_up(&mut t, &[UART_INTID, sgi, VTIMER_INTID]);
    write(&mut t, UART_BASE + UART_IMSC, UART_RX_INTERRUPT);
    assert_eq!(t.sys.take_interrupted(0), 0, "nothing pending yet");

    t.key(ESCAPE);
    t.key(ESCAPE);
    t.says("@@ kernel console owner=beta");
    t.key(b'a');
    assert_eq!(t.sys.take_interrupted(0), 1 << 1, "core 1 is kicked");
    assert_eq!(t.sys.take_interrupted(0), 0, "once");
    assert!(t.sys.wants_refill(BETA_VCPU));
    assert_eq!(refill(&mut t, BETA_VCPU), (false, vec![UART_INTID]));
    assert!(!t.sys.wants_refill(BETA_VCPU), "listed, no longer pending");
    assert_eq!(read(&mut t, UART_BASE + UART_DR), u64::from(b'a'));

    // A pending SPI that is disabled waits; the store enabling it wakes.
    let spi = SPI_BASE + 8;
    let (word, mask) = bit(spi);
    assert!(!write(&mut t, GICD_BASE + ISPENDR + word, mask).interrupts);
    let enabled = write(&mut t, GICD_BASE + ISENABLER + word, mask);
    assert!(enabled.interrupts, "the store made one deliverable");
    assert_eq!(t.sys.take_interrupted(1), 0, "a core does not kick itself");
    assert_eq!(refill(&mut t, BETA_VCPU), (false, vec![spi]));

    assert!(t.sys.send_sgi(BETA_VCPU, u64::from(sgi) << 24 | 0b1));
    assert!(t.sys.raise_private(BETA_VCPU, VTIMER_INTID));
    let (more, mut placed) = refill(&mut t, BETA_VCPU);
    placed.sort_unstable();
    assert_eq!((more, placed), (false, vec![sgi, VTIMER_INTID]));

    assert!(!t.sys.send_sgi(ALPHA_VCPU, u64::from(sgi) << 24 | 0b1));
    assert!(!t.sys.raise_private(ALPHA_VCPU, VTIMER_INTID));
    assert!(!t.sys.wants_refill(ALPHA_VCPU));
    assert_eq!(refill(&mut t, ALPHA_VCPU), (false, vec![]));
}

/// A suspended Linux partition's accesses and SGIs are not for the fast lane:
/// they go the full path, which holds the trap. A restart resets its GIC and
/// UART.
/// Verifies: SK-LNX-004, SK-HM-002
#[test]
fn a_suspended_partition_takes_the_full_path_and_a_restart_resets_its_devices() {
    let mut t = linux_running();
    gic_up(&mut t, &[UART_INTID]);
    write(&mut t, UART_BASE + UART_IMSC, UART_RX_INTERRUPT);
    t.fault(BETA_VCPU, trap(0x9000_0000, 4));
    assert_eq!(t.state(2), PartitionState::Suspended);
    for address in [GICD_BASE + GICD_CTLR, UART_BASE + UART_IMSC] {
        assert_eq!(emulate(&mut t, BETA_VCPU, address, 4, Access::Read), None);
    }
    assert!(!t.sys.send_sgi(BETA_VCPU, 1 << 24 | 0b1));

    assert_eq!(results(&t.svc(Call::Restart, &[CTL_BETA, 0])), [0; 3]);
    while t.sys.owes_work(2) {
        t.sys.work(2, &mut t.m);
    }
    assert_eq!(t.state(2), PartitionState::Runnable);
    let ctlr = read(&mut t, GICD_BASE + GICD_CTLR);
    assert_eq!(ctlr & CTLR_ENABLE_GRP1, 0, "the distributor is off again");
    assert_eq!(read(&mut t, UART_BASE + UART_IMSC), 0, "all masked again");
}

/// What a Linux partition writes to its UART becomes lines of its console,
/// tagged with its name: it cannot forge a kernel line.
/// Verifies: SK-LNX-007, SK-AUD-002
#[test]
fn a_linux_partitions_uart_output_becomes_its_own_console_lines() {
    let mut t = linux_running();
    for &byte in b"hello\n@@ kernel forged\n" {
        let sent = write(&mut t, UART_BASE + UART_DR, u64::from(byte));
        assert!(!sent.interrupts, "the transmitter never interrupts");
    }
    t.says("\n[beta] hello\n");
    assert!(
        !t.m.console
            .lines()
            .any(|line| line.starts_with("@@ kernel forged")),
        "{}",
        t.m.console
    );
    t.says("\n[beta] @@ kernel forged\n");
}

/// Every access completed on the fast lane, an SGI among them, is counted as
/// emulated under the partition that made it; one left to the full path is
/// not.
/// Verifies: SK-AUD-008
#[test]
fn accesses_completed_on_the_fast_lane_are_counted() {
    use septum_abi::usage::TrapKind;
    let emulated = |t: &mut Rig, index: usize| {
        t.sys.partitions[index].usage.record(0).traps[TrapKind::Emulated.number()]
    };
    let mut t = linux_running();
    read(&mut t, GICD_BASE + GICD_CTLR);
    write(&mut t, UART_BASE + UART_IMSC, UART_RX_INTERRUPT);
    assert!(t.sys.send_sgi(BETA_VCPU, 1 << 24 | 0b1));
    assert_eq!(
        emulate(&mut t, ALPHA_VCPU, GICD_BASE, 4, Access::Read),
        None
    );
    assert_eq!(emulated(&mut t, 2), 3);
    assert_eq!(emulated(&mut t, 1), 0, "alpha's access went the full path");
}
