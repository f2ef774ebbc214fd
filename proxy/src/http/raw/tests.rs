//! Raw-path behaviour checked from inside the crate: what a connection holds while idle.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rig_types::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::http::context::Context;
use crate::http::HttpSettings;
use crate::observe::{Edge, Observer};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n0123456789abcdef";

/// A target answering every read with [`RESPONSE`] (one request per read in these tests).
async fn target() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {
            if stream.write_all(RESPONSE).await.is_err() {
                break;
            }
        }
    });
    addr.to_string()
}

/// Waits (up to 5 s) for `check` to hold.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_holds_no_read_buffer() {
    let sink = Arc::new(|_: Event| {});
    let edge = Edge {
        source: "~test".into(),
        target: "api".into(),
        ingress: "default".into(),
    };
    let (observer, _task) = Observer::spawn(edge, sink, 64);
    let settings = HttpSettings::default();
    let ctx = Context::new(
        target().await,
        observer,
        &settings,
        CancellationToken::new(),
    );
    let ctx = Arc::new(ctx.unwrap());
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let serving = ctx.clone();
    tokio::spawn(async move {
        let (stream, _) = front.accept().await.unwrap();
        super::serve(&serving, stream).await;
    });
    let held = || ctx.raw_buffers.load(Ordering::SeqCst);

    let mut client = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        // Half a head: the connection takes a buffer and keeps it while waiting for the rest.
        client.write_all(b"GET /a HTTP/1.1\r\n").await.unwrap();
        eventually("a buffer is taken for a request", || held() > 0).await;
        client.write_all(b"Host: x\r\n\r\n").await.unwrap();
        let mut response = vec![0u8; RESPONSE.len()];
        client.read_exact(&mut response).await.unwrap();
        assert_eq!(response, RESPONSE);
        // Answered, idle, with its upstream connection open: no buffer held on either side.
        eventually("the idle connection holds no buffer", || held() == 0).await;
    }
}
