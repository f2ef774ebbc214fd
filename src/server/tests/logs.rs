//! Log files and the condensed summary at teardown: DELETE `?log=true`, TTL expiry and
//! shutdown.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{request, Harness};
use crate::server::ServerOptions;

const PATIENCE: Duration = Duration::from_secs(30);

/// A harness writing log files to `logs`.
fn harness(logs: &Path) -> Harness {
    Harness::with_options(ServerOptions {
        idle_timeout: Duration::ZERO,
        log_dir: Some(logs.to_path_buf()),
        ..ServerOptions::default()
    })
}

fn idle_spec(name: &str) -> Value {
    json!({"name": name, "services": {"w": {"type": "custom"}}})
}

/// The first line of a JSONL file, parsed.
fn header(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(text.lines().next().expect("a header line")).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[tokio::test]
async fn delete_with_log_after_a_crash_writes_files_and_a_summary() {
    let logs = tempfile::tempdir().unwrap();
    let h = harness(logs.path());
    let spec = json!({"name": "crash test", "services": {
        "broken": {
            "type": "process",
            "config": {"command": "sh"},
            "args": ["-c", "echo intentional failure >&2; exit 1"],
            "ingresses": {"default": {"protocol": "http"}}
        }
    }});
    let id = h.create(spec).await;
    let mut sse = h.events(&id, None).await;
    sse.until("environment.down", PATIENCE).await;

    let reply = h
        .call(request(
            Method::DELETE,
            &format!("/environments/{id}?log=true"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["status"], "destroyed");
    let jsonl = PathBuf::from(body["log_file"].as_str().expect("log_file"));
    let pretty = PathBuf::from(body["log_file_pretty"].as_str().expect("log_file_pretty"));
    assert_eq!(jsonl, logs.path().join(format!("crash_test-{id}.jsonl")));
    assert_eq!(pretty, logs.path().join(format!("crash_test-{id}.log")));
    assert!(jsonl.is_file() && pretty.is_file());
    assert_eq!((mode(&jsonl), mode(&pretty)), (0o600, 0o600));

    let head = header(&jsonl);
    assert_eq!(head["type"], "log.header");
    assert_eq!(head["environment"], "crash test");
    assert_eq!(head["outcome"], "crashed");
    assert_eq!(head["services"], json!(["broken"]), "~test is injected");
    // Every event follows the header, service output included.
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert!(text.contains("\"type\":\"service.log\""), "{text}");
    assert!(text.lines().skip(1).all(|l| l.starts_with("{\"seq\":")));

    let summary = body["summary"].as_str().expect("summary");
    assert!(summary.contains("broken"), "{summary}");
    assert!(summary.contains("intentional failure"), "{summary}");
    assert!(summary.lines().all(|l| l.starts_with("rig: ")), "{summary}");

    let timeline = std::fs::read_to_string(&pretty).unwrap();
    assert!(
        timeline.starts_with("rig: crash test  CRASHED  "),
        "{timeline}"
    );
    assert!(
        timeline.contains("          | intentional failure"),
        "{timeline}"
    );
}

#[tokio::test]
async fn log_fields_appear_only_when_asked_for_and_summary_only_when_non_empty() {
    let logs = tempfile::tempdir().unwrap();
    let h = harness(logs.path());

    let quiet = h.create(idle_spec("quiet")).await;
    h.events(&quiet, None)
        .await
        .until("environment.up", PATIENCE)
        .await;
    let body = h
        .call(request(Method::DELETE, &format!("/environments/{quiet}")))
        .await
        .json();
    assert_eq!(body["status"], "destroyed");
    assert!(body.get("log_file").is_none() && body.get("summary").is_none());
    assert!(files_in(logs.path()).is_empty(), "no log=true, no files");

    let failed = h.create(idle_spec("failed")).await;
    h.events(&failed, None)
        .await
        .until("environment.up", PATIENCE)
        .await;
    let body = h
        .call(request(
            Method::DELETE,
            &format!("/environments/{failed}?reason=test_failed&log=true"),
        ))
        .await
        .json();
    let jsonl = PathBuf::from(body["log_file"].as_str().expect("log_file"));
    assert_eq!(header(&jsonl)["outcome"], "failed");
    assert!(
        body.get("summary").is_none(),
        "nothing explains this failure: {body}"
    );
    assert_eq!(
        files_in(logs.path()),
        [
            format!("failed-{failed}.jsonl"),
            format!("failed-{failed}.log")
        ]
    );
}

/// A service that writes a line to stderr and exits at once.
fn crashing_spec(name: &str) -> Value {
    json!({"name": name, "services": {
        "broken": {
            "type": "process",
            "config": {"command": "sh"},
            "args": ["-c", "echo intentional failure >&2; exit 1"],
            "ingresses": {"default": {"protocol": "http"}}
        }
    }})
}

#[tokio::test]
async fn a_log_write_failure_leaves_the_fields_out_and_keeps_the_summary() {
    let root = tempfile::tempdir().unwrap();
    let not_a_dir = root.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let h = harness(&not_a_dir.join("logs"));
    let id = h.create(crashing_spec("unwritable")).await;
    h.events(&id, None)
        .await
        .until("environment.down", PATIENCE)
        .await;
    let reply = h
        .call(request(
            Method::DELETE,
            &format!("/environments/{id}?log=true"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["status"], "destroyed");
    assert!(body.get("log_file").is_none(), "{body}");
    assert!(body.get("log_file_pretty").is_none(), "{body}");
    let error = body["log_error"].as_str().expect("log_error");
    assert!(error.starts_with("create log directory "), "{body}");
    let summary = body["summary"].as_str().expect("summary");
    assert!(summary.contains("intentional failure"), "{summary}");
}

#[tokio::test]
async fn a_timeline_that_cannot_be_written_keeps_the_jsonl_and_the_summary() {
    let logs = tempfile::tempdir().unwrap();
    let h = harness(logs.path());
    let id = h.create(crashing_spec("no-timeline")).await;
    h.events(&id, None)
        .await
        .until("environment.down", PATIENCE)
        .await;
    // A directory where the timeline goes: it cannot be written, the JSONL can.
    let in_the_way = logs.path().join(format!("no-timeline-{id}.log"));
    std::fs::create_dir(&in_the_way).unwrap();
    std::fs::write(in_the_way.join("keep"), "x").unwrap();
    let reply = h
        .call(request(
            Method::DELETE,
            &format!("/environments/{id}?log=true"),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let jsonl = PathBuf::from(body["log_file"].as_str().expect("log_file"));
    assert_eq!(header(&jsonl)["outcome"], "crashed");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert!(text.contains("\"type\":\"environment.down\""), "{text}");
    assert!(body.get("log_file_pretty").is_none(), "{body}");
    let error = body["log_error"].as_str().expect("log_error");
    assert!(
        error.starts_with(&format!("write log file {}: ", in_the_way.display())),
        "{body}"
    );
    let summary = body["summary"].as_str().expect("summary");
    assert!(summary.contains("intentional failure"), "{summary}");
    assert_eq!(
        files_in(logs.path()),
        [
            format!("no-timeline-{id}.jsonl"),
            format!("no-timeline-{id}.log")
        ]
    );
}

#[tokio::test]
async fn without_a_logs_directory_log_true_writes_nothing() {
    let h = Harness::new();
    let id = h.create(idle_spec("nolog")).await;
    let body = h
        .call(request(
            Method::DELETE,
            &format!("/environments/{id}?log=true"),
        ))
        .await
        .json();
    assert_eq!(body["status"], "destroyed");
    assert!(body.get("log_file").is_none(), "{body}");
}

#[tokio::test(start_paused = true)]
async fn ttl_expiry_writes_log_files() {
    let logs = tempfile::tempdir().unwrap();
    let h = Harness::with_options(ServerOptions {
        // The idle countdown starts once the expired environment is gone, which is after its
        // log files are written: expiry of the idle timer is the signal to look.
        idle_timeout: Duration::from_secs(1),
        log_dir: Some(logs.path().to_path_buf()),
        ..ServerOptions::default()
    });
    let id = h
        .create(json!({"name": "expiring", "ttl": "1m", "services": {"w": {"type": "custom"}}}))
        .await;
    h.state.idle().expired().await;
    let jsonl = logs.path().join(format!("expiring-{id}.jsonl"));
    assert_eq!(
        files_in(logs.path()),
        [format!("expiring-{id}.jsonl"), format!("expiring-{id}.log")]
    );
    let head = header(&jsonl);
    assert_eq!(head["outcome"], "passed", "ttl_expired is not a failure");
    assert_eq!(head["services"], json!(["w"]));
}

/// A teardown that began before the shutdown (a DELETE, here) is waited for: its log files
/// are written before rigd goes.
#[tokio::test]
async fn shutdown_waits_for_teardowns_already_in_progress() {
    let logs = tempfile::tempdir().unwrap();
    let (h, stopping, gate) = Harness::gated(ServerOptions {
        idle_timeout: Duration::ZERO,
        log_dir: Some(logs.path().to_path_buf()),
        ..ServerOptions::default()
    });
    let id = h
        .create(json!({"name": "slow", "services": {"s": {"type": "custom"}}}))
        .await;
    let app = h.app();
    let uri = format!("/environments/{id}?log=true");
    let delete = tokio::spawn(async move {
        use tower::ServiceExt;
        app.oneshot(request(Method::DELETE, &uri)).await.unwrap()
    });
    stopping.notified().await;

    // Still stopping: the shutdown's grace runs out waiting for it.
    let report = h.state.shutdown(Duration::from_millis(50)).await;
    assert_eq!(report.timed_out, std::slice::from_ref(&id));
    gate.add_permits(1);
    let report = h.state.shutdown(PATIENCE).await;
    assert!(report.timed_out.is_empty(), "{:?}", report.timed_out);
    assert_eq!(
        files_in(logs.path()),
        [format!("slow-{id}.jsonl"), format!("slow-{id}.log")]
    );
    assert_eq!(delete.await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn shutdown_writes_log_files_of_every_environment() {
    let logs = tempfile::tempdir().unwrap();
    let h = harness(logs.path());
    let a = h.create(idle_spec("a")).await;
    let b = h.create(idle_spec("b")).await;
    let report = h.state.shutdown(PATIENCE).await;
    assert_eq!(report.torn_down.len(), 2);
    assert_eq!(
        files_in(logs.path()),
        [
            format!("a-{a}.jsonl"),
            format!("a-{a}.log"),
            format!("b-{b}.jsonl"),
            format!("b-{b}.log")
        ]
    );
    let jsonl = logs.path().join(format!("a-{a}.jsonl"));
    let text = std::fs::read_to_string(jsonl).unwrap();
    assert!(
        text.contains("\"type\":\"environment.down\""),
        "the log is complete"
    );
}
