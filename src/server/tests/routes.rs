//! Status codes and bodies of every route, error paths first.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};

use super::{post_json, request, Harness};
use crate::spec::{decode_environment, validate_environment};

const PATIENCE: Duration = Duration::from_secs(30);

/// A valid spec whose single service runs in-process until stopped.
fn idle_spec(name: &str) -> Value {
    json!({"name": name, "services": {"w": {"type": "custom"}}})
}

#[tokio::test]
async fn health_is_ok_json() {
    let h = Harness::new();
    let reply = h.call(request(Method::GET, "/health")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "api": rig_types::API_VERSION})
    );
    // GET routes answer HEAD too.
    assert_eq!(
        h.call(request(Method::HEAD, "/health")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_decode_error() {
    let h = Harness::new();
    let reply = h.call(post_json("/environments", "{\"name\": ")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error().starts_with("decode: "), "{}", reply.error());
}

#[tokio::test]
async fn duplicate_service_key_is_a_400_decode_error() {
    let h = Harness::new();
    let body = r#"{"name":"d","services":{"api":{"type":"custom"},"api":{"type":"custom"}}}"#;
    let reply = h.call(post_json("/environments", body)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let error = reply.error();
    assert!(error.starts_with("decode: "), "{error}");
    assert!(
        error.contains(r#"duplicate services key: "api""#),
        "{error}"
    );
}

#[tokio::test]
async fn validation_errors_are_a_422_listing_every_error() {
    let h = Harness::new();
    // No name, an unknown type, an egress to a missing service, a bad ttl.
    let spec = r#"{"ttl":"soon","services":{
        "a":{"type":"nope"},
        "b":{"type":"custom","egresses":{"x":{"service":"missing"}}}
    }}"#;
    let mut expected_env = decode_environment(spec.as_bytes()).unwrap();
    let expected = validate_environment(&mut expected_env);
    assert!(
        expected.len() >= 3,
        "the spec should break several rules: {expected:?}"
    );

    let reply = h.call(post_json("/environments", spec)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = reply.json();
    assert_eq!(body["error"], "spec validation failed");
    assert_eq!(body["validation_errors"], json!(expected));
    assert_eq!(h.state.environment_count(), 0);
}

/// Fields the spec does not have are ignored, as upstream ignores them, and named in the 201
/// so a client can tell its user; a spec without any has no `warnings`.
#[tokio::test]
async fn unknown_fields_are_created_with_warnings() {
    let h = Harness::new();
    let mut spec = idle_spec("typo");
    spec["observ"] = json!(false);
    spec["services"]["w"]["confg"] = json!({});
    let reply = h.call(post_json("/environments", &spec.to_string())).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(
        reply.json()["warnings"],
        json!([
            "unknown field observ is ignored: is it misspelt?",
            "unknown field services.w.confg is ignored: is it misspelt?"
        ])
    );
    let clean = h
        .call(post_json("/environments", &idle_spec("clean").to_string()))
        .await;
    assert_eq!(clean.status, StatusCode::CREATED);
    assert!(clean.json().get("warnings").is_none(), "{}", clean.text());
}

#[tokio::test]
async fn a_spec_this_rigd_cannot_run_is_a_422_not_a_500() {
    let h = Harness::new();
    for (spec, error) in [
        (
            json!({"name": "s", "services": {"a": {"type": "script"}}}),
            "service \"a\": unknown service type: \"script\"",
        ),
        (
            json!({"name": "c", "services": {"a": {"type": "cargo"}}}),
            "service \"a\": cargo config needs",
        ),
    ] {
        let reply = h.call(post_json("/environments", &spec.to_string())).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{spec}");
        let body = reply.json();
        assert_eq!(body["error"], "spec validation failed");
        let errors = body["validation_errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{body}");
        assert!(errors[0].as_str().unwrap().starts_with(error), "{body}");
    }
    assert_eq!(h.state.environment_count(), 0);
}

#[tokio::test]
async fn a_bad_events_query_is_a_json_400() {
    let h = Harness::new();
    let id = h.create(idle_spec("query")).await;
    let uri = format!("/environments/{id}/events?logs=true&logs=false");
    let reply = h.call(request(Method::GET, &uri)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error().starts_with("query: "), "{}", reply.error());
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_that_states_it() {
    let h = Harness::new();
    let huge = format!(
        "{{\"name\": \"{}\"}}",
        "x".repeat(crate::server::MAX_BODY_BYTES)
    );
    let reply = h.call(post_json("/environments", &huge)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reply.error(),
        "read body: the body is over the 32 MiB rigd accepts"
    );
}

#[tokio::test]
async fn every_id_route_is_404_for_an_unknown_id() {
    let h = Harness::new();
    let cases = [
        request(Method::GET, "/environments/nope"),
        request(Method::DELETE, "/environments/nope"),
        request(Method::GET, "/environments/nope/events"),
        post_json("/environments/nope/events", r#"{"type":"test.note"}"#),
        request(Method::GET, "/environments/nope/log"),
        request(Method::POST, "/environments/nope/keepalive"),
        request(Method::POST, "/environments/nope/sync"),
    ];
    for req in cases {
        let label = format!("{} {}", req.method(), req.uri());
        let reply = h.call(req).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{label}");
        assert_eq!(
            reply.json(),
            json!({"error": "environment not found"}),
            "{label}"
        );
    }
}

#[tokio::test]
async fn wrong_method_is_405_and_unknown_path_is_404() {
    let h = Harness::new();
    for (method, uri, allowed) in [
        (Method::PUT, "/environments", "POST"),
        (Method::POST, "/health", "GET"),
        (Method::PATCH, "/environments/x", "DELETE"),
        (Method::GET, "/environments/x/keepalive", "POST"),
    ] {
        let reply = h.call(request(method.clone(), uri)).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        let allow = reply.headers[header::ALLOW].to_str().unwrap().to_string();
        assert!(allow.contains(allowed), "Allow: {allow} for {method} {uri}");
        assert!(reply.error().contains("not allowed"));
    }
    for uri in ["/nope", "/environments/x/y/z", "/environments/"] {
        let reply = h.call(request(Method::GET, uri)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(reply.error().starts_with("not found"), "{uri}");
    }
}

#[tokio::test]
async fn list_is_empty_array_then_sorted_summaries() {
    let h = Harness::new();
    let reply = h.call(request(Method::GET, "/environments")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "[]\n");

    let b = h.create(idle_spec("bravo")).await;
    let mut with_ttl = idle_spec("alpha");
    with_ttl["ttl"] = json!("1h");
    let a = h.create(with_ttl).await;

    let list = h.call(request(Method::GET, "/environments")).await.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], a.as_str());
    assert_eq!(list[0]["name"], "alpha");
    assert_eq!(list[0]["ttl"], "1h");
    let remaining = list[0]["remaining_ttl"].as_str().unwrap();
    assert!(
        remaining == "1h0m0s" || remaining == "59m59s",
        "{remaining}"
    );
    assert_eq!(list[0]["services"], json!(["w"]), "~test is hidden");
    assert_eq!(list[1]["id"], b.as_str());
    assert!(list[1].get("ttl").is_none(), "default TTL has no ttl field");
    let remaining = list[1]["remaining_ttl"].as_str().unwrap();
    assert!(remaining == "10m0s" || remaining == "9m59s", "{remaining}");

    for id in [a, b] {
        let reply = h
            .call(request(Method::DELETE, &format!("/environments/{id}")))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(
        h.call(request(Method::GET, "/environments")).await.text(),
        "[]\n"
    );
}

#[tokio::test]
async fn client_event_errors_are_400() {
    let h = Harness::new();
    let id = h.create(idle_spec("events")).await;
    let uri = format!("/environments/{id}/events");

    let reply = h
        .call(post_json(&uri, r#"{"type":"environment.up"}"#))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply
        .error()
        .starts_with("unknown client event type: environment.up (clients may post "));

    let reply = h.call(post_json(&uri, r#"{"service":"w"}"#)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply
        .error()
        .starts_with("unknown client event type:  (the event has no \"type\"; clients may post "));

    let reply = h.call(post_json(&uri, "[]")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.error(),
        "decode body: expected a JSON object like {\"type\": \"test.note\", \"error\": \"...\"}, got an array"
    );

    // A service the environment does not have: refused, and nothing fails.
    for kind in ["service.error", "service.log", "callback.response"] {
        let body = json!({"type": kind, "service": "typo", "error": "crashed"});
        let reply = h.call(post_json(&uri, &body.to_string())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{kind}");
        assert_eq!(
            reply.error(),
            "service \"typo\" is not in environment \"events\" (its services: w)"
        );
    }
    // An event longer than stream readers take is refused, saying what to do.
    let big = json!({"type": "service.log", "service": "w", "log_data": "x".repeat(5 << 20)});
    let reply = h.call(post_json(&uri, &big.to_string())).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply
            .error()
            .starts_with("a client event may be at most 4 MiB of JSON, this one is ")
            && reply
                .error()
                .ends_with(" bytes: send service output in smaller pieces"),
        "{}",
        reply.error()
    );
    let fits = json!({"type": "service.log", "service": "w", "log_data": "x".repeat(1 << 20)});
    let reply = h.call(post_json(&uri, &fits.to_string())).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    // A service error that names no service would fail the whole environment.
    let body = json!({"type": "service.error", "error": "crashed"});
    let reply = h.call(post_json(&uri, &body.to_string())).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.error(),
        "service.error needs \"service\": the service that failed (its services: w)"
    );
    let reply = h
        .call(request(Method::GET, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "still there");

    for bad in [
        "not json",
        r#"{"type": 7}"#,
        r#"{"type":"callback.response","data":[1]}"#,
    ] {
        let reply = h.call(post_json(&uri, bad)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            reply.error().starts_with("decode body: "),
            "{}",
            reply.error()
        );
    }

    let reply = h
        .call(request(Method::DELETE, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn client_events_are_recorded_and_service_log_is_not_streamed() {
    let h = Harness::new();
    let id = h.create(idle_spec("notes")).await;
    let mut sse = h.events(&id, None).await;
    sse.until("environment.up", PATIENCE).await;
    let uri = format!("/environments/{id}/events");

    for body in [
        json!({"type": "service.log", "service": "w", "log_data": "hello"}),
        json!({"type": "callback.response", "service": "w", "request_id": "r9", "data": {"ok": true}}),
        json!({"type": "test.note", "error": "x_test.go:7: boom"}),
    ] {
        let reply = h.call(post_json(&uri, &body.to_string())).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{body}");
        assert!(reply.body.is_empty());
    }

    // SSE shows the callback response and the note, not the log line.
    let frames = sse.until("test.note", PATIENCE).await;
    let types: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(types, ["callback.response", "test.note"]);
    assert_eq!(
        frames[0].data["result"],
        json!({"request_id": "r9", "data": {"ok": true}})
    );
    assert_eq!(frames[0].data["environment"], "notes");
    assert!(frames[1].data.get("service").is_none());

    // `?logs=true` streams the log line too.
    let mut with_logs = h
        .events_at(&format!("/environments/{id}/events?logs=true"), None)
        .await;
    let frames = with_logs.until("test.note", PATIENCE).await;
    let line = frames
        .iter()
        .find(|f| f.event == "service.log")
        .expect("log streamed");
    assert_eq!(
        line.data["log"],
        json!({"stream": "stdout", "data": "hello"})
    );

    // The log has everything, in order, with the log line stamped with the environment.
    let log = h
        .call(request(Method::GET, &format!("/environments/{id}/log")))
        .await;
    assert_eq!(log.status, StatusCode::OK);
    let log = log.json();
    let log = log.as_array().unwrap();
    let line = log
        .iter()
        .find(|e| e["type"] == "service.log")
        .expect("service.log in /log");
    assert_eq!(line["log"], json!({"stream": "stdout", "data": "hello"}));
    assert_eq!(line["environment"], "notes");
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq order: {seqs:?}");

    let reply = h
        .call(request(Method::DELETE, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn service_error_fails_the_environment() {
    let h = Harness::new();
    let id = h.create(idle_spec("crash")).await;
    let mut sse = h.events(&id, None).await;
    sse.until("environment.up", PATIENCE).await;

    let body = json!({"type": "service.error", "service": "w", "error": "func returned: boom"});
    let reply = h
        .call(post_json(
            &format!("/environments/{id}/events"),
            &body.to_string(),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);

    let frames = sse.until("environment.down", PATIENCE).await;
    let failed = frames
        .iter()
        .find(|f| f.event == "service.failed")
        .expect("service.failed");
    assert_eq!(failed.data["service"], "w");
    assert_eq!(failed.data["error"], "func returned: boom");
    assert!(frames.iter().any(|f| f.event == "environment.failing"));

    let view = h
        .call(request(Method::GET, &format!("/environments/{id}")))
        .await
        .json();
    // It stays failed while rigd stops it, and the environment says why it failed.
    assert_eq!(view["services"]["w"]["status"], "failed");
    assert_eq!(view["failed"], "service \"w\": func returned: boom");

    // Still registered until deleted.
    let reply = h
        .call(request(Method::DELETE, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn get_environment_shows_status_and_hides_injected_services() {
    let h = Harness::new();
    let id = h.create(idle_spec("view")).await;
    h.events(&id, None)
        .await
        .until("environment.up", PATIENCE)
        .await;
    let reply = h
        .call(request(Method::GET, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"id": id, "name": "view", "services": {
            "w": {"ingresses": null, "egresses": null, "status": "ready"}
        }, "test_ingresses": {"w": {}}})
    );
    let reply = h
        .call(request(Method::DELETE, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn last_event_id_resumes_after_the_given_seq() {
    let h = Harness::new();
    let id = h.create(idle_spec("resume")).await;
    let first = h
        .events(&id, None)
        .await
        .until("environment.up", PATIENCE)
        .await;
    assert!(first.len() >= 3, "{first:?}");
    let ids: Vec<u64> = first.iter().map(|f| f.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let from = first[1].id;
    let mut resumed = h.events(&id, Some(&from.to_string())).await;
    let again = resumed.until("environment.up", PATIENCE).await;
    assert_eq!(
        again.iter().map(|f| f.id).collect::<Vec<_>>(),
        ids[2..].to_vec(),
        "replay starts after Last-Event-ID"
    );
    // A value that is not a number replays from the start.
    let mut all = h.events(&id, Some("garbage")).await;
    assert_eq!(all.next().await.unwrap().id, ids[0]);
    // A number no event has yet is from another stream: following from it would skip events.
    let mut past = request(Method::GET, &format!("/environments/{id}/events"));
    past.headers_mut()
        .insert("last-event-id", "1000000".parse().unwrap());
    let reply = h.call(past).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with(&format!(
            "Last-Event-ID 1000000 is past the end of environment {id}'s events (the last is "
        )),
        "{error}"
    );

    let reply = h
        .call(request(Method::DELETE, &format!("/environments/{id}")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// `sync` answers with the last event a stream without `service.log` delivers: a client that
/// has read up to it has everything.
#[tokio::test]
async fn sync_names_the_last_event_a_stream_delivers() {
    let h = Harness::new();
    let id = h.create(idle_spec("sync")).await;
    let events = h
        .events(&id, None)
        .await
        .until("environment.up", PATIENCE)
        .await;
    let reply = h
        .call(request(Method::POST, &format!("/environments/{id}/sync")))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seq = reply.json()["seq"].as_u64().expect("a seq");
    assert!(seq >= events.last().unwrap().id, "{seq} {events:?}");
    let log = h
        .call(request(Method::GET, &format!("/environments/{id}/log")))
        .await
        .json();
    let last_streamed = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] != "service.log")
        .map(|e| e["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(seq, last_streamed);
}

#[tokio::test]
async fn concurrent_deletes_give_one_200_and_one_404() {
    let h = Harness::new();
    let id = h.create(idle_spec("race")).await;
    let uri = format!("/environments/{id}");
    let (a, b) = tokio::join!(
        h.call(request(Method::DELETE, &uri)),
        h.call(request(Method::DELETE, &uri))
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::NOT_FOUND]);
    assert_eq!(h.state.environment_count(), 0);
}

#[tokio::test]
async fn delete_reports_the_env_dir_and_removes_it() {
    let h = Harness::new();
    let id = h.create(idle_spec("dir")).await;
    let reply = h
        .call(request(
            Method::DELETE,
            &format!("/environments/{id}?reason=test_failed"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "destroyed");
    let env_dir = std::path::PathBuf::from(body["env_dir"].as_str().unwrap());
    assert!(env_dir.starts_with(h.dir.join("tmp")), "{env_dir:?}");
    assert!(!env_dir.exists(), "env dir removed without preserve");

    let id = h.create(idle_spec("kept")).await;
    let reply = h
        .call(request(
            Method::DELETE,
            &format!("/environments/{id}?preserve=true&log=true"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let env_dir = std::path::PathBuf::from(reply.json()["env_dir"].as_str().unwrap());
    assert!(env_dir.exists(), "env dir kept with preserve=true");
}

#[tokio::test]
async fn security_checks_reject_browsers_and_rebinding() {
    let h = Harness::new();
    let reply = h
        .call(
            Request::get("/health")
                .header(header::ORIGIN, "http://evil.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = h
        .call(
            Request::get("/environments")
                .header(header::HOST, "evil.example:4000")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = h
        .call(
            Request::get("/health")
                .header(header::HOST, "127.0.0.1:4000")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = idle_spec("form").to_string();
    let reply = h
        .call(
            Request::post("/environments")
                .header(header::CONTENT_TYPE, "text/plain")
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(h.state.environment_count(), 0);
}

#[tokio::test]
async fn creation_after_shutdown_is_refused() {
    let h = Harness::new();
    let report = h.state.shutdown(Duration::from_secs(5)).await;
    assert!(report.torn_down.is_empty() && report.timed_out.is_empty());
    let reply = h
        .call(post_json("/environments", &idle_spec("late").to_string()))
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.state.environment_count(), 0);
}
