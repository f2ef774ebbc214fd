//! Wire types shared by `rigd`, the `rig` SDK and the `rig` CLI.
//!
//! Every type here serialises to exactly the JSON shape upstream rig (v0.9.0) uses, so the
//! upstream Go SDK and CLI work against `rigd` unchanged and log files open in either CLI.
//! New fields are additive and omitted when empty. Go `omitempty` rules are mirrored with
//! `skip_serializing_if`; `[]byte` fields are base64 strings; timestamps are RFC 3339 with
//! nanoseconds; durations are Go duration strings (`"1m30s"`).

pub mod base64;
pub mod duration;
pub mod endpoint;
pub mod event;
pub mod health;
pub mod spec;
pub mod timestamp;

pub use duration::{GoDuration, ParseDurationError};
pub use endpoint::{Endpoint, Protocol, ResolvedEndpoint};
pub use event::{
    CallbackKind, CallbackRequest, CallbackResponse, ConnectionInfo, DiagnosticSnapshot, Event,
    EventType, GrpcCallInfo, GrpcMessage, KafkaPartition, KafkaRequestInfo, KafkaTopic, LogEntry,
    LogStream, RequestInfo, ServiceSnapshot, WiringContext, GRPC_STATUS_NAMES,
};
pub use health::{Health, API_VERSION};
pub use spec::{
    ClientFuncSpec, EgressSpec, Environment, HookSpec, Hooks, IngressSpec, ReadySpec,
    ResolvedEnvironment, ResolvedService, Service, ServiceStatus,
};
pub use timestamp::{Timestamp, TimestampError};
