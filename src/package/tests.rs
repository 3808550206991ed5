//! Tests of packing: how descriptions compile into the package, and that every
//! package the host tool writes is one the kernel sets up.

use super::*;
use septum_core::abi::{Rights, TrapAction, TrapClass};

/// Verifies: SK-CAP-001, SK-CFG-003
#[test]
fn capability_tables_name_objects_by_index_and_badge_send_ends_with_their_holder() {
    let board = Board::load(&crate::from_root("description/tests/board")).expect("board");
    let system = septum_description::load(&crate::from_root("description/tests/good.toml"), &board)
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
    let system = septum_description::load(&crate::from_root("description/tests/good.toml"), &board)
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
    let system = septum_description::load(&crate::from_root("description/tests/good.toml"), &board)
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

/// The `devirtualize` key is carried into the partition's resources block,
/// for that partition alone.
///
/// Verifies: SK-CFG-003, SK-CFG-013
#[test]
fn the_devirtualize_flag_is_carried_into_the_resources() {
    let mut board = Board::load(&crate::from_root("description/tests/board")).expect("board");
    // The test board's kernel keeps 0x4000_0000, where identity placement is.
    board.reserved.clear();
    let text = "board = \"testboard\"\n\
        [[partition]]\nname = \"g\"\nkind = \"guest\"\nimage = \"hello\"\nram = \"2M\"\n\
        cpus = [1]\n\
        [[partition]]\nname = \"native\"\nkind = \"guest\"\nimage = \"hello\"\nram = \"2M\"\n\
        at = \"0x4000_0000\"\ndevirtualize = true\n\
        [[partition]]\nname = \"service\"\nkind = \"service\"\nimage = \"service-vm\"\nram = \"2M\"\n";
    let system = septum_description::parse(std::path::Path::new("native.toml"), text, &board)
        .unwrap_or_else(|e| panic!("{e}"));
    let carried: Vec<(&str, bool, Option<u64>)> = system
        .boot_order()
        .map(|p| {
            let r = resources(p, &board).expect("fits");
            (p.name.as_str(), r.devirtualize, r.at)
        })
        .collect();
    assert_eq!(
        carried,
        [
            ("service", false, None),
            ("g", false, None),
            ("native", true, Some(RAM_BASE))
        ]
    );
}

/// Every description in the repository (`board-support/<board>/*.toml` and
/// `tests/systems/*.toml`), for every board it is for, passes what `septum check`
/// runs: its images load and its package builds and sets up as the kernel sets it
/// up at boot. So `septum image` and the kernel take what `check` accepted.
///
/// Verifies: SK-CFG-006
#[test]
fn every_committed_description_packs_and_sets_up_as_the_kernel_does() {
    let mut checked = 0;
    for board_name in ["qemu-virt", "pc"] {
        let board = crate::boards::load(board_name).expect("board");
        let mut files: Vec<PathBuf> = [
            crate::boards::folder(board_name),
            crate::from_root("tests/systems"),
        ]
        .iter()
        .flat_map(|folder| std::fs::read_dir(folder).expect("folder"))
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.ends_with("board.toml"))
        .collect();
        files.sort();
        for file in files {
            let Ok(system) = septum_description::load(&file, &board) else {
                continue; // for the other board (build.rs checks the rest)
            };
            build(&system, &board).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} descriptions found");
}

/// A system at each of the kernel's limits at once (8 partitions on 4 cores,
/// 8 queues with 128 pages in flight in all, 16 capabilities, 8 windows) packs,
/// and the kernel's boot-time set-up takes it.
///
/// Verifies: SK-CFG-004, SK-CFG-006
#[test]
fn a_system_at_every_kernel_limit_packs_and_sets_up() {
    use septum_description::limits::{CAP_SLOTS, FLIGHT_MAX, MAX_CPUS, MAX_PARTITIONS, MAX_QUEUES};
    let board = crate::boards::load("qemu-virt").expect("board");
    let mut text = String::from("board = \"qemu-virt\"\n[schedule]\nmajor_frame_us = 8000\n");
    for index in 0..MAX_PARTITIONS {
        let (name, kind, image) = match index {
            0 => ("service".to_owned(), "service", "service-vm"),
            _ => (format!("g{index}"), "guest", "hello"),
        };
        let cpu = index % MAX_CPUS;
        let slot = index / MAX_CPUS;
        // The service VM has eight windows; the others one each.
        let windows: Vec<String> = match index {
            0 => (0..8)
                .map(|w| format!("{{ cpu = 0, offset_us = {}, length_us = 500 }}", w * 1000))
                .collect(),
            _ => vec![format!(
                "{{ cpu = {cpu}, offset_us = {}, length_us = 500 }}",
                slot * 1000 + 500
            )],
        };
        let caps = vec!["{ kind = \"console\" }"; if index == 0 { CAP_SLOTS } else { 1 }];
        text += &format!(
            "[[partition]]\nname = \"{name}\"\nkind = \"{kind}\"\nimage = \"{image}\"\nram = \"2M\"\n\
             cpus = [{cpu}]\nwindows = [{}]\ncaps = [{}]\n",
            windows.join(", "),
            caps.join(", ")
        );
    }
    for index in 0..MAX_QUEUES {
        let (from, to) = (
            index % (MAX_PARTITIONS - 1) + 1,
            (index + 1) % (MAX_PARTITIONS - 1) + 1,
        );
        text += &format!(
            "[[queue]]\nname = \"q{index}\"\nfrom = \"g{from}\"\nto = \"g{to}\"\ndepth = 64\nmax_in_flight = {}\n",
            FLIGHT_MAX / MAX_QUEUES
        );
    }
    let path = crate::from_root("target/limits.toml");
    let system = septum_description::parse(&path, &text, &board).unwrap_or_else(|e| panic!("{e}"));
    build(&system, &board).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Package `queues` (sender, receiver, depth, max_in_flight) for a service VM and
/// two guests, with images of one instruction, bypassing the validator.
fn package_of(queues: &[(usize, usize, u32, u32)]) -> Vec<u8> {
    let image = [0u8; 4];
    let spec = |name, kind| PartitionSpec {
        name,
        kind,
        profile: Profile::Native,
        ram_size: 2 << 20,
        image: &image,
        entry_offset: 0,
        argument: 0,
        caps: [None; CAP_SLOTS],
        resources: Resources::on_cores(2 << 20, 2 << 20, &[0]),
        supervision: Supervision::default(),
    };
    let partitions = [
        spec("service", PackageKind::Service),
        spec("a", PackageKind::Guest),
        spec("b", PackageKind::Guest),
    ];
    let queues: Vec<QueueSpec> = queues
        .iter()
        .map(|&(sender, receiver, depth, max_in_flight)| QueueSpec {
            sender,
            receiver,
            depth,
            max_in_flight,
        })
        .collect();
    package::encode(&partitions, &queues, None).expect("the package format takes it")
}

/// The boot rehearsal catches what the package format lets through but the
/// kernel's set-up refuses (and would stop at boot on): a package with one queue
/// more than the kernel holds is refused with the kernel's own error; with the
/// validator's rules it is never built.
///
/// Verifies: SK-CFG-006
#[test]
fn the_boot_rehearsal_refuses_what_the_kernel_would_stop_on() {
    use septum_description::limits::MAX_QUEUES;
    assert_eq!(rehearse_boot(&package_of(&[(1, 2, 8, 8)])), Ok(()));
    assert_eq!(
        rehearse_boot(&package_of(&vec![(1, 2, 1, 1); MAX_QUEUES + 1])),
        Err("Queues(TooManyQueues)".into())
    );
}

/// A Linux partition is packed with the Linux profile and one image laid out as
/// its RAM (kernel, zeros to 2 MiB, device tree, initrd at the next page),
/// entered at its start with the device tree's guest-physical address as its
/// boot argument; its native neighbours keep the native profile.
///
/// Verifies: SK-LNX-002
#[test]
fn a_linux_partition_packs_with_its_profile_layout_and_device_tree_argument() {
    use septum_core::abi::virt::IMAGE_ALIGN;
    let folder = crate::from_root("target/package-tests/linux");
    std::fs::create_dir_all(&folder).expect("folder");
    // An arm64 Image header: image_size 0x280000 at 16, `ARM\x64` at 56.
    let mut kernel = vec![0x5a; 8192];
    kernel[..64].fill(0);
    kernel[16..24].copy_from_slice(&0x28_0000u64.to_le_bytes());
    kernel[56..60].copy_from_slice(b"ARM\x64");
    std::fs::write(folder.join("Image"), &kernel).expect("kernel");
    std::fs::write(folder.join("initrd"), [0xc3; 300]).expect("initrd");
    let text = "board = \"qemu-virt\"\n\
        [[partition]]\nname = \"service\"\nkind = \"service\"\nimage = \"service-vm\"\nram = \"2M\"\n\
        caps = [{ kind = \"console\" }, { kind = \"self\" }, { kind = \"system\" }]\n\
        [[partition]]\nname = \"lx\"\nkind = \"guest\"\nram = \"64M\"\n\
        linux = { kernel = \"Image\", initrd = \"initrd\" }\n";
    let board = crate::boards::load("qemu-virt").expect("board");
    let system = septum_description::parse(&folder.join("linux.toml"), text, &board)
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = build(&system, &board).unwrap_or_else(|e| panic!("{e:#}"));
    let package = Package::parse(&bytes).expect("a package");
    let service = package.partition(0).expect("the service VM");
    assert_eq!(service.profile, Profile::Native);
    let linux = package.partition(1).expect("the Linux partition");
    assert_eq!((linux.name, linux.profile), ("lx", Profile::Linux));
    let tree_offset = 2 * IMAGE_ALIGN;
    assert_eq!(linux.entry_offset, 0);
    assert_eq!(linux.argument, RAM_BASE + tree_offset);
    let image = linux.image;
    assert_eq!(image[..8192], kernel[..]);
    assert!(image[8192..tree_offset as usize].iter().all(|&b| b == 0));
    let tree = &image[tree_offset as usize..];
    assert_eq!(
        tree[..4],
        [0xd0, 0x0d, 0xfe, 0xed],
        "the device tree's magic"
    );
    let tree_len = u32::from_be_bytes(tree[4..8].try_into().expect("4 bytes")) as u64;
    let initrd_offset = (tree_offset + tree_len).next_multiple_of(4096) as usize;
    assert_eq!(image.len(), initrd_offset + 300);
    assert_eq!(image[initrd_offset..], [0xc3; 300]);
}

/// The `virtio` key reaches each partition's resources block: a ballooning
/// Linux partition (its `ram` its `memory.max`) with both devices and a native
/// guest with a console pack, and the kernel's set-up takes them.
///
/// Verifies: SK-CFG-003, SK-CFG-006
#[test]
fn virtio_devices_are_packed_into_the_resources_block() {
    use septum_core::abi::virtio::Device;
    let folder = crate::from_root("target/package-tests/virtio");
    std::fs::create_dir_all(&folder).expect("folder");
    let mut kernel = vec![0; 4096];
    kernel[16..24].copy_from_slice(&0x28_0000u64.to_le_bytes());
    kernel[56..60].copy_from_slice(b"ARM\x64");
    std::fs::write(folder.join("Image"), &kernel).expect("kernel");
    std::fs::write(folder.join("initrd"), [0; 100]).expect("initrd");
    let text = "board = \"qemu-virt\"\n\
        [[partition]]\nname = \"service\"\nkind = \"service\"\nimage = \"service-vm\"\nram = \"2M\"\n\
        caps = [{ kind = \"console\" }, { kind = \"self\" }, { kind = \"system\" }]\n\
        [[partition]]\nname = \"lx\"\nkind = \"guest\"\nram = \"128M\"\n\
        memory = { min = \"32M\", max = \"128M\" }\nvirtio = [\"console\", \"balloon\"]\n\
        linux = { kernel = \"Image\", initrd = \"initrd\" }\n\
        [[partition]]\nname = \"g\"\nkind = \"guest\"\nimage = \"hello\"\nram = \"2M\"\n\
        virtio = [\"console\"]\n";
    let board = crate::boards::load("qemu-virt").expect("board");
    let system = septum_description::parse(&folder.join("virtio.toml"), text, &board)
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = build(&system, &board).unwrap_or_else(|e| panic!("{e:#}"));
    let package = Package::parse(&bytes).expect("a package");
    let devices = |index| -> Vec<Device> {
        let spec = package.partition(index).expect("a partition");
        spec.resources.virtio().collect()
    };
    assert_eq!(devices(0), []);
    assert_eq!(devices(1), [Device::Balloon, Device::Console]);
    assert_eq!(devices(2), [Device::Console]);
    let linux = package.partition(1).expect("lx");
    assert!(linux.balloon());
    assert_eq!(linux.kept_ram(), 0);
}
