//! Board recipes and system descriptions, as the host tool finds them in this
//! repository.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

pub use septum_description::Board;
use septum_description::System;

/// `board-support/<name>`.
pub fn folder(name: &str) -> PathBuf {
    crate::from_root("board-support").join(name)
}

/// Loads the recipe of board `name`.
pub fn load(name: &str) -> Result<Board> {
    Board::load(&folder(name)).map_err(|e| anyhow::anyhow!("unknown board `{name}`: {e}"))
}

/// The board's default system description.
pub fn default_system(board: &Board) -> PathBuf {
    folder(&board.name).join(&board.default_system)
}

/// Loads and validates the description at `path` for `board`. The error lists
/// every broken rule with its file, line and column.
pub fn load_system(path: &Path, board: &Board) -> Result<System> {
    septum_description::load(path, board).map_err(|errors| anyhow::anyhow!("{errors}"))
}

/// The kernel ELF for `board`: the one linked where its boot loader places the
/// kernel (`kernel_base` in its board.toml; `build.rs` builds one per base).
pub fn kernel_elf(board: &Board) -> Result<PathBuf> {
    let default = crate::image::kernel_elf(&board.arch)?;
    let Some(base) = board.kernel_base else {
        return Ok(default);
    };
    let linked = crate::image::image_dir()
        .join(format!("kernel-at-{base:#x}"))
        .join(default.strip_prefix(crate::image::image_dir().join("kernel"))?);
    if !linked.is_file() {
        bail!(
            "board `{}` needs a kernel linked at {base:#x}, which build.rs does not build ({})",
            board.name,
            linked.display()
        );
    }
    Ok(linked)
}

/// The processors `system` needs: one more than the highest core a partition
/// is pinned to.
pub fn cpus_used(system: &System) -> u32 {
    system
        .partitions
        .iter()
        .flat_map(|partition| partition.cpus.iter().copied())
        .max()
        .unwrap_or(0)
        + 1
}
