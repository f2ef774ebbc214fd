//! Upgraded connections: WebSocket and `CONNECT` tunnels.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::origin::Origin;
use crate::support::{next_head, read_head, read_to_close, Proxy, PATIENCE};

#[tokio::test]
async fn websocket_messages_round_trip_and_the_tunnel_is_recorded() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let (mut ws, response) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.addr)),
    )
    .await
    .expect("handshake in time")
    .expect("websocket handshake through the proxy");
    assert_eq!(response.status(), 101);

    let r = proxy.events.request().await;
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/ws");
    assert_eq!(r.status_code, 101);
    assert_eq!(r.upgrade, "websocket");
    assert_eq!(r.http_version, "HTTP/1.1");
    assert_eq!(r.error, "");
    assert_eq!(r.request_headers["Upgrade"], ["websocket"]);
    assert_eq!(r.request_headers["Connection"], ["upgrade"]);
    assert!(r.request_headers.contains_key("Sec-Websocket-Key"));
    assert_eq!(r.response_headers["Upgrade"], ["websocket"]);
    assert!(r.response_headers.contains_key("Sec-Websocket-Accept"));
    assert_eq!((r.request_size, r.response_size), (0, 0));

    ws.send(Message::text("hello")).await.unwrap();
    let echo = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let echo = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::binary(vec![1u8, 2, 3]));
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    // Read the server's close reply and the end of the stream.
    while let Some(Ok(_)) = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {}
    // The origin closed its side after the close handshake; the tunnel ends when the client
    // closes too.
    drop(ws);

    let c = proxy.events.closed().await;
    assert_eq!(c.source, "~test");
    assert_eq!(c.target, "api");
    assert_eq!(c.upgrade, "websocket");
    assert_eq!(c.error, "");
    // Client frames are masked (2 + 4 header bytes), server frames are not (2):
    // text "hello" 11 + binary [1,2,3] 9 + close(1000) 8 in; 7 + 5 + 4 out.
    assert_eq!(c.bytes_in, 11 + 9 + 8);
    assert_eq!(c.bytes_out, 7 + 5 + 4);
    assert!(c.duration_ms > 0.0);
    proxy.events.assert_no_more();
}

/// Sends `CONNECT db.test:5432` through `proxy` and reads the answer's head (as text).
async fn connect(proxy: &Proxy) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    (stream, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn connect_requests_are_tunnelled() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let (mut stream, head) = connect(&proxy).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let r = proxy.events.request().await;
    assert_eq!(r.method, "CONNECT");
    assert_eq!(r.path, "db.test:5432");
    assert_eq!(r.status_code, 200);
    assert_eq!(r.upgrade, "connect");

    stream.write_all(b"ping through the tunnel").await.unwrap();
    stream.shutdown().await.unwrap();
    let echoed = read_to_close(&mut stream).await;
    assert_eq!(echoed, b"ping through the tunnel");

    let c = proxy.events.closed().await;
    assert_eq!(c.upgrade, "connect");
    assert_eq!((c.bytes_in, c.bytes_out), (23, 23));
    assert_eq!(c.error, "");
}

/// A target answering `CONNECT` with `200` and `Content-Length: 0` (which RFC 9110 forbids,
/// and some servers send): the tunnel still opens, as the event says.
#[tokio::test]
async fn a_connect_answer_with_a_content_length_still_opens_the_tunnel() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let answer = b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n";
        stream.write_all(answer).await.unwrap();
        let (mut read, mut write) = stream.split();
        let _ = tokio::io::copy(&mut read, &mut write).await;
    });
    let mut proxy = Proxy::start(target).await;

    let (mut stream, head) = connect(&proxy).await;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(proxy.events.request().await.upgrade, "connect");

    stream.write_all(b"ping").await.unwrap();
    stream.shutdown().await.unwrap();
    let echoed = read_to_close(&mut stream).await;
    assert_eq!(echoed, b"ping");
}

/// A target that answers one `CONNECT` with `200` and then hands the tunnel to `then`.
async fn connect_target<F, Fut>(then: F) -> SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        next_head(&mut stream, &mut seen)
            .await
            .expect("a CONNECT head");
        assert!(seen.is_empty(), "nothing is sent before the answer");
        stream
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .unwrap();
        then(stream).await;
    });
    addr
}

/// Opens a `CONNECT` tunnel through `proxy` and takes its `request.completed` event.
async fn open_tunnel(proxy: &mut Proxy) -> TcpStream {
    let (stream, head) = connect(proxy).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(proxy.events.request().await.upgrade, "connect");
    stream
}

/// A target that sends part of its data and then aborts: the client reads that part and then
/// gets a reset, not a clean end that would make the cut-short data look complete.
#[tokio::test]
async fn a_target_reset_reaches_the_client_through_a_tunnel() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let target = connect_target(|mut stream| async move {
        stream.write_all(b"partial").await.unwrap();
        // Abort only once the client has read the part, so that it cannot be lost.
        let _ = release_rx.await;
        stream.set_zero_linger().unwrap();
    })
    .await;
    let mut proxy = Proxy::start(target).await;
    let mut stream = open_tunnel(&mut proxy).await;

    let mut part = [0u8; 7];
    timeout(PATIENCE, stream.read_exact(&mut part))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&part, b"partial");
    release_tx.send(()).unwrap();
    let end = timeout(PATIENCE, stream.read(&mut [0u8; 1])).await.unwrap();
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "the client must see the target's reset, not a clean end"
    );

    let c = proxy.events.closed().await;
    assert_eq!(c.upgrade, "connect");
    assert_eq!((c.bytes_in, c.bytes_out), (0, 7));
    assert!(
        c.error.starts_with("upstream: ") && c.error.contains("reset"),
        "{}",
        c.error
    );
}

/// A client that aborts while the target is silent: the target sees a reset, not a clean end.
#[tokio::test]
async fn a_client_reset_reaches_the_target_through_a_tunnel() {
    let (got_tx, got_rx) = oneshot::channel();
    let (seen_tx, seen_rx) = oneshot::channel();
    let target = connect_target(|mut stream| async move {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        got_tx.send(byte[0]).unwrap();
        // Silent from here on: only the client's end can end this read.
        let _ = seen_tx.send(stream.read(&mut byte).await.map_err(|e| e.kind()));
    })
    .await;
    let mut proxy = Proxy::start(target).await;
    let mut stream = open_tunnel(&mut proxy).await;

    stream.write_all(b"x").await.unwrap();
    assert_eq!(timeout(PATIENCE, got_rx).await.unwrap(), Ok(b'x'));
    stream.set_zero_linger().unwrap();
    drop(stream);

    let seen = timeout(PATIENCE, seen_rx).await.unwrap().unwrap();
    assert_eq!(
        seen,
        Err(ErrorKind::ConnectionReset),
        "the target must see the client's reset, not a clean end"
    );
    let c = proxy.events.closed().await;
    assert_eq!((c.bytes_in, c.bytes_out), (1, 0));
    assert!(
        c.error.starts_with("client: ") && c.error.contains("reset"),
        "{}",
        c.error
    );
}

/// Bytes the tunnel read from the client but could not deliver are not counted: here the
/// target has ended its side and then aborted without reading anything, so the client's bytes
/// never reach it and `bytes_in` stays 0.
#[tokio::test]
async fn bytes_a_reset_target_never_got_are_not_counted() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (reset_tx, reset_rx) = oneshot::channel::<()>();
    let target = connect_target(|mut stream| async move {
        stream.shutdown().await.unwrap();
        let _ = release_rx.await;
        stream.set_zero_linger().unwrap();
        drop(stream);
        reset_tx.send(()).unwrap();
    })
    .await;
    let mut proxy = Proxy::start(target).await;
    let mut stream = open_tunnel(&mut proxy).await;

    // The target's end has come through: the tunnel now only reads from the client.
    assert!(read_to_close(&mut stream).await.is_empty());
    release_tx.send(()).unwrap();
    timeout(PATIENCE, reset_rx).await.unwrap().unwrap();
    stream.write_all(b"hello").await.unwrap();
    stream.shutdown().await.unwrap();

    let c = proxy.events.closed().await;
    assert_eq!(
        (c.bytes_in, c.bytes_out),
        (0, 0),
        "nothing reached the target: {c:?}"
    );
    assert!(c.error.starts_with("upstream: "), "{}", c.error);
}
