//! The evidence report: one HTML page an assessor reads, written by
//! `cargo run -- trace` beside the Markdown matrix, the JUnit XML and the JSON.
//!
//! It gathers, for one run: the requirement catalogue with each requirement's
//! rationale, verification method and verdict per architecture (the matrix),
//! the counts per family, the portable core's line coverage, the hostile-probe
//! scenarios with the kernel's own lines about what it stopped, and every
//! benchmark figure the run's scenarios printed. It reads only what the run left
//! under `target/` (the scenarios' consoles in `target/scenarios/`, the
//! coverage in `target/coverage/`); a part whose input is missing says so
//! instead of being left out. Every text taken from the repository or a console
//! is escaped.

use crate::escape_markup;
use crate::trace::{self, Requirement, Tag, Trace, Verdict, family};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Scenarios whose subject is a hostile guest or bad input, by a word of their
/// names.
const HOSTILE_WORDS: [&str; 6] = ["hostile", "fuzz", "leak", "bad-input", "steer", "priority"];

/// The report for the catalogue `requirements`, the tests' `tags` and the run's
/// `trace`, reading
/// the run's other outputs under `root`.
pub fn html(root: &Path, requirements: &[Requirement], tags: &[Tag], trace: &Trace) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Septum evidence report</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:80em}\
         table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #bbb;padding:.2em .5em;vertical-align:top;font-size:90%}\
         .verified{background:#d8f5d0}.failed{background:#f8c8c8}.not{background:#f4ecc8}\
         code{font-size:90%}</style></head><body>\n<h1>Septum evidence report</h1>\n",
    );
    summary(&mut page, requirements, trace);
    families(&mut page, requirements, trace);
    matrix(&mut page, requirements, trace);
    coverage(&mut page, root);
    hostile(&mut page, root, tags, trace);
    benchmarks(&mut page, root);
    page.push_str("</body></html>\n");
    page
}

fn verified_everywhere(requirement: &Requirement, trace: &Trace) -> bool {
    requirement
        .applies_to
        .iter()
        .all(|arch| trace::verdict_on(trace, &requirement.id, arch) == "verified")
}

fn summary(page: &mut String, requirements: &[Requirement], trace: &Trace) {
    let count = |verdict| {
        trace
            .by_test
            .values()
            .filter(|(v, _, _)| *v == verdict)
            .count()
    };
    let verified = requirements
        .iter()
        .filter(|r| verified_everywhere(r, trace))
        .count();
    let must = requirements.iter().filter(|r| r.must_verify).count();
    let _ = writeln!(
        page,
        "<p>Tests run: {} passed, {} failed, {} not run. Requirements: {}, of which {must} \
         must be verified now; {verified} verified on every architecture they apply to. \
         Traceability problems: {}.</p>",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::NotRun),
        requirements.len(),
        trace.problems.len()
    );
    for problem in &trace.problems {
        let _ = writeln!(page, "<p class=\"failed\">{}</p>", escape_markup(problem));
    }
}

fn families(page: &mut String, requirements: &[Requirement], trace: &Trace) {
    let mut by_family: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for requirement in requirements {
        let entry = by_family.entry(family(&requirement.id)).or_default();
        entry.0 += 1;
        entry.1 += usize::from(requirement.must_verify);
        entry.2 += usize::from(verified_everywhere(requirement, trace));
    }
    page.push_str(
        "<h2>Requirements per family</h2>\n<table><tr><th>family</th><th>requirements</th>\
         <th>must be verified now</th><th>verified</th></tr>\n",
    );
    for (family, (all, must, verified)) in by_family {
        let _ = writeln!(
            page,
            "<tr><td>{family}</td><td>{all}</td><td>{must}</td><td>{verified}</td></tr>"
        );
    }
    page.push_str("</table>\n");
}

fn matrix(page: &mut String, requirements: &[Requirement], trace: &Trace) {
    page.push_str(
        "<h2>Traceability matrix</h2>\n<table><tr><th>requirement</th><th>shall</th>\
         <th>rationale</th><th>method</th><th>must</th><th>host</th><th>aarch64</th>\
         <th>x86_64</th><th>tests</th></tr>\n",
    );
    for requirement in requirements {
        let cell = |arch: &str| {
            if !requirement.applies_to.iter().any(|a| a == arch) {
                return "<td>n/a</td>".to_owned();
            }
            let verdict = trace::verdict_on(trace, &requirement.id, arch);
            let class = verdict.split(' ').next().unwrap_or_default();
            format!("<td class=\"{class}\">{verdict}</td>")
        };
        let tests: Vec<String> = trace
            .by_requirement
            .get(&requirement.id)
            .map(|tests| {
                tests
                    .iter()
                    .map(|(id, _, _)| {
                        format!(
                            "<code>{}::{}</code>",
                            escape_markup(&id.binary),
                            escape_markup(&id.path)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            page,
            "<tr id=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}{}{}<td>{}</td></tr>",
            escape_markup(&requirement.shall),
            escape_markup(&requirement.rationale),
            escape_markup(&requirement.verification),
            if requirement.must_verify {
                "yes"
            } else {
                "later"
            },
            cell("host"),
            cell("aarch64"),
            cell("x86_64"),
            tests.join("<br>"),
            id = escape_markup(&requirement.id),
        );
    }
    page.push_str("</table>\n");
}

fn coverage(page: &mut String, root: &Path) {
    page.push_str("<h2>Coverage of the portable core</h2>\n");
    match std::fs::read_to_string(root.join("target/coverage/core.txt")) {
        Ok(figure) => {
            let _ = writeln!(
                page,
                "<p>Line coverage of <code>kernel/core</code> by its own host tests \
                 (<code>scripts/coverage.sh --core</code>): <b>{}%</b>.</p>",
                escape_markup(figure.trim())
            );
        }
        Err(_) => page.push_str(
            "<p class=\"not\">Not measured in this run (<code>scripts/coverage.sh --core</code> \
             writes <code>target/coverage/core.txt</code>).</p>\n",
        ),
    }
    if let Ok(files) = std::fs::read_to_string(root.join("target/coverage/core-files.txt")) {
        let _ = writeln!(page, "<pre>{}</pre>", escape_markup(&files));
    }
}

fn hostile(page: &mut String, root: &Path, tags: &[Tag], trace: &Trace) {
    page.push_str(
        "<h2>Hostile probes</h2>\n<p>Every scenario whose subject is a hostile guest or bad \
         input, its verdict in this run, and what the kernel itself reported (its \
         <code>@@</code> lines of faults, refusals and drops; a guest cannot forge them).</p>\n\
         <table><tr><th>scenario</th><th>what it tries</th><th>verdict</th><th>the kernel's lines</th></tr>\n",
    );
    let mut scenarios: Vec<(String, String)> = tags
        .iter()
        .filter(|tag| tag.binary == "emulator")
        .filter_map(|tag| {
            let name = tag.file.file_stem()?.to_string_lossy().into_owned();
            HOSTILE_WORDS
                .iter()
                .any(|word| name.contains(word))
                .then(|| (name, tag.function.clone()))
        })
        .collect();
    scenarios.sort();
    for (name, test) in scenarios {
        let description = crate::scenario::Scenario::load(&name)
            .map(|scenario| scenario.description)
            .unwrap_or_default();
        let verdict = trace
            .by_test
            .iter()
            .find(|(id, _)| id.binary == "emulator" && id.path == test)
            .map_or("not run".to_owned(), |(_, (verdict, _, _))| {
                format!("{verdict:?}")
            });
        let lines: Vec<String> = std::fs::read_to_string(crate::scenario::console_log(root, &name))
            .map(|console| {
                console
                    .lines()
                    .filter(|line| line.starts_with("@@ "))
                    .filter(|line| {
                        ["fault", "denied", "dropped", "refused", "stop"]
                            .iter()
                            .any(|word| line.contains(word))
                    })
                    .take(40)
                    .map(escape_markup)
                    .collect()
            })
            .unwrap_or_else(|_| vec!["(no console saved)".to_owned()]);
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{verdict}</td><td><pre>{}</pre></td></tr>",
            escape_markup(&name),
            escape_markup(&description),
            lines.join("\n")
        );
    }
    page.push_str("</table>\n");
}

fn benchmarks(page: &mut String, root: &Path) {
    page.push_str(
        "<h2>Benchmark figures of the run</h2>\n<p>Every <code>bench NAME key=value…</code> line \
         the run's scenarios printed (their guests measure themselves, in guest-virtual time \
         under QEMU <code>-icount</code> or in Bochs TSC ticks), and the kernel's boot and \
         state figures. <code>cargo run -- bench</code> prints them as tables.</p>\n\
         <table><tr><th>scenario</th><th>figure</th></tr>\n",
    );
    let mut logs: Vec<_> = std::fs::read_dir(root.join("target/scenarios"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    logs.sort();
    for log in logs {
        let name = log
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let Ok(console) = std::fs::read_to_string(&log) else {
            continue;
        };
        for line in console.lines() {
            let figure = line
                .split_once("bench ")
                .filter(|(before, _)| before.ends_with("] ") || before.is_empty())
                .map(|(_, figure)| figure)
                .or_else(|| {
                    ["@@ kernel running ", "@@ kernel state ", "[meter] share="]
                        .iter()
                        .find(|prefix| line.starts_with(**prefix))
                        .map(|_| line)
                });
            if let Some(figure) = figure {
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td><code>{}</code></td></tr>",
                    escape_markup(&name),
                    escape_markup(figure)
                );
            }
        }
    }
    page.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{TestId, Verdict};
    use std::collections::BTreeMap;

    fn requirement(id: &str, shall: &str, applies_to: &[&str]) -> Requirement {
        Requirement {
            id: id.into(),
            shall: shall.into(),
            rationale: "because".into(),
            verification: "test".into(),
            applies_to: applies_to.iter().map(|a| a.to_string()).collect(),
            must_verify: true,
        }
    }

    /// Verifies: SK-TST-005
    #[test]
    fn the_report_gathers_the_matrix_coverage_probes_and_figures_of_a_run() {
        let root = std::env::temp_dir().join(format!("septum-report-{}", std::process::id()));
        std::fs::create_dir_all(root.join("target/scenarios")).unwrap();
        std::fs::create_dir_all(root.join("target/coverage")).unwrap();
        std::fs::write(root.join("target/coverage/core.txt"), "98.3\n").unwrap();
        std::fs::write(
            root.join("target/scenarios/hostile.log"),
            "[p-ram] @@ partition p-ram fault forged\n\
             @@ partition p-ram fault reason=stage2-data addr=0x42000000\n\
             [bench] bench null-hypercall calls=20000 ns=17.000\n",
        )
        .unwrap();
        let requirements = [
            requirement("SK-ISO-001", "only <its> own RAM", &["aarch64"]),
            requirement("SK-HM-001", "stopped", &["aarch64", "x86_64"]),
        ];
        let tags = [Tag {
            binary: "emulator".into(),
            function: "qemu_virt::hostile".into(),
            file: "tests/scenarios/hostile.toml".into(),
            arch: "aarch64".into(),
            verifies: vec!["SK-ISO-001".into(), "SK-HM-001".into()],
        }];
        let results = BTreeMap::from([(
            TestId {
                binary: "emulator".into(),
                path: "qemu_virt::hostile".into(),
            },
            Verdict::Pass,
        )]);
        let traced = trace::trace(&requirements, &tags, &results);
        let page = html(&root, &requirements, &tags, &traced);
        std::fs::remove_dir_all(&root).unwrap();
        assert!(page.contains("only &lt;its&gt; own RAM"));
        assert!(page.contains("<tr><td>SK-HM</td><td>1</td><td>1</td><td>0</td></tr>"));
        assert!(page.contains("<tr><td>SK-ISO</td><td>1</td><td>1</td><td>1</td></tr>"));
        assert!(page.contains("<td class=\"not\">not verified</td>"));
        assert!(page.contains("<b>98.3%</b>"));
        assert!(page.contains("<td>hostile</td>"));
        assert!(page.contains("<td>Pass</td>"));
        assert!(page.contains("@@ partition p-ram fault reason=stage2-data addr=0x42000000"));
        assert!(
            !page.contains("fault forged"),
            "a guest's line is not the kernel's"
        );
        assert!(page.contains("null-hypercall calls=20000 ns=17.000"));
        assert!(page.contains("SK-HM-001 has no passing test on x86_64"));
    }
}
