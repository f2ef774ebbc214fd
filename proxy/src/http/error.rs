//! Failed exchanges: which side failed and how, the event text, and the marked response the
//! proxy answers with, so a test can tell a rig failure from an application's own error:
//! - plain HTTP: `502` + `x-rig-proxy-error: <kind>` + a short text body;
//! - gRPC calls: what a gRPC client understands, a trailers-only `200` with `grpc-status`
//!   (`14 UNAVAILABLE` when the target failed) and a percent-encoded `grpc-message` naming the
//!   cause, plus the same marker header; a response that breaks off after its head ends with
//!   such trailers instead of a reset.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use rig_protocols::grpc::encode_message;

use super::body::{BodyError, ProxyBody};
use super::headers::ERROR_HEADER;
use super::upstream::SendError;

/// The party whose behaviour ended an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The caller of the proxy.
    Client,
    /// The target service.
    Upstream,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        })
    }
}

/// How an exchange failed before a response from the target could be relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Nothing listens on the target address.
    ConnectRefused,
    /// The TCP connection to the target was not established in time.
    ConnectTimeout,
    /// Connecting failed otherwise (unreachable, name resolution, ...).
    ConnectFailed,
    /// The target accepted the request but sent no response headers in time.
    UpstreamTimeout,
    /// The target closed the connection before responding.
    UpstreamClosed,
    /// The target reset the connection or the HTTP/2 stream.
    UpstreamReset,
    /// The target's answer was not valid HTTP (or not the HTTP version expected).
    UpstreamProtocol,
    /// Any other failure talking to the target.
    UpstreamFailed,
    /// The client's request body broke off, so the request could not be completed.
    ClientAborted,
    /// The request cannot be forwarded as it is.
    BadRequest,
}

impl FailureKind {
    /// The value of the `x-rig-proxy-error` marker header.
    pub(crate) fn marker(self) -> &'static str {
        match self {
            FailureKind::ConnectRefused => "connect-refused",
            FailureKind::ConnectTimeout => "connect-timeout",
            FailureKind::ConnectFailed => "connect-failed",
            FailureKind::UpstreamTimeout => "upstream-timeout",
            FailureKind::UpstreamClosed => "upstream-closed",
            FailureKind::UpstreamReset => "upstream-reset",
            FailureKind::UpstreamProtocol => "upstream-protocol",
            FailureKind::UpstreamFailed => "upstream-failed",
            FailureKind::ClientAborted => "client-aborted",
            FailureKind::BadRequest => "bad-request",
        }
    }

    /// Which side failed.
    pub(crate) fn side(self) -> Side {
        match self {
            FailureKind::ClientAborted | FailureKind::BadRequest => Side::Client,
            _ => Side::Upstream,
        }
    }

    /// The status the proxy answers with.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            FailureKind::BadRequest => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `grpc-status` the proxy answers a gRPC call with: `UNAVAILABLE` (14) whenever the
    /// target failed (the code gRPC clients retry on), `CANCELLED` (1) for a client that broke
    /// off its request, `INTERNAL` (13) for a request the proxy cannot forward.
    pub(crate) fn grpc_status(self) -> u32 {
        match self {
            FailureKind::ClientAborted => 1,
            FailureKind::BadRequest => 13,
            _ => 14,
        }
    }
}

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// A classified failure with its details.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    /// One sentence naming what happened, for the response body and the event.
    pub(crate) summary: String,
    /// The underlying error chain, for the event.
    pub(crate) cause: String,
}

impl Failure {
    /// Classifies an upstream send failure. `target` is the proxy's target, `http2` whether
    /// the proxy spoke h2c to it.
    pub(crate) fn from_send(error: &SendError, target: &str, http2: bool) -> Failure {
        let (error, is_connect): (&(dyn StdError + 'static), bool) = match error {
            SendError::Timeout(limit) => {
                return Failure {
                    kind: FailureKind::UpstreamTimeout,
                    summary: format!(
                        "the target {target} sent no response headers within {limit:?}"
                    ),
                    cause: String::new(),
                }
            }
            SendError::Connect(error) => (error, true),
            SendError::Http1(error) | SendError::Http2(error) => (error, false),
        };
        let kind = classify(error, is_connect);
        let summary = summary(kind, target, http2);
        // For a broken request body, the body's own error says it all.
        let cause = match kind {
            FailureKind::ClientAborted => causes(find::<BodyError>(error).and_then(|e| e.source())),
            _ => causes(Some(error)),
        };
        Failure {
            kind,
            summary,
            cause: if cause.is_empty() {
                error.to_string()
            } else {
                cause
            },
        }
    }

    /// Classifies the failure of the target's response body after `delivered` bytes of it
    /// were relayed (the response head was already sent).
    pub(crate) fn from_body(error: &BodyError, target: &str, delivered: u64) -> Failure {
        let kind = classify(error, false);
        Failure::after_body(kind, target, delivered, causes(error.source()))
    }

    /// A failure of the target after `delivered` bytes of the response body were relayed.
    pub(crate) fn after_body(
        kind: FailureKind,
        target: &str,
        delivered: u64,
        cause: String,
    ) -> Failure {
        let what = match kind {
            FailureKind::UpstreamReset => "reset the stream",
            FailureKind::UpstreamClosed => "closed the connection",
            FailureKind::UpstreamProtocol => "broke the HTTP/2 protocol",
            _ => "failed",
        };
        Failure {
            kind,
            summary: format!(
                "the target {target} {what} after {delivered} bytes of the response body"
            ),
            cause,
        }
    }

    /// A failure of an h2c target before the response head, as the h2c relay sees it.
    pub(crate) fn relayed(kind: FailureKind, target: &str, cause: String) -> Failure {
        Failure {
            kind,
            summary: summary(kind, target, true),
            cause,
        }
    }

    /// A failure found by the proxy itself.
    pub(crate) fn new(kind: FailureKind, summary: String) -> Failure {
        Failure {
            kind,
            summary,
            cause: String::new(),
        }
    }

    /// The event's `error`: side, summary and cause.
    pub(crate) fn event_error(&self) -> String {
        if self.cause.is_empty() {
            format!("{}: {}", self.kind.side(), self.summary)
        } else {
            format!("{}: {}: {}", self.kind.side(), self.summary, self.cause)
        }
    }

    /// The response the client gets, plus its headers and body for the record: a gRPC
    /// trailers-only response for a gRPC call, else a marked plain-text error.
    pub(crate) fn response(&self, grpc: bool) -> (Response<ProxyBody>, HeaderMap, Bytes) {
        if grpc {
            let mut headers = self.grpc_trailers();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            let mut response = Response::new(ProxyBody::empty());
            *response.headers_mut() = headers.clone();
            return (response, headers, Bytes::new());
        }
        let body = Bytes::from(format!("rig proxy: {}\n", self.summary));
        let mut headers = HeaderMap::new();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.kind.marker()));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let mut response = Response::new(ProxyBody::Full(Some(body.clone())));
        *response.status_mut() = self.kind.status();
        *response.headers_mut() = headers.clone();
        (response, headers, body)
    }

    /// The gRPC status of this failure as trailers (or the headers of a trailers-only
    /// response): `grpc-status`, `grpc-message` (`rig proxy: <summary>: <cause>`,
    /// percent-encoded) and the marker header.
    pub(crate) fn grpc_trailers(&self) -> HeaderMap {
        let message = if self.cause.is_empty() {
            format!("rig proxy: {}", self.summary)
        } else {
            format!("rig proxy: {}: {}", self.summary, self.cause)
        };
        let mut trailers = HeaderMap::new();
        trailers.insert(
            GRPC_STATUS.clone(),
            HeaderValue::from(self.kind.grpc_status()),
        );
        // Percent-encoding leaves only printable ASCII: always a valid header value.
        if let Ok(message) = HeaderValue::try_from(encode_message(&message)) {
            trailers.insert(GRPC_MESSAGE.clone(), message);
        }
        trailers.insert(ERROR_HEADER, HeaderValue::from_static(self.kind.marker()));
        trailers
    }
}

/// The failure of an HTTP/1.1 target before its response head, as the raw path sees it.
#[derive(Debug)]
pub(crate) enum RawFailure<'a> {
    /// The target closed the connection.
    Closed,
    /// Reading from or writing to the target failed.
    Io(&'a io::Error),
    /// The target's answer is not valid HTTP/1.1 (hyper's wording of why).
    Invalid(&'static str),
}

impl Failure {
    /// Classifies a raw-path failure exactly as [`Failure::from_send`] classifies the same
    /// failure seen by hyper's client: same kind, summary and cause.
    pub(crate) fn from_raw(error: RawFailure<'_>, target: &str) -> Failure {
        let (kind, cause) = match error {
            RawFailure::Closed => (
                FailureKind::UpstreamClosed,
                "connection closed before message completed".to_string(),
            ),
            RawFailure::Io(error) => {
                let kind = match error.kind() {
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                        FailureKind::UpstreamReset
                    }
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionAborted => {
                        FailureKind::UpstreamClosed
                    }
                    _ => FailureKind::UpstreamFailed,
                };
                (kind, format!("connection error: {error}"))
            }
            RawFailure::Invalid(why) => (FailureKind::UpstreamProtocol, why.to_string()),
        };
        Failure {
            kind,
            summary: summary(kind, target, false),
            cause,
        }
    }
}

impl Failure {
    /// A target that answered an h2c connection in HTTP/1.x (`status_line`): it does not
    /// speak h2c. Worded as [`Failure::from_send`] words it when hyper's client finds it.
    pub(crate) fn not_http2(target: &str, status_line: &str) -> Failure {
        let kind = FailureKind::UpstreamProtocol;
        Failure {
            kind,
            summary: summary(kind, target, true),
            cause: format!("it answered {status_line:?}"),
        }
    }
}

/// The one sentence naming a failure of the exchange with `target`.
fn summary(kind: FailureKind, target: &str, http2: bool) -> String {
    match kind {
        FailureKind::ConnectRefused => {
            format!("the target {target} refused the connection (is the service listening?)")
        }
        FailureKind::ConnectTimeout => format!("connecting to the target {target} timed out"),
        FailureKind::ConnectFailed => format!("could not connect to the target {target}"),
        FailureKind::UpstreamClosed => {
            format!("the target {target} closed the connection before responding")
        }
        FailureKind::UpstreamReset => format!("the target {target} reset the connection"),
        FailureKind::UpstreamProtocol if http2 => format!(
            "the target {target} did not answer in HTTP/2 (the client spoke HTTP/2, so the \
             proxy used h2c; does the target support h2c?)"
        ),
        FailureKind::UpstreamProtocol => {
            format!("the target {target} sent an invalid HTTP response")
        }
        FailureKind::ClientAborted => "the client's request body broke off".to_string(),
        _ => format!("the exchange with the target {target} failed"),
    }
}

fn classify(error: &(dyn StdError + 'static), is_connect: bool) -> FailureKind {
    let mut io_kind = None;
    let mut hyper_kind = None;
    let mut h2_reset = false;
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(body) = current.downcast_ref::<BodyError>() {
            if body.side == Side::Client {
                return FailureKind::ClientAborted;
            }
        }
        if let Some(e) = current.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(e.kind());
        }
        if let Some(e) = current.downcast_ref::<hyper::Error>() {
            if hyper_kind.is_none() {
                hyper_kind = Some(if e.is_incomplete_message() || e.is_canceled() {
                    FailureKind::UpstreamClosed
                } else if e.is_parse() {
                    FailureKind::UpstreamProtocol
                } else {
                    FailureKind::UpstreamFailed
                });
            }
        }
        if let Some(e) = current.downcast_ref::<h2::Error>() {
            if let Some(kind) = e.get_io().map(io::Error::kind) {
                io_kind.get_or_insert(kind);
            } else if e.is_reset() || (e.is_go_away() && e.is_remote()) {
                h2_reset = true;
            } else {
                hyper_kind = Some(FailureKind::UpstreamProtocol);
            }
        }
        source = current.source();
    }
    if is_connect {
        return match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => FailureKind::ConnectRefused,
            Some(io::ErrorKind::TimedOut) => FailureKind::ConnectTimeout,
            _ => FailureKind::ConnectFailed,
        };
    }
    match io_kind {
        Some(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => {
            return FailureKind::UpstreamReset
        }
        Some(io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionAborted) => {
            return FailureKind::UpstreamClosed
        }
        _ => {}
    }
    if h2_reset {
        return FailureKind::UpstreamReset;
    }
    hyper_kind.unwrap_or(FailureKind::UpstreamFailed)
}

/// The first error of type `E` in `error`'s chain.
fn find<'e, E: StdError + 'static>(error: &'e (dyn StdError + 'static)) -> Option<&'e E> {
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(found) = current.downcast_ref::<E>() {
            return Some(found);
        }
        source = current.source();
    }
    None
}

/// An error and its causes as `a: b: c`.
pub(crate) fn describe(error: &(dyn StdError + 'static)) -> String {
    causes(Some(error))
}

/// A chain of causes as `a: b: c`, without repeats.
fn causes(mut source: Option<&(dyn StdError + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    while let Some(current) = source {
        let text = current.to_string();
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = current.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_sides_and_statuses() {
        assert_eq!(FailureKind::ConnectRefused.marker(), "connect-refused");
        assert_eq!(FailureKind::UpstreamTimeout.side(), Side::Upstream);
        assert_eq!(FailureKind::ClientAborted.side(), Side::Client);
        assert_eq!(FailureKind::UpstreamReset.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(FailureKind::BadRequest.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn timeouts_name_the_target_and_the_limit() {
        let f = Failure::from_send(
            &SendError::Timeout(std::time::Duration::from_millis(250)),
            "127.0.0.1:9",
            false,
        );
        assert_eq!(f.kind, FailureKind::UpstreamTimeout);
        assert_eq!(
            f.event_error(),
            "upstream: the target 127.0.0.1:9 sent no response headers within 250ms"
        );
        let (response, headers, body) = f.response(false);
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(headers[ERROR_HEADER], "upstream-timeout");
        assert_eq!(
            body,
            "rig proxy: the target 127.0.0.1:9 sent no response headers within 250ms\n"
        );
    }

    #[test]
    fn grpc_calls_get_a_trailers_only_unavailable() {
        let f = Failure {
            kind: FailureKind::ConnectRefused,
            summary: "the target 127.0.0.1:9 refused the connection".to_string(),
            cause: "tcp connect: Connection refused (os error 111)".to_string(),
        };
        let (response, headers, body) = f.response(true);
        assert_eq!(response.status(), StatusCode::OK);
        assert!(http_body::Body::is_end_stream(response.body()));
        assert!(body.is_empty());
        assert_eq!(headers, *response.headers());
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["grpc-status"], "14");
        assert_eq!(
            rig_protocols::grpc::decode_message(headers["grpc-message"].as_bytes()),
            "rig proxy: the target 127.0.0.1:9 refused the connection: \
             tcp connect: Connection refused (os error 111)"
        );
        assert_eq!(headers[ERROR_HEADER], "connect-refused");

        let bad = Failure::new(FailureKind::BadRequest, "100% bad\n".to_string());
        let trailers = bad.grpc_trailers();
        assert_eq!(trailers["grpc-status"], "13");
        assert_eq!(trailers["grpc-message"], "rig proxy: 100%25 bad%0A");
        assert_eq!(FailureKind::ClientAborted.grpc_status(), 1);
        assert_eq!(FailureKind::UpstreamTimeout.grpc_status(), 14);
    }
}
