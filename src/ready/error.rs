//! Why one readiness probe failed.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::time::Duration;

use rig_types::GoDuration;

/// Why a single probe attempt did not find the endpoint ready.
///
/// The messages read like Go's network errors where upstream showed those (`dial tcp
/// 127.0.0.1:1: connection refused`) and match upstream exactly where clients may look for
/// them (`HTTP 500`, `grpc health: status NOT_SERVING`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The TCP connection could not be made (refused, unreachable, unresolvable name).
    #[error("dial tcp {addr}: {}", IoText(.source))]
    Dial {
        /// The `host:port` dialled.
        addr: String,
        /// The operating system's reason.
        source: io::Error,
    },

    /// The probe did not finish within its own time limit.
    #[error("{action}: timed out after {}", GoDuration::from_std(*.after))]
    TimedOut {
        /// What was being done, e.g. `dial tcp 127.0.0.1:80` or `GET http://127.0.0.1:80/`.
        action: String,
        /// The probe's time limit.
        after: Duration,
    },

    /// The HTTP endpoint answered with a status of 500 or above.
    #[error("HTTP {status}")]
    HttpStatus {
        /// The response status code.
        status: u16,
    },

    /// The HTTP or HTTP/2 exchange failed after the TCP connection was made.
    #[error("{action}: {}", ErrorChain(.source))]
    Exchange {
        /// What was being done, e.g. `GET http://127.0.0.1:80/`.
        action: String,
        /// hyper's reason.
        source: hyper::Error,
    },

    /// The probe request could not be built from the configured target (for example a
    /// `ready.path` that is not a valid URI path).
    #[error(
        "{action}: invalid probe request (check the ingress address and ready.path): {source}"
    )]
    InvalidRequest {
        /// What was being attempted.
        action: String,
        /// Why the request is invalid.
        source: ::http::Error,
    },

    /// The gRPC health service answered with a serving status other than `SERVING`.
    #[error("grpc health: status {}", ServingStatusName(*.status))]
    NotServing {
        /// The `grpc.health.v1.HealthCheckResponse.ServingStatus` value.
        status: i32,
    },

    /// The gRPC health call failed with a non-OK `grpc-status` (other than `UNIMPLEMENTED`,
    /// which counts as ready).
    #[error("grpc health: rpc error: code = {} desc = {message}", GrpcCodeName(*.code))]
    GrpcStatus {
        /// The gRPC status code.
        code: u32,
        /// The decoded `grpc-message`, possibly empty.
        message: String,
    },

    /// The gRPC response did not follow the gRPC protocol.
    #[error("grpc health: malformed response: {reason}")]
    MalformedGrpc {
        /// What was wrong with it.
        reason: &'static str,
    },

    /// A database server answered but is not ready for clients yet (PostgreSQL starting up,
    /// Redis loading its data set), or answered something other than its protocol.
    #[error("{protocol}: {reason}")]
    NotReady {
        /// `postgres` or `redis`.
        protocol: &'static str,
        /// What the server said, or what went wrong in the exchange.
        reason: String,
    },

    /// The readiness deadline passed while a probe was still running.
    #[error(
        "probe still running after {} when the readiness deadline passed",
        GoDuration::from_std(*.running_for)
    )]
    Unfinished {
        /// How long the interrupted probe had been running.
        running_for: Duration,
    },
}

/// Formats an I/O error the way Go prints network errors: `connection refused` rather than
/// `Connection refused (os error 111)`.
struct IoText<'a>(&'a io::Error);

impl fmt::Display for IoText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(code) = self.0.raw_os_error() else {
            return fmt::Display::fmt(self.0, f);
        };
        let full = self.0.to_string();
        let suffix = format!(" (os error {code})");
        let text = full.strip_suffix(&suffix).unwrap_or(&full);
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => {
                for lower in first.to_lowercase() {
                    fmt::Write::write_char(f, lower)?;
                }
                f.write_str(chars.as_str())
            }
            None => fmt::Display::fmt(self.0, f),
        }
    }
}

/// Formats an error followed by its sources (`connection error: connection reset by peer`),
/// since hyper keeps the interesting part in the source.
struct ErrorChain<'a>(&'a hyper::Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            match err.downcast_ref::<io::Error>() {
                Some(io_err) => write!(f, ": {}", IoText(io_err))?,
                None => write!(f, ": {err}")?,
            }
            source = err.source();
        }
        Ok(())
    }
}

/// The name of a `grpc.health.v1.HealthCheckResponse.ServingStatus` value.
pub(super) struct ServingStatusName(pub(super) i32);

impl fmt::Display for ServingStatusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("UNKNOWN"),
            1 => f.write_str("SERVING"),
            2 => f.write_str("NOT_SERVING"),
            3 => f.write_str("SERVICE_UNKNOWN"),
            other => write!(f, "{other}"),
        }
    }
}

/// The canonical name of a gRPC status code (`UNAVAILABLE`, `NOT_FOUND`, ...).
pub(super) struct GrpcCodeName(pub(super) u32);

impl fmt::Display for GrpcCodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match rig_protocols::grpc::status_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "code({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_like_go() {
        let err = ProbeError::Dial {
            addr: "127.0.0.1:1".into(),
            source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
        };
        assert_eq!(err.to_string(), "dial tcp 127.0.0.1:1: connection refused");
        let custom = ProbeError::Dial {
            addr: "x:1".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "invalid socket address"),
        };
        assert_eq!(custom.to_string(), "dial tcp x:1: invalid socket address");
    }

    #[test]
    fn timeouts_use_go_durations() {
        let err = ProbeError::TimedOut {
            action: "GET http://127.0.0.1:80/".into(),
            after: Duration::from_millis(200),
        };
        assert_eq!(
            err.to_string(),
            "GET http://127.0.0.1:80/: timed out after 200ms"
        );
        let err = ProbeError::Unfinished {
            running_for: Duration::from_millis(1500),
        };
        assert_eq!(
            err.to_string(),
            "probe still running after 1.5s when the readiness deadline passed"
        );
    }

    #[test]
    fn grpc_names() {
        assert_eq!(
            ProbeError::NotServing { status: 2 }.to_string(),
            "grpc health: status NOT_SERVING"
        );
        assert_eq!(
            ProbeError::NotServing { status: 0 }.to_string(),
            "grpc health: status UNKNOWN"
        );
        assert_eq!(
            ProbeError::NotServing { status: 3 }.to_string(),
            "grpc health: status SERVICE_UNKNOWN"
        );
        assert_eq!(
            ProbeError::NotServing { status: 9 }.to_string(),
            "grpc health: status 9"
        );
        let err = ProbeError::GrpcStatus {
            code: 14,
            message: "warming up".into(),
        };
        assert_eq!(
            err.to_string(),
            "grpc health: rpc error: code = UNAVAILABLE desc = warming up"
        );
        assert_eq!(GrpcCodeName(16).to_string(), "UNAUTHENTICATED");
        assert_eq!(GrpcCodeName(99).to_string(), "code(99)");
    }
}
