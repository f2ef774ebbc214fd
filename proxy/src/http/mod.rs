//! The HTTP reverse proxy of an observing proxy: HTTP/1.1 and h2c in, HTTP/1.1 or h2c out (the
//! fast path's requests share the proxy's idle upstream connections; requests hyper serves in
//! HTTP/2 share one h2c connection), every exchange recorded as `request.completed`.
//!
//! ```text
//!            ┌─ serve (accept loop) ─► raw::serve (common HTTP/1.1, verbatim) ─► target ──┐
//!            │   └─ anything else: one hyper connection for the rest of the connection:   │
//! client ──► │ forward::handle ─► RequestBody ─► upstream (h1 | shared h2c) ─► target     │
//! client ◄── │ ProxyBody ◄─ ResponseBody ◄──────────────────────────────────┘              │
//!            │      └─ each half reports to its Exchange ─► HttpRecord ─► Observer (try_send)│
//!            └─────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Most traffic never reaches hyper: the `raw` fast path forwards the common HTTP/1.1 request
//! and its answer byte for byte and records them from the heads' bytes; the `h2_relay` passes
//! the frames of a prior-knowledge h2c connection (gRPC included) to a connection of its own
//! and records every stream from the decoded header blocks; hyper serves the rest (upgrades,
//! `Upgrade: h2c`, `CONNECT`, gRPC over HTTP/1.1, HTTP/1.0, unusual or malformed requests,
//! h2c when the target is unreachable), taking over a connection at a request boundary. On the hyper path, bodies pass through frame by frame as
//! the same `Bytes` (chunked, streaming and trailers included); on both, the capture keeps
//! reference-counted slices of the first [`HttpSettings::capture_limit`] bytes per direction
//! and counts the rest. Header maps are built (raw path), converted, redacted and
//! base64-encoded on the observer task, never on the request path.
//!
//! Beyond upstream rig:
//! - h2c is accepted on `http` edges, with prior knowledge and by HTTP/1.1 `Upgrade: h2c`
//!   (`curl --http2`; see the `h2c` module for when the upgrade is declined and the request
//!   served in HTTP/1.1);
//! - WebSocket and other upgrades (and `CONNECT`) are tunnelled and recorded: a
//!   `request.completed` with status 101 and `upgrade`, then a `connection.closed` with the
//!   tunnel's byte counts;
//! - failures are recorded with `error` saying which side failed and why, and answered with a
//!   `502` marked by the [`ERROR_HEADER`] header (a gRPC call gets `grpc-status: 14
//!   UNAVAILABLE` naming the cause instead, also when the target breaks off mid-response);
//! - readiness probes (`x-rig-probe: 1`) are marked `probe: true`;
//! - secrets in headers are redacted in events ([`DEFAULT_REDACTED_HEADERS`]);
//! - `duration_ms`, `started_at` and `http_version` are recorded;
//! - gRPC calls (`application/grpc`) are recorded as `grpc.call.completed` with every message
//!   decoded (see [`crate::grpc`]).
//!
//! Not observable: an HTTP/2 protocol error that hyper handles by resetting a stream or the
//! connection never reaches the proxy and is not recorded; neither is a client that closes the
//! connection in the middle of a request head. A malformed HTTP/1 request is recorded without
//! method or path (hyper rejects it before the proxy sees them).

mod body;
pub(crate) mod capture;
mod context;
mod error;
pub(crate) mod exchange;
mod forward;
mod h2_relay;
mod h2_wire;
mod h2c;
pub(crate) mod headers;
mod http2_upstream;
mod idle_upstreams;
mod raw;
pub(crate) mod record;
mod server;
mod settings;
mod socket;
mod upgrade;
pub(crate) mod upstream;

pub use context::ServeError;
pub use headers::{ERROR_HEADER, PROBE_HEADER};
pub use server::serve;
pub use settings::{HttpSettings, DEFAULT_CAPTURE_LIMIT, DEFAULT_REDACTED_HEADERS, REDACTED};
