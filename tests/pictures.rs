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
