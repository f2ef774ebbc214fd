//! The h2c relay while the client is still sending its request: the target going away, a
//! stream the target resets, and request trailers after the target ended the exchange.
//! Clients are the `h2` crate's (told how much window to give) or hand-written frames on a
//! socket, where a test needs a frame at an exact moment.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use rig_proxy::http::ERROR_HEADER;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Mutex};

use crate::h2_relay::{connection_start, POST};
use crate::support::{empty, http2_client, pattern, read_to_close, send, Proxy, PATIENCE};

/// An `h2` client connection to `addr`, its connection task spawned.
async fn h2_client(
    addr: SocketAddr,
    builder: h2::client::Builder,
) -> h2::client::SendRequest<Bytes> {
    let socket = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = builder.handshake(socket).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

/// Waits, within [`PATIENCE`], for `future`; `what` names it in the failure.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not in time"))
}

/// A frame read off a socket by hand.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Bytes,
}

/// The next whole frame on `socket` (`buf` keeps what was read past it); `None` at the end
/// of the connection.
async fn next_frame(socket: &mut TcpStream, buf: &mut BytesMut) -> Option<Frame> {
    loop {
        if buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() >= 9 + len {
                let head = buf.split_to(9);
                return Some(Frame {
                    kind: head[3],
                    flags: head[4],
                    stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                    payload: buf.split_to(len).freeze(),
                });
            }
        }
        if within("a frame", socket.read_buf(buf)).await.ok()? == 0 {
            return None;
        }
    }
}

/// A frame header followed by `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// The target's connection breaks while the client uploads: the proxy, failing to write the
/// upload on, must not take that for the client leaving. The client gets the proxy's `502`
/// and the record blames the target.
///
/// The proxy notices the broken connection where it writes the upload or where it reads the
/// target, whichever comes first; both orders happen, so the exchange is repeated.
#[tokio::test]
async fn a_target_that_breaks_off_an_upload_gets_the_client_a_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(read_the_head_and_some_body_then_reset(socket));
        }
    });
    let mut proxy = Proxy::start(target).await;
    for round in 0..8 {
        let mut client = h2_client(proxy.addr, h2::client::Builder::new()).await;
        let request = Request::post(proxy.url("/upload")).body(()).unwrap();
        let (response, mut upload) = client.send_request(request, false).unwrap();
        // Sends until the stream breaks: the target never reads it all.
        tokio::spawn(async move {
            let chunk = Bytes::from(pattern(64 * 1024));
            loop {
                upload.reserve_capacity(chunk.len());
                match poll_fn(|cx| upload.poll_capacity(cx)).await {
                    Some(Ok(n)) if upload.send_data(chunk.slice(..n), false).is_ok() => {}
                    _ => return,
                }
            }
        });
        let response = within("the response", response)
            .await
            .unwrap_or_else(|error| panic!("round {round}: no response but {error}"));
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "round {round}");
        let marker = response.headers()[ERROR_HEADER].to_str().unwrap();
        assert!(marker.starts_with("upstream-"), "round {round}: {marker}");

        let r = proxy.events.request().await;
        assert_eq!((r.path.as_str(), r.status_code), ("/upload", 502));
        assert!(
            r.error
                .starts_with(&format!("upstream: the target {target} ")),
            "round {round}: {}",
            r.error
        );
    }
}

/// A target reading the request head and 256 KiB of the body (having given the client all
/// the window it may), then resetting the connection (`SO_LINGER` 0) with the rest unread.
async fn read_the_head_and_some_body_then_reset(mut socket: TcpStream) {
    let mut buf = BytesMut::new();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    while buf.len() < preface.len() {
        if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    }
    let _ = buf.split_to(preface.len());
    // INITIAL_WINDOW_SIZE 2^31 - 1, and as much for the connection.
    let mut hello = frame(SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]);
    hello.extend(frame(
        WINDOW_UPDATE,
        0,
        0,
        &(0x7fff_ffff - 65_535u32).to_be_bytes(),
    ));
    if socket.write_all(&hello).await.is_err() {
        return;
    }
    let mut body = 0;
    while body < 256 * 1024 {
        let Some(frame) = next_frame(&mut socket, &mut buf).await else {
            return;
        };
        if (frame.kind, frame.stream) == (DATA, 1) {
            body += frame.payload.len();
        }
    }
    let _ = socket.set_zero_linger();
}

/// The `502` for a stream the target reset before answering is `HEADERS` alone: a body
/// would spend connection window the client gave the target. Here the client has none left
/// (it holds a download's first 64 KiB unread), so a `DATA` frame would be a flow-control
/// error that breaks the connection. The client, still uploading more than the 64 KiB the
/// target let it send, is told to stop (`RST_STREAM (NO_ERROR)`) instead of waiting for
/// window forever; the download then goes on.
#[tokio::test]
async fn a_reset_upload_ends_with_a_502_and_the_connection_window_stays_whole() {
    const DOWNLOAD: usize = 256 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = connection.accept().await {
                    tokio::spawn(download_or_reset(request, respond, DOWNLOAD));
                }
            });
        }
    });
    let mut proxy = Proxy::start(target).await;
    // The stream window is no limit: the connection's 64 KiB is.
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(1 << 20);
    let mut client = h2_client(proxy.addr, builder).await;

    let download = Request::get(proxy.url("/download")).body(()).unwrap();
    let (response, _) = client.send_request(download, true).unwrap();
    let mut download = within("the download", response).await.unwrap().into_body();
    let mut unreleased = 0;
    while unreleased < 65_535 {
        let data = within("download data", download.data())
            .await
            .unwrap()
            .unwrap();
        unreleased += data.len();
    }
    assert_eq!(unreleased, 65_535, "the connection window, all spent");

    let mut client = within("a stream", client.ready()).await.unwrap();
    let upload = Request::post(proxy.url("/upload")).body(()).unwrap();
    let (response, mut upload) = client.send_request(upload, false).unwrap();
    // More than the stream's window, without the end of the body: a streaming upload, as
    // hyper sends one.
    upload
        .send_data(Bytes::from(pattern(100 * 1024)), false)
        .unwrap();
    let response = within("the upload's response", response).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()[ERROR_HEADER], "upstream-reset");
    assert!(response.body().is_end_stream(), "HEADERS alone");
    let reset = within("the upload stopped", poll_fn(|cx| upload.poll_reset(cx))).await;
    assert_eq!(reset.unwrap(), h2::Reason::NO_ERROR);

    download
        .flow_control()
        .release_capacity(unreleased)
        .unwrap();
    let mut received = unreleased;
    while let Some(data) = within("download data", download.data()).await {
        let data = data.expect("the download goes on");
        received += data.len();
        download
            .flow_control()
            .release_capacity(data.len())
            .unwrap();
    }
    assert_eq!(received, DOWNLOAD);

    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/upload", 502));
    assert!(
        r.error.contains("RST_STREAM with INTERNAL_ERROR"),
        "{}",
        r.error
    );
    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/download", 200));
    assert_eq!(r.error, "");
}

/// `/download`: `len` bytes, sent as the client's window allows. Anything else: reset
/// (`INTERNAL_ERROR`) before answering.
async fn download_or_reset(
    request: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    len: usize,
) {
    if request.uri().path() != "/download" {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    }
    let head = Response::new(());
    let Ok(mut body) = respond.send_response(head, false) else {
        return;
    };
    let data = Bytes::from(pattern(len));
    let mut sent = 0;
    while sent < len {
        body.reserve_capacity(len - sent);
        let Some(Ok(n)) = poll_fn(|cx| body.poll_capacity(cx)).await else {
            return;
        };
        if body
            .send_data(data.slice(sent..sent + n), sent + n == len)
            .is_err()
        {
            return;
        }
        sent += n;
    }
}

/// RFC 9113 §8.1: the target may answer and reset the stream (`NO_ERROR`) before the client
/// has sent all of its request. Trailers the client sends after that are passed on but are
/// no new exchange: the one exchange is recorded once.
#[tokio::test]
async fn trailers_after_the_target_ended_the_exchange_are_no_new_exchange() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let (answered, reset) = oneshot::channel::<()>();
    let reset = Arc::new(Mutex::new(Some(reset)));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer_and_reset_uploads(socket, reset.clone()));
        }
    });
    let mut proxy = Proxy::start(target).await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut wire = connection_start(POST, "/upload", 1, 0);
    wire.extend(frame(DATA, 0, 1, b"part of the body"));
    client.write_all(&wire).await.unwrap();
    let mut buf = BytesMut::new();
    let mut answered = Some(answered);
    loop {
        let frame = next_frame(&mut client, &mut buf).await.expect("a frame");
        match (frame.kind, frame.stream) {
            (HEADERS, 1) => {
                assert_ne!(frame.flags & END_STREAM, 0, "the whole response");
                answered.take().unwrap().send(()).unwrap();
            }
            (RST_STREAM, 1) => {
                assert_eq!(&frame.payload[..], &[0, 0, 0, 0], "NO_ERROR");
                break;
            }
            _ => {}
        }
    }
    let r = proxy.events.request().await;
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/upload"));
    assert_eq!((r.status_code, r.error.as_str()), (200, ""));

    // Trailers (`x-sum: 1`, a literal), then a request of its own on stream 3.
    let trailers = [0, 5, b'x', b'-', b's', b'u', b'm', 1, b'1'];
    let mut wire = frame(HEADERS, END_STREAM | END_HEADERS, 1, &trailers);
    let after = [0x82, 0x86, 0x04, 6, b'/', b'a', b'f', b't', b'e', b'r'];
    wire.extend(frame(HEADERS, END_STREAM | END_HEADERS, 3, &after));
    client.write_all(&wire).await.unwrap();
    while let Some(frame) = next_frame(&mut client, &mut buf).await {
        if (frame.kind, frame.stream) == (HEADERS, 3) {
            break;
        }
    }
    assert_eq!(proxy.events.request().await.path, "/after");
    // Streams still open are recorded when the connection ends: it ends before the next
    // exchange is recorded.
    client.shutdown().await.unwrap();
    read_to_close(&mut client).await;
    let response = send(
        &http2_client(),
        Request::get(proxy.url("/last")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(proxy.events.request().await.path, "/last");
    proxy.events.assert_no_more();
}

/// A target answering every request (`200`, no body); `/upload` it answers before the
/// request has ended, and resets (`NO_ERROR`) once `reset` fires.
async fn answer_and_reset_uploads(
    socket: TcpStream,
    reset: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
) {
    let Ok(mut connection) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        let _ = respond.send_response(Response::new(()), true);
        if request.uri().path() != "/upload" {
            continue;
        }
        let Some(reset) = reset.lock().await.take() else {
            continue;
        };
        // The response goes out first: a reset with frames still queued drops them.
        tokio::select! {
            _ = async { while connection.accept().await.is_some() {} } => return,
            _ = reset => respond.send_reset(h2::Reason::NO_ERROR),
        }
    }
}
