//! The condensed explanation: a few `rig: ` lines, root causes first (the DELETE `summary`,
//! printed by the SDKs when a test fails).
//!
//! ```text
//! rig: broken failed: exit status 1
//! rig: stall (30s):
//! rig:   api: published (waiting on db)
//! rig: POST → api /orders 500: {"error":"relation \"orders\" does not exist"}
//! rig: gRPC → temporal temporal.v1.WorkflowService/Start status=5: namespace not found
//! rig: api stderr: pq: relation "orders" does not exist
//! ```

use std::collections::HashSet;
use std::fmt::Write;

use super::analysis::{Analysis, ServiceLine, TrafficError, TrafficKind};
use crate::cli::output::terminal_safe;
use crate::logfiles::Outcome;

/// Service failures shown at most.
pub const MAX_FAILURES: usize = 5;
/// Services listed under a stall at most.
pub const MAX_STALL_SERVICES: usize = 4;
/// Distinct traffic errors shown at most.
pub const MAX_TRAFFIC_ERRORS: usize = 7;
/// Stderr lines shown at most.
pub const MAX_STDERR_LINES: usize = 3;
/// Response bodies are cut after this many bytes (at a character boundary) and get `...`.
pub const MAX_BODY_BYTES: usize = 200;

const PREFIX: &str = "rig: ";

/// The condensed explanation of `a`; `""` when the run passed or there is nothing to report.
///
/// Sections, in order, each with its own cap (unused room does not carry over):
/// 0. when no service failed and nothing stalled, why the environment failed:
///    `rig: environment failed: <error>` (an artifact not built or pulled; rig-rs addition);
/// 1. service failures, at most 5: `rig: <svc> failed: <error>`;
/// 2. the last stall: `rig: stall (<dur>):` and at most 4 `rig:   <svc>: <phase>[ (waiting on
///    a, b)]`;
/// 3. a run torn down before it was up, with no failure: `rig: torn down before it was up:`
///    and at most 4 `rig:   <svc>: <phase>[ (<n> failed readiness checks; the last: <error>)]`
///    (rig-rs addition);
/// 4. traffic errors, root cause first (as [`Analysis::errors`]), at most 7 after de-duplication on target, path, status
///    and gRPC status: `rig: <METHOD> → <target> <path> <status>[: <body>]` or
///    `rig: gRPC → <target> <Service/Method> status=<s>[: <body or message>]`;
/// 5. one line when traffic observations were dropped (rig-rs addition);
/// 6. stderr, at most 3: `rig: <svc> stderr: <line>`. Lines matched by a traffic error's
///    fingerprint come first; then, from the failed services, recognised failure lines (Rust
///    panics and their message, Go `panic:`/`fatal error:`, `error:` lines), or when there are
///    none their last lines (backtrace noise skipped).
///
/// A capped section (1 to 4) that had more to show ends with `rig:   ... and <n> more <what>s
/// (`rig explain` lists them all)`.
///
/// Assertions and the run's header are never included: the test framework printed them.
/// Multi-line texts continue on `rig:   ` lines, so every line starts with `rig: `. Colour codes
/// are dropped and other control characters escaped (`\u{1b}`, `\r`).
pub fn condensed(a: &Analysis) -> String {
    if a.outcome == Outcome::Passed
        || (a.service_failures.is_empty()
            && a.environment_failures.is_empty()
            && a.errors.is_empty()
            && a.service_errors.is_empty()
            && a.stall.is_none()
            && a.not_up.is_empty()
            && a.dropped_observations == 0)
    {
        return String::new();
    }
    let mut out = String::new();
    // Only when no service failure or stall explains it (upstream's lines stay as they are):
    // an artifact that could not be built or pulled.
    if a.service_failures.is_empty() && a.stall.is_none() {
        for error in &a.environment_failures {
            line(&mut out, &format!("environment failed: {error}"));
        }
    }
    for f in a.service_failures.iter().take(MAX_FAILURES) {
        line(&mut out, &format!("{} failed: {}", f.service, f.error));
    }
    left_out(
        &mut out,
        a.service_failures.len(),
        MAX_FAILURES,
        "failed service",
    );
    if let Some(stall) = &a.stall {
        line(&mut out, &format!("stall ({}):", stall.stalled_for));
        for s in stall.services.iter().take(MAX_STALL_SERVICES) {
            let mut text = format!("  {}: {}", s.name, s.phase);
            if let Some(detail) = s.detail() {
                let _ = write!(text, " ({detail})");
            }
            line(&mut out, &text);
        }
        left_out(
            &mut out,
            stall.services.len(),
            MAX_STALL_SERVICES,
            "service",
        );
    }
    if !a.not_up.is_empty() {
        line(&mut out, "torn down before it was up:");
        for p in a.not_up.iter().take(MAX_STALL_SERVICES) {
            line(&mut out, &format!("  {}: {}", p.service, p.describe()));
        }
        left_out(&mut out, a.not_up.len(), MAX_STALL_SERVICES, "service");
    }
    let mut seen = HashSet::new();
    let distinct: Vec<&TrafficError> = a
        .errors
        .iter()
        .filter(|e| seen.insert((&e.target, &e.path, e.status, &e.grpc_status)))
        .collect();
    for e in distinct.iter().take(MAX_TRAFFIC_ERRORS) {
        line(&mut out, &traffic_line(e));
    }
    left_out(
        &mut out,
        distinct.len(),
        MAX_TRAFFIC_ERRORS,
        "traffic error",
    );
    if a.dropped_observations > 0 {
        line(
            &mut out,
            &format!(
                "{} traffic observations were not recorded (observation fell behind); \
                 errors among them are not shown",
                a.dropped_observations
            ),
        );
    }
    for l in stderr_picks(a) {
        line(&mut out, &format!("{} stderr: {}", l.service, l.data));
    }
    out.truncate(out.trim_end_matches('\n').len());
    out
}

/// Says how many of `total` items (`what`, singular) were left out when only `shown` were
/// listed, and where to see them all.
fn left_out(out: &mut String, total: usize, shown: usize, what: &str) {
    let more = total.saturating_sub(shown);
    if more > 0 {
        let s = if more == 1 { "" } else { "s" };
        line(
            out,
            &format!("  ... and {more} more {what}{s} (`rig explain` lists them all)"),
        );
    }
}

/// Appends `text` as `rig: ` lines: the first line as is, further lines indented. Colour codes
/// are dropped and other control characters escaped: the summary goes into test output, and
/// what services wrote may not drive the terminal it is read on.
fn line(out: &mut String, text: &str) {
    let mut lines = text.trim_end_matches('\n').split('\n');
    let safe = |line: &str| terminal_safe(line, false).into_owned();
    let _ = writeln!(out, "{PREFIX}{}", safe(lines.next().unwrap_or("")));
    for more in lines {
        let _ = writeln!(out, "{PREFIX}  {}", safe(more));
    }
}

fn traffic_line(e: &TrafficError) -> String {
    let mut text = match e.kind {
        TrafficKind::Http => format!("{} → {} {} {}", e.method, e.target, e.path, e.status),
        TrafficKind::Grpc => format!("gRPC → {} {} status={}", e.target, e.path, e.grpc_status),
    };
    let detail = one_line(e.detail());
    if !detail.is_empty() {
        text.push_str(": ");
        text.push_str(&truncate(&detail, MAX_BODY_BYTES));
    }
    text
}

/// `text` trimmed, with line breaks (and the whitespace around them) turned into one space.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `max` bytes of `text`, cut at a character boundary, with `...` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The stderr lines worth showing; see [`condensed`].
fn stderr_picks(a: &Analysis) -> Vec<&ServiceLine> {
    let split = a.correlated_service_errors.min(a.service_errors.len());
    let (correlated, failed) = a.service_errors.split_at(split);
    let mut picks: Vec<&ServiceLine> = correlated.iter().take(MAX_STDERR_LINES).collect();
    let room = MAX_STDERR_LINES - picks.len();
    if room == 0 {
        return picks;
    }
    let salient = salient_lines(failed);
    if salient.is_empty() {
        let plain: Vec<&ServiceLine> = failed.iter().filter(|l| !is_noise(&l.data)).collect();
        picks.extend_from_slice(&plain[plain.len().saturating_sub(room)..]);
    } else {
        picks.extend(salient.into_iter().take(room));
    }
    picks
}

/// Lines that report a failure, in order; a Rust panic header whose message is on the next
/// line brings that line along.
fn salient_lines(lines: &[ServiceLine]) -> Vec<&ServiceLine> {
    let mut out: Vec<&ServiceLine> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !is_failure_line(&l.data) {
            continue;
        }
        if !out.iter().any(|o| std::ptr::eq(*o, l)) {
            out.push(l);
        }
        let header_only = l.data.contains("panicked at ") && l.data.trim_end().ends_with(':');
        if let Some(next) = lines
            .get(i + 1)
            .filter(|n| header_only && n.service == l.service)
        {
            out.push(next);
        }
    }
    out
}

/// Failure reports of Rust (`panicked at`, `Error: ` from `main`) and Go (`panic:`,
/// `fatal error:`) programs, and lines starting with `error:`/`fatal:`.
pub(crate) fn is_failure_line(line: &str) -> bool {
    let lower = line.trim_start().to_lowercase();
    line.contains("panicked at ")
        || ["panic: ", "fatal error: ", "error: ", "error[", "fatal: "]
            .iter()
            .any(|p| lower.starts_with(p))
}

/// Backtrace and hint lines that explain nothing by themselves.
fn is_noise(line: &str) -> bool {
    let trimmed = line.trim_start();
    line.starts_with('\t')
        || trimmed.starts_with("note: run with `RUST_BACKTRACE")
        || trimmed.starts_with("stack backtrace:")
        || trimmed.starts_with("goroutine ")
}
