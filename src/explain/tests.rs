//! Tests of the explanation rules with hand-built event lists.

use std::sync::Arc;

use rig_types::{
    DiagnosticSnapshot, Event, EventType, GrpcCallInfo, LogStream, RequestInfo, ServiceSnapshot,
    Timestamp,
};
use serde_json::json;

use super::*;
use crate::logfiles::{derive_outcome, Outcome};

/// Events stamped 10 ms apart, with sequence numbers, as the log would hold them.
fn run(events: Vec<Event>) -> Vec<Arc<Event>> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.seq = i as u64 + 1;
            e.environment = "TestOrders".into();
            e.timestamp =
                Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + i as i128 * 10_000_000);
            Arc::new(e)
        })
        .collect()
}

fn svc(t: EventType, s: &str) -> Event {
    Event::for_service(t, s)
}

fn up() -> Event {
    Event::new(EventType::EnvironmentUp)
}

fn destroying() -> Event {
    Event::new(EventType::EnvironmentDestroying)
}

fn failed(s: &str, error: &str) -> Event {
    svc(EventType::ServiceFailed, s).with_error(error)
}

fn stderr(s: &str, data: &str) -> Event {
    Event::log(s, LogStream::Stderr, data)
}

fn note(text: &str) -> Event {
    Event::new(EventType::TestNote).with_error(text)
}

fn http(target: &str, method: &str, path: &str, status: u16, body: &str) -> Event {
    let mut e = Event::new(EventType::RequestCompleted);
    e.request = Some(Box::new(RequestInfo {
        source: "~test".into(),
        target: target.into(),
        ingress: "default".into(),
        method: method.into(),
        path: path.into(),
        status_code: status,
        latency_ms: 1.5,
        response_body: (!body.is_empty()).then(|| body.as_bytes().to_vec()),
        ..RequestInfo::default()
    }));
    e
}

fn grpc(target: &str, status: &str, message: &str) -> Event {
    let mut e = Event::new(EventType::GrpcCallCompleted);
    e.grpc_call = Some(Box::new(GrpcCallInfo {
        source: "api".into(),
        target: target.into(),
        ingress: "default".into(),
        service: "temporal.v1.WorkflowService".into(),
        method: "Start".into(),
        grpc_status: status.into(),
        grpc_message: message.into(),
        latency_ms: 3.0,
        ..GrpcCallInfo::default()
    }));
    e
}

fn stall(stalled_for: &str, services: &[(&str, &str, &[&str])]) -> Event {
    let mut e = Event::new(EventType::ProgressStall);
    e.diagnostic = Some(Box::new(DiagnosticSnapshot {
        stalled_for: stalled_for.into(),
        services: services
            .iter()
            .map(|(name, phase, waiting)| ServiceSnapshot {
                name: (*name).into(),
                phase: (*phase).into(),
                waiting_on: waiting.iter().map(|w| (*w).to_string()).collect(),
                running: String::new(),
            })
            .collect(),
    }));
    e
}

/// A run where `api` came up and the test then got errors from it.
fn came_up(mut tail: Vec<Event>) -> Vec<Event> {
    let mut events = vec![
        svc(EventType::ServiceStarting, "api"),
        svc(EventType::ServiceHealthy, "api"),
        svc(EventType::ServiceReady, "api"),
        up(),
    ];
    events.append(&mut tail);
    events
}

fn summary(events: &[Arc<Event>], reason: &str) -> String {
    summarize(events, derive_outcome(events, reason))
}

#[test]
fn crash_summary_names_the_service_and_its_stderr() {
    // Upstream's server test `CrashSummary`: a healthy `api` and a crashing `broken`.
    let events = run(vec![
        svc(EventType::IngressPublished, "api"),
        svc(EventType::IngressPublished, "broken"),
        svc(EventType::ServiceStarting, "api"),
        svc(EventType::ServiceStarting, "broken"),
        stderr("broken", "intentional failure\n"),
        svc(EventType::ServiceHealthy, "api"),
        failed("broken", "exit status 1"),
        svc(EventType::EnvironmentFailing, "broken")
            .with_error("service \"broken\": exit status 1"),
        svc(EventType::ServiceStopping, "api"),
        svc(EventType::ServiceStopped, "api"),
        svc(EventType::ServiceStopped, "broken"),
        Event::new(EventType::EnvironmentDown).with_message("environment failed: ..."),
    ]);
    let s = summary(&events, "");
    assert_eq!(
        s,
        "rig: broken failed: exit status 1\nrig: broken stderr: intentional failure"
    );
    assert!(s.contains("broken") && s.contains("intentional failure"));
}

#[test]
fn a_passed_run_has_no_summary_even_with_errors() {
    let events = run(came_up(vec![
        http("api", "GET", "/missing", 404, "not found"),
        failed("worker", "exit status 1"),
    ]));
    let a = analyze(&events, Outcome::Passed);
    assert!(a.errors.is_empty(), "expected errors are dropped");
    assert_eq!(condensed(&a), "");
    // The same events with a failed test explain themselves.
    assert_ne!(summary(&events, "test_failed"), "");
}

#[test]
fn a_failed_run_with_nothing_to_report_has_no_summary() {
    let events = run(came_up(vec![note(
        "orders_test.go:42: expected 200, got 500",
    )]));
    let a = analyze(&events, Outcome::Failed);
    assert_eq!(a.assertions.len(), 1);
    assert_eq!(a.assertions[0].file.as_deref(), Some("orders_test.go"));
    assert_eq!(condensed(&a), "", "assertions are never repeated");
}

#[test]
fn assertion_failure_shows_the_error_and_correlated_stderr() {
    // Upstream's `assertion_failure` fixture: a 404 probe before `environment.up` is dropped.
    let events = run(vec![
        svc(EventType::ServiceStarting, "api"),
        http("api", "GET", "/health", 404, "404 page not found"),
        svc(EventType::ServiceHealthy, "api"),
        up(),
        stderr("api", "listening on :8080\n"),
        stderr(
            "api",
            "handler: Something Went Wrong while loading\nunrelated warning\n",
        ),
        http(
            "api",
            "GET",
            "/bad",
            500,
            r#"{"error":"something went wrong"}"#,
        ),
        note("api_test.go:17: expected 200, got 500"),
        destroying(),
    ]);
    let s = summary(&events, "test_failed");
    assert_eq!(
        s,
        "rig: GET → api /bad 500: {\"error\":\"something went wrong\"}\n\
         rig: api stderr: handler: Something Went Wrong while loading"
    );
    assert!(!s.contains("expected 200") && !s.contains("FAILED") && !s.contains("~test"));
    assert!(s.lines().count() <= 20);
}

#[test]
fn only_the_first_failure_of_a_service_counts() {
    // Upstream's `service_crash` fixture: the readiness timeout is a consequence.
    let events = run(vec![
        svc(EventType::ServiceStarting, "crasher"),
        failed("crasher", "intentional crash: startup failed"),
        failed(
            "crasher",
            "readiness check: timed out after 30s: connection refused",
        ),
        svc(EventType::EnvironmentFailing, "crasher").with_error("crasher failed"),
    ]);
    let a = analyze(&events, Outcome::Crashed);
    assert_eq!(a.service_failures.len(), 1);
    assert_eq!(a.phases, None, "never came up");
    assert_eq!(
        condensed(&a),
        "rig: crasher failed: intentional crash: startup failed"
    );
}

#[test]
fn traffic_and_stderr_after_destroying_are_ignored() {
    let events = run(came_up(vec![
        note("x_test.go:1: failed"),
        destroying(),
        http("api", "GET", "/late", 503, "shutting down"),
        stderr("api", "error: shutting down\n"),
    ]));
    let a = analyze(&events, Outcome::Failed);
    assert!(a.errors.is_empty());
    assert!(a.service_errors.is_empty());
}

/// Sets when `e`'s exchange started and how long it took.
fn timed(mut e: Event, started_at: Timestamp, duration_ms: f64) -> Event {
    if let Some(r) = e.request.as_mut() {
        r.started_at = Some(started_at);
        r.duration_ms = Some(duration_ms);
    }
    if let Some(g) = e.grpc_call.as_mut() {
        g.started_at = Some(started_at);
        g.duration_ms = Some(duration_ms);
    }
    e
}

/// An exchange observed late (a gRPC call's observation waits for the target's descriptors)
/// is logged after `environment.destroying` but ended before it: it still explains the
/// failure; one that ended after it does not.
#[test]
fn traffic_that_ended_before_destroying_counts_however_late_it_was_logged() {
    let mut events = run(came_up(vec![
        destroying(),
        grpc("inventory", "Internal", "stock db down"),
        http("api", "GET", "/late", 503, "shutting down"),
    ]));
    let destroying_at = events[4].timestamp;
    let before = Timestamp::from_unix_nanos(destroying_at.unix_nanos() - 5_000_000);
    let after = Timestamp::from_unix_nanos(destroying_at.unix_nanos() + 1_000_000);
    let late = timed((*events[5]).clone(), before, 4.0);
    let during_teardown = timed((*events[6]).clone(), after, 1.0);
    events[5] = Arc::new(late);
    events[6] = Arc::new(during_teardown);
    let a = analyze(&events, Outcome::Failed);
    let kept: Vec<&str> = a.errors.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(kept, ["inventory"], "{:?}", a.errors);
    assert_eq!(a.errors[0].grpc_message, "stock db down");
}

/// A readiness failure: rigd stops the service with SIGINT, and what it prints then (a Python
/// traceback) comes after its `service.failed`; the lines from before explain the failure.
#[test]
fn stderr_after_a_services_failure_or_stop_does_not_explain_it() {
    let events =
        run(vec![
        svc(EventType::ServiceStarting, "web"),
        svc(EventType::ServiceStarting, "db"),
        stderr("web", "KeyError: 'DATABASE_URL'\n"),
        stderr("db", "FATAL: role \"app\" does not exist\n"),
        failed("web", "ingress \"default\": readiness check failed after 3s"),
        stderr(
            "web",
            "Traceback (most recent call last):\n  File \"app.py\", line 9\nKeyboardInterrupt\n",
        ),
        svc(EventType::EnvironmentFailing, "web")
            .with_error("service \"web\": readiness check failed after 3s"),
        svc(EventType::ServiceStopping, "db"),
        stderr("db", "LOG: received fast shutdown request\n"),
        svc(EventType::EnvironmentFailing, "db").with_error("service \"db\": stop timed out"),
    ]);
    let a = analyze(&events, Outcome::Crashed);
    let lines: Vec<(&str, &str)> = a
        .service_errors
        .iter()
        .map(|l| (l.service.as_str(), l.data.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("db", "FATAL: role \"app\" does not exist"),
            ("web", "KeyError: 'DATABASE_URL'"),
        ]
    );
}

#[test]
fn without_environment_up_errors_to_services_that_became_healthy_are_dropped() {
    let events = run(vec![
        svc(EventType::ServiceStarting, "api"),
        http("api", "GET", "/health", 503, "starting"),
        svc(EventType::ServiceHealthy, "api"),
        http("db", "GET", "/status", 500, "db is broken"),
        failed("worker", "exit status 2"),
        svc(EventType::EnvironmentFailing, "worker").with_error("worker failed"),
    ]);
    let a = analyze(&events, Outcome::Crashed);
    assert_eq!(a.errors.len(), 1);
    assert_eq!(a.errors[0].target, "db");
}

#[test]
fn errors_are_most_recent_first_deduplicated_and_capped() {
    let mut tail = Vec::new();
    for i in 0..10 {
        tail.push(http("api", "GET", &format!("/item/{i}"), 500, "boom"));
    }
    // Repeats of the newest error collapse into one line.
    tail.push(http("api", "GET", "/item/9", 500, "boom again"));
    tail.push(http("api", "GET", "/item/9", 500, "boom"));
    let events = run(came_up(tail));
    let a = analyze(&events, Outcome::Failed);
    assert_eq!(a.errors.len(), 12, "the analysis keeps every error");
    assert_eq!(a.errors[0].path, "/item/9");
    let s = condensed(&a);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), MAX_TRAFFIC_ERRORS + 1);
    assert_eq!(lines[0], "rig: GET → api /item/9 500: boom");
    assert_eq!(lines[1], "rig: GET → api /item/8 500: boom");
    assert_eq!(lines[6], "rig: GET → api /item/3 500: boom");
    // The ten distinct errors that did not fit are counted, not dropped silently.
    assert_eq!(
        lines[7],
        "rig:   ... and 3 more traffic errors (`rig explain` lists them all)"
    );
}

#[test]
fn readiness_probes_never_count_as_traffic_errors() {
    let mut probe = http("api", "GET", "/health", 503, "not ready");
    if let Some(r) = probe.request.as_mut() {
        r.probe = true;
    }
    // A gRPC health check through a proxy, to a server without the health service.
    let mut grpc_probe = grpc("api", "Unimplemented", "unknown service");
    if let Some(g) = grpc_probe.grpc_call.as_mut() {
        g.probe = true;
    }
    let events = run(came_up(vec![probe, grpc_probe, note("t.go:1: x")]));
    assert!(analyze(&events, Outcome::Failed).errors.is_empty());
}

#[test]
fn grpc_errors_use_the_status_and_message() {
    let mut decoded = grpc("temporal", "3", "");
    if let Some(g) = decoded.grpc_call.as_mut() {
        g.method = "Signal".into();
        g.response_body_decoded = Some(json!({"detail": "bad signal"}));
    }
    let events = run(came_up(vec![
        grpc("temporal", "0", ""),
        grpc("temporal", "OK", ""),
        grpc("temporal", "5", "namespace not found"),
        decoded,
    ]));
    let a = analyze(&events, Outcome::Failed);
    assert_eq!(a.errors.len(), 2);
    assert_eq!(
        condensed(&a),
        "rig: gRPC → temporal temporal.v1.WorkflowService/Signal status=3: {\"detail\":\"bad signal\"}\n\
         rig: gRPC → temporal temporal.v1.WorkflowService/Start status=5: namespace not found"
    );
}

#[test]
fn bodies_are_cut_at_200_bytes_on_a_character_boundary_and_kept_on_one_line() {
    let long = format!("{}é{}", "a".repeat(199), "b".repeat(50));
    let events = run(came_up(vec![
        http("api", "POST", "/long", 500, &long),
        http("api", "POST", "/multi", 500, "  first\n\n  second  \n"),
        http("api", "POST", "/binary", 500, ""),
    ]));
    let mut events: Vec<Arc<Event>> = events;
    if let Some(r) = Arc::make_mut(events.last_mut().unwrap()).request.as_mut() {
        r.response_body = Some(vec![0xff, 0xfe, 0x00]);
    }
    let s = summary(&events, "test_failed");
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "rig: POST → api /binary 500");
    assert_eq!(lines[1], "rig: POST → api /multi 500: first second");
    assert_eq!(
        lines[2],
        format!("rig: POST → api /long 500: {}...", "a".repeat(199))
    );
}

#[test]
fn a_failed_exchange_shows_the_proxy_error() {
    let mut e = http("api", "GET", "/slow", 502, "");
    if let Some(r) = e.request.as_mut() {
        r.error = "connection reset by target".into();
    }
    let events = run(came_up(vec![e]));
    assert_eq!(
        summary(&events, "test_failed"),
        "rig: GET → api /slow 502: connection reset by target"
    );
}

#[test]
fn the_last_stall_is_shown_with_at_most_four_services() {
    let events = run(vec![
        stall("10s", &[("old", "pending", &[])]),
        stall(
            "30s",
            &[
                ("api", "published", &["db", "cache"]),
                ("db", "starting", &[]),
                ("cache", "starting", &[]),
                ("queue", "pending", &["db"]),
                ("extra", "pending", &[]),
            ],
        ),
        svc(EventType::EnvironmentFailing, "").with_error("startup timed out"),
    ]);
    let a = analyze(&events, Outcome::Crashed);
    assert_eq!(a.stall.as_ref().unwrap().stalled_for, "30s");
    assert_eq!(
        condensed(&a),
        "rig: stall (30s):\n\
         rig:   api: published (waiting on db, cache)\n\
         rig:   db: starting\n\
         rig:   cache: starting\n\
         rig:   queue: pending (waiting on db)\n\
         rig:   ... and 1 more service (`rig explain` lists them all)"
    );
}

#[test]
fn a_run_torn_down_during_a_build_says_so() {
    let events = run(vec![
        svc(EventType::IngressPublished, "api"),
        Event {
            artifact: "cargo:/src/api".into(),
            ..Event::new(EventType::ArtifactStarted)
        },
        destroying(),
    ]);
    assert_eq!(
        summary(&events, ""),
        "rig: torn down before it was up:\n\
         rig:   api: not started (a build was still running)"
    );
}

#[test]
fn a_run_torn_down_before_it_was_up_names_the_services_that_were_not_ready() {
    let check_failed =
        |s: &str, error: &str| svc(EventType::HealthCheckFailed, s).with_error(error);
    let events = run(vec![
        svc(EventType::ServiceStarting, "db"),
        svc(EventType::ServiceHealthy, "db"),
        svc(EventType::ServiceReady, "db"),
        svc(EventType::ServiceStarting, "api"),
        svc(EventType::ServiceStarting, "~test"),
        check_failed("api", "dial tcp 127.0.0.1:9: connection refused"),
        stderr("api", "listening on :8081\n"),
        check_failed("api", "GET /health: 503"),
        svc(EventType::IngressPublished, "web"),
        svc(EventType::ServiceStarting, "hooked"),
        svc(EventType::ServiceHealthy, "hooked"),
        svc(EventType::ServiceInit, "hooked"),
        destroying(),
        svc(EventType::ServiceStopping, "api"),
        svc(EventType::ServiceStopped, "api"),
    ]);
    assert_eq!(derive_outcome(&events, ""), Outcome::Failed);
    assert_eq!(
        summary(&events, ""),
        "rig: torn down before it was up:\n\
         rig:   api: starting (2 failed readiness checks; the last: GET /health: 503)\n\
         rig:   hooked: init hooks\n\
         rig:   web: not started\n\
         rig: api stderr: listening on :8081"
    );
    let a = analyze(&events, Outcome::Failed);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(
        json["not_up"][0],
        json!({"service": "api", "phase": "starting", "failed_checks": 2,
               "last_check_error": "GET /health: 503"})
    );

    // A run still starting (no teardown yet), one that came up, or one whose failure
    // explains it has no such section.
    let starting = run(vec![svc(EventType::ServiceStarting, "api")]);
    assert!(analyze(&starting, Outcome::Failed).not_up.is_empty());
    let mut crashed = events.iter().map(|e| (**e).clone()).collect::<Vec<_>>();
    crashed.insert(6, failed("api", "exit status 1"));
    assert!(analyze(&run(crashed), Outcome::Crashed).not_up.is_empty());
    let went_up = run(came_up(vec![destroying()]));
    assert!(analyze(&went_up, Outcome::Passed).not_up.is_empty());
}

#[test]
fn sections_come_in_priority_order_with_their_own_caps() {
    let mut tail = Vec::new();
    for i in 0..7 {
        tail.push(stderr(&format!("svc{i}"), &format!("line of svc{i}\n")));
        tail.push(failed(&format!("svc{i}"), "exit status 1"));
    }
    for i in 0..9 {
        tail.push(http("api", "GET", &format!("/e{i}"), 500, ""));
    }
    tail.push(stall("30s", &[("a", "pending", &[] as &[&str]); 6]));
    let events = run(came_up(tail));
    let s = summary(&events, "test_failed");
    let lines: Vec<&str> = s.lines().collect();
    // Each capped section says what it left out.
    assert_eq!(lines.len(), (5 + 1) + (5 + 1) + (7 + 1) + 3, "{s}");
    assert!(lines.iter().all(|l| l.starts_with("rig: ")));
    assert!(lines[0].starts_with("rig: svc0 failed"));
    assert!(lines[4].starts_with("rig: svc4 failed"));
    assert_eq!(
        lines[5],
        "rig:   ... and 2 more failed services (`rig explain` lists them all)"
    );
    assert_eq!(lines[6], "rig: stall (30s):");
    assert_eq!(
        lines[11],
        "rig:   ... and 2 more services (`rig explain` lists them all)"
    );
    assert_eq!(lines[12], "rig: GET → api /e8 500");
    assert_eq!(
        lines[19],
        "rig:   ... and 2 more traffic errors (`rig explain` lists them all)"
    );
    // Without failure markers, the last stderr lines of the failed services are shown.
    assert_eq!(lines[20], "rig: svc4 stderr: line of svc4");
    assert_eq!(lines[22], "rig: svc6 stderr: line of svc6");
}

#[test]
fn rust_panics_are_picked_from_a_failed_services_stderr() {
    let events = run(vec![
        stderr("api", "starting\nconnected to db\n"),
        stderr(
            "api",
            "thread 'main' panicked at src/main.rs:42:5:\norder table missing\n\
             note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        ),
        failed("api", "exit status 101"),
        svc(EventType::EnvironmentFailing, "api").with_error("api failed"),
    ]);
    assert_eq!(
        summary(&events, ""),
        "rig: api failed: exit status 101\n\
         rig: api stderr: thread 'main' panicked at src/main.rs:42:5:\n\
         rig: api stderr: order table missing"
    );
}

/// A service's build writes to its log too (cargo's warnings); that is not what the service
/// said when it failed.
#[test]
fn build_output_is_not_taken_for_the_services_stderr() {
    let artifact = |t: EventType| Event {
        artifact: "cargo:/src/api".into(),
        ..Event::new(t)
    };
    let events = run(vec![
        artifact(EventType::ArtifactStarted),
        stderr(
            "api",
            "warning: unused variable: `x`\n    Finished `dev` profile\n",
        ),
        artifact(EventType::ArtifactCompleted),
        svc(EventType::ServiceStarting, "api"),
        stderr(
            "api",
            "thread 'main' panicked at src/main.rs:3:5:\nno config\n",
        ),
        failed("api", "exit status 101"),
        svc(EventType::EnvironmentFailing, "api").with_error("api failed"),
    ]);
    let a = analyze(&events, Outcome::Crashed);
    let lines: Vec<&str> = a.service_errors.iter().map(|l| l.data.as_str()).collect();
    assert_eq!(
        lines,
        ["thread 'main' panicked at src/main.rs:3:5:", "no config"]
    );
}

#[test]
fn go_panics_are_picked_and_stack_noise_skipped() {
    let events = run(vec![
        stderr(
            "worker",
            "booting\npanic: nil map write\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:10 +0x1d\n",
        ),
        failed("worker", "exit status 2"),
    ]);
    let s = summary(&events, "test_failed");
    assert_eq!(
        s,
        "rig: worker failed: exit status 2\nrig: worker stderr: panic: nil map write"
    );
    // Without a marker the last lines are used, skipping backtrace noise.
    let events = run(vec![
        stderr(
            "w",
            "one\ntwo\nthree\nfour\n\t/src/x.go:1 +0x1\ngoroutine 7 [chan]:\n",
        ),
        failed("w", "exit status 2"),
    ]);
    assert_eq!(
        summary(&events, "test_failed"),
        "rig: w failed: exit status 2\nrig: w stderr: two\nrig: w stderr: three\nrig: w stderr: four"
    );
}

#[test]
fn multi_line_texts_keep_the_prefix_on_every_line() {
    let events = run(vec![failed(
        "api",
        "readiness check failed\nlast error: connection refused\n",
    )]);
    assert_eq!(
        summary(&events, "test_failed"),
        "rig: api failed: readiness check failed\nrig:   last error: connection refused"
    );
}

#[test]
fn dropped_observations_are_reported() {
    let mut dropped = Event::new(EventType::ObservationsDropped);
    dropped.dropped = 12;
    let events = run(came_up(vec![dropped, note("t.go:1: x")]));
    let a = analyze(&events, Outcome::Failed);
    assert_eq!(a.dropped_observations, 12);
    assert_eq!(
        condensed(&a),
        "rig: 12 traffic observations were not recorded (observation fell behind); errors among them are not shown"
    );
}

#[test]
fn stderr_keeps_the_last_20_lines_per_service_and_drops_empty_lines() {
    let mut tail = vec![stderr("api", "\n\n   \n")];
    for i in 0..25 {
        tail.push(stderr("api", &format!("line {i}\r\n")));
    }
    tail.push(Event::log("api", LogStream::Stdout, "stdout is ignored\n"));
    tail.push(svc(EventType::EnvironmentFailing, "api").with_error("api failed"));
    let events = run(tail);
    let a = analyze(&events, Outcome::Crashed);
    let lines: Vec<&str> = a.service_errors.iter().map(|l| l.data.as_str()).collect();
    assert_eq!(lines.len(), STDERR_LINES_PER_SERVICE);
    assert_eq!(lines[0], "line 5");
    assert_eq!(lines[19], "line 24");
    assert!(a.service_errors.iter().all(|l| l.stream == "stderr"));
}

#[test]
fn service_errors_are_correlated_first_then_failed_services_sorted_and_unique() {
    let events = run(came_up(vec![
        stderr("zeta", "zeta broke\n"),
        stderr("alpha", "alpha broke\n"),
        stderr("api", "db: relation orders does not exist\n"),
        http(
            "api",
            "POST",
            "/orders",
            500,
            r#"{"error":"relation orders does not exist"}"#,
        ),
        failed("zeta", "exit status 1"),
        failed("api", "exit status 1"),
        svc(EventType::EnvironmentFailing, "alpha").with_error("alpha failed"),
    ]));
    let a = analyze(&events, Outcome::Crashed);
    let got: Vec<(&str, &str)> = a
        .service_errors
        .iter()
        .map(|l| (l.service.as_str(), l.data.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("api", "db: relation orders does not exist"),
            ("alpha", "alpha broke"),
            ("zeta", "zeta broke"),
        ]
    );
    assert_eq!(a.correlated_service_errors, 1);
}

#[test]
fn phases_measure_the_run() {
    let mut artifact = Event::new(EventType::ArtifactStarted);
    artifact.artifact = "cargo:api".into();
    let mut built = Event::new(EventType::ArtifactCompleted);
    built.artifact = "cargo:api".into();
    let events = run(vec![
        artifact,
        built,
        svc(EventType::ServiceStarting, "api"),
        svc(EventType::ServiceReady, "api"),
        up(),
        note("t.go:1: x"),
        destroying(),
        Event::new(EventType::EnvironmentDown),
    ]);
    let a = analyze(&events, Outcome::Failed);
    assert_eq!(
        a.phases,
        Some(Phases {
            artifacts_ms: 10,
            startup_ms: 20,
            test_ms: 20,
            teardown_ms: 10,
        })
    );
}

#[test]
fn analysis_serialises_with_upstream_report_field_names() {
    let events = run(came_up(vec![
        http("api", "GET", "/bad", 500, "boom"),
        note("api_test.go:3: expected 200"),
        failed("worker", "exit status 1"),
    ]));
    let a = analyze(&events, Outcome::Failed);
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(
        v["assertions"],
        json!([{"message": "expected 200", "file": "api_test.go", "line": 3}])
    );
    assert_eq!(
        v["errors"],
        json!([{"type": "http", "source": "~test", "target": "api", "method": "GET",
                "path": "/bad", "status": 500, "latency_ms": 1.5, "response_body": "boom"}])
    );
    assert_eq!(
        v["service_failures"],
        json!([{"service": "worker", "error": "exit status 1"}])
    );
    assert!(v.get("stall").is_none() && v.get("dropped_observations").is_none());
    assert!(v.get("outcome").is_none() && v.get("correlated_service_errors").is_none());
}

/// The log files' header, timeline and summary are built from the events without headers,
/// and without the bodies of exchanges that are not errors: what they say is the same, the
/// bodies of errors are kept, and the other bodies and decoded messages are gone.
#[test]
fn analysis_events_keep_only_the_bodies_the_analysis_reads() {
    let mut ok_grpc = grpc("temporal", "OK", "");
    let call = ok_grpc.grpc_call.as_mut().unwrap();
    call.response_body = Some(vec![1; 4096]);
    call.response_body_decoded = Some(json!({"id": "x".repeat(1000)}));
    call.response_messages = vec![rig_types::GrpcMessage::default(); 3];
    let mut failed_grpc = grpc("temporal", "NotFound", "workflow not found");
    failed_grpc
        .grpc_call
        .as_mut()
        .unwrap()
        .response_body_decoded = Some(json!({"error": "workflow not found"}));
    let mut ok_http = http("api", "GET", "/orders", 200, &"o".repeat(10_000));
    let info = ok_http.request.as_mut().unwrap();
    for headers in [&mut info.request_headers, &mut info.response_headers] {
        headers.insert("Content-Type".into(), vec!["application/json".into()]);
    }
    let events = run(came_up(vec![
        ok_http,
        http(
            "api",
            "POST",
            "/orders",
            500,
            r#"{"error":"column \"total\" does not exist"}"#,
        ),
        ok_grpc,
        failed_grpc,
        stderr("api", "ERROR: column \"total\" does not exist\n"),
        note("expected 201, got 500"),
    ]));
    let light: Vec<Arc<Event>> = events.iter().cloned().map(for_analysis).collect();

    let outcome = derive_outcome(&events, "");
    assert_eq!(analyze(&light, outcome), analyze(&events, outcome));
    assert!(!summarize(&light, outcome).is_empty());
    assert_eq!(summarize(&light, outcome), summarize(&events, outcome));
    let header = |events: &[Arc<Event>]| {
        let now = Timestamp::from_unix_nanos(0);
        crate::logfiles::LogHeader::for_events("t", events, &Default::default(), "", now)
    };
    assert_eq!(header(&light), header(&events));
    assert_eq!(
        crate::logfiles::render_pretty(&header(&light), &light),
        crate::logfiles::render_pretty(&header(&events), &events)
    );

    let request = |e: &Arc<Event>| e.request.clone();
    let ok = request(&light[4]).unwrap();
    assert_eq!(ok.response_body, None, "a 200's body is left out");
    assert!(ok.request_headers.is_empty() && ok.response_headers.is_empty());
    assert!(!events[4]
        .request
        .as_ref()
        .unwrap()
        .request_headers
        .is_empty());
    assert_eq!(ok.path, "/orders");
    let error = request(&light[5]).unwrap();
    assert!(error.response_body.is_some(), "a 500's body is kept");
    let ok_call = light[6].grpc_call.as_ref().unwrap();
    assert!(ok_call.response_body.is_none() && ok_call.response_body_decoded.is_none());
    assert!(ok_call.response_messages.is_empty());
    assert!(light[7]
        .grpc_call
        .as_ref()
        .unwrap()
        .response_body_decoded
        .is_some());
    // Other events are the same allocation.
    assert!(Arc::ptr_eq(&light[0], &events[0]));
    assert!(Arc::ptr_eq(&light[8], &events[8]));
}

#[test]
fn an_environment_that_failed_before_any_service_says_why() {
    // A build that failed: no service ever started, the environment failed on its own.
    let error = "artifact cargo:api: cargo build failed: error[E0425]: cannot find value `x`";
    let events = run(vec![
        Event::new(EventType::ArtifactStarted),
        Event::new(EventType::ArtifactFailed).with_error(error),
        Event::new(EventType::EnvironmentFailing).with_error(error),
        Event::new(EventType::EnvironmentDown),
    ]);
    let a = analyze(&events, Outcome::Crashed);
    assert_eq!(a.environment_failures, [error]);
    assert!(a.service_failures.is_empty());
    assert_eq!(condensed(&a), format!("rig: environment failed: {error}"));
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["environment_failures"], json!([error]));
}

#[test]
fn a_run_rigd_ended_says_why_and_a_client_ended_one_does_not() {
    let mut orphaned = destroying();
    orphaned.message = "the client that created it disconnected 30s ago".into();
    let events = run(came_up(vec![
        orphaned,
        Event::new(EventType::EnvironmentDown),
    ]));
    let a = analyze(&events, Outcome::Passed);
    assert_eq!(
        a.ended_by_rigd.as_deref(),
        Some("the client that created it disconnected 30s ago")
    );
    assert_eq!(
        serde_json::to_value(&a).unwrap()["ended_by_rigd"],
        "the client that created it disconnected 30s ago"
    );

    let events = run(came_up(vec![destroying()]));
    let a = analyze(&events, Outcome::Passed);
    assert_eq!(a.ended_by_rigd, None);
    assert!(serde_json::to_value(&a)
        .unwrap()
        .get("ended_by_rigd")
        .is_none());
}

/// A call from `source` to `target`.
fn call(source: &str, target: &str, path: &str, status: u16, body: &str) -> Event {
    let mut e = http(target, "GET", path, status, body);
    e.request.as_mut().unwrap().source = source.into();
    e
}

/// The ordering rule: the error the api got from the store while answering the test comes
/// before the 502 the test got (its consequence); an error on the same edge outside that
/// exchange is not its cause and keeps its most-recent-first place.
#[test]
fn errors_are_listed_root_cause_first() {
    let at = |i: usize, ms: i128| {
        Timestamp::from_unix_nanos(
            1_700_000_000_000_000_000 + i as i128 * 10_000_000 + ms * 1_000_000,
        )
    };
    let mut events = run(came_up(vec![
        call("api", "store", "/early", 500, "cold cache"),
        call("api", "store", "/stock", 500, "db down"),
        call("~test", "api", "/orders", 502, "bad gateway"),
    ]));
    // Logged when they ended: /early ended before /orders began; /stock ran within /orders.
    events[4] = Arc::new(timed((*events[4]).clone(), at(4, -2), 1.0));
    events[5] = Arc::new(timed((*events[5]).clone(), at(5, -3), 2.0));
    events[6] = Arc::new(timed((*events[6]).clone(), at(5, -5), 15.0));
    let a = analyze(&events, Outcome::Failed);
    let order: Vec<&str> = a.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(order, ["/stock", "/orders", "/early"], "{:?}", a.errors);
    let condensed = condensed(&a);
    let first = condensed.lines().next().unwrap();
    assert_eq!(first, "rig: GET → store /stock 500: db down");
}

/// Causes nest: the database error under the store's error under the api's comes first.
#[test]
fn a_chain_of_causes_is_listed_deepest_first() {
    let base = |ms: i128| Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + ms * 1_000_000);
    let mut events = run(came_up(vec![
        call("store", "db", "/query", 500, "relation missing"),
        call("api", "store", "/stock", 500, "query failed"),
        call("~test", "api", "/orders", 502, "bad gateway"),
    ]));
    // Each event's log time is 40, 50 and 60 ms after the base.
    events[4] = Arc::new(timed((*events[4]).clone(), base(30), 5.0));
    events[5] = Arc::new(timed((*events[5]).clone(), base(20), 25.0));
    events[6] = Arc::new(timed((*events[6]).clone(), base(10), 45.0));
    let a = analyze(&events, Outcome::Failed);
    let order: Vec<&str> = a.errors.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(order, ["db", "store", "api"], "{:?}", a.errors);
}
