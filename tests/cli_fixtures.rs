//! Generates the log-file fixtures under `tests/fixtures/logs/` with real runs of `rigd`
//! (ignored by default; run with
//! `cargo test -p rigd --test cli_fixtures -- --ignored --nocapture`, then review and commit
//! the files and re-bless the snapshots with `RIG_BLESS=1 cargo test -p rigd --test cli_logs`).
//!
//! Three environments, all with observe on:
//! - `TestOrders/passed`: `api` (Python HTTP) calls `store` (a Python TCP echo server) on
//!   `POST /orders`; the test sends GET, POST, a 404 and a 500; torn down without a reason;
//! - `TestOrders/failed`: the same, plus a `test.note` and `reason=test_failed`;
//! - `TestCrash`: `worker` prints, then exits 2 with a Go-style panic on stderr.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rig_types::EventType;
use serde_json::{json, Value};
use support::Rigd;

const API: &str = r#"
import json, os, signal, socket, sys
signal.signal(signal.SIGINT, lambda *_: os._exit(0))
from http.server import BaseHTTPRequestHandler, HTTPServer

def store(data):
    with socket.create_connection((os.environ["STORE_HOST"], int(os.environ["STORE_PORT"]))) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return out
            out += chunk

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, {"status": "ok"})
        if self.path.startswith("/orders"):
            return self.reply(200, {"id": "abc123", "status": "pending"})
        return self.reply(404, {"error": "not found"})
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        echoed = store(body)
        print("stored order of %d bytes" % len(echoed), flush=True)
        return self.reply(201, {"id": "abc123", "stored": len(echoed)})
    def do_DELETE(self):
        print('pq: column "completed_at" does not exist', file=sys.stderr, flush=True)
        return self.reply(500, {"error": 'column "completed_at" does not exist'})
    def log_message(self, *args):
        pass

print("api listening on port " + os.environ["PORT"], flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

const STORE: &str = r#"
import os, signal, socket, threading
signal.signal(signal.SIGINT, lambda *_: os._exit(0))
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(os.environ["PORT"])))
srv.listen()
print("store ready", flush=True)
def serve(c):
    with c:
        while True:
            d = c.recv(4096)
            if not d:
                return
            c.sendall(d)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn orders_spec(rigd: &Rigd, name: &str) -> Value {
    let api = rigd.script("api.py", API);
    let store = rigd.script("store.py", STORE);
    json!({
        "name": name,
        "services": {
            "api": {
                "type": "process",
                "config": {"command": "python3"},
                "args": [api],
                "ingresses": {"default": {"protocol": "http", "ready": {"path": "/health"}}},
                "egresses": {"store": {"service": "store"}}
            },
            "store": {
                "type": "process",
                "config": {"command": "python3"},
                "args": [store],
                "ingresses": {"default": {"protocol": "tcp"}}
            }
        }
    })
}

/// One HTTP/1.1 request with `Connection: close`; returns the status.
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect to api's proxy");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: rig-fixtures\r\n\
         Accept: application/json\r\n{content}Connection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn run_orders(rigd: &Rigd, name: &str, fail: bool) -> PathBuf {
    let id = rigd.create(orders_spec(rigd, name)).await;
    let mut events = rigd.events(&id);
    let up = events.until(EventType::EnvironmentUp).await;
    let addr = up.ingresses["api"]["default"].hostport.clone();
    assert_eq!(http(&addr, "GET", "/orders?id=abc123", None), 200);
    assert_eq!(
        http(&addr, "POST", "/orders", Some(r#"{"item":"book","qty":2}"#)),
        201
    );
    assert_eq!(http(&addr, "GET", "/missing", None), 404);
    assert_eq!(http(&addr, "DELETE", "/orders/old", None), 500);
    // Wait until the proxies recorded the four exchanges and the TCP connection.
    events
        .until_matching("the last request", |e| {
            e.request.as_ref().is_some_and(|r| r.method == "DELETE")
        })
        .await;
    if !events
        .seen()
        .iter()
        .any(|e| e.event_type == EventType::ConnectionClosed)
    {
        events
            .until_matching("the store connection", |e| {
                e.event_type == EventType::ConnectionClosed
            })
            .await;
    }
    if fail {
        rigd.client()
            .post_event(
                &id,
                &json!({"type": "test.note", "error": "tests/orders.rs:42:5: expected 200 from DELETE /orders/old, got 500"}),
            )
            .await
            .unwrap();
    }
    let response = rigd
        .client()
        .delete_environment(
            &id,
            &rigd::cli::client::DeleteOptions {
                preserve: false,
                reason: fail.then(|| "test_failed".to_string()),
                log: true,
            },
        )
        .await
        .unwrap();
    PathBuf::from(response.log_file.expect("a log file"))
}

async fn run_crash(rigd: &Rigd) -> PathBuf {
    let id = rigd
        .create(json!({
            "name": "TestCrash",
            "services": {
                "worker": support::sh(
                    "echo starting worker; echo 'panic: intentional crash: startup failed' >&2; exit 2"
                )
            }
        }))
        .await;
    rigd.events(&id).until(EventType::EnvironmentDown).await;
    let response = rigd
        .client()
        .delete_environment(
            &id,
            &rigd::cli::client::DeleteOptions {
                preserve: false,
                reason: None,
                log: true,
            },
        )
        .await
        .unwrap();
    PathBuf::from(response.log_file.expect("a log file"))
}

fn keep(from: &Path, dest: &Path, name: &str) {
    std::fs::create_dir_all(dest).unwrap();
    let to = dest.join(name);
    std::fs::copy(from, &to).unwrap();
    println!("wrote {}", to.display());
}

#[tokio::test]
#[ignore = "generates fixtures; run by hand"]
async fn generate_fixtures() {
    let rigd = Rigd::start();
    let dest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs");
    let passed = run_orders(&rigd, "TestOrders/passed", false).await;
    keep(
        &passed,
        &dest,
        passed.file_name().unwrap().to_str().unwrap(),
    );
    let failed = run_orders(&rigd, "TestOrders/failed", true).await;
    keep(
        &failed,
        &dest,
        failed.file_name().unwrap().to_str().unwrap(),
    );
    let crashed = run_crash(&rigd).await;
    keep(
        &crashed,
        &dest,
        crashed.file_name().unwrap().to_str().unwrap(),
    );
}
