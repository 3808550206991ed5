//! The initramfs read back by a small `newc` reader of the test's own.

use super::*;

/// One entry of a `newc` archive.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    mode: u32,
    device: (u32, u32),
    data: Vec<u8>,
}

/// The entries of `archive` up to its trailer, checking the magic, the 4-byte
/// alignment of every header and data, and that nothing follows the trailer.
fn read(archive: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        assert_eq!(at % 4, 0, "headers start on 4 bytes");
        let header = &archive[at..at + 110];
        assert_eq!(&header[..6], NEWC_MAGIC.as_bytes());
        let field = |index: usize| {
            let hex = std::str::from_utf8(&header[6 + 8 * index..14 + 8 * index]).expect("hex");
            u32::from_str_radix(hex, 16).expect("a hex field")
        };
        let (mode, size, name_size) = (field(1), field(6) as usize, field(11) as usize);
        let name_at = at + 110;
        let name = &archive[name_at..name_at + name_size];
        assert_eq!(name.last(), Some(&0), "names end in NUL");
        let name = String::from_utf8(name[..name_size - 1].to_vec()).expect("a name");
        let data_at = (name_at + name_size).next_multiple_of(4);
        let data = archive[data_at..data_at + size].to_vec();
        at = (data_at + size).next_multiple_of(4);
        if name == TRAILER {
            assert_eq!(at, archive.len(), "nothing after the trailer");
            return entries;
        }
        assert_eq!(field(0) as usize, entries.len() + 1, "inodes count from 1");
        entries.push(Entry {
            name,
            mode,
            device: (field(9), field(10)),
            data,
        });
    }
}

/// A module named `name` whose bytes say so.
fn module(name: &str) -> Module {
    Module {
        name: name.into(),
        bytes: format!("\x7fELF module {name}").into_bytes(),
    }
}

/// The archive holds busybox, `/init`, the console node, the modules and the
/// folders `/init` needs, each with its type and permissions; `/init` is the
/// script, which prints the line tests wait for.
///
/// Verifies: SK-LNX-009
#[test]
fn the_initramfs_holds_busybox_init_the_console_and_the_modules() {
    let busybox = b"\x7fELF not really busybox".to_vec();
    let modules = [module("virtio_mmio"), module("virtio_console")];
    let entries = read(&build(&busybox, &modules));
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for folder in [
        "bin",
        "dev",
        "lib",
        "lib/modules",
        "proc",
        "sbin",
        "sys",
        "usr",
        "usr/bin",
        "usr/sbin",
    ] {
        assert_eq!(find(folder).mode, 0o040_755, "{folder}");
    }
    assert_eq!(find("tmp").mode, 0o041_777);
    let console = find("dev/console");
    assert_eq!((console.mode, console.device), (0o020_600, (5, 1)));
    let binary = find("bin/busybox");
    assert_eq!((binary.mode, &binary.data), (0o100_755, &busybox));
    for module in &modules {
        let file = find(&format!("lib/modules/{}.ko", module.name));
        assert_eq!((file.mode, &file.data), (0o100_644, &module.bytes));
    }
    let init = find("init");
    assert_eq!(init.mode, 0o100_755);
    let script = String::from_utf8(init.data.clone()).expect("text");
    assert_eq!(script, init_script(&["virtio_mmio", "virtio_console"]));
    assert!(script.starts_with("#!/bin/busybox sh\n"));
    assert!(script.contains(&format!(
        "echo \"{INIT_UP} ($(grep -m1 'now at' /proc/timer_list))\""
    )));
    assert!(script.ends_with("exec setsid cttyhack sh\n"));
    assert_eq!(entries.len(), 16);
    // Every folder comes before what it holds.
    for (index, entry) in entries.iter().enumerate() {
        if let Some((parent, _)) = entry.name.rsplit_once('/') {
            let parent_at = entries.iter().position(|e| e.name == parent);
            assert!(parent_at.is_some_and(|p| p < index), "{}", entry.name);
        }
    }
}

/// `/init` loads the modules after mounting devtmpfs and before it says it is
/// up, each after those it depends on (`failover`, `net_failover`,
/// `virtio_net`), then the virtio transport and drivers, then any other by
/// name; the archive holds them in that order whatever order they came in, so
/// it is the same for the same files. Without modules it loads none.
///
/// Verifies: SK-LNX-009
#[test]
fn init_loads_the_modules_in_dependency_order_before_it_is_up() {
    let names = [
        "virtio_console",
        "zz_extra",
        "virtio_net",
        "failover",
        "virtio_balloon",
        "aa_extra",
        "net_failover",
        "virtio_mmio",
    ];
    let modules: Vec<Module> = names.iter().map(|n| module(n)).collect();
    let archive = build(b"busybox", &modules);
    let mut reversed: Vec<Module> = names.iter().rev().map(|n| module(n)).collect();
    assert_eq!(build(b"busybox", &reversed), archive, "deterministic");
    reversed.pop();
    assert_ne!(build(b"busybox", &reversed), archive);

    let entries = read(&archive);
    let files: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.name.strip_prefix("lib/modules/"))
        .collect();
    let order = [
        "failover",
        "net_failover",
        "virtio_net",
        "virtio_mmio",
        "virtio_balloon",
        "virtio_console",
        "aa_extra",
        "zz_extra",
    ];
    let ko: Vec<String> = order.iter().map(|n| format!("{n}.ko")).collect();
    assert_eq!(files, ko);
    let init = entries.iter().find(|e| e.name == "init").expect("init");
    let script = String::from_utf8(init.data.clone()).expect("text");
    let lines: Vec<&str> = script.lines().collect();
    let insmods: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("insmod /lib/modules/"))
        .collect();
    assert_eq!(insmods, ko);
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}"))
    };
    assert!(at("mount -t devtmpfs") < at("insmod "));
    assert!(at("insmod /lib/modules/zz_extra.ko") < at(&format!("echo \"{INIT_UP}")));

    let bare = init_script(&[]);
    assert!(!bare.contains("insmod"));
    assert!(bare.contains(INIT_UP));
}

/// After it is up, `/init` waits in the background, polling, up to a second for
/// the virtio console's `/dev/hvc0`; if it comes, it says so there and starts a
/// second shell in its own session with stdin, stdout and stderr on it, while
/// the console's shell starts at once as before.
///
/// Verifies: SK-LNX-009
#[test]
fn init_starts_a_second_shell_on_hvc0_if_it_comes() {
    let script = init_script(&["virtio_console"]);
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no line {line}"))
    };
    let up = lines
        .iter()
        .position(|l| l.starts_with(&format!("echo \"{INIT_UP}")))
        .expect("the up line");
    let wait =
        at("for i in 1 2 3 4 5 6 7 8 9 10; do [ -c /dev/hvc0 ] && break; usleep 100000; done");
    let says = at(&format!("echo \"{HVC_SHELL}\" > /dev/hvc0"));
    let shell = at("setsid sh -c 'exec sh < /dev/hvc0 > /dev/hvc0 2>&1'");
    let background = at(") &");
    let console = at("exec setsid cttyhack sh");
    assert!(up < at("(") && at("(") < wait);
    assert!(wait < at("if [ -c /dev/hvc0 ]; then") && says < shell && shell < background);
    assert_eq!(console, lines.len() - 1);
    assert!(background < console);
}

/// After it is up, and before either shell, `/init` runs the balloon
/// benchmark, which powers the guest off, if the kernel's command line names
/// it; otherwise the benchmark's function is defined and never called.
///
/// Verifies: SK-LNX-009
#[test]
fn init_runs_the_balloon_benchmark_only_when_the_command_line_asks() {
    use crate::linux::balloon_bench::PARAMETER;
    let script = init_script(&[]);
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix}"))
    };
    let up = at(&format!("echo \"{INIT_UP}"));
    let function = at("balloon_bench() {");
    let call = at(&format!(
        "case $word in {PARAMETER}=*) balloon_bench ${{word#*=}} ;; esac"
    ));
    assert!(up < function && function < at("poweroff -f") && at("poweroff -f") < call);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("balloon_bench "))
            .count(),
        1
    );
    assert!(at("for word in $(cat /proc/cmdline); do") < call);
    assert!(call < at("(") && call < at("exec setsid cttyhack sh"));
}

/// After it is up, and before the balloon benchmark and either shell, `/init`
/// brings the loopback interface up and reads the partition's address and
/// gateway from the command line (the parameters the description writes);
/// with an address and an `eth0`, it turns IPv6 off there, gives `eth0` the
/// address, brings it up, adds the default route through the gateway if there
/// is one, and says so.
///
/// Verifies: SK-LNX-011
#[test]
fn init_brings_eth0_up_from_the_command_line() {
    use septum_description::{GATEWAY_PARAMETER, IP_PARAMETER};
    let script = init_script(&["virtio_net"]);
    let lines: Vec<&str> = script.lines().map(str::trim).collect();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no line {line}"))
    };
    let up = lines
        .iter()
        .position(|l| l.starts_with(&format!("echo \"{INIT_UP}")))
        .expect("the up line");
    let lo = at("ip link set lo up");
    let address = at(&format!("{IP_PARAMETER}=*) address=${{word#*=}} ;;"));
    let gateway = at(&format!("{GATEWAY_PARAMETER}=*) gateway=${{word#*=}} ;;"));
    let only_with_eth0 = at("if [ -n \"$address\" ] && [ -d /sys/class/net/eth0 ]; then");
    let no_ipv6 = at("[ -w $ipv6 ] && echo 1 > $ipv6");
    let add = at("ip addr add $address dev eth0");
    let link = at("ip link set eth0 up");
    let route = at("[ -n \"$gateway\" ] && ip route add default via $gateway");
    let says = at(&format!(
        "echo \"{ETH0_UP} $address${{gateway:+ via $gateway}}\""
    ));
    assert!(up < lo && lo < address && address < gateway && gateway < only_with_eth0);
    assert!(only_with_eth0 < no_ipv6 && no_ipv6 < add && add < link && link < route);
    assert!(route < says && says < at("fi"));
    assert!(says < at("balloon_bench() {") && says < at("exec setsid cttyhack sh"));
    assert_eq!(
        (IP_PARAMETER, GATEWAY_PARAMETER),
        ("septum.ip", "septum.gw")
    );
}
