//! Compiling a validated system description into the binary system package the
//! kernel reads: each partition's program is found and flattened, and the records
//! are written in boot order (the service VM first). Invariant: everywhere the
//! package names a partition by index (control capabilities, send-end badges, the
//! queue table's ends), the index is its place in that boot order; queues keep
//! their description order.

use anyhow::{Context, Result, bail};
use std::path::Path;

use septum_core::caps::{CAP_SLOTS, Cap, CapTable, CapType, Rights};
use septum_core::package::{self, Kind as PackageKind, PartitionSpec, QueueSpec};
use septum_core::resources::{Mmio, Ports, Resources, Window};
use septum_core::supervision::{RestartBudget, Supervision, TrapAction, TrapClass, TrapPolicy};
use septum_description::{Board, CapKind, ImageSource, Kind, Partition, Right, System};

use crate::image;

/// The ELF of `partition`'s program for `arch`.
fn elf_path(system: &System, source: &ImageSource, arch: &str) -> Result<std::path::PathBuf> {
    Ok(match source {
        ImageSource::Workspace(name) => image::partition_elf(arch, name)?,
        ImageSource::File(path) => system.path.parent().unwrap_or(Path::new(".")).join(path),
    })
}

fn rights(rights: &[Right]) -> Rights {
    Rights(rights.iter().fold(0, |bits, right| {
        bits | match right {
            Right::Write => Rights::WRITE,
            Right::Send => Rights::SEND,
            Right::Receive => Rights::RECEIVE,
            Right::Inspect => Rights::INSPECT,
            Right::Resume => Rights::RESUME,
            Right::Restart => Rights::RESTART,
            Right::Stop => Rights::STOP,
            Right::SetMemoryTarget => Rights::SET_MEMORY_TARGET,
            Right::Inflate => Rights::INFLATE,
            Right::Deflate => Rights::DEFLATE,
            Right::Heartbeat => Rights::HEARTBEAT,
            Right::Ready => Rights::READY,
            Right::Shutdown => Rights::SHUTDOWN,
            Right::Monitor => Rights::MONITOR,
            Right::Yield => Rights::YIELD,
            Right::Exit => Rights::EXIT,
        }
        .0
    }))
}

/// `partition`'s capability table: partitions named by their boot-order index,
/// queues by their index in the description.
fn cap_table(system: &System, boot_order: &[&Partition], partition: &Partition) -> CapTable {
    let index_of = |name: &str, mut names: std::slice::Iter<'_, &str>| {
        let index = names
            .position(|n| *n == name)
            .expect("validated: the target exists");
        u16::try_from(index).expect("at most a few partitions and queues")
    };
    let queues: Vec<&str> = system.queues.iter().map(|q| q.name.as_str()).collect();
    let partitions: Vec<&str> = boot_order.iter().map(|p| p.name.as_str()).collect();
    let mut table: CapTable = [None; CAP_SLOTS];
    let holder = partitions
        .iter()
        .position(|p| *p == partition.name)
        .expect("the holder is in the system");
    for (slot, cap) in table.iter_mut().zip(&partition.caps) {
        let (ty, object) = match &cap.kind {
            CapKind::Console => (CapType::Console, 0),
            CapKind::QueueSend(name) => (CapType::QueueSend, index_of(name, queues.iter())),
            CapKind::QueueReceive(name) => (CapType::QueueReceive, index_of(name, queues.iter())),
            CapKind::Control(name) => (CapType::Control, index_of(name, partitions.iter())),
            CapKind::System => (CapType::System, 0),
            CapKind::SelfPartition => (CapType::SelfPartition, 0),
            CapKind::Balloon => (CapType::Balloon, 0),
            CapKind::Watchdog => (CapType::Watchdog, 0),
        };
        // A send end's badge names its holder; nothing else is badged.
        let badge = match ty {
            CapType::QueueSend => u16::try_from(holder).expect("at most a few partitions"),
            _ => 0,
        };
        *slot = Some(Cap {
            ty,
            rights: rights(&cap.rights),
            object,
            badge,
        });
    }
    table
}

/// The queue table: each queue's ends as boot-order indices, in description order.
fn queue_table(system: &System, boot_order: &[&Partition]) -> Vec<QueueSpec> {
    let index_of = |name: &str| {
        boot_order
            .iter()
            .position(|p| p.name == name)
            .expect("validated: queue ends are partitions")
    };
    system
        .queues
        .iter()
        .map(|q| QueueSpec {
            sender: index_of(&q.from),
            receiver: index_of(&q.to),
            depth: q.depth,
            max_in_flight: q.max_in_flight,
        })
        .collect()
}

/// `partition`'s supervision, in the kernel's terms.
fn supervision(partition: &Partition) -> Supervision {
    use septum_description::{TrapAction as Action, TrapClass as Class};
    let described = &partition.supervision;
    let policy = described
        .policy
        .iter()
        .fold(TrapPolicy::default(), |policy, &(class, action)| {
            let class = match class {
                Class::Mmio => TrapClass::Mmio,
                Class::Port => TrapClass::Port,
                Class::SystemRegister => TrapClass::SystemRegister,
                Class::Instruction => TrapClass::Instruction,
            };
            let action = match action {
                Action::Service => TrapAction::Service,
                Action::Stop => TrapAction::Stop,
            };
            policy.with(class, action)
        });
    Supervision {
        policy,
        budget: RestartBudget {
            restarts: described.restart_budget.restarts,
            period_ms: described.restart_budget.period_ms,
        },
        watchdog_ms: described.watchdog_ms.unwrap_or(0),
    }
}

/// `partition`'s grants: its placement, limits, receive window, cores and windows,
/// and the MMIO blocks (widened to whole pages), port ranges and interrupts of its
/// devices.
fn resources(partition: &Partition, board: &Board) -> Result<Resources> {
    const PAGE: u64 = septum_abi::layout::PAGE_SIZE;
    let cpus = partition
        .cpus
        .iter()
        .fold(0u32, |mask, cpu| mask | (1 << cpu));
    let mut r = Resources::new(partition.memory_min, partition.memory_max, cpus);
    r.at = partition.at;
    r.receive_window = partition.receive_window;
    r.shares = partition.memory_shares;
    let too_many = |_| {
        anyhow::anyhow!(
            "partition `{}` has more grants than the package holds",
            partition.name
        )
    };
    for window in &partition.windows {
        r.add_window(Window {
            cpu: window.cpu,
            offset_us: u32::try_from(window.offset_us)?,
            length_us: u32::try_from(window.length_us)?,
        })
        .map_err(too_many)?;
    }
    for name in &partition.devices {
        let device = board.device(name).context("validated: the device exists")?;
        for block in &device.mmio {
            let base = block.base / PAGE * PAGE;
            let size = (block.end() - base).next_multiple_of(PAGE);
            r.add_mmio(Mmio { base, size }).map_err(too_many)?;
        }
        for &[first, count] in &device.ports {
            r.add_ports(Ports { first, count }).map_err(too_many)?;
        }
        for &irq in &device.irqs {
            r.add_irq(irq).map_err(too_many)?;
        }
    }
    Ok(r)
}

/// Builds the package for `system` on `board`.
pub fn build(system: &System, board: &Board) -> Result<Vec<u8>> {
    let arch = board.arch.as_str();
    let ram_base = septum_abi::layout::RAM_BASE;
    let partitions: Vec<_> = system.boot_order().collect();
    let mut flats = Vec::new();
    for partition in &partitions {
        let elf = elf_path(system, &partition.image, arch)?;
        let flat = image::flatten_file(&elf).with_context(|| {
            format!("{}: partition `{}`", system.path.display(), partition.name)
        })?;
        if flat.base != ram_base {
            bail!(
                "{}: partition `{}`: {} is linked at {:#x}, but partition RAM starts at {ram_base:#x}",
                system.path.display(),
                partition.name,
                elf.display(),
                flat.base
            );
        }
        flats.push(flat);
    }
    let grants = partitions
        .iter()
        .map(|p| resources(p, board))
        .collect::<Result<Vec<_>>>()?;
    let specs: Vec<PartitionSpec> = partitions
        .iter()
        .zip(&flats)
        .zip(grants)
        .map(|((partition, flat), resources)| PartitionSpec {
            name: &partition.name,
            kind: match partition.kind {
                Kind::Service => PackageKind::Service,
                Kind::Guest => PackageKind::Guest,
            },
            ram_size: partition.ram,
            image: &flat.bytes,
            entry_offset: flat.entry - flat.base,
            argument: partition.argument,
            caps: cap_table(system, &partitions, partition),
            resources,
            supervision: supervision(partition),
        })
        .collect();
    let queues = queue_table(system, &partitions);
    let frame = system.major_frame_us.map(u32::try_from).transpose()?;
    package::encode(&specs, &queues, frame)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", system.path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifies: SK-CAP-001, SK-CFG-003
    #[test]
    fn capability_tables_name_objects_by_index_and_badge_send_ends_with_their_holder() {
        let board = Board::load(&crate::from_root("description/tests/board")).expect("board");
        let system =
            septum_description::load(&crate::from_root("description/tests/good.toml"), &board)
                .expect("valid");
        let order: Vec<&Partition> = system.boot_order().collect();
        assert_eq!(order[1].name, "alpha");
        let alpha = cap_table(&system, &order, order[1]);
        let send = alpha[1].expect("alpha's slot 1 is its send end");
        assert_eq!(
            (send.ty, send.object, send.badge),
            (CapType::QueueSend, 0, 1)
        );
        assert_eq!(
            alpha[0].map(|c| (c.ty, c.rights, c.badge)),
            Some((CapType::Console, Rights::WRITE, 0))
        );
        let service = cap_table(&system, &order, order[0]);
        let control = service[1].expect("the service VM's slot 1 controls alpha");
        assert_eq!(
            (control.ty, control.object, control.badge),
            (CapType::Control, 1, 0)
        );
        assert_eq!(
            control.rights,
            Rights(Rights::INSPECT.0 | Rights::RESTART.0)
        );
        assert_eq!(service[3], None);
    }

    /// Verifies: SK-CFG-003
    #[test]
    fn queues_name_their_ends_in_boot_order_and_receive_windows_are_carried() {
        let board = Board::load(&crate::from_root("description/tests/board")).expect("board");
        let system =
            septum_description::load(&crate::from_root("description/tests/good.toml"), &board)
                .expect("valid");
        // `alpha` comes first in the file, but the service VM boots first.
        assert_eq!(system.partitions[0].name, "alpha");
        let order: Vec<&Partition> = system.boot_order().collect();
        assert_eq!(
            queue_table(&system, &order),
            [QueueSpec {
                sender: 1,
                receiver: 0,
                depth: 8,
                max_in_flight: 4
            }]
        );
        let windows: Vec<u64> = order
            .iter()
            .map(|p| resources(p, &board).expect("fits").receive_window)
            .collect();
        assert_eq!(windows, [128 << 10, 0]);
    }

    /// Verifies: SK-CFG-003
    #[test]
    fn supervision_is_compiled_as_described() {
        let board = Board::load(&crate::from_root("description/tests/board")).expect("board");
        let system =
            septum_description::load(&crate::from_root("description/tests/good.toml"), &board)
                .expect("valid");
        let order: Vec<&Partition> = system.boot_order().collect();
        let alpha = supervision(order[1]);
        let stopped: Vec<_> = TrapClass::ALL
            .into_iter()
            .filter(|&class| alpha.policy.action(class) == TrapAction::Stop)
            .collect();
        assert_eq!(stopped, [TrapClass::Mmio, TrapClass::Instruction]);
        assert_eq!(
            (
                alpha.budget.restarts,
                alpha.budget.period_ms,
                alpha.watchdog_ms
            ),
            (5, 60_000, 50)
        );
        assert_eq!(supervision(order[0]), Supervision::default());
    }
}
