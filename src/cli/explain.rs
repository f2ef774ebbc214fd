//! `rig explain <file|pattern>`: why a run failed, from its log (the engine is
//! [`crate::explain`], the same that writes the DELETE `summary`).
//!
//! JSON by default (upstream's report: `test`, `outcome`, `duration_ms`, `services`, then the
//! analysis), `-p` for people.

use std::sync::Arc;

use rig_types::Event;
use serde::Serialize;

use super::args::Args;
use super::error::{CliError, CmdResult, EXIT_OK};
use super::flags::{self, Opt};
use super::format;
use super::logread::{self, LogStream, Mode};
use super::ls::{outcome_paint, to_json};
use super::output::{Out, Paint, Style};
use crate::explain::{analyze, Analysis, AnalysisEvents, TrafficKind};
use crate::logfiles::{derive_outcome, Outcome};

/// `rig explain --help`.
pub const USAGE: &str = concat!(
    "\
Usage: rig explain [file|pattern] [options]

Explain a run from its log: the failed assertions, the services that failed, a stalled
startup, the services not ready when a run was torn down before it was up, the HTTP and
gRPC errors that matter (root cause first: most recent first, each after the errors of
the calls its target made while answering it, so a 502 at the test's edge comes after the
500 the api got from its database; a passed run's expected errors and startup probes are
left out) and the stderr lines that go with them.

Arguments:
",
    log_argument_help!(),
    "

Options:
  -p, --pretty     human-readable report instead of JSON
      --color WHEN auto (default; off when NO_COLOR is set), always or never
  -h, --help       show this help"
);

const OPTS: &[Opt] = &[Opt::switch("-p", &["--pretty"]), Opt::switch("--json", &[])];

/// A run's explanation: the header's facts, then the analysis (upstream's field order).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The environment (test) name.
    pub test: String,
    /// `passed`, `failed` or `crashed`.
    pub outcome: Outcome,
    /// The run's duration.
    pub duration_ms: f64,
    /// The services.
    pub services: Vec<String>,
    /// What explains it.
    #[serde(flatten)]
    pub analysis: Analysis,
}

impl Report {
    /// Analyses a log as it is read, keeping only the events the analysis reads (see
    /// [`AnalysisEvents`]), so memory does not grow with the service output in the log.
    pub fn of(log: &mut LogStream) -> Result<Report, CliError> {
        let events = analysis_events(log)?;
        Ok(Report::of_events(log, &events))
    }

    /// The report of `log`, whose events (all, or as [`AnalysisEvents`] keeps them) were read
    /// into `events`.
    pub fn of_events(log: &LogStream, events: &[Arc<Event>]) -> Report {
        let header = log.header_or_derived(events);
        let outcome = header.outcome.unwrap_or_else(|| derive_outcome(events, ""));
        Report {
            test: log.environment().to_string(),
            outcome,
            duration_ms: header.duration_ms,
            services: header.services,
            analysis: analyze(events, outcome),
        }
    }

    /// The report for people.
    pub fn pretty(&self, style: Style) -> Vec<String> {
        let s = style;
        let a = &self.analysis;
        let mut out = vec![format!(
            "{}  {}  {}  [{}]",
            s.paint(Paint::Bold, &self.test),
            s.paint(
                outcome_paint(self.outcome),
                &self.outcome.as_str().to_uppercase()
            ),
            format::run_duration(self.duration_ms),
            self.services.join(", ")
        )];
        let section = |out: &mut Vec<String>, title: &str| {
            out.push(String::new());
            out.push(format!("  {}", s.paint(Paint::Bold, &format!("{title}:"))));
        };
        if let Some(why) = &a.ended_by_rigd {
            section(&mut out, "Ended by rigd");
            out.push(format!("    {why}"));
        }
        if !a.assertions.is_empty() {
            section(&mut out, "Assertions");
            for x in &a.assertions {
                let location = match (&x.file, x.line) {
                    (Some(f), Some(l)) => match x.column {
                        Some(c) => format!("{f}:{l}:{c}: "),
                        None => format!("{f}:{l}: "),
                    },
                    _ => String::new(),
                };
                let mut lines = x.message.lines();
                out.push(format!(
                    "    {location}{}",
                    s.paint(Paint::Red, lines.next().unwrap_or(""))
                ));
                out.extend(lines.map(|l| format!("      {l}")));
            }
        }
        if !a.environment_failures.is_empty() {
            section(&mut out, "Environment failure");
            for error in &a.environment_failures {
                indented_error(&mut out, s, "", error);
            }
        }
        if !a.service_failures.is_empty() {
            section(&mut out, "Service failures");
            for f in &a.service_failures {
                indented_error(&mut out, s, &format!("{}: ", f.service), &f.error);
            }
        }
        if let Some(stall) = &a.stall {
            section(
                &mut out,
                &format!("Stall (no progress for {})", stall.stalled_for),
            );
            for svc in &stall.services {
                let detail = svc.detail().map(|d| format!(" ({d})")).unwrap_or_default();
                out.push(format!("    {}: {}{detail}", svc.name, svc.phase));
            }
        }
        if !a.not_up.is_empty() {
            section(&mut out, "Torn down before it was up");
            for p in &a.not_up {
                out.push(format!("    {}: {}", p.service, p.describe()));
            }
        }
        if !a.errors.is_empty() {
            section(&mut out, "Errors");
            for e in &a.errors {
                let line = match e.kind {
                    TrafficKind::Http => format!(
                        "    {} → {} {} {} ({})",
                        s.paint(Paint::Cyan, &e.method),
                        e.target,
                        e.path,
                        s.http_status(e.status),
                        format::latency(e.latency_ms)
                    ),
                    TrafficKind::Grpc => format!(
                        "    {} → {} {} status={} ({})",
                        s.paint(Paint::Cyan, "gRPC"),
                        e.target,
                        e.path,
                        s.paint(Paint::Red, &e.grpc_status),
                        format::latency(e.latency_ms)
                    ),
                };
                out.push(line);
                for text in [&e.grpc_message, &e.response_body, &e.error] {
                    for l in text.lines().filter(|l| !l.trim().is_empty()) {
                        out.push(format!("      {}", s.paint(Paint::Dim, l)));
                    }
                }
            }
        }
        if a.dropped_observations > 0 {
            section(&mut out, "Not recorded");
            out.push(format!(
                "    {} traffic observations were dropped (observation fell behind)",
                a.dropped_observations
            ));
        }
        if !a.service_errors.is_empty() {
            section(&mut out, "Service stderr");
            for l in &a.service_errors {
                out.push(format!("    {}: {}", l.service, l.data));
            }
        }
        if let Some(p) = &a.phases {
            let parts = phase_parts(p, None);
            if !parts.is_empty() {
                section(&mut out, "Phases");
                out.push(format!("    {}", parts.join(" · ")));
            }
        }
        // Errors, bodies and stderr lines come from services: they may not drive the
        // terminal.
        out.into_iter()
            .map(|line| s.service_text(&line).into_owned())
            .collect()
    }
}

/// Reads the rest of `log`, keeping the events an explanation reads ([`AnalysisEvents`]): with
/// a header line, of the traffic only the errors; without, every exchange, from which the
/// header is derived.
pub fn analysis_events(log: &mut LogStream) -> Result<Vec<Arc<Event>>, CliError> {
    let mut kept = if log.header().is_some() {
        AnalysisEvents::for_analysis_only()
    } else {
        AnalysisEvents::default()
    };
    while let Some(event) = log.next_event()? {
        kept.push(Arc::new(event));
    }
    Ok(kept.finish())
}

/// `startup 1.20s`, `test 0.05s`, ... for the non-zero phases; with `total`, phases under 1 %
/// of it are left out.
pub fn phase_parts(p: &crate::explain::Phases, total: Option<f64>) -> Vec<String> {
    [
        ("artifacts", p.artifacts_ms),
        ("startup", p.startup_ms),
        ("test", p.test_ms),
        ("teardown", p.teardown_ms),
    ]
    .into_iter()
    .filter(|(_, ms)| *ms > 0)
    .filter(|(_, ms)| total.is_none_or(|t| t <= 0.0 || (*ms as f64) >= t * 0.01))
    .map(|(name, ms)| format!("{name} {}", format::run_duration(ms as f64)))
    .collect()
}

/// Runs `rig explain`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("explain", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("explain", 1, "one file or pattern")?;
    let target = parsed.positional_strings().into_iter().next();
    let report = Report::of(&mut logread::load(target.as_deref(), Mode::Lenient, None)?)?;
    if parsed.has("-p") {
        let style = Style::new(parsed.color.enabled_for_stdout());
        Out.lines(report.pretty(style));
    } else {
        Out.line(to_json(&report)?);
    }
    Ok(EXIT_OK)
}

/// An error under a section: its first line (after `lead`) in red, the lines after it (a
/// compiler's output, say) indented under it.
fn indented_error(out: &mut Vec<String>, s: Style, lead: &str, error: &str) {
    let mut lines = error.lines();
    out.push(format!(
        "    {lead}{}",
        s.paint(Paint::Red, lines.next().unwrap_or(""))
    ));
    out.extend(lines.map(|l| format!("      {l}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_failure_is_indented_under_its_section() {
        let failing = rig_types::Event::new(rig_types::EventType::EnvironmentFailing)
            .with_error("artifact \"cargo:/src/api\": exit status 101\nerror[E0425]: nope");
        let analysis = crate::explain::analyze(&[std::sync::Arc::new(failing)], Outcome::Crashed);
        let report = Report {
            test: "orders".into(),
            outcome: Outcome::Crashed,
            duration_ms: 10.0,
            services: vec!["api".into()],
            analysis,
        };
        let lines = report.pretty(Style::new(false));
        let at = lines
            .iter()
            .position(|l| l.contains("exit status 101"))
            .expect("the failure");
        assert_eq!(
            &lines[at..at + 2],
            [
                "    artifact \"cargo:/src/api\": exit status 101",
                "      error[E0425]: nope"
            ]
        );
    }
}
