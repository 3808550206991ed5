//! Boots every scenario of `tests/scenarios/` on its emulator (QEMU for `qemu-virt`,
//! Bochs with VT-x for `pc`, QEMU with UEFI or BIOS firmware for a `pc` scenario
//! that names one) and checks its console. Each scenario is one test, so a
//! failure names it and prints the console.

use septum::scenario::Scenario;

fn run(name: &str) {
    let scenario = Scenario::load(name).expect("scenario file");
    let outcome = scenario.run().expect("scenario could not be run");
    assert!(
        outcome.failures.is_empty(),
        "scenario `{name}` failed:\n{}\n--- console ---\n{}",
        outcome.failures.join("\n"),
        outcome.console
    );
}

macro_rules! scenarios {
    ($($board:ident { $($test:ident => $file:literal),* $(,)? })*) => {
        $(
            mod $board {
                $( #[test] fn $test() { super::run($file) } )*
            }
        )*

        /// Every scenario file has a test here, so none is skipped silently.
        /// Verifies: SK-AUD-003
        #[test]
        fn every_scenario_file_is_run() {
            let listed = [$($($file),*),*];
            let dir = septum::from_root("tests/scenarios");
            for entry in std::fs::read_dir(&dir).expect("tests/scenarios") {
                let path = entry.expect("directory entry").path();
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                Scenario::load(stem).expect("scenario parses");
                assert!(listed.contains(&stem), "scenario `{stem}` has no test in {}", file!());
            }
        }
    };
}

scenarios! {
    rpi4 {
        rpi4_demo => "rpi4-demo",
        rpi4_supervise_restart => "rpi4-supervise-restart",
        rpi4_windows => "rpi4-windows",
        rpi4_smp => "rpi4-smp",
        bench_rpi4 => "bench-rpi4",
        rpi4_irq => "rpi4-irq",
        inject_rpi4 => "inject-rpi4",
    }
    qemu_virt {
        demo => "demo",
        demo_live => "demo-live",
        kernel_trace => "kernel-trace",
        balloon_reclaim => "balloon-reclaim",
        balloon_stubborn => "balloon-stubborn",
        balloon_hostile => "balloon-hostile",
        balloon_bench => "balloon-bench-aarch64",
        balloon_move => "balloon-move-aarch64",
        ram_512m => "ram-512m",
        ram_2g => "ram-2g",
        fault_wild_write => "fault-wild-write",
        fault_jump => "fault-jump",
        fault_undefined => "fault-undefined",
        fault_sysreg => "fault-sysreg",
        fault_smc => "fault-smc",
        fault_aarch32 => "fault-aarch32",
        hostile_args => "hostile-args",
        devices => "devices",
        preemption => "preemption",
        windows => "windows",
        windows_null => "windows-null",
        top_counters => "top-counters",
        smp => "smp",
        cross_core_idle => "cross-core-idle",
        vcpus_2 => "vcpus-2",
        vcpus_shared_core => "vcpus-shared-core",
        scale_64 => "scale-64",
        boot_2 => "boot-2",
        boot_8 => "boot-8",
        stack_overflow => "stack-overflow",
        table_corruption => "table-corruption",
        bench_8 => "bench-8-aarch64",
        bench_64 => "bench-64-aarch64",
        fuzz => "fuzz",
        irq => "irq",
        irq_masked => "irq-masked",
        irq_priority => "irq-priority",
        inject_virt => "inject-virt",
        devirt_cycle => "devirt-cycle",
        devirt_refused => "devirt-refused",
        devirt_native_fault => "devirt-native-fault",
        bench_devirt => "bench-devirt-aarch64",
        hostile => "hostile",
        leak => "leak",
        bench_runs => "bench-aarch64",
        bench_2cpu_runs => "bench-2cpu-aarch64",
        bench_queue_runs => "bench-queue-aarch64",
        bench_linux => "bench-linux-aarch64",
        bench_linux_quiet => "bench-linux-quiet-aarch64",
        bench_linux_balloon => "bench-linux-balloon-aarch64",
        bench_linux_net => "bench-linux-net-aarch64",
        linux_boot => "linux-boot",
        linux_balloon => "linux-balloon",
        linux_console => "linux-console",
        linux_balloon_reclaim => "linux-balloon-reclaim",
        linux_smp => "linux-smp",
        linux_crash => "linux-crash",
        linux_poweroff => "linux-poweroff",
        linux_isolation => "linux-isolation",
        net_linux_pair => "net-linux-pair",
        net_bystander => "net-bystander",
        vgic_emulated => "vgic-emulated",
        mmio_fuzz => "mmio-fuzz",
        supervise_trap => "supervise-trap",
        supervise_restart => "supervise-restart",
        supervise_watchdog => "supervise-watchdog",
        supervise_budget => "supervise-budget",
        service_crash => "service-crash",
        policy_tighten => "policy-tighten",
        service_console => "service-console",
        stream => "stream",
        stream_batched => "stream-batched",
        stream_smp => "stream-smp",
        stream_sender_fault => "stream-sender-fault",
        stream_peer_ended => "stream-peer-ended",
        stream_bad_input => "stream-bad-input",
        stream_restart_producer => "stream-restart-producer",
        stream_restart_consumer => "stream-restart-consumer",
        steer_restarted_code => "steer-restarted-code",
        time_flood => "time-flood",
        time_traps => "time-traps",
        time_restarts => "time-restarts",
        time_balloon => "time-balloon",
        virtio_hostile => "virtio-hostile",
        virtio_balloon => "virtio-balloon",
        virtio_bench => "virtio-bench-aarch64",
        net_native => "net-native",
        net_hostile => "net-hostile",
        net_uplink => "net-uplink",
        net_bench => "bench-net-aarch64",
    }
    pc {
        pc_kernel_trace => "pc-kernel-trace",
        demo => "pc-demo",
        demo_live => "pc-demo-live",
        balloon_reclaim => "pc-balloon-reclaim",
        balloon_stubborn => "pc-balloon-stubborn",
        balloon_hostile => "pc-balloon-hostile",
        balloon_bench => "balloon-bench-x86_64",
        balloon_move => "balloon-move-x86_64",
        fault_wild_write => "pc-fault-wild-write",
        fault_jump => "pc-fault-jump",
        fault_undefined => "pc-fault-undefined",
        fault_msr => "pc-fault-msr",
        fault_io_port => "pc-fault-io-port",
        hostile_args => "pc-hostile-args",
        preemption => "pc-preemption",
        devices => "pc-devices",
        windows => "pc-windows",
        windows_null => "pc-windows-null",
        top_counters => "pc-top-counters",
        smp => "pc-smp",
        vcpus_2 => "pc-vcpus-2",
        vcpus_shared_core => "pc-vcpus-shared-core",
        scale => "pc-scale",
        stack_overflow => "pc-stack-overflow",
        table_corruption => "pc-table-corruption",
        bench_8 => "bench-8-x86_64",
        bench_64 => "bench-64-x86_64",
        hostile => "pc-hostile",
        leak => "pc-leak",
        fuzz => "pc-fuzz",
        irq => "pc-irq",
        irq_masked => "pc-irq-masked",
        irq_priority => "pc-irq-priority",
        x2apic_handoff => "pc-x2apic-handoff",
        bench_runs => "bench-x86_64",
        bench_2cpu_runs => "bench-2cpu-x86_64",
        bench_queue_runs => "bench-queue-x86_64",
        devirt_cycle => "pc-devirt-cycle",
        devirt_refused => "pc-devirt-refused",
        devirt_native_fault => "pc-devirt-native-fault",
        bench_devirt => "bench-devirt-x86_64",
        supervise_trap => "pc-supervise-trap",
        supervise_restart => "pc-supervise-restart",
        supervise_watchdog => "pc-supervise-watchdog",
        supervise_budget => "pc-supervise-budget",
        service_crash => "pc-service-crash",
        policy_tighten => "pc-policy-tighten",
        service_console => "pc-service-console",
        stream => "pc-stream",
        stream_batched => "pc-stream-batched",
        cross_core_idle => "pc-cross-core-idle",
        stream_smp => "pc-stream-smp",
        stream_sender_fault => "pc-stream-sender-fault",
        stream_peer_ended => "pc-stream-peer-ended",
        stream_bad_input => "pc-stream-bad-input",
        stream_restart_producer => "pc-stream-restart-producer",
        stream_restart_consumer => "pc-stream-restart-consumer",
        steer_restarted_code => "pc-steer-restarted-code",
        time_flood => "pc-time-flood",
        time_traps => "pc-time-traps",
        time_restarts => "pc-time-restarts",
        time_balloon => "pc-time-balloon",
        virtio_hostile => "pc-virtio-hostile",
        virtio_balloon => "pc-virtio-balloon",
        virtio_bench => "virtio-bench-x86_64",
        net_native => "pc-net-native",
        net_hostile => "pc-net-hostile",
        net_bench => "bench-net-x86_64",
        uefi_boot => "pc-uefi-boot",
        bios_usb_boot => "pc-bios-usb-boot",
        no_ept => "pc-no-ept",
        no_tsc_deadline => "pc-no-tsc-deadline",
    }
}
