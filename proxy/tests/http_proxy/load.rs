//! Many connections at once, and a rough throughput measurement.

use std::time::Instant;

use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::origin::Origin;
use crate::support::{empty, http1_client, send, Proxy, PATIENCE};

const CONNECTIONS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_are_all_answered_and_recorded() {
    // The origin answers only once all requests are waiting at once, so every client, proxy
    // and upstream connection is open at the same time.
    let origin = Origin::with_barrier(CONNECTIONS).await;
    let mut proxy = Proxy::start(origin.addr).await;
    let addr = proxy.addr;

    let clients = (0..CONNECTIONS).map(|i| {
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr)
                .await
                .expect("connect to the proxy");
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(connection);
            let request = Request::get(format!("/barrier?i={i}"))
                .header("host", "api")
                .body(empty())
                .unwrap();
            let response = sender.send_request(request).await.expect("response");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, body)
        })
    });
    let answers = tokio::time::timeout(PATIENCE * 3, futures_util::future::join_all(clients))
        .await
        .expect("all connections answered in time");
    for answer in answers {
        let (status, body) = answer.expect("client task");
        assert_eq!(status, 200);
        assert_eq!(body, "together");
    }

    let mut seen = vec![false; CONNECTIONS];
    for _ in 0..CONNECTIONS {
        let r = proxy.events.request().await;
        assert_eq!(r.status_code, 200, "{r:?}");
        assert_eq!(r.error, "");
        let i: usize = r.path.trim_start_matches("/barrier?i=").parse().unwrap();
        assert!(!seen[i], "request {i} recorded twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
    assert_eq!(origin.connections(), CONNECTIONS);
}

/// Prints sequential and concurrent requests/s, direct and through the proxy. Run with
/// `cargo test --release -p rig-proxy --test http_proxy -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn throughput() {
    const REQUESTS: usize = 20_000;
    const CONCURRENCY: usize = 32;
    let origin = Origin::start().await;
    let proxy = Proxy::start(origin.addr).await;
    let direct = format!("http://{}/echo", origin.addr);
    let proxied = proxy.url("/echo");
    for (name, url) in [("direct", &direct), ("proxied", &proxied)] {
        let client = http1_client();
        send(&client, Request::get(url.as_str()).body(empty()).unwrap()).await;
        let started = Instant::now();
        for _ in 0..REQUESTS / 4 {
            send(&client, Request::get(url.as_str()).body(empty()).unwrap()).await;
        }
        let sequential = (REQUESTS / 4) as f64 / started.elapsed().as_secs_f64();

        let started = Instant::now();
        let tasks = (0..CONCURRENCY).map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                for _ in 0..REQUESTS / CONCURRENCY {
                    send(&client, Request::get(url.as_str()).body(empty()).unwrap()).await;
                }
            })
        });
        futures_util::future::join_all(tasks).await;
        let concurrent = REQUESTS as f64 / started.elapsed().as_secs_f64();
        println!(
            "{name:>8}: {sequential:>8.0} req/s sequential, {concurrent:>8.0} req/s with {CONCURRENCY} connections"
        );
    }
}
