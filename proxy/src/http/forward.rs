//! The request path: one client request in, one response out, everything streamed.
//!
//! ```text
//! client ─► strip hop-by-hop ─► RequestBody (capture) ─► upstream connection ─► target
//! client ◄─ strip hop-by-hop ◄─ ResponseBody (capture) ◄──────────────────┘
//!                  └─ 101 / CONNECT 2xx: tunnel both upgraded connections
//! ```
//!
//! The only per-request costs beyond forwarding are a header-map clone per direction (the
//! record's headers), reference-counted slices of the first body frames, two clock reads and
//! one `try_send` to the observer.

use std::future::Future;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use rig_types::Timestamp;
use tokio::time::Instant;

use super::body::{ProxyBody, RequestBody, ResponseBody};
use super::capture::Capture;
use super::context::Context;
use super::error::{Failure, FailureKind};
use super::exchange::{Exchange, RequestHead, ResponseGuard, ResponseOutcome};
use super::headers::{
    is_probe, strip_hop_by_hop, strip_http2_hop_by_hop, upgrade_protocol, wants_upgrade,
};
use super::upgrade;
use super::upstream::Http1Upstream;
use crate::grpc::is_grpc;

/// Forwards one request to the target and returns the response to stream back.
///
/// HTTP/1.x requests go over `connection`, the client connection's own upstream connection;
/// HTTP/2 requests go over the shared h2c connection.
///
/// The exchange opens when this is called, not when the future is first polled: hyper drops
/// a call it has not polled yet when the client closes its side first, and the exchange's
/// guards then record the request as abandoned by the client.
pub(crate) fn handle(
    ctx: Arc<Context>,
    connection: Arc<Http1Upstream>,
    request: Request<Incoming>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
    let opened = open(&ctx, request);
    async move {
        match opened {
            Ok(opened) => forward(ctx, connection, opened).await,
            Err(answered) => *answered,
        }
    }
}

/// An exchange opened for a request, ready to go to the target.
struct Opened {
    exchange: Arc<Exchange>,
    /// Records the response half if the exchange is dropped before it has one.
    guard: ResponseGuard,
    request: Request<RequestBody>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    http2: bool,
    grpc: bool,
    capture_limit: usize,
}

/// Opens the exchange for `request` and readies it for the target; a request that cannot be
/// forwarded is answered (and recorded) at once.
fn open(
    ctx: &Arc<Context>,
    mut request: Request<Incoming>,
) -> Result<Opened, Box<Response<ProxyBody>>> {
    let started = Instant::now();
    let started_at = Timestamp::now();
    let upgrading = request.version() <= Version::HTTP_11
        && (request.method() == Method::CONNECT || wants_upgrade(request.headers()));
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut request));

    let (mut parts, body) = request.into_parts();
    let http2 = parts.version == Version::HTTP_2;
    if http2 {
        strip_http2_hop_by_hop(&mut parts.headers);
    } else {
        strip_hop_by_hop(&mut parts.headers, upgrading);
    }
    let head = RequestHead {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        started_at,
        probe: is_probe(&parts.headers),
        grpc: is_grpc(&parts.headers),
        headers: parts.headers.clone(),
    };
    let grpc = head.grpc;
    let capture_limit = if grpc {
        ctx.grpc.capture_limit
    } else {
        ctx.capture_limit
    };
    let exchange = Exchange::new(ctx.clone(), started, head);
    let mut guard = ResponseGuard::new(&exchange);
    let body = RequestBody::new(body, capture_limit, exchange.clone());

    let uri = if http2 {
        upstream_uri(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &ctx.target_authority,
        )
    } else {
        http1_uri(
            &parts.method,
            &parts.uri,
            &mut parts.headers,
            &ctx.target_authority,
        )
        .map(Some)
    };
    let uri = match uri {
        Some(uri) => uri,
        None => {
            drop(body);
            guard.disarm();
            let failure = Failure::new(
                FailureKind::BadRequest,
                format!("the request target `{}` cannot be forwarded", parts.uri),
            );
            return Err(Box::new(fail(&exchange, &failure, grpc)));
        }
    };
    if let Some(uri) = uri {
        parts.uri = uri;
    }
    parts.version = if http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    Ok(Opened {
        exchange,
        guard,
        request: Request::from_parts(parts, body),
        client_upgrade,
        http2,
        grpc,
        capture_limit,
    })
}

/// Sends the opened exchange's request to the target and makes the response to stream back.
async fn forward(
    ctx: Arc<Context>,
    connection: Arc<Http1Upstream>,
    opened: Opened,
) -> Response<ProxyBody> {
    let Opened {
        exchange,
        mut guard,
        request,
        client_upgrade,
        http2,
        grpc,
        capture_limit,
    } = opened;
    let is_connect = request.method() == Method::CONNECT;
    let sent = if http2 {
        ctx.upstream.send_http2(request).await
    } else {
        ctx.upstream.send_http1(&connection, request).await
    };
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            guard.disarm();
            return fail(
                &exchange,
                &Failure::from_send(&error, &ctx.target, http2),
                grpc,
            );
        }
    };
    let latency = exchange.elapsed();
    let status = response.status();

    if status == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_none() {
        guard.disarm();
        let failure = Failure::new(
            FailureKind::UpstreamProtocol,
            format!(
                "the target {} switched protocols although the client did not ask to",
                ctx.target
            ),
        );
        return fail(&exchange, &failure, grpc);
    }
    let switched = if is_connect {
        status.is_success()
    } else {
        status == StatusCode::SWITCHING_PROTOCOLS
    };
    // An HTTP/2 `CONNECT` is not an upgrade: its tunnel is the stream's bodies, which pass
    // through like any other.
    if let (true, Some(client_upgrade)) = (switched, client_upgrade) {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, !is_connect);
        if is_connect {
            // A 2xx to CONNECT has no body, whatever a target says (RFC 9110 §9.3.6): hyper
            // would not send a head announcing one, and the client would get nothing.
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        let protocol = if is_connect {
            "connect".to_string()
        } else {
            upgrade_protocol(&parts.headers).unwrap_or_else(|| "unknown".to_string())
        };
        exchange.finish_response(ResponseOutcome {
            status: status.as_u16(),
            headers: parts.headers.clone(),
            body: Capture::default(),
            latency,
            duration: latency,
            error: None,
            upgrade: Some(protocol.clone()),
            trailers: None,
        });
        guard.disarm();
        ctx.tracker.spawn(upgrade::tunnel(
            ctx.clone(),
            protocol,
            client_upgrade,
            upstream_upgrade,
        ));
        return Response::from_parts(parts, ProxyBody::empty());
    }

    let (mut parts, body) = response.into_parts();
    if parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
        // The encoding overrides a length beside it, which must not reach the client (RFC
        // 9112 §6.3): hyper would frame the body by it.
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    if http2 {
        strip_http2_hop_by_hop(&mut parts.headers);
    } else {
        strip_hop_by_hop(&mut parts.headers, false);
    }
    let body = ResponseBody::new(
        body,
        capture_limit,
        exchange.clone(),
        status,
        parts.headers.clone(),
        latency,
    )
    .grpc(grpc);
    guard.disarm();
    Response::from_parts(parts, ProxyBody::Stream(body))
}

/// Records a failed exchange and returns the marked response for it (a gRPC status for a gRPC
/// call).
fn fail(exchange: &Exchange, failure: &Failure, grpc: bool) -> Response<ProxyBody> {
    let (response, headers, body) = failure.response(grpc);
    let elapsed = exchange.elapsed();
    let mut capture = Capture::new(usize::MAX);
    capture.push(&body);
    exchange.finish_response(ResponseOutcome {
        status: response.status().as_u16(),
        headers,
        body: capture,
        latency: elapsed,
        duration: elapsed,
        error: Some(failure.event_error()),
        upgrade: None,
        trailers: None,
    });
    response
}

/// The URI of an HTTP/1.1 request to the target: origin form (authority form for `CONNECT`).
/// A request without `Host` (HTTP/1.0) gets one naming the authority its URI names, else the
/// target.
fn http1_uri(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    target: &Authority,
) -> Option<Uri> {
    if method == Method::CONNECT {
        return uri.authority().is_some().then(|| uri.clone());
    }
    if !headers.contains_key(header::HOST) {
        let authority = uri.authority().unwrap_or(target);
        let host = match authority.port_u16() {
            Some(port) if port != 80 => format!("{}:{port}", authority.host()),
            _ => authority.host().to_string(),
        };
        headers.insert(header::HOST, HeaderValue::try_from(host).ok()?);
    }
    if uri.scheme().is_none() && uri.authority().is_none() {
        return Some(uri.clone());
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Some(Uri::from(path))
}

/// The absolute URI an h2c request to the target needs (HTTP/2 sends its scheme and
/// authority as `:scheme` and `:authority`). Its authority is the one the client addressed
/// (the request's own, else its `Host`, else the target): the proxy dials the target
/// regardless. `CONNECT` keeps its authority form. `None` when `uri` already is such a URI,
/// as an HTTP/2 request's usually is: it is forwarded as it is.
fn upstream_uri(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    target: &Authority,
) -> Option<Option<Uri>> {
    if method == Method::CONNECT {
        return uri.authority().is_some().then_some(None);
    }
    if uri.scheme() == Some(&Scheme::HTTP) && uri.authority().is_some() {
        return Some(None);
    }
    let authority = uri
        .authority()
        .cloned()
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|host| Authority::try_from(host.as_bytes()).ok())
        })
        .unwrap_or_else(|| target.clone());
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(path)
        .build()
        .ok()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_requests_go_in_origin_form_with_a_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("api.test:8080"));
        let uri = http1_uri(
            &Method::GET,
            &"/a?b=1".parse().unwrap(),
            &mut headers,
            &target(),
        );
        assert_eq!(uri.unwrap().to_string(), "/a?b=1");
        assert_eq!(headers[header::HOST], "api.test:8080");

        let mut headers = HeaderMap::new();
        let uri = http1_uri(&Method::GET, &"/".parse().unwrap(), &mut headers, &target());
        assert_eq!(uri.unwrap().to_string(), "/");
        assert_eq!(headers[header::HOST], "127.0.0.1:9000");

        let mut headers = HeaderMap::new();
        let absolute = "http://svc.test:80/x?y".parse().unwrap();
        let uri = http1_uri(&Method::GET, &absolute, &mut headers, &target());
        assert_eq!(uri.unwrap().to_string(), "/x?y");
        assert_eq!(headers[header::HOST], "svc.test");

        let uri = http1_uri(
            &Method::CONNECT,
            &"db.test:5432".parse().unwrap(),
            &mut HeaderMap::new(),
            &target(),
        );
        assert_eq!(uri.unwrap().to_string(), "db.test:5432");
    }

    fn target() -> Authority {
        Authority::from_static("127.0.0.1:9000")
    }

    #[test]
    fn origin_form_requests_keep_the_host_the_client_addressed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("api.test:8080"));
        let uri = upstream_uri(
            &Method::GET,
            &"/a?b=1".parse().unwrap(),
            &headers,
            &target(),
        );
        assert_eq!(
            uri.unwrap().unwrap().to_string(),
            "http://api.test:8080/a?b=1"
        );
    }

    #[test]
    fn without_a_usable_host_the_target_is_the_authority() {
        let uri = upstream_uri(
            &Method::GET,
            &"/".parse().unwrap(),
            &HeaderMap::new(),
            &target(),
        );
        assert_eq!(uri.unwrap().unwrap().to_string(), "http://127.0.0.1:9000/");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("bad host"));
        let uri = upstream_uri(&Method::GET, &"/x".parse().unwrap(), &headers, &target());
        assert_eq!(uri.unwrap().unwrap().to_string(), "http://127.0.0.1:9000/x");
    }

    #[test]
    fn http2_requests_keep_their_uri() {
        let uri = upstream_uri(
            &Method::POST,
            &"http://svc.test/pkg.S/M".parse().unwrap(),
            &HeaderMap::new(),
            &target(),
        );
        assert_eq!(uri, Some(None), "forwarded as it is");
        let uri = upstream_uri(
            &Method::GET,
            &"https://svc.test/x".parse().unwrap(),
            &HeaderMap::new(),
            &target(),
        );
        assert_eq!(uri.unwrap().unwrap().to_string(), "http://svc.test/x");
    }

    #[test]
    fn connect_keeps_authority_form() {
        let uri = upstream_uri(
            &Method::CONNECT,
            &"db.test:5432".parse().unwrap(),
            &HeaderMap::new(),
            &target(),
        );
        assert_eq!(uri, Some(None), "kept in authority form");
    }
}
