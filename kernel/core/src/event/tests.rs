//! The console lines of the events, against the vocabulary the README documents.

use super::*;

/// Verifies: SK-AUD-001
#[test]
fn lines_match_the_documented_vocabulary() {
    let relocation = |step, first, pages| Event::PartitionRelocation {
        name: "os",
        step,
        first,
        pages,
        retried: 3,
        native_faults: 0,
        native_preemptions: 2,
        us: 70,
    };
    use septum_abi::audit::Relocation as Step;
    let cases: [(Event, &str); 28] = [
        (
            relocation(Step::Virtualized, 0, 0),
            "@@ partition os virtualized native-faults=0 preempted=2",
        ),
        (
            relocation(Step::EvacuationBegun, 0x4000_0000, 256),
            "@@ partition os evacuate first=0x40000000 pages=256",
        ),
        (
            relocation(Step::Evacuated, 0x4000_0000, 256),
            "@@ partition os evacuated first=0x40000000 pages=256 retried=3 us=70",
        ),
        (
            relocation(Step::DevirtualizationBegun, 0, 0),
            "@@ partition os devirtualize",
        ),
        (
            relocation(Step::Devirtualized, 0, 256),
            "@@ partition os devirtualized moved=256 retried=3 us=70",
        ),
        (
            Event::KernelBoot {
                arch: "aarch64",
                board: "qemu-virt",
                ram: 1 << 30,
                cpus: 1,
            },
            "@@ kernel boot arch=aarch64 board=qemu-virt ram=1073741824 cpus=1",
        ),
        (
            Event::PartitionStart {
                name: "hello",
                generation: 1,
                cpu: 0,
            },
            "@@ partition hello start gen=1 cpu=0",
        ),
        (
            Event::PartitionFault {
                name: "bad",
                fault: Fault::new(Reason::Stage2Data, 0x8000_0000, 0x9200_0046),
                generation: 2,
                response: Response::Suspend,
                vcpu: 1,
            },
            "@@ partition bad fault reason=stage2-data addr=0x80000000 syndrome=0x92000046 gen=2 action=suspend vcpu=1",
        ),
        (
            Event::VcpuLeft {
                name: "pair",
                vcpu: 0,
                cpu: 1,
                state: PartitionState::Suspended,
            },
            "@@ partition pair vcpu 0 left cpu=1 state=suspended",
        ),
        (
            Event::VcpuStart {
                name: "pair",
                vcpu: 1,
                generation: 2,
                cpu: 3,
            },
            "@@ partition pair vcpu 1 start gen=2 cpu=3",
        ),
        (
            Event::NetCounters {
                name: "alpha",
                counters: septum_abi::net::Counters {
                    address: septum_abi::net::Address::parse("10.0.0.2/24")
                        .unwrap()
                        .to_word(),
                    sent: 9,
                    routed: 4,
                    arp: 1,
                    dropped: [0, 2, 0, 1, 0, 1],
                    received: 5,
                    missed: 3,
                    ..Default::default()
                },
            },
            "@@ net alpha address=10.0.0.2/24 sent=9 routed=4 arp=1 received=5 missed=3 dropped=4 malformed=2 spoofed=1 no-buffer=1",
        ),
        (
            Event::KernelShutdown {
                clean: true,
                code: 0,
            },
            "@@ kernel shutdown status=ok code=0",
        ),
        (
            Event::HypercallDenied {
                name: "g",
                call: 5,
                error: septum_abi::Error::Denied,
            },
            "@@ partition g denied call=5 error=denied",
        ),
        (
            Event::KernelState {
                used: 7456,
                reserved: 90112,
            },
            "@@ kernel state bytes=7456 reserved=90112",
        ),
        (
            Event::KernelRunning {
                partitions: 64,
                us: 13175,
            },
            "@@ kernel running partitions=64 us=13175",
        ),
        (
            Event::KernelApicHandoff {
                found: "x2apic",
                mode: "x2apic",
            },
            "@@ kernel apic found=x2apic mode=x2apic",
        ),
        (
            Event::KernelSelfTest {
                name: "stack-overflow",
            },
            "@@ kernel self-test stack-overflow",
        ),
        (
            Event::KernelTablesChecked {
                partitions: 5,
                leaves: 1200,
            },
            "@@ kernel tables checked partitions=5 leaves=1200",
        ),
        (
            Event::PartitionTablesWrong {
                name: "hello",
                report: "stray guest=0x1000 level=3 entry=0x4a0004c7",
            },
            "@@ partition hello tables stray guest=0x1000 level=3 entry=0x4a0004c7",
        ),
        (
            Event::KernelStackOverflow {
                cpu: 1,
                stack: KernelStack::Trap,
                guard: 0x4024_c000,
                pc: 0x4022_4ed4,
            },
            "@@ kernel stack-overflow cpu=1 stack=trap guard=0x4024c000 pc=0x40224ed4",
        ),
        (
            Event::KernelStackOverflow {
                cpu: 0,
                stack: KernelStack::Boot,
                guard: 0x4020_0000,
                pc: 0x4008_0010,
            },
            "@@ kernel stack-overflow cpu=0 stack=boot guard=0x40200000 pc=0x40080010",
        ),
        (
            Event::KernelSystem { partitions: 5 },
            "@@ kernel system partitions=5",
        ),
        (
            Event::PartitionPlaced {
                name: "service",
                base: 0x4040_0000,
                size: 0x20_0000,
            },
            "@@ partition service placed base=0x40400000 size=0x200000",
        ),
        (Event::KernelCpuUp { cpu: 1 }, "@@ kernel cpu 1 up"),
        (
            Event::PartitionConsoleDropped {
                name: "chatty",
                lines: 3,
            },
            "@@ partition chatty console dropped=3",
        ),
        (
            Event::KernelConsoleDropped { lines: 2 },
            "@@ kernel console dropped=2",
        ),
        (
            Event::KernelLocks {
                cpu: 1,
                taken: 40,
                contended: 2,
            },
            "@@ kernel locks cpu=1 taken=40 contended=2",
        ),
        (Event::KernelPanic, "@@ kernel panic"),
    ];
    for (event, line) in cases {
        assert_eq!(event.to_string(), line);
    }
}
