//! Board recipes: which emulator runs a board and with what machine options.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::PathBuf;

/// `board-support/<name>/board.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Board name, as the kernel reports it.
    pub name: String,
    /// `aarch64` or `x86_64`.
    pub arch: String,
    /// The emulator binary.
    pub emulator: String,
    /// Emulator options that select the machine.
    pub machine: Vec<String>,
    /// RAM size given to the emulator unless a run asks for another.
    pub default_ram: String,
    /// The system description run by default, relative to the board folder.
    pub default_system: String,
}

impl Board {
    /// Loads the recipe of board `name`.
    pub fn load(name: &str) -> Result<Board> {
        let path = Board::folder(name).join("board.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("unknown board `{name}`: cannot read {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// `board-support/<name>`.
    pub fn folder(name: &str) -> PathBuf {
        crate::from_root("board-support").join(name)
    }

    /// The board's default system description.
    pub fn default_system(&self) -> PathBuf {
        Board::folder(&self.name).join(&self.default_system)
    }
}
