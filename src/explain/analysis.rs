//! Collecting what explains a run from its events (upstream `explain.Analyze`, one pass).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use rig_types::{DiagnosticSnapshot, Event, EventType, LogStream, Timestamp};
use serde::Serialize;

use super::assertion::{parse_assertion, Assertion};
use super::fingerprint::error_fingerprint;
use crate::logfiles::{exchange_end, Outcome};

/// Stderr lines kept per service (the most recent ones).
pub const STDERR_LINES_PER_SERVICE: usize = 20;

/// Everything the explanation of a run is built from. Serialises with upstream's report field
/// names (`rig explain` JSON), empty parts omitted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    /// How the run ended (given to [`analyze`]; reports print it from the log header).
    #[serde(skip)]
    pub outcome: Outcome,
    /// Every `test.note`, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<Assertion>,
    /// Traffic errors that survived noise removal, root causes first: most recent first, each
    /// after the errors of the calls its target made while answering it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<TrafficError>,
    /// Stderr lines that explain the failure: first those of traffic-error targets containing
    /// the error's fingerprint, then every kept line of the failed services (sorted by name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_errors: Vec<ServiceLine>,
    /// The first `service.failed` of each service, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_failures: Vec<ServiceFailure>,
    /// Errors of `environment.failing` events that name no service: the environment failed
    /// before any service could (an artifact that could not be built or pulled), in order
    /// (rig-rs addition).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment_failures: Vec<String>,
    /// The last progress stall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<DiagnosticSnapshot>,
    /// When the run was torn down before it was up, with no failure to explain it (a client
    /// that gave up waiting, an interrupted `rig up`): the services that were not ready, by
    /// name (rig-rs addition).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_up: Vec<PendingService>,
    /// Why rigd ended the run itself (`environment.destroying`'s message: the TTL passed, the
    /// test process went away, rigd shut down); `None` when a client ended it (rig-rs
    /// addition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by_rigd: Option<String>,
    /// How long each phase of the run took; `None` when every phase is zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
    /// Traffic observations the proxies could not record (rig-rs addition).
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_observations: u64,
    /// How many leading `service_errors` were matched by fingerprint (the rest are the failed
    /// services' stderr).
    #[serde(skip)]
    pub correlated_service_errors: usize,
}

/// The protocol of a traffic error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficKind {
    /// An HTTP exchange with status ≥ 400.
    Http,
    /// A gRPC call with a status other than OK.
    Grpc,
}

/// A failed HTTP exchange or gRPC call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficError {
    /// HTTP or gRPC.
    #[serde(rename = "type")]
    pub kind: TrafficKind,
    /// The calling service (`~test` for the test).
    pub source: String,
    /// The called service.
    pub target: String,
    /// HTTP method (HTTP only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// HTTP path with query, or `Service/Method` for gRPC.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// HTTP status (HTTP only).
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub status: u16,
    /// gRPC status (gRPC only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub grpc_status: String,
    /// gRPC status message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub grpc_message: String,
    /// Latency in milliseconds.
    pub latency_ms: f64,
    /// The response body as text (decoded JSON for gRPC when available); empty when absent or
    /// not UTF-8.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub response_body: String,
    /// Why the proxy could not complete the exchange (rig-rs addition).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl TrafficError {
    /// The text used for the fingerprint and the condensed line: the body, else the gRPC
    /// message, else the proxy's error.
    pub fn detail(&self) -> &str {
        [&self.response_body, &self.grpc_message, &self.error]
            .into_iter()
            .find(|s| !s.trim().is_empty())
            .map_or("", |s| s.as_str())
    }
}

/// A stderr line of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceLine {
    /// The service.
    pub service: String,
    /// Always `stderr`.
    pub stream: String,
    /// The line.
    pub data: String,
}

/// The first failure of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceFailure {
    /// The service.
    pub service: String,
    /// Its `service.failed` error.
    pub error: String,
}

/// A service that was not ready when a run that never came up was torn down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingService {
    /// The service.
    pub service: String,
    /// How far it got: `not started` (waiting on its dependencies, or on a build still
    /// running: `not started (a build was still running)`), `prestart hooks`,
    /// `starting` (not healthy yet) or `init hooks`.
    pub phase: &'static str,
    /// How many readiness checks failed.
    #[serde(skip_serializing_if = "is_zero")]
    pub failed_checks: u64,
    /// The error of the last failed readiness check.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_check_error: String,
}

impl PendingService {
    /// `starting (9 failed readiness checks; the last: dial tcp …: connection refused)`.
    pub fn describe(&self) -> String {
        match self.failed_checks {
            0 => self.phase.to_string(),
            n => format!(
                "{} ({n} failed readiness check{}; the last: {})",
                self.phase,
                if n == 1 { "" } else { "s" },
                self.last_check_error
            ),
        }
    }
}

/// How far a service got while the environment was starting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    #[default]
    NotStarted,
    Prestart,
    Starting,
    Init,
    Ready,
    Failed,
}

impl Reached {
    fn phase(self) -> &'static str {
        match self {
            Reached::NotStarted => "not started",
            Reached::Prestart => "prestart hooks",
            Reached::Starting => "starting",
            Reached::Init => "init hooks",
            Reached::Ready => "ready",
            Reached::Failed => "failed",
        }
    }
}

/// A service's progress while the environment was starting.
#[derive(Default)]
struct Progress<'a> {
    reached: Reached,
    failed_checks: u64,
    last_check_error: &'a str,
}

/// Phase durations in whole milliseconds; zero (omitted) when a boundary is missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Phases {
    /// First artifact event to the last `artifact.completed`/`artifact.cached`.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub artifacts_ms: i64,
    /// First `service.starting` to `environment.up`.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub startup_ms: i64,
    /// `environment.up` to `environment.destroying`.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub test_ms: i64,
    /// `environment.destroying` to `environment.down`.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub teardown_ms: i64,
}

/// A traffic error, whether it happened before `environment.up`, and when its exchange ran.
struct Candidate {
    error: TrafficError,
    before_up: bool,
    /// The exchange's start and end, when the event says (see [`exchange_span`]).
    span: Option<(Timestamp, Timestamp)>,
}

/// Analyses `events` (in `seq` order, `service.log` included) of a run that ended with
/// `outcome`.
///
/// Collected: assertions (`test.note`); HTTP errors (status ≥ 400, readiness probes excluded)
/// and gRPC errors (status other than `0`/`OK`) that ended before `environment.destroying`
/// (logged before it, or after it with a start time and duration that end before it);
/// stderr before
/// `environment.destroying` and before the service's own `service.failed` or
/// `service.stopping` (split into lines, empty lines dropped, the last 20 per service);
/// the first `service.failed` per service; the last stall; phases; dropped observations.
///
/// Noise removal: a passed run keeps no traffic errors; otherwise errors before
/// `environment.up` are dropped, or, when the environment never came up, errors whose target
/// became healthy. The remaining errors are listed root cause first: most recent first, each
/// right after the errors of the calls its target made while answering it (see
/// [`root_causes_first`]).
pub fn analyze<E: Borrow<Event>>(events: &[E], outcome: Outcome) -> Analysis {
    let mut scan = Scan::default();
    for e in events {
        scan.see(e.borrow());
    }
    let errors = scan.relevant_errors(outcome);
    let not_up = scan.not_up();
    // Their stderr may say why they never got ready, as a failed service's says why it failed.
    for pending in &not_up {
        if let Some((name, _)) = scan.progress.get_key_value(pending.service.as_str()) {
            scan.failed.insert(name);
        }
    }
    let (service_errors, correlated_service_errors) = scan.service_errors(&errors);
    Analysis {
        outcome,
        assertions: scan.assertions,
        errors,
        service_errors,
        service_failures: scan.failures,
        environment_failures: scan.environment_failures,
        stall: scan.stall,
        not_up,
        ended_by_rigd: scan.ended_by_rigd,
        phases: scan.marks.phases(),
        dropped_observations: scan.dropped,
        correlated_service_errors,
    }
}

/// What one pass over the events collects; borrows from the events.
#[derive(Default)]
struct Scan<'a> {
    assertions: Vec<Assertion>,
    failures: Vec<ServiceFailure>,
    environment_failures: Vec<String>,
    candidates: Vec<Candidate>,
    /// service → its last stderr lines.
    stderr: HashMap<&'a str, VecDeque<&'a str>>,
    /// Services that failed (`service.failed`, or named by `environment.failing`); sorted so
    /// the output does not depend on hashing.
    failed: BTreeSet<&'a str>,
    healthy: HashSet<&'a str>,
    /// Which stderr output explains a failure; also whether teardown began and builds run.
    output: OutputGate,
    /// Each service's progress until teardown began; injected services (`~test`, proxies)
    /// left out.
    progress: BTreeMap<&'a str, Progress<'a>>,
    stall: Option<DiagnosticSnapshot>,
    dropped: u64,
    marks: PhaseMarks,
    up: bool,
    ended_by_rigd: Option<String>,
}

impl<'a> Scan<'a> {
    fn see(&mut self, e: &'a Event) {
        self.marks.see(e);
        if !self.output.destroying && !self.up {
            self.track_progress(e);
        }
        if let Some(stderr) = self.output.see(e) {
            self.keep_stderr(&e.service, stderr);
        }
        match e.event_type {
            EventType::EnvironmentUp => self.up = true,
            EventType::EnvironmentDestroying if !e.message.is_empty() => {
                self.ended_by_rigd = Some(e.message.clone());
            }
            EventType::TestNote => self.assertions.push(parse_assertion(&e.error)),
            EventType::ServiceHealthy => {
                self.healthy.insert(&e.service);
            }
            EventType::ServiceFailed => {
                self.failed.insert(&e.service);
                // Later failures of the same service are consequences (e.g. the readiness
                // timeout that follows a crash).
                if !self.failures.iter().any(|f| f.service == e.service) {
                    self.failures.push(ServiceFailure {
                        service: e.service.clone(),
                        error: e.error.clone(),
                    });
                }
            }
            EventType::EnvironmentFailing if !e.service.is_empty() => {
                self.failed.insert(&e.service);
            }
            EventType::EnvironmentFailing => self.environment_failures.push(e.error.clone()),
            EventType::ProgressStall => {
                if let Some(d) = &e.diagnostic {
                    self.stall = Some((**d).clone());
                }
            }
            EventType::ObservationsDropped => self.dropped = self.dropped.saturating_add(e.dropped),
            EventType::RequestCompleted | EventType::GrpcCallCompleted
                if !self.output.destroying || self.ended_before_teardown(e) =>
            {
                if let Some(error) = traffic_error(e) {
                    self.candidates.push(Candidate {
                        span: exchange_span(e, error.latency_ms),
                        error,
                        before_up: !self.up,
                    });
                }
            }
            _ => {}
        }
    }

    /// Whether the exchange of traffic event `e`, logged after `environment.destroying`,
    /// ended before it: its observation came late (a gRPC call's waits for descriptors), the
    /// exchange belongs to the test. Exchanges without a start time (upstream's logs) count
    /// as logged: after.
    fn ended_before_teardown(&self, e: &Event) -> bool {
        match (self.marks.destroying, exchange_end(e)) {
            (Some(destroying), Some(end)) => end <= destroying,
            _ => false,
        }
    }

    /// Notes how far `e`'s service got while the environment was starting.
    fn track_progress(&mut self, e: &'a Event) {
        if e.service.is_empty() || e.service.contains('~') {
            return;
        }
        let progress = self.progress.entry(&e.service).or_default();
        let reached = match e.event_type {
            EventType::ServicePrestart => Reached::Prestart,
            EventType::ServiceStarting => Reached::Starting,
            EventType::ServiceHealthy | EventType::ServiceInit => Reached::Init,
            EventType::ServiceReady => Reached::Ready,
            EventType::ServiceFailed => Reached::Failed,
            EventType::HealthCheckFailed => {
                progress.failed_checks += 1;
                progress.last_check_error = &e.error;
                return;
            }
            _ => return,
        };
        progress.reached = progress.reached.max(reached);
    }

    /// The services not ready when a run that never came up, and did not fail, was torn down.
    fn not_up(&self) -> Vec<PendingService> {
        // `failed` holds every service with a `service.failed` or an `environment.failing`.
        if self.up
            || !self.output.destroying
            || !self.environment_failures.is_empty()
            || !self.failed.is_empty()
        {
            return Vec::new();
        }
        self.progress
            .iter()
            .filter(|(_, p)| p.reached < Reached::Ready)
            .map(|(service, p)| PendingService {
                service: service.to_string(),
                // Services start once every build is done.
                phase: match p.reached {
                    Reached::NotStarted if self.output.building > 0 => {
                        "not started (a build was still running)"
                    }
                    reached => reached.phase(),
                },
                failed_checks: p.failed_checks,
                last_check_error: p.last_check_error.to_string(),
            })
            .collect()
    }

    fn keep_stderr(&mut self, service: &'a str, data: &'a str) {
        let kept = self.stderr.entry(service).or_default();
        for line in stderr_lines(data) {
            if kept.len() == STDERR_LINES_PER_SERVICE {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    }

    /// The traffic errors left after noise removal, root causes first (see
    /// [`root_causes_first`]).
    fn relevant_errors(&mut self, outcome: Outcome) -> Vec<TrafficError> {
        let candidates = std::mem::take(&mut self.candidates);
        let kept: Vec<Candidate> = if outcome == Outcome::Passed {
            Vec::new()
        } else if self.up {
            candidates.into_iter().filter(|c| !c.before_up).collect()
        } else {
            candidates
                .into_iter()
                .filter(|c| !self.healthy.contains(c.error.target.as_str()))
                .collect()
        };
        root_causes_first(kept)
    }

    /// The stderr lines of the targets of `errors` that contain the error's fingerprint, then
    /// every kept line of the failed services; unique on (service, line). Also returns how many
    /// came from fingerprints.
    fn service_errors(&self, errors: &[TrafficError]) -> (Vec<ServiceLine>, usize) {
        let mut out = Vec::new();
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut push = |out: &mut Vec<ServiceLine>, service: &'a str, line: &'a str| {
            if seen.insert((service, line)) {
                out.push(ServiceLine {
                    service: service.to_string(),
                    stream: LogStream::Stderr.as_str().to_string(),
                    data: line.to_string(),
                });
            }
        };
        // Lower-cased once per service; each (target, error text) pair is searched once,
        // however often the same error repeats.
        let lowered: HashMap<&str, Vec<(String, &str)>> = self
            .stderr
            .iter()
            .map(|(service, lines)| {
                let lines = lines.iter().map(|l| (l.to_lowercase(), *l)).collect();
                (*service, lines)
            })
            .collect();
        let mut searched: HashSet<(&str, &str)> = HashSet::new();
        for error in errors {
            let Some((service, lines)) = lowered.get_key_value(error.target.as_str()) else {
                continue;
            };
            if !searched.insert((service, error.detail())) {
                continue;
            }
            let fingerprint = error_fingerprint(error.detail()).to_lowercase();
            if fingerprint.is_empty() {
                continue;
            }
            for (lower, line) in lines {
                if lower.contains(&fingerprint) {
                    push(&mut out, service, line);
                }
            }
        }
        let correlated = out.len();
        for service in &self.failed {
            for line in self.stderr.get(service).into_iter().flatten() {
                push(&mut out, service, line);
            }
        }
        (out, correlated)
    }
}

/// When the exchange of traffic event `e` ran: from its start (`started_at`, else its end less
/// `latency_ms`) to its end ([`exchange_end`], else the event's time); `None` when the event
/// has no time at all.
fn exchange_span(e: &Event, latency_ms: f64) -> Option<(Timestamp, Timestamp)> {
    let started = e
        .request
        .as_ref()
        .and_then(|r| r.started_at)
        .or_else(|| e.grpc_call.as_ref().and_then(|g| g.started_at));
    let end = exchange_end(e).unwrap_or(e.timestamp);
    if end.is_zero() {
        return None;
    }
    let latency = if latency_ms.is_finite() && latency_ms > 0.0 {
        (latency_ms * 1e6) as i128
    } else {
        0
    };
    let start = started
        .unwrap_or_else(|| Timestamp::from_unix_nanos(end.unix_nanos().saturating_sub(latency)));
    Some((start, end))
}

/// Orders traffic errors (given in log order) root cause first.
///
/// An error is caused by another when the other is a call its target made while answering
/// it: the other's source is its target, and the other's exchange ran within its own (a 502
/// at the test's edge is caused by the 500 the api got from the store meanwhile). Each error
/// is the consequence of at most one: the first error logged after it that encloses it.
///
/// Errors that cause no other are listed most recent first, each right after the errors that
/// caused it, deepest cause first: for `~test → api 502` caused by `api → store 500` caused by
/// `store → db error`, the list is `db`, `store`, `api`, then the chains before it.
fn root_causes_first(errors: Vec<Candidate>) -> Vec<TrafficError> {
    let n = errors.len();
    // causes[a]: the errors that caused error `a`, in log order.
    let mut causes: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut caused_something = vec![false; n];
    for (b, cause) in errors.iter().enumerate() {
        let Some((b_start, b_end)) = cause.span else {
            continue;
        };
        let effect = (b + 1..n).find(|&a| {
            let effect = &errors[a];
            effect.error.target == cause.error.source
                && effect
                    .span
                    .is_some_and(|(a_start, a_end)| a_start <= b_start && b_end <= a_end)
        });
        if let Some(a) = effect {
            causes[a].push(b);
            caused_something[b] = true;
        }
    }
    let mut order = Vec::with_capacity(n);
    for last in (0..n).rev().filter(|&i| !caused_something[i]) {
        push_causes_first(last, &causes, &mut order);
    }
    let mut errors: Vec<Option<TrafficError>> = errors.into_iter().map(|c| Some(c.error)).collect();
    order.into_iter().filter_map(|i| errors[i].take()).collect()
}

/// Pushes error `i` onto `order` after its causes (most recent first, each after its own).
fn push_causes_first(i: usize, causes: &[Vec<usize>], order: &mut Vec<usize>) {
    // Iterative: a chain of causes can be as long as the run's list of errors.
    let mut stack = vec![(i, false)];
    while let Some((at, expanded)) = stack.pop() {
        if expanded {
            order.push(at);
            continue;
        }
        stack.push((at, true));
        // Popped most recent first.
        stack.extend(causes[at].iter().map(|&c| (c, false)));
    }
}

/// The stderr lines of an output chunk the analysis keeps: split on `\n` (trailing newlines
/// trimmed), each without its trailing `\r`, blank ones left out.
pub(crate) fn stderr_lines(data: &str) -> impl Iterator<Item = &str> {
    data.trim_end_matches('\n')
        .split('\n')
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty())
}

/// Which `service.log` events the analysis reads stderr lines from, given the events before
/// them: a service's stderr explains a failure unless a build runs (its output is the build's,
/// cargo's warnings say: services start once every build is done), the service is past its
/// `service.failed` or `service.stopping` (what it writes from then on, a traceback of rigd's
/// SIGINT say, does not explain the failure), or teardown began (`environment.destroying`).
///
/// It depends on lifecycle events only, so it decides the same over a run's events with some
/// `service.log` events left out.
#[derive(Debug, Default)]
pub(crate) struct OutputGate {
    /// `environment.destroying` was seen.
    pub(crate) destroying: bool,
    /// Builds started and not yet ended.
    pub(crate) building: usize,
    /// Services past their `service.failed` or `service.stopping`.
    ended: HashSet<String>,
}

impl OutputGate {
    /// Takes the next event, in `seq` order: for a `service.log` on stderr that explains a
    /// failure, its text.
    pub(crate) fn see<'e>(&mut self, e: &'e Event) -> Option<&'e str> {
        match e.event_type {
            EventType::EnvironmentDestroying => self.destroying = true,
            EventType::ServiceStopping | EventType::ServiceFailed
                if !self.ended.contains(&e.service) =>
            {
                self.ended.insert(e.service.clone());
            }
            EventType::ArtifactStarted => self.building += 1,
            EventType::ArtifactCompleted | EventType::ArtifactFailed => {
                self.building = self.building.saturating_sub(1);
            }
            EventType::ServiceLog
                if !self.destroying && self.building == 0 && !self.ended.contains(&e.service) =>
            {
                return e
                    .log
                    .as_ref()
                    .filter(|l| l.stream == LogStream::Stderr)
                    .map(|l| l.data.as_str());
            }
            _ => {}
        }
        None
    }
}

/// `event` as the analysis (and the log files' header and timeline) need it, without what
/// nothing there reads: the headers and metadata of every exchange, and the captured bodies
/// and decoded messages of an exchange that is not an error. Other events come back as they
/// are. The log files are written at teardown from every event of a run, spilled ones
/// included: this keeps those that must be in memory at once small.
pub fn for_analysis(event: Arc<Event>) -> Arc<Event> {
    if event.request.is_none() && event.grpc_call.is_none() {
        return event;
    }
    let error = is_traffic_error(&event);
    // An event read back from the spill file is not shared: no copy of its bodies.
    let mut light = Arc::try_unwrap(event).unwrap_or_else(|shared| (*shared).clone());
    light.drop_headers();
    if !error {
        light.drop_bodies();
    }
    Arc::new(light)
}

/// True when traffic event `e` is an error the analysis lists (see [`traffic_error`]): an
/// HTTP exchange answered 4xx or 5xx, a gRPC call that did not end OK; readiness
/// probes left out.
pub(crate) fn is_traffic_error(e: &Event) -> bool {
    if let Some(r) = &e.request {
        return !r.probe && r.status_code >= 400;
    }
    e.grpc_call
        .as_ref()
        .is_some_and(|g| !g.probe && g.grpc_status != "0" && g.grpc_status != "OK")
}

/// The traffic error an event represents, if it is one.
fn traffic_error(e: &Event) -> Option<TrafficError> {
    if !is_traffic_error(e) {
        return None;
    }
    if let Some(r) = &e.request {
        return Some(TrafficError {
            kind: TrafficKind::Http,
            source: r.source.clone(),
            target: r.target.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            status: r.status_code,
            grpc_status: String::new(),
            grpc_message: String::new(),
            latency_ms: r.latency_ms,
            response_body: body_text(r.response_body.as_deref()),
            error: r.error.clone(),
        });
    }
    let g = e.grpc_call.as_ref()?;
    let response_body = match &g.response_body_decoded {
        Some(decoded) => decoded.to_string(),
        None => body_text(g.response_body.as_deref()),
    };
    Some(TrafficError {
        kind: TrafficKind::Grpc,
        source: g.source.clone(),
        target: g.target.clone(),
        method: String::new(),
        path: format!("{}/{}", g.service, g.method),
        status: 0,
        grpc_status: g.grpc_status.clone(),
        grpc_message: g.grpc_message.clone(),
        latency_ms: g.latency_ms,
        response_body,
        error: String::new(),
    })
}

/// A captured body as text; empty when absent or not UTF-8 (binary bodies explain nothing in
/// a one-line summary).
fn body_text(body: Option<&[u8]>) -> String {
    body.and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
        .to_string()
}

/// The timestamps phases are measured between.
#[derive(Default)]
struct PhaseMarks {
    first_artifact: Option<Timestamp>,
    last_artifact_done: Option<Timestamp>,
    first_starting: Option<Timestamp>,
    up: Option<Timestamp>,
    destroying: Option<Timestamp>,
    down: Option<Timestamp>,
}

impl PhaseMarks {
    fn see(&mut self, e: &Event) {
        let t = e.timestamp;
        match e.event_type {
            EventType::ArtifactStarted | EventType::ArtifactFailed => {
                self.first_artifact.get_or_insert(t);
            }
            EventType::ArtifactCompleted | EventType::ArtifactCached => {
                self.first_artifact.get_or_insert(t);
                self.last_artifact_done = Some(t);
            }
            EventType::ServiceStarting => {
                self.first_starting.get_or_insert(t);
            }
            EventType::EnvironmentUp => {
                self.up.get_or_insert(t);
            }
            EventType::EnvironmentDestroying => {
                self.destroying.get_or_insert(t);
            }
            EventType::EnvironmentDown => self.down = Some(t),
            _ => {}
        }
    }

    fn phases(&self) -> Option<Phases> {
        let between = |from: Option<Timestamp>, to: Option<Timestamp>| match (from, to) {
            (Some(from), Some(to)) => (to.duration_since(&from).as_nanos() / 1_000_000).max(0),
            _ => 0,
        };
        let phases = Phases {
            artifacts_ms: between(self.first_artifact, self.last_artifact_done),
            startup_ms: between(self.first_starting, self.up),
            test_ms: between(self.up, self.destroying),
            teardown_ms: between(self.destroying, self.down),
        };
        (phases != Phases::default()).then_some(phases)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}
