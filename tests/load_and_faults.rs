//! Load and fault tests of the real `rigd` binary ("rigd robustness", item 8): many
//! environments at once leave no process and no file descriptor behind; clients that drop
//! an SSE stream mid-way, never answer a callback, or own a process that ignores SIGINT do
//! not hang or leak anything in rigd.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rig_types::EventType::{self, *};
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::{http_service, processes_with_env, Events, Rigd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Environments created at once by the load test.
const ENVIRONMENTS: usize = 50;
/// How long a condition on rigd's descriptors or on processes may take to come true.
const SETTLE: Duration = Duration::from_secs(10);
/// Descriptors rigd may hold beyond its warmed-up count once everything is gone. Not zero,
/// because a few descriptors legitimately come and go independently of the environments:
/// the accepted connection of a request that is just finishing (the DELETEs, the list),
/// and files rigd opens briefly (the log directory, the reaper's pid record) while the
/// count is sampled; the warm-up already created the lazily opened ones. Five is far below
/// what a real leak adds: the load holds ~1150 descriptors, about 23 per environment.
const FD_SLACK: usize = 5;

/// A tiny TCP server on `$PORT` that accepts and closes connections: the lightest real
/// service Python can run (`-S` skips `site`, so start-up is a few tens of milliseconds).
const TCP_SERVER: &str = "\
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ['HOST'], int(os.environ['PORT'])))
s.listen(64)
while True:
    s.accept()[0].close()
";

/// Waits until `cond` holds, checking every 20 ms; panics with `what()` after [`SETTLE`].
async fn eventually(mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + SETTLE;
    while !cond() {
        assert!(Instant::now() < deadline, "after {SETTLE:?}: {}", what());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `RIG_ENV_DIR=` prefix every service process of `rigd` carries.
fn env_prefix(rigd: &Rigd) -> String {
    format!("RIG_ENV_DIR={}", rigd.rig_dir().join("tmp").display())
}

/// Five services, four of them TCP servers with an ingress, wired in a chain plus a fan-in:
/// `gateway -> api -> db`, `worker -> api`, `cron -> db` (`cron` has no ingress).
/// `server` is the path of [`TCP_SERVER`], written once before environments are created
/// concurrently (rewriting it while another service starts would hand Python a truncated
/// file).
fn five_service_spec(server: &str, name: &str) -> Value {
    let tcp = |egresses: &[&str]| {
        let egresses: BTreeMap<_, _> = egresses
            .iter()
            .map(|to| (to.to_string(), json!({"service": to})))
            .collect();
        json!({
            "type": "process",
            "config": {"command": "python3"},
            "args": ["-S", server],
            "ingresses": {"default": {"protocol": "tcp"}},
            "egresses": egresses,
        })
    };
    let mut cron = support::sh("exec sleep 1000");
    cron["egresses"] = json!({"db": {"service": "db"}});
    json!({"name": name, "services": {
        "gateway": tcp(&["api"]),
        "api": tcp(&["db"]),
        "db": tcp(&[]),
        "worker": tcp(&["api"]),
        "cron": cron,
    }})
}

/// Creates one five-service environment, waits for `environment.up` and returns its id and
/// the endpoints of its `ingress.published` events.
async fn create_up(rigd: &Rigd, server: &str, name: String) -> (String, Vec<String>) {
    let id = rigd.create(five_service_spec(server, &name)).await;
    let mut events = rigd.events(&id);
    events.until(EnvironmentUp).await;
    let published = events
        .seen()
        .iter()
        .filter(|e| e.event_type == IngressPublished)
        .map(|e| {
            e.endpoint
                .as_ref()
                .unwrap_or_else(|| panic!("ingress.published without an endpoint: {e:?}"))
                .hostport
                .clone()
        })
        .collect();
    (id, published)
}

async fn delete(rigd: &Rigd, id: &str) {
    rigd.client()
        .delete_environment(id, &DeleteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("DELETE {id}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_environments_come_up_and_go_away_without_leaking() {
    let rigd = Rigd::start();
    let prefix = env_prefix(&rigd);
    let server = rigd.script("tcp_server.py", TCP_SERVER);

    // Warm-up: lazily created descriptors (proxy runtime, log directory, reaper pipe) exist
    // from here on.
    let (id, _) = create_up(&rigd, &server, "warmup".into()).await;
    delete(&rigd, &id).await;
    eventually(
        || processes_with_env(&prefix).is_empty(),
        || format!("warm-up processes left: {:#?}", processes_with_env(&prefix)),
    )
    .await;
    let fds_before = rigd.open_fds();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..ENVIRONMENTS {
        let rigd = &rigd;
        tasks.push(create_up(rigd, &server, format!("load-{n}")));
    }
    let created = futures_util::future::join_all(tasks).await;
    let up_after = started.elapsed();
    let fds_up = rigd.open_fds();

    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (id, published) in &created {
        // Observe mode: 4 service ingresses, 4 proxies on the test's edges to them and 4 on
        // the service-to-service edges.
        assert_eq!(published.len(), 12, "{id} published {published:?}");
        for hostport in published {
            if let Some(other) = owner.insert(hostport.clone(), id.clone()) {
                panic!("{hostport} published by both {other} and {id}");
            }
        }
    }
    let running = processes_with_env(&prefix).len();
    assert!(
        running >= ENVIRONMENTS * 5,
        "{running} service processes for {ENVIRONMENTS} environments of 5"
    );

    let deleting = Instant::now();
    futures_util::future::join_all(created.iter().map(|(id, _)| delete(&rigd, id))).await;
    let down_after = deleting.elapsed();
    assert!(
        rigd.list().await.is_empty(),
        "environments left: {:?}",
        rigd.list().await
    );
    support::assert_no_processes_under(&rigd.rig_dir().join("tmp"));
    // Accepted connections of the DELETE requests close asynchronously; wait for the count
    // rather than sample it once.
    eventually(
        || rigd.open_fds() <= fds_before + FD_SLACK,
        || {
            format!(
                "rigd holds {} descriptors, {fds_before} before the load",
                rigd.open_fds()
            )
        },
    )
    .await;
    eprintln!(
        "{ENVIRONMENTS}x5 services: up in {up_after:?}, down in {down_after:?}; rigd fds: \
         {fds_before} before, {fds_up} while up, {} after",
        rigd.open_fds()
    );
}

/// Opens `/environments/{id}/events` on a raw connection, reads until `frames` events have
/// arrived and drops the connection mid-stream.
async fn read_then_drop_sse(rigd: &Rigd, id: &str, frames: usize) {
    let mut stream = tokio::net::TcpStream::connect(rigd.addr())
        .await
        .expect("connect to rigd");
    let request = format!(
        "GET /environments/{id}/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        rigd.addr()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read_enough = async {
        while String::from_utf8_lossy(&seen).matches("\ndata:").count() < frames {
            let n = stream.read(&mut buf).await.expect("read the SSE stream");
            assert!(
                n > 0,
                "rigd closed the stream early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(support::WAIT, read_enough)
        .await
        .expect("SSE events within the deadline");
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    drop(stream);
}

#[tokio::test]
async fn clients_dropping_sse_streams_leak_nothing() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "sse-drop", "services": {"web": http_service()}}))
        .await;
    rigd.events(&id).until(EnvironmentUp).await;
    read_then_drop_sse(&rigd, &id, 3).await;
    let fds_before = rigd.open_fds();

    for _ in 0..20 {
        read_then_drop_sse(&rigd, &id, 3).await;
    }
    eventually(
        || rigd.open_fds() <= fds_before + 1,
        || {
            format!(
                "rigd holds {} descriptors after 20 dropped streams, {fds_before} before",
                rigd.open_fds()
            )
        },
    )
    .await;

    eprintln!(
        "20 dropped SSE streams: rigd fds {fds_before} before, {} after",
        rigd.open_fds()
    );
    rigd.client()
        .health()
        .await
        .expect("rigd is healthy after dropped streams");
    let view = rigd
        .client()
        .get_environment(&id)
        .await
        .expect("GET the environment");
    assert!(view.services.contains_key("web"), "{view:?}");
    delete(&rigd, &id).await;
    support::assert_no_processes_under(&rigd.rig_dir().join("tmp"));
}

#[tokio::test]
async fn an_unanswered_hook_fails_the_service_after_callback_timeout() {
    let rigd = Rigd::start();
    let mut api = http_service();
    api["hooks"] = json!({"init": [{"type": "client_func", "client_func": {"name": "migrate"}}]});
    let id = rigd
        .create(json!({"name": "no-answer", "callback_timeout": "500ms", "services": {"api": api}}))
        .await;
    let mut events = rigd.events(&id);
    events.until(CallbackRequest).await;
    let asked = Instant::now();
    let failed = events.until(ServiceFailed).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(400),
        "failed {:?} after the request, before the 500ms timeout",
        asked.elapsed()
    );
    assert_eq!(failed.service, "api");
    assert_eq!(
        failed.error,
        "callback \"migrate\" response not received within 500ms — client may have disconnected"
    );
    let down = events.until(EnvironmentDown).await;
    assert!(
        !events.saw(EnvironmentUp),
        "{}",
        support::describe(events.seen())
    );
    assert!(
        down.message
            .contains("callback \"migrate\" response not received"),
        "environment.down explains the failure: {down:?}"
    );
    delete(&rigd, &id).await;
    support::assert_no_processes_under(&rigd.rig_dir().join("tmp"));
}

/// A `client_func` hook's own `timeout` replaces the environment's `callback_timeout`.
#[tokio::test]
async fn a_hooks_own_timeout_replaces_the_callback_timeout() {
    let rigd = Rigd::start();
    let mut api = http_service();
    api["hooks"] = json!({"init": [{"type": "client_func", "client_func": {"name": "migrate"},
                                    "timeout": "300ms"}]});
    let id = rigd
        .create(json!({"name": "hook-timeout", "callback_timeout": "1m", "services": {"api": api}}))
        .await;
    let mut events = rigd.events(&id);
    events.until(CallbackRequest).await;
    let failed = events.until(ServiceFailed).await;
    assert_eq!(
        failed.error,
        "callback \"migrate\" response not received within 300ms — client may have disconnected"
    );
    delete(&rigd, &id).await;
}

#[tokio::test]
async fn a_process_ignoring_sigint_is_killed_after_the_grace_period() {
    let rigd = Rigd::start_with(&["--stop-grace", "1s"]);
    let script = rigd.script(
        "stubborn.sh",
        "trap '' INT\necho \"stubborn pid $$\"\nwhile :; do sleep 0.2; done\n",
    );
    let (id, _events, pid) = up_with_shell(&rigd, "stubborn", &script).await;
    assert!(support::is_alive(pid), "the shell {pid} runs before DELETE");

    let deleting = Instant::now();
    delete(&rigd, &id).await;
    let took = deleting.elapsed();
    assert!(!support::is_alive(pid), "the shell {pid} survived DELETE");
    assert!(
        took >= Duration::from_millis(900),
        "DELETE took {took:?}: the process cannot have ignored SIGINT for the 1s grace"
    );
    assert!(
        took < Duration::from_secs(4),
        "DELETE took {took:?}: --stop-grace 1s was not applied (default is 5s)"
    );
    support::assert_no_processes_under(&rigd.rig_dir().join("tmp"));
}

/// A service frozen with SIGSTOP when it is torn down (a debugger, a test that paused it)
/// still gets to act on SIGINT: it exits at once instead of being killed (SIGKILL) at the end
/// of the grace period.
#[tokio::test]
async fn a_frozen_process_is_stopped_gracefully_not_killed() {
    let rigd = Rigd::start_with(&["--stop-grace", "10s"]);
    let script = rigd.script(
        "frozen.sh",
        "echo \"frozen pid $$\"\nkill -STOP $$\nwhile :; do sleep 0.2; done\n",
    );
    let (id, mut events, pid) = up_with_shell(&rigd, "frozen", &script).await;
    eventually(
        || process_state(pid) == Some('T'),
        || {
            format!(
                "the shell {pid} did not stop itself: {:?}",
                process_state(pid)
            )
        },
    )
    .await;

    delete(&rigd, &id).await;
    assert!(!support::is_alive(pid), "the shell {pid} survived DELETE");
    events.until(EnvironmentDown).await;
    let killed: Vec<&str> = events
        .seen()
        .iter()
        .filter_map(|e| e.log.as_ref())
        .filter(|l| l.stream.is_rig() && l.data.contains("SIGKILL"))
        .map(|l| l.data.as_str())
        .collect();
    assert_eq!(killed, Vec::<&str>::new(), "the frozen shell was killed");
}

/// Brings up environment `name` with one service `name` running `sh script`, which first
/// prints `<name> pid <its pid>`: the environment's id, its events (with the output) read up
/// to `environment.up`, and the shell's pid.
async fn up_with_shell(rigd: &Rigd, name: &str, script: &str) -> (String, Events, u32) {
    let id = rigd
        .create(json!({"name": name, "services": {
            name: {"type": "process", "config": {"command": "sh"}, "args": [script]}
        }}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    let marker = format!("{name} pid");
    let line = events
        .until_matching("the pid line", |e| {
            e.event_type == EventType::ServiceLog
                && e.log.as_ref().is_some_and(|l| l.data.contains(&marker))
        })
        .await;
    let data = &line.log.as_ref().expect("a log entry").data;
    let pid: u32 = data
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {data:?}"));
    if !events.saw(EnvironmentUp) {
        events.until(EnvironmentUp).await;
    }
    (id, events, pid)
}

/// The state letter of process `pid` (`R`, `S`, `T`, ...; field 3 of `/proc/<pid>/stat`).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}
