//! One-off throughput measurement (not a test of behaviour): 1 GiB over loopback directly and
//! through the relay. Run with
//! `cargo test -p rig-proxy --release -- --ignored --nocapture relay_throughput`.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::{run, spawn_server, Proxy};
use crate::tcp::TcpSettings;

const GIB: u64 = 1 << 30;

/// Sends `total` bytes to `addr` and returns the throughput in MiB/s, measured until the
/// receiving server has read everything.
async fn send(addr: SocketAddr, total: u64) -> f64 {
    let chunk = vec![0x5au8; 256 * 1024];
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut sent = 0;
    while sent < total {
        let len = (total - sent).min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..len]).await.unwrap();
        sent += len as u64;
    }
    stream.shutdown().await.unwrap();
    // The sink replies with the count it read, once it saw EOF.
    let received = stream.read_u64().await.unwrap();
    assert_eq!(received, total);
    total as f64 / (1024.0 * 1024.0) / started.elapsed().as_secs_f64()
}

async fn discard_server() -> SocketAddr {
    spawn_server(|mut stream: TcpStream| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf).await.unwrap() {
                0 => break,
                n => total += n as u64,
            }
        }
        stream.write_u64(total).await.unwrap();
    })
    .await
}

#[test]
#[ignore = "measurement; run in release mode by hand"]
fn relay_throughput() {
    run(async {
        let sink = discard_server().await;
        let spliced = Proxy::start(sink, TcpSettings::default()).await;
        let copied = Proxy::start(
            sink,
            TcpSettings {
                zero_copy: false,
                ..TcpSettings::default()
            },
        )
        .await;
        // Warm up once each.
        send(sink, GIB / 8).await;
        send(spliced.addr, GIB / 8).await;
        send(copied.addr, GIB / 8).await;
        for round in 1..=3 {
            let direct = send(sink, GIB).await;
            let splice = send(spliced.addr, GIB).await;
            let copy = send(copied.addr, GIB).await;
            println!(
            "round {round}: 1 GiB direct {direct:.0} MiB/s, relay (splice) {splice:.0} MiB/s, relay (64 KiB copy) {copy:.0} MiB/s"
        );
        }
        spliced.shutdown().await;
        copied.shutdown().await;
    })
}
