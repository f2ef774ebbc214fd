//! Escape sequences a service writes (to stderr, in a response body) never reach the terminal
//! raw through what explains a failure: the DELETE summary (printed into test output),
//! `rig explain -p`, `rig summary -p` and `rig traffic --detail`, with the real `rigd` and
//! `rig` binaries and a real service.

mod support;

use std::process::Command;

use rig_types::EventType;
use rigd::cli::client::DeleteOptions;
use serde_json::json;
use support::{Rigd, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A window title (OSC, ended by BEL) and a screen clear.
const EVIL: &str = "\x1b]0;x\x07\x1b[2J";

/// An HTTP service: `/fail` writes a line with [`EVIL`] to stderr and answers 500 with it in
/// the body; anything else is a 200.
const SERVICE: &str = r#"
import http.server, os, sys
EVIL = "\x1b]0;x\x07\x1b[2J"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/fail":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        sys.stderr.write("handler: stock db down" + EVIL + "\n")
        sys.stderr.flush()
        body = ("stock db down" + EVIL).encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// Fails when `text` holds an escape or a bell.
fn assert_inert(what: &str, text: &str) {
    assert!(
        !text.contains('\x1b') && !text.contains('\x07'),
        "{what} lets a control sequence through:\n{text:?}"
    );
}

/// Runs `rig args` with the rig dir of `rigd`; its stdout.
fn rig(rigd: &Rigd, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(args)
        .env("RIG_DIR", rigd.rig_dir())
        .env_remove("RIG_LOGS")
        .output()
        .expect("run rig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rig {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn what_services_wrote_cannot_drive_the_terminal() {
    let rigd = Rigd::start();
    let script = rigd.script("service.py", SERVICE);
    let (id, up) = rigd
        .up(json!({"name": "escapes", "services": {"api": {
            "type": "process",
            "config": {"command": "python3"},
            "args": [script],
            "ingresses": {"default": {"protocol": "http"}}
        }}}))
        .await;
    let mut events = rigd.events_with_logs(&id);

    let hostport = &up.ingresses["api"]["default"].hostport;
    let mut connection = tokio::net::TcpStream::connect(hostport)
        .await
        .expect("connect to the service's proxy");
    let request = format!("GET /fail HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    connection.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, connection.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
    assert!(head.ends_with(" 500"), "{head:?}");
    events
        .until_printed("api", &format!("handler: stock db down{EVIL}\n"))
        .await;
    events
        .until_matching("the failed request", |e| {
            e.event_type == EventType::RequestCompleted
                && e.request.as_ref().is_some_and(|r| r.path == "/fail")
        })
        .await;

    let options = DeleteOptions {
        reason: Some("test_failed".into()),
        log: true,
        ..DeleteOptions::default()
    };
    let deleted = rigd
        .client()
        .delete_environment(&id, &options)
        .await
        .expect("DELETE");
    let summary = deleted.summary.unwrap_or_default();
    assert!(summary.contains("stock db down"), "{summary}");
    assert!(
        summary.contains("api stderr: handler: stock db down"),
        "{summary}"
    );
    assert_inert("the DELETE summary", &summary);

    let never = ["--color", "never"];
    let explain = rig(&rigd, &[&["explain", "-p", &id][..], &never].concat());
    assert!(explain.contains("stock db down"), "{explain}");
    assert_inert("rig explain -p", &explain);
    let summary = rig(&rigd, &[&["summary", "escapes", "-p"][..], &never].concat());
    assert!(summary.contains("stock db down"), "{summary}");
    assert_inert("rig summary -p", &summary);
    let verbose = rig(
        &rigd,
        &[&["summary", "escapes", "-p", "-v"][..], &never].concat(),
    );
    assert!(verbose.contains("stock db down"), "{verbose}");
    assert_inert("rig summary -p -v", &verbose);
    let detail = rig(
        &rigd,
        &[&["traffic", &id, "--detail", "1"][..], &never].concat(),
    );
    assert!(detail.contains("stock db down"), "{detail}");
    assert_inert("rig traffic --detail", &detail);

    // With colours on, only rig's own colour codes remain.
    let coloured = rig(&rigd, &["explain", "-p", "--color", "always", &id]);
    assert!(coloured.contains("stock db down"), "{coloured}");
    assert!(
        !coloured.contains("\x1b]") && !coloured.contains("\x1b[2J") && !coloured.contains('\x07'),
        "{coloured:?}"
    );
}
