//! Request guards: the security baseline (architecture section 8) and idle-timer activity.
//!
//! rigd runs arbitrary commands for whoever can reach its API, and it listens on loopback.
//! A web page the developer happens to have open can still reach loopback, so every request
//! is checked before routing:
//!
//! - **DNS rebinding:** the `Host` header must be an IP literal or `localhost` (a rebinding
//!   attack always arrives with the attacker's host *name*). A request without `Host`
//!   (HTTP/1.0) passes.
//! - **Cross-site requests:** a request carrying an `Origin` header comes from a web page;
//!   rigd's clients (SDKs, CLI, curl) never send one. Rejected.
//! - **Simple-request CSRF:** a request with a body must declare `Content-Type:
//!   application/json`, which a cross-site form cannot send without a CORS preflight.
//!
//! Rejections are `403` or `415` with the usual `{"error": ...}` body.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::response::ApiError;
use super::state::AppState;

/// Middleware: restarts the idle countdown on every request.
pub(crate) async fn touch_idle(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    state.idle().touch();
    next.run(req).await
}

/// Middleware: the security checks described in the module docs.
pub(crate) async fn security(req: Request, next: Next) -> Response {
    match check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Runs every check on a request's headers.
pub(crate) fn check(headers: &HeaderMap) -> Result<(), ApiError> {
    check_host(headers)?;
    check_origin(headers)?;
    check_content_type(headers)
}

fn check_host(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::HOST) else {
        return Ok(());
    };
    let host = value.to_str().unwrap_or("");
    if host_is_allowed(host) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: Host {host:?} is not an IP address or localhost; \
                 rigd only answers local clients (connect to it by address)"
            ),
        ))
    }
}

/// True for `localhost`, `*.localhost` and IP literals, each with an optional port.
fn host_is_allowed(host: &str) -> bool {
    let name = strip_port(host);
    if name.is_empty() {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    let bare = lower
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(lower);
    bare.parse::<IpAddr>().is_ok()
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`; anything else unchanged.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        // A single colon separates the port; more than one means a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(origin) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: cross-origin request from {:?}; rigd does not accept requests \
                 from web pages",
                origin.to_str().unwrap_or("<non-ASCII origin>")
            ),
        )),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    if !has_body(headers) {
        return Ok(());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""));
    match content_type {
        Some(ct) if is_json(ct) => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {:?}: send request bodies with \
                 `Content-Type: application/json`",
                other.unwrap_or("")
            ),
        )),
    }
}

/// True when the request announces a body (a non-zero `Content-Length` or any
/// `Transfer-Encoding`).
fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
}

/// `application/json`, case-insensitively, with optional parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_and_ip_hosts_pass() {
        for host in [
            "127.0.0.1:4000",
            "127.0.0.1",
            "localhost:4000",
            "LOCALHOST",
            "localhost.",
            "app.localhost:1",
            "[::1]:4000",
            "[::1]",
            "::1",
            "10.1.2.3:80",
        ] {
            assert!(host_is_allowed(host), "{host} should pass");
        }
    }

    #[test]
    fn host_names_are_rejected() {
        for host in [
            "evil.example:4000",
            "evil.example",
            "localhost.evil.example",
            "",
            ":80",
        ] {
            assert!(!host_is_allowed(host), "{host:?} should be rejected");
        }
        let err = check(&headers(&[(header::HOST, "rebind.example:4000")])).unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert!(
            err.message().contains("rebind.example"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn any_origin_is_rejected() {
        let err = check(&headers(&[
            (header::HOST, "127.0.0.1:4000"),
            (header::ORIGIN, "http://127.0.0.1:4000"),
        ]));
        assert_eq!(err.unwrap_err().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn bodies_must_be_json() {
        let ok = headers(&[
            (header::CONTENT_LENGTH, "2"),
            (header::CONTENT_TYPE, "Application/JSON; charset=utf-8"),
        ]);
        assert!(check(&ok).is_ok());
        let form = headers(&[
            (header::CONTENT_LENGTH, "2"),
            (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(
            check(&form).unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let missing = headers(&[(header::TRANSFER_ENCODING, "chunked")]);
        assert_eq!(
            check(&missing).unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        // No body: no content type needed.
        assert!(check(&headers(&[(header::CONTENT_LENGTH, "0")])).is_ok());
        assert!(check(&HeaderMap::new()).is_ok());
    }
}
