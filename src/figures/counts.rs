//! Counts the README states that come from the repository itself: the
//! requirement catalogue and its verification, the tests, and the lines of the
//! trusted kernel.

use crate::trace;
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::path::Path;

/// `requirements` (all), `requirements-must`, `requirements-verified` (those
/// with a tagged test on every architecture they apply to: in a run that passes,
/// exactly those the matrix shows verified), `families`, or `family:SK-XX`.
pub fn catalogue(root: &Path, kind: &str, family: &str) -> Result<String> {
    let requirements = trace::load_catalogue(&root.join("tests/requirements"))?;
    let family_of = |id: &str| trace::family(id).to_owned();
    Ok(match kind {
        "requirements" => requirements.len(),
        "requirements-must" => requirements.iter().filter(|r| r.must_verify).count(),
        "requirements-verified" => {
            let tags = trace::collect_tags(root)?;
            requirements
                .iter()
                .filter(|r| {
                    r.applies_to.iter().all(|arch| {
                        tags.iter()
                            .any(|t| &t.arch == arch && t.verifies.contains(&r.id))
                    })
                })
                .count()
        }
        "families" => requirements
            .iter()
            .map(|r| family_of(&r.id))
            .collect::<BTreeSet<_>>()
            .len(),
        "family" => {
            let count = requirements
                .iter()
                .filter(|r| family_of(&r.id) == family)
                .count();
            if count == 0 {
                bail!("no requirements in family `{family}`");
            }
            count
        }
        _ => bail!("unknown catalogue figure `{kind}`"),
    }
    .to_string())
}

/// How many tests the README's test command runs: `cargo test -- --list` over
/// the default members (unit, integration, scenario and doc tests).
pub fn listed_tests(root: &Path) -> Result<usize> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["test", "-q", "--", "--list", "--format", "terse"])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test -- --list")?;
    if !output.status.success() {
        bail!("cargo test -- --list failed");
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.ends_with(": test"))
        .count())
}

/// The code lines of the kernel that runs on `arch`: its back end, the portable
/// core, the shared kernel code and the ABI (with, on x86_64, the instruction
/// decoder). A code line is one that is neither blank nor only a comment;
/// test code (files of tests, and everything from a `#[cfg(test)]` at the start
/// of a line to the end of its file) is left out.
pub fn trusted_lines(root: &Path, arch: &str) -> Result<usize> {
    let crates: &[&str] = match arch {
        "aarch64" => &[
            "kernel/aarch64",
            "kernel/core",
            "kernel/common",
            "kernel/abi",
        ],
        "x86_64" => &[
            "kernel/x86_64/src",
            "kernel/x86_64/decode",
            "kernel/core",
            "kernel/common",
            "kernel/abi",
        ],
        _ => bail!("no kernel for architecture `{arch}`"),
    };
    let mut total = 0;
    for folder in crates {
        let source = root.join(folder);
        let source = if source.join("src").is_dir() {
            source.join("src")
        } else {
            source
        };
        let mut test_modules = BTreeSet::new();
        test_only_modules(&source, &mut test_modules)?;
        total += code_lines_under(&source, &test_modules)?;
    }
    Ok(total)
}

/// The names of the modules declared under `#[cfg(test)]` in the files under
/// `folder` (their files are test code).
fn test_only_modules(folder: &Path, names: &mut BTreeSet<String>) -> Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path.is_dir() {
            test_only_modules(&path, names)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)?;
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for pair in lines.windows(2) {
                if pair[0] == "#[cfg(test)]"
                    && let Some(name) = pair[1]
                        .trim_start_matches("pub ")
                        .strip_prefix("mod ")
                        .and_then(|rest| rest.strip_suffix(';'))
                {
                    names.insert(format!("{name}.rs"));
                }
            }
        }
    }
    Ok(())
}

fn code_lines_under(folder: &Path, test_modules: &BTreeSet<String>) -> Result<usize> {
    let mut total = 0;
    let mut entries: Vec<_> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            total += code_lines_under(&path, test_modules)?;
        } else if name.ends_with(".rs")
            && name != "tests.rs"
            && !name.ends_with("_tests.rs")
            && !test_modules.contains(name.as_ref())
        {
            total += code_lines(&std::fs::read_to_string(&path)?);
        }
    }
    Ok(total)
}

/// Code lines of one file (see [`trusted_lines`]).
pub fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .count()
}
