//! The event model: every entry of an environment's event log, as streamed over SSE, returned
//! by `/log` and written to JSONL log files.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::endpoint::{Endpoint, ResolvedEndpoint};
use crate::timestamp::Timestamp;

macro_rules! event_types {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// The kind of an event. The wire string is generated here and nowhere else.
        ///
        /// Unknown strings (from newer servers, other tools or the `log.header` line of a log
        /// file) decode to [`EventType::Other`] so readers never fail on them.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $( $(#[$doc])* $variant, )*
            /// A type string this version does not know.
            Other(String),
        }

        impl EventType {
            /// Every known event type.
            pub const KNOWN: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The wire string, e.g. `"service.ready"`.
            pub fn as_str(&self) -> &str {
                match self {
                    $( EventType::$variant => $name, )*
                    EventType::Other(s) => s,
                }
            }

            /// Parses a wire string; unknown strings become [`EventType::Other`].
            pub fn from_name(name: &str) -> EventType {
                match name {
                    $( $name => EventType::$variant, )*
                    other => EventType::Other(other.to_string()),
                }
            }
        }
    };
}

event_types! {
    /// An artifact (build, image pull, download) started resolving after a cache miss.
    ArtifactStarted => "artifact.started",
    /// An artifact finished resolving.
    ArtifactCompleted => "artifact.completed",
    /// An artifact failed to resolve.
    ArtifactFailed => "artifact.failed",
    /// An artifact was found in the cache.
    ArtifactCached => "artifact.cached",
    /// A service's ingress got its address.
    IngressPublished => "ingress.published",
    /// All of a service's egresses resolved.
    WiringResolved => "wiring.resolved",
    /// Prestart hooks are about to run.
    ServicePrestart => "service.prestart",
    /// The service is being launched.
    ServiceStarting => "service.starting",
    /// Readiness checks passed.
    ServiceHealthy => "service.healthy",
    /// Init hooks are about to run.
    ServiceInit => "service.init",
    /// The service is ready; dependants may start.
    ServiceReady => "service.ready",
    /// The service failed.
    ServiceFailed => "service.failed",
    /// The service is stopping.
    ServiceStopping => "service.stopping",
    /// The service stopped; always the last event of a service.
    ServiceStopped => "service.stopped",
    /// A chunk of a service's stdout or stderr.
    ServiceLog => "service.log",
    /// rigd asks the client to run a function (hook or client service callback).
    CallbackRequest => "callback.request",
    /// The client's answer to a callback request.
    CallbackResponse => "callback.response",
    /// The environment is failing; carries the root cause.
    EnvironmentFailing => "environment.failing",
    /// Teardown started.
    EnvironmentDestroying => "environment.destroying",
    /// Every service is ready; carries every resolved ingress.
    EnvironmentUp => "environment.up",
    /// Every service has stopped; always the last lifecycle event.
    EnvironmentDown => "environment.down",
    /// A note (typically a test failure) posted by the client.
    TestNote => "test.note",
    /// A readiness probe failed.
    HealthCheckFailed => "health.check_failed",
    /// No progress for a while; carries a diagnostic snapshot.
    ProgressStall => "progress.stall",
    /// An HTTP exchange observed by a proxy.
    RequestCompleted => "request.completed",
    /// A TCP connection observed by a proxy was opened.
    ConnectionOpened => "connection.opened",
    /// A TCP connection observed by a proxy was closed.
    ConnectionClosed => "connection.closed",
    /// A gRPC call observed by a proxy.
    GrpcCallCompleted => "grpc.call.completed",
    /// A Kafka request/response observed by a proxy.
    KafkaRequestCompleted => "kafka.request.completed",
    /// Byte counts of a long-lived TCP connection or tunnel so far (rig-rs addition).
    ConnectionProgress => "connection.progress",
    /// Observation fell behind and some traffic events were not recorded; carries how many
    /// (rig-rs addition: nothing is lost silently).
    ObservationsDropped => "proxy.observations_dropped",
    /// Service output and traffic events were dropped from the event log: they could not be
    /// written to the spill file (a full disk, say) and memory is bounded; carries how many
    /// and why (rig-rs addition: nothing is lost silently).
    EventsDropped => "events.dropped",
}

impl EventType {
    /// True for the high-volume `service.log` type, which the event log stores apart.
    pub fn is_log(&self) -> bool {
        matches!(self, EventType::ServiceLog)
    }

    /// True for events emitted by the observing proxies.
    pub fn is_traffic(&self) -> bool {
        matches!(
            self,
            EventType::RequestCompleted
                | EventType::ConnectionOpened
                | EventType::ConnectionClosed
                | EventType::ConnectionProgress
                | EventType::GrpcCallCompleted
                | EventType::KafkaRequestCompleted
                | EventType::ObservationsDropped
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(EventType::from_name(&s))
    }
}

/// One entry of an environment's event log (upstream `server.Event`).
///
/// Field order and omission rules match upstream: everything but `seq`, `type` and
/// `timestamp` is omitted when empty. Payloads that only some event types carry are boxed, which
/// keeps the event small: publishing is on the hot path of every log line and every proxied
/// request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 1. Assigned on publish.
    #[serde(default)]
    pub seq: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The environment's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// The service concerned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// The ingress concerned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ingress: String,
    /// The published endpoint, unresolved (may hold templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Box<Endpoint>>,
    /// Artifact key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact: String,
    /// Output chunk of a `service.log` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogEntry>,
    /// A callback request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Box<CallbackRequest>>,
    /// A callback response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<CallbackResponse>>,
    /// Error text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// An observed HTTP exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Box<RequestInfo>>,
    /// An observed TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Box<ConnectionInfo>>,
    /// An observed gRPC call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_call: Option<Box<GrpcCallInfo>>,
    /// An observed Kafka request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_request: Option<Box<KafkaRequestInfo>>,
    /// Stall diagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<Box<DiagnosticSnapshot>>,
    /// The environment directory (on `environment.up`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_dir: String,
    /// Human-readable message (e.g. the failure summary on `environment.down`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// On `environment.up`: service → ingress → resolved endpoint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingresses: BTreeMap<String, BTreeMap<String, ResolvedEndpoint>>,
    /// On `proxy.observations_dropped` and `events.dropped`: how many observations or events
    /// were lost (rig-rs addition).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub dropped: u64,
    /// When it happened. Set on publish when zero.
    #[serde(default)]
    pub timestamp: Timestamp,
}

impl Event {
    /// Drops the headers and metadata of the exchange this event records, if any (HTTP
    /// request and response headers; gRPC metadata and response headers).
    pub fn drop_headers(&mut self) {
        if let Some(r) = self.request.as_deref_mut() {
            r.request_headers.clear();
            r.response_headers.clear();
        }
        if let Some(g) = self.grpc_call.as_deref_mut() {
            g.request_metadata.clear();
            g.response_metadata.clear();
            g.response_headers.clear();
        }
    }

    /// Drops the captured bodies and decoded messages of the exchange this event records, if
    /// any.
    pub fn drop_bodies(&mut self) {
        if let Some(r) = self.request.as_deref_mut() {
            r.request_body = None;
            r.response_body = None;
        }
        if let Some(g) = self.grpc_call.as_deref_mut() {
            g.request_body = None;
            g.response_body = None;
            g.request_body_decoded = None;
            g.response_body_decoded = None;
            g.request_messages = Vec::new();
            g.response_messages = Vec::new();
        }
    }

    /// A new event of the given type with every other field empty (seq 0, zero timestamp).
    pub fn new(event_type: EventType) -> Event {
        Event {
            seq: 0,
            event_type,
            environment: String::new(),
            service: String::new(),
            ingress: String::new(),
            endpoint: None,
            artifact: String::new(),
            log: None,
            callback: None,
            result: None,
            error: String::new(),
            request: None,
            connection: None,
            grpc_call: None,
            kafka_request: None,
            diagnostic: None,
            env_dir: String::new(),
            message: String::new(),
            ingresses: BTreeMap::new(),
            dropped: 0,
            timestamp: Timestamp::ZERO,
        }
    }

    /// A new event about `service`.
    pub fn for_service(event_type: EventType, service: impl Into<String>) -> Event {
        Event {
            service: service.into(),
            ..Event::new(event_type)
        }
    }

    /// A `service.log` event carrying one chunk of output.
    pub fn log(service: impl Into<String>, stream: LogStream, data: impl Into<String>) -> Event {
        Event {
            log: Some(LogEntry {
                stream,
                data: data.into(),
            }),
            ..Event::for_service(EventType::ServiceLog, service)
        }
    }

    /// Sets the error text.
    pub fn with_error(mut self, error: impl Into<String>) -> Event {
        self.error = error.into();
        self
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Event {
        self.message = message.into();
        self
    }
}

/// Which output stream a log chunk came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Any other label (kept as sent by a client).
    Other(String),
}

impl LogStream {
    /// The wire name of the stream rigd writes its own remarks about a service on (a
    /// variable its arguments name that is not set, ...), apart from the service's output.
    pub const RIG: &'static str = "rig";

    /// The stream of rigd's remarks ([`LogStream::RIG`]).
    pub fn rig() -> LogStream {
        LogStream::Other(LogStream::RIG.to_string())
    }

    /// True for rigd's remarks ([`LogStream::RIG`]).
    pub fn is_rig(&self) -> bool {
        matches!(self, LogStream::Other(s) if s == LogStream::RIG)
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Other(s) => s,
        }
    }
}

impl Serialize for LogStream {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogStream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            _ => LogStream::Other(s),
        })
    }
}

/// A chunk of service output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// `stdout` or `stderr`, or `rig` for rigd's own remarks about the service (an argument
    /// naming a variable that is not set, say).
    pub stream: LogStream,
    /// The text.
    pub data: String,
}

/// What a callback asks the client to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackKind {
    /// Run a prestart or init hook.
    Hook,
    /// Publish a client service's ingresses.
    Publish,
    /// Start a client-hosted service.
    Start,
    /// Check a client-hosted service's readiness.
    Ready,
}

/// Published as `callback.request` when rigd needs the client to run a function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallbackRequest {
    /// Correlates the response.
    pub request_id: String,
    /// The registered function name.
    pub name: String,
    /// What kind of callback this is.
    #[serde(rename = "type")]
    pub kind: CallbackKind,
    /// The resolved wiring of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wiring: Option<WiringContext>,
}

/// Posted by the client as `callback.response`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallbackResponse {
    /// The request being answered.
    pub request_id: String,
    /// Non-empty when the function failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Free-form result data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Resolved endpoint information handed to hooks and callbacks (and to services as
/// `RIG_WIRING`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WiringContext {
    /// The service's own ingresses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingresses: BTreeMap<String, ResolvedEndpoint>,
    /// The service's egresses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub egresses: BTreeMap<String, ResolvedEndpoint>,
    /// The service's temporary directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub temp_dir: String,
    /// The environment directory shared by all services.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_dir: String,
}

/// HTTP headers as Go's `map[string][]string`.
pub type Headers = BTreeMap<String, Vec<String>>;

/// An observed HTTP request/response pair.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestInfo {
    /// Calling service (`~test` for the test).
    pub source: String,
    /// Target service.
    pub target: String,
    /// Target ingress.
    pub ingress: String,
    /// HTTP method.
    pub method: String,
    /// Path with query, as sent.
    pub path: String,
    /// Response status.
    pub status_code: u16,
    /// Time to response headers, in milliseconds.
    pub latency_ms: f64,
    /// Request body bytes.
    pub request_size: i64,
    /// Response body bytes.
    pub response_size: i64,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: Headers,
    /// Captured request body (capped).
    #[serde(
        default,
        with = "crate::base64::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_body: Option<Vec<u8>>,
    /// The request body was longer than the capture cap.
    #[serde(default, skip_serializing_if = "is_false")]
    pub request_body_truncated: bool,
    /// Response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_headers: Headers,
    /// Captured response body (capped).
    #[serde(
        default,
        with = "crate::base64::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_body: Option<Vec<u8>>,
    /// The response body was longer than the capture cap.
    #[serde(default, skip_serializing_if = "is_false")]
    pub response_body_truncated: bool,
    /// Time from the request's arrival to the end of the response body, in milliseconds
    /// (rig-rs addition; `latency_ms` stops at the response headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// When the request arrived (rig-rs addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// HTTP version of the client's request, e.g. `HTTP/1.1` or `HTTP/2` (rig-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub http_version: String,
    /// A readiness probe sent by rigd, not application traffic (rig-rs addition).
    #[serde(default, skip_serializing_if = "is_false")]
    pub probe: bool,
    /// Why the exchange failed (target down, reset, timeout, malformed request); the status is
    /// then the one the proxy answered with (rig-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Set when the connection was upgraded (WebSocket and other `101 Switching Protocols`):
    /// the upgrade protocol, e.g. `websocket`. The tunnel's bytes are reported by a
    /// `connection.closed` event with the same `upgrade` (rig-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub upgrade: String,
}

/// An observed TCP connection. The six upstream fields are always present.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Calling service.
    pub source: String,
    /// Target service.
    pub target: String,
    /// Target ingress.
    pub ingress: String,
    /// Bytes from client to target.
    pub bytes_in: i64,
    /// Bytes from target to client.
    pub bytes_out: i64,
    /// Connection lifetime in milliseconds.
    pub duration_ms: f64,
    /// Why the connection failed, e.g. the target refused it (rig-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// For the tunnel of an upgraded HTTP connection: the upgrade protocol, e.g. `websocket`
    /// (rig-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub upgrade: String,
    /// The connection is one of rigd's readiness probes (rig-rs addition).
    #[serde(default, skip_serializing_if = "is_false")]
    pub probe: bool,
}

/// gRPC status names by code as `grpc_status` records them: grpc-go's spelling (`NotFound`),
/// as upstream rig writes them.
pub const GRPC_STATUS_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// An observed gRPC call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrpcCallInfo {
    /// Calling service.
    pub source: String,
    /// Target service.
    pub target: String,
    /// Target ingress.
    pub ingress: String,
    /// Fully qualified gRPC service (`pkg.Service`).
    pub service: String,
    /// Method name.
    pub method: String,
    /// Status as upstream rig records it: grpc-go's name for the `grpc-status` code (`OK`,
    /// `NotFound`, `Code(42)`), the raw value when it is not a number, empty when the call
    /// ended without a status.
    pub grpc_status: String,
    /// Status message (`grpc-message`), percent-decoded.
    pub grpc_message: String,
    /// Time to the response headers, in milliseconds.
    pub latency_ms: f64,
    /// Request bytes: DATA payload, message prefixes included.
    pub request_size: i64,
    /// Response bytes: DATA payload, message prefixes included.
    pub response_size: i64,
    /// Request metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_metadata: Headers,
    /// Response trailers (upstream's `response_metadata`; for a trailers-only response, where
    /// the status arrives in the headers, see `response_headers`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_metadata: Headers,
    /// Captured raw request body (capped).
    #[serde(
        default,
        with = "crate::base64::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_body: Option<Vec<u8>>,
    /// The request body was longer than the capture cap.
    #[serde(default, skip_serializing_if = "is_false")]
    pub request_body_truncated: bool,
    /// Captured raw response body (capped).
    #[serde(
        default,
        with = "crate::base64::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_body: Option<Vec<u8>>,
    /// The response body was longer than the capture cap.
    #[serde(default, skip_serializing_if = "is_false")]
    pub response_body_truncated: bool,
    /// The first request message decoded to JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body_decoded: Option<serde_json::Value>,
    /// The first response message decoded to JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body_decoded: Option<serde_json::Value>,
    /// The response headers: initial metadata, or the whole status of a trailers-only response
    /// (rig-rs addition).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_headers: Headers,
    /// Every request message, in order (rig-rs addition; `request_body_decoded` is the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_messages: Vec<GrpcMessage>,
    /// Every response message, in order (rig-rs addition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_messages: Vec<GrpcMessage>,
    /// The request stream went on past the bytes kept for decoding, so `request_messages`
    /// lists only the first ones (rig-rs addition).
    #[serde(default, skip_serializing_if = "is_false")]
    pub request_messages_truncated: bool,
    /// The response stream went on past the bytes kept for decoding (rig-rs addition).
    #[serde(default, skip_serializing_if = "is_false")]
    pub response_messages_truncated: bool,
    /// Time from the request's arrival to the end of the call, in milliseconds (rig-rs
    /// addition; `latency_ms` stops at the response headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// When the call arrived (rig-rs addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// A readiness probe sent by rigd (a `grpc.health.v1.Health/Check`), not application
    /// traffic (rig-rs addition).
    #[serde(default, skip_serializing_if = "is_false")]
    pub probe: bool,
    /// Why the call failed at the HTTP/2 level (target down, stream reset) (rig-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// One message of a gRPC call (rig-rs addition).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrpcMessage {
    /// Payload bytes as sent, without the 5-byte prefix (compressed size when compressed).
    pub size: i64,
    /// The message was compressed (with the call's `grpc-encoding`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub compressed: bool,
    /// The message as JSON: canonical protobuf JSON with the server's reflection descriptors,
    /// else the schema-less rendering of the wire format (field numbers as keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded: Option<serde_json::Value>,
    /// How `decoded` was produced: `reflection` or `wire`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decoding: String,
    /// Why the message did not decode, or why reflection descriptors did not apply.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// An observed Kafka request/response pair.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KafkaRequestInfo {
    /// Calling service.
    pub source: String,
    /// Target service.
    pub target: String,
    /// Target ingress.
    pub ingress: String,
    /// Kafka API key.
    pub api_key: i16,
    /// API name (`Produce`, `Fetch`, ...).
    pub api_name: String,
    /// API version.
    pub api_version: i16,
    /// Correlation id.
    pub correlation_id: i32,
    /// Latency in milliseconds.
    pub latency_ms: f64,
    /// Request frame bytes.
    pub request_size: i64,
    /// Response frame bytes.
    pub response_size: i64,
    /// The client id from the request header (additive).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// The real broker (`host:port`) the request went to (additive): with several brokers,
    /// which one the proxy relayed this connection to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub broker: String,
    /// The request gets no response by protocol (a Produce with `acks=0`; additive): the event
    /// is emitted when the request was relayed, with no latency or response size.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_response: bool,
    /// The response's top-level error code, where decoded (additive; omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero_i16")]
    pub error_code: i16,
    /// Topics and partitions of Produce and Fetch exchanges, with per-partition error codes
    /// (additive; omitted when not decoded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<KafkaTopic>,
    /// The response named brokers and was rewritten to point at proxy listeners (additive).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rewritten: bool,
    /// Why the exchange did not complete (additive): no response came before the connection
    /// closed, the connection closed in the middle of the response, or the response could not
    /// be written to the client.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A topic of a Kafka exchange (additive detail of `kafka.request.completed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaTopic {
    /// Topic name (or topic id when the request names topics by id).
    pub topic: String,
    /// Partitions touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<KafkaPartition>,
}

/// A partition of a Kafka exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPartition {
    /// Partition index.
    pub partition: i32,
    /// The partition's error code in the response (omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero_i16")]
    pub error_code: i16,
}

/// The state of every service when a progress stall is detected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticSnapshot {
    /// How long nothing happened, as a Go duration string.
    pub stalled_for: String,
    /// Per-service state.
    pub services: Vec<ServiceSnapshot>,
}

/// One service in a [`DiagnosticSnapshot`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    /// Service name.
    pub name: String,
    /// Lifecycle phase.
    pub phase: String,
    /// Services this one is waiting for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
    /// The hook it is running, as the spec names it: `hooks.init[0] (sql)`. Additive.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub running: String,
}

impl ServiceSnapshot {
    /// What the service is doing or waiting for beyond its phase, for one-line renderings
    /// (`running hooks.init[0] (sql)`, `waiting on db, cache`); `None` when nothing.
    pub fn detail(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.running.is_empty() {
            parts.push(format!("running {}", self.running));
        }
        if !self.waiting_on.is_empty() {
            parts.push(format!("waiting on {}", self.waiting_on.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_i16(n: &i16) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Protocol;
    use serde_json::json;

    #[test]
    fn every_seed_event_type_string_round_trips() {
        let names = [
            "artifact.started",
            "artifact.completed",
            "artifact.failed",
            "artifact.cached",
            "ingress.published",
            "wiring.resolved",
            "service.prestart",
            "service.starting",
            "service.healthy",
            "service.init",
            "service.ready",
            "service.failed",
            "service.stopping",
            "service.stopped",
            "service.log",
            "callback.request",
            "callback.response",
            "environment.failing",
            "environment.destroying",
            "environment.up",
            "environment.down",
            "test.note",
            "health.check_failed",
            "progress.stall",
            "request.completed",
            "connection.opened",
            "connection.closed",
            "grpc.call.completed",
            "kafka.request.completed",
        ];
        // The seed's 29 types plus rig-rs's additive `connection.progress`,
        // `proxy.observations_dropped` and `events.dropped`.
        assert_eq!(EventType::KNOWN.len(), names.len() + 3);
        for name in names {
            let t = EventType::from_name(name);
            assert!(!matches!(t, EventType::Other(_)), "{name} unknown");
            assert_eq!(t.as_str(), name);
            assert_eq!(serde_json::to_value(&t).unwrap(), json!(name));
        }
        assert_eq!(
            EventType::from_name("log.header"),
            EventType::Other("log.header".into())
        );
    }

    #[test]
    fn minimal_event_has_only_seq_type_timestamp() {
        let mut e = Event::new(EventType::EnvironmentDestroying);
        e.seq = 7;
        e.timestamp = "2024-01-02T03:04:05.5Z".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"seq":7,"type":"environment.destroying","timestamp":"2024-01-02T03:04:05.5Z"}"#
        );
    }

    #[test]
    fn event_fields_serialise_in_upstream_order() {
        let mut e = Event::for_service(EventType::IngressPublished, "api");
        e.seq = 3;
        e.environment = "env".into();
        e.ingress = "default".into();
        e.endpoint = Some(Box::new(Endpoint::new("127.0.0.1:9000", Protocol::Http)));
        e.timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            concat!(
                r#"{"seq":3,"type":"ingress.published","environment":"env","service":"api","#,
                r#""ingress":"default","endpoint":{"hostport":"127.0.0.1:9000","protocol":"http"},"#,
                r#""timestamp":"2024-01-02T03:04:05Z"}"#
            )
        );
    }

    #[test]
    fn request_bodies_are_base64_and_round_trip() {
        let mut e = Event::new(EventType::RequestCompleted);
        e.request = Some(Box::new(RequestInfo {
            source: "~test".into(),
            target: "api".into(),
            ingress: "default".into(),
            method: "POST".into(),
            path: "/orders?x=1".into(),
            status_code: 201,
            latency_ms: 1.5,
            request_size: 3,
            response_size: 0,
            request_headers: Headers::from([("Content-Type".into(), vec!["text/plain".into()])]),
            request_body: Some(b"abc".to_vec()),
            ..RequestInfo::default()
        }));
        let v = serde_json::to_value(&e).unwrap();
        let req = &v["request"];
        assert_eq!(req["request_body"], json!("YWJj"));
        assert!(req.get("response_body").is_none());
        assert!(req.get("request_body_truncated").is_none());
        assert!(req.get("response_headers").is_none());
        assert_eq!(req["status_code"], json!(201));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn events_stay_small() {
        assert!(
            std::mem::size_of::<Event>() <= 384,
            "{}",
            std::mem::size_of::<Event>()
        );
    }

    #[test]
    fn connection_info_always_has_six_fields() {
        let v = serde_json::to_value(ConnectionInfo::default()).unwrap();
        assert_eq!(
            v.as_object().unwrap().len(),
            6,
            "additive fields are omitted when empty"
        );
    }

    #[test]
    fn grpc_call_info_keeps_the_upstream_shape() {
        let v = serde_json::to_value(GrpcCallInfo::default()).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "source",
                "target",
                "ingress",
                "service",
                "method",
                "grpc_status",
                "grpc_message",
                "latency_ms",
                "request_size",
                "response_size"
            ],
            "additive fields are omitted when empty"
        );
        let call = GrpcCallInfo {
            grpc_status: "NotFound".into(),
            request_body_decoded: Some(json!({"sku": "abc-1"})),
            request_messages: vec![GrpcMessage {
                size: 7,
                decoded: Some(json!({"sku": "abc-1"})),
                decoding: "reflection".into(),
                ..GrpcMessage::default()
            }],
            ..GrpcCallInfo::default()
        };
        let v = serde_json::to_value(&call).unwrap();
        assert_eq!(v["request_body_decoded"], json!({"sku": "abc-1"}));
        assert_eq!(
            v["request_messages"],
            json!([{"size": 7, "decoded": {"sku": "abc-1"}, "decoding": "reflection"}])
        );
        let back: GrpcCallInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back, call);
    }

    #[test]
    fn callback_request_and_response_shapes() {
        let req = CallbackRequest {
            request_id: "r1".into(),
            name: "_hook_1".into(),
            kind: CallbackKind::Hook,
            wiring: Some(WiringContext {
                temp_dir: "/tmp/x".into(),
                ..WiringContext::default()
            }),
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"request_id": "r1", "name": "_hook_1", "type": "hook", "wiring": {"temp_dir": "/tmp/x"}})
        );
        let resp: CallbackResponse =
            serde_json::from_value(json!({"request_id": "r1", "data": {"k": 1}})).unwrap();
        assert_eq!(resp.error, "");
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"request_id": "r1", "data": {"k": 1}})
        );
    }

    #[test]
    fn upstream_log_line_parses() {
        let line = r#"{"seq":12,"type":"service.log","environment":"orders","service":"api","log":{"stream":"stderr","data":"boom\n"},"timestamp":"2026-02-18T11:03:28.123456+01:00"}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(e.event_type, EventType::ServiceLog);
        assert_eq!(e.log.as_ref().unwrap().stream, LogStream::Stderr);
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
    }

    #[test]
    fn diagnostic_snapshot_omits_empty_waiting_on() {
        let d = DiagnosticSnapshot {
            stalled_for: "30s".into(),
            services: vec![
                ServiceSnapshot {
                    name: "a".into(),
                    phase: "pending".into(),
                    waiting_on: vec!["b".into()],
                    running: String::new(),
                },
                ServiceSnapshot {
                    name: "b".into(),
                    phase: "starting".into(),
                    waiting_on: vec![],
                    running: String::new(),
                },
            ],
        };
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"stalled_for": "30s", "services": [
                {"name": "a", "phase": "pending", "waiting_on": ["b"]},
                {"name": "b", "phase": "starting"}
            ]})
        );
    }
}
