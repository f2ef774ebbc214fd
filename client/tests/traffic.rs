//! Traffic assertions in observe mode, over real HTTP calls through rigd's proxies: the
//! test calls a Python gateway, which calls an in-test service.

mod support;

use std::time::Duration;

use rig::{Error, RequestFilter};
use support::{builder, gateway, get, serve};

#[tokio::test]
async fn requests_on_every_edge_are_recorded_and_asserted() -> Result<(), rig::BoxError> {
    let api = rig::func(|wiring| async move {
        serve(&wiring, |_method, path| match path {
            "/price" => (200, "42".into()),
            p if p.starts_with("/missing") => (404, "no such thing".into()),
            _ => (200, "api".into()),
        })
        .await
    });
    let env = builder("sdk-traffic")
        .services([("api", api), ("gateway", gateway())])
        .up()
        .await?;

    // The test's endpoints are the proxies, so these calls are traffic from `~test`.
    let priced = get(&format!("{}/price", env.url("gateway")?)).await?;
    assert_eq!(priced.body, "via gateway: 42");
    let direct = get(&format!("{}/missing?x=1", env.url("api")?)).await?;
    assert_eq!(direct.status, 404);

    // Exactly one call on each hop of the gateway request.
    let hop1 = RequestFilter::new().edge("~test", "gateway").path("/price");
    let hop2 = RequestFilter::new()
        .edge("gateway", "api")
        .method("GET")
        .path("/price");
    let seen = env.expect_requests(&hop1, 1).await?;
    assert_eq!(seen[0].status, 200);
    assert_eq!(seen[0].response_text(), "via gateway: 42");
    let seen = env.expect_requests(&hop2, 1).await?;
    assert_eq!(seen[0].ingress, "default");
    assert_eq!(seen[0].response_text(), "42");
    assert!(hop1 != hop2);

    // Filters by status and by path with its query string.
    let not_found = RequestFilter::new().to("api").status(404);
    let missing = env
        .wait_for_request(&not_found, Duration::from_secs(10))
        .await?;
    assert_eq!(
        (missing.source.as_str(), missing.path.as_str()),
        ("~test", "/missing?x=1")
    );
    assert_eq!(missing.path_only(), "/missing");
    assert_eq!(
        env.requests(&RequestFilter::new().path("/missing?x=1"))
            .len(),
        1
    );

    // Readiness probes are not application traffic.
    assert!(env.requests(&RequestFilter::new()).iter().all(|r| !r.probe));

    // A wrong count fails with a message listing what was seen.
    let err = env
        .expect_requests_within(&hop2, 2, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RequestCount { expected: 2, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "expected exactly 2 GET /price requests from gateway to api, saw 1:\n  gateway → api  GET /price  200"
        ),
        "{text}"
    );
    assert!(text.contains("~test → gateway  GET /price  200"), "{text}");
    assert!(
        text.contains("~test → api  GET /missing?x=1  404"),
        "{text}"
    );

    // Zero is a count too.
    env.expect_requests(&RequestFilter::new().to("api").method("POST"), 0)
        .await?;

    // Waiting for a request that never comes times out, listing what did.
    let err = env
        .wait_for_request(
            &RequestFilter::new().to("gateway").path("/never"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no /never requests to gateway within 0.2s; HTTP requests seen (3):"),
        "{err}"
    );

    // Every traffic event is available raw too.
    assert!(env
        .traffic_events()
        .iter()
        .any(|e| e.event_type == rig::EventType::RequestCompleted));
    env.down().await?;
    Ok(())
}
