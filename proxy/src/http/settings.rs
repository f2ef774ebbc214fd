//! What an HTTP proxy can be told: capture cap, redaction list, upstream timeouts.

use std::time::Duration;

use crate::grpc::GrpcSettings;

/// How many body bytes are kept per direction of an exchange (upstream's 64 KiB).
pub const DEFAULT_CAPTURE_LIMIT: usize = 64 * 1024;

/// Headers whose values are replaced by [`REDACTED`] in recorded events unless configured
/// otherwise. Matching is case-insensitive. Forwarded traffic is never altered.
pub const DEFAULT_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// The value recorded in place of a redacted header's value.
pub const REDACTED: &str = "[REDACTED]";

/// Settings of one HTTP proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// Body bytes captured per direction of an exchange; the rest is forwarded and counted but
    /// not kept. `0` captures no bodies.
    pub capture_limit: usize,
    /// Header names (any case) whose values are recorded as [`REDACTED`]. An empty list
    /// disables redaction.
    pub redact: Vec<String>,
    /// How long to wait for a TCP connection to the target before answering 502.
    pub connect_timeout: Duration,
    /// How long to wait for the target's response headers before answering 502. `None` waits
    /// as long as the target takes (as upstream rig does): a long poll is not a failure.
    pub response_timeout: Option<Duration>,
    /// How long an unused connection to the target (HTTP/1.1 or h2c) is kept for reuse.
    /// Zero keeps no idle HTTP/1.1 connection: each request on the fast path dials anew.
    pub pool_idle_timeout: Duration,
    /// On cancellation, how long in-flight exchanges may finish before their connections are
    /// closed. Idle keep-alive connections close at once.
    pub shutdown_grace: Duration,
    /// How long a client has to send the rest of an HTTP/1.1 request head once its first
    /// bytes arrived (nginx's `client_header_timeout`). Past it the client is answered `408`
    /// and disconnected, and the attempt recorded. An idle keep-alive connection has no
    /// such limit.
    pub head_timeout: Duration,
    /// How gRPC calls are observed (descriptors, decoding limits).
    pub grpc: GrpcSettings,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            redact: DEFAULT_REDACTED_HEADERS
                .iter()
                .map(|name| name.to_string())
                .collect(),
            connect_timeout: Duration::from_secs(10),
            response_timeout: None,
            pool_idle_timeout: Duration::from_secs(90),
            shutdown_grace: Duration::from_secs(1),
            head_timeout: Duration::from_secs(60),
            grpc: GrpcSettings::default(),
        }
    }
}
