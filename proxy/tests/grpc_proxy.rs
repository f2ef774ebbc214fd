//! gRPC through the observing proxy, end to end with real implementations: the tonic echo
//! server (with server reflection v1, v1alpha or none, with or without gzip) behind the proxy,
//! a tonic client in front of it, and the `grpc.call.completed` events the proxy records.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rig_grpc_echo::pb::{Detail, EchoReply, EchoRequest, Mood};
use rig_grpc_echo::{EchoClient, Options, Reflection};
use rig_proxy::{Edge, Mode, TrafficSink};
use rig_types::{Event, EventType, GrpcCallInfo};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

/// How long a test waits for something that should happen promptly.
const PATIENCE: Duration = Duration::from_secs(20);

const SERVICE: &str = "rig.test.echo.v1.Echo";

struct ChannelSink(mpsc::UnboundedSender<Event>);

impl TrafficSink for ChannelSink {
    fn emit(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

/// A proxy on the test's edge to a gRPC target, and the events it records; stopped when
/// dropped.
struct Proxied {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
    _stop: tokio_util::sync::DropGuard,
}

impl Proxied {
    fn start(target: String, mode: Mode) -> Proxied {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let edge = Edge {
            source: "~test".into(),
            target: "echo".into(),
            ingress: "default".into(),
        };
        tokio::spawn(rig_proxy::run(
            listener,
            target,
            mode,
            edge,
            Arc::new(ChannelSink(tx)),
            cancel.clone(),
            rig_proxy::RunOptions::default(),
        ));
        Proxied {
            addr,
            events,
            _stop: cancel.drop_guard(),
        }
    }

    /// The next `grpc.call.completed`.
    async fn call(&mut self) -> GrpcCallInfo {
        loop {
            let event = tokio::time::timeout(PATIENCE, self.events.recv())
                .await
                .expect("no gRPC event in time")
                .expect("the observer stopped");
            if event.event_type == EventType::GrpcCallCompleted {
                return *event
                    .grpc_call
                    .expect("grpc.call.completed without grpc_call");
            }
        }
    }
}

/// An echo server with a proxy in front of it.
struct Setup {
    client: EchoClient<Channel>,
    proxied: Proxied,
    _server: tokio::task::JoinHandle<()>,
}

impl Setup {
    async fn start(reflection: Reflection, gzip: bool, mode: Mode) -> Setup {
        let (target, server) = rig_grpc_echo::spawn(Options { reflection, gzip })
            .await
            .unwrap();
        Setup::proxy(target, server, gzip, mode).await
    }

    /// A proxy to `target`, whose server task is `server`.
    async fn proxy(
        target: SocketAddr,
        server: tokio::task::JoinHandle<()>,
        gzip: bool,
        mode: Mode,
    ) -> Setup {
        let proxied = Proxied::start(target.to_string(), mode);
        let mut client = EchoClient::connect(format!("http://{}", proxied.addr))
            .await
            .unwrap();
        if gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Setup {
            client,
            proxied,
            _server: server,
        }
    }

    /// The next `grpc.call.completed`.
    async fn call(&mut self) -> GrpcCallInfo {
        self.proxied.call().await
    }
}

fn request(text: &str) -> EchoRequest {
    EchoRequest {
        text: text.into(),
        ..EchoRequest::default()
    }
}

fn texts(messages: &[rig_types::GrpcMessage], key: &str) -> Vec<serde_json::Value> {
    messages
        .iter()
        .map(|m| m.decoded.as_ref().expect("decoded")[key].clone())
        .collect()
}

#[tokio::test]
async fn a_unary_call_is_recorded_and_decoded_with_reflection() {
    let mut setup = Setup::start(Reflection::V1, false, Mode::Grpc).await;
    let mut call = tonic::Request::new(EchoRequest {
        text: "hi".into(),
        detail: Some(Detail {
            note: "n".into(),
            weight: 5,
        }),
        numbers: vec![1, 2],
        mood: Mood::Grumpy as i32,
        ..EchoRequest::default()
    });
    call.metadata_mut()
        .insert("authorization", "Bearer secret".parse().unwrap());
    call.metadata_mut().insert("x-trace", "t1".parse().unwrap());
    let reply = setup.client.unary(call).await.unwrap().into_inner();
    assert_eq!(reply.text, "hi");

    let event = setup.call().await;
    assert_eq!(event.source, "~test");
    assert_eq!(event.target, "echo");
    assert_eq!(event.service, SERVICE);
    assert_eq!(event.method, "Unary");
    assert_eq!(event.grpc_status, "OK");
    assert_eq!(event.grpc_message, "");
    assert!(!event.probe);
    assert_eq!(event.error, "");
    let expected_request = json!({"text": "hi", "detail": {"note": "n", "weight": "5"},
                                  "numbers": ["1", "2"], "mood": "MOOD_GRUMPY"});
    assert_eq!(event.request_body_decoded, Some(expected_request.clone()));
    assert_eq!(
        event.response_body_decoded,
        Some(json!({"text": "hi", "detail": {"note": "n", "weight": "5"},
                    "numbers": ["1", "2"], "mood": "MOOD_GRUMPY"}))
    );
    assert_eq!(event.request_messages.len(), 1);
    assert_eq!(event.request_messages[0].decoding, "reflection");
    assert_eq!(event.request_messages[0].decoded, Some(expected_request));
    assert_eq!(event.response_messages.len(), 1);
    // Sizes count DATA bytes, prefixes included; the raw bodies are those bytes.
    let raw = event.request_body.as_ref().unwrap();
    assert_eq!(event.request_size, raw.len() as i64);
    assert_eq!(raw.len(), 5 + event.request_messages[0].size as usize);
    assert_eq!(
        event.response_size,
        event.response_body.as_ref().unwrap().len() as i64
    );
    assert_eq!(event.request_metadata["Content-Type"], ["application/grpc"]);
    assert_eq!(event.request_metadata["Te"], ["trailers"]);
    assert_eq!(event.request_metadata["X-Trace"], ["t1"]);
    assert_eq!(event.request_metadata["Authorization"], ["[REDACTED]"]);
    assert_eq!(event.response_metadata["Grpc-Status"], ["0"]);
    assert_eq!(event.response_headers["Content-Type"], ["application/grpc"]);
    assert!(event.latency_ms > 0.0);
    assert!(event.duration_ms.unwrap() >= event.latency_ms);
    assert!(event.started_at.is_some());
}

#[tokio::test]
async fn every_message_of_streaming_calls_is_decoded() {
    let mut setup = Setup::start(Reflection::V1, false, Mode::Grpc).await;

    // Server streaming: one request, three replies.
    let mut stream = setup
        .client
        .server_stream(EchoRequest {
            text: "s".into(),
            repeat: 3,
            ..EchoRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut replies = 0;
    while stream.message().await.unwrap().is_some() {
        replies += 1;
    }
    assert_eq!(replies, 3);
    let event = setup.call().await;
    assert_eq!(event.method, "ServerStream");
    assert_eq!(event.grpc_status, "OK");
    assert_eq!(texts(&event.request_messages, "text"), [json!("s")]);
    assert_eq!(
        texts(&event.response_messages, "text"),
        [json!("s #0"), json!("s #1"), json!("s #2")]
    );
    assert_eq!(event.response_body_decoded.unwrap()["text"], "s #0");

    // Client streaming: three requests, one reply.
    let requests = tokio_stream::iter(["a", "b", "c"].map(request));
    let reply = setup
        .client
        .client_stream(requests)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, "a+b+c");
    let event = setup.call().await;
    assert_eq!(event.method, "ClientStream");
    assert_eq!(
        texts(&event.request_messages, "text"),
        [json!("a"), json!("b"), json!("c")]
    );
    assert_eq!(texts(&event.response_messages, "text"), [json!("a+b+c")]);
    assert_eq!(
        event.response_messages[0].decoded.as_ref().unwrap()["index"],
        3
    );

    // Bidi: a reply per request, interleaved.
    let (tx, rx) = mpsc::channel(4);
    let mut replies = setup
        .client
        .bidi(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for text in ["x", "y", "z"] {
        tx.send(request(text)).await.unwrap();
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.text, text.to_uppercase());
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    let event = setup.call().await;
    assert_eq!(event.method, "Bidi");
    assert_eq!(event.grpc_status, "OK");
    assert_eq!(
        texts(&event.request_messages, "text"),
        [json!("x"), json!("y"), json!("z")]
    );
    assert_eq!(
        texts(&event.response_messages, "text"),
        [json!("X"), json!("Y"), json!("Z")]
    );
}

#[tokio::test]
async fn an_error_status_is_named_as_upstream_with_its_message_decoded() {
    let mut setup = Setup::start(Reflection::V1, false, Mode::Grpc).await;
    let status = setup
        .client
        .unary(EchoRequest {
            fail_code: 5,
            fail_message: "sku missing: 50% of ünits".into(),
            ..EchoRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    let event = setup.call().await;
    assert_eq!(event.grpc_status, "NotFound");
    assert_eq!(event.grpc_message, "sku missing: 50% of ünits");
    // A trailers-only response: the status is in the headers, there are no trailers.
    assert_eq!(event.response_headers["Grpc-Status"], ["5"]);
    assert!(event.response_metadata.is_empty());
    assert!(event.response_messages.is_empty());
    assert_eq!(event.response_body, None);
    assert_eq!(event.request_messages.len(), 1);
}

#[tokio::test]
async fn gzip_messages_are_decompressed_before_decoding() {
    let mut setup = Setup::start(Reflection::V1, true, Mode::Grpc).await;
    let text = "compressible ".repeat(50);
    let reply = setup
        .client
        .unary(request(&text))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, text);

    let event = setup.call().await;
    assert_eq!(event.request_metadata["Grpc-Encoding"], ["gzip"]);
    for messages in [&event.request_messages, &event.response_messages] {
        assert_eq!(messages.len(), 1);
        assert!(messages[0].compressed);
        assert!(
            messages[0].size < text.len() as i64,
            "compressed on the wire"
        );
        assert_eq!(messages[0].decoding, "reflection");
        assert_eq!(messages[0].decoded.as_ref().unwrap()["text"], text.as_str());
    }
    assert_eq!(event.request_body_decoded.unwrap()["text"], text.as_str());
}

/// A message larger than the bytes the proxy keeps for decoding is passed on whole and listed
/// by its size, undecoded, with the reason.
#[tokio::test]
async fn a_message_past_the_capture_is_listed_by_size() {
    let mut setup = Setup::start(Reflection::V1, false, Mode::Grpc).await;
    let text = "x".repeat(300_000);
    let reply = setup
        .client
        .unary(request(&text))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text.len(), text.len());

    let event = setup.call().await;
    assert_eq!(event.grpc_status, "OK");
    for (messages, truncated) in [
        (&event.request_messages, event.request_messages_truncated),
        (&event.response_messages, event.response_messages_truncated),
    ] {
        assert!(truncated);
        assert_eq!(messages.len(), 1, "{messages:?}");
        let message = &messages[0];
        assert!(message.size > 300_000, "{message:?}");
        assert_eq!(message.decoded, None);
        assert!(
            message.error.starts_with("message 0: declares 300"),
            "{message:?}"
        );
    }
}

#[tokio::test]
async fn without_reflection_messages_are_decoded_from_the_wire_format() {
    let mut setup = Setup::start(Reflection::None, false, Mode::Grpc).await;
    setup
        .client
        .unary(EchoRequest {
            text: "raw".into(),
            repeat: 7,
            detail: Some(Detail {
                note: "n".into(),
                weight: 9,
            }),
            ..EchoRequest::default()
        })
        .await
        .unwrap();
    let event = setup.call().await;
    assert_eq!(event.grpc_status, "OK");
    let message = &event.request_messages[0];
    assert_eq!(message.decoding, "wire");
    assert_eq!(
        message.decoded,
        Some(json!({"1": "raw", "2": 7, "5": {"1": "n", "2": 9}}))
    );
    assert_eq!(event.request_body_decoded, message.decoded);
    assert_eq!(event.response_messages[0].decoding, "wire");
}

#[tokio::test]
async fn reflection_falls_back_to_v1alpha() {
    let mut setup = Setup::start(Reflection::V1Alpha, false, Mode::Grpc).await;
    setup.client.unary(request("alpha")).await.unwrap();
    let event = setup.call().await;
    assert_eq!(event.request_messages[0].decoding, "reflection");
    assert_eq!(event.request_body_decoded, Some(json!({"text": "alpha"})));
}

#[tokio::test]
async fn reflection_works_with_servers_that_send_headers_only_with_the_first_answer() {
    // grpc-go (Temporal, most Go servers) answers the reflection stream's headers only with
    // its first answer: the first request must not wait for them.
    let mut setup = Setup::start(Reflection::V1GoTiming, false, Mode::Grpc).await;
    setup.client.unary(request("go")).await.unwrap();
    let event = setup.call().await;
    assert_eq!(event.request_messages[0].decoding, "reflection");
    assert_eq!(event.request_body_decoded, Some(json!({"text": "go"})));
}

#[tokio::test]
async fn grpc_calls_on_an_http_edge_are_recorded_as_grpc() {
    // No prefetch on an `http` edge: the first call starts the fetch and its event waits
    // for the descriptors.
    let mut setup = Setup::start(Reflection::V1, false, Mode::Http).await;
    setup.client.unary(request("via http")).await.unwrap();
    let event = setup.call().await;
    assert_eq!(event.service, SERVICE);
    assert_eq!(
        event.request_body_decoded,
        Some(json!({"text": "via http"}))
    );
    assert_eq!(event.request_messages[0].decoding, "reflection");
}

#[tokio::test]
async fn probes_are_marked() {
    let mut setup = Setup::start(Reflection::V1, false, Mode::Grpc).await;
    let mut call = tonic::Request::new(request("probe"));
    call.metadata_mut()
        .insert("x-rig-probe", "1".parse().unwrap());
    setup.client.unary(call).await.unwrap();
    assert!(setup.call().await.probe);
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn a_target_down_gives_grpc_unavailable_naming_the_cause() {
    for mode in [Mode::Grpc, Mode::Http] {
        let target = closed_port();
        let mut setup = Setup::proxy(target, tokio::spawn(async {}), false, mode).await;
        let status = tokio::time::timeout(PATIENCE, setup.client.unary(request("anyone?")))
            .await
            .expect("the call ended")
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "{mode:?}: {status:?}"
        );
        let refused = format!("rig proxy: the target {target} refused the connection");
        assert!(status.message().starts_with(&refused), "{status:?}");
        assert_eq!(
            status.metadata().get("x-rig-proxy-error").unwrap(),
            "connect-refused"
        );

        let event = setup.call().await;
        assert_eq!(event.grpc_status, "Unavailable");
        assert_eq!(event.grpc_message, status.message());
        assert!(
            event.error.starts_with("upstream: the target"),
            "{}",
            event.error
        );
        assert!(
            event.error.contains("refused the connection"),
            "{}",
            event.error
        );
        assert_eq!(event.response_headers["Grpc-Status"], ["14"]);
        assert_eq!(
            event.response_headers["X-Rig-Proxy-Error"],
            ["connect-refused"]
        );
        assert!(event.response_messages.is_empty());
    }
}

/// How [`breaking_target`] breaks a call after its first reply.
#[derive(Clone, Copy, Debug)]
enum Break {
    /// `RST_STREAM` on the call's stream.
    StreamReset,
    /// A TCP reset of the whole connection.
    ConnectionReset,
}

/// A raw HTTP/2 gRPC target: answers `ServerStream` calls with response headers and one
/// reply, then, once told to, breaks the call as `how` says. Other calls (server reflection)
/// get `UNIMPLEMENTED`.
async fn breaking_target(how: Break) -> (SocketAddr, Arc<tokio::sync::Notify>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let go = Arc::new(tokio::sync::Notify::new());
    let notify = go.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_breaking(socket, how, notify.clone()));
        }
    });
    (addr, go)
}

async fn serve_breaking(socket: tokio::net::TcpStream, how: Break, go: Arc<tokio::sync::Notify>) {
    // Dropping a socket that lingers 0 s sends a TCP RST.
    socket.set_zero_linger().unwrap();
    let Ok(mut connection) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        if request.uri().path() != format!("/{SERVICE}/ServerStream") {
            let unimplemented = http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "12")
                .body(())
                .unwrap();
            let _ = respond.send_response(unimplemented, true);
            continue;
        }
        let head = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut stream = respond.send_response(head, false).unwrap();
        let reply = EchoReply {
            text: "first".into(),
            ..EchoReply::default()
        }
        .encode_to_vec();
        let mut frame = vec![0];
        frame.extend_from_slice(&(reply.len() as u32).to_be_bytes());
        frame.extend_from_slice(&reply);
        stream.send_data(frame.into(), false).unwrap();
        // Keep the connection going until the client has the reply.
        tokio::select! {
            _ = async { while connection.accept().await.is_some() {} } => return,
            _ = go.notified() => {}
        }
        match how {
            Break::StreamReset => {
                stream.send_reset(h2::Reason::INTERNAL_ERROR);
                while connection.accept().await.is_some() {}
            }
            Break::ConnectionReset => return,
        }
    }
}

#[tokio::test]
async fn a_call_broken_off_by_the_target_ends_with_grpc_unavailable() {
    for how in [Break::StreamReset, Break::ConnectionReset] {
        let (target, go) = breaking_target(how).await;
        let mut setup = Setup::proxy(target, tokio::spawn(async {}), false, Mode::Grpc).await;
        let mut replies =
            tokio::time::timeout(PATIENCE, setup.client.server_stream(request("stream")))
                .await
                .expect("response headers in time")
                .unwrap()
                .into_inner();
        let first = replies.message().await.unwrap().unwrap();
        assert_eq!(first.text, "first");
        go.notify_one();
        let status = tokio::time::timeout(PATIENCE, replies.message())
            .await
            .expect("a status, not a hang")
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "{how:?}: {status:?}"
        );
        assert!(
            status.message().starts_with(&format!(
                "rig proxy: the target {target} reset the stream after 12 bytes of the response body"
            )),
            "{how:?}: {status:?}"
        );
        assert_eq!(
            status.metadata().get("x-rig-proxy-error").unwrap(),
            "upstream-reset"
        );

        let event = setup.call().await;
        assert_eq!(event.grpc_status, "Unavailable", "{how:?}");
        assert_eq!(event.grpc_message, status.message());
        assert!(event.error.contains("reset the stream"), "{}", event.error);
        assert_eq!(
            event.response_metadata["X-Rig-Proxy-Error"],
            ["upstream-reset"]
        );
        assert_eq!(event.response_headers["Content-Type"], ["application/grpc"]);
        // No reflection on this target: the reply is decoded from the wire format.
        assert_eq!(texts(&event.response_messages, "1"), [json!("first")]);
    }
}

/// A gRPC C core (grpcio) server behind a proxy; both stop when it is dropped.
struct CorePeer {
    child: std::process::Child,
    proxied: Proxied,
}

const CORE_PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/grpc_core_peer.py"
);

impl CorePeer {
    fn start() -> CorePeer {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args([CORE_PEER, "serve"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/install-test-deps.sh installs grpcio)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the peer prints its port");
        CorePeer {
            child,
            proxied: Proxied::start(format!("127.0.0.1:{port}"), Mode::Grpc),
        }
    }

    /// Runs a grpcio client through the proxy (`what`: see the script): its output.
    async fn client(&self, what: &str) -> String {
        let out = tokio::process::Command::new("python3")
            .args([CORE_PEER, what, &self.proxied.addr.to_string()])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The next `grpc.call.completed`.
    async fn call(&mut self) -> GrpcCallInfo {
        self.proxied.call().await
    }
}

impl Drop for CorePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// gRPC C core peers send `-bin` metadata as raw bytes after a NUL ("true binary") once both
/// have said they can; the proxy passes the bytes on and records them as base64, as they are
/// sent otherwise.
#[tokio::test]
async fn true_binary_metadata_is_recorded_as_base64() {
    let mut peer = CorePeer::start();
    let answer: serde_json::Value = serde_json::from_str(&peer.client("call").await).unwrap();
    assert_eq!(answer["reply"], "CgJoaQ==");
    assert_eq!(answer["trailing"]["x-answer-bin"], "AAH+/w==");
    assert_eq!(answer["trailing"]["x-answer"], "text");

    let event = peer.call().await;
    assert_eq!(event.method, "Echo");
    assert_eq!(event.grpc_status, "OK");
    assert_eq!(event.request_metadata["X-Request-Bin"], ["AP9hYmM"]);
    assert_eq!(event.request_metadata["X-Request"], ["plain"]);
    assert_eq!(event.response_metadata["X-Answer-Bin"], ["AAH+/w"]);
    assert_eq!(event.response_metadata["X-Answer"], ["text"]);
}

/// A call the client cancels ends with its `RST_STREAM (CANCEL)` and no trailers: it is
/// recorded with the status the client saw.
#[tokio::test]
async fn a_call_the_client_cancels_is_recorded_as_canceled() {
    let mut peer = CorePeer::start();
    assert_eq!(peer.client("cancel").await, "CANCELLED");
    let event = peer.call().await;
    assert_eq!(event.method, "Hold");
    assert_eq!(event.grpc_status, "Canceled");
    assert_eq!(event.error, "client: reset the stream (CANCEL)");
    assert_eq!(event.response_headers["X-Held"], ["yes"]);
}

/// A call whose client gives up at its deadline (`grpc-timeout`), the target having sent
/// nothing more, is recorded as `DeadlineExceeded`, as the client reports it.
#[tokio::test]
async fn a_call_its_client_ends_at_the_deadline_is_recorded_as_deadline_exceeded() {
    // The target sends one reply and never ends the call: it ignores deadlines.
    let (target, _never) = breaking_target(Break::StreamReset).await;
    let mut setup = Setup::proxy(target, tokio::spawn(async {}), false, Mode::Grpc).await;
    let deadline = Duration::from_secs(1);
    let mut call = tonic::Request::new(request("stream"));
    call.set_timeout(deadline);
    let until = tokio::time::Instant::now() + deadline;
    let mut replies = setup.client.server_stream(call).await.unwrap().into_inner();
    assert_eq!(replies.message().await.unwrap().unwrap().text, "first");
    // What a gRPC client does at its deadline: give up the call (`RST_STREAM (CANCEL)`).
    let more = tokio::time::timeout_at(until, replies.message()).await;
    assert!(more.is_err(), "the target ended the call: {more:?}");
    drop(replies);

    let event = setup.call().await;
    assert_eq!(event.request_metadata["Grpc-Timeout"], ["1000000u"]);
    assert_eq!(event.grpc_status, "DeadlineExceeded", "{event:?}");
    assert_eq!(event.error, "client: reset the stream (CANCEL)");
    // The proxy's clock starts when the request arrives, after the client's (the slack of
    // `reset_status`).
    assert!(event.duration_ms.unwrap() >= 900.0, "{event:?}");
}
