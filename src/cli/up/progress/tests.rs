//! Snapshot-style checks of every rendered line, colour off.

use std::collections::BTreeMap;

use rig_types::event::{
    CallbackKind, CallbackRequest, ConnectionInfo, DiagnosticSnapshot, GrpcCallInfo,
    KafkaRequestInfo, RequestInfo, ServiceSnapshot,
};
use rig_types::{Endpoint, Protocol};

use super::*;

const T0: i128 = 1_700_000_000_000_000_000;

/// A timestamp `ms` milliseconds after T0.
fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_nanos(T0 + i128::from(ms) * 1_000_000)
}

fn ev(event_type: EventType, service: &str, ms: i64) -> Event {
    let mut e = Event::for_service(event_type, service);
    e.environment = "orders".into();
    e.timestamp = at(ms);
    e
}

fn progress(names: &[&str]) -> Progress {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    Progress::new(Style::plain(), false, &names)
}

fn up_event(ms: i64) -> Event {
    let mut e = ev(EventType::EnvironmentUp, "", ms);
    let mut api = BTreeMap::new();
    api.insert(
        "default".to_string(),
        Endpoint::new("127.0.0.1:50011", Protocol::Http),
    );
    api.insert(
        "admin".to_string(),
        Endpoint::new("127.0.0.1:50013", Protocol::Grpc),
    );
    let mut db = BTreeMap::new();
    db.insert(
        "default".to_string(),
        Endpoint::new("127.0.0.1:50012", Protocol::Tcp),
    );
    e.ingresses.insert("api".into(), api);
    e.ingresses.insert("db".into(), db);
    e.ingresses.insert("worker".into(), BTreeMap::new());
    e.env_dir = "/home/me/.rig/tmp/orders-1".into();
    e
}

#[test]
fn service_lifecycle_lines_are_aligned_and_timed() {
    let mut p = progress(&["api", "inventory"]);
    assert_eq!(
        p.render(&ev(EventType::ServiceStarting, "inventory", 0)),
        ["  · inventory  starting"]
    );
    assert_eq!(
        p.render(&ev(EventType::ServiceStarting, "api", 5)),
        ["  · api        starting"]
    );
    assert!(p
        .render(&ev(EventType::ServiceHealthy, "inventory", 200))
        .is_empty());
    assert_eq!(
        p.render(&ev(EventType::ServiceInit, "inventory", 205)),
        ["  · inventory  running init hooks"]
    );
    assert_eq!(
        p.render(&ev(EventType::ServiceReady, "inventory", 210)),
        ["  ✓ inventory  ready (0.21s)"]
    );
    assert_eq!(
        p.render(&ev(EventType::ServicePrestart, "api", 300)),
        ["  · api        running prestart hooks"]
    );
    for quiet in [
        EventType::IngressPublished,
        EventType::WiringResolved,
        EventType::ServiceStopping,
    ] {
        assert!(p.render(&ev(quiet, "api", 301)).is_empty());
    }
}

#[test]
fn injected_services_are_silent_unless_they_fail() {
    let mut p = progress(&["api"]);
    for t in [
        EventType::ServiceStarting,
        EventType::ServiceReady,
        EventType::HealthCheckFailed,
    ] {
        assert!(p.render(&ev(t.clone(), "~test", 0)).is_empty(), "{t}");
        assert!(p.render(&ev(t, "api~proxy~~test", 0)).is_empty());
    }
    let failed = Event {
        error: "listen: address in use".into(),
        ..ev(EventType::ServiceFailed, "api~proxy~~test", 10)
    };
    assert_eq!(
        p.render(&failed),
        ["  ✗ api~proxy~~test  failed: listen: address in use (after 1 failed health check)"]
    );
}

#[test]
fn health_check_failures_are_summarised_with_backoff() {
    let mut p = progress(&["api"]);
    let fail = |ms| Event {
        error: "dial tcp 127.0.0.1:5000: connection refused".into(),
        ingress: "default".into(),
        ..ev(EventType::HealthCheckFailed, "api", ms)
    };
    p.render(&ev(EventType::ServiceStarting, "api", 0));
    for ms in [10, 500, 1900] {
        assert!(p.render(&fail(ms)).is_empty(), "{ms}");
    }
    assert_eq!(
        p.render(&fail(2100)),
        ["  ! api   still not healthy after 2s (4 failed checks; last: dial tcp 127.0.0.1:5000: connection refused)"]
    );
    assert!(p.render(&fail(3000)).is_empty());
    assert_eq!(
        p.render(&fail(4500)).len(),
        1,
        "the next report comes after 4s"
    );
    assert!(p.render(&fail(7000)).is_empty());
    let failed = Event {
        error: "readiness timeout after 30s".into(),
        ..ev(EventType::ServiceFailed, "api", 30_000)
    };
    assert_eq!(
        p.render(&failed),
        ["  ✗ api   failed: readiness timeout after 30s (after 7 failed health checks; last: dial tcp 127.0.0.1:5000: connection refused)"]
    );
}

fn refused(ms: i64) -> Event {
    Event {
        error: "dial tcp 127.0.0.1:5000: connection refused".into(),
        ingress: "default".into(),
        ..ev(EventType::HealthCheckFailed, "web", ms)
    }
}

#[test]
fn a_failure_after_healthy_does_not_blame_earlier_health_checks() {
    for became in [EventType::ServiceHealthy, EventType::ServiceReady] {
        let mut p = progress(&["web"]);
        p.render(&ev(EventType::ServiceStarting, "web", 0));
        for ms in [10, 20, 30, 40] {
            p.render(&refused(ms));
        }
        p.render(&ev(became.clone(), "web", 50));
        let exited = Event {
            error: "exit status 7".into(),
            ..ev(EventType::ServiceFailed, "web", 2050)
        };
        assert_eq!(
            p.render(&exited),
            ["  ✗ web   failed: exit status 7"],
            "after {became}"
        );
    }
}

#[test]
fn only_checks_failed_since_the_service_was_last_healthy_are_counted() {
    let mut p = progress(&["web"]);
    p.render(&refused(10));
    p.render(&ev(EventType::ServiceHealthy, "web", 20));
    p.render(&refused(30));
    let failed = Event {
        error: "exit status 1".into(),
        ..ev(EventType::ServiceFailed, "web", 40)
    };
    assert_eq!(
        p.render(&failed),
        ["  ✗ web   failed: exit status 1 (after 1 failed health check; last: dial tcp 127.0.0.1:5000: connection refused)"]
    );
}

#[test]
fn a_readiness_timeout_quoting_the_last_error_does_not_repeat_it() {
    let mut p = progress(&["web"]);
    for ms in [0, 1000, 2000] {
        p.render(&refused(ms));
    }
    let timeout = Event {
        error: "ingress \"default\": readiness check failed after 3s (last error: dial tcp \
                127.0.0.1:5000: connection refused)"
            .into(),
        ..ev(EventType::ServiceFailed, "web", 3000)
    };
    assert_eq!(
        p.render(&timeout),
        ["  ✗ web   failed: ingress \"default\": readiness check failed after 3s (last error: dial tcp 127.0.0.1:5000: connection refused) (after 3 failed health checks)"]
    );
}

#[test]
fn environment_failing_is_not_repeated_after_the_service_failure() {
    let mut p = progress(&["api"]);
    let failed = Event {
        error: "exit status 1".into(),
        ..ev(EventType::ServiceFailed, "api", 1)
    };
    assert_eq!(p.render(&failed), ["  ✗ api   failed: exit status 1"]);
    let failing = Event {
        error: "service \"api\": exit status 1".into(),
        ..ev(EventType::EnvironmentFailing, "api", 2)
    };
    assert!(p.render(&failing).is_empty());
    let artifact_failing = Event {
        error: "artifacts: go build ./cmd/api: exit status 2".into(),
        ..ev(EventType::EnvironmentFailing, "", 3)
    };
    assert_eq!(
        p.render(&artifact_failing),
        ["  ✗ artifacts: go build ./cmd/api: exit status 2"]
    );
}

#[test]
fn artifact_lines() {
    let mut p = progress(&["api"]);
    let art = |t, ms| Event {
        artifact: "go:./cmd/api".into(),
        ..ev(t, "", ms)
    };
    assert_eq!(
        p.render(&art(EventType::ArtifactStarted, 0)),
        ["  · building go:./cmd/api"]
    );
    assert_eq!(
        p.render(&art(EventType::ArtifactCompleted, 1500)),
        ["  ✓ built go:./cmd/api (1.50s)"]
    );
    assert_eq!(
        p.render(&art(EventType::ArtifactCached, 0)),
        ["  ✓ cached go:./cmd/api"]
    );
    let failed = Event {
        error: "exit status 2".into(),
        ..art(EventType::ArtifactFailed, 9)
    };
    assert_eq!(
        p.render(&failed),
        ["  ✗ go:./cmd/api failed: exit status 2"]
    );
}

#[test]
fn environment_up_lists_every_endpoint_and_the_env_dir() {
    let mut p = progress(&["api", "db", "worker"]);
    p.render(&ev(EventType::ServiceStarting, "db", 0));
    assert!(!p.is_up());
    let lines = p.render(&up_event(1520));
    assert!(p.is_up());
    assert_eq!(
        lines,
        [
            "  ✓ environment \"orders\" is up in 1.52s",
            "",
            "  api     admin    127.0.0.1:50013",
            "  api     default  http://127.0.0.1:50011",
            "  db      default  127.0.0.1:50012",
            "  worker  -        (no ingress)",
            "",
            "  env dir: /home/me/.rig/tmp/orders-1",
        ]
    );
}

fn http(source: &str, target: &str, status: u16, latency_ms: f64) -> Event {
    Event {
        request: Some(Box::new(RequestInfo {
            source: source.into(),
            target: target.into(),
            ingress: "default".into(),
            method: "GET".into(),
            path: "/orders?id=7".into(),
            status_code: status,
            latency_ms,
            ..RequestInfo::default()
        })),
        ..ev(EventType::RequestCompleted, "", 0)
    }
}

#[test]
fn traffic_is_shown_once_the_environment_is_up() {
    let mut p = progress(&["api", "db"]);
    assert!(
        p.render(&http("~test", "api", 200, 1.2)).is_empty(),
        "probes before up are hidden"
    );
    p.render(&up_event(10));

    assert_eq!(
        p.render(&http("~test", "api", 200, 1.2)),
        ["  ~test → api  GET /orders?id=7  200  1.2ms"]
    );
    assert_eq!(
        p.render(&http("api", "db", 503, 0.5)),
        ["  api → db  GET /orders?id=7  503  500µs"]
    );
    let mut probe = http("~test", "api", 200, 0.3);
    probe.request.as_mut().unwrap().probe = true;
    assert!(
        p.render(&probe).is_empty(),
        "probes after up are hidden too"
    );

    let grpc = |status: &str, message: &str| Event {
        grpc_call: Some(Box::new(GrpcCallInfo {
            source: "api".into(),
            target: "inventory".into(),
            service: "inv.v1.Inventory".into(),
            method: "Reserve".into(),
            grpc_status: status.into(),
            grpc_message: message.into(),
            latency_ms: 8.3,
            ..GrpcCallInfo::default()
        })),
        ..ev(EventType::GrpcCallCompleted, "", 0)
    };
    assert_eq!(
        p.render(&grpc("0", "")),
        ["  api → inventory  gRPC inv.v1.Inventory/Reserve  OK  8.3ms"]
    );
    assert_eq!(
        p.render(&grpc("5", "no such sku")),
        ["  api → inventory  gRPC inv.v1.Inventory/Reserve  NOT_FOUND  8.3ms  no such sku"]
    );
    let mut health = grpc("0", "");
    health.grpc_call.as_mut().unwrap().probe = true;
    assert!(p.render(&health).is_empty(), "a gRPC probe is hidden");

    let tcp = Event {
        connection: Some(Box::new(ConnectionInfo {
            source: "api".into(),
            target: "db".into(),
            ingress: "default".into(),
            bytes_in: 1229,
            bytes_out: 340,
            duration_ms: 12.4,
            ..ConnectionInfo::default()
        })),
        ..ev(EventType::ConnectionClosed, "", 0)
    };
    assert_eq!(p.render(&tcp), ["  api → db  TCP  12.4ms  1.2KB↑ 340B↓"]);
    let mut tcp_probe = tcp.clone();
    tcp_probe.connection.as_mut().unwrap().probe = true;
    assert!(p.render(&tcp_probe).is_empty(), "a TCP probe is hidden");
    let opened = Event {
        event_type: EventType::ConnectionOpened,
        ..tcp
    };
    assert!(p.render(&opened).is_empty(), "the close line says it all");

    let kafka = Event {
        kafka_request: Some(Box::new(KafkaRequestInfo {
            source: "api".into(),
            target: "kafka".into(),
            api_name: "Produce".into(),
            api_version: 9,
            latency_ms: 2.1,
            request_size: 2048,
            response_size: 64,
            ..KafkaRequestInfo::default()
        })),
        ..ev(EventType::KafkaRequestCompleted, "", 0)
    };
    assert_eq!(
        p.render(&kafka),
        ["  api → kafka  Produce v9  2.1ms  2.0KB↑ 64B↓"]
    );
}

#[test]
fn logs_only_with_the_flag_one_line_each_stderr_marked() {
    let names = vec!["api".to_string()];
    let mut quiet = Progress::new(Style::plain(), false, &names);
    let chunk = Event::log("api", LogStream::Stdout, "listening on :8080\nready\n");
    assert!(quiet.render(&chunk).is_empty());

    let mut p = Progress::new(Style::plain(), true, &names);
    assert_eq!(
        p.render(&chunk),
        ["    api  | listening on :8080", "    api  | ready"]
    );
    let err = Event::log("api", LogStream::Stderr, "panic: boom\r\n");
    assert_eq!(p.render(&err), ["    api  ! panic: boom"]);
    // rigd's remarks say what to fix: shown even without the flag.
    let remark = Event::log("api", LogStream::rig(), "$NOT_SET is not set\n");
    assert_eq!(quiet.render(&remark), ["    api  rig: $NOT_SET is not set"]);
}

#[test]
fn service_output_cannot_drive_the_terminal() {
    let names = vec!["api".to_string()];
    let chunk = Event::log(
        "api",
        LogStream::Stdout,
        "\x1b[32mok\x1b[0m \x1b[2J\x1b]0;title\x07 50%\r60%\n",
    );
    let mut plain = Progress::new(Style::plain(), true, &names);
    assert_eq!(
        plain.render(&chunk),
        [r"    api  | ok \u{1b}[2J\u{1b}]0;title\u{7} 50%\r60%"]
    );
    let mut colored = Progress::new(Style::new(true), true, &names);
    let line = &colored.render(&chunk)[0];
    assert!(
        line.ends_with("\x1b[32mok\x1b[0m \\u{1b}[2J\\u{1b}]0;title\\u{7} 50%\\r60%\x1b[0m"),
        "{line:?}"
    );
}

#[test]
fn environment_down_prints_the_failure_summary() {
    let mut p = progress(&["broken"]);
    let down = Event {
        message: "environment failed:\n  service \"broken\": exit status 1\n\n  broken output:\n  | intentional failure".into(),
        ..ev(EventType::EnvironmentDown, "", 50)
    };
    assert_eq!(
        p.render(&down),
        [
            "",
            "environment failed:",
            "  service \"broken\": exit status 1",
            "",
            "  broken output:",
            "  | intentional failure",
        ]
    );
    let bare = ev(EventType::EnvironmentDown, "", 60);
    assert_eq!(
        p.render(&bare),
        ["", "  ✗ the environment shut down unexpectedly"]
    );
}

/// A build's compiler output is printed once, with the build's failure; the environment's
/// failure, the summary and rigd's final report then cut it to its first line.
#[test]
fn a_failed_build_is_printed_in_full_once() {
    let mut p = progress(&["api"]);
    let error = "cargo build /src/api: exit status 101\nerror[E0425]: cannot find value\n --> src/main.rs:3:20";
    let failed = Event {
        artifact: "cargo:/src/api".into(),
        error: error.into(),
        ..ev(EventType::ArtifactFailed, "", 10)
    };
    let lines = p.render(&failed);
    assert_eq!(lines, [format!("  ✗ cargo:/src/api failed: {error}")]);
    let failing = Event {
        error: format!("artifact \"cargo:/src/api\": {error}"),
        ..ev(EventType::EnvironmentFailing, "", 11)
    };
    assert!(p.render(&failing).is_empty());
    let down = Event {
        message: format!(
            "environment failed:\n  artifact \"cargo:/src/api\": {error}\n\n   0.01s  artifact.failed  \
             cargo:/src/api cargo build /src/api: exit status 101 …"
        ),
        ..ev(EventType::EnvironmentDown, "", 12)
    };
    assert_eq!(
        p.render(&down),
        [
            "",
            "environment failed:",
            "  artifact \"cargo:/src/api\": cargo build /src/api: exit status 101 (in full above)",
            "",
            "   0.01s  artifact.failed  cargo:/src/api cargo build /src/api: exit status 101 …",
        ]
    );
    let report = format!(
        "rig: environment failed: artifact \"cargo:/src/api\": {}\n",
        error.replace('\n', "\nrig:   ")
    );
    assert_eq!(
        p.without_repeats(&report, "rig:   "),
        "rig: environment failed: artifact \"cargo:/src/api\": cargo build /src/api: exit status \
         101 (in full above)\n"
    );
}

#[test]
fn a_teardown_by_someone_else_is_announced_not_called_unexpected() {
    let mut p = progress(&["api"]);
    assert_eq!(
        p.render(&ev(EventType::EnvironmentDestroying, "", 0)),
        ["  ! the environment is being torn down (by rig down, its TTL or rigd shutting down)"]
    );
    assert!(p.render(&ev(EventType::EnvironmentDown, "", 10)).is_empty());
}

#[test]
fn a_teardown_by_rigd_says_why() {
    let mut p = progress(&["api"]);
    let mut destroying = ev(EventType::EnvironmentDestroying, "", 0);
    destroying.message = "its TTL (1m0s) passed without word from a client".into();
    assert_eq!(
        p.render(&destroying),
        ["  ! the environment is being torn down: its TTL (1m0s) passed without word from a client"]
    );
}

#[test]
fn teardown_shows_stops_and_no_surprise() {
    let mut p = progress(&["api"]);
    assert!(p
        .render(&ev(EventType::ServiceStopped, "api", 0))
        .is_empty());
    assert_eq!(
        p.render(&ev(EventType::EnvironmentDestroying, "", 0)),
        ["  ! the environment is being torn down (by rig down, its TTL or rigd shutting down)"]
    );
    p.set_tearing_down();
    assert!(p
        .render(&ev(EventType::EnvironmentDestroying, "", 0))
        .is_empty());
    assert_eq!(
        p.render(&ev(EventType::ServiceStopped, "api", 1)),
        ["  ■ api   stopped"]
    );
    assert!(p
        .render(&ev(EventType::ServiceStopped, "~test", 1))
        .is_empty());
    assert!(p.render(&ev(EventType::EnvironmentDown, "", 2)).is_empty());
}

#[test]
fn stalls_notes_and_callbacks() {
    let mut p = progress(&["api", "db"]);
    let stall = Event {
        diagnostic: Some(Box::new(DiagnosticSnapshot {
            stalled_for: "30s".into(),
            services: vec![
                ServiceSnapshot {
                    name: "api".into(),
                    phase: "waiting".into(),
                    waiting_on: vec!["db".into()],
                    running: String::new(),
                },
                ServiceSnapshot {
                    name: "db".into(),
                    phase: "starting".into(),
                    waiting_on: vec![],
                    running: String::new(),
                },
            ],
        })),
        ..ev(EventType::ProgressStall, "", 0)
    };
    assert_eq!(
        p.render(&stall),
        [
            "  ! no progress for 30s",
            "      api: waiting (waiting on db)",
            "      db: starting"
        ]
    );
    let note = Event {
        error: "expected 200, got 500".into(),
        ..ev(EventType::TestNote, "", 0)
    };
    assert_eq!(p.render(&note), ["  ! note: expected 200, got 500"]);
    let cb = Event {
        callback: Some(Box::new(CallbackRequest {
            request_id: "r1".into(),
            name: "_hook_1".into(),
            kind: CallbackKind::Hook,
            wiring: None,
        })),
        ..ev(EventType::CallbackRequest, "api", 0)
    };
    assert_eq!(
        p.render(&cb),
        ["  ! api   needs client function \"_hook_1\" (hook), which rig up cannot run; it is answered with an error"]
    );
}

#[test]
fn colour_on_paints_marks_and_statuses() {
    let names = vec!["api".to_string()];
    let mut p = Progress::new(Style::new(true), false, &names);
    let ready = p.render(&ev(EventType::ServiceReady, "api", 0)).join("");
    assert!(ready.contains("\x1b[32m✓\x1b[0m"), "{ready:?}");
    assert!(
        ready.contains("\x1b[38;2;108;166;224mapi \x1b[0m"),
        "{ready:?}"
    );
}
