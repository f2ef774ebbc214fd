//! The human-readable timeline (`<base>.log`) written next to the JSONL log.
//!
//! ```text
//! rig: TestOrders  CRASHED  1.25s  [api, broken]
//!    0.00s  ingress.published      api
//!    0.13s  request.completed      ~test      → api        POST   /orders        500  12.5ms
//!    0.30s  service.failed         broken       exit status 1
//!           | intentional failure
//!    0.30s  environment.failing    broken       service "broken": exit status 1
//!
//!   Traffic:
//!     ~test      → api        1 requests   avg 12.5ms
//! ```
//!
//! The layout follows upstream's (`␣␣%5.2fs␣␣%-22s␣...` lines, the `Traffic:` block) so people
//! used to it read ours at a glance; the file is not parsed by any tool. Additions for what
//! rig-rs records beyond upstream: readiness probes are marked `(probe)` and left out of the
//! traffic totals, failed exchanges show the proxy's `error`, Kafka requests get their own
//! lines and totals, `connection.progress` shows the byte counts of connections still open, and
//! `proxy.observations_dropped` is shown in the timeline and totalled under `Traffic:` so a gap
//! in the record is never silent, and rigd's remarks about a service (`service.log` on the
//! stream `rig`) have their own lines, `rig: ...`. An HTTP exchange or gRPC call is shown at
//! the time it ended, in that order among the other lines, however late its observation was
//! logged.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;

use rig_types::{ConnectionInfo, Event, EventType, Timestamp};

use super::header::LogHeader;
use super::timing::in_time_order;

/// Output lines of a failed service shown after its `service.failed` line: the last ones it
/// wrote, over the whole log.
pub(crate) const FAILURE_LOG_LINES: usize = 10;

/// Indentation of the per-service lines of a `progress.stall` entry.
const STALL_INDENT: &str = "                                   "; // 35 spaces

/// Indentation of the output lines shown after a `service.failed` line.
const LOG_INDENT: &str = "          "; // 10 spaces

/// Renders the whole `.log` file: header line, one line per event, the traffic totals, and a
/// final newline.
pub fn render_pretty<E: Borrow<Event>>(header: &LogHeader, events: &[E]) -> String {
    // Roughly what a line takes, to avoid regrowing the buffer for large logs; only the
    // events that get a line count (a service's output is most of a chatty log, and has none).
    let printed = events.iter().filter(|e| has_line((*e).borrow())).count();
    let mut out = String::with_capacity(128 + printed * 96);
    let outcome = header
        .outcome
        .map(|o| o.as_str().to_uppercase())
        .unwrap_or_else(|| "UNKNOWN".to_string());
    let _ = write!(
        out,
        "rig: {}  {}  {:.2}s  [{}]",
        header.environment,
        outcome,
        header.duration_ms / 1000.0,
        header.services.join(", ")
    );

    let tails = log_tails(events);
    let start = events
        .first()
        .map(|e| e.borrow().timestamp)
        .unwrap_or_default();
    let mut traffic = TrafficTotals::default();
    // An exchange goes where it ended, not where its observation was published (which can
    // be later: after `environment.destroying`, say); everything else stays in log order.
    let lines = in_time_order(events.iter().map(|e| e.borrow()).filter(|e| has_line(e)));
    for (at, e) in lines {
        traffic.add(e);
        out.push('\n');
        event_line(&mut out, e, elapsed_secs(&start, &at));
        if e.event_type == EventType::ServiceFailed {
            if let Some(lines) = tails.get(e.service.as_str()) {
                for line in lines {
                    let _ = write!(out, "\n{LOG_INDENT}| {line}");
                }
            }
        }
    }
    traffic.render(&mut out);
    out.push('\n');
    out
}

/// Whether `e` gets a timeline line.
fn has_line(e: &Event) -> bool {
    match e.event_type {
        // rigd's remarks about a service say what to fix: they stay; its output does not.
        EventType::ServiceLog => is_rig_remark(e),
        EventType::HealthCheckFailed | EventType::ConnectionOpened => false,
        _ => true,
    }
}

/// A `service.log` of rigd's own about a service (stream `rig`), not the service's output.
pub(crate) fn is_rig_remark(e: &Event) -> bool {
    e.log.as_ref().is_some_and(|log| log.stream.is_rig())
}

fn elapsed_secs(start: &Timestamp, at: &Timestamp) -> f64 {
    at.duration_since(start).as_nanos() as f64 / 1e9
}

/// The last [`FAILURE_LOG_LINES`] output lines of every service, over the whole log. Each chunk
/// has its trailing newlines trimmed and is split on `\n`.
fn log_tails<E: Borrow<Event>>(events: &[E]) -> HashMap<&str, VecDeque<&str>> {
    let mut tails: HashMap<&str, VecDeque<&str>> = HashMap::new();
    for e in events {
        let e = e.borrow();
        let Some(log) = e
            .log
            .as_ref()
            .filter(|_| e.event_type == EventType::ServiceLog)
        else {
            continue;
        };
        let tail = tails.entry(e.service.as_str()).or_default();
        for line in output_lines(&log.data) {
            if tail.len() == FAILURE_LOG_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
    tails
}

/// The lines of an output chunk as the failure tails count them: trailing newlines trimmed,
/// split on `\n` (so there is at least one).
pub(crate) fn output_lines(data: &str) -> impl Iterator<Item = &str> {
    data.trim_end_matches('\n').split('\n')
}

/// One timeline line (without the leading newline).
fn event_line(out: &mut String, e: &Event, elapsed: f64) {
    let kind = e.event_type.as_str();
    match &e.event_type {
        EventType::RequestCompleted => {
            if let Some(r) = &e.request {
                let _ = write!(
                    out,
                    "  {elapsed:5.2}s  {kind:<22} {:<10} → {:<10} {:<6} {:<14} {:3}  {:.1}ms",
                    r.source, r.target, r.method, r.path, r.status_code, r.latency_ms
                );
                if r.probe {
                    out.push_str("  (probe)");
                }
                if !r.upgrade.is_empty() {
                    let _ = write!(out, "  upgrade: {}", r.upgrade);
                }
                if !r.error.is_empty() {
                    let _ = write!(out, "  error: {}", r.error);
                }
                return;
            }
        }
        EventType::ConnectionClosed | EventType::ConnectionProgress => {
            if let Some(c) = &e.connection {
                connection_line(out, elapsed, kind, c);
                if e.event_type == EventType::ConnectionProgress {
                    out.push_str("  (open)");
                }
                if c.probe {
                    out.push_str("  (probe)");
                }
                return;
            }
        }
        EventType::GrpcCallCompleted => {
            if let Some(g) = &e.grpc_call {
                let _ = write!(
                    out,
                    "  {elapsed:5.2}s  {kind:<22} {:<10} → {:<10} {}/{}  {}  {:.1}ms",
                    g.source, g.target, g.service, g.method, g.grpc_status, g.latency_ms
                );
                if g.probe {
                    out.push_str("  (probe)");
                }
                return;
            }
        }
        EventType::KafkaRequestCompleted => {
            if let Some(k) = &e.kafka_request {
                let _ = write!(
                    out,
                    "  {elapsed:5.2}s  {kind:<22} {:<10} → {:<10} {} v{}  cid:{}  {:.1}ms",
                    k.source, k.target, k.api_name, k.api_version, k.correlation_id, k.latency_ms
                );
                return;
            }
        }
        EventType::ProgressStall => {
            if let Some(d) = &e.diagnostic {
                let _ = write!(
                    out,
                    "  {elapsed:5.2}s  {kind:<22} no progress for {}",
                    d.stalled_for
                );
                for s in &d.services {
                    let _ = write!(out, "\n{STALL_INDENT}{}: {}", s.name, s.phase);
                    if let Some(detail) = s.detail() {
                        let _ = write!(out, " — {detail}");
                    }
                }
                return;
            }
        }
        EventType::ServiceLog => {
            if let Some(log) = &e.log {
                let remark = log.data.trim_end_matches('\n');
                let _ = write!(
                    out,
                    "  {elapsed:5.2}s  {kind:<22} {:<12} rig: {remark}",
                    e.service
                );
                return;
            }
        }
        EventType::EventsDropped => {
            let _ = write!(out, "  {elapsed:5.2}s  {kind:<22} {}", e.message);
            return;
        }
        EventType::ObservationsDropped => {
            if e.message.is_empty() {
                let _ = write!(
                    out,
                    "  {elapsed:5.2}s  {kind:<22} {} traffic observations were not recorded",
                    e.dropped
                );
            } else {
                let _ = write!(out, "  {elapsed:5.2}s  {kind:<22} {}", e.message);
            }
            return;
        }
        _ => {}
    }
    generic_line(out, e, elapsed, true);
}

fn connection_line(out: &mut String, elapsed: f64, kind: &str, c: &ConnectionInfo) {
    let _ = write!(
        out,
        "  {elapsed:5.2}s  {kind:<22} {:<10} → {:<10} {:.1}ms  {}B↑ {}B↓",
        c.source, c.target, c.duration_ms, c.bytes_in, c.bytes_out
    );
    if !c.upgrade.is_empty() {
        let _ = write!(out, "  upgrade: {}", c.upgrade);
    }
    if !c.error.is_empty() {
        let _ = write!(out, "  error: {}", c.error);
    }
}

/// Every other event: the subject (service, else artifact) and the detail (error), as upstream's
/// `formatTimelineEvent`. `repeat_failing_error` shows the error of `environment.failing` too;
/// the down summary leaves it out, since it already opens with that error.
pub(crate) fn generic_line(out: &mut String, e: &Event, elapsed: f64, repeat_failing_error: bool) {
    let kind = e.event_type.as_str();
    let subject = if e.service.is_empty() {
        &e.artifact
    } else {
        &e.service
    };
    let show_detail = !e.error.is_empty()
        && (repeat_failing_error || e.event_type != EventType::EnvironmentFailing);
    let detail = &e.error;
    match (subject.is_empty(), show_detail) {
        (false, true) => {
            let _ = write!(out, "  {elapsed:5.2}s  {kind:<22} {subject:<12} {detail}");
        }
        (false, false) => {
            let _ = write!(out, "  {elapsed:5.2}s  {kind:<22} {subject}");
        }
        (true, true) => {
            let _ = write!(out, "  {elapsed:5.2}s  {kind:<22} {detail}");
        }
        (true, false) => {
            let _ = write!(out, "  {elapsed:5.2}s  {kind}");
        }
    }
}

/// Traffic per (source, target) edge, for the closing `Traffic:` block.
#[derive(Default)]
struct TrafficTotals {
    /// source → target → totals; sorted by source, then target.
    edges: BTreeMap<String, BTreeMap<String, EdgeTotals>>,
    dropped: u64,
}

#[derive(Default)]
struct EdgeTotals {
    requests: Average,
    failed_requests: u64,
    grpc: Average,
    kafka: Average,
    connections: u64,
    failed_connections: u64,
    bytes: i64,
}

#[derive(Default)]
struct Average {
    count: u64,
    total_ms: f64,
}

impl Average {
    fn add(&mut self, ms: f64) {
        self.count += 1;
        self.total_ms += ms;
    }

    fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms / self.count as f64
        }
    }
}

impl TrafficTotals {
    fn edge(&mut self, source: &str, target: &str) -> &mut EdgeTotals {
        self.edges
            .entry(source.to_string())
            .or_default()
            .entry(target.to_string())
            .or_default()
    }

    fn add(&mut self, e: &Event) {
        match e.event_type {
            EventType::RequestCompleted => {
                if let Some(r) = e.request.as_ref().filter(|r| !r.probe) {
                    let edge = self.edge(&r.source, &r.target);
                    edge.requests.add(r.latency_ms);
                    if !r.error.is_empty() {
                        edge.failed_requests += 1;
                    }
                }
            }
            EventType::GrpcCallCompleted => {
                if let Some(g) = e.grpc_call.as_ref().filter(|g| !g.probe) {
                    self.edge(&g.source, &g.target).grpc.add(g.latency_ms);
                }
            }
            EventType::KafkaRequestCompleted => {
                if let Some(k) = &e.kafka_request {
                    self.edge(&k.source, &k.target).kafka.add(k.latency_ms);
                }
            }
            EventType::ConnectionClosed => {
                if let Some(c) = e.connection.as_ref().filter(|c| !c.probe) {
                    let edge = self.edge(&c.source, &c.target);
                    edge.connections += 1;
                    edge.bytes = edge
                        .bytes
                        .saturating_add(c.bytes_in.max(0))
                        .saturating_add(c.bytes_out.max(0));
                    if !c.error.is_empty() {
                        edge.failed_connections += 1;
                    }
                }
            }
            EventType::ObservationsDropped => self.dropped = self.dropped.saturating_add(e.dropped),
            _ => {}
        }
    }

    fn render(&self, out: &mut String) {
        if self.edges.is_empty() && self.dropped == 0 {
            return;
        }
        out.push_str("\n\n  Traffic:");
        let edges = self.edges.iter().flat_map(|(source, targets)| {
            targets.iter().map(move |(target, t)| (source, target, t))
        });
        for (source, target, t) in edges {
            let edge = format!("    {source:<10} → {target:<10}");
            if t.requests.count > 0 {
                let _ = write!(
                    out,
                    "\n{edge} {} requests   avg {:.1}ms",
                    t.requests.count,
                    t.requests.mean()
                );
                if t.failed_requests > 0 {
                    let _ = write!(out, "  ({} failed)", t.failed_requests);
                }
            }
            if t.grpc.count > 0 {
                let _ = write!(
                    out,
                    "\n{edge} {} gRPC calls  avg {:.1}ms",
                    t.grpc.count,
                    t.grpc.mean()
                );
            }
            if t.kafka.count > 0 {
                let _ = write!(
                    out,
                    "\n{edge} {} Kafka requests  avg {:.1}ms",
                    t.kafka.count,
                    t.kafka.mean()
                );
            }
            if t.connections > 0 {
                let _ = write!(
                    out,
                    "\n{edge} {} connections  {} total",
                    t.connections,
                    format_bytes(t.bytes)
                );
                if t.failed_connections > 0 {
                    let _ = write!(out, "  ({} failed)", t.failed_connections);
                }
            }
        }
        if self.dropped > 0 {
            let _ = write!(
                out,
                "\n    {} traffic observations were not recorded (observation fell behind)",
                self.dropped
            );
        }
    }
}

/// `X.XMB` from 1 MiB, `X.XKB` from 1 KiB, else `NB` (base 1024).
pub fn format_bytes(n: i64) -> String {
    const KIB: i64 = 1024;
    const MIB: i64 = 1024 * 1024;
    if n >= MIB {
        format!("{:.1}MB", n as f64 / MIB as f64)
    } else if n >= KIB {
        format!("{:.1}KB", n as f64 / KIB as f64)
    } else {
        format!("{n}B")
    }
}
