//! Turning an environment's events into the lines `rig up` prints.
//!
//! [`Progress::render`] is pure (no I/O): it takes one event and returns the lines to show,
//! keeping the little state needed to summarise (per-service start times, health-check
//! failure counts, whether the environment is up yet). Layout, with colour off:
//!
//! ```text
//!   · inventory  starting
//!   ✓ inventory  ready (0.21s)
//!   ! api        still not healthy after 2s (14 failed checks; last: connection refused)
//!   ✗ api        failed: exit status 1 (after 20 failed health checks; last: connection refused)
//!   ~test → api  GET /orders  200  1.2ms
//!     api        | listening on :8080
//! ```
//!
//! Services rigd injects (`~test`, proxies: every name containing `~`) only show up when
//! they fail. Traffic is shown once the environment is up, without rigd's readiness probes.

use std::collections::{HashMap, HashSet};

use rig_types::{Event, EventType, LogStream, Timestamp};

use crate::cli::format::{self, endpoint_text};
use crate::cli::output::{pad, Paint, ServiceColors, Style};

/// First delay after which persistent health-check failures are reported; doubles after
/// each report.
const FIRST_HEALTH_REPORT_SECS: f64 = 2.0;
/// Widest service-name column.
const MAX_NAME_WIDTH: usize = 24;

/// Renders events for `rig up`.
#[derive(Debug)]
pub struct Progress {
    style: Style,
    show_logs: bool,
    width: usize,
    colors: ServiceColors,
    services: HashMap<String, ServiceState>,
    artifacts: HashMap<String, Timestamp>,
    failed: HashSet<String>,
    /// Failure errors printed in full (a compiler's output, say): later reports of the same
    /// failure cut them to their first line.
    shown: Vec<String>,
    first: Option<Timestamp>,
    up: bool,
    tearing_down: bool,
    /// `environment.destroying` arrived without [`Progress::set_tearing_down`]: rig down, the
    /// TTL or rigd shutting down is tearing the environment down.
    torn_down_elsewhere: bool,
}

#[derive(Debug, Default)]
struct ServiceState {
    starting: Option<Timestamp>,
    health_failures: u32,
    first_failure: Option<Timestamp>,
    last_health_error: String,
    next_report_secs: f64,
}

impl ServiceState {
    /// The service became healthy: earlier failed checks no longer explain anything.
    fn forget_health_failures(&mut self) {
        self.health_failures = 0;
        self.first_failure = None;
        self.last_health_error.clear();
        self.next_report_secs = 0.0;
    }

    /// ` (after N failed health checks; last: <error>)` for the checks that failed since the
    /// service last became healthy, or nothing when none did. The last error is left out when
    /// `failure` (the service's own error) already quotes it.
    fn failures_before_healthy(&self, failure: &str) -> String {
        let n = self.health_failures;
        if n == 0 {
            return String::new();
        }
        let last = if failure.contains(&self.last_health_error) {
            String::new()
        } else {
            last_error(&self.last_health_error)
        };
        format!(
            " (after {n} failed health {}{last})",
            plural(n, "check", "checks")
        )
    }
}

impl Progress {
    /// A renderer for an environment with these services (their names set the column width);
    /// `show_logs` renders `service.log` events.
    pub fn new(style: Style, show_logs: bool, service_names: &[String]) -> Progress {
        let width = service_names
            .iter()
            .filter(|n| !is_injected(n))
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(4, MAX_NAME_WIDTH);
        let mut progress = Progress {
            style,
            show_logs,
            width,
            colors: ServiceColors::default(),
            services: HashMap::new(),
            artifacts: HashMap::new(),
            failed: HashSet::new(),
            shown: Vec::new(),
            first: None,
            up: false,
            tearing_down: false,
            torn_down_elsewhere: false,
        };
        for name in service_names {
            progress.color_of(name);
        }
        progress
    }

    /// From now on the environment is being torn down on purpose: stops are shown, and
    /// `environment.destroying`/`environment.down` are not reported as surprises.
    pub fn set_tearing_down(&mut self) {
        self.tearing_down = true;
    }

    /// True once `environment.up` was rendered.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The lines to print for `event` (often none).
    pub fn render(&mut self, event: &Event) -> Vec<String> {
        if self.first.is_none() && !event.timestamp.is_zero() {
            self.first = Some(event.timestamp);
        }
        let svc = event.service.as_str();
        match &event.event_type {
            EventType::ArtifactStarted => {
                self.artifacts
                    .insert(event.artifact.clone(), event.timestamp);
                vec![self.line_free(Mark::Pending, &format!("building {}", event.artifact))]
            }
            EventType::ArtifactCompleted => {
                let took = self
                    .artifacts
                    .get(&event.artifact)
                    .map(|start| format!(" ({})", secs_between(start, &event.timestamp)))
                    .unwrap_or_default();
                vec![self.line_free(Mark::Ok, &format!("built {}{took}", event.artifact))]
            }
            EventType::ArtifactCached => {
                vec![self.line_free(Mark::Ok, &format!("cached {}", event.artifact))]
            }
            EventType::ArtifactFailed => {
                self.shown.push(event.error.clone());
                vec![self.line_free(
                    Mark::Failed,
                    &format!("{} failed: {}", event.artifact, event.error),
                )]
            }
            EventType::ServicePrestart if !is_injected(svc) => {
                vec![self.line(Mark::Pending, svc, "running prestart hooks")]
            }
            EventType::ServiceStarting => {
                let at = event.timestamp;
                self.state(svc).starting = Some(at);
                if is_injected(svc) {
                    return Vec::new();
                }
                vec![self.line(Mark::Pending, svc, "starting")]
            }
            EventType::ServiceInit if !is_injected(svc) => {
                vec![self.line(Mark::Pending, svc, "running init hooks")]
            }
            EventType::ServiceReady => {
                self.state(svc).forget_health_failures();
                if is_injected(svc) {
                    return Vec::new();
                }
                let since = self.state(svc).starting.or(self.first);
                let took = since
                    .map(|s| format!(" ({})", secs_between(&s, &event.timestamp)))
                    .unwrap_or_default();
                vec![self.line(Mark::Ok, svc, &format!("ready{took}"))]
            }
            EventType::ServiceHealthy => {
                self.state(svc).forget_health_failures();
                Vec::new()
            }
            EventType::ServiceFailed => {
                self.failed.insert(svc.to_string());
                self.shown.push(event.error.clone());
                let health = self.state(svc).failures_before_healthy(&event.error);
                let error = if event.error.is_empty() {
                    "failed".to_string()
                } else {
                    format!("failed: {}", event.error)
                };
                vec![self.line(Mark::Failed, svc, &format!("{error}{health}"))]
            }
            EventType::ServiceStopped if self.tearing_down && !is_injected(svc) => {
                vec![self.line(Mark::Stopped, svc, "stopped")]
            }
            EventType::HealthCheckFailed => self.health_failed(event),
            EventType::ServiceLog if self.show_logs || is_rig_remark(event) => {
                self.log_lines(event)
            }
            EventType::CallbackRequest => {
                let Some(cb) = &event.callback else {
                    return Vec::new();
                };
                let what = serde_json::to_value(cb.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let subject = if svc.is_empty() { "environment" } else { svc };
                vec![self.line(
                    Mark::Warn,
                    subject,
                    &format!(
                        "needs client function {:?} ({what}), which rig up cannot run; it is \
                         answered with an error",
                        cb.name
                    ),
                )]
            }
            EventType::EnvironmentFailing => {
                if !event.service.is_empty() && self.failed.contains(&event.service) {
                    return Vec::new();
                }
                // `artifact "<name>": <error>`, whose failure was just shown.
                if self.shown.iter().any(|e| event.error.ends_with(e.as_str())) {
                    return Vec::new();
                }
                vec![self.line_free(Mark::Failed, &event.error)]
            }
            EventType::EnvironmentDestroying if !self.tearing_down => {
                self.torn_down_elsewhere = true;
                // rigd says why when it ends the environment itself; a client does not.
                let text = if event.message.is_empty() {
                    "the environment is being torn down (by rig down, its TTL or rigd shutting \
                     down)"
                        .to_string()
                } else {
                    format!("the environment is being torn down: {}", event.message)
                };
                vec![self.line_free(Mark::Warn, &text)]
            }
            EventType::EnvironmentUp => self.environment_up(event),
            EventType::EnvironmentDown => self.environment_down(event),
            EventType::TestNote => {
                vec![self.line_free(Mark::Warn, &format!("note: {}", event.error))]
            }
            EventType::ProgressStall => self.stall(event),
            EventType::RequestCompleted
            | EventType::GrpcCallCompleted
            | EventType::ConnectionClosed
            | EventType::KafkaRequestCompleted
                if self.up =>
            {
                self.traffic(event).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    fn health_failed(&mut self, event: &Event) -> Vec<String> {
        let svc = event.service.clone();
        let at = event.timestamp;
        let state = self.state(&svc);
        state.health_failures += 1;
        state.last_health_error = event.error.clone();
        let first = *state.first_failure.get_or_insert(at);
        if state.next_report_secs == 0.0 {
            state.next_report_secs = FIRST_HEALTH_REPORT_SECS;
        }
        let elapsed = seconds_between(&first, &at);
        if elapsed < state.next_report_secs || is_injected(&svc) {
            return Vec::new();
        }
        while state.next_report_secs <= elapsed {
            state.next_report_secs *= 2.0;
        }
        let text = format!(
            "still not healthy after {:.0}s ({} failed {}{})",
            elapsed.floor(),
            state.health_failures,
            plural(state.health_failures, "check", "checks"),
            last_error(&state.last_health_error)
        );
        vec![self.line(Mark::Warn, &svc, &text)]
    }

    fn environment_up(&mut self, event: &Event) -> Vec<String> {
        self.up = true;
        let took = self
            .first
            .map(|f| format!(" in {}", secs_between(&f, &event.timestamp)))
            .unwrap_or_default();
        let name = if event.environment.is_empty() {
            "environment".to_string()
        } else {
            format!("environment {:?}", event.environment)
        };
        let mut lines = vec![
            self.line_free(Mark::Ok, &format!("{name} is up{took}")),
            String::new(),
        ];

        let rows: Vec<(&str, &str, String)> = event
            .ingresses
            .iter()
            .filter(|(svc, _)| !is_injected(svc))
            .flat_map(|(svc, ingresses)| {
                if ingresses.is_empty() {
                    return vec![(svc.as_str(), "-", "(no ingress)".to_string())];
                }
                ingresses
                    .iter()
                    .map(|(ingress, ep)| (svc.as_str(), ingress.as_str(), endpoint_text(ep)))
                    .collect()
            })
            .collect();
        let svc_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let ingress_width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
        for (svc, ingress, text) in &rows {
            let color = self.color_of(svc);
            lines.push(format!(
                "  {}  {}  {}",
                self.style.paint(color, &pad(svc, svc_width)),
                self.style.paint(Paint::Dim, &pad(ingress, ingress_width)),
                self.style.paint(Paint::Bold, text)
            ));
        }
        if !event.env_dir.is_empty() {
            if !rows.is_empty() {
                lines.push(String::new());
            }
            lines.push(format!(
                "  {} {}",
                self.style.paint(Paint::Dim, "env dir:"),
                event.env_dir
            ));
        }
        lines
    }

    /// `text` with every failure error already printed in full cut to its first line. An
    /// error's continuation lines appear in `text` after `continuation` (what prefixes them
    /// there).
    pub fn without_repeats(&self, text: &str, continuation: &str) -> String {
        let mut out = text.to_string();
        for error in self.shown.iter().filter(|e| e.contains('\n')) {
            let rendered = error.trim_end().replace('\n', &format!("\n{continuation}"));
            let first = error.lines().next().unwrap_or_default();
            out = out.replace(&rendered, &format!("{first} (in full above)"));
        }
        out
    }

    fn environment_down(&mut self, event: &Event) -> Vec<String> {
        // A teardown, ours or another's, is no surprise; `rig up` says whose it was.
        if (self.tearing_down || self.torn_down_elsewhere) && event.message.is_empty() {
            return Vec::new();
        }
        let mut lines = vec![String::new()];
        if event.message.is_empty() {
            lines.push(self.line_free(Mark::Failed, "the environment shut down unexpectedly"));
        } else {
            let message = self.without_repeats(&event.message, "");
            for (i, l) in message.lines().enumerate() {
                lines.push(if i == 0 {
                    self.style.paint(Paint::Red, l)
                } else {
                    l.to_string()
                });
            }
        }
        lines
    }

    fn stall(&mut self, event: &Event) -> Vec<String> {
        let mut lines = Vec::new();
        match &event.diagnostic {
            Some(d) => {
                lines.push(
                    self.line_free(Mark::Warn, &format!("no progress for {}", d.stalled_for)),
                );
                for s in &d.services {
                    let detail = s.detail().map(|d| format!(" ({d})")).unwrap_or_default();
                    lines.push(format!("      {}: {}{detail}", s.name, s.phase));
                }
            }
            None => {
                let mut it = event.message.lines();
                if let Some(first) = it.next() {
                    lines.push(self.line_free(Mark::Warn, first));
                }
                lines.extend(it.map(|l| format!("    {l}")));
            }
        }
        lines
    }

    fn log_lines(&mut self, event: &Event) -> Vec<String> {
        let Some(log) = &event.log else {
            return Vec::new();
        };
        let bar = match &log.stream {
            LogStream::Stderr => self.style.paint(Paint::Red, "!"),
            rig if rig.is_rig() => self.style.paint(Paint::Yellow, "rig:"),
            _ => self.style.paint(Paint::Dim, "|"),
        };
        let name = self.name_cell(&event.service);
        log.data
            .trim_end_matches(['\n', '\r'])
            .split('\n')
            .map(|l| {
                let text = self.style.service_text(l.trim_end_matches('\r'));
                format!("    {name} {bar} {text}")
            })
            .collect()
    }

    /// One compact line for an observed exchange; none for rigd's readiness probes (as
    /// `rig traffic`), which go on after the environment is up (proxies' own checks, and
    /// events the observer delivers a moment late).
    fn traffic(&mut self, event: &Event) -> Option<String> {
        let s = self.style;
        let probe = event.request.as_ref().is_some_and(|r| r.probe)
            || event.grpc_call.as_ref().is_some_and(|g| g.probe)
            || event.connection.as_ref().is_some_and(|c| c.probe);
        if probe {
            return None;
        }
        let (source, target, detail) = if let Some(r) = &event.request {
            let detail = format!(
                "{} {}  {}  {}",
                s.paint(Paint::Cyan, &r.method),
                r.path,
                s.http_status(r.status_code),
                format::latency(r.latency_ms)
            );
            (&r.source, &r.target, detail)
        } else if let Some(g) = &event.grpc_call {
            let status = format::grpc_status(&g.grpc_status);
            let ok = format::grpc_ok(&g.grpc_status);
            let mut detail = format!(
                "{} {}/{}  {}  {}",
                s.paint(Paint::Cyan, "gRPC"),
                g.service,
                g.method,
                s.paint(if ok { Paint::Green } else { Paint::Red }, &status),
                format::latency(g.latency_ms)
            );
            if !ok && !g.grpc_message.is_empty() {
                detail.push_str(&format!("  {}", g.grpc_message));
            }
            (&g.source, &g.target, detail)
        } else if let Some(c) = &event.connection {
            let detail = format!(
                "{}  {}  {}↑ {}↓",
                s.paint(Paint::Cyan, "TCP"),
                format::latency(c.duration_ms),
                format::bytes(c.bytes_in),
                format::bytes(c.bytes_out)
            );
            (&c.source, &c.target, detail)
        } else if let Some(k) = &event.kafka_request {
            let detail = format!(
                "{} v{}  {}  {}↑ {}↓",
                s.paint(Paint::Cyan, &k.api_name),
                k.api_version,
                format::latency(k.latency_ms),
                format::bytes(k.request_size),
                format::bytes(k.response_size)
            );
            (&k.source, &k.target, detail)
        } else {
            return None;
        };
        let (source, target) = (source.clone(), target.clone());
        let src_color = self.color_of(&source);
        let dst_color = self.color_of(&target);
        Some(format!(
            "  {} → {}  {detail}",
            s.paint(src_color, &source),
            s.paint(dst_color, &target)
        ))
    }

    fn state(&mut self, service: &str) -> &mut ServiceState {
        self.services.entry(service.to_string()).or_default()
    }

    fn color_of(&mut self, name: &str) -> Paint {
        self.colors.of(name)
    }

    /// The service name padded to the column width, in its colour.
    fn name_cell(&mut self, name: &str) -> String {
        let color = self.color_of(name);
        self.style.paint(color, &pad(name, self.width))
    }

    /// `  <mark> <service> <text>`.
    fn line(&mut self, mark: Mark, service: &str, text: &str) -> String {
        let name = self.name_cell(service);
        let text = match mark {
            Mark::Failed => self.style.paint(Paint::Red, text),
            Mark::Pending | Mark::Stopped => self.style.paint(Paint::Dim, text),
            _ => text.to_string(),
        };
        format!("  {} {name}  {text}", mark.render(self.style))
    }

    /// `  <mark> <text>`, for lines about no single service.
    fn line_free(&self, mark: Mark, text: &str) -> String {
        let text = match mark {
            Mark::Failed => self.style.paint(Paint::Red, text),
            _ => text.to_string(),
        };
        format!("  {} {text}", mark.render(self.style))
    }
}

#[derive(Debug, Clone, Copy)]
enum Mark {
    Pending,
    Ok,
    Failed,
    Warn,
    Stopped,
}

impl Mark {
    fn render(self, style: Style) -> String {
        match self {
            Mark::Pending => style.paint(Paint::Dim, "·"),
            Mark::Ok => style.paint(Paint::Green, "✓"),
            Mark::Failed => style.paint(Paint::Red, "✗"),
            Mark::Warn => style.paint(Paint::Yellow, "!"),
            Mark::Stopped => style.paint(Paint::Dim, "■"),
        }
    }
}

/// Services rigd inserts itself (`~test`, `api~proxy~~test`): validation rejects `~` in
/// user service names.
pub fn is_injected(name: &str) -> bool {
    name.contains('~')
}

fn seconds_between(from: &Timestamp, to: &Timestamp) -> f64 {
    if from.is_zero() || to.is_zero() {
        return 0.0;
    }
    to.duration_since(from).as_nanos() as f64 / 1e9
}

fn secs_between(from: &Timestamp, to: &Timestamp) -> String {
    format::seconds(seconds_between(from, to))
}

/// `; last: <error>`, or nothing when the probe gave no error text.
fn last_error(error: &str) -> String {
    if error.is_empty() {
        String::new()
    } else {
        format!("; last: {error}")
    }
}

fn plural<'a>(n: u32, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests;

/// A `service.log` of rigd's own remarks about a service, shown even without the service's
/// output: it says what to fix.
fn is_rig_remark(event: &Event) -> bool {
    event.log.as_ref().is_some_and(|l| l.stream.is_rig())
}
