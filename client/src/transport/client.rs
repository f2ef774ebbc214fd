//! A small client for rigd's HTTP API (routes in section 1 of the upstream server reference),
//! shared by every `rig` command.
//!
//! Error responses (`{"error": ..., "validation_errors": [...]}`) become
//! [`ClientError::Api`], whose message shows the error and every validation error on a line
//! of its own. The event stream is in [`EventStream`].

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use rig_types::{Health, ResolvedEnvironment};
use serde::{Deserialize, Serialize};

use super::event_stream::EventStream;
use super::http::Transport;
use super::sse::SseError;

/// How long `GET /health` may take before rigd counts as not answering.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a second `GET /health` may take when the first took longer than
/// [`HEALTH_TIMEOUT`] ([`RigdClient::health_patiently`]).
pub const SLOW_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `POST /environments` may take (it validates and prepares synchronously).
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a `DELETE` may take: teardown is synchronous and stopping containers is slow.
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long other small requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure talking to rigd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not `host:port` (optionally `http://host:port`).
    #[error("invalid rigd address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection could be made.
    #[error("cannot connect to rigd at {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// rigd did not answer in time.
    #[error("rigd at {addr} did not answer {what} within {}", duration_text(*after))]
    Timeout {
        /// The address.
        addr: String,
        /// The request, e.g. `GET /health`.
        what: String,
        /// The time allowed.
        after: Duration,
    },
    /// The HTTP exchange failed (connection reset, malformed response).
    #[error("HTTP error talking to rigd at {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// The hyper error.
        source: hyper::Error,
    },
    /// rigd answered with an error status.
    #[error("{}", ApiErrorText { status: *status, message, validation_errors })]
    Api {
        /// The HTTP status.
        status: u16,
        /// The `error` field (or the body text when it was not JSON).
        message: String,
        /// Every `validation_errors` entry.
        validation_errors: Vec<String>,
    },
    /// rigd answered something this client does not understand.
    #[error("unexpected response from rigd to {what}: {detail}")]
    Protocol {
        /// The request.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// An event's `data` was not a valid event. Not fatal: the stream goes on.
    #[error("skipping malformed event {id}: {source}")]
    BadEvent {
        /// The SSE id of the frame (empty when absent).
        id: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The event stream cannot be parsed any further.
    #[error("event stream: {0}")]
    Stream(#[from] SseError),
    /// The event stream dropped and could not be reopened.
    #[error("lost the event stream of environment {id}: {reason}")]
    StreamLost {
        /// The environment id.
        id: String,
        /// Why, including the last reconnection error.
        reason: String,
    },
    /// The environment was deleted (by `rig down`, its TTL or rigd shutting down) while its
    /// events were being followed.
    #[error("environment {id} no longer exists on rigd (torn down by another client, its TTL or a rigd restart)")]
    EnvironmentGone {
        /// The environment id.
        id: String,
    },
}

impl ClientError {
    /// True when rigd said the environment (or route) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ClientError::Api { status: 404, .. } | ClientError::EnvironmentGone { .. }
        )
    }

    /// True for errors after which an event stream carries on ([`ClientError::BadEvent`]).
    pub fn is_recoverable(&self) -> bool {
        matches!(self, ClientError::BadEvent { .. })
    }
}

struct ApiErrorText<'a> {
    status: u16,
    message: &'a str,
    validation_errors: &'a [String],
}

impl fmt::Display for ApiErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rigd returned HTTP {}", self.status)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if !self.validation_errors.is_empty() {
            f.write_str(":")?;
            for e in self.validation_errors {
                write!(f, "\n  - {e}")?;
            }
        }
        Ok(())
    }
}

fn duration_text(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Options of `DELETE /environments/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Keep the environment directory (`preserve=true`).
    pub preserve: bool,
    /// Why the environment is deleted (`reason=`); only `test_failed` changes the outcome.
    pub reason: Option<String>,
    /// Write the log files and return their paths and a summary (`log=true`).
    pub log: bool,
}

impl DeleteOptions {
    /// The query string, including its `?`, or empty.
    pub fn query(&self) -> String {
        let mut params = Vec::new();
        if self.preserve {
            params.push("preserve=true".to_string());
        }
        if let Some(reason) = self.reason.as_deref().filter(|r| !r.is_empty()) {
            params.push(format!("reason={}", encode_component(reason)));
        }
        if self.log {
            params.push("log=true".to_string());
        }
        if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        }
    }
}

/// The answer to `DELETE /environments/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DeleteResponse {
    /// The environment id.
    #[serde(default)]
    pub id: String,
    /// `destroyed`.
    #[serde(default)]
    pub status: String,
    /// The environment directory (removed unless preserved).
    #[serde(default)]
    pub env_dir: String,
    /// The JSONL log file, when `log=true` and writing succeeded.
    #[serde(default)]
    pub log_file: Option<String>,
    /// The human-readable log file.
    #[serde(default)]
    pub log_file_pretty: Option<String>,
    /// The condensed failure explanation, when there is something to explain.
    #[serde(default)]
    pub summary: Option<String>,
    /// Why a log file could not be written, when `log=true` (rig-rs addition).
    #[serde(default)]
    pub log_error: Option<String>,
}

/// One entry of `GET /environments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EnvironmentSummary {
    /// The instance id.
    pub id: String,
    /// The environment name.
    pub name: String,
    /// The spec's `ttl`, empty when the default applies.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ttl: String,
    /// Time left before the TTL expires, as a Go duration (`9m41s`).
    #[serde(default)]
    pub remaining_ttl: String,
    /// Sorted names of the services (injected nodes excluded).
    #[serde(default)]
    pub services: Vec<String>,
    /// [`STATUS_DESTROYING`] while the environment is being torn down (it can no longer be
    /// looked up by id), [`STATUS_ABANDONED`] while its owner is gone and rigd is about to
    /// end it; empty otherwise (rig-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
}

/// [`EnvironmentSummary::status`] of an environment being torn down.
pub const STATUS_DESTROYING: &str = "destroying";
/// [`EnvironmentSummary::status`] of an environment whose owner (a test process, `rig up`)
/// went away without ending it: rigd ends it once its orphan grace has passed.
pub const STATUS_ABANDONED: &str = "abandoned";

impl EnvironmentSummary {
    /// Whether the environment is being torn down.
    pub fn is_ending(&self) -> bool {
        self.status == STATUS_DESTROYING
    }

    /// Whether its owner went away and rigd is about to end it.
    pub fn is_abandoned(&self) -> bool {
        self.status == STATUS_ABANDONED
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    validation_errors: Vec<String>,
}

/// What `POST /environments` answers: the new environment's id, and rigd's warnings about
/// the spec (misspelt fields and config keys it ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    /// The environment's id.
    pub id: String,
    /// Warnings about the spec; the environment is created regardless.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A client for one rigd.
#[derive(Debug, Clone)]
pub struct RigdClient {
    transport: Transport,
}

impl RigdClient {
    /// A client for the rigd at `addr`: `host:port`, optionally with an `http://` prefix and a
    /// trailing `/` (as in an addr file, `RIG_SERVER_ADDR` or `--server`).
    pub fn new(addr: &str) -> Result<RigdClient, ClientError> {
        Ok(RigdClient {
            transport: Transport::new(normalize_addr(addr)?),
        })
    }

    /// The `host:port` this client talks to.
    pub fn addr(&self) -> &str {
        self.transport.addr()
    }

    /// `http://host:port`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `GET /health` within [`HEALTH_TIMEOUT`]: rigd's version and API version when it
    /// answers 200 (upstream rigd states neither).
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.health_within(HEALTH_TIMEOUT).await
    }

    /// `GET /health` within [`HEALTH_TIMEOUT`], and when that times out (something took the
    /// connection but answered slowly: rigd on a loaded machine) once more within
    /// [`SLOW_HEALTH_TIMEOUT`], rather than taking a busy rigd for a dead one.
    pub async fn health_patiently(&self) -> Result<Health, ClientError> {
        match self.health().await {
            Err(ClientError::Timeout { .. }) => self.health_within(SLOW_HEALTH_TIMEOUT).await,
            other => other,
        }
    }

    /// `GET /health` within `timeout`.
    pub async fn health_within(&self, timeout: Duration) -> Result<Health, ClientError> {
        let (status, body) = self
            .transport
            .request(Method::GET, "/health", None, timeout)
            .await?;
        expect_status(status, StatusCode::OK, &body)?;
        decode("GET /health", &body)
    }

    /// `GET /environments`: every registered environment, sorted by name.
    pub async fn list_environments(&self) -> Result<Vec<EnvironmentSummary>, ClientError> {
        let (status, body) = self
            .transport
            .request(Method::GET, "/environments", None, REQUEST_TIMEOUT)
            .await?;
        if status != StatusCode::OK {
            return Err(api_error(status, &body));
        }
        decode("GET /environments", &body)
    }

    /// `GET /environments/{id}/log`: every event so far, `service.log` included, in `seq`
    /// order. Decoded as it arrives, however large the log (no whole-response limit); fails
    /// when rigd sends nothing for 10 s.
    pub async fn get_log(&self, id: &str) -> Result<Vec<rig_types::Event>, ClientError> {
        let path = format!("{}/log", environment_path(id));
        let response = self
            .transport
            .open(Method::GET, &path, &[], REQUEST_TIMEOUT)
            .await?;
        if response.status != StatusCode::OK {
            let status = response.status;
            let body = http_body_util::BodyExt::collect(response.body)
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(api_error(status, &body));
        }
        super::log_body::read_events(
            response,
            format!("GET {path}"),
            self.transport.addr().to_string(),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `POST /environments`: validates and creates an environment, returning its id and
    /// rigd's warnings about the spec. Orchestration goes on in rigd; follow it with
    /// [`RigdClient::events`].
    pub async fn create_environment<T: Serialize + ?Sized>(
        &self,
        spec: &T,
    ) -> Result<Created, ClientError> {
        let body = serde_json::to_vec(spec).map_err(|e| ClientError::Protocol {
            what: "POST /environments".into(),
            detail: format!("encoding the spec: {e}"),
        })?;
        let (status, body) = self
            .transport
            .request(Method::POST, "/environments", Some(body), CREATE_TIMEOUT)
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        let created: Created = decode("POST /environments", &body)?;
        if created.id.is_empty() {
            return Err(ClientError::Protocol {
                what: "POST /environments".into(),
                detail: "the response has an empty id".into(),
            });
        }
        Ok(created)
    }

    /// `GET /environments/{id}`: the environment's services, status and endpoints now.
    pub async fn get_environment(&self, id: &str) -> Result<ResolvedEnvironment, ClientError> {
        let path = environment_path(id);
        let (status, body) = self
            .transport
            .request(Method::GET, &path, None, REQUEST_TIMEOUT)
            .await?;
        if status != StatusCode::OK {
            return Err(api_error(status, &body));
        }
        decode(&format!("GET {path}"), &body)
    }

    /// `DELETE /environments/{id}`: tears the environment down and waits until it is gone.
    pub async fn delete_environment(
        &self,
        id: &str,
        options: &DeleteOptions,
    ) -> Result<DeleteResponse, ClientError> {
        let path = format!("{}{}", environment_path(id), options.query());
        let (status, body) = self
            .transport
            .request(Method::DELETE, &path, None, DELETE_TIMEOUT)
            .await?;
        if status != StatusCode::OK {
            return Err(api_error(status, &body));
        }
        decode(&format!("DELETE {path}"), &body)
    }

    /// `POST /environments/{id}/events`: sends a client event (`callback.response`,
    /// `service.error`, `service.log`, `test.note`).
    pub async fn post_event(&self, id: &str, event: &serde_json::Value) -> Result<(), ClientError> {
        let path = format!("{}/events", environment_path(id));
        let body = serde_json::to_vec(event).map_err(|e| ClientError::Protocol {
            what: format!("POST {path}"),
            detail: format!("encoding the event: {e}"),
        })?;
        let (status, body) = self
            .transport
            .request(Method::POST, &path, Some(body), REQUEST_TIMEOUT)
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok(())
    }

    /// `POST /environments/{id}/keepalive`: pushes the environment's TTL deadline out by one
    /// TTL, so an environment somebody is still watching is not reaped as abandoned.
    pub async fn keepalive(&self, id: &str) -> Result<(), ClientError> {
        self.post_action(id, "keepalive").await.map(drop)
    }

    /// `POST /environments/{id}/sync`: waits until the traffic the environment's proxies have
    /// observed so far is in its log; returns the sequence number of the last event its event
    /// stream (without `service.log`) delivers.
    pub async fn sync(&self, id: &str) -> Result<u64, ClientError> {
        #[derive(serde::Deserialize)]
        struct Synced {
            seq: u64,
        }
        let body = self.post_action(id, "sync").await?;
        let synced: Synced = decode("POST /environments/{id}/sync", &body)?;
        Ok(synced.seq)
    }

    /// `POST /environments/{id}/{action}` with an empty object; the body of a success.
    async fn post_action(&self, id: &str, action: &str) -> Result<Bytes, ClientError> {
        let path = format!("{}/{action}", environment_path(id));
        let (status, body) = self
            .transport
            .request(Method::POST, &path, Some(b"{}".to_vec()), REQUEST_TIMEOUT)
            .await?;
        if !status.is_success() {
            return Err(api_error(status, &body));
        }
        Ok(body)
    }

    /// Follows `GET /environments/{id}/events` from just after `last_event_id` (from the
    /// start when `None`). Nothing is sent until the stream is first read.
    pub fn events(&self, id: &str, last_event_id: Option<u64>) -> EventStream {
        EventStream::new(self.transport.clone(), id.to_string(), last_event_id)
    }
}

/// `/environments/{id}` with the id percent-encoded.
pub(crate) fn environment_path(id: &str) -> String {
    format!("/environments/{}", encode_component(id))
}

fn expect_status(status: StatusCode, want: StatusCode, body: &Bytes) -> Result<(), ClientError> {
    if status == want {
        Ok(())
    } else {
        Err(api_error(status, body))
    }
}

/// Turns an error response into [`ClientError::Api`]: the JSON `error` and
/// `validation_errors` when present, else the body text.
pub(crate) fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let (message, validation_errors) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.error.is_empty() || !b.validation_errors.is_empty() => {
            (b.error, b.validation_errors)
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let mut message: String = text.chars().take(500).collect();
            if message.len() < text.len() {
                message.push('…');
            }
            (message, Vec::new())
        }
    };
    ClientError::Api {
        status: status.as_u16(),
        message,
        validation_errors,
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Protocol {
        what: what.to_string(),
        detail: format!("invalid JSON: {e}"),
    })
}

/// Accepts `host:port`, `http://host:port` and `http://host:port/`.
fn normalize_addr(addr: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidAddress {
        addr: addr.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = addr.trim();
    let rest = match trimmed.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(invalid(&format!(
                "scheme {scheme}:// is not supported; rigd speaks plain http on loopback"
            )))
        }
        None => trimmed,
    };
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.is_empty() {
        return Err(invalid("expected host:port, e.g. 127.0.0.1:41234"));
    }
    if hostport.contains('/') {
        return Err(invalid("expected host:port without a path"));
    }
    match rig_types::endpoint::split_host_port(hostport) {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(hostport.to_string())
        }
        _ => Err(invalid("expected host:port, e.g. 127.0.0.1:41234")),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_accept_bare_and_http_forms() {
        for (given, want) in [
            ("127.0.0.1:4000", "127.0.0.1:4000"),
            ("http://127.0.0.1:4000", "127.0.0.1:4000"),
            ("http://127.0.0.1:4000/", "127.0.0.1:4000"),
            (" localhost:1 ", "localhost:1"),
            ("[::1]:9", "[::1]:9"),
        ] {
            assert_eq!(RigdClient::new(given).unwrap().addr(), want, "{given}");
        }
        for bad in [
            "",
            "127.0.0.1",
            "https://127.0.0.1:1",
            "127.0.0.1:x",
            "h:1/path",
            ":80",
        ] {
            let err = RigdClient::new(bad).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidAddress { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn validation_errors_are_listed_one_per_line() {
        let body = br#"{"error":"spec validation failed","validation_errors":["service \"api\": type is required","name is required"]}"#;
        let err = api_error(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(
            err.to_string(),
            "rigd returned HTTP 422: spec validation failed:\n  - service \"api\": type is required\n  - name is required"
        );
    }

    #[test]
    fn plain_and_json_errors_keep_the_message() {
        let err = api_error(StatusCode::BAD_REQUEST, br#"{"error":"decode: EOF"}"#);
        assert_eq!(err.to_string(), "rigd returned HTTP 400: decode: EOF");
        let err = api_error(StatusCode::INTERNAL_SERVER_ERROR, b"{\"error\":\"orchestrate: service \\\"x\\\": unknown service type: \\\"script\\\"\"}\n");
        assert_eq!(
            err.to_string(),
            "rigd returned HTTP 500: orchestrate: service \"x\": unknown service type: \"script\""
        );
        let err = api_error(StatusCode::NOT_FOUND, b"404 page not found\n");
        assert_eq!(
            err.to_string(),
            "rigd returned HTTP 404: 404 page not found"
        );
        assert!(err.is_not_found());
        assert_eq!(
            api_error(StatusCode::BAD_GATEWAY, b"").to_string(),
            "rigd returned HTTP 502"
        );
    }

    #[test]
    fn delete_query_string() {
        assert_eq!(DeleteOptions::default().query(), "");
        let opts = DeleteOptions {
            preserve: true,
            reason: Some("test failed&x".into()),
            log: true,
        };
        assert_eq!(
            opts.query(),
            "?preserve=true&reason=test%20failed%26x&log=true"
        );
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        assert_eq!(
            environment_path("19a4f3c2b11-3fa9c2d1"),
            "/environments/19a4f3c2b11-3fa9c2d1"
        );
        assert_eq!(environment_path("a/b c"), "/environments/a%2Fb%20c");
    }
}
