//! Traffic observed late still explains a failure: a gRPC call's observation waits for the
//! target's descriptors (server reflection), so it can reach the log after the test asked for
//! the teardown. The target here is a tonic echo server whose reflection answers only when
//! the test lets it, which it does right after sending the DELETE: rigd must let the
//! observation in before `environment.destroying`, and the DELETE summary and `rig explain`
//! must name the failed call.

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};

use rig_grpc_echo::pb::echo_server::EchoServer;
use rig_grpc_echo::pb::EchoRequest;
use rig_grpc_echo::{Echo, EchoClient};
use rig_types::{Event, EventType};
use serde_json::{json, Value};
use support::{Rigd, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::ServiceExt;

/// A service that answers once `open` turns true.
#[derive(Clone)]
struct Held<S> {
    inner: S,
    open: watch::Receiver<bool>,
}

impl<S> tower::Service<http::Request<Body>> for Held<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let mut open = self.open.clone();
        Box::pin(async move {
            let _ = open.wait_for(|open| *open).await;
            inner.oneshot(request).await
        })
    }
}

impl<S: NamedService> NamedService for Held<S> {
    const NAME: &'static str = S::NAME;
}

/// Serves the echo service on the port the callback `event` published, with reflection held
/// until `open` turns true.
async fn serve_held_echo(
    event: &Event,
    open: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let wiring = event
        .callback
        .as_ref()
        .and_then(|c| c.wiring.as_ref())
        .expect("the callback's wiring");
    let port = wiring.ingresses["default"].port().expect("a port");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the published port is free");
    let reflection = Held {
        inner: rig_grpc_echo::go_reflection::service(),
        open,
    };
    let router = tonic::transport::Server::builder()
        .add_service(EchoServer::new(Echo::default()))
        .add_service(reflection);
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    })
}

#[tokio::test]
async fn a_failed_call_observed_after_the_delete_still_explains_the_failure() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "late-grpc", "services": {
            "inventory": {
                "type": "client",
                "config": {"start_handler": "run_inventory"},
                "ingresses": {"default": {"protocol": "grpc"}}
            }
        }}))
        .await;
    let (open, held) = watch::channel(false);
    let mut events = rigd.events(&id);
    let mut server = None;
    let up = loop {
        let event = events.next().await;
        match event.event_type {
            EventType::CallbackRequest => {
                server = Some(serve_held_echo(&event, held.clone()).await);
                rigd.answer(&id, &event, None).await;
            }
            EventType::EnvironmentUp => break event,
            EventType::EnvironmentDown => {
                panic!(
                    "the environment failed:\n{}",
                    support::describe(events.seen())
                )
            }
            _ => {}
        }
    };
    assert!(server.is_some());

    // The call fails; its observation waits for the descriptors, which the test holds back.
    let endpoint = &up.ingresses["inventory"]["default"];
    let mut client = EchoClient::connect(format!("http://{}", endpoint.hostport))
        .await
        .expect("connect through the proxy");
    let status = client
        .unary(EchoRequest {
            text: "reserve".into(),
            fail_code: tonic::Code::Internal as i32,
            fail_message: "stock db down".into(),
            ..EchoRequest::default()
        })
        .await
        .expect_err("the call fails");
    assert_eq!(status.code(), tonic::Code::Internal);

    // The DELETE is on its way before the descriptors are.
    let mut connection = tokio::net::TcpStream::connect(rigd.addr())
        .await
        .expect("connect to rigd");
    let request = format!(
        "DELETE /environments/{id}?log=true&reason=test_failed HTTP/1.1\r\nHost: {}\r\n\
         Connection: close\r\n\r\n",
        rigd.addr()
    );
    connection
        .write_all(request.as_bytes())
        .await
        .expect("send the DELETE");
    connection.flush().await.expect("send the DELETE");
    open.send(true).expect("the server still runs");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, connection.read_to_end(&mut answer))
        .await
        .expect("the DELETE answers in time")
        .expect("read the DELETE's answer");
    let answer = String::from_utf8_lossy(&answer);
    let body = &answer[answer.find('{').expect("a JSON body")..=answer.rfind('}').unwrap()];
    let deleted: Value = serde_json::from_str(body).expect("the DELETE answers JSON");
    let summary = deleted["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("gRPC → inventory") && summary.contains("stock db down"),
        "the summary does not name the failed call:\n{answer}"
    );

    // In the log, the call comes before the teardown.
    let jsonl = deleted["log_file"].as_str().expect("a log file");
    let logged: Vec<Event> = std::fs::read_to_string(jsonl)
        .expect("read the JSONL log")
        .lines()
        .skip(1)
        .map(|line| serde_json::from_str(line).expect("a logged event"))
        .collect();
    let position = |wanted: &dyn Fn(&Event) -> bool| logged.iter().position(wanted);
    let call = position(&|e| e.grpc_call.as_ref().is_some_and(|c| c.method == "Unary"));
    let destroying = position(&|e| e.event_type == EventType::EnvironmentDestroying);
    assert!(
        call.is_some() && call < destroying,
        "the call ({call:?}) is not logged before environment.destroying ({destroying:?}):\n{}",
        support::describe(&logged)
    );

    let explain = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["explain", &id])
        .env("RIG_DIR", rigd.rig_dir())
        .output()
        .expect("run rig explain");
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.status.success(), "{text}");
    let report: Value = serde_json::from_str(&text).expect("rig explain prints JSON");
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e["target"] == "inventory" && e["grpc_message"] == "stock db down"),
        "{text}"
    );
}
