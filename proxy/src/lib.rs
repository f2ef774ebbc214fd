//! The observing proxy that rigd puts on every edge of an environment in observe mode.
//!
//! The proxy knows nothing of environments or the event log. It is started from a listener it
//! owns (allocated by rigd and never re-bound), a target address, a [`Mode`] chosen from the
//! target ingress's protocol, and a [`TrafficSink`]:
//!
//! ```text
//!  client ──► listener ──► relay (tcp) / hyper (http) ──► target
//!                               │  Observation (Bytes clones, counters; try_send, never waits)
//!                               ▼
//!                     bounded channel ──► observer task ──► Event ──► TrafficSink
//! ```
//!
//! Everything that costs time (header maps to JSON shapes, base64, gRPC decoding) happens on the
//! observer task, off the data path. If observation falls behind, traffic keeps flowing and a
//! `proxy.observations_dropped` event says how many observations were lost.
//!
//! HTTP connections run on the proxy's worker threads (one single-threaded runtime per core,
//! shared by every proxy in the process); the accept loops, the TCP and Kafka relays and the
//! observer tasks run on the caller's runtime.

mod allocator;
pub mod grpc;
pub mod http;
pub mod kafka;
mod listener;
pub mod observe;
mod pacing;
pub mod probes;
mod run;
pub mod tcp;
mod workers;

pub use allocator::tune_for_proxying;
pub use grpc::GrpcSettings;
pub use observe::{
    Edge, Observation, ObservationBarrier, ObservationBarriers, Observer, TrafficSink,
};
pub use run::{run, ProxyError, RunOptions};

/// How a proxy relays and observes traffic, from the target ingress's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Raw TCP relay with connection events.
    Tcp,
    /// HTTP/1.1 and h2c reverse proxy with request events.
    Http,
    /// gRPC over h2c.
    Grpc,
    /// The Kafka wire protocol.
    Kafka,
}
