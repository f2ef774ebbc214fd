//! The HTTP API of the real `rigd` binary on the wire: SSE framing and `Last-Event-ID`
//! resume, error statuses and bodies, and the request guards.

mod support;

use http_body_util::BodyExt;
use rig_types::Event;
use rig_types::EventType::*;
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::{http_service, sh, Rigd, WAIT};

#[tokio::test]
async fn a_resumed_stream_continues_exactly_where_the_first_one_stopped() {
    let rigd = Rigd::start();
    let mut app = http_service();
    app["egresses"] = json!({"database": {"service": "db"}});
    let id = rigd
        .create(json!({"name": "resume", "services": {"app": app, "db": http_service()}}))
        .await;

    // Read part of the stream, then drop it while the environment is still starting.
    let mut first = rigd.events(&id);
    first.until(ServiceStarting).await;
    let first_part = first.seen().to_vec();
    let resume_from = first.last_id().expect("events were read");
    drop(first);

    let mut second = rigd.events_after(&id, resume_from);
    let up = second.until(EnvironmentUp).await;
    assert!(
        second.seen()[0].seq > resume_from,
        "the resumed stream starts after Last-Event-ID"
    );

    let union: Vec<Event> = first_part.iter().chain(second.seen()).cloned().collect();
    let logged: Vec<Event> = rigd
        .log(&id)
        .await
        .into_iter()
        .filter(|e| e.event_type != ServiceLog && e.seq <= up.seq)
        .collect();
    let seqs = |events: &[Event]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&union), seqs(&logged), "no gap and no duplicate");
    assert_eq!(union, logged, "the streamed events are the logged ones");
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

#[tokio::test]
async fn sse_frames_carry_id_event_and_data_and_honour_last_event_id() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "frames", "services": {"idle": sh("exec sleep 3600")}}))
        .await;
    rigd.events(&id).until(EnvironmentUp).await;

    let path = format!("/environments/{id}/events");
    let response = rigd.send("GET", &path, &[], None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let (id_line, event_line, data) = first_frame(response.into_body()).await;
    assert_eq!(id_line, "1");
    assert_eq!(data["seq"], json!(1));
    assert_eq!(data["type"], json!(event_line));
    assert_eq!(data["environment"], json!("frames"));

    let response = rigd
        .send("GET", &path, &[("last-event-id", "3")], None)
        .await;
    let (id_line, event_line, data) = first_frame(response.into_body()).await;
    let seq: u64 = id_line.parse().expect("a numeric id");
    assert!(seq > 3, "replay starts after Last-Event-ID: {seq}");
    assert_eq!(data["seq"], json!(seq));
    assert_eq!(data["type"], json!(event_line));
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

/// Reads an SSE body up to its first event frame and returns (`id`, `event`, parsed `data`),
/// skipping comment frames.
async fn first_frame(mut body: hyper::body::Incoming) -> (String, String, Value) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let frame = frame.trim_end_matches('\n');
            if frame.starts_with(':') {
                continue; // a heartbeat comment
            }
            let lines: Vec<&str> = frame.lines().collect();
            assert_eq!(
                lines.len(),
                3,
                "a frame is id, event and data lines: {frame:?}"
            );
            let field = |i: usize, name: &str| {
                lines[i]
                    .strip_prefix(&format!("{name}: "))
                    .unwrap_or_else(|| panic!("line {i} of {frame:?} is not {name}"))
                    .to_string()
            };
            let data = serde_json::from_str(&field(2, "data")).expect("data is JSON");
            return (field(0, "id"), field(1, "event"), data);
        }
        let chunk = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("a frame within the deadline")
            .expect("the stream stays open")
            .expect("read the stream");
        if let Ok(data) = chunk.into_data() {
            text.push_str(std::str::from_utf8(&data).expect("UTF-8"));
        }
    }
}

#[tokio::test]
async fn spec_errors_are_400_and_422_with_every_validation_error() {
    let rigd = Rigd::start();
    let response = rigd
        .request(
            "POST",
            "/environments",
            &[],
            Some(br#"{"name": "x", "services": "#),
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.text());
    let error = response.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.starts_with("decode: "), "{error}");

    let response = rigd
        .request(
            "POST",
            "/environments",
            &[],
            Some(br#"{"name": "", "services": {"api": {"type": ""}}}"#),
        )
        .await;
    assert_eq!(response.status, 422, "{}", response.text());
    let body = response.json();
    assert_eq!(body["error"], json!("spec validation failed"));
    let errors: Vec<&str> = body["validation_errors"]
        .as_array()
        .expect("validation_errors is a list")
        .iter()
        .map(|e| e.as_str().expect("each error is a string"))
        .collect();
    assert!(
        errors.contains(&"environment name is required"),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("api") && e.contains("type is required")),
        "{errors:?}"
    );
    assert!(rigd.list().await.is_empty(), "nothing was created");
}

/// A hook its service's type cannot run is refused when the environment is created, naming
/// what the type takes, rather than failing the service after it started.
#[tokio::test]
async fn hooks_a_type_cannot_run_are_422_at_creation() {
    let rigd = Rigd::start();
    for (service, expected) in [
        (
            json!({"type": "process", "config": {"command": "sleep"}, "args": ["100"],
                   "hooks": {"init": [{"type": "exec", "config": {"command": ["true"]}}]}}),
            "service \"app\": init hook type \"exec\" is not supported: process services take \
             only client_func hooks",
        ),
        (
            json!({"type": "postgres",
                   "hooks": {"init": [{"type": "schema", "config": {}}]}}),
            "service \"app\": init hook type \"schema\" is not supported: postgres init hooks \
             are client_func or sql, exec",
        ),
        (
            json!({"type": "process", "config": {"command": "sleep"}, "args": ["100"],
                   "hooks": {"prestart": [{"type": "exec", "config": {"command": ["true"]}}]}}),
            "service \"app\": prestart hook type \"exec\" is not supported: prestart hooks \
             are client_func (server-side hooks run as init hooks)",
        ),
    ] {
        let spec = json!({"name": "hooks", "services": {"app": service}});
        assert_eq!(validation_errors(&rigd, &spec).await, json!([expected]));
    }
    assert!(rigd.list().await.is_empty(), "nothing was created");
}

/// POSTs `spec` and returns the validation errors of the 422 it must get.
async fn validation_errors(rigd: &Rigd, spec: &Value) -> Value {
    let response = rigd
        .request(
            "POST",
            "/environments",
            &[],
            Some(spec.to_string().as_bytes()),
        )
        .await;
    assert_eq!(response.status, 422, "{}", response.text());
    response.json()["validation_errors"].clone()
}

/// A spec that brings its own `~test` node (as rigd generates it, plus an ingress) and calls
/// it is refused: rigd's `~test` depends on every service, so the environment would wait for
/// itself until its ttl.
#[tokio::test]
async fn an_egress_to_the_test_node_is_422() {
    let rigd = Rigd::start();
    let spec = json!({"name": "x", "services": {
        "~test": {"type": "test", "injected": true, "ingresses": {"default": {"protocol": "tcp"}}},
        "a": {"type": "process", "config": {"command": "sleep"}, "args": ["60"],
              "ingresses": {"default": {"protocol": "tcp"}},
              "egresses": {"t": {"service": "~test"}}}
    }});
    assert_eq!(
        validation_errors(&rigd, &spec).await,
        json!([
            "service \"a\", egress \"t\": references \"~test\", which stands for the \
                test itself and serves nothing (it depends on every service); remove the egress"
        ])
    );
    assert!(rigd.list().await.is_empty(), "nothing was created");
}

/// Hooks that name no client function, and client services that name no start handler, are
/// refused when the environment is created, not when they would run.
#[tokio::test]
async fn client_functions_that_name_nothing_are_422_at_creation() {
    let rigd = Rigd::start();
    let sleeper = |hooks: Value| {
        json!({"type": "process", "config": {"command": "sleep"}, "args": ["60"],
               "hooks": hooks})
    };
    for (service, expected) in [
        (
            sleeper(json!({"init": [{"type": "client_func"}]})),
            "service \"app\": hooks.init[0]: a client_func hook needs \"client_func\": \
             {\"name\": \"<the function the SDK registered>\"}",
        ),
        (
            sleeper(json!({"prestart": [{"type": "client_func", "client_func": {"name": ""}}]})),
            "service \"app\": hooks.prestart[0]: client_func.name is empty; name the function \
             the SDK registered",
        ),
        (
            json!({"type": "client", "config": {}}),
            "service \"app\": client service needs config.start_handler: the name of the \
             function the SDK registered",
        ),
    ] {
        let spec = json!({"name": "funcs", "services": {"app": service}});
        assert_eq!(
            validation_errors(&rigd, &spec).await,
            json!([expected]),
            "{spec}"
        );
    }
    assert!(rigd.list().await.is_empty(), "nothing was created");
}

/// Attributes and `config.env` entries become environment variables: a name or value no
/// process can be given is refused, naming the service and the key.
#[tokio::test]
async fn variables_no_process_can_be_given_are_422() {
    let rigd = Rigd::start();
    let spec = json!({"name": "vars", "services": {
        "api": {"type": "process", "config": {"command": "sleep", "env": {"A=B": "x", "": "y"}},
                "args": ["60"],
                "ingresses": {"default": {"protocol": "tcp",
                                          "attributes": {"K\u{0}": "v", "URL": "a\u{0}b"}}}},
        "box": {"type": "container", "config": {"image": "x", "env": {"TOKEN": "t\u{0}"}}}
    }});
    let name = "a variable's name must not hold \"=\" or NUL (\\u0000): no process can be \
                given it; rename or remove it";
    let value = "a variable's value must not hold NUL (\\u0000): no process can be given it; \
                 remove it";
    let attribute = "(it names an environment variable)";
    assert_eq!(
        validation_errors(&rigd, &spec).await,
        json!([
            format!(
                "service \"api\", ingress \"default\": attribute \"K\\x00\": {name} {attribute}"
            ),
            format!("service \"api\", ingress \"default\": attribute \"URL\": {value} {attribute}"),
            "service \"api\": config.env \"\": a variable's name must not be empty; name it or \
             remove it",
            format!("service \"api\": config.env \"A=B\": {name}"),
            format!("service \"box\": config.env \"TOKEN\": {value}"),
        ])
    );
    assert!(rigd.list().await.is_empty(), "nothing was created");
}

/// An environment may have at most 1,000 ingresses (each takes a port).
#[tokio::test]
async fn more_ingresses_than_an_environment_may_have_are_422() {
    let rigd = Rigd::start();
    let ingresses: serde_json::Map<String, Value> = (0..1001)
        .map(|i| (format!("i{i}"), json!({"protocol": "tcp"})))
        .collect();
    let spec = json!({"name": "big", "services": {
        "api": {"type": "process", "config": {"command": "sleep"}, "args": ["60"],
                "ingresses": ingresses}
    }});
    assert_eq!(
        validation_errors(&rigd, &spec).await,
        json!([
            "environment has 1001 ingresses, over the 1000 one environment may have (each \
                takes a port); split it into smaller environments"
        ])
    );
    assert!(rigd.list().await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn unknown_ids_are_404_on_every_environment_route() {
    let rigd = Rigd::start();
    for (method, path, body) in [
        ("GET", "/environments/nope", None),
        ("DELETE", "/environments/nope", None),
        ("GET", "/environments/nope/events", None),
        ("GET", "/environments/nope/log", None),
        (
            "POST",
            "/environments/nope/events",
            Some(&br#"{"type": "test.note", "error": "x"}"#[..]),
        ),
    ] {
        let response = rigd.request(method, path, &[], body).await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.text());
        assert_eq!(
            response.json(),
            json!({"error": "environment not found"}),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn client_events_of_unknown_types_are_400() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "posts", "services": {"idle": sh("exec sleep 3600")}}))
        .await;
    let path = format!("/environments/{id}/events");
    for (body, error) in [
        (
            &br#"{"type": "service.bogus"}"#[..],
            "unknown client event type: service.bogus (clients may post callback.response, service.error, service.log or test.note)",
        ),
        (
            br#"{"error": "no type"}"#,
            "unknown client event type:  (the event has no \"type\"; clients may post callback.response, service.error, service.log or test.note)",
        ),
    ] {
        let response = rigd.request("POST", &path, &[], Some(body)).await;
        assert_eq!(response.status, 400, "{}", response.text());
        assert_eq!(response.json(), json!({"error": error}));
    }
    let response = rigd.request("POST", &path, &[], Some(b"{not json")).await;
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.json()["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("decode body: ")),
        "{}",
        response.text()
    );
    // A known type is accepted and shows up in the stream.
    let response = rigd
        .request(
            "POST",
            &path,
            &[],
            Some(br#"{"type": "test.note", "error": "noted"}"#),
        )
        .await;
    assert_eq!(response.status, 204, "{}", response.text());
    assert!(response.body.is_empty());
    let note = rigd.events(&id).until(TestNote).await;
    assert_eq!(note.error, "noted");
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

#[tokio::test]
async fn foreign_hosts_origins_and_non_json_bodies_are_refused() {
    let rigd = Rigd::start();
    let port = rigd
        .addr()
        .rsplit_once(':')
        .expect("host:port")
        .1
        .to_string();
    let localhost = format!("localhost:{port}");
    let rebound = format!("rigd.attacker.example:{port}");
    for (headers, status) in [
        (vec![("host", localhost.as_str())], 200),
        (vec![("host", rebound.as_str())], 403),
        (vec![("origin", "http://attacker.example")], 403),
    ] {
        let response = rigd.request("GET", "/health", &headers, None).await;
        assert_eq!(response.status, status, "{headers:?}: {}", response.text());
        if status == 403 {
            assert!(response.json()["error"].is_string(), "{}", response.text());
        }
    }

    let spec = serde_json::to_vec(&support::with_path(
        json!({"name": "typed", "services": {"idle": sh("exec sleep 3600")}}),
    ))
    .expect("encode the spec");
    let response = rigd
        .request(
            "POST",
            "/environments",
            &[("content-type", "text/plain")],
            Some(&spec),
        )
        .await;
    assert_eq!(response.status, 415, "{}", response.text());
    assert!(response.json()["error"].is_string(), "{}", response.text());
    assert!(rigd.list().await.is_empty(), "nothing was created");

    // The same body declared as JSON is accepted.
    let response = rigd
        .request(
            "POST",
            "/environments",
            &[("content-type", "application/json")],
            Some(&spec),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let id = response.json()["id"].as_str().expect("an id").to_string();
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

#[tokio::test]
async fn wrong_methods_are_405_and_unknown_paths_404() {
    let rigd = Rigd::start();
    let response = rigd.request("PUT", "/health", &[], None).await;
    assert_eq!(response.status, 405, "{}", response.text());
    let response = rigd.request("GET", "/nowhere", &[], None).await;
    assert_eq!(response.status, 404, "{}", response.text());
}
