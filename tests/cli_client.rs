//! The CLI's rigd client against the real rigd: every call of `RigdClient`, and the event
//! stream from `POST` to `environment.down`.

mod cli_support;

use std::time::Duration;

use cli_support::RigDir;
use rig_types::EventType;
use rigd::cli::client::{ClientError, DeleteOptions, RigdClient};
use serde_json::json;

/// A spec whose one service runs until stopped.
fn sleeper_spec(dir: &std::path::Path) -> serde_json::Value {
    json!({
        "name": "client-it",
        "dir": dir,
        "host_env": {"PATH": std::env::var("PATH").unwrap_or_default()},
        "services": {"sleeper": {
            "type": "process",
            "config": {"command": "sh"},
            "args": ["-c", "exec sleep 600"]
        }}
    })
}

#[tokio::test]
async fn create_follow_keepalive_note_and_delete() {
    let mut dir = RigDir::new("client");
    let server = dir.ensure().await;
    let client = RigdClient::new(&format!("http://{}/", server.addr)).expect("address");
    client.health().await.expect("health");

    let id = client
        .create_environment(&sleeper_spec(&dir.path))
        .await
        .expect("create")
        .id;
    assert!(!id.is_empty());

    let mut events = client.events(&id, None);
    let up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let event = events.next().await.expect("stream open").expect("event");
            if event.event_type == EventType::EnvironmentUp {
                return event;
            }
        }
    })
    .await
    .expect("environment.up within 30s");
    assert!(up.ingresses.contains_key("sleeper"), "{up:?}");
    let resume_from = events.last_event_id().expect("ids are tracked");
    assert!(resume_from >= up.seq);

    let env = client.get_environment(&id).await.expect("get");
    assert_eq!(env.id, id);
    assert_eq!(env.name, "client-it");
    assert_eq!(env.services["sleeper"].status.as_str(), "ready");

    client.keepalive(&id).await.expect("keepalive");
    client
        .post_event(
            &id,
            &json!({"type": "test.note", "error": "a note from the client"}),
        )
        .await
        .expect("post test.note");
    let note = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the note arrives")
        .expect("stream open")
        .expect("event");
    assert_eq!(note.event_type, EventType::TestNote);
    assert_eq!(note.error, "a note from the client");

    // A second stream resuming from `up` (Last-Event-ID) starts with exactly the note.
    let mut resumed = client.events(&id, Some(resume_from));
    let first = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .expect("the resumed stream answers")
        .expect("stream open")
        .expect("event");
    assert_eq!(
        (first.seq, first.event_type),
        (note.seq, EventType::TestNote)
    );
    drop(resumed);

    let rejected = client
        .post_event(&id, &json!({"type": "no.such.type"}))
        .await
        .expect_err("unknown client event types are rejected");
    assert!(
        matches!(rejected, ClientError::Api { status: 400, .. }),
        "{rejected}"
    );

    let deleted = client
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(deleted.id, id);
    assert_eq!(deleted.status, "destroyed");

    // The stream carries the teardown through to environment.down, then ends.
    let mut types = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the stream ends after environment.down")
    {
        types.push(item.expect("event").event_type);
    }
    assert_eq!(
        types.first(),
        Some(&EventType::EnvironmentDestroying),
        "{types:?}"
    );
    assert_eq!(types.last(), Some(&EventType::EnvironmentDown), "{types:?}");

    // After the delete the environment is gone: a new stream is a 404.
    let gone = client
        .events(&id, None)
        .next()
        .await
        .expect("an answer")
        .expect_err("deleted");
    assert!(gone.is_not_found(), "{gone}");

    for err in [
        client
            .get_environment(&id)
            .await
            .map(|_| ())
            .expect_err("get after delete"),
        client
            .keepalive(&id)
            .await
            .expect_err("keepalive after delete"),
        client
            .delete_environment(&id, &DeleteOptions::default())
            .await
            .map(|_| ())
            .expect_err("second delete"),
    ] {
        assert!(err.is_not_found(), "{err}");
        assert_eq!(
            err.to_string(),
            "rigd returned HTTP 404: environment not found"
        );
    }
}

#[tokio::test]
async fn validation_errors_come_back_one_per_line() {
    let mut dir = RigDir::new("client-invalid");
    let server = dir.ensure().await;
    let client = RigdClient::new(&server.addr).expect("address");
    let err = client
        .create_environment(&json!({"name": "", "services": {}}))
        .await
        .expect_err("invalid spec");
    match &err {
        ClientError::Api {
            status,
            message,
            validation_errors,
        } => {
            assert_eq!(*status, 422);
            assert_eq!(message, "spec validation failed");
            assert!(!validation_errors.is_empty());
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("rigd returned HTTP 422: spec validation failed:\n  - "),
        "{text}"
    );

    let err = client
        .create_environment(&json!({"name": "x", "services": {"a": {"type": "process", "hooks": null, "ingresses": 7}}}))
        .await
        .expect_err("undecodable spec");
    assert!(matches!(err, ClientError::Api { status: 400, .. }), "{err}");
}

/// rigd's warnings about a spec it accepts (a config key it ignores) come back with the id.
#[tokio::test]
async fn spec_warnings_come_back_with_the_id() {
    let mut dir = RigDir::new("client-warnings");
    let server = dir.ensure().await;
    let client = RigdClient::new(&server.addr).expect("address");
    let created = client
        .create_environment(&json!({"name": "warned", "services": {"db": {
            "type": "postgres", "config": {"imgae": "postgres:16"}
        }}}))
        .await
        .expect("created despite the typo");
    assert!(!created.id.is_empty());
    assert_eq!(created.warnings.len(), 1, "{:?}", created.warnings);
    assert!(
        created.warnings[0].contains("services.db.config.imgae"),
        "{:?}",
        created.warnings
    );
    client
        .delete_environment(&created.id, &Default::default())
        .await
        .expect("DELETE");
}
