//! Host tests of the system package: a round trip, each rule [`Package::parse`]
//! enforces, and a property test that a corrupted package is refused or consistent.

use super::*;
use crate::resources::MAX_RECEIVE_WINDOW;
use crate::supervision::{MAX_RESTARTS, RestartBudget, TrapAction, TrapClass};
use proptest::prelude::*;

fn spec<'a>(name: &'a str, kind: Kind, image: &'a [u8]) -> PartitionSpec<'a> {
    PartitionSpec {
        name,
        kind,
        profile: Profile::Native,
        ram_size: 0x20_0000,
        image,
        entry_offset: 0,
        argument: 0,
        caps: [None; CAP_SLOTS],
        resources: Resources::on_cores(0x20_0000, 0x20_0000, &[0]),
        supervision: Supervision::default(),
    }
}

/// A capability table holding only a balloon.
fn balloon_caps() -> [Option<Cap>; CAP_SLOTS] {
    let mut caps = [None; CAP_SLOTS];
    caps[0] = Some(Cap {
        ty: CapType::Balloon,
        rights: CapType::Balloon.possible_rights(),
        object: 0,
        badge: 0,
    });
    caps
}

/// Stops on MMIO traps, 5 restarts a minute, a 50 ms watchdog.
fn strict() -> Supervision {
    Supervision {
        policy: TrapPolicy::default().with(TrapClass::Mmio, TrapAction::Stop),
        budget: RestartBudget {
            restarts: 5,
            period_ms: 60_000,
        },
        watchdog_ms: 50,
    }
}

fn cap(ty: CapType, rights: Rights, object: u16) -> Option<Cap> {
    Some(Cap {
        ty,
        rights,
        object,
        badge: 0,
    })
}

fn queue(sender: usize, receiver: usize, depth: u32, max_in_flight: u32) -> QueueSpec {
    QueueSpec {
        sender,
        receiver,
        depth,
        max_in_flight,
    }
}

/// Queue 0 runs from the service VM to hello, queue 1 back.
fn demo_queues() -> [QueueSpec; 2] {
    [queue(0, 1, 1, 1), queue(1, 0, MAX_QUEUE_DEPTH, 4)]
}

fn demo() -> Vec<u8> {
    let mut service = spec("service", Kind::Service, &[1, 2, 3, 4]);
    service.caps[0] = cap(CapType::Console, Rights::WRITE, 0);
    service.caps[3] = cap(CapType::Control, Rights::RESTART, 1);
    service.caps[4] = cap(CapType::QueueReceive, Rights::RECEIVE, 1);
    service.resources.receive_window = 64 << 10;
    let mut hello = spec("hello", Kind::Guest, &[5; 9]);
    hello.supervision = strict();
    hello.caps[14] = cap(CapType::QueueReceive, Rights::RECEIVE, 0);
    hello.caps[15] = Some(Cap {
        badge: 1,
        ..cap(CapType::QueueSend, Rights::SEND, 1).unwrap()
    });
    hello.resources.receive_window = 4096;
    encode(&[service, hello], &demo_queues(), Some(10_000)).unwrap()
}

/// Verifies: SK-INIT-003
#[test]
fn round_trip() {
    let bytes = demo();
    let package = Package::parse(&bytes).unwrap();
    let parts: Vec<_> = package.partitions().collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(package.queue_count(), 2);
    assert_eq!(package.queues().collect::<Vec<_>>(), demo_queues());
    assert_eq!(package.queue(1), Some(demo_queues()[1]));
    assert_eq!(package.queue(2), None);
    assert_eq!(package.major_frame_us(), Some(10_000));
    assert_eq!(parts[0].name, "service");
    assert_eq!(parts[0].image, &[1, 2, 3, 4]);
    assert_eq!(parts[0].caps[0], cap(CapType::Console, Rights::WRITE, 0));
    assert_eq!(parts[0].caps[3], cap(CapType::Control, Rights::RESTART, 1));
    assert_eq!(parts[1].image, &[5; 9]);
    assert_eq!(
        parts[1].caps[15].map(|c| (c.ty, c.badge)),
        Some((CapType::QueueSend, 1))
    );
    assert_eq!(
        parts[1].caps[14],
        cap(CapType::QueueReceive, Rights::RECEIVE, 0)
    );
    assert_eq!(parts[1].caps[..14], [None; 14]);
    assert_eq!(parts[0].supervision, Supervision::default());
    assert_eq!(parts[1].supervision, strict());
    assert_eq!(
        [
            parts[0].resources.receive_window,
            parts[1].resources.receive_window
        ],
        [64 << 10, 4096]
    );
    assert_eq!(
        bytes.len(),
        HEADER_SIZE + 2 * RECORD_SIZE + 2 * QUEUE_SIZE + 8 + 16
    );
}

/// Verifies: SK-INIT-003
#[test]
fn each_rule_is_enforced() {
    let img = [0u8; 8];
    let cases: Vec<(Vec<PartitionSpec>, PackageError)> = vec![
        (vec![], PackageError::BadCount(0)),
        (
            vec![spec("g", Kind::Guest, &img)],
            PackageError::ServiceNotFirstOrNotUnique,
        ),
        (
            vec![
                spec("s", Kind::Service, &img),
                spec("t", Kind::Service, &img),
            ],
            PackageError::ServiceNotFirstOrNotUnique,
        ),
        (
            vec![spec("s", Kind::Service, &img), spec("s", Kind::Guest, &img)],
            PackageError::BadName(1),
        ),
        (
            vec![spec("Bad", Kind::Service, &img)],
            PackageError::BadName(0),
        ),
        (
            vec![spec("", Kind::Service, &img)],
            PackageError::BadName(0),
        ),
        (
            vec![PartitionSpec {
                ram_size: 100,
                ..spec("s", Kind::Service, &img)
            }],
            PackageError::BadRamSize(0),
        ),
        (
            vec![PartitionSpec {
                ram_size: 4096,
                ..spec("s", Kind::Service, &[0; 4097])
            }],
            PackageError::BadImage(0),
        ),
        (
            // A balloon's image must lie in the memory it always keeps.
            vec![
                spec("s", Kind::Service, &img),
                PartitionSpec {
                    resources: Resources::on_cores(0x1000, 0x20_0000, &[0]),
                    caps: balloon_caps(),
                    ..spec("g", Kind::Guest, &[0; 0x2000])
                },
            ],
            PackageError::BadImage(1),
        ),
        (
            vec![PartitionSpec {
                entry_offset: 8,
                ..spec("s", Kind::Service, &img)
            }],
            PackageError::BadEntry(0),
        ),
        (
            vec![PartitionSpec {
                entry_offset: 2,
                ..spec("s", Kind::Service, &img)
            }],
            PackageError::BadEntry(0),
        ),
    ];
    for (parts, expected) in cases {
        assert_eq!(
            encode(&parts, &[], None).unwrap_err(),
            expected,
            "{parts:?}"
        );
    }
}

/// Verifies: SK-INIT-003, SK-CAP-003
#[test]
fn each_capability_rule_is_enforced() {
    let service = spec("s", Kind::Service, &[0; 8]);
    let cases = [
        (0, cap(CapType::Control, Rights::RESTART, 2)),
        (0, cap(CapType::QueueSend, Rights::SEND, 1)),
        (0, cap(CapType::Console, Rights::RESTART, 0)),
        (0, cap(CapType::Console, Rights::WRITE, 5)),
        (1, cap(CapType::Control, Rights::RESTART, 0)),
        (1, cap(CapType::System, Rights::SHUTDOWN, 0)),
        // A send end badged with another partition's index: a forged identity.
        (1, cap(CapType::QueueSend, Rights::SEND, 0)),
        // Queue ends held by the other end of the queue.
        (0, cap(CapType::QueueSend, Rights::SEND, 0)),
        (1, cap(CapType::QueueReceive, Rights::RECEIVE, 0)),
        // A receive end of a queue that does not exist.
        (0, cap(CapType::QueueReceive, Rights::RECEIVE, 1)),
        // A badge on a capability that has none.
        (
            0,
            Some(Cap {
                badge: 3,
                ..cap(CapType::Console, Rights::WRITE, 0).unwrap()
            }),
        ),
    ];
    // One queue, from g to s.
    let queues = [queue(1, 0, 4, 2)];
    for (holder, bad) in cases {
        let mut parts = [service, spec("g", Kind::Guest, &[0; 8])];
        parts[holder].caps[7] = bad;
        assert_eq!(
            encode(&parts, &queues, None).unwrap_err(),
            PackageError::BadCap(holder, 7),
            "{bad:?}"
        );
    }
    let mut parts = [service, spec("g", Kind::Guest, &[0; 8])];
    parts[0].caps[7] = cap(CapType::QueueReceive, Rights::RECEIVE, 0);
    parts[1].caps[7] = Some(Cap {
        badge: 1,
        ..cap(CapType::QueueSend, Rights::SEND, 0).unwrap()
    });
    assert!(encode(&parts, &queues, None).is_ok());
    let mut bytes = encode(&[service], &[], None).unwrap();
    bytes[HEADER_SIZE + BASE_RECORD_SIZE] = 99;
    assert_eq!(
        Package::parse(&bytes).unwrap_err(),
        PackageError::BadCap(0, 0)
    );
    let mut bytes = encode(&[service], &[], None).unwrap();
    bytes[HEADER_SIZE + BASE_RECORD_SIZE + 7] = 1;
    assert_eq!(
        Package::parse(&bytes).unwrap_err(),
        PackageError::BadCap(0, 0)
    );
}

/// Verifies: SK-INIT-003
#[test]
fn each_queue_rule_is_enforced() {
    let parts = [
        spec("s", Kind::Service, &[0; 8]),
        spec("g", Kind::Guest, &[0; 8]),
    ];
    let good = queue(0, 1, 4, 2);
    let cases = [
        queue(2, 1, 4, 2),                   // sender past the partitions
        queue(0, 2, 4, 2),                   // receiver past the partitions
        queue(300, 1, 4, 2),                 // sender past what a record holds
        queue(1, 1, 4, 2),                   // a partition joined to itself
        queue(0, 1, 0, 0),                   // depth 0
        queue(0, 1, MAX_QUEUE_DEPTH + 1, 1), // too deep
        queue(0, 1, 4, 0),                   // nothing may be in flight
        queue(0, 1, 4, 5),                   // more in flight than the depth
    ];
    for bad in cases {
        assert_eq!(
            encode(&parts, &[good, bad], None).unwrap_err(),
            PackageError::BadQueue(1),
            "{bad:?}"
        );
    }
    let bytes = encode(&parts, &[good, good], None).unwrap();
    let table = HEADER_SIZE + 2 * RECORD_SIZE;
    for reserved in 4..QUEUE_SIZE {
        let mut bad = bytes.clone();
        bad[table + QUEUE_SIZE + reserved] = 1;
        assert_eq!(
            Package::parse(&bad).unwrap_err(),
            PackageError::BadQueue(1),
            "reserved byte {reserved}"
        );
    }
    // A queue count whose table would run past the package.
    let mut bad = bytes;
    bad[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Package::parse(&bad).unwrap_err(), PackageError::Truncated);
}

/// Verifies: SK-INIT-003
#[test]
fn resources_must_be_well_formed_and_bracket_the_ram() {
    let service = spec("s", Kind::Service, &[0; 8]);
    let tight = PartitionSpec {
        resources: Resources::on_cores(0x40_0000, 0x40_0000, &[0]),
        ..service
    };
    assert_eq!(
        encode(&[tight], &[], None).unwrap_err(),
        PackageError::BadResources(0)
    );
    let mut bytes = encode(&[service], &[], None).unwrap();
    bytes[HEADER_SIZE + RESOURCES_OFFSET] = 1; // placement not 2 MiB aligned
    assert_eq!(
        Package::parse(&bytes).unwrap_err(),
        PackageError::BadResources(0)
    );
    for window in [4095, MAX_RECEIVE_WINDOW + 4096] {
        let mut wide = service;
        wide.resources.receive_window = window;
        assert_eq!(
            encode(&[wide], &[], None).unwrap_err(),
            PackageError::BadResources(0),
            "receive window {window}"
        );
    }
}

/// A devirtualizable guest: native, placed at `RAM_BASE`, one vCPU on `core`,
/// nothing that needs the translation.
fn devirtualizable(name: &str, core: u8) -> PartitionSpec<'_> {
    let mut resources = Resources::on_cores(0x20_0000, 0x20_0000, &[core]);
    resources.at = Some(RAM_BASE);
    resources.devirtualize = true;
    PartitionSpec {
        resources,
        ..spec(name, Kind::Guest, &[0; 8])
    }
}

/// The devirtualize flag travels in the resources block's flags word; a flag
/// that does not exist is a malformed block, and a devirtualizable partition
/// that breaks the description's `devirtualize` rule is refused.
///
/// Verifies: SK-INIT-003, SK-CFG-013
#[test]
fn the_devirtualize_flag_is_carried_and_checked() {
    let service = spec("s", Kind::Service, &[0; 8]);
    // Alone on core 1; another guest beside the service VM on core 0. The
    // service VM may share the devirtualizable partition's core.
    let parts = [
        service,
        devirtualizable("n", 1),
        spec("o", Kind::Guest, &[0; 8]),
    ];
    let bytes = encode(&parts, &[], None).unwrap();
    let flags: Vec<bool> = Package::parse(&bytes)
        .unwrap()
        .partitions()
        .map(|p| p.resources.devirtualize)
        .collect();
    assert_eq!(flags, [false, true, false]);
    assert!(encode(&[service, devirtualizable("n", 0)], &[], None).is_ok());
    // The flags word is the last of the resources block.
    let flags_word = HEADER_SIZE + RECORD_SIZE + RESOURCES_OFFSET + RESOURCES_SIZE - 8;
    for (byte, value) in [(0, 0x03), (0, 0x02), (7, 0x80)] {
        let mut bad = bytes.clone();
        bad[flags_word + byte] = value;
        assert_eq!(
            Package::parse(&bad).unwrap_err(),
            PackageError::BadResources(1),
            "flags byte {byte} = {value:#x}"
        );
    }

    let with = |change: &dyn Fn(&mut PartitionSpec<'static>)| {
        let mut part = devirtualizable("n", 1);
        change(&mut part);
        part
    };
    let mut service_devirtualizable = service;
    service_devirtualizable.resources.at = Some(RAM_BASE);
    service_devirtualizable.resources.devirtualize = true;
    let bad_ones = [
        with(&|p| p.profile = Profile::Linux),
        with(&|p| p.resources.at = None),
        with(&|p| p.resources.at = Some(RAM_BASE + 0x20_0000)),
        with(&|p| p.resources.add_vcpu(1).unwrap()),
        with(&|p| p.resources.receive_window = 4096),
        with(&|p| p.caps = balloon_caps()),
        with(&|p| p.resources.add_virtio(Device::Console)),
        with(&|p| p.resources.add_virtio(Device::Balloon)),
        with(&|p| {
            p.resources.set_net(crate::resources::NetPort {
                address: septum_abi::net::Address::parse("10.0.0.2/24").unwrap(),
                uplink: false,
            });
        }),
    ];
    assert_eq!(
        encode(&[service_devirtualizable], &[], None).unwrap_err(),
        PackageError::BadDevirtualize(0)
    );
    for part in bad_ones {
        assert_eq!(
            encode(&[service, part], &[], None).unwrap_err(),
            PackageError::BadDevirtualize(1),
            "{part:?}"
        );
    }
    // A queue end: the send end of a queue to the service VM.
    let sender = with(&|p| {
        p.caps[0] = Some(Cap {
            badge: 1,
            ..cap(CapType::QueueSend, Rights::SEND, 0).unwrap()
        });
    });
    assert_eq!(
        encode(&[service, sender], &[queue(1, 0, 4, 2)], None).unwrap_err(),
        PackageError::BadDevirtualize(1)
    );
    // Another guest on its core, before or after it.
    let beside = PartitionSpec {
        resources: Resources::on_cores(0x20_0000, 0x20_0000, &[1]),
        ..spec("o", Kind::Guest, &[0; 8])
    };
    assert_eq!(
        encode(&[service, devirtualizable("n", 1), beside], &[], None).unwrap_err(),
        PackageError::BadDevirtualize(1)
    );
    assert_eq!(
        encode(&[service, beside, devirtualizable("n", 1)], &[], None).unwrap_err(),
        PackageError::BadDevirtualize(2)
    );
    // A second one.
    assert_eq!(
        encode(
            &[service, devirtualizable("n", 1), devirtualizable("m", 2)],
            &[],
            None
        )
        .unwrap_err(),
        PackageError::BadDevirtualize(2)
    );
}

/// Verifies: SK-INIT-003
#[test]
fn supervision_blocks_must_be_canonical_and_leave_the_service_vm_without_a_policy() {
    let service = spec("s", Kind::Service, &[0; 8]);
    let guest = spec("g", Kind::Guest, &[0; 8]);
    let budget = |restarts, period_ms| Supervision {
        budget: RestartBudget {
            restarts,
            period_ms,
        },
        ..strict()
    };
    let cases = [
        (0, strict()),
        (1, budget(MAX_RESTARTS + 1, 1_000)),
        (1, budget(3, 0)),
    ];
    for (holder, bad) in cases {
        let mut parts = [service, guest];
        parts[holder].supervision = bad;
        assert_eq!(
            encode(&parts, &[], None).unwrap_err(),
            PackageError::BadSupervision(holder),
            "{bad:?}"
        );
    }
    let good = encode(
        &[
            service,
            PartitionSpec {
                supervision: strict(),
                ..guest
            },
        ],
        &[],
        None,
    )
    .unwrap();
    let block = HEADER_SIZE + RECORD_SIZE + SUPERVISION_OFFSET;
    for (at, value) in [
        (block, 0x10),                          // a stop bit for no trap class
        (block + 1, 1),                         // the block's reserved byte
        (block + SUPERVISION_SIZE, 1),          // the first padding byte
        (HEADER_SIZE + 2 * RECORD_SIZE - 1, 1), // the last padding byte
    ] {
        let mut bad = good.clone();
        bad[at] = value;
        assert_eq!(
            Package::parse(&bad).unwrap_err(),
            PackageError::BadSupervision(1),
            "byte {at}"
        );
    }
}

/// Verifies: SK-INIT-003
#[test]
fn header_damage_is_detected() {
    let good = demo();
    assert_eq!(
        Package::parse(&good[..10]).unwrap_err(),
        PackageError::Truncated
    );
    let mut bad = good.clone();
    bad[0] = b'X';
    assert_eq!(Package::parse(&bad).unwrap_err(), PackageError::BadMagic);
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&(VERSION - 1).to_le_bytes());
    assert_eq!(
        Package::parse(&bad).unwrap_err(),
        PackageError::UnsupportedVersion(VERSION - 1)
    );
    let mut bad = good.clone();
    bad[16..24].copy_from_slice(&(good.len() as u64 + 1).to_le_bytes());
    assert_eq!(Package::parse(&bad).unwrap_err(), PackageError::Truncated);
    let mut bad = good.clone();
    bad[HEADER_SIZE + RECORD_SIZE + 16] = 7;
    assert_eq!(Package::parse(&bad).unwrap_err(), PackageError::BadKind(1));
    let mut bad = good;
    let image_offset_field = HEADER_SIZE + RECORD_SIZE + 32;
    bad[image_offset_field..image_offset_field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(Package::parse(&bad).unwrap_err(), PackageError::BadImage(1));
}

proptest! {
    /// A corrupted package is either refused or still satisfies every rule:
    /// the parser never panics and never yields an image outside the bytes.
    /// Verifies: SK-INIT-003
    #[test]
    fn corruption_never_yields_an_inconsistent_package(
        flips in proptest::collection::vec((0usize..1000, any::<u8>()), 1..8)
    ) {
        let mut bytes = demo();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if let Ok(package) = Package::parse(&bytes) {
            let mut services = 0;
            for (i, p) in package.partitions().enumerate() {
                prop_assert!(p.image.len() as u64 <= p.ram_size);
                prop_assert!(p.entry_offset < p.image.len() as u64);
                services += usize::from(p.kind == Kind::Service);
                prop_assert_eq!(p.kind == Kind::Service, i == 0);
                let stops = TrapClass::ALL
                    .iter()
                    .any(|&class| p.supervision.policy.action(class) == TrapAction::Stop);
                prop_assert!(p.kind == Kind::Guest || !stops);
                prop_assert!(p.supervision.budget.restarts <= MAX_RESTARTS);
                prop_assert!(p.resources.receive_window <= MAX_RECEIVE_WINDOW);
                for cap in p.caps.iter().flatten() {
                    prop_assert!(cap.ty.possible_rights().contains(cap.rights));
                    let service_only = matches!(cap.ty, CapType::Control | CapType::System);
                    prop_assert!(!service_only || p.kind == Kind::Service);
                    let end = package.queue(usize::from(cap.object));
                    match cap.ty {
                        CapType::QueueSend => prop_assert_eq!(end.map(|q| q.sender), Some(i)),
                        CapType::QueueReceive => {
                            prop_assert_eq!(end.map(|q| q.receiver), Some(i));
                        }
                        _ => {}
                    }
                }
            }
            for q in package.queues() {
                prop_assert!(q.sender < package.len() && q.receiver < package.len());
                prop_assert!(q.sender != q.receiver);
                prop_assert!((1..=q.depth).contains(&q.max_in_flight));
                prop_assert!(q.depth <= MAX_QUEUE_DEPTH);
            }
            prop_assert_eq!(package.queues().count(), package.queue_count());
            prop_assert_eq!(services, 1);
            prop_assert_eq!(package.partitions().count(), package.len());
        }
    }
}
