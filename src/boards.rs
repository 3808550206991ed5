//! Board recipes and system descriptions, as the host tool finds them in this
//! repository.

use anyhow::Result;
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
