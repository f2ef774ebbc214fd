//! The failure summary carried by `environment.down`: what failed, the failed services' last
//! output, and the few events that led up to it.
//!
//! ```text
//! environment failed:
//!   service "broken": exit status 1
//!
//!   broken output:
//!   | starting
//!   | intentional failure
//!
//!    0.00s  ingress.published      broken
//!    0.01s  service.starting       broken
//!    0.05s  service.failed         broken       exit status 1
//!    0.06s  environment.failing
//! ```

use std::fmt::Write;
use std::sync::Arc;

use rig_types::{Event, EventType};

use crate::events::EventLog;

/// Output lines of each failed service included in the summary.
const LOG_TAIL_LINES: usize = 5;
/// Events shown before the first `environment.failing`.
const CONTEXT_EVENTS: usize = 5;
/// Output lines searched for a failure report that the tail does not reach (a Rust panic
/// followed by its backtrace, say).
const FAILURE_SCAN_LINES: usize = 200;

/// The last `n` lines of `scanned` (a service's formatted output tail, one `  | ` line per
/// output line). When those miss the failure report before them (`panicked at`, `panic:`,
/// `error: `...; see [`is_failure_line`]), it leads, with a panic's message line, then
/// `  | [...]`, so a backtrace does not push out what went wrong.
fn tail_with_failure_line(scanned: &str, n: usize) -> String {
    let lines: Vec<&str> = scanned.lines().collect();
    let start = lines.len().saturating_sub(n);
    let text = |line: &str| line.strip_prefix("  | ").unwrap_or(line).to_string();
    let report = lines[..start]
        .iter()
        .rposition(|line| crate::explain::is_failure_line(&text(line)));
    let Some(at) = report else {
        return lines[start..].join("\n");
    };
    // Rust prints `thread 'main' panicked at src/main.rs:4:9:` and the message on the next
    // line.
    let header_only = text(lines[at]).contains("panicked at ") && lines[at].ends_with(':');
    let end = if header_only { at + 2 } else { at + 1 }.min(start);
    let mut out: Vec<&str> = lines[at..end].to_vec();
    if end < start {
        out.push("  | [...]");
    }
    out.extend_from_slice(&lines[start..]);
    out.join("\n")
}

/// The `environment.down` message: empty unless the environment failed.
pub fn down_summary(log: &EventLog) -> String {
    let events = log.lifecycle_events();
    let failing: Vec<&Arc<Event>> = events
        .iter()
        .filter(|e| e.event_type == EventType::EnvironmentFailing)
        .collect();
    if failing.is_empty() {
        return String::new();
    }

    let mut out = String::from("environment failed:");
    for e in &failing {
        let _ = write!(out, "\n  {}", e.error);
    }

    let mut seen: Vec<&str> = Vec::new();
    for e in &failing {
        if e.service.is_empty() || seen.contains(&e.service.as_str()) {
            continue;
        }
        seen.push(&e.service);
        let until = output_cutoff(&events, &e.service);
        let scanned = log.service_log_tail_before(&e.service, FAILURE_SCAN_LINES, until);
        let tail = tail_with_failure_line(&scanned, LOG_TAIL_LINES);
        if !tail.is_empty() {
            let _ = write!(out, "\n\n  {} output:\n{tail}", e.service);
        }
    }

    let timeline: Vec<&Arc<Event>> = events.iter().filter(|e| in_timeline(e)).collect();
    if let Some(trigger) = timeline
        .iter()
        .position(|e| e.event_type == EventType::EnvironmentFailing)
    {
        let start = events.first().map(|e| e.timestamp).unwrap_or_default();
        let from = trigger.saturating_sub(CONTEXT_EVENTS);
        out.push('\n');
        for e in &timeline[from..=trigger] {
            out.push('\n');
            timeline_line(&mut out, &first_line_only(e), elapsed_secs(&start, e));
        }
    }
    out
}

/// The `seq` of the first event after which `service`'s output no longer explains its
/// failure: its `service.failed` or `service.stopping`, or `environment.destroying` (what it
/// writes while rigd stops it, a traceback of the SIGINT say, would push out the lines that
/// do). `u64::MAX` when there is none.
fn output_cutoff(events: &[Arc<Event>], service: &str) -> u64 {
    events
        .iter()
        .find(|e| match e.event_type {
            EventType::ServiceFailed | EventType::ServiceStopping => e.service == service,
            EventType::EnvironmentDestroying => true,
            _ => false,
        })
        .map_or(u64::MAX, |e| e.seq)
}

fn in_timeline(e: &Event) -> bool {
    !matches!(
        e.event_type,
        EventType::ServiceLog
            | EventType::HealthCheckFailed
            | EventType::CallbackRequest
            | EventType::CallbackResponse
            | EventType::RequestCompleted
            | EventType::ConnectionOpened
            | EventType::ConnectionClosed
            | EventType::GrpcCallCompleted
            | EventType::ServiceStopping
            | EventType::ServiceStopped
    )
}

/// `e` with only the first line of a multi-line error (a compiler's output, say): the
/// failures above the timeline give it whole.
fn first_line_only(e: &Arc<Event>) -> Arc<Event> {
    match e.error.split_once('\n') {
        Some((first, _)) => {
            let mut short = Event::clone(e);
            short.error = format!("{first} …");
            Arc::new(short)
        }
        None => e.clone(),
    }
}

fn elapsed_secs(start: &rig_types::Timestamp, e: &Event) -> f64 {
    e.timestamp.duration_since(start).as_nanos() as f64 / 1e9
}

/// One timeline line, as upstream's `formatTimelineEvent`.
fn timeline_line(out: &mut String, e: &Event, elapsed: f64) {
    let kind = e.event_type.as_str();
    if e.event_type == EventType::ProgressStall && !e.message.is_empty() {
        let mut lines = e.message.lines();
        let _ = write!(
            out,
            "  {elapsed:5.2}s  {kind:<22} {}",
            lines.next().unwrap_or("")
        );
        for line in lines {
            let _ = write!(out, "\n          {line}");
        }
        return;
    }
    crate::logfiles::generic_line(out, e, elapsed, false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig_types::{LogStream, Timestamp};

    fn at(mut e: Event, millis: i128) -> Event {
        e.timestamp = Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + millis * 1_000_000);
        e
    }

    #[test]
    fn clean_shutdown_has_no_summary() {
        let log = EventLog::new();
        log.publish(Event::for_service(EventType::ServiceReady, "api"));
        log.publish(Event::new(EventType::EnvironmentDestroying));
        assert_eq!(down_summary(&log), "");
    }

    #[test]
    fn crash_summary_has_errors_output_and_timeline() {
        let log = EventLog::new();
        log.publish(at(
            Event::for_service(EventType::IngressPublished, "api"),
            0,
        ));
        log.publish(at(
            Event::for_service(EventType::ServiceStarting, "broken"),
            10,
        ));
        log.publish(at(
            Event::log("broken", LogStream::Stdout, "starting\n"),
            20,
        ));
        log.publish(at(
            Event::log("broken", LogStream::Stderr, "intentional failure\n"),
            30,
        ));
        log.publish(at(
            Event::for_service(EventType::HealthCheckFailed, "broken").with_error("refused"),
            35,
        ));
        log.publish(at(
            Event::for_service(EventType::ServiceFailed, "broken").with_error("exit status 1"),
            40,
        ));
        log.publish(at(
            Event::for_service(EventType::ServiceStopped, "broken"),
            41,
        ));
        log.publish(at(
            Event::for_service(EventType::ServiceStopping, "api"),
            42,
        ));
        log.publish(at(Event::for_service(EventType::ServiceStopped, "api"), 43));
        let mut failing = Event::for_service(EventType::EnvironmentFailing, "broken");
        failing.error = "service \"broken\": exit status 1".into();
        log.publish(at(failing, 1500));

        let summary = down_summary(&log);
        let expected = [
            "environment failed:",
            "  service \"broken\": exit status 1",
            "",
            "  broken output:",
            "  | starting",
            "  | intentional failure",
            "",
            "   0.00s  ingress.published      api",
            "   0.01s  service.starting       broken",
            "   0.04s  service.failed         broken       exit status 1",
            "   1.50s  environment.failing    broken",
        ]
        .join("\n");
        assert_eq!(summary, expected);
        assert!(!summary.contains("service.stopping") && !summary.contains("service.stopped"));
    }

    /// A readiness failure: rigd's SIGINT makes the service print a traceback after its
    /// `service.failed`; the lines from before explain the failure.
    #[test]
    fn output_after_the_failure_is_not_the_failed_services_last_output() {
        let log = EventLog::new();
        log.publish(Event::for_service(EventType::ServiceStarting, "web"));
        log.publish(Event::log(
            "web",
            LogStream::Stderr,
            "KeyError: 'DATABASE_URL'\nserving on port 9999 instead\n",
        ));
        log.publish(
            Event::for_service(EventType::ServiceFailed, "web")
                .with_error("readiness check failed after 3s"),
        );
        log.publish(Event::log(
            "web",
            LogStream::Stderr,
            "Traceback (most recent call last):\n  File \"app.py\", line 9\n    \
             time.sleep(1)\nKeyboardInterrupt\n",
        ));
        let mut failing = Event::for_service(EventType::EnvironmentFailing, "web");
        failing.error = "service \"web\": readiness check failed after 3s".into();
        log.publish(failing);

        let summary = down_summary(&log);
        assert!(
            summary.contains(
                "  web output:\n  | KeyError: 'DATABASE_URL'\n  | serving on port 9999 instead\n\n"
            ),
            "{summary}"
        );
        assert!(!summary.contains("KeyboardInterrupt"), "{summary}");
    }

    /// Output written once the service was told to stop, or the environment began to be torn
    /// down, does not explain a failure either.
    #[test]
    fn output_after_stopping_or_destroying_is_left_out() {
        for stop in [
            Event::for_service(EventType::ServiceStopping, "db"),
            Event::new(EventType::EnvironmentDestroying),
        ] {
            let log = EventLog::new();
            log.publish(Event::log("db", LogStream::Stderr, "disk full\n"));
            log.publish(stop.clone());
            log.publish(Event::log("db", LogStream::Stderr, "shutting down\n"));
            let mut failing = Event::for_service(EventType::EnvironmentFailing, "db");
            failing.error = "service \"db\": did not exit in time".into();
            log.publish(failing);

            let summary = down_summary(&log);
            assert!(
                summary.contains("  db output:\n  | disk full\n"),
                "{stop:?}: {summary}"
            );
            assert!(!summary.contains("shutting down"), "{stop:?}: {summary}");
        }
    }

    #[test]
    fn timeline_keeps_five_events_before_the_trigger_and_formats_stalls() {
        let log = EventLog::new();
        for i in 0..8 {
            log.publish(at(
                Event::for_service(EventType::ServiceStarting, format!("s{i}")),
                i,
            ));
        }
        let mut stall = Event::new(EventType::ProgressStall);
        stall.message = "no progress for 30s:\n  a: pending — waiting on b".into();
        log.publish(at(stall, 100));
        let mut failing = Event::new(EventType::EnvironmentFailing);
        failing.error = "artifact build failed".into();
        log.publish(at(failing, 200));

        let summary = down_summary(&log);
        let timeline: Vec<&str> = summary.split("\n\n").nth(1).unwrap().lines().collect();
        assert_eq!(
            timeline,
            [
                "   0.00s  service.starting       s4",
                "   0.01s  service.starting       s5",
                "   0.01s  service.starting       s6",
                "   0.01s  service.starting       s7",
                "   0.10s  progress.stall         no progress for 30s:",
                "            a: pending — waiting on b",
                "   0.20s  environment.failing",
            ]
        );
        assert!(summary.starts_with("environment failed:\n  artifact build failed\n\n"));
    }

    #[test]
    fn the_timeline_gives_the_first_line_of_a_long_error() {
        let log = EventLog::new();
        let mut failed = Event::new(EventType::ArtifactFailed);
        failed.artifact = "cargo:/src/api".into();
        failed.error = "cargo build: exit status 101\nerror[E0425]: nope\n --> main.rs".into();
        log.publish(failed.clone());
        let mut failing = Event::new(EventType::EnvironmentFailing);
        failing.error = format!("artifact \"cargo:/src/api\": {}", failed.error);
        log.publish(failing);

        let summary = down_summary(&log);
        // Whole in the failure, once.
        assert_eq!(
            summary.matches("error[E0425]: nope").count(),
            1,
            "{summary}"
        );
        let timeline = summary.split("\n\n").nth(1).unwrap();
        assert!(
            timeline
                .contains("artifact.failed        cargo:/src/api cargo build: exit status 101 …"),
            "{timeline}"
        );
    }

    /// A Rust panic with a backtrace: the last lines are frames; the panic and its message
    /// lead the tail.
    #[test]
    fn a_failure_report_before_the_tail_leads_it() {
        let output = [
            "listening",
            "thread 'main' panicked at src/main.rs:4:43:",
            "PORT: NotPresent",
            "stack backtrace:",
            "   0: __rustc::rust_begin_unwind",
            "   1: core::panicking::panic_fmt",
            "   2: core::result::unwrap_failed",
            "   3: greeter::main",
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
        ]
        .map(|l| format!("  | {l}"))
        .join("\n");
        assert_eq!(
            tail_with_failure_line(&output, 5),
            [
                "  | thread 'main' panicked at src/main.rs:4:43:",
                "  | PORT: NotPresent",
                "  | [...]",
                "  |    0: __rustc::rust_begin_unwind",
                "  |    1: core::panicking::panic_fmt",
                "  |    2: core::result::unwrap_failed",
                "  |    3: greeter::main",
                "  | note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose \
                 backtrace.",
            ]
            .join("\n")
        );
        // Within the tail already, or absent: the plain tail.
        assert_eq!(tail_with_failure_line(&output, 9), output);
        let plain = "  | a\n  | b\n  | c";
        assert_eq!(tail_with_failure_line(plain, 2), "  | b\n  | c");
        // Adjacent to the tail: no gap marker.
        let adjacent = "  | x\n  | panic: boom\n  | goroutine 1\n  | main.go:3";
        assert_eq!(
            tail_with_failure_line(adjacent, 2),
            "  | panic: boom\n  | goroutine 1\n  | main.go:3"
        );
    }
}
