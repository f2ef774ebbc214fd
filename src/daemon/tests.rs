//! In-process tests of the daemon: startup files, serving, and every way of stopping.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;

/// A private rig directory, removed on drop.
struct RigDir(PathBuf);

impl RigDir {
    fn new() -> RigDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rigd-daemon-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        RigDir(dir)
    }

    fn config(&self, idle: Duration) -> Config {
        Config {
            addr: "127.0.0.1:0".to_string(),
            idle,
            rig_dir: self.0.clone(),
            addr_file: self.0.join("rigd.addr"),
            default_ttl: Duration::from_secs(600),
            orphan_grace: crate::server::DEFAULT_ORPHAN_GRACE,
            log_retention: crate::logfiles::DEFAULT_RETENTION,
            stop_grace: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(30),
            event_memory: crate::events::DEFAULT_EVENT_MEMORY,
            preserve_all: false,
            // The working directory belongs to the whole test process.
            change_dir: false,
        }
    }
}

impl Drop for RigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A raw HTTP/1.1 request; returns the whole response text.
async fn http(addr: &str, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect to rigd");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn serves_writes_the_addr_file_and_cleans_up_on_request() {
    let rig = RigDir::new();
    let config = rig.config(Duration::ZERO);
    files::create_private_dir(&config.rig_dir).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let daemon = tokio::spawn({
        let config = config.clone();
        let stop = ShutdownSignal::token(stop.clone());
        async move { serve(&config, listener, stop).await }
    });

    let health = http(&addr, "GET", "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains("{\"status\":\"ok\",\"version\":"),
        "{health}"
    );
    // The addr file was written before serving started, without a newline.
    assert_eq!(std::fs::read_to_string(&config.addr_file).unwrap(), addr);

    stop.cancel();
    daemon.await.unwrap().expect("clean shutdown");
    assert!(!config.addr_file.exists(), "addr file removed at exit");
    // (Whether the port refuses connections now is not asserted: parallel tests may bind the
    // freed ephemeral port at once.)
}

#[tokio::test]
async fn shutdown_tears_down_environments_and_ends_event_streams() {
    let rig = RigDir::new();
    let config = rig.config(Duration::ZERO);
    files::create_private_dir(&config.rig_dir).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let daemon = tokio::spawn({
        let config = config.clone();
        let stop = ShutdownSignal::token(stop.clone());
        async move { serve(&config, listener, stop).await }
    });

    let spec = r#"{"name":"bye","services":{"s":{"type":"process","config":{"command":"sleep"},"args":["3600"]}}}"#;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "POST /environments HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{spec}",
        spec.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut created = String::new();
    stream.read_to_string(&mut created).await.unwrap();
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let body = created.split("\r\n\r\n").nth(1).unwrap();
    let id = serde_json::from_str::<serde_json::Value>(body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Follow the events until the environment is up, then ask rigd to stop.
    let mut sse = TcpStream::connect(&addr).await.unwrap();
    let req = format!("GET /environments/{id}/events HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    sse.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    tokio::time::timeout(Duration::from_secs(30), async {
        while !seen.contains("event: environment.up\n") {
            let n = sse.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("environment.up within 30s");

    stop.cancel();
    // The stream delivers the teardown and then ends.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let n = sse.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("stream ends at shutdown");
    assert!(seen.contains("event: environment.destroying\n"), "{seen}");
    assert!(seen.contains("event: environment.down\n"), "{seen}");
    daemon.await.unwrap().expect("clean shutdown");
    let env_dir = config.rig_dir.join("tmp").join(&id);
    assert!(!env_dir.exists(), "env dir removed by teardown");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_stops_rigd() {
    let rig = RigDir::new();
    let config = rig.config(Duration::from_secs(300));
    let start = tokio::time::Instant::now();
    run(config.clone(), ShutdownSignal::never())
        .await
        .expect("clean shutdown");
    assert_eq!(start.elapsed(), Duration::from_secs(300));
    assert!(config.rig_dir.is_dir(), "rig dir created");
    assert!(!config.addr_file.exists(), "addr file removed at exit");
}

#[tokio::test]
async fn listen_failure_is_reported() {
    let rig = RigDir::new();
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = rig.config(Duration::ZERO);
    config.addr = taken.local_addr().unwrap().to_string();
    let err = run(config.clone(), ShutdownSignal::never())
        .await
        .expect_err("port in use");
    assert!(matches!(err, DaemonError::Listen { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("listen: {}: ", config.addr)),
        "{err}"
    );
    assert!(!config.addr_file.exists());
}

#[tokio::test]
async fn unusable_rig_dir_is_reported() {
    let rig = RigDir::new();
    files::create_private_dir(&rig.0).unwrap();
    let file = rig.0.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let mut config = rig.config(Duration::ZERO);
    config.rig_dir = file.join("rig");
    let err = run(config, ShutdownSignal::never())
        .await
        .expect_err("rig dir under a file");
    assert!(matches!(err, DaemonError::CreateDir { .. }), "{err:?}");
}

#[test]
fn shutdown_reasons_read_like_upstream() {
    assert_eq!(
        ShutdownReason::Signal("interrupt").to_string(),
        "received interrupt"
    );
    assert_eq!(ShutdownReason::IdleTimeout.to_string(), "idle timeout");
}
