//! Traffic events as table rows, and the filters over them.
//!
//! Rows are numbered before filtering, so `#N` names the same exchange whatever the filters:
//! application traffic `1, 2, 3…`, readiness probes (`"probe": true`, shown with `--probes`)
//! `p1, p2…`. Times are seconds since the run's first event to the end of the exchange
//! (an HTTP exchange or gRPC call whose observation was logged late still shows when it ended).

use regex::Regex;
use rig_types::{Event, EventType, Timestamp};
use serde::Serialize;

use crate::cli::error::CliError;
use crate::cli::flags;
use crate::cli::format;
use crate::cli::logdir::same_name;
use crate::cli::logs::secs_between;
use crate::cli::output::Paint;
use crate::logfiles::happened_at;

/// The protocol of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    /// `request.completed`.
    #[serde(rename = "HTTP")]
    Http,
    /// `grpc.call.completed`.
    #[serde(rename = "gRPC")]
    Grpc,
    /// `connection.closed`.
    #[serde(rename = "TCP")]
    Tcp,
    /// `kafka.request.completed`.
    #[serde(rename = "Kafka")]
    Kafka,
}

impl Protocol {
    /// `HTTP`, `gRPC`, `TCP` or `Kafka`.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Grpc => "gRPC",
            Protocol::Tcp => "TCP",
            Protocol::Kafka => "Kafka",
        }
    }
}

/// A row's number: application traffic or a readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Index {
    /// `N`.
    Traffic(usize),
    /// `pN`.
    Probe(usize),
}

impl std::fmt::Display for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Index::Traffic(n) => write!(f, "{n}"),
            Index::Probe(n) => write!(f, "p{n}"),
        }
    }
}

impl std::str::FromStr for Index {
    type Err = ();

    fn from_str(s: &str) -> Result<Index, ()> {
        let s = s.trim().trim_start_matches('#');
        let (probe, digits) = match s.strip_prefix(['p', 'P']) {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let n: usize = digits.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        Ok(if probe {
            Index::Probe(n)
        } else {
            Index::Traffic(n)
        })
    }
}

/// One exchange (HTTP request, gRPC call, Kafka request) or TCP connection.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    /// Its number.
    pub index: Index,
    /// Seconds since the run's first event.
    pub time_s: f64,
    /// The protocol.
    pub protocol: Protocol,
    /// The caller.
    pub source: &'a str,
    /// The callee.
    pub target: &'a str,
    /// HTTP method, `gRPC`, `TCP` (or the upgrade, e.g. `websocket`) or the Kafka API.
    pub method: String,
    /// Path with query, `Service/Method`, `—` or `[topics] v<ver> cid:<id>`.
    pub path: String,
    /// Status code, gRPC status name, `—` or `error`.
    pub status: String,
    /// Status colour.
    pub status_paint: Option<Paint>,
    /// Latency (or connection duration) in milliseconds.
    pub latency_ms: f64,
    /// Byte counts for TCP and Kafka, the proxy's error when the exchange failed.
    pub extra: String,
    /// A readiness probe.
    pub probe: bool,
    /// The event.
    pub event: &'a Event,
}

/// Numbers traffic rows as they arrive (shared by the file and follow modes).
#[derive(Debug, Default)]
pub struct RowBuilder {
    start: Option<Timestamp>,
    traffic: usize,
    probes: usize,
}

impl RowBuilder {
    /// A builder whose times are relative to `start`.
    pub fn new(start: Option<Timestamp>) -> RowBuilder {
        RowBuilder {
            start,
            ..RowBuilder::default()
        }
    }

    /// Sets the start when it is not known yet (follow mode: the first event seen).
    pub fn see(&mut self, event: &Event) {
        if self.start.is_none() && !event.timestamp.is_zero() {
            self.start = Some(event.timestamp);
        }
    }

    /// The row of `event`, when it is a completed exchange or a closed connection.
    pub fn row<'a>(&mut self, event: &'a Event) -> Option<Row<'a>> {
        self.see(event);
        let time_s = self
            .start
            .map_or(0.0, |s| secs_between(&s, &happened_at(event)));
        let mut row = match event.event_type {
            EventType::RequestCompleted => {
                let r = event.request.as_deref()?;
                let paint = http_paint(r.status_code);
                Row {
                    index: Index::Traffic(0),
                    time_s,
                    protocol: Protocol::Http,
                    source: &r.source,
                    target: &r.target,
                    method: r.method.clone(),
                    path: r.path.clone(),
                    status: if r.status_code == 0 {
                        "—".into()
                    } else {
                        r.status_code.to_string()
                    },
                    status_paint: paint,
                    latency_ms: r.latency_ms,
                    extra: if r.error.is_empty() {
                        String::new()
                    } else {
                        format!("error: {}", r.error)
                    },
                    probe: r.probe,
                    event,
                }
            }
            EventType::GrpcCallCompleted => {
                let g = event.grpc_call.as_deref()?;
                let ok = format::grpc_ok(&g.grpc_status);
                Row {
                    index: Index::Traffic(0),
                    time_s,
                    protocol: Protocol::Grpc,
                    source: &g.source,
                    target: &g.target,
                    method: "gRPC".into(),
                    path: if g.method.is_empty() {
                        g.service.clone()
                    } else {
                        format!("{}/{}", g.service, g.method)
                    },
                    status: format::grpc_status(&g.grpc_status),
                    status_paint: Some(if ok { Paint::Green } else { Paint::Red }),
                    latency_ms: g.latency_ms,
                    extra: if ok {
                        String::new()
                    } else {
                        g.grpc_message.clone()
                    },
                    probe: g.probe,
                    event,
                }
            }
            EventType::ConnectionClosed => {
                let c = event.connection.as_deref()?;
                let bytes = format!(
                    "{}↑ {}↓",
                    format::bytes(c.bytes_in),
                    format::bytes(c.bytes_out)
                );
                Row {
                    index: Index::Traffic(0),
                    time_s,
                    protocol: Protocol::Tcp,
                    source: &c.source,
                    target: &c.target,
                    method: if c.upgrade.is_empty() {
                        "TCP".into()
                    } else {
                        c.upgrade.clone()
                    },
                    path: "—".into(),
                    status: if c.error.is_empty() {
                        "—".into()
                    } else {
                        "error".into()
                    },
                    status_paint: (!c.error.is_empty()).then_some(Paint::Red),
                    latency_ms: c.duration_ms,
                    extra: if c.error.is_empty() {
                        bytes
                    } else {
                        format!("{bytes}  error: {}", c.error)
                    },
                    probe: c.probe,
                    event,
                }
            }
            EventType::KafkaRequestCompleted => {
                let k = event.kafka_request.as_deref()?;
                let mut path = format!("v{} cid:{}", k.api_version, k.correlation_id);
                let topics = format::kafka_topics(&k.topics);
                if !topics.is_empty() {
                    path = format!("{topics} {path}");
                }
                let bytes = format!(
                    "{}↑ {}↓",
                    format::bytes(k.request_size),
                    format::bytes(k.response_size)
                );
                let errors = format::kafka_errors(k);
                Row {
                    index: Index::Traffic(0),
                    time_s,
                    protocol: Protocol::Kafka,
                    source: &k.source,
                    target: &k.target,
                    method: k.api_name.clone(),
                    path,
                    status: if errors.is_empty() {
                        "—".into()
                    } else {
                        "error".into()
                    },
                    status_paint: (!errors.is_empty()).then_some(Paint::Red),
                    latency_ms: k.latency_ms,
                    extra: if errors.is_empty() {
                        bytes
                    } else {
                        format!("{bytes}  error: {}", errors.join(", "))
                    },
                    probe: false,
                    event,
                }
            }
            _ => return None,
        };
        row.index = self.number(row.probe);
        Some(row)
    }

    /// The number of the next row: `pN` for a readiness probe, else `N`.
    pub fn number(&mut self, probe: bool) -> Index {
        if probe {
            self.probes += 1;
            Index::Probe(self.probes)
        } else {
            self.traffic += 1;
            Index::Traffic(self.traffic)
        }
    }
}

/// HTTP status colours: 2xx green, 4xx yellow, 5xx red.
fn http_paint(status: u16) -> Option<Paint> {
    match status {
        200..=299 => Some(Paint::Green),
        400..=499 => Some(Paint::Yellow),
        500..=599 => Some(Paint::Red),
        _ => None,
    }
}

/// `--edge`: `a→b`, `a->b`, `a→`, `→b` or a bare `a` (either end).
#[derive(Debug, Clone)]
struct Edge {
    source: Option<String>,
    target: Option<String>,
    either: Option<String>,
}

impl Edge {
    fn parse(text: &str) -> Edge {
        let text = text.replace("->", "→");
        match text.split_once('→') {
            Some((a, b)) => {
                let side = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
                Edge {
                    source: side(a),
                    target: side(b),
                    either: None,
                }
            }
            None => Edge {
                source: None,
                target: None,
                either: Some(text.trim().to_string()),
            },
        }
    }

    fn matches(&self, row: &Row) -> bool {
        if let Some(e) = &self.either {
            return same_name(e, row.source) || same_name(e, row.target);
        }
        self.source
            .as_deref()
            .is_none_or(|s| same_name(s, row.source))
            && self
                .target
                .as_deref()
                .is_none_or(|t| same_name(t, row.target))
    }
}

/// `--since`: seconds into the run, or an absolute time.
#[derive(Debug, Clone, Copy)]
enum Since {
    Offset(f64),
    At(Timestamp),
}

/// Every traffic filter; a row must pass all of them. Repeated or comma-separated values of
/// one filter are alternatives.
#[derive(Debug, Clone, Default)]
pub struct TrafficFilter {
    edges: Vec<Edge>,
    slow_ms: Option<f64>,
    statuses: Vec<StatusFilter>,
    methods: Vec<String>,
    paths: Vec<String>,
    grep: Option<Regex>,
    since: Option<Since>,
    protocols: Vec<Protocol>,
    /// Show readiness probes.
    pub probes: bool,
}

/// The raw filter values, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct FilterArgs<'a> {
    /// `--edge`.
    pub edges: Vec<&'a str>,
    /// `--slow`.
    pub slow: Option<&'a str>,
    /// `--status`.
    pub statuses: Vec<&'a str>,
    /// `--method`.
    pub methods: Vec<&'a str>,
    /// `--path`.
    pub paths: Vec<&'a str>,
    /// `--grep`.
    pub grep: Option<&'a str>,
    /// `--since`.
    pub since: Option<&'a str>,
    /// `--http`, `--grpc`, `--tcp`, `--kafka`.
    pub protocols: Vec<Protocol>,
    /// `--probes`.
    pub probes: bool,
}

fn split_list<'a>(values: &[&'a str]) -> Vec<&'a str> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

impl TrafficFilter {
    /// Builds the filter; bad values are usage errors that say what is expected.
    pub fn new(args: &FilterArgs) -> Result<TrafficFilter, CliError> {
        let slow_ms = match args.slow {
            None => None,
            Some(v) => Some(
                format::parse_duration(v)
                    .map_err(|e| CliError::usage(format!("invalid --slow value: {e}")))?
                    .as_secs_f64()
                    * 1000.0,
            ),
        };
        let since = match args.since {
            None => None,
            Some(v) => Some(match Timestamp::parse(v.trim()) {
                Ok(t) => Since::At(t),
                Err(_) => Since::Offset(
                    format::parse_duration(v)
                        .map_err(|e| {
                            CliError::usage(format!(
                                "invalid --since value: {e}; give seconds into the run (2.5s) \
                                 or an RFC 3339 time"
                            ))
                        })?
                        .as_secs_f64(),
                ),
            }),
        };
        let grep = flags::regex("--grep", args.grep)?;
        Ok(TrafficFilter {
            edges: split_list(&args.edges)
                .into_iter()
                .map(Edge::parse)
                .collect(),
            slow_ms,
            statuses: split_list(&args.statuses)
                .into_iter()
                .map(StatusFilter::parse)
                .collect::<Result<_, _>>()?,
            methods: split_list(&args.methods)
                .into_iter()
                .map(str::to_string)
                .collect(),
            paths: args.paths.iter().map(|s| s.to_string()).collect(),
            grep,
            since,
            protocols: args.protocols.clone(),
            probes: args.probes,
        })
    }

    /// True when `--edge` is given: when it matches no row (a misspelt service, say), the
    /// edges there are are worth listing.
    pub fn has_edges(&self) -> bool {
        !self.edges.is_empty()
    }

    /// True when an `--edge` matches `row` (false without `--edge`).
    pub fn edge_matches(&self, row: &Row) -> bool {
        self.edges.iter().any(|e| e.matches(row))
    }

    /// True when `row` passes every filter (probes only with `--probes`).
    pub fn keep(&self, row: &Row) -> bool {
        if row.probe && !self.probes {
            return false;
        }
        if !self.protocols.is_empty() && !self.protocols.contains(&row.protocol) {
            return false;
        }
        if !self.edges.is_empty() && !self.edges.iter().any(|e| e.matches(row)) {
            return false;
        }
        if let Some(min) = self.slow_ms {
            if row.latency_ms < min {
                return false;
            }
        }
        if !self.statuses.is_empty() && !self.statuses.iter().any(|s| s.matches(row)) {
            return false;
        }
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&row.method))
        {
            return false;
        }
        if !self.paths.is_empty() && !self.paths.iter().any(|p| row.path.contains(p.as_str())) {
            return false;
        }
        match self.since {
            Some(Since::Offset(secs)) if row.time_s < secs => return false,
            Some(Since::At(t)) if row.event.timestamp < t => return false,
            _ => {}
        }
        if let Some(re) = &self.grep {
            if !re.is_match(&searchable_text(row)) {
                return false;
            }
        }
        true
    }
}

/// One `--status` value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StatusFilter {
    /// `error`: exchanges that failed (an `error:` in the row, or the status `error`).
    Error,
    /// `5xx`: HTTP statuses of one class.
    HttpClass(u8),
    /// `404`: one HTTP status.
    Http(u16),
    /// `NotFound`, `NOT_FOUND` or `5`: one gRPC status.
    Grpc(u32),
}

impl StatusFilter {
    fn parse(value: &str) -> Result<StatusFilter, CliError> {
        let b = value.as_bytes();
        if value.eq_ignore_ascii_case("error") {
            return Ok(StatusFilter::Error);
        }
        if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && b[1..].eq_ignore_ascii_case(b"xx") {
            return Ok(StatusFilter::HttpClass(b[0]));
        }
        if let Ok(code @ 100..=599) = value.parse::<u16>() {
            return Ok(StatusFilter::Http(code));
        }
        // gRPC codes are 0 to 16; `Code(N)` is how grpc-go names any other.
        match rig_protocols::grpc::status_code(value) {
            Some(code) if code <= 16 || value.starts_with("Code(") => Ok(StatusFilter::Grpc(code)),
            _ => Err(CliError::usage(format!(
                "invalid --status value {value:?}: give an HTTP status (404) or class (5xx), a \
                 gRPC status (NotFound, NOT_FOUND or 5), or error"
            ))),
        }
    }

    fn matches(self, row: &Row) -> bool {
        match self {
            StatusFilter::Error => row.status == "error" || row.extra.contains("error:"),
            StatusFilter::HttpClass(class) => {
                row.protocol == Protocol::Http && row.status.as_bytes().first() == Some(&class)
            }
            StatusFilter::Http(code) => {
                row.protocol == Protocol::Http && row.status == code.to_string()
            }
            StatusFilter::Grpc(code) => {
                row.protocol == Protocol::Grpc
                    && rig_protocols::grpc::status_code(&row.status) == Some(code)
            }
        }
    }
}

impl TrafficFilter {
    /// True when the filter looks into headers, bodies and messages (`--grep`).
    pub fn searches_payloads(&self) -> bool {
        self.grep.is_some()
    }
}

/// Everything `--grep` searches: method, path (Kafka topics included), status, headers,
/// bodies (as text), gRPC message and decoded messages, Kafka client id and broker, the
/// proxy's error.
fn searchable_text(row: &Row) -> String {
    let mut out = format!("{} {} {} {}\n", row.method, row.path, row.status, row.extra);
    let headers = |out: &mut String, h: &rig_types::event::Headers| {
        for (k, vs) in h {
            for v in vs {
                out.push_str(&format!("{k}: {v}\n"));
            }
        }
    };
    let body = |out: &mut String, b: &Option<Vec<u8>>| {
        if let Some(b) = b {
            out.push_str(&String::from_utf8_lossy(b));
            out.push('\n');
        }
    };
    let e = row.event;
    if let Some(r) = &e.request {
        headers(&mut out, &r.request_headers);
        headers(&mut out, &r.response_headers);
        body(&mut out, &r.request_body);
        body(&mut out, &r.response_body);
    }
    if let Some(g) = &e.grpc_call {
        out.push_str(&g.grpc_message);
        out.push('\n');
        headers(&mut out, &g.request_metadata);
        headers(&mut out, &g.response_metadata);
        let decoded = format::grpc_decoded(&g.request_messages, g.request_body_decoded.as_ref())
            .into_iter()
            .chain(format::grpc_decoded(
                &g.response_messages,
                g.response_body_decoded.as_ref(),
            ));
        for v in decoded {
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    if let Some(k) = &e.kafka_request {
        out.push_str(&format!("{} {}\n", k.client_id, k.broker));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_parse_or_say_what_is_expected() {
        use StatusFilter::*;
        for (text, want) in [
            ("error", Error),
            ("ERROR", Error),
            ("5xx", HttpClass(b'5')),
            ("2XX", HttpClass(b'2')),
            ("404", Http(404)),
            ("NotFound", Grpc(5)),
            ("not_found", Grpc(5)),
            ("14", Grpc(14)),
            ("Code(42)", Grpc(42)),
        ] {
            assert_eq!(StatusFilter::parse(text).unwrap(), want, "{text:?}");
        }
        for text in ["abc", "6xx", "42", "600", "99", "NotFund", "x5x"] {
            let err = StatusFilter::parse(text).unwrap_err();
            assert!(
                err.message()
                    .starts_with(&format!("invalid --status value {text:?}: give")),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn indices_parse() {
        assert_eq!("3".parse::<Index>(), Ok(Index::Traffic(3)));
        assert_eq!("#3".parse::<Index>(), Ok(Index::Traffic(3)));
        assert_eq!("p2".parse::<Index>(), Ok(Index::Probe(2)));
        assert!("0".parse::<Index>().is_err());
        assert!("x".parse::<Index>().is_err());
        assert_eq!(Index::Probe(2).to_string(), "p2");
    }

    #[test]
    fn edges_parse() {
        let e = Edge::parse("order->postgres");
        assert_eq!(e.source.as_deref(), Some("order"));
        assert_eq!(e.target.as_deref(), Some("postgres"));
        let e = Edge::parse("→postgres");
        assert_eq!(e.source, None);
        let e = Edge::parse("order");
        assert_eq!(e.either.as_deref(), Some("order"));
    }
}
