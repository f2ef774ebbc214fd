//! gRPC traffic assertions over real calls: a tonic echo server with server reflection runs
//! as an in-test service on a `grpc` ingress; the test calls it with a tonic client through
//! rigd's proxy and asserts on the decoded calls.

mod support;

use std::time::Duration;

use rig::{GrpcFilter, Protocol};
use rig_grpc_echo::pb::EchoRequest;
use rig_grpc_echo::{EchoClient, Options, Reflection};
use support::builder;

#[tokio::test]
async fn grpc_calls_are_asserted_with_their_decoded_messages() -> Result<(), rig::BoxError> {
    let echo = rig::func(|wiring| async move {
        let listener = tokio::net::TcpListener::bind(&wiring.ingress()?.host_port).await?;
        let options = Options {
            reflection: Reflection::V1,
            gzip: false,
        };
        rig_grpc_echo::serve(listener, options).await?;
        Ok(())
    })
    .no_ingress()
    .ingress("default", Protocol::Grpc);
    let env = builder("sdk-grpc").service("echo", echo).up().await?;

    let mut client =
        EchoClient::connect(format!("http://{}", env.endpoint("echo")?.host_port)).await?;
    let reply = client
        .unary(EchoRequest {
            text: "hello".into(),
            ..EchoRequest::default()
        })
        .await?
        .into_inner();
    assert_eq!(reply.text, "hello");
    let failed = client
        .unary(EchoRequest {
            text: "boom".into(),
            fail_code: 5,
            fail_message: "no such sku".into(),
            ..EchoRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);

    let unary = GrpcFilter::new()
        .edge("~test", "echo")
        .method("rig.test.echo.v1.Echo/Unary");
    let ok = env.expect(&unary.clone().status("OK"), 1).await?;
    assert_eq!(
        ok[0].request_body_decoded,
        Some(serde_json::json!({"text": "hello"}))
    );
    let not_found = env
        .wait_for(&unary.clone().status("NOT_FOUND"), Duration::from_secs(10))
        .await?;
    assert_eq!(not_found.grpc_message, "no such sku");
    assert!(!not_found.is_ok());
    // rigd's health-check probe is not application traffic.
    assert!(env
        .grpc_calls(&GrpcFilter::new())?
        .iter()
        .all(|c| c.service != "grpc.health.v1.Health"));
    assert!(!env
        .grpc_calls(
            &GrpcFilter::new()
                .service("grpc.health.v1.Health")
                .include_probes()
        )?
        .is_empty());

    let err = env
        .expect_within(&unary, 3, Duration::from_millis(200))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "expected exactly 3 rig.test.echo.v1.Echo/Unary gRPC calls from ~test to echo, saw 2:"
        ),
        "{err}"
    );
    assert!(err.contains("NotFound \"no such sku\""), "{err}");
    env.down().await?;
    Ok(())
}
