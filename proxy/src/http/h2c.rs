//! HTTP/1.1 `Upgrade: h2c` (RFC 7540 §3.2): what `curl --http2 http://...` sends.
//!
//! ```text
//! client: GET / HTTP/1.1, Upgrade: h2c, HTTP2-Settings ─► proxy: 101 Switching Protocols
//! client: preface, SETTINGS, ...  ─► [preface, SETTINGS, HEADERS(stream 1)] + rest ─► h2 server
//! ```
//!
//! The request that asked for the upgrade is answered on HTTP/2 stream 1. hyper's HTTP/2 server
//! has no way to be handed that request, so the proxy gives it one: after the client's
//! connection preface and first `SETTINGS` frame, it splices in a `HEADERS` frame for stream 1
//! carrying the upgrade request (HPACK literals "without indexing", which leave the client's
//! header compression state untouched). From there the connection is served like any h2c
//! connection, the upgraded request included, and every exchange is recorded with
//! `http_version: "HTTP/2"`.
//!
//! A client that does not follow the `101` with the preface and a `SETTINGS` frame within
//! [`PREFACE_TIMEOUT`] (it closed, sent something else, or waits for an HTTP/1.1 answer) is
//! disconnected, and its request recorded with the reason, as it never reached the target; so
//! is the request of a client still to send them when the proxy shuts down.
//!
//! The upgrade is declined (the request is served in HTTP/1.1, as RFC 7540 allows) when the
//! target does not speak h2c (asked once per proxy: an HTTP/1.1-only service would otherwise
//! fail every upgraded request, where directly it ignores `Upgrade`), when the request has a
//! body, whose bytes HTTP/2 flow control would have to carry, or when its headers do not fit
//! one frame. The settings in `HTTP2-Settings` are not applied separately: clients
//! send the same values in the `SETTINGS` frame that follows their preface.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use rig_types::Timestamp;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::body::ProxyBody;
use super::capture::Capture;
use super::context::Context;
use super::exchange::{Exchange, RequestHead, RequestOutcome, ResponseOutcome};
use super::h2_wire::{
    put_fields, put_headers_frame, put_literal, FLAG_ACK, FRAME_HEADER, FRAME_SETTINGS, MAX_FRAME,
    PREFACE,
};
use super::headers::{has_token, is_probe, strip_hop_by_hop, HTTP2_SETTINGS};
use super::raw::Prefixed;
use super::server::serve_http2;

/// Whether `request` asks to upgrade to h2c (whatever the proxy then decides).
pub(crate) fn asks_to_upgrade(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .any(|value| has_token(value, "h2c"))
}

/// Whether the target speaks HTTP/2 without TLS (h2c with prior knowledge), as the proxy must
/// to serve an upgraded connection: asked once, by sending it the connection preface and an
/// empty `SETTINGS` frame and seeing whether its first bytes back are a `SETTINGS` frame
/// (an HTTP/1.1-only server answers `400`, or closes). A target that cannot be reached is
/// asked again next time.
pub(crate) async fn target_speaks_h2c(ctx: &Context) -> bool {
    if let Some(known) = ctx.target_h2c.get() {
        return *known;
    }
    let Some(answer) = ask_target_h2c(ctx).await else {
        return false;
    };
    *ctx.target_h2c.get_or_init(|| async { answer }).await
}

/// How long the target may take to answer the h2c probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn ask_target_h2c(ctx: &Context) -> Option<bool> {
    use tokio::io::AsyncWriteExt;
    let mut stream = ctx.upstream.connect_raw().await.ok()?;
    let mut hello = BytesMut::with_capacity(PREFACE.len() + FRAME_HEADER);
    hello.extend_from_slice(PREFACE);
    hello.extend_from_slice(&[0, 0, 0, FRAME_SETTINGS, 0, 0, 0, 0, 0]);
    if stream.write_all(&hello).await.is_err() {
        return Some(false);
    }
    let mut head = [0u8; FRAME_HEADER];
    let read = tokio::time::timeout(PROBE_TIMEOUT, stream.read_exact(&mut head)).await;
    // A frame header whose type is SETTINGS on stream 0, not the start of `HTTP/1.1 400`.
    Some(matches!(read, Ok(Ok(_))) && head[3] == FRAME_SETTINGS && head[5..9] == [0, 0, 0, 0])
}

/// If `request` asks to upgrade to h2c and the proxy accepts, answers `101 Switching
/// Protocols` and takes the connection over as HTTP/2 once hyper hands it back; `None` when
/// the request is to be served in HTTP/1.1. Only for a target that speaks h2c
/// ([`target_speaks_h2c`]): for one that does not, the upgrade is declined, as the target
/// itself would decline it.
pub(crate) fn try_upgrade(
    ctx: &Arc<Context>,
    request: &mut Request<Incoming>,
) -> Option<Response<ProxyBody>> {
    let stream_one = upgrade_frame(request)?;
    let started = Instant::now();
    let recorded = recorded_head(request);
    let on_upgrade = hyper::upgrade::on(request);
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    let upgrade = Upgrade {
        request: recorded,
        switching: response.headers().clone(),
        started,
    };
    ctx.tracker
        .spawn(serve_upgraded(ctx.clone(), on_upgrade, stream_one, upgrade));
    Some(response)
}

/// How long a client switched to HTTP/2 has to send its connection preface and `SETTINGS`.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// The upgrade request as it would be recorded, kept in case the client never speaks HTTP/2.
struct Upgrade {
    request: RequestHead,
    /// The `101` response's headers.
    switching: http::HeaderMap,
    started: Instant,
}

impl Upgrade {
    /// Records the upgrade request as abandoned: the client got `101` and then `error` (the
    /// side to blame first, e.g. `client: ...`) happened, so the request never reached the
    /// target.
    fn abandoned(self, ctx: &Arc<Context>, error: String) {
        let exchange = Exchange::new(ctx.clone(), self.started, self.request);
        exchange.finish_request(RequestOutcome {
            body: Capture::default(),
            error: None,
        });
        exchange.finish_response(ResponseOutcome {
            status: StatusCode::SWITCHING_PROTOCOLS.as_u16(),
            headers: self.switching,
            body: Capture::default(),
            latency: Duration::ZERO,
            duration: exchange.elapsed(),
            error: Some(error),
            upgrade: Some("h2c".into()),
            trailers: None,
        });
    }
}

/// The upgrade request's head, hop-by-hop headers dropped, as the event shows requests.
fn recorded_head(request: &Request<Incoming>) -> RequestHead {
    let mut headers = request.headers().clone();
    strip_hop_by_hop(&mut headers, false);
    RequestHead {
        method: request.method().clone(),
        uri: request.uri().clone(),
        version: request.version(),
        started_at: Timestamp::now(),
        probe: is_probe(&headers),
        grpc: false,
        headers,
    }
}

/// The `HEADERS` frame that replays `request` as stream 1, if the request is an h2c upgrade
/// the proxy accepts.
fn upgrade_frame(request: &Request<Incoming>) -> Option<Bytes> {
    let headers = request.headers();
    let asks = request.version() == Version::HTTP_11
        && request.method() != Method::CONNECT
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .any(|value| has_token(value, "h2c"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|value| has_token(value, "upgrade") && has_token(value, "http2-settings"))
        && headers.get_all(&HTTP2_SETTINGS).iter().count() == 1;
    if !asks || !request.body().is_end_stream() {
        return None;
    }
    let block = header_block(request);
    (block.len() <= MAX_FRAME).then(|| {
        let mut frame = BytesMut::with_capacity(FRAME_HEADER + block.len());
        put_headers_frame(&mut frame, 1, &block, true);
        frame.freeze()
    })
}

/// The HPACK header block of `request` as an HTTP/2 request: pseudo-headers first, `Host`
/// as `:authority`, hop-by-hop headers dropped, every field a literal without indexing.
fn header_block(request: &Request<Incoming>) -> Vec<u8> {
    let mut headers = request.headers().clone();
    strip_hop_by_hop(&mut headers, false);
    let authority = headers.remove(header::HOST);
    let path = match request.uri().path_and_query() {
        Some(path) => path.as_str(),
        None if request.method() == Method::OPTIONS => "*",
        None => "/",
    };
    let mut block = Vec::with_capacity(256);
    put_literal(&mut block, b":method", request.method().as_str().as_bytes());
    put_literal(&mut block, b":scheme", b"http");
    if let Some(authority) = &authority {
        put_literal(&mut block, b":authority", authority.as_bytes());
    }
    put_literal(&mut block, b":path", path.as_bytes());
    put_fields(&mut block, &headers);
    block
}

/// Waits for hyper to hand the connection back after the `101`, then serves it as HTTP/2
/// with the upgrade request spliced in as stream 1.
async fn serve_upgraded(
    ctx: Arc<Context>,
    on_upgrade: OnUpgrade,
    stream_one: Bytes,
    upgrade: Upgrade,
) {
    let started = async {
        let mut io = TokioIo::new(on_upgrade.await.map_err(io::Error::other)?);
        let start = read_client_start(&mut io).await?;
        // The client's own start (preface and `SETTINGS`), then the stream-1 `HEADERS`
        // frame, in front of what it sends next.
        let mut front = start;
        front.extend_from_slice(&stream_one);
        Ok::<_, io::Error>(Prefixed::new(front.freeze(), io))
    };
    let io = tokio::select! {
        _ = ctx.cancel.cancelled() => {
            // The upgrade request was answered (`101`) and must still be recorded.
            let error = "proxy: shut down before the HTTP/2 connection preface";
            return upgrade.abandoned(&ctx, error.into());
        }
        io = tokio::time::timeout(PREFACE_TIMEOUT, started) => io,
    };
    // A client that does not speak HTTP/2 after asking for it has nothing left to answer:
    // its request was the upgrade request, which it abandoned with the connection.
    match io {
        Ok(Ok(io)) => serve_http2(ctx, TokioIo::new(io)).await,
        Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => upgrade.abandoned(
            &ctx,
            "client: the connection closed before the HTTP/2 connection preface that the h2c \
             upgrade calls for"
                .into(),
        ),
        Ok(Err(error)) => upgrade.abandoned(&ctx, format!("client: {error}")),
        Err(_) => upgrade.abandoned(
            &ctx,
            format!(
                "client: no HTTP/2 connection preface within {} s of the h2c upgrade",
                PREFACE_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// Reads the client's connection preface and its first frame, which must be `SETTINGS`.
async fn read_client_start(io: &mut TokioIo<Upgraded>) -> io::Result<BytesMut> {
    let mut start = BytesMut::zeroed(PREFACE.len() + FRAME_HEADER);
    io.read_exact(&mut start).await?;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if &start[..PREFACE.len()] != PREFACE {
        return Err(invalid(
            "no HTTP/2 connection preface after the h2c upgrade",
        ));
    }
    let mut frame = &start[PREFACE.len()..];
    let len = frame.get_uint(3) as usize;
    let (kind, flags) = (frame.get_u8(), frame.get_u8());
    if kind != FRAME_SETTINGS || flags & FLAG_ACK != 0 || len > MAX_FRAME {
        return Err(invalid("the HTTP/2 preface is not followed by SETTINGS"));
    }
    let header_end = start.len();
    start.resize(header_end + len, 0);
    io.read_exact(&mut start[header_end..]).await?;
    Ok(start)
}
