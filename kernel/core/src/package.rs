//! The system package: the binary, fixed-layout table of partitions and their images
//! that the host tool builds from a system description and appends to the kernel
//! image. The kernel reads it at boot; it never parses text.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `SEPTUMPK` |
//! | 8 | 4 | format version ([`VERSION`]) |
//! | 12 | 4 | partition count (1 to [`MAX_PARTITIONS`]) |
//! | 16 | 8 | total package length in bytes |
//! | 24 | 4 | number of queues in the system |
//! | 28 | 4 | major frame in µs (0: no schedule) |
//! | 32 | 448 × count | partition records |
//! | ... | | images |
//!
//! A partition record: name (16 bytes, NUL-padded, `[a-z0-9_-]`), kind (4: 0 service,
//! 1 guest), reserved (4), RAM size (8), image offset from the package start (8),
//! image length (8), entry offset into RAM (8), boot argument (8: a value the
//! partition finds in its second argument register at entry, so one image can serve
//! several roles), then its capability table: 16 slots of 8 bytes, each type (1:
//! 0 for an empty slot, else a [`CapType`]), reserved (1), rights (2), object (2),
//! badge (2: the holder's index on a queue send end, else 0); then its
//! [`Resources`] block (240 bytes); then its [`Supervision`] block (12 bytes: trap
//! policy, restart budget, watchdog period) and reserved (4, zero), which keep
//! records a multiple of 8 bytes long.
//!
//! Invariant: [`Package::parse`] accepts a byte string only if every record is
//! consistent: exactly one service VM, listed first; unique names; each image inside
//! the package and no larger than its RAM; the entry inside the image; a canonical
//! supervision block, with no trap policy on the service VM. Everything the kernel
//! later does with a package relies on this check.

use crate::caps::{CAP_SLOTS, Cap, CapTable, CapType, Rights};
use crate::resources::{RESOURCES_SIZE, Resources};
use crate::supervision::{SUPERVISION_SIZE, Supervision, TrapPolicy};

/// The package magic.
pub const MAGIC: [u8; 8] = *b"SEPTUMPK";
/// The format version this core reads and writes.
pub const VERSION: u32 = 4;
/// Most partitions a system may have.
pub const MAX_PARTITIONS: usize = 8;
/// Longest partition name, in bytes.
pub const NAME_MAX: usize = 16;
/// Largest RAM one partition may be given (1 GiB).
pub const RAM_MAX: u64 = 1 << 30;

const HEADER_SIZE: usize = 32;
const CAP_SIZE: usize = 8;
const BASE_RECORD_SIZE: usize = 64;
const RESOURCES_OFFSET: usize = BASE_RECORD_SIZE + CAP_SLOTS * CAP_SIZE;
const SUPERVISION_OFFSET: usize = RESOURCES_OFFSET + RESOURCES_SIZE;
/// Zero bytes after the supervision block, so that records stay 8-byte multiples.
const RECORD_PADDING: usize = 4;
const RECORD_SIZE: usize = SUPERVISION_OFFSET + SUPERVISION_SIZE + RECORD_PADDING;
// The layout table in the module docs states this size.
const _: () = assert!(RECORD_SIZE == 448);

/// What a partition is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The privileged service VM that monitors the guests. Exactly one per system.
    Service,
    /// An ordinary guest partition.
    Guest,
}

/// One partition as the package describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionSpec<'a> {
    /// Its unique name.
    pub name: &'a str,
    /// Service VM or guest.
    pub kind: Kind,
    /// Bytes of RAM, a multiple of the page size.
    pub ram_size: u64,
    /// The flat image, loaded at the start of its RAM.
    pub image: &'a [u8],
    /// Where execution starts, as an offset into its RAM.
    pub entry_offset: u64,
    /// The boot argument handed to the partition at entry.
    pub argument: u64,
    /// Its capability table.
    pub caps: CapTable,
    /// Its placement, memory limits, cores, windows and devices.
    pub resources: Resources,
    /// Its trap policy (default for the service VM), restart budget and watchdog.
    pub supervision: Supervision,
}

/// TEMP: one queue as the package gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// Index of the sending partition.
    pub sender: usize,
    /// Index of the receiving partition.
    pub receiver: usize,
    /// Messages it holds.
    pub depth: u32,
    /// Pages that may be in flight at once.
    pub max_in_flight: u32,
}

/// Why a package was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageError {
    /// Shorter than its header or its declared length.
    Truncated,
    /// The magic is wrong: this is not a package.
    BadMagic,
    /// A format version this kernel does not read.
    UnsupportedVersion(u32),
    /// No partitions, or more than [`MAX_PARTITIONS`].
    BadCount(u32),
    /// Record `index` has a name that is empty, too long, not `[a-z0-9_-]`, or taken.
    BadName(usize),
    /// Record `index` has an unknown kind.
    BadKind(usize),
    /// The first record is not the service VM, or another record is.
    ServiceNotFirstOrNotUnique,
    /// Record `index` has RAM that is zero, not page-aligned in size, or too large.
    BadRamSize(usize),
    /// Record `index` has an image outside the package or larger than its RAM.
    BadImage(usize),
    /// Record `index` has an entry point outside its image or not 4-byte aligned.
    BadEntry(usize),
    /// Record `index` has a malformed resources block, or memory limits that do not
    /// bracket its RAM.
    BadResources(usize),
    /// Record `index`, slot `slot`: an unknown type, rights the type cannot carry,
    /// an object that does not exist, non-zero reserved bytes, or a service-only
    /// capability held by a guest.
    BadCap(usize, usize),
    /// Record `index` has a supervision block that is not canonical, non-zero bytes
    /// after it, or a trap policy on the service VM (its traps always restart it).
    BadSupervision(usize),
}

/// A validated package.
#[derive(Clone, Copy, Debug)]
pub struct Package<'a> {
    bytes: &'a [u8],
    count: usize,
    queues: usize,
    major_frame_us: u32,
}

impl<'a> Package<'a> {
    /// Checks `bytes` and returns the package it holds. `bytes` may run on past the
    /// package (a loader may hand over a page-rounded region).
    pub fn parse(bytes: &'a [u8]) -> Result<Package<'a>, PackageError> {
        let header = bytes.get(..HEADER_SIZE).ok_or(PackageError::Truncated)?;
        if header[..8] != MAGIC {
            return Err(PackageError::BadMagic);
        }
        let version = read_u32(header, 8);
        if version != VERSION {
            return Err(PackageError::UnsupportedVersion(version));
        }
        let count = read_u32(header, 12);
        if count == 0 || count as usize > MAX_PARTITIONS {
            return Err(PackageError::BadCount(count));
        }
        let total = usize::try_from(read_u64(header, 16)).map_err(|_| PackageError::Truncated)?;
        let records_end = HEADER_SIZE + RECORD_SIZE * count as usize;
        if total > bytes.len() || total < records_end {
            return Err(PackageError::Truncated);
        }
        let package = Package {
            bytes: &bytes[..total],
            count: count as usize,
            queues: read_u32(header, 24) as usize,
            major_frame_us: read_u32(header, 28),
        };
        for index in 0..package.count {
            let spec = package.decode(index)?;
            let is_service = spec.kind == Kind::Service;
            if is_service != (index == 0) {
                return Err(PackageError::ServiceNotFirstOrNotUnique);
            }
            if (0..index).any(|earlier| package.raw_name(earlier) == package.raw_name(index)) {
                return Err(PackageError::BadName(index));
            }
        }
        Ok(package)
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a valid package has at least one partition.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of queues in the system.
    pub fn queue_count(&self) -> usize {
        self.queues
    }

    /// TEMP until the package carries queues.
    pub fn queues(&self) -> impl Iterator<Item = QueueSpec> + '_ {
        core::iter::empty()
    }

    /// The major frame in µs, if the system has a schedule.
    pub fn major_frame_us(&self) -> Option<u32> {
        (self.major_frame_us != 0).then_some(self.major_frame_us)
    }

    /// Total length of the package in bytes.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Partition `index`, in package order (the service VM is index 0).
    pub fn partition(&self, index: usize) -> Option<PartitionSpec<'a>> {
        if index >= self.count {
            return None;
        }
        self.decode(index).ok()
    }

    /// All partitions, in package order.
    pub fn partitions(&self) -> impl Iterator<Item = PartitionSpec<'a>> + '_ {
        (0..self.count).filter_map(|i| self.partition(i))
    }

    fn record(&self, index: usize) -> &'a [u8] {
        let start = HEADER_SIZE + RECORD_SIZE * index;
        &self.bytes[start..start + RECORD_SIZE]
    }

    fn raw_name(&self, index: usize) -> &'a [u8] {
        &self.record(index)[..NAME_MAX]
    }

    fn decode(&self, index: usize) -> Result<PartitionSpec<'a>, PackageError> {
        let record = self.record(index);
        let name = decode_name(&record[..NAME_MAX]).ok_or(PackageError::BadName(index))?;
        let kind = match read_u32(record, 16) {
            0 => Kind::Service,
            1 => Kind::Guest,
            _ => return Err(PackageError::BadKind(index)),
        };
        let ram_size = read_u64(record, 24);
        if ram_size == 0
            || !ram_size.is_multiple_of(septum_abi::layout::PAGE_SIZE)
            || ram_size > RAM_MAX
        {
            return Err(PackageError::BadRamSize(index));
        }
        let offset = read_u64(record, 32);
        let len = read_u64(record, 40);
        let image = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(offset, len)| self.bytes.get(offset..offset.checked_add(len)?))
            .filter(|image| image.len() as u64 <= ram_size)
            .ok_or(PackageError::BadImage(index))?;
        let entry_offset = read_u64(record, 48);
        if entry_offset >= len || !entry_offset.is_multiple_of(4) {
            return Err(PackageError::BadEntry(index));
        }
        let mut caps: CapTable = [None; CAP_SLOTS];
        for (slot, entry) in caps.iter_mut().enumerate() {
            let raw = &record[BASE_RECORD_SIZE + slot * CAP_SIZE..][..CAP_SIZE];
            *entry = self
                .decode_cap(raw, kind, index)
                .map_err(|()| PackageError::BadCap(index, slot))?;
        }
        let resources = Resources::decode(&record[RESOURCES_OFFSET..])
            .filter(|r| {
                r.memory_min <= ram_size && ram_size <= r.memory_max && r.memory_max <= RAM_MAX
            })
            .ok_or(PackageError::BadResources(index))?;
        let padding_clear = record[SUPERVISION_OFFSET + SUPERVISION_SIZE..]
            .iter()
            .all(|&b| b == 0);
        let supervision = Supervision::decode(&record[SUPERVISION_OFFSET..])
            .filter(|s| padding_clear && (kind == Kind::Guest || s.policy == TrapPolicy::default()))
            .ok_or(PackageError::BadSupervision(index))?;
        Ok(PartitionSpec {
            name,
            kind,
            ram_size,
            image,
            entry_offset,
            argument: read_u64(record, 56),
            caps,
            resources,
            supervision,
        })
    }

    fn decode_cap(&self, raw: &[u8], holder: Kind, holder_index: usize) -> Result<Option<Cap>, ()> {
        if raw[0] == 0 {
            return if raw.iter().all(|&b| b == 0) {
                Ok(None)
            } else {
                Err(())
            };
        }
        let ty = CapType::from_number(raw[0]).ok_or(())?;
        let rights = Rights(u16::from_le_bytes([raw[2], raw[3]]));
        let object = u16::from_le_bytes([raw[4], raw[5]]);
        let badge = u16::from_le_bytes([raw[6], raw[7]]);
        let reserved_clear = raw[1] == 0;
        let badge_right = match ty {
            CapType::QueueSend => usize::from(badge) == holder_index,
            _ => badge == 0,
        };
        let rights_possible = ty.possible_rights().contains(rights);
        let object_exists = match ty {
            CapType::Control => usize::from(object) < self.count,
            CapType::QueueSend | CapType::QueueReceive => usize::from(object) < self.queues,
            _ => object == 0,
        };
        let holder_may =
            holder == Kind::Service || !matches!(ty, CapType::Control | CapType::System);
        if reserved_clear && badge_right && rights_possible && object_exists && holder_may {
            Ok(Some(Cap {
                ty,
                rights,
                object,
                badge,
            }))
        } else {
            Err(())
        }
    }
}

fn decode_name(raw: &[u8]) -> Option<&str> {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let (name, padding) = raw.split_at(len);
    let valid = !name.is_empty()
        && name
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
        && padding.iter().all(|&b| b == 0);
    valid.then(|| core::str::from_utf8(name).ok()).flatten()
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Builds the bytes of a package for a system with `queues` queues. The result is
/// checked with [`Package::parse`], so an encoder bug or an inconsistent spec can
/// never produce a package the kernel would accept wrongly.
#[cfg(any(feature = "alloc", test))]
pub fn encode(
    partitions: &[PartitionSpec<'_>],
    queues: u32,
    major_frame_us: Option<u32>,
) -> Result<alloc::vec::Vec<u8>, PackageError> {
    use alloc::vec::Vec;

    let records_end = HEADER_SIZE + RECORD_SIZE * partitions.len();
    let images_len: usize = partitions
        .iter()
        .map(|p| p.image.len().next_multiple_of(8))
        .sum();
    let total = records_end + images_len;
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    let count = u32::try_from(partitions.len()).map_err(|_| PackageError::BadCount(u32::MAX))?;
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&(total as u64).to_le_bytes());
    bytes.extend_from_slice(&queues.to_le_bytes());
    bytes.extend_from_slice(&major_frame_us.unwrap_or(0).to_le_bytes());
    let mut image_offset = records_end;
    for (index, p) in partitions.iter().enumerate() {
        if p.name.len() > NAME_MAX {
            return Err(PackageError::BadName(index));
        }
        let mut name = [0u8; NAME_MAX];
        name[..p.name.len()].copy_from_slice(p.name.as_bytes());
        bytes.extend_from_slice(&name);
        let kind: u32 = match p.kind {
            Kind::Service => 0,
            Kind::Guest => 1,
        };
        bytes.extend_from_slice(&kind.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        for field in [
            p.ram_size,
            image_offset as u64,
            p.image.len() as u64,
            p.entry_offset,
            p.argument,
        ] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        for cap in &p.caps {
            let raw = match cap {
                None => [0; CAP_SIZE],
                Some(cap) => {
                    let [r0, r1] = cap.rights.0.to_le_bytes();
                    let [o0, o1] = cap.object.to_le_bytes();
                    let [b0, b1] = cap.badge.to_le_bytes();
                    [cap.ty as u8, 0, r0, r1, o0, o1, b0, b1]
                }
            };
            bytes.extend_from_slice(&raw);
        }
        p.resources.encode(&mut bytes);
        p.supervision.encode(&mut bytes);
        bytes.extend_from_slice(&[0; RECORD_PADDING]);
        image_offset += p.image.len().next_multiple_of(8);
    }
    for p in partitions {
        bytes.extend_from_slice(p.image);
        bytes.resize(bytes.len().next_multiple_of(8), 0);
    }
    Package::parse(&bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervision::{MAX_RESTARTS, RestartBudget, TrapAction, TrapClass};
    use proptest::prelude::*;

    fn spec<'a>(name: &'a str, kind: Kind, image: &'a [u8]) -> PartitionSpec<'a> {
        PartitionSpec {
            name,
            kind,
            ram_size: 0x20_0000,
            image,
            entry_offset: 0,
            argument: 0,
            caps: [None; CAP_SLOTS],
            resources: Resources::new(0x20_0000, 0x20_0000, 1),
            supervision: Supervision::default(),
        }
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

    fn demo() -> Vec<u8> {
        let mut service = spec("service", Kind::Service, &[1, 2, 3, 4]);
        service.caps[0] = cap(CapType::Console, Rights::WRITE, 0);
        service.caps[3] = cap(CapType::Control, Rights::RESTART, 1);
        let mut hello = spec("hello", Kind::Guest, &[5; 9]);
        hello.supervision = strict();
        hello.caps[15] = Some(Cap {
            badge: 1,
            ..cap(CapType::QueueSend, Rights::SEND, 1).unwrap()
        });
        encode(&[service, hello], 2, Some(10_000)).unwrap()
    }

    /// Verifies: SK-INIT-003
    #[test]
    fn round_trip() {
        let bytes = demo();
        let package = Package::parse(&bytes).unwrap();
        let parts: Vec<_> = package.partitions().collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(package.queue_count(), 2);
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
        assert_eq!(parts[1].caps[..15], [None; 15]);
        assert_eq!(parts[0].supervision, Supervision::default());
        assert_eq!(parts[1].supervision, strict());
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
            assert_eq!(encode(&parts, 0, None).unwrap_err(), expected, "{parts:?}");
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
            // A badge on a capability that has none.
            (
                0,
                Some(Cap {
                    badge: 3,
                    ..cap(CapType::Console, Rights::WRITE, 0).unwrap()
                }),
            ),
        ];
        for (holder, bad) in cases {
            let mut parts = [service, spec("g", Kind::Guest, &[0; 8])];
            parts[holder].caps[7] = bad;
            assert_eq!(
                encode(&parts, 1, None).unwrap_err(),
                PackageError::BadCap(holder, 7),
                "{bad:?}"
            );
        }
        let mut bytes = encode(&[service], 0, None).unwrap();
        bytes[HEADER_SIZE + BASE_RECORD_SIZE] = 99;
        assert_eq!(
            Package::parse(&bytes).unwrap_err(),
            PackageError::BadCap(0, 0)
        );
        let mut bytes = encode(&[service], 0, None).unwrap();
        bytes[HEADER_SIZE + BASE_RECORD_SIZE + 7] = 1;
        assert_eq!(
            Package::parse(&bytes).unwrap_err(),
            PackageError::BadCap(0, 0)
        );
    }

    /// Verifies: SK-INIT-003
    #[test]
    fn resources_must_be_well_formed_and_bracket_the_ram() {
        let service = spec("s", Kind::Service, &[0; 8]);
        let tight = PartitionSpec {
            resources: Resources::new(0x40_0000, 0x40_0000, 1),
            ..service
        };
        assert_eq!(
            encode(&[tight], 0, None).unwrap_err(),
            PackageError::BadResources(0)
        );
        let mut bytes = encode(&[service], 0, None).unwrap();
        bytes[HEADER_SIZE + RESOURCES_OFFSET] = 1; // placement not 2 MiB aligned
        assert_eq!(
            Package::parse(&bytes).unwrap_err(),
            PackageError::BadResources(0)
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
                encode(&parts, 0, None).unwrap_err(),
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
            0,
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
        bad[8] = 9;
        assert_eq!(
            Package::parse(&bad).unwrap_err(),
            PackageError::UnsupportedVersion(9)
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
            flips in proptest::collection::vec((0usize..800, any::<u8>()), 1..8)
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
                    for cap in p.caps.iter().flatten() {
                        prop_assert!(cap.ty.possible_rights().contains(cap.rights));
                        let service_only = matches!(cap.ty, CapType::Control | CapType::System);
                        prop_assert!(!service_only || p.kind == Kind::Service);
                    }
                }
                prop_assert_eq!(services, 1);
                prop_assert_eq!(package.partitions().count(), package.len());
            }
        }
    }
}
