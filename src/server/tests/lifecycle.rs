//! Whole environment lifecycles through the API: a real process, TTL expiry, keepalive,
//! shutdown, and the idle timer seen through requests.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{request, Harness};
use crate::server::{
    ServerOptions, DEFAULT_ORPHAN_GRACE, REASON_ORPHANED, REASON_RIGD_SHUTDOWN, REASON_TTL_EXPIRED,
};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn process_environment_comes_up_and_is_deleted() {
    let h = Harness::new();
    let spec = json!({"name": "sleepy", "services": {
        "sleeper": {"type": "process", "config": {"command": "sleep"}, "args": ["3600"]}
    }});
    let id = h.create(spec).await;
    let mut sse = h.events(&id, None).await;
    let up = sse.until("environment.up", PATIENCE).await;
    assert!(
        up.iter()
            .any(|f| f.event == "service.ready" && f.data["service"] == "sleeper"),
        "{up:#?}"
    );
    assert_eq!(up.last().unwrap().data["environment"], "sleepy");

    let reply = h
        .call(request(Method::DELETE, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "destroyed");
    let env_dir = body["env_dir"].as_str().unwrap();
    assert!(env_dir.ends_with(&id), "{env_dir}");

    let rest = sse.until("environment.down", PATIENCE).await;
    let types: Vec<&str> = rest.iter().map(|f| f.event.as_str()).collect();
    let destroying = types
        .iter()
        .position(|t| *t == "environment.destroying")
        .unwrap_or_else(|| panic!("no environment.destroying: {types:?}"));
    assert!(
        rest[destroying..]
            .iter()
            .any(|f| f.event == "service.stopped" && f.data["service"] == "sleeper"),
        "{types:?}"
    );
    // The log is closed after teardown: the stream ends after environment.down.
    assert!(tokio::time::timeout(PATIENCE, sse.next())
        .await
        .unwrap()
        .is_none());
    let reply = h
        .call(request(Method::GET, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn ttl_expiry_tears_the_environment_down() {
    let h = Harness::new();
    let id = h
        .create(json!({"name": "short", "ttl": "1m", "services": {"w": {"type": "custom"}}}))
        .await;
    let instance = h.state.get(&id).unwrap().instance().clone();
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(
        h.call(request(Method::GET, &format!("/environments/{id}")))
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.call(request(Method::GET, &format!("/environments/{id}")))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    instance.wait_down().await;
    assert_eq!(instance.reason(), REASON_TTL_EXPIRED);
    let destroying = instance
        .log()
        .lifecycle_events()
        .into_iter()
        .find(|e| e.event_type == rig_types::EventType::EnvironmentDestroying)
        .expect("environment.destroying");
    assert_eq!(
        destroying.message,
        "its TTL (1m0s) passed without word from a client"
    );
}

#[tokio::test(start_paused = true)]
async fn an_environment_ends_a_grace_period_after_its_owner_disconnects() {
    let h = Harness::new();
    let id = h
        .create(json!({"name": "owned", "services": {"w": {"type": "custom"}}}))
        .await;
    let instance = h.state.get(&id).unwrap().instance().clone();
    let get = format!("/environments/{id}");
    let owner = h
        .events_at(&format!("/environments/{id}/events?owner=true"), None)
        .await;
    let mut watcher = h.events(&id, None).await;
    // Owned and connected: the environment lives as long as its TTL allows.
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    assert_eq!(
        h.call(request(Method::GET, &get)).await.status,
        StatusCode::OK
    );
    let listed = h.call(request(Method::GET, "/environments")).await.json();
    assert_eq!(listed[0].get("status"), None, "{listed}");

    drop(owner);
    tokio::time::sleep(DEFAULT_ORPHAN_GRACE - Duration::from_secs(1)).await;
    assert_eq!(
        h.call(request(Method::GET, &get)).await.status,
        StatusCode::OK
    );
    // Listed as abandoned until rigd ends it.
    let listed = h.call(request(Method::GET, "/environments")).await.json();
    assert_eq!(listed[0]["status"], "abandoned", "{listed}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.call(request(Method::GET, &get)).await.status,
        StatusCode::NOT_FOUND
    );
    instance.wait_down().await;
    assert_eq!(instance.reason(), REASON_ORPHANED);
    let frames = watcher.until("environment.down", PATIENCE).await;
    let destroying = frames
        .iter()
        .find(|f| f.event == "environment.destroying")
        .expect("environment.destroying");
    let message = destroying.data["message"].as_str().unwrap();
    assert!(
        message.contains("disconnected 30s ago without ending it"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_owner_that_reconnects_in_time_keeps_its_environment() {
    let h = Harness::new();
    let id = h
        .create(json!({"name": "owned", "services": {"w": {"type": "custom"}}}))
        .await;
    let get = format!("/environments/{id}");
    let owned = format!("/environments/{id}/events?owner=true");
    drop(h.events_at(&owned, None).await);
    tokio::time::sleep(DEFAULT_ORPHAN_GRACE / 2).await;
    let _back = h.events_at(&owned, None).await;
    tokio::time::sleep(DEFAULT_ORPHAN_GRACE * 4).await;
    assert_eq!(
        h.call(request(Method::GET, &get)).await.status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn streams_without_owner_and_a_zero_grace_never_orphan() {
    for (options, uri) in [
        (ServerOptions::default(), "events"),
        (ServerOptions::default(), "events?owner=false"),
        (
            ServerOptions {
                orphan_grace: Duration::ZERO,
                ..ServerOptions::default()
            },
            "events?owner=true",
        ),
    ] {
        let h = Harness::with_options(ServerOptions {
            idle_timeout: Duration::ZERO,
            ..options
        });
        let id = h
            .create(json!({"name": "free", "services": {"w": {"type": "custom"}}}))
            .await;
        drop(
            h.events_at(&format!("/environments/{id}/{uri}"), None)
                .await,
        );
        tokio::time::sleep(DEFAULT_ORPHAN_GRACE * 4).await;
        let get = format!("/environments/{id}");
        assert_eq!(
            h.call(request(Method::GET, &get)).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn owner_takes_true_or_false() {
    let h = Harness::new();
    let id = h
        .create(json!({"name": "owned", "services": {"w": {"type": "custom"}}}))
        .await;
    let reply = h
        .call(request(
            Method::GET,
            &format!("/environments/{id}/events?owner=yes"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.error(),
        r#"query: owner must be true or false, not "yes""#
    );
}

#[tokio::test(start_paused = true)]
async fn default_ttl_applies_when_the_spec_has_none() {
    let h = Harness::with_options(ServerOptions {
        idle_timeout: Duration::ZERO,
        default_ttl: Duration::from_secs(30),
        ..ServerOptions::default()
    });
    let id = h
        .create(json!({"name": "dflt", "services": {"w": {"type": "custom"}}}))
        .await;
    let list = h.call(request(Method::GET, "/environments")).await.json();
    assert_eq!(list[0]["remaining_ttl"], "30s");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        h.call(request(Method::GET, &format!("/environments/{id}")))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(start_paused = true)]
async fn keepalive_extends_the_deadline_by_one_ttl() {
    let h = Harness::new();
    let id = h
        .create(json!({"name": "kept", "ttl": "1m", "services": {"w": {"type": "custom"}}}))
        .await;
    let get = format!("/environments/{id}");
    tokio::time::sleep(Duration::from_secs(50)).await;
    let reply = h
        .call(request(
            Method::POST,
            &format!("/environments/{id}/keepalive"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let list = h.call(request(Method::GET, "/environments")).await.json();
    assert_eq!(list[0]["remaining_ttl"], "1m0s");
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(
        h.call(request(Method::GET, &get)).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        h.call(request(Method::GET, &get)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn shutdown_tears_down_every_environment_and_ends_streams() {
    let h = Harness::new();
    let spec = |name: &str| json!({"name": name, "services": {"w": {"type": "custom"}}});
    let a = h.create(spec("a")).await;
    let b = h.create(spec("b")).await;
    let mut sse = h.events(&a, None).await;
    sse.until("environment.up", PATIENCE).await;
    let instances = [
        h.state.get(&a).unwrap().instance().clone(),
        h.state.get(&b).unwrap().instance().clone(),
    ];

    let mut report = h.state.shutdown(PATIENCE).await;
    report.torn_down.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(report.torn_down, expected);
    assert!(report.timed_out.is_empty());
    for instance in &instances {
        assert!(instance.is_down());
        assert_eq!(instance.reason(), REASON_RIGD_SHUTDOWN);
    }
    assert_eq!(h.state.environment_count(), 0);
    sse.until("environment.down", PATIENCE).await;
    assert!(tokio::time::timeout(PATIENCE, sse.next())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(start_paused = true)]
async fn requests_restart_the_idle_countdown() {
    let h = Harness::with_options(ServerOptions {
        idle_timeout: Duration::from_secs(10),
        ..ServerOptions::default()
    });
    let start = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        h.call(request(Method::GET, "/health")).await.status,
        StatusCode::OK
    );
    h.state.idle().expired().await;
    assert_eq!(start.elapsed(), Duration::from_secs(18));
}

#[tokio::test(start_paused = true)]
async fn idle_timer_waits_for_environments_to_be_deleted() {
    let h = Harness::with_options(ServerOptions {
        idle_timeout: Duration::from_secs(10),
        ..ServerOptions::default()
    });
    let id = h
        .create(json!({"name": "busy", "ttl": "1h", "services": {"w": {"type": "custom"}}}))
        .await;
    assert!(
        tokio::time::timeout(Duration::from_secs(1800), h.state.idle().expired())
            .await
            .is_err(),
        "idle fired while an environment existed"
    );
    let reply = h
        .call(request(Method::DELETE, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let deleted = tokio::time::Instant::now();
    h.state.idle().expired().await;
    assert_eq!(deleted.elapsed(), Duration::from_secs(10));
}
