//! Readiness checks: is a service's ingress answering yet?
//!
//! After a service starts, rigd checks each of its ingresses one after another until the
//! endpoint answers (upstream behaviour, reference section 3.4):
//!
//! - [`ProbeKind::for_ingress`] chooses the probe: the ingress's `ready.type` when set, else
//!   its protocol; `http` and `grpc` get protocol-level probes, everything else a TCP connect.
//! - [`probe`] runs one attempt against a `host:port` and says why it failed
//!   ([`ProbeError`]): a TCP connect with a 200 ms timeout, an HTTP `GET` whose whole exchange
//!   must finish within 200 ms (any status below 500 is ready), or a plaintext
//!   `grpc.health.v1.Health/Check` (`SERVING` or `UNIMPLEMENTED` is ready); for the database
//!   types, a PostgreSQL startup handshake or a Redis `PING`.
//! - [`poll`] repeats a probe with exponential back-off (10 ms doubling to 1 s by default)
//!   until it succeeds or the deadline (30 s by default) passes, reporting each failure to a
//!   callback so the caller can publish `health.check_failed`.
//!
//! HTTP and gRPC probes carry the header `x-rig-probe: 1` ([`PROBE_HEADER`]) and the user agent
//! `rigd-probe` ([`PROBE_USER_AGENT`]), so an observing proxy between rigd and the service can
//! mark probe traffic.
//!
//! [`poll_hinted`] with [`listen_watch::listening`] probes the moment the port starts
//! listening rather than at once (bound to fail for a process just started) or at the next
//! scheduled probe. A TCP probe of a loopback address is answered there and then, without a
//! connection, when the kernel says a socket listening there accepts connections (except
//! through an observing proxy, whose probes are dialled so they show in its traffic).
//!
//! A poll is cancelled by dropping its future; no task or connection outlives it. Everything
//! here uses `tokio::time`, so tests can drive the schedule with a paused clock.

mod database;
mod error;
mod grpc;
mod http;
mod kind;
pub mod listen_watch;
pub mod listeners;
mod poll;
mod probe;
mod tcp;

pub use error::ProbeError;
pub use kind::{ProbeKind, READY_TYPES};
pub use poll::{poll, poll_hinted, Hint, PollSettings, ReadinessError};
pub use probe::{probe, PROBE_HEADER, PROBE_USER_AGENT};
