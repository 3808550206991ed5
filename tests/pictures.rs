//! The layout pictures in `docs/` are generated from the boards' default systems by
//! the host tool; this test fails when one no longer matches its description.

use septum::boards;

/// Verifies: SK-CFG-003
#[test]
fn layout_pictures_match_the_default_systems() {
    for board in ["qemu-virt", "pc"] {
        let recipe = boards::load(board).expect("board recipe");
        let system = boards::load_system(&boards::default_system(&recipe), &recipe).expect("valid");
        let picture = septum::from_root("docs").join(format!("layout-{board}.svg"));
        let committed = std::fs::read_to_string(&picture).unwrap_or_default();
        assert!(
            committed == septum::layout::render_svg(&system, &recipe),
            "{} is stale; regenerate it with: cargo run -- layout --board {board} -o {}",
            picture.display(),
            picture.display()
        );
    }
}

/// The trace picture in `docs/` is drawn from the records kept beside it (which
/// `cargo test --test kernel_log` writes, with the picture, into
/// `target/trace-run/`); this test fails when the picture no longer matches them.
/// Verifies: SK-AUD-011
#[test]
fn the_trace_picture_matches_its_records() {
    use septum::timeline::{Timeline, parse_records};
    let records = septum::from_root("docs/trace-kernel-trace.records");
    let text = std::fs::read_to_string(&records).expect("docs/trace-kernel-trace.records");
    let (cores, partitions) = parse_records(&text).expect("a records file");
    let timeline = Timeline::build(&cores, partitions).expect("matched switches");
    let picture = septum::from_root("docs/trace-kernel-trace.svg");
    let committed = std::fs::read_to_string(&picture).unwrap_or_default();
    assert!(
        committed == timeline.svg("kernel-trace"),
        "{} is stale; regenerate it with `cargo test --test kernel_log` and copy \
         target/trace-run/kernel-trace.{{records,svg}} into docs/",
        picture.display()
    );
}
