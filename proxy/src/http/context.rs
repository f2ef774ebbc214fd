//! What every exchange of one proxy shares: the target, the upstream connections, the observer and
//! the capture policy. Built once by [`serve`](super::serve), validated there.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::uri::Authority;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::settings::HttpSettings;
use super::upstream::Upstream;
use crate::grpc::GrpcContext;
use crate::observe::Observer;

/// Why [`serve`](super::serve) refused to start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServeError {
    /// The target is not a `host:port` authority.
    #[error(
        "invalid proxy target `{target}`: {reason} (expected `host:port`, e.g. `127.0.0.1:8080`)"
    )]
    InvalidTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A name in [`HttpSettings::redact`] is not a valid HTTP header name.
    #[error("invalid header name `{name}` in the proxy's redaction list: {reason}")]
    InvalidRedactHeader {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Shared state of one HTTP proxy.
pub(crate) struct Context {
    /// The target, `host:port`, as given.
    pub(crate) target: Arc<str>,
    /// The target as a URI authority, used when a request names none.
    pub(crate) target_authority: Authority,
    /// Connections to the target.
    pub(crate) upstream: Upstream,
    /// Where records go.
    pub(crate) observer: Observer,
    /// Body bytes captured per direction.
    pub(crate) capture_limit: usize,
    /// Headers recorded as redacted.
    pub(crate) redact: Arc<[HeaderName]>,
    /// Cancelled when the proxy shuts down.
    pub(crate) cancel: CancellationToken,
    /// Connection and tunnel tasks, awaited on shutdown.
    pub(crate) tracker: TaskTracker,
    /// How long in-flight exchanges may finish after cancellation.
    pub(crate) shutdown_grace: Duration,
    /// How long the rest of a request head may take once its first bytes arrived.
    pub(crate) head_timeout: Duration,
    /// How gRPC calls are recorded.
    pub(crate) grpc: Arc<GrpcContext>,
    /// Whether the target speaks h2c, once asked (see [`super::h2c::target_speaks_h2c`]).
    pub(crate) target_h2c: tokio::sync::OnceCell<bool>,
    /// Read buffer capacity held by raw-path connections, as they report it (tests only).
    #[cfg(test)]
    pub(crate) raw_buffers: Arc<std::sync::atomic::AtomicUsize>,
}

impl Context {
    /// Validates the target and settings and builds the shared state.
    pub(crate) fn new(
        target: String,
        observer: Observer,
        settings: &HttpSettings,
        cancel: CancellationToken,
    ) -> Result<Context, ServeError> {
        let target_authority = parse_target(&target)?;
        let redact = settings
            .redact
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| {
                    ServeError::InvalidRedactHeader {
                        name: name.clone(),
                        reason: e.to_string(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let target: Arc<str> = target.into();
        Ok(Context {
            upstream: Upstream::new(target.clone(), settings),
            grpc: GrpcContext::new(target.clone(), &settings.grpc, settings.capture_limit),
            target,
            target_authority,
            observer,
            capture_limit: settings.capture_limit,
            redact: redact.into(),
            cancel,
            tracker: TaskTracker::new(),
            shutdown_grace: settings.shutdown_grace,
            head_timeout: settings.head_timeout,
            target_h2c: tokio::sync::OnceCell::new(),
            #[cfg(test)]
            raw_buffers: Arc::default(),
        })
    }
}

fn parse_target(target: &str) -> Result<Authority, ServeError> {
    let invalid = |reason: &str| ServeError::InvalidTarget {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    if target.contains('@') || target.contains('/') {
        return Err(invalid("only a host and a port are allowed"));
    }
    let authority = Authority::from_str(target).map_err(|e| invalid(&e.to_string()))?;
    if authority.port_u16().is_none() {
        return Err(invalid("the port is missing"));
    }
    if authority.host().is_empty() {
        return Err(invalid("the host is missing"));
    }
    Ok(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_host_and_port() {
        assert!(parse_target("127.0.0.1:8080").is_ok());
        assert!(parse_target("localhost:1").is_ok());
        assert!(parse_target("[::1]:9000").is_ok());
        for bad in ["127.0.0.1", "", ":80", "http://a:1", "u@a:1", "a b:1"] {
            let err = parse_target(bad).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{bad}`")),
                "{bad}: {err}"
            );
        }
    }
}
