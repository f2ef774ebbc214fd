//! Helpers for the SDK's tests against the real `rigd` binary.
//!
//! The binary is `target/<profile>/rigd` of this workspace, found from the test executable
//! (`target/<profile>/deps/<test>`): `cargo test --workspace` builds it; with
//! `cargo test -p rig-client` run `cargo build --bin rigd` first. Every test of a run uses one
//! rig dir, so they share one rigd started by the SDK's own auto-start (as tests in a user's
//! project do); the dir's name includes the binary's modification time, so a rebuilt rigd
//! gets a fresh dir rather than talking to a stale server.
//!
//! In-test services use a tiny HTTP/1.1 server ([`serve`]) and the tests a tiny HTTP/1.0
//! client ([`get`]) over Tokio sockets, so no HTTP library is needed.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The rigd binary next to this test executable's profile directory.
pub fn rigd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/<profile>/deps");
    let binary = profile.join("rigd");
    assert!(
        binary.is_file(),
        "{} not found: run `cargo build --bin rigd` first (`cargo test --workspace` builds it)",
        binary.display()
    );
    binary
}

/// The rig dir shared by every test of this build of rigd. The dirs of earlier builds are
/// removed once they have been left alone for an hour (their rigd idles out after 5 minutes):
/// each holds a download cache of about 40 MB, and every fresh build makes a new one.
pub fn rig_dir() -> PathBuf {
    let binary = rigd_binary();
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    // SAFETY: getuid(2) cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    let prefix = format!("rig-client-it-{uid}-");
    let dir = std::env::temp_dir().join(format!("{prefix}{built}"));
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| remove_stale_dirs(&prefix, &dir));
    dir
}

/// Removes the temp dirs named `<prefix>...` other than `keep` that nothing has changed for
/// an hour. Best effort: a dir that cannot be read or removed stays.
fn remove_stale_dirs(prefix: &str, keep: &std::path::Path) {
    const STALE: Duration = Duration::from_secs(3600);
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(prefix);
        let idle = || {
            let changed = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            // The dir itself, and its rigd's log, which a running rigd keeps writing.
            [changed(path.clone()), changed(path.join("rigd.log"))]
                .into_iter()
                .flatten()
                .all(|t| t.elapsed().is_ok_and(|age| age > STALE))
        };
        if ours && path != keep && idle() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// An environment builder wired to this workspace's rigd and the shared rig dir.
pub fn builder(name: &str) -> rig::EnvironmentBuilder {
    rig::Environment::builder(name)
        .rigd_binary(rigd_binary())
        .rig_dir(rig_dir())
        .startup_timeout(Duration::from_secs(90))
}

/// A `python3 -m http.server` serving `dir` (expanded by rigd, so `${RIG_TEMP_DIR}` works).
pub fn http_server(dir: &str) -> rig::Service {
    rig::process("python3").args([
        "-m",
        "http.server",
        "${PORT}",
        "--bind",
        "127.0.0.1",
        "--directory",
        dir,
    ])
}

/// A Python HTTP service that answers `/` itself, `/env/<NAME>` with that variable,
/// `/twice/<path>` by calling `<path>` on its egress `api` twice, and any other path by
/// calling the same path on `api` (`via gateway: <answer>`).
pub fn gateway() -> rig::Service {
    const SCRIPT: &str = r#"
import http.server, os, urllib.request
api = "http://" + os.environ.get("API_HOST", "") + ":" + os.environ.get("API_PORT", "")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/":
            body = b"gateway"
        elif self.path.startswith("/env/"):
            body = os.environ.get(self.path[5:], "<unset>").encode()
        elif self.path.startswith("/twice/"):
            for _ in range(2):
                with urllib.request.urlopen(api + self.path[6:]) as r:
                    body = b"twice via gateway: " + r.read()
        else:
            with urllib.request.urlopen(api + self.path) as r:
                body = b"via gateway: " + r.read()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("gateway calling", api, flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;
    rig::process("python3").args(["-c", SCRIPT]).egress("api")
}

/// A response from [`get`].
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// `GET url` over HTTP/1.0 (so no chunked encoding), reading to the end.
pub async fn get(url: &str) -> std::io::Result<Response> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(host_port).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host_port}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    Ok(Response {
        status,
        body: body.to_string(),
    })
}

/// Serves HTTP/1.1 on the wiring's ingress until the task is aborted: every request gets
/// `handler(method, path)` as `(status, body)`, then the connection is closed.
pub async fn serve<H>(wiring: &rig::Wiring, handler: H) -> Result<(), rig::BoxError>
where
    H: Fn(&str, &str) -> (u16, String) + Send + Sync + 'static,
{
    let listener = TcpListener::bind(&wiring.ingress()?.host_port).await?;
    let handler = Arc::new(handler);
    loop {
        let (stream, _) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &*handler).await;
        });
    }
}

async fn answer<H>(stream: TcpStream, handler: &H) -> std::io::Result<()>
where
    H: Fn(&str, &str) -> (u16, String),
{
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body).await?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (status, body) = handler(method, path);
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Sends `signal` to the rigd serving `rig_dir` (found by its `--rig-dir` argument) and waits
/// for it to exit.
pub fn stop_rigd_of(rig_dir: &std::path::Path, signal: libc::c_int) {
    let wanted = rig_dir.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args
            .windows(2)
            .any(|w| w[0] == b"--rig-dir" && w[1] == wanted)
        {
            // SAFETY: pidfd_open(2) and kill(2) with a pid read from /proc; poll(2) on the
            // pidfd, which is closed afterwards.
            unsafe {
                let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as libc::c_int;
                libc::kill(pid, signal);
                if pidfd >= 0 {
                    // Readable once the process has exited.
                    let mut fds = libc::pollfd {
                        fd: pidfd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ready = libc::poll(&mut fds, 1, 30_000);
                    assert_eq!(
                        ready, 1,
                        "rigd {pid} did not exit within 30 s of signal {signal}"
                    );
                    libc::close(pidfd);
                }
            }
        }
    }
}
