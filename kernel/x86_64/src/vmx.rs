//! VMX operation: checking the processor's VT-x capabilities, entering VMX root
//! operation, and reading and writing VMCS fields.
//!
//! Invariants:
//! - VMXON runs only after every check below has passed: VMX is supported, the
//!   firmware has locked IA32_FEATURE_CONTROL with VMX allowed outside SMX (the kernel
//!   never writes that MSR), CR0 and CR4 satisfy the fixed-bit MSRs, and EPT with
//!   write-back tables, 2 MiB pages and INVEPT is available (the EPT capability
//!   MSR is read only once the controls say EPT exists);
//! - every control value written to a VMCS is first adjusted to the bits the
//!   capability MSRs allow, and a control the kernel needs but the CPU lacks is a
//!   boot error, never silently dropped.

use core::arch::asm;
use core::cell::UnsafeCell;
use septum_core::system::MAX_CPUS;
use x86_64::registers::control::{Cr0, Cr4, Cr4Flags};
use x86_64::registers::model_specific::Msr;

use crate::vcpu;

const IA32_FEATURE_CONTROL: u32 = 0x3a;
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const IA32_VMX_BASIC: u32 = 0x480;
const IA32_VMX_CR0_FIXED0: u32 = 0x486;
const IA32_VMX_CR0_FIXED1: u32 = 0x487;
const IA32_VMX_CR4_FIXED0: u32 = 0x488;
const IA32_VMX_CR4_FIXED1: u32 = 0x489;
const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
const EPT_CAP_WALK_LENGTH_4: u64 = 1 << 6;
const EPT_CAP_WRITE_BACK: u64 = 1 << 14;
const EPT_CAP_2MIB_PAGES: u64 = 1 << 16;
const EPT_CAP_INVEPT: u64 = 1 << 20;
const EPT_CAP_INVEPT_SINGLE: u64 = 1 << 25;
const VPID_CAP_INVVPID: u64 = 1 << 32;
const VPID_CAP_INVVPID_SINGLE: u64 = 1 << 41;
const VPID_CAP_INVVPID_ALL: u64 = 1 << 42;

/// Capability MSRs for the five control fields: (the MSR without TRUE controls, the
/// TRUE variant).
pub mod control_msr {
    /// Pin-based VM-execution controls.
    pub const PIN: (u32, u32) = (0x481, 0x48d);
    /// Primary processor-based VM-execution controls.
    pub const PRIMARY: (u32, u32) = (0x482, 0x48e);
    /// VM-exit controls.
    pub const EXIT: (u32, u32) = (0x483, 0x48f);
    /// VM-entry controls.
    pub const ENTRY: (u32, u32) = (0x484, 0x490);
    /// Secondary processor-based VM-execution controls (no TRUE variant).
    pub const SECONDARY: (u32, u32) = (0x48b, 0x48b);
}

/// Why VMX could not be turned on.
#[derive(Clone, Copy, Debug)]
pub enum VmxError {
    /// CPUID says the processor has no VMX.
    Unsupported,
    /// The firmware left VMX disabled (IA32_FEATURE_CONTROL).
    DisabledByFirmware,
    /// VMX has no EPT (the controls cannot turn it on).
    EptMissing,
    /// EPT lacks a feature the kernel needs (write-back, 4 levels, 2 MiB, INVEPT).
    EptUnsupported,
    /// A control the kernel needs is not allowed by this CPU: (control MSR, bits).
    ControlUnsupported(u32, u32),
    /// VMXON failed.
    VmxonFailed,
}

impl VmxError {
    /// The reason as one word, for the `@@ kernel unsupported` line.
    pub fn reason(&self) -> &'static str {
        match self {
            VmxError::Unsupported => "no-vmx",
            VmxError::DisabledByFirmware => "disabled-by-firmware",
            VmxError::EptMissing => "no-ept",
            VmxError::EptUnsupported => "ept-incomplete",
            VmxError::ControlUnsupported(..) => "control-missing",
            VmxError::VmxonFailed => "vmxon-failed",
        }
    }
}

impl core::fmt::Display for VmxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmxError::Unsupported => write!(f, "the processor has no VMX"),
            VmxError::DisabledByFirmware => write!(f, "the firmware disabled VMX"),
            VmxError::EptMissing => write!(f, "VMX has no EPT"),
            VmxError::EptUnsupported => {
                write!(f, "EPT lacks write-back, 4 levels, 2 MiB pages or INVEPT")
            }
            VmxError::ControlUnsupported(msr, bits) => {
                write!(
                    f,
                    "VMX controls {bits:#x} not allowed by capability MSR {msr:#x}"
                )
            }
            VmxError::VmxonFailed => write!(f, "VMXON failed"),
        }
    }
}

/// Reads model-specific register `msr`.
pub fn read_msr(msr: u32) -> u64 {
    // SAFETY: the kernel reads only architectural VMX and feature MSRs, which exist
    // on every CPU that passed the CPUID check.
    unsafe { Msr::new(msr).read() }
}

/// The VMCS revision identifier the CPU expects in VMXON and VMCS regions.
pub fn revision_id() -> u32 {
    (read_msr(IA32_VMX_BASIC) & 0x7fff_ffff) as u32
}

fn has_true_controls() -> bool {
    read_msr(IA32_VMX_BASIC) & (1 << 55) != 0
}

/// Returns `wanted` adjusted to what the CPU allows for one control field: bits the
/// CPU requires are added; a wanted bit the CPU cannot set is an error.
pub fn adjust_controls(msrs: (u32, u32), wanted: u32) -> Result<u32, VmxError> {
    let msr = if has_true_controls() { msrs.1 } else { msrs.0 };
    let capability = read_msr(msr);
    let must_be_one = capability as u32;
    let may_be_one = (capability >> 32) as u32;
    if wanted & !may_be_one != 0 {
        return Err(VmxError::ControlUnsupported(msr, wanted & !may_be_one));
    }
    Ok(wanted | must_be_one)
}

/// Adjusts a CR0 or CR4 value to the VMX fixed bits.
pub fn fixed_cr0(value: u64) -> u64 {
    (value | read_msr(IA32_VMX_CR0_FIXED0)) & read_msr(IA32_VMX_CR0_FIXED1)
}

/// Adjusts a CR4 value to the VMX fixed bits.
pub fn fixed_cr4(value: u64) -> u64 {
    (value | read_msr(IA32_VMX_CR4_FIXED0)) & read_msr(IA32_VMX_CR4_FIXED1)
}

/// A 4 KiB, page-aligned region handed to the CPU (VMXON region, VMCS, bitmaps).
#[repr(C, align(4096))]
pub struct Page(pub UnsafeCell<[u8; 4096]>);

// SAFETY: pages are written by the kernel during start-up only (the MSR bitmap by
// the boot core, a VMXON region by its own core, before VMXON hands it to that
// core's CPU), and afterwards only by the CPU itself.
unsafe impl Sync for Page {}

impl Page {
    /// A zeroed page.
    pub const fn zeroed() -> Page {
        Page(UnsafeCell::new([0; 4096]))
    }

    /// Its physical address (the kernel is identity-mapped).
    pub fn address(&self) -> u64 {
        self.0.get() as u64
    }
}

/// One VMXON region per core.
static VMXON_REGIONS: [Page; MAX_CPUS] = [const { Page::zeroed() }; MAX_CPUS];

/// Checks the CPU and enters VMX root operation on core `cpu`.
///
/// # Safety
/// Must be called once per core, on core `cpu`, with interrupts disabled.
pub unsafe fn enable(cpu: usize) -> Result<(), VmxError> {
    let features = core::arch::x86_64::__cpuid(1);
    if features.ecx & (1 << 5) == 0 {
        return Err(VmxError::Unsupported);
    }
    let control = read_msr(IA32_FEATURE_CONTROL);
    let allowed = FEATURE_CONTROL_LOCKED | FEATURE_CONTROL_VMX_OUTSIDE_SMX;
    if control & allowed != allowed {
        return Err(VmxError::DisabledByFirmware);
    }
    // The EPT capability MSR exists only where the controls allow EPT.
    let ept_allowed = adjust_controls(control_msr::PRIMARY, vcpu::PRIMARY_SECONDARY_CONTROLS)
        .and_then(|_| adjust_controls(control_msr::SECONDARY, vcpu::SECONDARY_ENABLE_EPT));
    if ept_allowed.is_err() {
        return Err(VmxError::EptMissing);
    }
    let ept = read_msr(IA32_VMX_EPT_VPID_CAP);
    let needed = EPT_CAP_WALK_LENGTH_4 | EPT_CAP_WRITE_BACK | EPT_CAP_2MIB_PAGES | EPT_CAP_INVEPT;
    if ept & needed != needed {
        return Err(VmxError::EptUnsupported);
    }
    // SAFETY: setting the fixed bits (NE, PG, PE are already set in long mode) and
    // CR4.VMXE changes no mapping; OSFXSR lets FXSAVE switch the guests' SSE state.
    unsafe {
        Cr0::write_raw(fixed_cr0(Cr0::read_raw()));
        Cr4::write_raw(fixed_cr4(
            (Cr4::read() | Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS | Cr4Flags::OSFXSR).bits(),
        ));
    }
    let region = VMXON_REGIONS[cpu].address();
    // SAFETY: the region is a page of ours, unused by anything else.
    unsafe { (region as *mut u32).write(revision_id()) };
    let failed: u8;
    // SAFETY: VMXON with a valid, aligned region and the checks above passed.
    unsafe {
        asm!("vmxon [{}]", "setna {}", in(reg) &region, out(reg_byte) failed, options(nostack));
    }
    if failed != 0 {
        return Err(VmxError::VmxonFailed);
    }
    Ok(())
}

/// Whether INVEPT can flush one EPT context (else all contexts are flushed).
pub fn invept_single_context() -> bool {
    read_msr(IA32_VMX_EPT_VPID_CAP) & EPT_CAP_INVEPT_SINGLE != 0
}

/// Invalidates, on this core, cached translations derived from the EPT hierarchy
/// `eptp`: guest-physical and combined mappings, for every VPID and PCID (all EPT
/// contexts where the CPU cannot flush a single one).
pub fn invept(eptp: u64) {
    // The INVEPT descriptor: the EPTP in bits 63:0, bits 127:64 reserved (zero).
    let descriptor: [u64; 2] = [eptp, 0];
    let kind: u64 = if invept_single_context() { 1 } else { 2 };
    let failed: u8;
    // SAFETY: INVEPT only drops cached translations; the descriptor is valid. The
    // memory clobber (no `nomem`) keeps earlier EPT stores before it.
    unsafe {
        asm!("invept {}, [{}]", "setna {}", in(reg) kind, in(reg) &descriptor, out(reg_byte) failed, options(nostack));
    }
    assert!(failed == 0, "INVEPT type {kind} of {eptp:#x} failed");
}

/// Whether the CPU has INVVPID of one VPID's or of every VPID's mappings (the
/// back end needs one of them to change a vCPU's translation mode).
pub fn has_invvpid() -> bool {
    let capability = read_msr(IA32_VMX_EPT_VPID_CAP);
    capability & VPID_CAP_INVVPID != 0
        && capability & (VPID_CAP_INVVPID_SINGLE | VPID_CAP_INVVPID_ALL) != 0
}

/// Invalidates, on this core, the linear and combined mappings cached for
/// `vpid` (every VPID's but the kernel's where the CPU cannot flush a single
/// one). Needs [`has_invvpid`].
pub fn invvpid(vpid: u16) {
    // The INVVPID descriptor: the VPID in bits 15:0, bits 63:16 reserved, the
    // linear address (unused by these types) in bits 127:64.
    let descriptor: [u64; 2] = [u64::from(vpid), 0];
    let single = read_msr(IA32_VMX_EPT_VPID_CAP) & VPID_CAP_INVVPID_SINGLE != 0;
    let kind: u64 = if single { 1 } else { 2 };
    let failed: u8;
    // SAFETY: INVVPID only drops cached translations; the descriptor is valid.
    unsafe {
        asm!("invvpid {}, [{}]", "setna {}", in(reg) kind, in(reg) &descriptor, out(reg_byte) failed, options(nostack));
    }
    assert!(failed == 0, "INVVPID type {kind} of VPID {vpid} failed");
}

/// Makes the VMCS at `address` current and active (VMCLEAR first if `clear`).
///
/// # Safety
/// `address` must be a VMCS region initialised with the revision identifier.
pub unsafe fn load(address: u64, clear: bool) {
    let failed: u8;
    // SAFETY: forwarded from the caller; VMCLEAR and VMPTRLD take the region's
    // physical address from memory.
    unsafe {
        if clear {
            asm!("vmclear [{}]", in(reg) &address, options(nostack));
        }
        asm!("vmptrld [{}]", "setna {}", in(reg) &address, out(reg_byte) failed, options(nostack));
    }
    assert!(failed == 0, "VMPTRLD of {address:#x} failed");
}

/// Writes the VMCS at `address` back to memory and makes it inactive and not
/// current on this core, so that another core may load it (and next enters it with
/// VMLAUNCH).
///
/// # Safety
/// `address` must be a VMCS region initialised with the revision identifier.
pub unsafe fn clear(address: u64) {
    let failed: u8;
    // SAFETY: forwarded from the caller; VMCLEAR takes the region's physical
    // address from memory.
    unsafe {
        asm!("vmclear [{}]", "setna {}", in(reg) &address, out(reg_byte) failed, options(nostack));
    }
    assert!(failed == 0, "VMCLEAR of {address:#x} failed");
}

/// Writes VMCS field `field` of the current VMCS.
pub fn write(field: u32, value: u64) {
    let failed: u8;
    // SAFETY: VMWRITE only changes the current VMCS; a bad field fails cleanly and
    // is caught below.
    unsafe {
        asm!("vmwrite {}, {}", "setna {}", in(reg) u64::from(field), in(reg) value, out(reg_byte) failed, options(nostack));
    }
    assert!(
        failed == 0,
        "VMWRITE {field:#x} = {value:#x} failed: error {}",
        read(field::INSTRUCTION_ERROR)
    );
}

/// Reads VMCS field `field` of the current VMCS.
pub fn read(field: u32) -> u64 {
    let value: u64;
    // SAFETY: VMREAD only reads the current VMCS.
    unsafe { asm!("vmread {}, {}", out(reg) value, in(reg) u64::from(field), options(nostack)) };
    value
}

/// VMCS field encodings (Intel SDM vol. 3, appendix B).
#[allow(missing_docs)]
pub mod field {
    pub const VPID: u32 = 0x0000;
    pub const GUEST_ES_SELECTOR: u32 = 0x0800;
    pub const HOST_ES_SELECTOR: u32 = 0x0c00;
    pub const HOST_CS_SELECTOR: u32 = 0x0c02;
    pub const HOST_SS_SELECTOR: u32 = 0x0c04;
    pub const HOST_DS_SELECTOR: u32 = 0x0c06;
    pub const HOST_FS_SELECTOR: u32 = 0x0c08;
    pub const HOST_GS_SELECTOR: u32 = 0x0c0a;
    pub const HOST_TR_SELECTOR: u32 = 0x0c0c;
    pub const IO_BITMAP_A: u32 = 0x2000;
    pub const IO_BITMAP_B: u32 = 0x2002;
    pub const MSR_BITMAP: u32 = 0x2004;
    pub const VIRTUAL_APIC_ADDRESS: u32 = 0x2012;
    pub const EPT_POINTER: u32 = 0x201a;
    pub const GUEST_PHYSICAL_ADDRESS: u32 = 0x2400;
    pub const VMCS_LINK_POINTER: u32 = 0x2800;
    pub const GUEST_DEBUGCTL: u32 = 0x2802;
    pub const GUEST_EFER: u32 = 0x2806;
    pub const HOST_EFER: u32 = 0x2c02;
    pub const PIN_CONTROLS: u32 = 0x4000;
    pub const PRIMARY_CONTROLS: u32 = 0x4002;
    pub const EXCEPTION_BITMAP: u32 = 0x4004;
    pub const EXIT_CONTROLS: u32 = 0x400c;
    pub const ENTRY_CONTROLS: u32 = 0x4012;
    pub const ENTRY_INTERRUPTION_INFO: u32 = 0x4016;
    pub const TPR_THRESHOLD: u32 = 0x401c;
    pub const SECONDARY_CONTROLS: u32 = 0x401e;
    pub const INSTRUCTION_ERROR: u32 = 0x4400;
    pub const EXIT_REASON: u32 = 0x4402;
    pub const EXIT_INTERRUPTION_INFO: u32 = 0x4404;
    pub const EXIT_INTERRUPTION_ERROR: u32 = 0x4406;
    pub const EXIT_INSTRUCTION_LENGTH: u32 = 0x440c;
    pub const GUEST_ES_LIMIT: u32 = 0x4800;
    pub const GUEST_GDTR_LIMIT: u32 = 0x4810;
    pub const GUEST_IDTR_LIMIT: u32 = 0x4812;
    pub const GUEST_ES_ACCESS: u32 = 0x4814;
    pub const GUEST_CS_ACCESS: u32 = 0x4816;
    pub const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
    pub const GUEST_ACTIVITY_STATE: u32 = 0x4826;
    pub const GUEST_SYSENTER_CS: u32 = 0x482a;
    pub const PREEMPTION_TIMER: u32 = 0x482e;
    pub const HOST_SYSENTER_CS: u32 = 0x4c00;
    pub const CR0_MASK: u32 = 0x6000;
    pub const CR4_MASK: u32 = 0x6002;
    pub const CR0_READ_SHADOW: u32 = 0x6004;
    pub const CR4_READ_SHADOW: u32 = 0x6006;
    pub const EXIT_QUALIFICATION: u32 = 0x6400;
    pub const GUEST_CR0: u32 = 0x6800;
    pub const GUEST_CR3: u32 = 0x6802;
    pub const GUEST_CR4: u32 = 0x6804;
    pub const GUEST_ES_BASE: u32 = 0x6806;
    pub const GUEST_GDTR_BASE: u32 = 0x6816;
    pub const GUEST_IDTR_BASE: u32 = 0x6818;
    pub const GUEST_DR7: u32 = 0x681a;
    pub const GUEST_RSP: u32 = 0x681c;
    pub const GUEST_RIP: u32 = 0x681e;
    pub const GUEST_RFLAGS: u32 = 0x6820;
    pub const GUEST_PENDING_DEBUG: u32 = 0x6822;
    pub const GUEST_SYSENTER_ESP: u32 = 0x6824;
    pub const GUEST_SYSENTER_EIP: u32 = 0x6826;
    pub const HOST_CR0: u32 = 0x6c00;
    pub const HOST_CR3: u32 = 0x6c02;
    pub const HOST_CR4: u32 = 0x6c04;
    pub const HOST_FS_BASE: u32 = 0x6c06;
    pub const HOST_GS_BASE: u32 = 0x6c08;
    pub const HOST_TR_BASE: u32 = 0x6c0a;
    pub const HOST_GDTR_BASE: u32 = 0x6c0c;
    pub const HOST_IDTR_BASE: u32 = 0x6c0e;
    pub const HOST_SYSENTER_ESP: u32 = 0x6c10;
    pub const HOST_SYSENTER_EIP: u32 = 0x6c12;
    pub const HOST_RSP: u32 = 0x6c14;
    pub const HOST_RIP: u32 = 0x6c16;
}
