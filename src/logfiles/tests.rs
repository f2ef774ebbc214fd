//! Tests of writing whole log files and of the pretty timeline's layout.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rig_types::{
    ConnectionInfo, DiagnosticSnapshot, Event, EventType, GrpcCallInfo, KafkaRequestInfo,
    LogStream, RequestInfo, ServiceSnapshot, Timestamp,
};

use super::*;

/// 2023-11-14T22:13:20Z plus `millis`.
fn at(mut e: Event, millis: i128) -> Arc<Event> {
    e.environment = "TestOrders".into();
    e.timestamp = Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + millis * 1_000_000);
    Arc::new(e)
}

fn svc(t: EventType, s: &str) -> Event {
    Event::for_service(t, s)
}

fn request(source: &str, method: &str, path: &str, status: u16, latency_ms: f64) -> Event {
    let mut e = Event::new(EventType::RequestCompleted);
    e.request = Some(Box::new(RequestInfo {
        source: source.into(),
        target: "api".into(),
        ingress: "default".into(),
        method: method.into(),
        path: path.into(),
        status_code: status,
        latency_ms,
        ..RequestInfo::default()
    }));
    e
}

fn connection(t: EventType, bytes_in: i64, bytes_out: i64, duration_ms: f64) -> Event {
    let mut e = Event::new(t);
    e.connection = Some(Box::new(ConnectionInfo {
        source: "api".into(),
        target: "db".into(),
        ingress: "default".into(),
        bytes_in,
        bytes_out,
        duration_ms,
        ..ConnectionInfo::default()
    }));
    e
}

/// A crashed run touching every kind of line, with sequence numbers assigned in order.
fn crashed_run() -> Vec<Arc<Event>> {
    let mut probe = request("~test", "GET", "/health", 200, 1.25);
    if let Some(r) = probe.request.as_mut() {
        r.probe = true;
    }
    let mut failed_exchange = request("~test", "GET", "/slow", 502, 30000.0);
    if let Some(r) = failed_exchange.request.as_mut() {
        r.error = "target did not answer: connection reset".into();
    }
    let mut grpc = Event::new(EventType::GrpcCallCompleted);
    grpc.grpc_call = Some(Box::new(GrpcCallInfo {
        source: "api".into(),
        target: "temporal".into(),
        ingress: "default".into(),
        service: "temporal.v1.WorkflowService".into(),
        method: "StartWorkflowExecution".into(),
        grpc_status: "5".into(),
        grpc_message: "namespace not found".into(),
        latency_ms: 3.0,
        ..GrpcCallInfo::default()
    }));
    let mut kafka = Event::new(EventType::KafkaRequestCompleted);
    kafka.kafka_request = Some(Box::new(KafkaRequestInfo {
        source: "api".into(),
        target: "kafka".into(),
        ingress: "default".into(),
        api_key: 0,
        api_name: "Produce".into(),
        api_version: 9,
        correlation_id: 7,
        latency_ms: 2.5,
        request_size: 120,
        response_size: 60,
        ..KafkaRequestInfo::default()
    }));
    let mut dropped = Event::new(EventType::ObservationsDropped);
    dropped.dropped = 3;
    dropped.message = "3 traffic observations on api → db (default) were not recorded".into();
    let mut stall = Event::new(EventType::ProgressStall);
    stall.diagnostic = Some(Box::new(DiagnosticSnapshot {
        stalled_for: "30s".into(),
        services: vec![
            ServiceSnapshot {
                name: "api".into(),
                phase: "published".into(),
                waiting_on: vec!["db".into(), "temporal".into()],
                running: String::new(),
            },
            ServiceSnapshot {
                name: "db".into(),
                phase: "starting".into(),
                waiting_on: vec![],
                running: String::new(),
            },
        ],
    }));
    let mut artifact = Event::new(EventType::ArtifactCached);
    artifact.artifact = "cargo:/src/api".into();

    let events = vec![
        at(artifact, 0),
        at(svc(EventType::IngressPublished, "api"), 1),
        at(svc(EventType::ServiceStarting, "broken"), 3),
        at(
            Event::log(
                "broken",
                LogStream::Stderr,
                "starting\nintentional failure\n\n",
            ),
            10,
        ),
        at(
            svc(EventType::HealthCheckFailed, "api").with_error("connection refused"),
            50,
        ),
        at(svc(EventType::ServiceReady, "api"), 101),
        at(probe, 120),
        at(request("~test", "POST", "/orders", 500, 12.5), 130),
        at(request("~test", "GET", "/orders?id=1", 200, 0.75), 140),
        at(failed_exchange, 145),
        at(connection(EventType::ConnectionOpened, 0, 0, 0.0), 150),
        at(
            connection(EventType::ConnectionProgress, 100, 200, 50.0),
            200,
        ),
        at(
            connection(EventType::ConnectionClosed, 1536, 1_048_576, 100.0),
            250,
        ),
        at(grpc, 260),
        at(kafka, 270),
        at(dropped, 280),
        at(
            svc(EventType::ServiceFailed, "broken").with_error("exit status 1"),
            300,
        ),
        at(
            svc(EventType::EnvironmentFailing, "broken")
                .with_error("service \"broken\": exit status 1"),
            301,
        ),
        at(stall, 302),
        at(
            Event::new(EventType::TestNote)
                .with_error("orders_test.rs:42:5: expected 200, got 500"),
            310,
        ),
        at(
            Event::log(
                "api",
                LogStream::rig(),
                "ended with exit status 2 when told to stop\n",
            ),
            1240,
        ),
        at(
            Event::new(EventType::EnvironmentDown).with_message("environment failed: ..."),
            1250,
        ),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            Arc::make_mut(&mut e).seq = i as u64 + 1;
            e
        })
        .collect()
}

#[test]
fn pretty_timeline_layout() {
    let events = crashed_run();
    let header = LogHeader::for_events(
        "TestOrders",
        &events,
        &BTreeSet::from(["~test".to_string()]),
        "",
        Timestamp::now(),
    );
    let expected = "\
rig: TestOrders  CRASHED  1.25s  [api, broken]
   0.00s  artifact.cached        cargo:/src/api
   0.00s  ingress.published      api
   0.00s  service.starting       broken
   0.10s  service.ready          api
   0.12s  request.completed      ~test      → api        GET    /health        200  1.2ms  (probe)
   0.13s  request.completed      ~test      → api        POST   /orders        500  12.5ms
   0.14s  request.completed      ~test      → api        GET    /orders?id=1   200  0.8ms
   0.14s  request.completed      ~test      → api        GET    /slow          502  30000.0ms  error: target did not answer: connection reset
   0.20s  connection.progress    api        → db         50.0ms  100B↑ 200B↓  (open)
   0.25s  connection.closed      api        → db         100.0ms  1536B↑ 1048576B↓
   0.26s  grpc.call.completed    api        → temporal   temporal.v1.WorkflowService/StartWorkflowExecution  5  3.0ms
   0.27s  kafka.request.completed api        → kafka      Produce v9  cid:7  2.5ms
   0.28s  proxy.observations_dropped 3 traffic observations on api → db (default) were not recorded
   0.30s  service.failed         broken       exit status 1
          | starting
          | intentional failure
   0.30s  environment.failing    broken       service \"broken\": exit status 1
   0.30s  progress.stall         no progress for 30s
                                   api: published — waiting on db, temporal
                                   db: starting
   0.31s  test.note              orders_test.rs:42:5: expected 200, got 500
   1.24s  service.log            api          rig: ended with exit status 2 when told to stop
   1.25s  environment.down

  Traffic:
    api        → db         1 connections  1.0MB total
    api        → kafka      1 Kafka requests  avg 2.5ms
    api        → temporal   1 gRPC calls  avg 3.0ms
    ~test      → api        3 requests   avg 10004.4ms  (1 failed)
    3 traffic observations were not recorded (observation fell behind)
";
    let actual = render_pretty(&header, &events);
    assert_eq!(actual, expected, "actual:\n{actual}");
}

#[test]
fn pretty_without_traffic_has_no_traffic_block() {
    let events = vec![
        at(svc(EventType::ServiceReady, "api"), 0),
        at(Event::new(EventType::EnvironmentUp), 20),
    ];
    let header = LogHeader::for_events("t", &events, &BTreeSet::new(), "", Timestamp::now());
    assert_eq!(
        render_pretty(&header, &events),
        "rig: t  PASSED  0.02s  [api]\n   0.00s  service.ready          api\n   0.02s  environment.up\n"
    );
}

/// An exchange observed late (logged after `environment.destroying`) is shown where it ended.
#[test]
fn pretty_places_an_exchange_at_the_time_it_ended() {
    let mut late = request("~test", "GET", "/late", 500, 2.0);
    if let Some(r) = late.request.as_mut() {
        r.started_at = Some(Timestamp::from_unix_nanos(1_700_000_000_030_000_000));
        r.duration_ms = Some(5.0);
    }
    let events = vec![
        at(Event::new(EventType::EnvironmentUp), 0),
        at(Event::new(EventType::EnvironmentDestroying), 100),
        at(late, 150),
        at(Event::new(EventType::EnvironmentDown), 200),
    ];
    let header = LogHeader::for_events("t", &events, &BTreeSet::new(), "", Timestamp::now());
    let text = render_pretty(&header, &events);
    let lines: Vec<&str> = text.lines().skip(1).take(4).collect();
    assert!(lines[0].contains("environment.up"), "{text}");
    assert!(
        lines[1].starts_with("   0.04s  request.completed") && lines[1].contains("/late"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("   0.10s  environment.destroying"),
        "{text}"
    );
    assert!(lines[3].starts_with("   0.20s  environment.down"), "{text}");
}

#[test]
fn format_bytes_uses_binary_units() {
    assert_eq!(format_bytes(0), "0B");
    assert_eq!(format_bytes(1023), "1023B");
    assert_eq!(format_bytes(1024), "1.0KB");
    assert_eq!(format_bytes(1536), "1.5KB");
    assert_eq!(format_bytes(1_048_576), "1.0MB");
    assert_eq!(format_bytes(1_048_577 + 1536), "1.0MB");
}

#[test]
fn write_logs_writes_both_files_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("rig").join("logs");
    let events = crashed_run();
    let injected = BTreeSet::from(["~test".to_string()]);
    let files = write_logs(
        &logs,
        "TestOrders/crash case",
        "18bcfe5-0a1b2c3d",
        LogEvents::whole(&events),
        &injected,
        "test_failed",
        DEFAULT_RETENTION,
    )
    .unwrap();
    assert_eq!(
        files.jsonl,
        logs.join("TestOrders_crash_case-18bcfe5-0a1b2c3d.jsonl")
    );
    assert_eq!(
        files.pretty,
        Ok(logs.join("TestOrders_crash_case-18bcfe5-0a1b2c3d.log"))
    );
    let pretty_path = files.pretty.clone().unwrap();
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&logs), 0o700);
    assert_eq!(mode(&files.jsonl), 0o600);
    assert_eq!(mode(&pretty_path), 0o600);
    let mut names: Vec<String> = fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "TestOrders_crash_case-18bcfe5-0a1b2c3d.jsonl",
            "TestOrders_crash_case-18bcfe5-0a1b2c3d.log"
        ],
        "no temporary file is left"
    );

    let text = fs::read_to_string(&files.jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), events.len() + 1);
    let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["type"], "log.header");
    assert_eq!(header["environment"], "TestOrders/crash case");
    assert_eq!(header["outcome"], "crashed");
    assert_eq!(header["services"], serde_json::json!(["api", "broken"]));
    assert_eq!(header["duration_ms"], 1250);
    let written: Timestamp = header["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(Timestamp::now().duration_since(&written) < rig_types::GoDuration::from_secs(60));
    assert_eq!(files.header.outcome, Some(Outcome::Crashed));
    for (line, event) in lines[1..].iter().zip(&events) {
        let back: Event = serde_json::from_str(line).unwrap();
        assert_eq!(&back, event.as_ref());
    }

    let pretty = fs::read_to_string(&pretty_path).unwrap();
    assert!(pretty.starts_with("rig: TestOrders/crash case  CRASHED  1.25s  [api, broken]\n"));
    assert!(pretty.ends_with("(observation fell behind)\n"));
}

#[test]
fn reason_test_failed_marks_the_outcome() {
    let root = tempfile::tempdir().unwrap();
    let events = vec![at(svc(EventType::ServiceReady, "api"), 0)];
    let files = write_logs(
        root.path(),
        "t",
        "1-2",
        LogEvents::whole(&events),
        &BTreeSet::new(),
        REASON_TEST_FAILED,
        DEFAULT_RETENTION,
    )
    .unwrap();
    let first = fs::read_to_string(&files.jsonl).unwrap();
    assert!(
        first.starts_with(r#"{"type":"log.header","environment":"t","outcome":"failed","services":["api"],"duration_ms":0,"#),
        "{first}"
    );
}

#[test]
fn no_events_is_an_error_after_pruning() {
    let root = tempfile::tempdir().unwrap();
    let old = root.path().join("old-1.jsonl");
    fs::File::create(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(73 * 3600))
        .unwrap();
    let err = write_logs(
        root.path(),
        "empty",
        "1-2",
        LogEvents::whole(&[]),
        &BTreeSet::new(),
        "",
        DEFAULT_RETENTION,
    )
    .unwrap_err();
    assert!(matches!(err, LogFileError::NoEvents { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("\"empty\" (1-2) recorded no events"));
    assert!(!old.exists(), "pruning runs before the empty check");
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn an_unwritable_directory_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let events = vec![at(svc(EventType::ServiceReady, "api"), 0)];
    let err = write_logs(
        &file.join("logs"),
        "t",
        "1-2",
        LogEvents::whole(&events),
        &BTreeSet::new(),
        "",
        DEFAULT_RETENTION,
    )
    .unwrap_err();
    assert!(matches!(err, LogFileError::CreateDir { .. }), "{err}");
    assert!(
        err.to_string().starts_with("create log directory "),
        "{err}"
    );
}

#[test]
fn a_timeline_that_cannot_be_written_keeps_the_complete_jsonl() {
    let root = tempfile::tempdir().unwrap();
    let events = crashed_run();
    // Something that is not a file where the timeline goes: it cannot be replaced.
    let in_the_way = root.path().join("t-1-2.log");
    fs::create_dir(&in_the_way).unwrap();
    fs::write(in_the_way.join("keep"), "x").unwrap();
    let files = write_logs(
        root.path(),
        "t",
        "1-2",
        LogEvents::whole(&events),
        &BTreeSet::new(),
        "",
        DEFAULT_RETENTION,
    )
    .unwrap();
    let error = files.pretty.clone().unwrap_err();
    assert!(
        error.starts_with(&format!("write log file {}: ", in_the_way.display())),
        "{error}"
    );
    let text = fs::read_to_string(&files.jsonl).unwrap();
    assert_eq!(text.lines().count(), events.len() + 1, "{text}");
    assert!(in_the_way.join("keep").exists());
    let mut names: Vec<String> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["t-1-2.jsonl", "t-1-2.log"],
        "no temporary file is left"
    );
}
