//! Generates the log-file fixtures under `tests/fixtures/logs/` with real runs of `rigd`
//! (ignored by default; run with
//! `cargo test -p rigd --test cli_fixtures -- --ignored --nocapture`, then review and commit
//! the files and re-bless the snapshots with `RIG_BLESS=1 cargo test -p rigd --test cli_logs`).
//!
//! Four environments, all with observe on:
//! - `TestOrders/passed`: `api` (Python HTTP) calls `store` (a Python TCP echo server) on
//!   `POST /orders`; the test sends GET, POST, a 404 and a 500; torn down without a reason;
//! - `TestOrders/failed`: the same, plus a `test.note` and `reason=test_failed`;
//! - `TestCrash`: `worker` prints, then exits 2 with a Go-style panic on stderr;
//! - `TestCheckout`: mixed HTTP, gRPC, Kafka and TCP traffic, failed: `api` and `store` as
//!   above, `echo` (the tonic echo server of `fixtures/grpc-echo` with reflection, served by
//!   the test as a `client` service behind a `grpc` ingress) called with a unary call, a
//!   server-streaming call and a call failing with `NotFound`, and `kafka` (librdkafka's mock
//!   cluster behind a `kafka` ingress) that a real producer and consumer (rdkafka) use.
//!
//! Each environment has its own generator (`generate_orders`, `generate_crash`,
//! `generate_checkout`), so one fixture can be regenerated without touching the others; a
//! regenerated file replaces the older file of the same environment.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use rig_grpc_echo::pb::{Detail, EchoRequest};
use rig_grpc_echo::EchoClient;
use rig_types::{Event, EventType};
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
    teardown(rigd, &id, fail.then_some("test_failed")).await
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
    teardown(rigd, &id, None).await
}

/// Runs `TestCheckout` (see the module docs) and returns its log file.
async fn run_checkout(rigd: &Rigd) -> PathBuf {
    let cluster = MockCluster::new(1).expect("a mock Kafka cluster");
    cluster
        .create_topic("orders", 2, 1)
        .expect("create the orders topic");
    let broker = cluster.bootstrap_servers();
    let mut spec = orders_spec(rigd, "TestCheckout");
    spec["services"]["echo"] = json!({
        "type": "client",
        "config": {"start_handler": "run_echo"},
        "ingresses": {"default": {"protocol": "grpc"}}
    });
    spec["services"]["kafka"] = rigd.kafka_forwarder(&broker);
    let id = rigd.create(spec).await;
    let mut events = rigd.events(&id);
    let mut server = None;
    let up = loop {
        let event = events.next().await;
        match event.event_type {
            EventType::CallbackRequest => {
                server = Some(support::serve_grpc_echo_for(&event).await);
                rigd.answer(&id, &event, None).await;
            }
            EventType::EnvironmentUp => break event,
            EventType::EnvironmentDown => panic!(
                "the environment failed:\n{}",
                support::describe(events.seen())
            ),
            _ => {}
        }
    };
    assert!(server.is_some(), "echo was started");

    // HTTP (and the TCP connection api opens to store).
    let api = up.ingresses["api"]["default"].hostport.clone();
    assert_eq!(http(&api, "GET", "/orders?id=abc123", None), 200);
    assert_eq!(
        http(&api, "POST", "/orders", Some(r#"{"item":"book","qty":2}"#)),
        201
    );

    // gRPC: unary, server streaming, and a call failing with NotFound.
    let echo = &up.ingresses["echo"]["default"].hostport;
    let mut client = EchoClient::connect(format!("http://{echo}"))
        .await
        .expect("connect to echo through the proxy");
    let reply = client
        .unary(EchoRequest {
            text: "reserve book".into(),
            detail: Some(Detail {
                note: "gift wrap".into(),
                weight: 2,
            }),
            numbers: vec![4, 2],
            ..EchoRequest::default()
        })
        .await
        .expect("the unary call succeeds")
        .into_inner();
    assert_eq!(reply.text, "reserve book");
    let mut stream = client
        .server_stream(EchoRequest {
            text: "track order abc123".into(),
            repeat: 3,
            ..EchoRequest::default()
        })
        .await
        .expect("the streaming call starts")
        .into_inner();
    let mut replies = 0;
    while stream.message().await.expect("a streamed reply").is_some() {
        replies += 1;
    }
    assert_eq!(replies, 3);
    let status = client
        .unary(EchoRequest {
            text: "reserve order 42".into(),
            fail_code: tonic::Code::NotFound as i32,
            fail_message: "order 42 not found".into(),
            ..EchoRequest::default()
        })
        .await
        .expect_err("the call fails");
    assert_eq!(status.code(), tonic::Code::NotFound);
    drop(client);

    // Kafka: produce two orders, then read them back.
    let kafka = up.ingresses["kafka"]["default"].hostport.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka)
        .set("client.id", "checkout-producer")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("a producer");
    for (partition, order) in [(0, r#"{"order":"abc123"}"#), (1, r#"{"order":"def456"}"#)] {
        producer
            .send(
                FutureRecord::<(), _>::to("orders")
                    .partition(partition)
                    .payload(order),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered through the proxy");
    }
    drop(producer);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka)
        .set("client.id", "checkout-consumer")
        .set("group.id", "checkout")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("a consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..2 {
        assignment
            .add_partition_offset("orders", partition, Offset::Beginning)
            .expect("assign a partition");
    }
    consumer.assign(&assignment).expect("assign the partitions");
    let mut received = Vec::new();
    while received.len() < 2 {
        let message = tokio::time::timeout(support::WAIT, consumer.recv())
            .await
            .expect("the orders come back within the deadline")
            .expect("a message");
        received.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
    }
    drop(consumer);
    received.sort();
    assert_eq!(received, [r#"{"order":"abc123"}"#, r#"{"order":"def456"}"#]);

    // Wait until the proxies recorded everything: the failed gRPC call, a Fetch of the
    // topic, the store connection and the Kafka connections closing.
    let seen =
        |events: &support::Events, pred: &dyn Fn(&Event) -> bool| events.seen().iter().any(pred);
    let grpc_failed = |e: &Event| {
        e.grpc_call
            .as_ref()
            .is_some_and(|c| c.grpc_status == "NotFound")
    };
    let fetched = |e: &Event| {
        e.kafka_request
            .as_ref()
            .is_some_and(|k| k.api_name == "Fetch" && !k.topics.is_empty())
    };
    let closed = |events: &support::Events| {
        events
            .seen()
            .iter()
            .filter(|e| e.event_type == EventType::ConnectionClosed)
            .filter_map(|e| e.connection.as_deref())
            .filter(|c| !c.probe)
            .count()
    };
    for (what, pred) in [
        ("the NotFound call", &grpc_failed as &dyn Fn(&Event) -> bool),
        ("a Fetch of orders", &fetched),
    ] {
        if !seen(&events, pred) {
            events.until_matching(what, pred).await;
        }
    }
    // The store connection and at least one producer and consumer connection.
    while closed(&events) < 3 {
        events
            .until_matching("the connections closing", |e| {
                e.event_type == EventType::ConnectionClosed
            })
            .await;
    }
    rigd.client()
        .post_event(
            &id,
            &json!({"type": "test.note", "error": "tests/checkout.rs:57:9: reserve order 42: status NotFound: order 42 not found"}),
        )
        .await
        .unwrap();
    let log = teardown(rigd, &id, Some("test_failed")).await;
    drop(cluster);
    log
}

/// Deletes environment `id` with its log written; returns the log file.
async fn teardown(rigd: &Rigd, id: &str, reason: Option<&str>) -> PathBuf {
    let response = rigd
        .client()
        .delete_environment(
            id,
            &rigd::cli::client::DeleteOptions {
                preserve: false,
                reason: reason.map(str::to_string),
                log: true,
            },
        )
        .await
        .unwrap();
    PathBuf::from(response.log_file.expect("a log file"))
}

/// Copies the log file `from` into `tests/fixtures/logs`, replacing the older files (`.jsonl`
/// and `.log`) of the same environment.
fn keep(from: &Path) {
    let dest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs");
    std::fs::create_dir_all(&dest).unwrap();
    let name = from.file_name().unwrap().to_str().unwrap();
    // `<environment>-<time>-<id>.jsonl`: the environment is everything before the last two
    // dashes.
    let environment = name.rsplitn(3, '-').nth(2).expect("a log file name");
    for old in std::fs::read_dir(&dest).unwrap().flatten() {
        let old_name = old.file_name().to_string_lossy().into_owned();
        if old_name.rsplitn(3, '-').nth(2) == Some(environment) {
            std::fs::remove_file(old.path()).unwrap();
        }
    }
    let to = dest.join(name);
    std::fs::copy(from, &to).unwrap();
    println!("wrote {}", to.display());
}

#[tokio::test]
#[ignore = "generates fixtures; run by hand"]
async fn generate_orders() {
    let rigd = Rigd::start();
    keep(&run_orders(&rigd, "TestOrders/passed", false).await);
    keep(&run_orders(&rigd, "TestOrders/failed", true).await);
}

#[tokio::test]
#[ignore = "generates fixtures; run by hand"]
async fn generate_crash() {
    let rigd = Rigd::start();
    keep(&run_crash(&rigd).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "generates fixtures; run by hand"]
async fn generate_checkout() {
    let rigd = Rigd::start();
    keep(&run_checkout(&rigd).await);
}
