//! The processors of a PC, from the firmware's ACPI tables: the RSDP, the RSDT or
//! XSDT it points at, and the MADT ("APIC") among their tables, whose
//! processor-local-APIC entries name every processor. The loader's copy of the
//! RSDP (multiboot2's ACPI tags) is used when it gave one: a UEFI firmware keeps
//! the RSDP where only its own configuration table says, and may have no legacy
//! BIOS areas at all. Otherwise the RSDP is searched for where a BIOS puts it: the
//! area 0xE0000 to 0xFFFFF or the first KiB of the EBDA.
//!
//! Invariants: every table is read only after its length is bounded and its
//! checksum verified; the tables are read, never written, and only at boot, from
//! memory the firmware reserved (identity-mapped below 4 GiB).

use septum_core::system::MAX_CPUS;

/// Where the BIOS keeps the segment of the extended BIOS data area.
const EBDA_SEGMENT: u64 = 0x40e;
const BIOS_AREA: (u64, u64) = (0xe_0000, 0x10_0000);
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
const MADT_SIGNATURE: &[u8; 4] = b"APIC";
/// Bytes of a system description table's header.
const HEADER: usize = 36;
/// The MADT's fields before its entries: the local APIC address and flags.
const MADT_FIELDS: usize = 8;
const ENTRY_LOCAL_APIC: u8 = 0;
const LOCAL_APIC_ENABLED: u32 = 1 << 0;
/// Tables longer than this are refused (a corrupt length).
const TABLE_LIMIT: u32 = 1 << 20;

/// The root table of the ACPI tables, as an RSDP names it.
#[derive(Clone, Copy, Debug)]
pub enum Root {
    /// The XSDT (ACPI 2.0 and later), whose entries are 64-bit addresses.
    Xsdt(u64),
    /// The RSDT, whose entries are 32-bit addresses.
    Rsdt(u64),
}

/// The local APIC ids of the processors the MADT lists as enabled, the boot
/// processor's first, then in MADT order; at most [`MAX_CPUS`] (the rest are
/// ignored). Only the boot processor if there is no MADT.
#[derive(Clone, Copy, Debug)]
pub struct Processors {
    apic_ids: [u32; MAX_CPUS],
    count: usize,
}

impl Processors {
    /// How many processors the kernel uses.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The local APIC id of core `cpu`.
    pub fn apic_id(&self, cpu: usize) -> Option<u32> {
        self.apic_ids[..self.count].get(cpu).copied()
    }

    fn add(&mut self, apic_id: u32) {
        if self.count < MAX_CPUS && !self.apic_ids[..self.count].contains(&apic_id) {
            self.apic_ids[self.count] = apic_id;
            self.count += 1;
        }
    }
}

/// Reads the processors from the ACPI tables, whose root is `given` (from the
/// loader's copy of the RSDP, its checksums verified) or else the one the RSDP in
/// the BIOS areas names; `boot_apic_id` is the local APIC id of the processor
/// running this.
///
/// # Safety
/// At boot, on a PC: the first MiB and the ACPI tables (below 4 GiB) must be
/// identity-mapped and readable.
pub unsafe fn processors(boot_apic_id: u32, given: Option<Root>) -> Processors {
    let mut processors = Processors {
        apic_ids: [0; MAX_CPUS],
        count: 0,
    };
    processors.add(boot_apic_id);
    // SAFETY: forwarded from this function's contract.
    if let Some(madt) = unsafe { find_madt(given) } {
        let mut entries = &madt[HEADER + MADT_FIELDS..];
        while let [kind, length, ..] = *entries {
            let length = usize::from(length);
            if length < 2 || length > entries.len() {
                break;
            }
            let entry = &entries[..length];
            if kind == ENTRY_LOCAL_APIC && length >= 8 {
                let flags = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
                if flags & LOCAL_APIC_ENABLED != 0 {
                    processors.add(u32::from(entry[3]));
                }
            }
            entries = &entries[length..];
        }
    }
    processors
}

/// Reads `len` bytes of physical memory at `address`.
///
/// # Safety
/// The range must be identity-mapped, readable, and not written while the slice
/// lives.
unsafe fn bytes(address: u64, len: usize) -> &'static [u8] {
    // SAFETY: forwarded from this function's contract.
    unsafe { core::slice::from_raw_parts(address as *const u8, len) }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from(le_u32(bytes, at)) | (u64::from(le_u32(bytes, at + 4)) << 32)
}

/// The root table that the RSDP in the BIOS areas names: its first 20 bytes
/// checksummed (the ACPI 1.0 part, with the RSDT), and the XSDT when its revision
/// is 2 or more, the whole of it checksums and it names one.
///
/// # Safety
/// As for [`processors`].
unsafe fn find_rsdp() -> Option<Root> {
    // SAFETY: the BIOS data area is in the first MiB.
    let ebda = u64::from(u16::from_le_bytes(
        unsafe { bytes(EBDA_SEGMENT, 2) }.try_into().ok()?,
    )) << 4;
    let areas = [(ebda, ebda + 1024), BIOS_AREA];
    for (start, end) in areas {
        if start == 0 || end > BIOS_AREA.1 {
            continue;
        }
        for candidate in (start..end - 20).step_by(16) {
            // SAFETY: inside the first MiB (checked above).
            let head = unsafe { bytes(candidate, 20) };
            if &head[..8] == RSDP_SIGNATURE && checksum_ok(head) {
                if head[15] >= 2 && candidate + 36 <= end {
                    // SAFETY: as above.
                    let full = unsafe { bytes(candidate, 36) };
                    if checksum_ok(full) && le_u64(full, 24) != 0 {
                        return Some(Root::Xsdt(le_u64(full, 24)));
                    }
                }
                return Some(Root::Rsdt(u64::from(le_u32(head, 16))));
            }
        }
    }
    None
}

/// A system description table at `address`, whole, if its length is sane and its
/// checksum right.
///
/// # Safety
/// As for [`processors`]; `address` comes from the firmware's tables.
unsafe fn table(address: u64) -> Option<&'static [u8]> {
    if address == 0 || address >= 1 << 32 {
        return None;
    }
    // SAFETY: below 4 GiB, in memory the firmware's tables point at.
    let length = le_u32(unsafe { bytes(address, HEADER) }, 4);
    if (length as usize) < HEADER || length > TABLE_LIMIT {
        return None;
    }
    // SAFETY: as above, for the length the table's header gives.
    let whole = unsafe { bytes(address, length as usize) };
    checksum_ok(whole).then_some(whole)
}

/// The MADT, through the root table `given`, or else the one the RSDP in the
/// BIOS areas names.
///
/// # Safety
/// As for [`processors`].
unsafe fn find_madt(given: Option<Root>) -> Option<&'static [u8]> {
    // SAFETY: forwarded from this function's contract.
    let (root, entry_size) = match given.or_else(|| unsafe { find_rsdp() })? {
        Root::Xsdt(address) => (address, 8),
        Root::Rsdt(address) => (address, 4),
    };
    // SAFETY: forwarded; the address comes from the RSDP.
    let root = unsafe { table(root) }?;
    for entry in root[HEADER..].chunks_exact(entry_size) {
        let address = if entry_size == 8 {
            le_u64(entry, 0)
        } else {
            u64::from(le_u32(entry, 0))
        };
        // SAFETY: forwarded; the address comes from the root table.
        if let Some(found) = unsafe { table(address) }
            && &found[..4] == MADT_SIGNATURE
            && found.len() >= HEADER + MADT_FIELDS
        {
            return Some(found);
        }
    }
    None
}
