//! Traceability: which test verifies which requirement, and with what verdict.
//!
//! Inputs: the requirement catalogue (`tests/requirements/*.toml`), the tags on the
//! tests (a `/// Verifies: SK-…` doc line on a Rust test, `verifies = [...]` in a
//! scenario file), and the output of `cargo test`. Outputs: a Markdown matrix
//! (requirement → tests → verdict per architecture, and test → requirements),
//! JUnit XML with the requirement IDs as properties, and JSON.
//!
//! The check fails when a requirement that must be verified lacks a passing test on
//! an architecture it applies to, when a test names an unknown ID, or when a test
//! that ran verifies nothing; and when the catalogue itself is short of what an
//! assessor needs (see [`catalogue_problems`]): a family of [`FAMILIES`] marked
//! required with no requirement, a requirement outside the families, without a
//! rationale or with an unknown verification method, or an ID given twice.

use crate::escape_markup;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One requirement of the catalogue.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Stable identifier, e.g. `SK-ISO-001`.
    pub id: String,
    /// The "shall" statement.
    pub shall: String,
    /// Why it exists.
    pub rationale: String,
    /// `test`, `inspection` or `analysis`.
    pub verification: String,
    /// `host`, `aarch64`, `x86_64`.
    pub applies_to: Vec<String>,
    /// Whether CI fails while it has no passing test.
    pub must_verify: bool,
}

/// The catalogue's families: the prefix of their IDs, what they cover, and
/// whether the catalogue must have requirements in them (the concerns of the
/// Separation Kernel Protection Profile and ARINC 653 health monitoring).
pub const FAMILIES: [(&str, &str, bool); 17] = [
    ("SK-INIT", "secure initialization", true),
    ("SK-CFG", "configuration", true),
    ("SK-ISO", "resource isolation", true),
    ("SK-TMP", "temporal isolation", true),
    ("SK-VCPU", "virtual CPUs", false),
    ("SK-IFC", "information flow", true),
    ("SK-CAP", "capabilities", true),
    ("SK-MED", "mediation", true),
    ("SK-RIP", "residual information", true),
    ("SK-BAL", "memory ballooning", false),
    ("SK-MSG", "messaging", false),
    ("SK-HM", "health monitoring (ARINC 653)", true),
    ("SK-REC", "trusted recovery", true),
    ("SK-TST", "self-test and evidence", true),
    ("SK-AUD", "audit", true),
    ("SK-API", "hypercall interface", false),
    ("SK-LNX", "Linux guests", false),
];

/// The verification methods a requirement may name.
pub const METHODS: [&str; 3] = ["test", "inspection", "analysis"];

/// The family of a requirement ID: `SK-HM-004` → `SK-HM`.
pub fn family(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(family, _)| family)
}

/// What is wrong with the catalogue itself (see the module docs).
pub fn catalogue_problems(requirements: &[Requirement]) -> Vec<String> {
    let mut problems = Vec::new();
    for (family_id, concern, required) in FAMILIES {
        if required && !requirements.iter().any(|r| family(&r.id) == family_id) {
            problems.push(format!(
                "family {family_id} ({concern}) has no requirements"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for r in requirements {
        if !FAMILIES.iter().any(|(f, _, _)| *f == family(&r.id)) {
            problems.push(format!("{} is in no family of the catalogue", r.id));
        }
        if !seen.insert(r.id.as_str()) {
            problems.push(format!("{} is given twice", r.id));
        }
        if r.rationale.trim().is_empty() {
            problems.push(format!("{} has no rationale", r.id));
        }
        if !METHODS.contains(&r.verification.as_str()) {
            problems.push(format!(
                "{} names verification `{}` (one of test, inspection, analysis)",
                r.id, r.verification
            ));
        }
    }
    problems
}

#[derive(Deserialize)]
struct CatalogueFile {
    requirement: Vec<Requirement>,
}

/// Loads every `*.toml` of `folder`.
pub fn load_catalogue(folder: &Path) -> Result<Vec<Requirement>> {
    let mut requirements = Vec::new();
    for path in sorted_files(folder, "toml")? {
        let text = std::fs::read_to_string(&path)?;
        let file: CatalogueFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        requirements.extend(file.requirement);
    }
    Ok(requirements)
}

fn sorted_files(folder: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    Ok(files)
}

/// A test as the tags and the results know it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TestId {
    /// The test binary (crate name, or the integration test's file stem).
    pub binary: String,
    /// The libtest path, e.g. `system::tests::a_fault_stops_only_the_culprit`.
    pub path: String,
}

/// The verdict of one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ran and passed.
    Pass,
    /// Ran and failed.
    Fail,
    /// Ignored or not run.
    NotRun,
}

/// Reads `cargo test` output: which binary each `test <path> ... <result>` line
/// belongs to, and the result.
pub fn parse_results(output: &str) -> BTreeMap<TestId, Verdict> {
    let mut results = BTreeMap::new();
    let mut binary = String::new();
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            // `Running unittests src/lib.rs (target/debug/deps/septum_core-1a2b)`
            let file = rest
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(')');
            binary = file
                .rsplit_once('-')
                .map_or(file, |(name, _)| name)
                .to_owned();
        } else if let Some(rest) = line.strip_prefix("test ")
            && let Some((path, result)) = rest.split_once(" ... ")
        {
            let verdict = match result.trim() {
                "ok" => Verdict::Pass,
                "FAILED" => Verdict::Fail,
                _ => Verdict::NotRun,
            };
            let path = path.trim();
            let id = TestId {
                binary: binary.clone(),
                path: path
                    .strip_suffix(" - should panic")
                    .unwrap_or(path)
                    .to_owned(),
            };
            results.insert(id, verdict);
        }
    }
    results
}

/// A tag found in the sources: a test (by binary and function name, with the file
/// it is in as a hint) and the requirements it names.
#[derive(Clone, Debug)]
pub struct Tag {
    /// The test binary.
    pub binary: String,
    /// The test function's name (the last segment of its path).
    pub function: String,
    /// The source file, whose stem disambiguates functions of the same name.
    pub file: PathBuf,
    /// The architecture the test runs on.
    pub arch: String,
    /// The requirement IDs.
    pub verifies: Vec<String>,
}

/// Finds `/// Verifies: ...` tags in the Rust sources under `roots`, and the
/// `verifies` lists of the scenarios (mapped to their tests in `tests/emulator.rs`).
pub fn collect_tags(repo: &Path) -> Result<Vec<Tag>> {
    let mut tags = Vec::new();
    for root in ["kernel", "description", "service-vm", "src", "tests"] {
        scan_rust(&repo.join(root), &mut tags)?;
    }
    tags.extend(scenario_tags(repo)?);
    Ok(tags)
}

fn scan_rust(folder: &Path, tags: &mut Vec<Tag>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Ok(());
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            scan_rust(&path, tags)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)?;
            let lines: Vec<&str> = text.lines().collect();
            for (index, line) in lines.iter().enumerate() {
                let Some(list) = line.trim().strip_prefix("/// Verifies:") else {
                    continue;
                };
                let function = lines[index..]
                    .iter()
                    .find_map(|l| {
                        l.trim()
                            .strip_prefix("fn ")
                            .and_then(|r| r.split('(').next())
                    })
                    .with_context(|| {
                        format!(
                            "{}:{}: a Verifies tag with no fn after it",
                            path.display(),
                            index + 1
                        )
                    })?;
                tags.push(Tag {
                    binary: binary_of(&path)?,
                    function: function.trim().to_owned(),
                    file: path.clone(),
                    arch: "host".into(),
                    verifies: list
                        .split(',')
                        .map(|id| id.trim().to_owned())
                        .filter(|id| !id.is_empty())
                        .collect(),
                });
            }
        }
    }
    Ok(())
}

/// The test binary a source file is compiled into: an integration test's file stem,
/// or its package's crate name.
fn binary_of(path: &Path) -> Result<String> {
    let parent = path.parent().context("file has a folder")?;
    if parent.file_name().is_some_and(|n| n == "tests")
        && parent
            .parent()
            .is_some_and(|p| p.join("Cargo.toml").is_file())
    {
        return Ok(path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned());
    }
    let mut folder = parent;
    loop {
        let manifest = folder.join("Cargo.toml");
        if manifest.is_file() {
            let text = std::fs::read_to_string(&manifest)?;
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("name = \""))
                .and_then(|r| r.split('"').next())
                .context("package name")?;
            return Ok(name.replace('-', "_"));
        }
        folder = folder.parent().context("no Cargo.toml above the file")?;
    }
}

#[derive(Deserialize)]
struct ScenarioTags {
    board: String,
    #[serde(default)]
    verifies: Vec<String>,
}

fn scenario_tags(repo: &Path) -> Result<Vec<Tag>> {
    let listing = std::fs::read_to_string(repo.join("tests/emulator.rs"))?;
    let mut module = String::new();
    let mut tests = BTreeMap::new();
    for line in listing.lines().map(str::trim) {
        if let Some(name) = line
            .strip_suffix(" {")
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            module = name.to_owned();
        } else if let Some((function, file)) = line.split_once(" => \"") {
            let file = file.trim_end_matches("\",");
            tests.insert(
                file.to_owned(),
                (module.clone(), function.trim().to_owned()),
            );
        }
    }
    let mut tags = Vec::new();
    for path in sorted_files(&repo.join("tests/scenarios"), "toml")? {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path)?;
        let scenario: ScenarioTags =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let arch = crate::boards::load(&scenario.board)?.arch;
        if let Some((module, function)) = tests.get(&stem) {
            tags.push(Tag {
                binary: "emulator".into(),
                function: format!("{module}::{function}"),
                file: path,
                arch,
                verifies: scenario.verifies,
            });
        }
    }
    Ok(tags)
}

/// The result of checking tags and results against the catalogue.
#[derive(Debug, Default)]
pub struct Trace {
    /// Per requirement: its tests (with arch and verdict).
    pub by_requirement: BTreeMap<String, Vec<(TestId, String, Verdict)>>,
    /// Per test that ran: its verdict, arch and requirements.
    pub by_test: BTreeMap<TestId, (Verdict, String, Vec<String>)>,
    /// What fails the check.
    pub problems: Vec<String>,
}

/// Matches tags to results and checks the rules in the module docs.
pub fn trace(
    requirements: &[Requirement],
    tags: &[Tag],
    results: &BTreeMap<TestId, Verdict>,
) -> Trace {
    let known: BTreeSet<&str> = requirements.iter().map(|r| r.id.as_str()).collect();
    let mut out = Trace {
        problems: catalogue_problems(requirements),
        ..Trace::default()
    };
    for (id, verdict) in results {
        let tag = tags.iter().find(|t| {
            t.binary == id.binary
                && (id.path == t.function || id.path.ends_with(&format!("::{}", t.function)))
                && module_matches(&id.path, &t.file, &t.function)
        });
        let (arch, verifies) = tag.map_or(("host".to_owned(), Vec::new()), |t| {
            (t.arch.clone(), t.verifies.clone())
        });
        if verifies.is_empty() {
            out.problems.push(format!(
                "test {}::{} verifies no requirement",
                id.binary, id.path
            ));
        }
        for requirement in &verifies {
            if !known.contains(requirement.as_str()) {
                out.problems.push(format!(
                    "test {}::{} names unknown requirement {requirement}",
                    id.binary, id.path
                ));
            }
            out.by_requirement
                .entry(requirement.clone())
                .or_default()
                .push((id.clone(), arch.clone(), *verdict));
        }
        out.by_test.insert(id.clone(), (*verdict, arch, verifies));
    }
    for requirement in requirements.iter().filter(|r| r.must_verify) {
        for arch in &requirement.applies_to {
            if verdict_on(&out, &requirement.id, arch) != "verified" {
                out.problems
                    .push(format!("{} has no passing test on {arch}", requirement.id));
            }
        }
    }
    out
}

/// Whether a result path fits the tag's file: a function defined in `foo.rs` (or
/// `foo/tests.rs`) of a crate has `foo` in its module path, unless the file is a
/// crate root or an integration test.
fn module_matches(path: &str, file: &Path, function: &str) -> bool {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let module = match stem.as_ref() {
        "lib" | "main" => return true,
        // `foo/tests.rs` is module `foo::tests`; `src/tests.rs` is module `tests`.
        "tests" => match file.parent().and_then(|p| p.file_name()) {
            Some(parent) if parent != "src" => parent.to_string_lossy().into_owned(),
            _ => "tests".to_owned(),
        },
        other => other.to_owned(),
    };
    let in_tests_folder = file.parent().is_some_and(|p| p.ends_with("tests"));
    in_tests_folder || path.split("::").any(|segment| segment == module) || path == function
}

/// `verified`, `failed` or `not verified` for one requirement on one architecture.
pub fn verdict_on(trace: &Trace, requirement: &str, arch: &str) -> &'static str {
    let tests = trace
        .by_requirement
        .get(requirement)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let on_arch: Vec<_> = tests.iter().filter(|(_, a, _)| a == arch).collect();
    if on_arch.iter().any(|(_, _, v)| *v == Verdict::Fail) {
        "failed"
    } else if on_arch.iter().any(|(_, _, v)| *v == Verdict::Pass) {
        "verified"
    } else {
        "not verified"
    }
}

/// The Markdown matrix.
pub fn matrix_markdown(requirements: &[Requirement], trace: &Trace) -> String {
    let mut md = String::from(
        "# Traceability matrix\n\nGenerated by `cargo run -- trace`; do not edit.\n\n",
    );
    let verified = requirements
        .iter()
        .filter(|r| {
            r.applies_to
                .iter()
                .all(|a| verdict_on(trace, &r.id, a) == "verified")
        })
        .count();
    let _ = writeln!(
        md,
        "{} requirements, {verified} verified on every architecture they apply to.\n",
        requirements.len()
    );
    md.push_str("| requirement | shall | must | host | aarch64 | x86_64 | tests |\n|---|---|---|---|---|---|---|\n");
    for r in requirements {
        let cell = |arch: &str| {
            if r.applies_to.iter().any(|a| a == arch) {
                verdict_on(trace, &r.id, arch)
            } else {
                "n/a"
            }
        };
        let tests: Vec<String> = trace
            .by_requirement
            .get(&r.id)
            .map(|t| {
                t.iter()
                    .map(|(id, _, _)| format!("`{}::{}`", id.binary, id.path))
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id,
            r.shall,
            if r.must_verify { "yes" } else { "later" },
            cell("host"),
            cell("aarch64"),
            cell("x86_64"),
            tests.join("<br>")
        );
    }
    md.push_str("\n## Tests\n\n| test | arch | verdict | verifies |\n|---|---|---|---|\n");
    for (id, (verdict, arch, verifies)) in &trace.by_test {
        let _ = writeln!(
            md,
            "| `{}::{}` | {arch} | {verdict:?} | {} |",
            id.binary,
            id.path,
            verifies.join(", ")
        );
    }
    md
}

/// JUnit XML: one test case per test that ran, with its requirements as properties.
pub fn junit(trace: &Trace) -> String {
    let failures = trace
        .by_test
        .values()
        .filter(|(v, _, _)| *v == Verdict::Fail)
        .count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"septum\" tests=\"{}\" failures=\"{failures}\">\n",
        trace.by_test.len()
    );
    for (id, (verdict, arch, verifies)) in &trace.by_test {
        let _ = writeln!(
            xml,
            "  <testcase classname=\"{}\" name=\"{}\">",
            escape_markup(&id.binary),
            escape_markup(&id.path)
        );
        let _ = writeln!(
            xml,
            "    <properties>\n      <property name=\"arch\" value=\"{}\"/>",
            escape_markup(arch)
        );
        for requirement in verifies {
            let _ = writeln!(
                xml,
                "      <property name=\"requirement\" value=\"{}\"/>",
                escape_markup(requirement)
            );
        }
        xml.push_str("    </properties>\n");
        match verdict {
            Verdict::Fail => xml.push_str("    <failure message=\"failed\"/>\n"),
            Verdict::NotRun => xml.push_str("    <skipped/>\n"),
            Verdict::Pass => {}
        }
        xml.push_str("  </testcase>\n");
    }
    xml.push_str("</testsuite>\n");
    xml
}

/// JSON for other tools: requirements with per-architecture verdicts and tests.
pub fn json(requirements: &[Requirement], trace: &Trace) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let entries: Vec<String> = requirements
        .iter()
        .map(|r| {
            let verdicts: Vec<String> = r
                .applies_to
                .iter()
                .map(|a| format!("{}: {}", quote(a), quote(verdict_on(trace, &r.id, a))))
                .collect();
            let tests: Vec<String> = trace
                .by_requirement
                .get(&r.id)
                .map(|t| {
                    t.iter()
                        .map(|(id, _, _)| quote(&format!("{}::{}", id.binary, id.path)))
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "    {{\"id\": {}, \"must_verify\": {}, \"verdicts\": {{{}}}, \"tests\": [{}]}}",
                quote(&r.id),
                r.must_verify,
                verdicts.join(", "),
                tests.join(", ")
            )
        })
        .collect();
    let problems: Vec<String> = trace.problems.iter().map(|p| quote(p)).collect();
    format!(
        "{{\n  \"requirements\": [\n{}\n  ],\n  \"problems\": [{}]\n}}\n",
        entries.join(",\n"),
        problems.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
     Running unittests src/lib.rs (target/debug/deps/septum_core-0123abcd)
test caps::tests::slot_then_type_then_right ... ok
test system::tests::broken ... FAILED
test system::tests::catches_it - should panic ... ok
     Running tests/emulator.rs (target/debug/deps/emulator-99)
test qemu_virt::demo ... ok
test slow ... ignored
";

    fn requirement(id: &str, applies_to: &[&str], must_verify: bool) -> Requirement {
        Requirement {
            id: id.into(),
            shall: "shall".into(),
            rationale: "why".into(),
            verification: "test".into(),
            applies_to: applies_to.iter().map(|s| s.to_string()).collect(),
            must_verify,
        }
    }

    fn tag(binary: &str, function: &str, file: &str, arch: &str, verifies: &[&str]) -> Tag {
        Tag {
            binary: binary.into(),
            function: function.into(),
            file: file.into(),
            arch: arch.into(),
            verifies: verifies.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn results_are_read_per_binary() {
        let results = parse_results(OUTPUT);
        let id = |binary: &str, path: &str| TestId {
            binary: binary.into(),
            path: path.into(),
        };
        assert_eq!(
            results[&id("septum_core", "caps::tests::slot_then_type_then_right")],
            Verdict::Pass
        );
        assert_eq!(
            results[&id("septum_core", "system::tests::broken")],
            Verdict::Fail
        );
        assert_eq!(results[&id("emulator", "qemu_virt::demo")], Verdict::Pass);
        assert_eq!(
            results[&id("septum_core", "system::tests::catches_it")],
            Verdict::Pass
        );
        assert_eq!(results[&id("emulator", "slow")], Verdict::NotRun);
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn the_catalogue_has_every_required_family_and_each_requirement_is_whole() {
        let mut requirements: Vec<Requirement> = FAMILIES
            .iter()
            .map(|(family, _, _)| requirement(&format!("{family}-001"), &["host"], true))
            .collect();
        assert_eq!(catalogue_problems(&requirements), Vec::<String>::new());
        requirements.retain(|r| family(&r.id) != "SK-TST");
        requirements[0].rationale = " ".into();
        requirements[1].verification = "hope".into();
        requirements.push(requirements[2].clone());
        assert_eq!(
            catalogue_problems(&requirements),
            [
                "family SK-TST (self-test and evidence) has no requirements",
                "SK-INIT-001 has no rationale",
                "SK-CFG-001 names verification `hope` (one of test, inspection, analysis)",
                "SK-ISO-001 is given twice",
            ]
        );
        let real = load_catalogue(&crate::from_root("tests/requirements")).unwrap();
        assert_eq!(catalogue_problems(&real), Vec::<String>::new());
    }

    /// Verifies: SK-AUD-003
    #[test]
    fn each_rule_of_the_check_is_enforced() {
        let requirements = [
            requirement("SK-A-001", &["host", "aarch64"], true),
            requirement("SK-B-001", &["host"], false),
        ];
        let tags = [
            tag(
                "septum_core",
                "slot_then_type_then_right",
                "kernel/core/src/caps.rs",
                "host",
                &["SK-A-001"],
            ),
            tag(
                "septum_core",
                "broken",
                "kernel/core/src/system/tests.rs",
                "host",
                &["SK-B-001", "SK-Z-999"],
            ),
            tag(
                "emulator",
                "qemu_virt::demo",
                "tests/scenarios/demo.toml",
                "aarch64",
                &[],
            ),
        ];
        let trace = trace(&requirements, &tags, &parse_results(OUTPUT));
        let problems = trace.problems.join("\n");
        assert!(problems.contains(
            "test septum_core::system::tests::broken names unknown requirement SK-Z-999"
        ));
        assert!(problems.contains("test emulator::qemu_virt::demo verifies no requirement"));
        assert!(problems.contains("test emulator::slow verifies no requirement"));
        assert!(problems.contains("SK-A-001 has no passing test on aarch64"));
        assert!(!problems.contains("SK-A-001 has no passing test on host"));
        assert_eq!(verdict_on(&trace, "SK-B-001", "host"), "failed");
        assert!(module_matches(
            "tests::x",
            Path::new("kernel/common/src/tests.rs"),
            "x"
        ));
        assert!(module_matches(
            "system::tests::x",
            Path::new("kernel/core/src/system/tests.rs"),
            "x"
        ));
        assert!(!module_matches(
            "package::tests::x",
            Path::new("kernel/core/src/resources.rs"),
            "x"
        ));
        assert!(problems.contains("family SK-REC (trusted recovery) has no requirements"));
        assert!(problems.contains("SK-A-001 is in no family of the catalogue"));
        let md = matrix_markdown(&requirements, &trace);
        assert!(md.contains("| SK-A-001 | shall | yes | verified | not verified | n/a |"));
        assert!(junit(&trace).contains("<property name=\"requirement\" value=\"SK-A-001\"/>"));
        assert!(json(&requirements, &trace).contains("\"SK-A-001\""));
    }
}
