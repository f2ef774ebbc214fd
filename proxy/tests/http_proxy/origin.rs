//! A real hyper origin server (HTTP/1.1 and h2c) playing the target service.
//!
//! Routes:
//! - `/echo`: streams the request body back (frame by frame); reports the version it was
//!   spoken to in `x-origin-version`;
//! - `/amplify`: streams every request body frame back eight times, as it arrives (a target
//!   that answers while it reads, and more than it reads);
//! - `/headers`: the request headers it received, one `name: value` line each, sorted;
//! - `/stream`: a response whose frames the test sends through [`Origin::streams`];
//! - `/upload`: hands every received body frame to [`Origin::uploads`], then answers
//!   `received <n> bytes`;
//! - `/trailers`: reads the request body, then answers `hello` plus trailers `x-checksum: 42` and `grpc-status: 0`;
//! - `/cookie`: answers with a `set-cookie` header;
//! - `/slow`: never answers;
//! - `/barrier`: answers once as many requests as the barrier size are waiting;
//! - `/ws`: a WebSocket echo server;
//! - any `CONNECT`: `200`, then echoes the tunnel's bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Barrier};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// How many times `/amplify` sends back each request body frame.
pub const AMPLIFICATION: usize = 8;

/// A body the origin answers with.
pub type OriginBody = BoxBody<Bytes, std::io::Error>;

/// The sending end of a `/stream` response.
pub type FrameSender = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

/// A running origin.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// One sender per `/stream` request, in arrival order.
    pub streams: mpsc::UnboundedReceiver<FrameSender>,
    /// Every body frame `/upload` received, in order.
    pub uploads: mpsc::UnboundedReceiver<Bytes>,
}

struct State {
    streams: mpsc::UnboundedSender<FrameSender>,
    uploads: mpsc::UnboundedSender<Bytes>,
    barrier: Arc<Barrier>,
}

impl Origin {
    /// Starts an origin on an ephemeral port.
    pub async fn start() -> Origin {
        Origin::with_barrier(1).await
    }

    /// Starts an origin whose `/barrier` route waits for `n` concurrent requests.
    pub async fn with_barrier(n: usize) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let (uploads_tx, uploads) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            streams: streams_tx,
            uploads: uploads_tx,
            barrier: Arc::new(Barrier::new(n)),
        });
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(state, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin {
            addr,
            accepted,
            streams,
            uploads,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn full(body: impl Into<Bytes>) -> OriginBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Response<OriginBody> {
    if req.method() == http::Method::CONNECT {
        return connect_echo(req);
    }
    let version = format!("{:?}", req.version());
    let mut response = match req.uri().path() {
        "/echo" => {
            let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
            let body = req
                .into_body()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .boxed();
            let mut response = Response::new(body);
            if let Some(content_type) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response
        }
        "/amplify" => {
            let body = req
                .into_body()
                .map_frame(|frame| frame.map_data(|data| Bytes::from(data.repeat(AMPLIFICATION))))
                .map_err(|e| std::io::Error::other(e.to_string()))
                .boxed();
            Response::new(body)
        }
        "/headers" => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            if let Some(authority) = req.uri().authority() {
                lines.push(format!(":authority: {authority}\n"));
            }
            lines.sort();
            Response::new(full(lines.concat()))
        }
        "/stream" => {
            let (tx, rx) = mpsc::channel(1);
            let _ = state.streams.send(tx);
            let frames = tokio_stream_from(rx);
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            response
                .headers_mut()
                .insert(header::TRAILER, HeaderValue::from_static("x-checksum"));
            response
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Response::new(full("broken upload"));
                };
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    let _ = state.uploads.send(data);
                }
            }
            Response::new(full(format!("received {total} bytes")))
        }
        "/trailers" => {
            // Like a gRPC server: read the request to the end, then answer.
            let _ = req.into_body().collect().await;
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("42"));
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = futures_util::stream::iter([
                Ok(Frame::data(Bytes::from_static(b"hello"))),
                Ok(Frame::trailers(trailers)),
            ]);
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            response.headers_mut().insert(
                header::TRAILER,
                HeaderValue::from_static("x-checksum, grpc-status"),
            );
            response
        }
        "/cookie" => {
            let mut response = Response::new(full("ok"));
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static("session=s3cr3t"),
            );
            response
        }
        "/slow" => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        "/barrier" => {
            state.barrier.wait().await;
            Response::new(full("together"))
        }
        "/ws" => return websocket(req),
        _ => {
            let mut response = Response::new(full("not found"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    response
        .headers_mut()
        .insert("x-origin-version", HeaderValue::from_str(&version).unwrap());
    response
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn websocket(mut req: Request<Incoming>) -> Response<OriginBody> {
    let Some(key) = req.headers().get("sec-websocket-key") else {
        let mut response = Response::new(full("not a websocket request"));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).unwrap(),
    );
    response
}

fn connect_echo(mut req: Request<Incoming>) -> Response<OriginBody> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
    });
    Response::new(full(Bytes::new()))
}
