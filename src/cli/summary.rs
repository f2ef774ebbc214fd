//! `rig summary [pattern]`: every run in the log directory at a glance: counts, phase
//! timings, what failed and why, artifacts built (upstream's `rig summary`, without the CI
//! run block).

use std::collections::BTreeMap;

use rig_types::EventType;
use serde::Serialize;

use super::args::Args;
use super::error::{CliError, CmdResult, EXIT_OK};
use super::explain::{analysis_events, phase_parts, Report};
use super::flags::{self, Opt};
use super::format;
use super::logdir::{self, FoundLog};
use super::logread::{self, Mode};
use super::ls::{outcome_paint, to_json};
use super::output::{Out, Paint, Style};
use super::table::{Cell, Table};
use crate::explain::{condensed, Phases};
use crate::logfiles::Outcome;

/// `rig summary --help`.
pub const USAGE: &str = "\
Usage: rig summary [pattern] [options]

Summarise the runs in the log directory: how many passed, failed and crashed, where the time
went (artifacts, startup, test, teardown), why each failure happened, and the artifacts built.

Arguments:
  [pattern]        only log files whose name matches (as for rig ls)

Options:
      --failed     list only failed and crashed runs (the counts still cover every run)
      --passed     list only passed runs
  -p, --pretty     human-readable summary instead of JSON
  -v, --verbose    with -p: the full explanation of each failure, not the condensed one
      --color WHEN auto (default; off when NO_COLOR is set), always or never
  -h, --help       show this help";

const OPTS: &[Opt] = &[
    Opt::switch("--failed", &[]),
    Opt::switch("--passed", &[]),
    Opt::switch("-p", &["--pretty"]),
    Opt::switch("-v", &["--verbose"]),
    Opt::switch("--json", &[]),
];

#[derive(Serialize, Default)]
struct Counts {
    total: usize,
    passed: usize,
    failed: usize,
    crashed: usize,
}

#[derive(Serialize)]
struct TestEntry<'a> {
    test: &'a str,
    outcome: Outcome,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    phases: Option<Phases>,
    services: &'a [String],
    #[serde(skip_serializing_if = "is_empty")]
    assertions: &'a [crate::explain::Assertion],
    #[serde(skip_serializing_if = "is_empty")]
    errors: &'a [crate::explain::TrafficError],
    #[serde(skip_serializing_if = "is_empty")]
    service_failures: &'a [crate::explain::ServiceFailure],
    #[serde(skip_serializing_if = "is_empty")]
    service_errors: &'a [crate::explain::ServiceLine],
    #[serde(skip_serializing_if = "Option::is_none")]
    stall: Option<&'a rig_types::DiagnosticSnapshot>,
    log_file: String,
}

/// An artifact built or found in the cache.
#[derive(Serialize, Clone, Debug, PartialEq)]
struct Artifact {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cached: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    summary: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    phases: Option<Phases>,
    tests: Vec<TestEntry<'a>>,
    artifacts: Vec<Artifact>,
}

struct Run {
    found: FoundLog,
    report: Report,
    artifacts: Vec<Artifact>,
}

/// Reads the run logged in `found` as a stream (see [`Report::of`]); `None` when it cannot
/// be read as a rig log.
fn read_run(found: FoundLog) -> Option<Run> {
    let mut log = logread::LogStream::open(&found.path, Mode::Lenient).ok()?;
    // Artifact events are never left out.
    let events = analysis_events(&mut log).ok()?;
    Some(Run {
        report: Report::of_events(&log, &events),
        artifacts: artifacts_of(&events),
        found,
    })
}

/// Runs `rig summary`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("summary", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("summary", 1, "at most one pattern")?;
    let pattern = parsed.positional_strings().into_iter().next();
    let dir = logdir::log_dir();
    // Files without a header line are not run logs (as for `rig ls`).
    let mut found: Vec<FoundLog> = logdir::find(&dir, pattern.as_deref())?
        .into_iter()
        .filter(|f| f.header.is_some())
        .collect();
    if found.is_empty() {
        return Err(logdir::no_match(&dir, pattern.as_deref()));
    }
    found.sort_by(|a, b| {
        let name = |f: &FoundLog| f.header.as_ref().map(|h| h.environment.clone());
        name(a).cmp(&name(b)).then_with(|| a.when().cmp(&b.when()))
    });
    let runs: Vec<Run> = found.into_iter().filter_map(read_run).collect();
    if runs.is_empty() {
        return Err(CliError::failed(format!(
            "none of the matching files in {} could be read as a rig log",
            dir.display()
        )));
    }

    let mut counts = Counts::default();
    let mut total_phases = Phases::default();
    for r in &runs {
        counts.total += 1;
        match r.report.outcome {
            Outcome::Passed => counts.passed += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Crashed => counts.crashed += 1,
        }
        if let Some(p) = &r.report.analysis.phases {
            total_phases.artifacts_ms += p.artifacts_ms;
            total_phases.startup_ms += p.startup_ms;
            total_phases.test_ms += p.test_ms;
            total_phases.teardown_ms += p.teardown_ms;
        }
    }
    let phases = (total_phases != Phases::default()).then_some(total_phases);
    let artifacts = merge_artifacts(runs.iter().flat_map(|r| r.artifacts.iter().cloned()));
    let listed: Vec<&Run> = runs
        .iter()
        .filter(|r| {
            (!parsed.has("--failed") || r.report.outcome.is_failure())
                && (!parsed.has("--passed") || r.report.outcome == Outcome::Passed)
        })
        .collect();

    if !parsed.has("-p") {
        let tests = listed.iter().map(|r| entry(r)).collect();
        Out.line(to_json(&Summary {
            summary: counts,
            phases,
            tests,
            artifacts,
        })?);
        return Ok(EXIT_OK);
    }

    let style = Style::new(parsed.color.enabled_for_stdout());
    let mut out = Vec::new();
    if let Some(p) = &phases {
        let total = (p.artifacts_ms + p.startup_ms + p.test_ms + p.teardown_ms) as f64;
        let parts = phase_parts(p, Some(total));
        if !parts.is_empty() {
            out.push(format!("Phases: {}", parts.join(" · ")));
            out.push(String::new());
        }
    }
    let mut table = Table::new(&["OUTCOME", "NAME", "DURATION", ""]);
    for r in &listed {
        let rep = &r.report;
        let parts = rep
            .analysis
            .phases
            .as_ref()
            .map(|p| phase_parts(p, Some(rep.duration_ms)).join(" · "))
            .unwrap_or_default();
        table.push(vec![
            Cell::painted(rep.outcome.as_str(), outcome_paint(rep.outcome)),
            Cell::plain(rep.test.clone()),
            Cell::plain(format::run_duration(rep.duration_ms)),
            Cell::maybe(parts, Some(Paint::Dim)),
        ]);
    }
    if !table.is_empty() {
        out.extend(table.render(style));
        out.push(String::new());
    }
    out.push(counts_line(&counts));
    for r in listed.iter().filter(|r| r.report.outcome.is_failure()) {
        out.push(String::new());
        let title = format!(
            "── {} ── {} ",
            r.report.test,
            r.report.outcome.as_str().to_uppercase()
        );
        out.push(style.paint(
            outcome_paint(r.report.outcome),
            &format!("{}{}", style.service_text(&title), "─".repeat(40)),
        ));
        if parsed.has("-v") {
            out.extend(r.report.pretty(style));
        } else {
            // The condensed text leaves assertions out (a test's own output shows them);
            // here there is no test output, so they lead.
            for a in &r.report.analysis.assertions {
                let message = style.service_text(&a.message);
                out.push(format!("rig: assertion: {message}"));
            }
            out.extend(condensed(&r.report.analysis).lines().map(str::to_string));
        }
        out.push(style.paint(
            Paint::Dim,
            &format!("(rig explain -p {})", r.found.path.display()),
        ));
    }
    if !artifacts.is_empty() {
        out.push(String::new());
        out.push("Artifacts:".to_string());
        for a in &artifacts {
            let value = if a.cached {
                style.paint(Paint::Dim, "cached")
            } else {
                a.duration_ms
                    .map(|ms| format::run_duration(ms as f64))
                    .unwrap_or_default()
            };
            out.push(format!("  {:<40}  {value}", a.key));
        }
    }
    Out.lines(out);
    Ok(EXIT_OK)
}

fn entry<'a>(r: &'a Run) -> TestEntry<'a> {
    let rep = &r.report;
    let a = &rep.analysis;
    let failed = rep.outcome.is_failure();
    TestEntry {
        test: &rep.test,
        outcome: rep.outcome,
        duration_ms: rep.duration_ms,
        phases: a.phases,
        services: &rep.services,
        assertions: if failed { &a.assertions } else { &[] },
        errors: if failed { &a.errors } else { &[] },
        service_failures: if failed { &a.service_failures } else { &[] },
        service_errors: if failed { &a.service_errors } else { &[] },
        stall: if failed { a.stall.as_ref() } else { None },
        log_file: r.found.path.display().to_string(),
    }
}

fn is_empty<T>(items: &&[T]) -> bool {
    items.is_empty()
}

fn counts_line(c: &Counts) -> String {
    let mut parts = Vec::new();
    for (n, label) in [
        (c.passed, "passed"),
        (c.failed, "failed"),
        (c.crashed, "crashed"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {label}"));
        }
    }
    let noun = if c.total == 1 { "test" } else { "tests" };
    format!("{} {noun}: {}", c.total, parts.join(", "))
}

/// Artifacts of one run: completed ones with their build time, cached ones.
fn artifacts_of<E: std::borrow::Borrow<rig_types::Event>>(events: &[E]) -> Vec<Artifact> {
    let mut started = BTreeMap::new();
    let mut out = Vec::new();
    for e in events.iter().map(E::borrow) {
        match e.event_type {
            EventType::ArtifactStarted => {
                started.insert(e.artifact.clone(), e.timestamp);
            }
            EventType::ArtifactCompleted => out.push(Artifact {
                key: e.artifact.clone(),
                duration_ms: started
                    .get(&e.artifact)
                    .map(|s| e.timestamp.duration_since(s).as_nanos() / 1_000_000),
                cached: false,
            }),
            EventType::ArtifactCached => out.push(Artifact {
                key: e.artifact.clone(),
                duration_ms: None,
                cached: true,
            }),
            _ => {}
        }
    }
    out
}

/// One entry per key, preferring a build over a cache hit; sorted by key.
fn merge_artifacts(all: impl Iterator<Item = Artifact>) -> Vec<Artifact> {
    let mut by_key: BTreeMap<String, Artifact> = BTreeMap::new();
    for a in all {
        match by_key.get(&a.key) {
            Some(existing) if !existing.cached => {}
            _ => {
                by_key.insert(a.key.clone(), a);
            }
        }
    }
    by_key.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_win_over_cache_hits() {
        let a = |key: &str, cached: bool| Artifact {
            key: key.into(),
            duration_ms: (!cached).then_some(5),
            cached,
        };
        let merged =
            merge_artifacts([a("x", true), a("x", false), a("y", true), a("x", true)].into_iter());
        assert_eq!(merged, [a("x", false), a("y", true)]);
    }

    #[test]
    fn counts_leave_out_zeros() {
        let c = Counts {
            total: 3,
            passed: 2,
            failed: 0,
            crashed: 1,
        };
        assert_eq!(counts_line(&c), "3 tests: 2 passed, 1 crashed");
    }
}
