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

/// The archive holds busybox, `/init`, the console node and the folders
/// `/init` needs, each with its type and permissions; `/init` is the script,
/// which prints the line tests wait for.
///
/// Verifies: SK-LNX-009
#[test]
fn the_initramfs_holds_busybox_init_and_the_console() {
    let busybox = b"\x7fELF not really busybox".to_vec();
    let entries = read(&build(&busybox));
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for folder in [
        "bin", "dev", "proc", "sbin", "sys", "usr", "usr/bin", "usr/sbin",
    ] {
        assert_eq!(find(folder).mode, 0o040_755, "{folder}");
    }
    assert_eq!(find("tmp").mode, 0o041_777);
    let console = find("dev/console");
    assert_eq!((console.mode, console.device), (0o020_600, (5, 1)));
    let binary = find("bin/busybox");
    assert_eq!((binary.mode, &binary.data), (0o100_755, &busybox));
    let init = find("init");
    assert_eq!(init.mode, 0o100_755);
    let script = String::from_utf8(init.data.clone()).expect("text");
    assert_eq!(script, init_script());
    assert!(script.starts_with("#!/bin/busybox sh\n"));
    assert!(script.contains(&format!(
        "echo \"{INIT_UP} ($(grep -m1 'now at' /proc/timer_list))\""
    )));
    assert!(script.ends_with("exec setsid cttyhack sh\n"));
    assert_eq!(entries.len(), 12);
    // Every folder comes before what it holds.
    for (index, entry) in entries.iter().enumerate() {
        if let Some((parent, _)) = entry.name.rsplit_once('/') {
            let parent_at = entries.iter().position(|e| e.name == parent);
            assert!(parent_at.is_some_and(|p| p < index), "{}", entry.name);
        }
    }
}
