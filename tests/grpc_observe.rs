//! gRPC observation through the real `rigd` binary: a `grpc` ingress service (a tonic echo
//! server with server reflection, run by the test as a `client` service) behind observe mode,
//! called by the test through its proxy; the `grpc.call.completed` events land in the
//! environment's event log, decoded with the server's descriptors.

mod support;

use rig_grpc_echo::pb::EchoRequest;
use rig_grpc_echo::EchoClient;
use rig_types::CallbackKind;
use rig_types::EventType::{self, *};
use serde_json::json;
use support::Rigd;

#[tokio::test]
async fn grpc_calls_through_the_test_proxy_are_recorded_and_decoded() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "grpc-observe", "services": {
            "echo": {
                "type": "client",
                "config": {"start_handler": "run_echo"},
                "ingresses": {"default": {"protocol": "grpc"}}
            }
        }}))
        .await;

    let mut events = rigd.events(&id);
    let mut server = None;
    let up = loop {
        let event = events.next().await;
        match event.event_type {
            EventType::CallbackRequest => {
                let callback = event.callback.as_ref().expect("a callback request");
                assert_eq!(callback.kind, CallbackKind::Start);
                server = Some(support::serve_grpc_echo_for(&event).await);
                rigd.answer(&id, &event, None).await;
            }
            EnvironmentUp => break event,
            EnvironmentDown => panic!(
                "the environment failed:\n{}",
                support::describe(events.seen())
            ),
            _ => {}
        }
    };
    assert!(server.is_some());

    // The test's endpoint is its proxy in front of echo.
    let endpoint = &up.ingresses["echo"]["default"];
    assert_eq!(endpoint.protocol.as_str(), "grpc");
    let mut client = EchoClient::connect(format!("http://{}", endpoint.hostport))
        .await
        .expect("connect through the proxy");
    let reply = client
        .unary(EchoRequest {
            text: "hello rigd".into(),
            ..EchoRequest::default()
        })
        .await
        .expect("the call succeeds through the proxy")
        .into_inner();
    assert_eq!(reply.text, "hello rigd");

    let event = events
        .until_matching("the Unary call", |e| {
            e.grpc_call.as_ref().is_some_and(|c| c.method == "Unary")
        })
        .await;
    assert_eq!(event.event_type, GrpcCallCompleted);
    assert_eq!(event.environment, "grpc-observe");
    let call = event.grpc_call.expect("grpc_call");
    assert_eq!(
        (
            call.source.as_str(),
            call.target.as_str(),
            call.ingress.as_str()
        ),
        ("~test", "echo", "default")
    );
    assert_eq!(call.service, "rig.test.echo.v1.Echo");
    assert_eq!(call.grpc_status, "OK");
    assert!(!call.probe);
    assert_eq!(
        call.request_body_decoded,
        Some(json!({"text": "hello rigd"}))
    );
    assert_eq!(
        call.response_body_decoded,
        Some(json!({"text": "hello rigd"}))
    );
    assert_eq!(call.request_messages[0].decoding, "reflection");

    // The proxy's readiness probe (a health check through it) was recorded as a probe; the
    // echo server has no health service, which counts as ready.
    let probe = events
        .seen()
        .iter()
        .filter_map(|e| e.grpc_call.as_ref())
        .find(|c| c.service == "grpc.health.v1.Health")
        .unwrap_or_else(|| panic!("no health probe:\n{}", support::describe(events.seen())));
    assert!(probe.probe);
    assert_eq!(probe.method, "Check");
    assert_eq!(probe.grpc_status, "Unimplemented");

    // The event is in the environment's log too.
    let log = rigd.log(&id).await;
    assert!(log
        .iter()
        .filter_map(|e| e.grpc_call.as_ref())
        .any(|c| c.method == "Unary" && c.request_body_decoded.is_some()));
}
