//! Linux partitions beyond their bad files: the image a good one loads as (kernel,
//! device tree and initrd where the layout puts them), the device tree read back
//! node by node, and the limits of the `linux` rules at their edges.

mod elf;
mod linux_files;

use std::path::{Path, PathBuf};

use fdt::Fdt;
use fdt::node::FdtNode;
use septum_description::limits::RAM_BASE;
use septum_description::{
    Board, BoardDevice, Image, ImageFile, ImageSource, MemoryRegion, load_images, parse,
};

/// The guest-physical map the device tree must describe, restated from the
/// ABI's `virt` module only where the test reads the tree back.
use septum_core::abi::virt::{
    GICD_BASE, GICD_SIZE, GICR_BASE, GICR_STRIDE, IMAGE_ALIGN, TIMER_PPIS, UART_BASE, UART_SIZE,
    UART_SPI,
};
use septum_core::abi::virtio::{Device, WINDOW_STRIDE};

fn board() -> Board {
    Board::load(Path::new("tests/board")).expect("test board")
}

/// A system of the service VM and Linux partition `lx` with `ram`, `cpus`, and
/// `linux` as written.
fn system_text(ram: &str, cpus: &str, linux: &str) -> String {
    format!(
        "board = \"testboard\"\n\
         [[partition]]\nname = \"service\"\nkind = \"service\"\nimage = \"service-vm\"\nram = \"2M\"\n\
         [[partition]]\nname = \"lx\"\nkind = \"guest\"\nram = \"{ram}\"\ncpus = {cpus}\nlinux = {linux}\n"
    )
}

/// A fresh folder for test `name`'s files.
fn scratch(name: &str) -> PathBuf {
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).expect("scratch folder");
    folder
}

/// The images of `text`, whose files are in `folder` (workspace programs as a
/// good ELF; no defaults).
fn images_of(text: &str, folder: &Path) -> Vec<Image> {
    let board = board();
    let system = parse(&folder.join("linux.toml"), text, &board).unwrap_or_else(|e| panic!("{e}"));
    let locate = |file: ImageFile<'_>| match file {
        ImageFile::Described(path) => folder.join(path),
        ImageFile::Workspace(_) => {
            elf::write(folder, "program");
            folder.join("program")
        }
        other => panic!("no default file in this test: {other:?}"),
    };
    load_images(&system, &board, &locate).unwrap_or_else(|e| panic!("{e}"))
}

fn node<'b, 'a>(tree: &'b Fdt<'a>, path: &str) -> FdtNode<'b, 'a> {
    tree.find_node(path)
        .unwrap_or_else(|| panic!("no node {path}"))
}

fn u32_of(node: FdtNode<'_, '_>, name: &str) -> u32 {
    let value = node.property(name).expect(name).value;
    u32::from_be_bytes(value.try_into().expect("one cell"))
}

fn cells_of(node: FdtNode<'_, '_>, name: &str) -> Vec<u32> {
    let value = node.property(name).expect(name).value;
    value
        .chunks_exact(4)
        .map(|cell| u32::from_be_bytes(cell.try_into().expect("4 bytes")))
        .collect()
}

fn u64s_of(node: FdtNode<'_, '_>, name: &str) -> Vec<u64> {
    let value = node.property(name).expect(name).value;
    value
        .chunks_exact(8)
        .map(|pair| u64::from_be_bytes(pair.try_into().expect("8 bytes")))
        .collect()
}

fn string_of<'a>(node: FdtNode<'_, 'a>, name: &str) -> &'a str {
    node.property(name).and_then(|p| p.as_str()).expect(name)
}

/// A Linux partition with two vCPUs loads as one image: the kernel file at the
/// start, zeros to its `image_size` rounded up to 2 MiB, the device tree there,
/// the initrd at the next page; entered at 0, with the device tree's address as
/// its boot argument. The device tree describes exactly this partition: its RAM,
/// its two vCPUs, the emulated GICv3 with two redistributor frame pairs, the
/// timer, the UART, PSCI through `hvc`, and its command line and initrd.
///
/// Verifies: SK-LNX-002
#[test]
fn a_linux_partition_loads_as_kernel_device_tree_and_initrd_described_by_its_tree() {
    let folder = scratch("linux-good");
    linux_files::write(
        &folder,
        "Image image_size=0x300000 len=8192",
        linux_files::image,
    );
    linux_files::write(&folder, "initrd.cpio len=5000", linux_files::file);
    let (kernel, initrd) = (
        std::fs::read(folder.join("Image")).expect("kernel"),
        std::fs::read(folder.join("initrd.cpio")).expect("initrd"),
    );
    let text = system_text(
        "96M",
        "[0, 1]",
        r#"{ kernel = "Image", initrd = "initrd.cpio", bootargs = "console=ttyAMA0 quiet" }"#,
    );
    let images = images_of(&text, &folder);
    let image = &images[1];
    let parts = image.linux.clone().expect("a Linux image");
    assert_eq!(image.entry_offset, 0);
    assert_eq!(
        parts.device_tree.start,
        IMAGE_ALIGN * 2,
        "0x300000 rounded up"
    );
    assert_eq!(
        parts.initrd.start,
        parts.device_tree.end.next_multiple_of(4096)
    );
    assert_eq!(parts.initrd.end, parts.initrd.start + 5000);
    assert_eq!(
        parts.device_tree_address(),
        RAM_BASE + parts.device_tree.start
    );
    let bytes = &image.bytes;
    assert_eq!(bytes.len() as u64, parts.initrd.end);
    assert_eq!(bytes[..8192], kernel[..]);
    let range = |r: &std::ops::Range<u64>| r.start as usize..r.end as usize;
    assert!(
        bytes[8192..range(&parts.device_tree).start]
            .iter()
            .all(|&b| b == 0)
    );
    assert!(
        bytes[parts.device_tree.end as usize..range(&parts.initrd).start]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(bytes[range(&parts.initrd)], initrd[..]);

    let tree = Fdt::new(&bytes[range(&parts.device_tree)]).expect("a device tree");
    assert_eq!(
        tree.total_size() as u64,
        parts.device_tree.end - parts.device_tree.start
    );
    let root = node(&tree, "/");
    assert_eq!(string_of(root, "compatible"), "linux,dummy-virt");
    assert_eq!(
        (u32_of(root, "#address-cells"), u32_of(root, "#size-cells")),
        (2, 2)
    );
    let gic = node(&tree, "/intc@8000000");
    assert_eq!(u32_of(root, "interrupt-parent"), u32_of(gic, "phandle"));

    let memory = node(&tree, "/memory@40000000");
    assert_eq!(string_of(memory, "device_type"), "memory");
    assert_eq!(u64s_of(memory, "reg"), [RAM_BASE, 96 << 20]);

    let cpus = node(&tree, "/cpus");
    assert_eq!(
        (u32_of(cpus, "#address-cells"), u32_of(cpus, "#size-cells")),
        (1, 0)
    );
    let vcpus: Vec<FdtNode<'_, '_>> = cpus.children().collect();
    assert_eq!(vcpus.len(), 2);
    for (index, cpu) in vcpus.into_iter().enumerate() {
        assert_eq!(cpu.name, format!("cpu@{index}"));
        assert_eq!(string_of(cpu, "device_type"), "cpu");
        assert_eq!(string_of(cpu, "compatible"), "arm,armv8");
        assert_eq!(u32_of(cpu, "reg"), index as u32);
        assert_eq!(string_of(cpu, "enable-method"), "psci");
    }

    let psci = node(&tree, "/psci");
    let versions: Vec<&str> = psci.compatible().expect("compatible").all().collect();
    assert_eq!(versions, ["arm,psci-1.0", "arm,psci-0.2"]);
    assert_eq!(string_of(psci, "method"), "hvc");

    assert_eq!(string_of(gic, "compatible"), "arm,gic-v3");
    assert!(gic.property("interrupt-controller").is_some());
    assert_eq!(u32_of(gic, "#interrupt-cells"), 3);
    assert_eq!(
        u64s_of(gic, "reg"),
        [GICD_BASE, GICD_SIZE, GICR_BASE, 2 * GICR_STRIDE]
    );
    assert_eq!(u32_of(gic, "#redistributor-regions"), 1);
    assert_eq!(gic.children().count(), 0, "no ITS");

    let timer = node(&tree, "/timer");
    assert_eq!(string_of(timer, "compatible"), "arm,armv8-timer");
    let ppis: Vec<u32> = TIMER_PPIS.iter().flat_map(|&ppi| [1, ppi, 4]).collect();
    assert_eq!(cells_of(timer, "interrupts"), ppis);

    let uart = node(&tree, "/pl011@9000000");
    assert_eq!(string_of(uart, "compatible"), "arm,sbsa-uart");
    assert_eq!(u64s_of(uart, "reg"), [UART_BASE, UART_SIZE]);
    assert_eq!(cells_of(uart, "interrupts"), [0, UART_SPI, 4]);
    assert_eq!(u32_of(uart, "current-speed"), 115_200);

    assert!(
        root.children().all(|n| !n.name.starts_with("virtio_mmio")),
        "no virtio device without the `virtio` key"
    );

    let chosen = node(&tree, "/chosen");
    assert_eq!(string_of(chosen, "bootargs"), "console=ttyAMA0 quiet");
    assert_eq!(string_of(chosen, "stdout-path"), "/pl011@9000000");
    assert_eq!(
        u64s_of(chosen, "linux,initrd-start")[0],
        RAM_BASE + parts.initrd.start
    );
    assert_eq!(
        u64s_of(chosen, "linux,initrd-end")[0],
        RAM_BASE + parts.initrd.end
    );
}

/// Each virtio device of a Linux partition is a `virtio,mmio` node at its
/// window, in slot order whatever order `virtio` lists them in: `reg` its window
/// (two cells each), `interrupts` its SPI level-high, and `dma-coherent`.
///
/// Verifies: SK-LNX-002
#[test]
fn the_device_tree_has_a_virtio_mmio_node_per_virtio_device() {
    let folder = scratch("linux-virtio");
    linux_files::write(&folder, "Image image_size=0x200000", linux_files::image);
    linux_files::write(&folder, "initrd len=10", linux_files::file);
    let text = format!(
        "{}memory = {{ min = \"32M\", max = \"64M\" }}\nvirtio = [\"console\", \"balloon\"]\n",
        system_text("64M", "[0]", r#"{ kernel = "Image", initrd = "initrd" }"#)
    );
    let images = images_of(&text, &folder);
    let parts = images[1].linux.clone().expect("a Linux image");
    let range = parts.device_tree.start as usize..parts.device_tree.end as usize;
    let tree = Fdt::new(&images[1].bytes[range]).expect("a device tree");
    let virtio: Vec<&str> = node(&tree, "/")
        .children()
        .map(|n| n.name)
        .filter(|name| name.starts_with("virtio_mmio"))
        .collect();
    assert_eq!(virtio, ["virtio_mmio@a000000", "virtio_mmio@a000200"]);
    for (device, path) in [
        (Device::Balloon, "/virtio_mmio@a000000"),
        (Device::Console, "/virtio_mmio@a000200"),
    ] {
        let virtio = node(&tree, path);
        assert_eq!(string_of(virtio, "compatible"), "virtio,mmio");
        assert_eq!(u64s_of(virtio, "reg"), [device.window(), WINDOW_STRIDE]);
        assert_eq!(cells_of(virtio, "interrupts"), [0, device.spi(), 4]);
        let coherent = virtio.property("dma-coherent").expect("dma-coherent");
        assert!(coherent.value.is_empty());
    }
    assert_eq!(
        [Device::Balloon.spi() + 32, Device::Console.spi() + 32],
        [48, 49],
        "INTIDs 48 and 49"
    );
}

/// Without `bootargs`, the command line puts the console on the emulated UART,
/// from the first instruction on (`earlycon` at its address).
///
/// Verifies: SK-LNX-002
#[test]
fn the_default_command_line_names_the_emulated_uart() {
    let board = board();
    let text = system_text("64M", "[0]", "{}");
    let system = parse(Path::new("inline.toml"), &text, &board).unwrap_or_else(|e| panic!("{e}"));
    let ImageSource::Linux(boot) = &system.partitions[1].image else {
        panic!("a Linux partition");
    };
    assert_eq!((boot.kernel.as_ref(), boot.initrd.as_ref()), (None, None));
    assert_eq!(
        boot.bootargs,
        "console=ttyAMA0 earlycon=pl011,0x9000000 panic=-1 nokaslr cryptomgr.notests"
    );
}

/// The rules' edges: 64 MiB and a 2,047-byte command line pass, a byte more of
/// command line fails; a device over vCPU 1's redistributor frames is refused
/// for a partition with two vCPUs but not for one with one.
///
/// Verifies: SK-LNX-001
#[test]
fn the_linux_rules_hold_at_their_edges() {
    let mut board = board();
    board.devices.push(BoardDevice {
        name: "near-gic".into(),
        mmio: vec![MemoryRegion {
            base: GICR_BASE + GICR_STRIDE,
            size: 0x1000,
        }],
        irqs: Vec::new(),
        ports: Vec::new(),
    });
    let errors = |ram: &str, cpus: &str, linux: &str, devices: &str| -> Vec<String> {
        let text = format!("{}devices = {devices}\n", system_text(ram, cpus, linux));
        match parse(Path::new("edge.toml"), &text, &board) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
        }
    };
    let longest = format!("{{ bootargs = \"{}\" }}", "x".repeat(2047));
    assert_eq!(errors("64M", "[0]", &longest, "[]"), Vec::<String>::new());
    let longer = format!("{{ bootargs = \"{}\" }}", "x".repeat(2048));
    assert_eq!(
        errors("64M", "[0]", &longer, "[]"),
        [
            "edge.toml:12:22: error[linux]: the bootargs of `lx` are 2048 bytes; Linux takes at most 2047"
        ]
    );
    assert_eq!(
        errors("64M", "[0]", "{}", "[\"near-gic\"]"),
        Vec::<String>::new()
    );
    assert_eq!(
        errors("64M", "[0, 1]", "{}", "[\"near-gic\"]"),
        [
            "edge.toml:13:12: error[linux-devices]: device `near-gic` (0x80c0000..0x80c1000) overlaps the emulated GIC redistributors (0x80a0000..0x80e0000) of Linux partition `lx`"
        ]
    );
}

/// A system of the service VM as the uplink (10.0.0.1/24, `uplink` given) and
/// the Linux partitions `lx` (10.0.0.2/24, the `linux` key as written) and
/// `far` (`far_address`, in 10.0.1.0/24), each with a port.
fn network_text(uplink: bool, linux: &str, far_address: &str) -> String {
    let uplink = match uplink {
        true => "devices = [\"nic\"]\nnet = { address = \"10.0.0.1/24\", uplink = true }\n",
        false => "net = { address = \"10.0.0.1/24\" }\n",
    };
    format!(
        "board = \"testboard\"\nsubnets = [\"10.0.0.0/24\", \"10.0.1.0/24\"]\n\
         [[partition]]\nname = \"service\"\nkind = \"service\"\nimage = \"service-vm\"\nram = \"2M\"\n{uplink}\
         [[partition]]\nname = \"lx\"\nkind = \"guest\"\nram = \"64M\"\nlinux = {linux}\n\
         net = {{ address = \"10.0.0.2/24\" }}\n\
         [[partition]]\nname = \"far\"\nkind = \"guest\"\nram = \"64M\"\nlinux = {{}}\n\
         net = {{ address = \"{far_address}\" }}\n"
    )
}

/// The command line of each Linux partition of `text`, by name.
fn command_lines(text: &str) -> Vec<(String, String)> {
    let system = parse(Path::new("net.toml"), text, &board()).unwrap_or_else(|e| panic!("{e}"));
    system
        .partitions
        .iter()
        .filter_map(|p| match &p.image {
            ImageSource::Linux(boot) => Some((p.name.clone(), boot.bootargs.clone())),
            _ => None,
        })
        .collect()
}

/// A network port is the partition's virtio-net device: a `virtio,mmio` node at
/// slot 2's window (0x0a00_0400, SPI 18: INTID 50) beside those `virtio` lists.
///
/// Verifies: SK-LNX-011
#[test]
fn a_network_port_is_a_virtio_mmio_node_at_slot_2() {
    let folder = scratch("linux-net");
    linux_files::write(&folder, "Image image_size=0x200000", linux_files::image);
    linux_files::write(&folder, "initrd len=10", linux_files::file);
    let linux = r#"{ kernel = "Image", initrd = "initrd" }"#;
    let text = format!(
        "{}virtio = [\"console\"]\n",
        network_text(false, linux, "10.0.1.2/24")
            .replace("linux = {}", &format!("linux = {linux}"))
    );
    let images = images_of(&text, &folder);
    let parts = images[2].linux.clone().expect("a Linux image");
    let range = parts.device_tree.start as usize..parts.device_tree.end as usize;
    let tree = Fdt::new(&images[2].bytes[range]).expect("a device tree");
    let virtio: Vec<&str> = node(&tree, "/")
        .children()
        .map(|n| n.name)
        .filter(|name| name.starts_with("virtio_mmio"))
        .collect();
    assert_eq!(virtio, ["virtio_mmio@a000200", "virtio_mmio@a000400"]);
    let net = node(&tree, "/virtio_mmio@a000400");
    assert_eq!(string_of(net, "compatible"), "virtio,mmio");
    assert_eq!(u64s_of(net, "reg"), [0x0a00_0400, WINDOW_STRIDE]);
    assert_eq!(cells_of(net, "interrupts"), [0, 18, 4]);
    assert_eq!(Device::Net.spi() + 32, 50, "INTID 50");
    assert!(net.property("dma-coherent").is_some());
}

/// A Linux partition with a port finds its address on its command line
/// (`septum.ip=a.b.c.d/n`, after its own `bootargs`) and, when the system has
/// an uplink, its gateway (`septum.gw=`): the uplink's address in the uplink's
/// subnet, else the lowest host address of its own subnet that is not its own
/// (the router answers ARP for it and routes by destination). The `linux`
/// rule's limit counts the command line with them.
///
/// Verifies: SK-LNX-011
#[test]
fn a_network_port_puts_its_address_and_gateway_on_the_command_line() {
    let own = r#"{ bootargs = "console=ttyAMA0" }"#;
    let default = "console=ttyAMA0 earlycon=pl011,0x9000000 panic=-1 nokaslr cryptomgr.notests";
    assert_eq!(
        command_lines(&network_text(true, own, "10.0.1.5/24")),
        [
            (
                "lx".into(),
                "console=ttyAMA0 septum.ip=10.0.0.2/24 septum.gw=10.0.0.1".into()
            ),
            (
                "far".into(),
                format!("{default} septum.ip=10.0.1.5/24 septum.gw=10.0.1.1")
            ),
        ]
    );
    let far_first = command_lines(&network_text(true, own, "10.0.1.1/24"));
    assert_eq!(
        far_first[1].1,
        format!("{default} septum.ip=10.0.1.1/24 septum.gw=10.0.1.2")
    );
    let without_uplink = command_lines(&network_text(false, own, "10.0.1.1/24"));
    assert_eq!(
        without_uplink,
        [
            ("lx".into(), "console=ttyAMA0 septum.ip=10.0.0.2/24".into()),
            ("far".into(), format!("{default} septum.ip=10.0.1.1/24")),
        ]
    );

    let added = " septum.ip=10.0.0.2/24 septum.gw=10.0.0.1".len();
    let longest = format!("{{ bootargs = \"{}\" }}", "x".repeat(2047 - added));
    let text = network_text(true, &longest, "10.0.1.5/24");
    assert!(parse(Path::new("net.toml"), &text, &board()).is_ok());
    let longer = format!("{{ bootargs = \"{}\" }}", "x".repeat(2048 - added));
    let text = network_text(true, &longer, "10.0.1.5/24");
    let errors = parse(Path::new("net.toml"), &text, &board()).expect_err("too long");
    let messages: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "net.toml:14:22: error[linux]: the bootargs of `lx` are 2048 bytes; Linux takes at most 2047"
        ]
    );
}
