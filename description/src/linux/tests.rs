//! The layout of a Linux partition's image, on its own.

use super::*;

/// The device tree starts at the kernel's `image_size` rounded up to 2 MiB
/// (exactly there when it is a multiple), the initrd at the page after the
/// device tree's end; a layout past 64 bits is refused, not wrapped.
///
/// Verifies: SK-LNX-002
#[test]
fn the_layout_aligns_the_device_tree_to_2_mib_and_the_initrd_to_a_page() {
    let parts = LinuxParts::lay_out(0x201_0000, 1227, 100).expect("fits 64 bits");
    assert_eq!(parts.device_tree, 0x220_0000..0x220_0000 + 1227);
    assert_eq!(parts.initrd, 0x220_1000..0x220_1000 + 100);
    assert_eq!(parts.end(), 0x220_1064);
    assert_eq!(parts.device_tree_address(), 0x4220_0000);
    let exact = LinuxParts::lay_out(IMAGE_ALIGN, 4096, 0).expect("fits");
    assert_eq!(exact.device_tree, IMAGE_ALIGN..IMAGE_ALIGN + 4096);
    assert_eq!(exact.initrd, IMAGE_ALIGN + 4096..IMAGE_ALIGN + 4096);
    assert_eq!(LinuxParts::lay_out(u64::MAX - 10, 1, 1), None);
    assert_eq!(LinuxParts::lay_out(IMAGE_ALIGN, 1, u64::MAX), None);
}
