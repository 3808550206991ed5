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
//! | 24 | 4 | number of queues in the system (the queue table's length) |
//! | 28 | 4 | major frame in µs (0: no schedule) |
//! | 32 | 480 × count | partition records |
//! | 32 + 480 × count | 8 × queues | queue table |
//! | ... | | images |
//!
//! A partition record: name (16 bytes, NUL-padded, `[a-z0-9_-]`), kind (4: 0 service,
//! 1 guest), reserved (4), RAM size (8), image offset from the package start (8),
//! image length (8), entry offset into RAM (8), boot argument (8: a value the
//! partition finds in its second argument register at entry, so one image can serve
//! several roles), then its capability table: 16 slots of 8 bytes, each type (1:
//! 0 for an empty slot, else a [`CapType`]), reserved (1), rights (2), object (2:
//! the partition index of a control capability, the queue index of a queue end,
//! else 0), badge (2: the holder's index on a queue send end, else 0); then its
//! [`Resources`] block (272 bytes, with its receive window, memory shares, network port
//! and flags, the devirtualize flag among them); then its
//! [`Supervision`] block (12 bytes: trap policy, restart budget, watchdog period)
//! and reserved (4, zero), which keep records a multiple of 8 bytes long.
//!
//! A queue record ([`QueueSpec`]): sender's partition index (1), receiver's
//! partition index (1), depth in messages (1), most pages in flight (1), reserved
//! (4, zero). Partition indices are in package order (the service VM is 0); a
//! queue capability's object is the queue's index in the table.
//!
//! Invariant: [`Package::parse`] accepts a byte string only if every record is
//! consistent: exactly one service VM, listed first; unique names; each image inside
//! the package and no larger than its RAM; the entry inside the image; a canonical
//! supervision block, with no trap policy on the service VM; one vCPU for the
//! service VM, on core 0, and at most [`MAX_SYSTEM_VCPUS`] in all; no queue end,
//! balloon, virtio device or receive window for a partition with several vCPUs
//! (page flips and ballooning change a partition's mappings while only the core
//! they run on is told, and the virtio rings are walked while no vCPU of the
//! partition runs: see the README's "Multi-vCPU partitions"); a ballooning
//! Linux partition starts with its maximum and has a minimum; every queue joining
//! two distinct partitions of the package, with a depth of 1 to
//! [`MAX_QUEUE_DEPTH`] and 1 to depth pages in flight; and every queue capability
//! naming a queue of the table and held by that end of it (a send end by the
//! queue's sender, a receive end by its receiver); no two network ports with one
//! address, and at most one uplink; at most one devirtualizable partition
//! ([`Resources::devirtualize`]), and that one a native guest placed identity
//! (at [`RAM_BASE`]) with one vCPU, on a core no other guest has (the
//! service VM may), and with no queue end, balloon, virtio device (a network
//! port among them) or receive window, none of which works without the kernel's
//! translation. Everything the kernel later does with a package relies on this
//! check.

use septum_abi::layout::RAM_BASE;
use septum_abi::virtio::Device;

use crate::caps::{CAP_SLOTS, Cap, CapTable, CapType, Rights};
use crate::resources::{RESOURCES_SIZE, Resources};
use crate::supervision::{SUPERVISION_SIZE, Supervision, TrapPolicy};

/// The package magic.
pub const MAGIC: [u8; 8] = *b"SEPTUMPK";
/// The format version this core reads and writes.
pub const VERSION: u32 = 9;
/// Most partitions a system may have (the ABI's limit).
pub use septum_abi::MAX_PARTITIONS;
/// Longest partition name, in bytes (the ABI's: `inspect` copies it out).
pub use septum_abi::NAME_MAX;
/// Largest RAM one partition may be given (1 GiB).
pub const RAM_MAX: u64 = 1 << 30;
/// Most vCPUs of all partitions together.
pub const MAX_SYSTEM_VCPUS: usize = 128;
/// Most messages a queue may hold.
pub const MAX_QUEUE_DEPTH: u32 = 64;

const HEADER_SIZE: usize = 32;
const CAP_SIZE: usize = 8;
const BASE_RECORD_SIZE: usize = 64;
const RESOURCES_OFFSET: usize = BASE_RECORD_SIZE + CAP_SLOTS * CAP_SIZE;
const SUPERVISION_OFFSET: usize = RESOURCES_OFFSET + RESOURCES_SIZE;
/// Zero bytes after the supervision block, so that records stay 8-byte multiples.
const RECORD_PADDING: usize = 4;
const RECORD_SIZE: usize = SUPERVISION_OFFSET + SUPERVISION_SIZE + RECORD_PADDING;
// The layout table in the module docs states this size.
const _: () = assert!(RECORD_SIZE == 480 && RECORD_SIZE.is_multiple_of(8));
const QUEUE_SIZE: usize = 8;

/// What a partition is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The privileged service VM that monitors the guests. Exactly one per system.
    Service,
    /// An ordinary guest partition.
    Guest,
}

/// How a partition is entered and what machine it finds: Septum's own partition
/// programs, or an unmodified Linux kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// A Septum partition program: entered at its entry with its RAM size,
    /// boot argument and generation in x0-x2; it talks to the kernel through
    /// hypercalls, and its accesses to memory it was not granted are faults.
    #[default]
    Native,
    /// An unmodified Linux kernel (a guest only): entered by the arm64 boot
    /// protocol (x0 = its device tree, the boot argument's guest address; MMU and
    /// caches off), finding the virtual machine of [`septum_abi::virt`]: an
    /// emulated GICv3 and SBSA UART, the virtual timer, PSCI through `hvc`.
    Linux,
}

/// One partition as the package describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionSpec<'a> {
    /// Its unique name.
    pub name: &'a str,
    /// Service VM or guest.
    pub kind: Kind,
    /// Native partition program or Linux.
    pub profile: Profile,
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

impl PartitionSpec<'_> {
    /// Whether it has a balloon, through a balloon capability or a virtio-balloon
    /// device: its memory then runs from its minimum to its maximum (see
    /// [`septum_abi::balloon`]).
    pub fn balloon(&self) -> bool {
        self.resources.has_virtio(Device::Balloon)
            || self
                .caps
                .iter()
                .flatten()
                .any(|cap| cap.ty == CapType::Balloon)
    }

    /// Bytes of RAM it always keeps (its pinned prefix): all its RAM without a
    /// balloon; with one, its minimum for a native partition (its image, stack
    /// and hypercall buffers lie there, and it gets this size at entry), and
    /// none for Linux, which may give back any page of its RAM (its minimum is
    /// then only a count it never goes below).
    pub fn kept_ram(&self) -> u64 {
        match (self.balloon(), self.profile) {
            (false, _) => self.ram_size,
            (true, Profile::Native) => self.resources.memory_min,
            (true, Profile::Linux) => 0,
        }
    }
}

/// One queue as the package describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// The sending partition's index, in package order.
    pub sender: usize,
    /// The receiving partition's index, in package order (never the sender).
    pub receiver: usize,
    /// Messages it holds (1 to [`MAX_QUEUE_DEPTH`]).
    pub depth: u32,
    /// Pages that may be in flight at once (1 to the depth).
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
    /// Record `index` has an unknown kind, or a profile unknown or not allowed for its
    /// kind (only a guest may be Linux).
    BadKind(usize),
    /// The first record is not the service VM, or another record is.
    ServiceNotFirstOrNotUnique,
    /// Record `index` has RAM that is zero, not page-aligned in size, or too large.
    BadRamSize(usize),
    /// Record `index` has an image outside the package, larger than its RAM, or
    /// (with a balloon) larger than its minimum.
    BadImage(usize),
    /// Record `index` has an entry point outside its image or not 4-byte aligned.
    BadEntry(usize),
    /// Record `index` has a malformed resources block, memory limits that do not
    /// bracket its RAM, (with a balloon) a minimum of zero or not page-aligned, or
    /// vCPUs it may not have: the service VM has one, on core 0; a partition with
    /// several holds no queue end or balloon and has no receive window.
    BadResources(usize),
    /// The partitions have more than [`MAX_SYSTEM_VCPUS`] vCPUs together.
    TooManyVcpus,
    /// Record `index`, slot `slot`: an unknown type, rights the type cannot carry,
    /// an object that does not exist, non-zero reserved bytes, a service-only
    /// capability held by a guest, or a queue end held by a partition that is not
    /// that end of the queue.
    BadCap(usize, usize),
    /// Record `index` has a supervision block that is not canonical, non-zero bytes
    /// after it, or a trap policy on the service VM (its traps always restart it).
    BadSupervision(usize),
    /// Queue `index` names a partition past the count, joins a partition to
    /// itself, has a depth outside 1 to [`MAX_QUEUE_DEPTH`] or more pages in flight
    /// than its depth (or none), or has non-zero reserved bytes.
    BadQueue(usize),
    /// Record `index` has a network port whose address an earlier record's
    /// port has, or is a second uplink.
    BadNetwork(usize),
    /// Record `index` is devirtualizable but is not a native guest placed at
    /// [`RAM_BASE`] with one vCPU, holds a queue end or a balloon, has a virtio
    /// device or a receive window, shares a core with another guest, or is a
    /// second devirtualizable partition.
    BadDevirtualize(usize),
}

/// A validated package.
#[derive(Clone, Copy, Debug)]
pub struct Package<'a> {
    bytes: &'a [u8],
    count: usize,
    queue_count: usize,
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
        let queue_count =
            usize::try_from(read_u32(header, 24)).map_err(|_| PackageError::Truncated)?;
        let queues_end = queue_count
            .checked_mul(QUEUE_SIZE)
            .and_then(|table| table.checked_add(HEADER_SIZE + RECORD_SIZE * count as usize))
            .ok_or(PackageError::Truncated)?;
        if total > bytes.len() || total < queues_end {
            return Err(PackageError::Truncated);
        }
        let package = Package {
            bytes: &bytes[..total],
            count: count as usize,
            queue_count,
            major_frame_us: read_u32(header, 28),
        };
        // Queues first: the partitions' queue capabilities are checked against them.
        for index in 0..package.queue_count {
            package.decode_queue(index)?;
        }
        let mut vcpus = 0;
        let mut devirtualizable = None;
        for index in 0..package.count {
            let spec = package.decode(index)?;
            vcpus += spec.resources.vcpu_cores().len();
            if vcpus > MAX_SYSTEM_VCPUS {
                return Err(PackageError::TooManyVcpus);
            }
            let is_service = spec.kind == Kind::Service;
            if is_service != (index == 0) {
                return Err(PackageError::ServiceNotFirstOrNotUnique);
            }
            if (0..index).any(|earlier| package.raw_name(earlier) == package.raw_name(index)) {
                return Err(PackageError::BadName(index));
            }
            if let Some(port) = spec.resources.net() {
                let clash = package.partitions().take(index).any(|earlier| {
                    earlier.resources.net().is_some_and(|other| {
                        other.address.ip == port.address.ip || (other.uplink && port.uplink)
                    })
                });
                if clash {
                    return Err(PackageError::BadNetwork(index));
                }
            }
            if spec.resources.devirtualize {
                if devirtualizable.is_some() {
                    return Err(PackageError::BadDevirtualize(index));
                }
                devirtualizable = Some((index, spec.resources.vcpu_cores()[0]));
            }
        }
        // Alone on its core but for the service VM (record 0).
        if let Some((index, core)) = devirtualizable {
            let shared = package
                .partitions()
                .enumerate()
                .skip(1)
                .any(|(other, spec)| other != index && spec.resources.vcpu_cores().contains(&core));
            if shared {
                return Err(PackageError::BadDevirtualize(index));
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

    /// Number of vCPUs of all its partitions together.
    pub fn vcpu_count(&self) -> usize {
        self.partitions()
            .map(|spec| spec.resources.vcpu_cores().len())
            .sum()
    }

    /// Number of queues in the system.
    pub fn queue_count(&self) -> usize {
        self.queue_count
    }

    /// Queue `index` (the object of its capabilities), if there is one.
    pub fn queue(&self, index: usize) -> Option<QueueSpec> {
        if index >= self.queue_count {
            return None;
        }
        self.decode_queue(index).ok()
    }

    /// All queues, in package order.
    pub fn queues(&self) -> impl Iterator<Item = QueueSpec> + '_ {
        (0..self.queue_count).filter_map(|i| self.queue(i))
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

    fn decode_queue(&self, index: usize) -> Result<QueueSpec, PackageError> {
        let start = HEADER_SIZE + RECORD_SIZE * self.count + QUEUE_SIZE * index;
        let raw = &self.bytes[start..start + QUEUE_SIZE];
        let queue = QueueSpec {
            sender: usize::from(raw[0]),
            receiver: usize::from(raw[1]),
            depth: u32::from(raw[2]),
            max_in_flight: u32::from(raw[3]),
        };
        let valid = queue.sender < self.count
            && queue.receiver < self.count
            && queue.sender != queue.receiver
            && (1..=MAX_QUEUE_DEPTH).contains(&queue.depth)
            && (1..=queue.depth).contains(&queue.max_in_flight)
            && raw[4..].iter().all(|&b| b == 0);
        if valid {
            Ok(queue)
        } else {
            Err(PackageError::BadQueue(index))
        }
    }

    fn decode(&self, index: usize) -> Result<PartitionSpec<'a>, PackageError> {
        let record = self.record(index);
        let name = decode_name(&record[..NAME_MAX]).ok_or(PackageError::BadName(index))?;
        let kind = match read_u32(record, 16) {
            0 => Kind::Service,
            1 => Kind::Guest,
            _ => return Err(PackageError::BadKind(index)),
        };
        let profile = match (read_u32(record, 20), kind) {
            (0, _) => Profile::Native,
            (1, Kind::Guest) => Profile::Linux,
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
        let spec = PartitionSpec {
            name,
            kind,
            profile,
            ram_size,
            image,
            entry_offset,
            argument: read_u64(record, 56),
            caps,
            resources,
            supervision,
        };
        // A native ballooning partition's image lies in the memory it always
        // keeps. A ballooning Linux starts with all its RAM (it learns its size
        // from the device tree and would use holes), and never below one page.
        let kept = spec.kept_ram();
        let linux_balloon = profile == Profile::Linux && spec.balloon();
        let bad_floor = match linux_balloon {
            true => spec.resources.memory_min == 0 || ram_size != spec.resources.memory_max,
            false => kept == 0,
        };
        if bad_floor
            || !spec
                .resources
                .memory_min
                .is_multiple_of(septum_abi::layout::PAGE_SIZE)
        {
            return Err(PackageError::BadResources(index));
        }
        if !linux_balloon && image.len() as u64 > kept {
            return Err(PackageError::BadImage(index));
        }
        let cores = spec.resources.vcpu_cores();
        let maps_at_run_time = spec.resources.receive_window > 0
            || caps.iter().flatten().any(|cap| {
                matches!(
                    cap.ty,
                    CapType::QueueSend | CapType::QueueReceive | CapType::Balloon
                )
            })
            || spec.balloon()
            || spec.resources.virtio().next().is_some();
        let vcpus_allowed = match kind {
            Kind::Service => cores == [0],
            Kind::Guest => cores.len() == 1 || !maps_at_run_time,
        };
        if !vcpus_allowed {
            return Err(PackageError::BadResources(index));
        }
        let devirtualizable = kind == Kind::Guest
            && profile == Profile::Native
            && spec.resources.at == Some(RAM_BASE)
            && cores.len() == 1
            && !maps_at_run_time;
        if spec.resources.devirtualize && !devirtualizable {
            return Err(PackageError::BadDevirtualize(index));
        }
        Ok(spec)
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
        // A queue end names an existing queue of which its holder is that end.
        let queue = self.queue(usize::from(object));
        let object_right = match ty {
            CapType::Control => usize::from(object) < self.count,
            CapType::QueueSend => queue.is_some_and(|q| q.sender == holder_index),
            CapType::QueueReceive => queue.is_some_and(|q| q.receiver == holder_index),
            _ => object == 0,
        };
        let holder_may =
            holder == Kind::Service || !matches!(ty, CapType::Control | CapType::System);
        if reserved_clear && badge_right && rights_possible && object_right && holder_may {
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

/// Builds the bytes of a package for a system of `partitions` (in package order)
/// and `queues`. The result is checked with [`Package::parse`], so an encoder bug
/// or an inconsistent spec can never produce a package the kernel would accept
/// wrongly.
#[cfg(any(feature = "alloc", test))]
pub fn encode(
    partitions: &[PartitionSpec<'_>],
    queues: &[QueueSpec],
    major_frame_us: Option<u32>,
) -> Result<alloc::vec::Vec<u8>, PackageError> {
    use alloc::vec::Vec;

    let queues_end = HEADER_SIZE + RECORD_SIZE * partitions.len() + QUEUE_SIZE * queues.len();
    let images_len: usize = partitions
        .iter()
        .map(|p| p.image.len().next_multiple_of(8))
        .sum();
    let total = queues_end + images_len;
    // The first queue the count field cannot count.
    let queue_count =
        u32::try_from(queues.len()).map_err(|_| PackageError::BadQueue(u32::MAX as usize))?;
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    let count = u32::try_from(partitions.len()).map_err(|_| PackageError::BadCount(u32::MAX))?;
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&(total as u64).to_le_bytes());
    bytes.extend_from_slice(&queue_count.to_le_bytes());
    bytes.extend_from_slice(&major_frame_us.unwrap_or(0).to_le_bytes());
    let mut image_offset = queues_end;
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
        let profile: u32 = match p.profile {
            Profile::Native => 0,
            Profile::Linux => 1,
        };
        bytes.extend_from_slice(&profile.to_le_bytes());
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
    for (index, q) in queues.iter().enumerate() {
        let fields = (
            u8::try_from(q.sender),
            u8::try_from(q.receiver),
            u8::try_from(q.depth),
            u8::try_from(q.max_in_flight),
        );
        let (Ok(sender), Ok(receiver), Ok(depth), Ok(in_flight)) = fields else {
            return Err(PackageError::BadQueue(index));
        };
        bytes.extend_from_slice(&[sender, receiver, depth, in_flight, 0, 0, 0, 0]);
    }
    for p in partitions {
        bytes.extend_from_slice(p.image);
        bytes.resize(bytes.len().next_multiple_of(8), 0);
    }
    Package::parse(&bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
