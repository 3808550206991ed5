//! Compiling a validated system description into the binary system package the
//! kernel reads: each partition's program is read, checked and flattened (the
//! image rules of `septum-description`), the records are written in boot order
//! (the service VM first), and the package is then set up on the host as the
//! kernel sets it up at boot, so that a package this module returns never makes
//! the kernel stop. Invariant: everywhere the package names a partition by index
//! (control capabilities, send-end badges, the queue table's ends), the index is
//! its place in that boot order; queues keep their description order.
//!
//! Every error names the description file: the image rules' errors also name the
//! line, column, partition and rule; the others name the partition, and cannot
//! happen for a description the validator accepted (each is one of its rules).

use anyhow::{Context, Result, anyhow};
use std::path::{Path, PathBuf};

use septum_core::abi::layout::RAM_BASE;
use septum_core::balloon::{self, Balloon};
use septum_core::caps::{CAP_SLOTS, Cap, CapTable, CapType};
use septum_core::flip::Flip;
use septum_core::memory::Range;
use septum_core::package::{
    self, Kind as PackageKind, Package, PackageError, PartitionSpec, Profile, QueueSpec,
};
use septum_core::resources::{Mmio, Ports, Resources, Window};
use septum_core::supervision::{RestartBudget, Supervision, TrapPolicy};
use septum_core::system::System as KernelSystem;
use septum_description::{
    Board, CapKind, Image, ImageFile, ImageSource, Kind, Partition, System, load_images,
};

use crate::{image, linux};

/// Where the files of `system`'s images are for `board`: workspace programs in
/// the bare-metal build, files the description names relative to its folder,
/// a Linux partition's defaults in the cache of [`linux`].
pub fn locator(system: &System, board: &Board) -> Result<impl Fn(ImageFile<'_>) -> PathBuf> {
    let programs = image::partition_dir(&board.arch)?;
    let folder = system.path.parent().unwrap_or(Path::new(".")).to_owned();
    Ok(move |file: ImageFile<'_>| match file {
        ImageFile::Workspace(name) => programs.join(name),
        ImageFile::Described(path) => folder.join(path),
        ImageFile::DefaultKernel => linux::default_kernel(),
        ImageFile::DefaultInitrd => linux::default_initrd(),
    })
}

/// Reads, checks and flattens the program of every partition of `system` for
/// `board`, in the order of `system.partitions` (the default Linux files made
/// ready first, if a partition uses them).
pub fn images(system: &System, board: &Board) -> Result<Vec<Image>> {
    linux::prepare(system)?;
    let locate = locator(system, board)?;
    load_images(system, board, &locate).map_err(|errors| anyhow!("{errors}"))
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
        let ty = cap.kind.cap_type();
        let object = match &cap.kind {
            CapKind::QueueSend(name) | CapKind::QueueReceive(name) => index_of(name, queues.iter()),
            CapKind::Control(name) => index_of(name, partitions.iter()),
            CapKind::Console
            | CapKind::System
            | CapKind::SelfPartition
            | CapKind::Balloon
            | CapKind::Watchdog => 0,
        };
        // A send end's badge names its holder; nothing else is badged.
        let badge = match ty {
            CapType::QueueSend => u16::try_from(holder).expect("at most a few partitions"),
            _ => 0,
        };
        *slot = Some(Cap {
            ty,
            rights: cap.rights,
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
    let described = &partition.supervision;
    let policy = described
        .policy
        .iter()
        .fold(TrapPolicy::default(), |policy, &(class, action)| {
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

/// `partition`'s grants: its placement, limits, receive window, devirtualize flag, vCPUs' cores and windows,
/// the MMIO blocks (widened to whole pages), port ranges and interrupts of its
/// devices, and its virtio devices. Fails only on what the validator refuses (a core past the kernel's,
/// a window past 32 bits, too many grants, an unknown device), saying what.
fn resources(partition: &Partition, board: &Board) -> Result<Resources, String> {
    const PAGE: u64 = septum_core::abi::layout::PAGE_SIZE;
    let mut r = Resources::new(partition.memory_min, partition.memory_max);
    for &cpu in &partition.cpus {
        u8::try_from(cpu)
            .ok()
            .and_then(|core| r.add_vcpu(core).ok())
            .ok_or_else(|| {
                format!("vCPU on core {cpu}: more vCPUs or a higher core than the kernel has")
            })?;
    }
    r.at = partition.at;
    r.receive_window = partition.receive_window;
    r.shares = partition.memory_shares;
    r.devirtualize = partition.devirtualize;
    let too_many = |_| "it has more grants than the package holds".to_owned();
    for window in &partition.windows {
        let micros = |us: u64| {
            u32::try_from(us).map_err(|_| format!("a window at {us} µs is past 32 bits of µs"))
        };
        r.add_window(Window {
            cpu: window.cpu,
            offset_us: micros(window.offset_us)?,
            length_us: micros(window.length_us)?,
        })
        .map_err(too_many)?;
    }
    for name in &partition.devices {
        let device = board
            .device(name)
            .ok_or_else(|| format!("`{}` has no device `{name}`", board.name))?;
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
    for &device in &partition.virtio {
        r.add_virtio(device);
    }
    if let Some(port) = partition.net {
        r.set_net(port);
    }
    Ok(r)
}

/// What `error` says about the package of `partitions` (in boot order), in words.
fn package_error(error: PackageError, partitions: &[&Partition]) -> String {
    let name = |index: usize| {
        partitions
            .get(index)
            .map_or_else(|| format!("#{index}"), |p| format!("`{}`", p.name))
    };
    match error {
        PackageError::BadCount(count) => format!(
            "{count} partitions; the package holds 1 to {}",
            package::MAX_PARTITIONS
        ),
        PackageError::BadName(index) => format!("partition {}: its name", name(index)),
        PackageError::BadRamSize(index) => format!("partition {}: its RAM size", name(index)),
        PackageError::BadImage(index) => format!(
            "partition {}: its image does not fit in the RAM it always keeps",
            name(index)
        ),
        PackageError::BadEntry(index) => format!(
            "partition {}: its entry point is outside its image or not 4-byte aligned",
            name(index)
        ),
        PackageError::BadResources(index) => {
            format!("partition {}: its grants or memory limits", name(index))
        }
        PackageError::BadCap(index, slot) => {
            format!("partition {}: its capability in slot {slot}", name(index))
        }
        PackageError::BadSupervision(index) => {
            format!("partition {}: its supervision", name(index))
        }
        PackageError::BadQueue(index) => format!("queue {index}"),
        PackageError::BadNetwork(index) => format!(
            "partition {}: its network address is taken, or it is a second uplink",
            name(index)
        ),
        PackageError::BadDevirtualize(index) => format!(
            "partition {}: it is devirtualizable but not a native guest placed at RAM_BASE alone on its core with one vCPU and nothing that needs the kernel's translation, or a second one",
            name(index)
        ),
        other => format!("{other:?}"),
    }
}

/// Sets the system of the package `bytes` up on the host as the kernel does at
/// boot (`load_partitions` in `septum-kernel`): the package parsed, each
/// partition's RAM placed (at its `at`, else anywhere free: the set-up checks
/// sizes and disjointness, not addresses), the queues' memory and the balloon's
/// words handed over, then [`KernelSystem::with_balloon`], which builds the
/// schedules, the queues' ledger and the balloon. The kernel stops if that fails.
/// The balloon's words are leaked, as the kernel's are never freed: for each
/// ballooning partition, one per page between its minimum and its maximum and one
/// per page between its minimum and its RAM at start, once per package built.
fn rehearse_boot(bytes: &[u8]) -> Result<(), String> {
    let package = Package::parse(bytes).map_err(|e| format!("{e:?}"))?;
    let mut free = 1u64 << 40;
    let mut take = |size: u64| {
        let range = Range::from_start_size(free, size).expect("far below the top");
        free = range.end.next_multiple_of(2 << 20);
        range
    };
    let host_ram: Vec<Range> = package
        .partitions()
        .map(|spec| match spec.resources.at {
            Some(at) => Range::from_start_size(at, spec.ram_size).expect("validated placement"),
            None => take(spec.ram_size),
        })
        .collect();
    let flip = match Flip::kernel_memory(package.queues()) {
        0 => Range::default(),
        size => take(size),
    };
    let words = Balloon::words_needed(&balloon::specs(&package, &host_ram));
    let words: &'static mut [u32] = vec![0; words].leak();
    KernelSystem::with_balloon(&package, RAM_BASE, &host_ram, flip, words)
        .map(drop)
        .map_err(|e| format!("{e:?}"))
}

/// Builds the package for `system` on `board`.
pub fn build(system: &System, board: &Board) -> Result<Vec<u8>> {
    let file = system.path.display();
    let images = images(system, board)?;
    let partitions: Vec<&Partition> = system.boot_order().collect();
    let image_of = |partition: &Partition| {
        let index = system
            .partitions
            .iter()
            .position(|p| p.name == partition.name);
        &images[index.expect("a partition of the system")]
    };
    let mut specs = Vec::new();
    for &partition in &partitions {
        let resources = resources(partition, board)
            .map_err(|e| anyhow!("{file}: partition `{}`: {e}", partition.name))?;
        let image = image_of(partition);
        specs.push(PartitionSpec {
            name: &partition.name,
            kind: match partition.kind {
                Kind::Service => PackageKind::Service,
                Kind::Guest => PackageKind::Guest,
            },
            profile: match partition.image {
                ImageSource::Linux(_) => Profile::Linux,
                ImageSource::Workspace(_) | ImageSource::File(_) => Profile::Native,
            },
            ram_size: partition.ram,
            image: &image.bytes,
            entry_offset: image.entry_offset,
            argument: image
                .linux
                .as_ref()
                .map_or(partition.argument, |parts| parts.device_tree_address()),
            caps: cap_table(system, &partitions, partition),
            resources,
            supervision: supervision(partition),
        });
    }
    let queues = queue_table(system, &partitions);
    let frame = system
        .major_frame_us
        .map(u32::try_from)
        .transpose()
        .with_context(|| format!("{file}: the major frame is past 32 bits of µs"))?;
    let bytes = package::encode(&specs, &queues, frame).map_err(|e| {
        anyhow!(
            "{file}: the package format refuses {}",
            package_error(e, &partitions)
        )
    })?;
    rehearse_boot(&bytes)
        .map_err(|e| anyhow!("{file}: the kernel would refuse this system at boot: {e}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
