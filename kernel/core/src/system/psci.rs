//! The PSCI front end: the standard calls an aarch64 guest makes through
//! `hvc #0` with an SMCCC function number (bit 31 set, so never one of Septum's
//! call numbers), turned into the same requests as Septum's own calls.
//!
//! A partition's vCPUs are its PSCI CPUs: vCPU `n` has MPIDR affinity 0 = `n`
//! ([`septum_abi::vcpu_mpidr`], which the back end gives it in VMPIDR_EL2). Supported:
//! `PSCI_VERSION` (1.1), `PSCI_FEATURES`, `CPU_ON` (64-bit: [`Call::VcpuStart`]'s
//! request), `CPU_OFF` (any vCPU but 0: it stays off until started again),
//! `AFFINITY_INFO` (64-bit, level 0), `MIGRATE_INFO_TYPE` (no trusted
//! OS to migrate), `SYSTEM_OFF` (the partition exits with code 0: its machine
//! is off) and `SYSTEM_RESET` (a supervision event, [`Reason::Reset`], which the
//! service VM answers like a fault: a restart within the partition's budget).
//! None of them reaches the machine or another partition. Every other function
//! number returns `NOT_SUPPORTED`, as SMCCC requires of an unknown one; nothing
//! else in the guest changes. Refusals are audited and counted like refused
//! hypercalls.
//!
//! [`Reason::Reset`]: septum_abi::Reason::Reset
//!
//! [`Call::VcpuStart`]: septum_abi::Call::VcpuStart

use septum_abi::{Error, Reason};
use smccc::psci::{self, error as psci_error};

use super::{CallRegisters, Dispatch, Next, Platform, Reply, System, VcpuState, emit};
use crate::event::{Event, Fault};

/// The PSCI version reported: 1.1.
const VERSION_1_1: u64 = 0x0001_0001;
/// `MIGRATE_INFO_TYPE`'s answer: no trusted OS that would need migrating.
const MIGRATE_NOT_REQUIRED: u64 = 2;
/// `AFFINITY_INFO` answers: the CPU is on, or off.
const AFFINITY_ON: u64 = 0;
const AFFINITY_OFF: u64 = 1;
/// The affinity fields of an MPIDR value (Aff0-Aff2, Aff3).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// The vCPU index an MPIDR value given to PSCI names: affinity 0 alone.
fn vcpu_index(mpidr: u64) -> Option<u64> {
    let affinity = mpidr & MPIDR_AFFINITY;
    (affinity <= 0xff).then_some(affinity)
}

impl System {
    /// An SMCCC call from `vcpu`. A refusal is audited and reported like a
    /// refused hypercall, under the SMCCC function number.
    pub(super) fn smccc(
        &mut self,
        vcpu: usize,
        call: &CallRegisters,
        platform: &mut impl Platform,
    ) -> Dispatch {
        let partition = self.vcpus[vcpu].partition;
        let [a1, a2, a3, ..] = call.args;
        // SMCCC: the function number is W0; the upper half of X0 is ignored.
        let result = match call.number as u32 {
            psci::PSCI_VERSION => Ok(VERSION_1_1),
            psci::PSCI_FEATURES => match a1 as u32 {
                psci::PSCI_VERSION
                | psci::PSCI_FEATURES
                | psci::PSCI_CPU_ON_64
                | psci::PSCI_CPU_OFF
                | psci::PSCI_AFFINITY_INFO_64
                | psci::PSCI_MIGRATE_INFO_TYPE
                | psci::PSCI_SYSTEM_OFF
                | psci::PSCI_SYSTEM_RESET => Ok(0),
                // "Not supported" is an answer to the question, not a refusal
                // of the call: nothing to audit.
                _ => return Dispatch::resume(psci_reply(Err(Error::UnknownCall))),
            },
            psci::PSCI_CPU_ON_64 => {
                let start = vcpu_index(a1)
                    .ok_or(Error::InvalidArgument)
                    .and_then(|index| self.decode_vcpu_start(partition, index, a2, a3));
                match start {
                    Ok(start) => return self.vcpu_start(start, platform),
                    Err(error) => Err(error),
                }
            }
            psci::PSCI_AFFINITY_INFO_64 => {
                let count = self.partitions[partition].vcpus.len() as u64;
                match vcpu_index(a1).filter(|&index| a2 == 0 && index < count) {
                    Some(index) => {
                        let life = &self.partitions[partition].life;
                        let on = life.vcpu_state(index as usize) != VcpuState::Off;
                        Ok(if on { AFFINITY_ON } else { AFFINITY_OFF })
                    }
                    None => Err(Error::InvalidArgument),
                }
            }
            psci::PSCI_CPU_OFF => return self.vcpu_off(vcpu, platform),
            psci::PSCI_MIGRATE_INFO_TYPE => Ok(MIGRATE_NOT_REQUIRED),
            psci::PSCI_SYSTEM_OFF => {
                self.exit(partition, 0, platform);
                return Dispatch::new(None, Next::Yield);
            }
            psci::PSCI_SYSTEM_RESET => {
                let fault = Fault::new(Reason::Reset, 0, 0);
                return self.fault(vcpu, &fault, platform);
            }
            _ => Err(Error::UnknownCall),
        };
        if let Err(error) = result {
            self.note_refusal(partition, call.number, error, platform);
        }
        Dispatch::resume(psci_reply(result))
    }
}

impl System {
    /// `CPU_OFF` from `vcpu`: it powers off and leaves its core (the SPIs its
    /// list registers held go back to their routes); `DENIED` for vCPU 0, which
    /// carries its partition's work and device interrupts, or a vCPU that may
    /// not run.
    fn vcpu_off(&mut self, vcpu: usize, platform: &mut impl Platform) -> Dispatch {
        let slot = &self.vcpus[vcpu];
        let (index, cpu) = (slot.index, slot.cpu);
        let partition = &mut self.partitions[slot.partition];
        if partition.life.stop_vcpu(index, platform.now_us()).is_err() {
            return Dispatch::resume(Reply {
                status: i64::from(psci_error::DENIED) as u64,
                results: [0; 3],
            });
        }
        if let Some(machine) = partition.machine.as_deref_mut() {
            machine.gic.take_back(index, &mut []);
        }
        let event = Event::VcpuOff {
            name: partition.name(),
            vcpu: index,
            cpu,
        };
        emit(platform, event);
        self.end_loan(self.vcpus[vcpu].partition);
        Dispatch::new(None, Next::Yield)
    }
}

/// A PSCI return value in x0: the result, or the PSCI error code for `error`
/// (negative, sign-extended).
fn psci_reply(result: Result<u64, Error>) -> Reply {
    let status = result.unwrap_or_else(|error| {
        let code = match error {
            Error::UnknownCall => psci_error::NOT_SUPPORTED,
            Error::BadAddress => psci_error::INVALID_ADDRESS,
            Error::BadState => psci_error::ALREADY_ON,
            _ => psci_error::INVALID_PARAMETERS,
        };
        i64::from(code) as u64
    });
    Reply {
        status,
        results: [0; 3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use septum_abi::vcpu_mpidr;

    /// Verifies: SK-VCPU-002
    #[test]
    fn mpidr_values_name_vcpus_by_affinity_0() {
        assert_eq!(vcpu_mpidr(1), 0x8000_0001);
        assert_eq!(vcpu_index(vcpu_mpidr(3)), Some(3));
        assert_eq!(vcpu_index(3), Some(3), "RES1 is not required of the caller");
        assert_eq!(vcpu_index(0x100), None, "affinity 1");
        assert_eq!(vcpu_index(1 << 32), None, "affinity 3");
    }
}
