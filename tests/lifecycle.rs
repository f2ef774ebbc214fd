//! Environment lifecycles through the real `rigd` binary: event orders on the SSE stream, the
//! GET/list/DELETE views, dependency order, readiness timeouts, crashes, and many environments
//! at once. Services are real processes (`sh`, `python3 -m http.server`).

mod support;

use std::collections::HashSet;

use rig_types::EventType::{self, *};
use rigd::cli::client::DeleteOptions;
use serde_json::json;
use support::{assert_no_processes_under, http_service, processes_with_env, sh, Rigd};

/// `service`'s events on the stream, without the readiness probe failures that may come
/// before `service.healthy`.
fn without_probe_failures(types: Vec<EventType>) -> Vec<EventType> {
    types
        .into_iter()
        .filter(|t| *t != HealthCheckFailed)
        .collect()
}

#[tokio::test]
async fn single_service_up_and_down_with_views_and_exact_event_order() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "single", "services": {"api": http_service()}}))
        .await;
    let mut events = rigd.events(&id);
    let up = events.until(EnvironmentUp).await;
    let endpoint = up.ingresses["api"]["default"].clone();
    assert!(endpoint.hostport.starts_with("127.0.0.1:"), "{endpoint:?}");
    assert!(!up.ingresses.contains_key("~test"), "{:?}", up.ingresses);
    assert!(std::path::Path::new(&up.env_dir).join("api").is_dir());

    // GET shows the service ready with its ingress; injected nodes are hidden.
    let env = rigd.client().get_environment(&id).await.expect("GET");
    assert_eq!(
        (env.id.as_str(), env.name.as_str()),
        (id.as_str(), "single")
    );
    assert_eq!(env.services.keys().collect::<Vec<_>>(), ["api"]);
    let api = &env.services["api"];
    assert_eq!(api.status.as_str(), "ready");
    let published = api.ingresses.as_ref().expect("api has ingresses");
    // Observe mode is on by default: the test is handed its proxy's address, while GET shows
    // the service's own ingress.
    assert_ne!(published["default"].hostport, endpoint.hostport);
    assert!(published["default"].hostport.starts_with("127.0.0.1:"));
    assert_eq!(published["default"].protocol.as_str(), "http");

    // The list has it, with its real services only.
    let list = rigd.list().await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(list[0]["name"], json!("single"));
    assert_eq!(list[0]["services"], json!(["api"]));
    assert!(list[0]["remaining_ttl"].is_string(), "{list:?}");

    // DELETE answers exactly {id, status, env_dir} once every service has stopped.
    let response = rigd
        .request("DELETE", &format!("/environments/{id}"), &[], None)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"id": id, "status": "destroyed", "env_dir": up.env_dir})
    );
    assert!(
        !std::path::Path::new(&up.env_dir).exists(),
        "env dir removed"
    );
    let down = events.until(EnvironmentDown).await;
    assert_eq!(down.message, "", "a clean shutdown has no summary");
    let after = events.try_next(support::WAIT).await;
    assert!(after.is_none(), "the stream ends after down: {after:?}");

    assert_eq!(
        without_probe_failures(events.service_types("api")),
        [
            IngressPublished,
            ServiceStarting,
            ServiceHealthy,
            ServiceReady,
            ServiceStopping,
            ServiceStopped
        ]
    );
    assert_eq!(
        events.service_types("~test"),
        [
            WiringResolved,
            ServiceStarting,
            ServiceHealthy,
            ServiceReady,
            ServiceStopping,
            ServiceStopped
        ]
    );
    let environment: Vec<_> = events
        .seen()
        .iter()
        .filter(|e| e.service.is_empty() && !e.event_type.is_traffic())
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(
        environment,
        [EnvironmentUp, EnvironmentDestroying, EnvironmentDown]
    );
    // The readiness probes of the test's proxy were recorded, and marked as probes.
    assert!(
        events
            .seen()
            .iter()
            .filter_map(|e| e.request.as_ref())
            .any(|r| r.probe && r.source == "~test" && r.target == "api"),
        "{}",
        support::describe(events.seen())
    );
    // `up` follows every ready, and DELETE's `destroying` comes right after it: nothing
    // happened in between.
    let up_at = events.position(EnvironmentUp, "");
    assert!(events.position(ServiceReady, "api") < up_at);
    assert!(events.position(ServiceReady, "~test") < up_at);
    // (Traffic events are delivered by the proxies' observers on their own schedule, so a
    // late probe record may land in between; lifecycle events may not.)
    let destroying_at = events.position(EnvironmentDestroying, "");
    assert!(
        events.seen()[up_at + 1..destroying_at]
            .iter()
            .all(|e| e.event_type.is_traffic()),
        "{}",
        support::describe(events.seen())
    );
    assert!(events.seen().iter().all(|e| e.environment == "single"));

    // Gone everywhere.
    for (method, path) in [
        ("GET", format!("/environments/{id}")),
        ("DELETE", format!("/environments/{id}")),
        ("GET", format!("/environments/{id}/events")),
        ("GET", format!("/environments/{id}/log")),
    ] {
        let response = rigd.request(method, &path, &[], None).await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.text());
        assert_eq!(response.json(), json!({"error": "environment not found"}));
    }
    assert!(rigd.list().await.is_empty());
}

#[tokio::test]
async fn a_dependency_chain_starts_each_service_after_its_dependency_is_ready() {
    let rigd = Rigd::start();
    let mut app = http_service();
    app["egresses"] = json!({"database": {"service": "db"}});
    let mut db = http_service();
    db["egresses"] = json!({"cache": {"service": "cache"}});
    let id = rigd
        .create(json!({"name": "chain", "services": {
            "app": app, "db": db, "cache": http_service()
        }}))
        .await;
    let mut events = rigd.events(&id);
    events.until(EnvironmentUp).await;

    for (dependant, dependency) in [("db", "cache"), ("app", "db")] {
        let ready = events.position(ServiceReady, dependency);
        let first = events
            .seen()
            .iter()
            .position(|e| e.service == dependant)
            .expect("the dependant has events");
        assert!(
            ready < first,
            "{dependant} acted before {dependency} was ready:\n{}",
            support::describe(events.seen())
        );
        assert_eq!(
            without_probe_failures(events.service_types(dependant)),
            [
                WiringResolved,
                IngressPublished,
                ServiceStarting,
                ServiceHealthy,
                ServiceReady
            ],
            "{dependant}"
        );
    }
    assert!(events.position(ServiceReady, "app") < events.position(EnvironmentUp, ""));
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

/// A TCP ingress on a loopback address is ready once the kernel says a socket listening
/// there accepts connections: rigd does not connect to find out, so the first connection
/// the service accepts is the test's. (The long probe interval holds the first probe until
/// the port listens; a probe would have made the test's connection the second.)
#[tokio::test]
async fn a_tcp_ingress_is_found_ready_without_a_connection_to_the_service() {
    let rigd = Rigd::start();
    let counter = rigd.script(
        "counter.py",
        "import os, socket\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', int(os.environ['PORT'])))\n\
         s.listen(16)\n\
         n = 0\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   n += 1\n\
         \x20   c.sendall(b'connection %d\\n' % n)\n\
         \x20   c.close()\n",
    );
    let id = rigd
        .create(
            json!({"name": "tcp-ready", "observe": false, "services": {"counter": {
                "type": "process",
                "config": {"command": "python3"},
                "args": [counter],
                "ingresses": {"default": {"protocol": "tcp", "ready": {"interval": "20s"}}}
            }}}),
        )
        .await;
    let mut events = rigd.events(&id);
    let up = events.until(EnvironmentUp).await;
    assert!(
        !events.saw(HealthCheckFailed),
        "{}",
        support::describe(events.seen())
    );
    let hostport = &up.ingresses["counter"]["default"].hostport;
    let mut stream = tokio::net::TcpStream::connect(hostport.as_str())
        .await
        .expect("connect to the service");
    let mut greeting = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut greeting)
        .await
        .expect("read the greeting");
    assert_eq!(greeting, "connection 1\n");
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

#[tokio::test]
async fn a_readiness_timeout_fails_with_the_last_probe_error() {
    let rigd = Rigd::start();
    let mut sleeper = sh("exec sleep 3600");
    sleeper["ingresses"] = json!({"default": {"protocol": "http", "ready": {"timeout": "200ms"}}});
    let id = rigd
        .create(json!({"name": "slow", "services": {"sleeper": sleeper}}))
        .await;
    let mut events = rigd.events(&id);
    let down = events.until(EnvironmentDown).await;
    assert!(!events.saw(EnvironmentUp));

    let probes: Vec<_> = events
        .seen()
        .iter()
        .filter(|e| e.event_type == HealthCheckFailed)
        .collect();
    assert!(!probes.is_empty(), "no health.check_failed");
    for probe in &probes {
        assert_eq!(
            (probe.service.as_str(), probe.ingress.as_str()),
            ("sleeper", "default")
        );
        assert!(!probe.error.is_empty(), "{probe:?}");
    }
    let failed = &events.seen()[events.position(ServiceFailed, "sleeper")];
    assert!(
        failed
            .error
            .starts_with("ingress \"default\": readiness check failed after 200ms (last error: "),
        "{}",
        failed.error
    );
    assert!(
        failed
            .error
            .contains("; nothing it runs listens on a TCP port (it should listen on "),
        "{}",
        failed.error
    );
    assert!(
        down.message
            .contains("readiness check failed after 200ms (last error:"),
        "{}",
        down.message
    );
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE after a failure");
}

/// A service that ignores the port rigd gave it and listens on one of its own fails its
/// readiness with an error that names the port it listens on and the variable to read.
#[tokio::test]
async fn a_service_listening_on_its_own_port_is_told_to_use_port() {
    let rigd = Rigd::start();
    let mut stubborn = json!({"type": "process", "config": {"command": "python3"}, "args": ["-c",
        "import socket, time\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', 0))\n\
         s.listen()\n\
         print('own port', s.getsockname()[1], flush=True)\n\
         time.sleep(3600)\n"]});
    stubborn["ingresses"] = json!({"default": {"protocol": "tcp", "ready": {"timeout": "1s"}}});
    let id = rigd
        .create(json!({"name": "stubborn", "services": {"api": stubborn}}))
        .await;
    let mut events = rigd.events(&id);
    let failed = events.until(ServiceFailed).await;
    events.until(EnvironmentDown).await;
    let own = rigd
        .log(&id)
        .await
        .iter()
        .find_map(|e| {
            let line = &e.log.as_ref()?.data;
            Some(line.strip_prefix("own port ")?.trim().to_string())
        })
        .expect("the service printed its port");
    let told = format!("; it listens on port {own}, not on ");
    assert!(
        failed.error.contains(&told)
            && failed
                .error
                .contains(", the port given to it as $PORT: make it listen on $PORT"),
        "{}",
        failed.error
    );
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE after a failure");
}

#[tokio::test]
async fn a_missing_working_directory_is_named_as_such() {
    let rigd = Rigd::start();
    let mut service = sh("exit 0");
    service["config"]["dir"] = json!("/nonexistent/rig-test-dir");
    let id = rigd
        .create(json!({"name": "nodir", "services": {"svc": service}}))
        .await;
    let mut events = rigd.events(&id);
    events.until(EnvironmentDown).await;
    let failed = &events.seen()[events.position(ServiceFailed, "svc")];
    assert!(
        failed.error.starts_with("start /")
            && failed.error.ends_with(
                "sh: the working directory /nonexistent/rig-test-dir does not exist (the config's \
             or the spec's \"dir\")"
            ),
        "{}",
        failed.error
    );
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE after a failure");
}

#[tokio::test]
async fn a_crash_tears_down_the_others_and_the_summary_has_its_stderr() {
    let rigd = Rigd::start();
    let mut broken = sh("echo starting; echo intentional failure >&2; exit 1");
    broken["ingresses"] = json!({"default": {"protocol": "http"}});
    let id = rigd
        .create(json!({"name": "crash", "services": {
            "api": http_service(), "broken": broken
        }}))
        .await;
    let mut events = rigd.events(&id);
    let down = events.until(EnvironmentDown).await;
    assert!(
        !events.saw(EnvironmentUp),
        "a crashed environment never came up"
    );

    let failed = &events.seen()[events.position(ServiceFailed, "broken")];
    assert_eq!(failed.error, "exit status 1");
    let failing_at = events.position(EnvironmentFailing, "broken");
    let failing = &events.seen()[failing_at];
    assert_eq!(failing.error, "service \"broken\": exit status 1");
    for service in ["api", "broken", "~test"] {
        assert!(
            events.position(ServiceStopped, service) < failing_at,
            "{service} stopped before environment.failing"
        );
    }
    assert!(down.message.contains("broken output:"), "{}", down.message);
    assert!(
        down.message.contains("intentional failure"),
        "{}",
        down.message
    );
    assert!(
        !down.message.contains("service.stopping"),
        "{}",
        down.message
    );

    // Every child is gone once the environment is down, before any DELETE.
    let env_dir = rigd.rig_dir().join("tmp").join(&id);
    assert_no_processes_under(&env_dir);
    let deleted = rigd
        .client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE after a crash");
    assert_eq!(deleted.status, "destroyed");
    // No `environment.destroying` or anything else after `down`: the stream just ends.
    let after = events.try_next(support::WAIT).await;
    assert!(after.is_none(), "event after environment.down: {after:?}");
}

#[tokio::test]
async fn twenty_environments_in_parallel_get_distinct_ports_and_leave_no_process() {
    const ENVIRONMENTS: usize = 20;
    let rigd = Rigd::start();
    let mut tasks = Vec::new();
    for n in 0..ENVIRONMENTS {
        let client = rigd.client().clone();
        let spec = support::with_path(json!({
            "name": format!("parallel-{n:02}"),
            "services": {"web": http_service(), "api": http_service()}
        }));
        tasks.push(tokio::spawn(async move {
            let id = client.create_environment(&spec).await.expect("create").id;
            let mut events = support::Events::from_client(&client, &id);
            let up = events.until(EnvironmentUp).await;
            (id, up)
        }));
    }
    let mut ups = Vec::new();
    for task in tasks {
        ups.push(task.await.expect("environment task"));
    }

    let mut ports = HashSet::new();
    for (_, up) in &ups {
        for service in ["web", "api"] {
            let hostport = &up.ingresses[service]["default"].hostport;
            assert!(ports.insert(hostport.clone()), "{hostport} published twice");
        }
    }
    assert_eq!(ports.len(), 2 * ENVIRONMENTS);
    let all = format!("RIG_ENV_DIR={}", rigd.rig_dir().join("tmp").display());
    assert_eq!(
        processes_with_env(&all).len(),
        2 * ENVIRONMENTS,
        "one process per service while up"
    );
    assert_eq!(rigd.list().await.len(), ENVIRONMENTS);

    let mut deletes = Vec::new();
    for (id, _) in &ups {
        let client = rigd.client().clone();
        let id = id.clone();
        deletes.push(tokio::spawn(async move {
            client
                .delete_environment(&id, &DeleteOptions::default())
                .await
                .expect("DELETE")
        }));
    }
    for delete in deletes {
        assert_eq!(delete.await.expect("delete task").status, "destroyed");
    }
    assert!(rigd.list().await.is_empty());
    assert_no_processes_under(&rigd.rig_dir().join("tmp"));
}

/// Sends `POST path` with `body` to `addr` on a connection of its own and returns the answer.
fn post(addr: &str, path: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the proxy");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: api\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    stream.write_all(body).expect("send the body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// An HTTP server that reads each POST's body before it answers `204` (`http.server` alone
/// answers POSTs `501` without reading them, so how much of a body the proxy sees would be a
/// race).
const UPLOAD_SERVER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// With `--event-memory 0`, every observed exchange (and line of output) goes to the spill
/// file in the environment directory as soon as it is recorded; the event stream, the log and
/// the log files written at teardown still have every one, bodies included, and the spill file
/// goes with the environment.
#[tokio::test]
async fn events_beyond_the_memory_budget_are_spilled_to_the_env_dir_and_still_delivered() {
    const EXCHANGES: usize = 20;
    let rigd = Rigd::start_with(&["--event-memory", "0"]);
    let (id, up) = rigd
        .up(json!({"name": "spilling", "services": {"api": {
            "type": "process",
            "config": {"command": "python3"},
            "args": ["-c", UPLOAD_SERVER],
            "ingresses": {"default": {"protocol": "http"}}
        }}}))
        .await;
    let proxy = up.ingresses["api"]["default"].hostport.clone();
    let bodies: Vec<Vec<u8>> = (0..EXCHANGES)
        .map(|i| vec![b'a' + (i % 26) as u8; 8192 + i])
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        let answer = post(&proxy, &format!("/upload/{i}"), body);
        assert!(answer.starts_with("HTTP/1."), "{answer}");
    }

    let uploads = |events: &[rig_types::Event]| -> Vec<(String, Vec<u8>)> {
        events
            .iter()
            .filter_map(|e| e.request.as_ref())
            .filter(|r| r.path.starts_with("/upload/"))
            .map(|r| (r.path.clone(), r.request_body.clone().unwrap_or_default()))
            .collect()
    };
    let expected: Vec<(String, Vec<u8>)> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| (format!("/upload/{i}"), body.clone()))
        .collect();
    // The stream from the start, read back from the spill file.
    let mut events = rigd.events(&id);
    let last = format!("/upload/{}", EXCHANGES - 1);
    events
        .until_matching("the last upload", |e| {
            e.request.as_ref().is_some_and(|r| r.path == last)
        })
        .await;
    assert_eq!(uploads(events.seen()), expected);
    // The whole log, too.
    assert_eq!(uploads(&rigd.log(&id).await), expected);

    // Every exchange (and probe) is in the spill file, one JSON line each, with the server's
    // output; lifecycle events are not.
    let spill = std::path::Path::new(&up.env_dir).join(rigd::events::SPILL_FILE);
    let text = std::fs::read_to_string(&spill).expect("the spill file");
    let spilled: Vec<rig_types::Event> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a spilled event"))
        .collect();
    assert!(spilled
        .iter()
        .all(|e| e.event_type.is_traffic() || e.event_type == ServiceLog));
    assert_eq!(uploads(&spilled), expected);

    // The log files written at teardown have every exchange whole, read back in batches.
    let response = rigd
        .request("DELETE", &format!("/environments/{id}?log=true"), &[], None)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(!spill.exists(), "the spill file goes with the env dir");
    let jsonl = response.json()["log_file"]
        .as_str()
        .expect("a log file")
        .to_string();
    let logged: Vec<rig_types::Event> = std::fs::read_to_string(jsonl)
        .expect("the JSONL log")
        .lines()
        .skip(1)
        .map(|line| serde_json::from_str(line).expect("a logged event"))
        .collect();
    assert_eq!(uploads(&logged), expected);
    assert!(logged.iter().any(|e| e.event_type == EnvironmentDown));
}

#[tokio::test]
async fn an_environment_ends_soon_after_the_rig_up_that_owns_it_is_killed() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let rigd = Rigd::start_with(&["--orphan-grace", "1s"]);
    let spec = rigd.scratch().join("spec.json");
    let text = json!({"name": "killed-up", "services": {"api": http_service()}});
    std::fs::write(&spec, text.to_string()).expect("write the spec");
    let mut up = Command::new(env!("CARGO_BIN_EXE_rig"))
        .arg("up")
        .arg(&spec)
        .args(["--server", rigd.addr(), "--color", "never"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rig up");
    // `environment "killed-up" (<id>) on rigd <addr>`
    let stdout = BufReader::new(up.stdout.take().expect("stdout"));
    let id = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let rest = line.strip_prefix("environment \"killed-up\" (")?;
            Some(rest.split_once(')')?.0.to_string())
        })
        .expect("rig up names the environment it created");
    let mut events = rigd.events(&id);
    let env_dir = events.until(EnvironmentUp).await.env_dir;

    up.kill().expect("kill rig up");
    up.wait().expect("reap rig up");
    let destroying = events.until(EnvironmentDestroying).await;
    assert!(
        destroying
            .message
            .contains("disconnected 1s ago without ending it"),
        "{destroying:?}"
    );
    events.until(EnvironmentDown).await;
    assert_no_processes_under(std::path::Path::new(&env_dir));

    // The stream ends once the log files are written and the environment is no longer
    // listed; `rig explain` tells what happened.
    assert!(events.try_next(support::WAIT).await.is_none());
    let listed = rigd.client().list_environments().await.expect("list");
    assert!(listed.is_empty(), "{listed:?}");
    let explain = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["explain", "--pretty", "--color", "never", &id])
        .env("RIG_DIR", rigd.rig_dir())
        .output()
        .expect("run rig explain");
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.status.success(), "{text}");
    assert!(
        text.contains(
            "Ended by rigd:\n    the client that created it (a test process or `rig up`) \
                       disconnected 1s ago"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn an_environment_being_torn_down_is_listed_as_such() {
    use std::process::Command;

    let rigd = Rigd::start_with(&["--stop-grace", "60s"]);
    // Told to stop, it waits until the test lets it go, so its teardown lasts until then
    // however slow the machine is.
    let go = rigd.scratch().join("go");
    let stubborn = sh(&format!(
        "trap 'while [ ! -e {go} ]; do sleep 0.05; done; exit 0' INT; echo started; \
         while :; do sleep 0.05; done",
        go = go.display()
    ));
    let id = rigd
        .create(json!({"name": "slow-stop", "services": {"stubborn": stubborn}}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    // Its trap is set.
    events.until_printed("stubborn", "started\n").await;
    let client = rigd.client().clone();
    let delete = {
        let id = id.clone();
        tokio::spawn(async move {
            client
                .delete_environment(&id, &DeleteOptions::default())
                .await
        })
    };
    events.until(ServiceStopping).await;

    let listed = rigd.client().list_environments().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].id.as_str(), listed[0].status.as_str()),
        (id.as_str(), "destroying")
    );
    let ps = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["ps", "--server", rigd.addr(), "--color", "never"])
        .output()
        .expect("run rig ps");
    let text = String::from_utf8_lossy(&ps.stdout);
    assert_eq!(text.trim(), format!("slow-stop  {id}  tearing down"));

    std::fs::write(&go, "").unwrap();
    delete.await.expect("join").expect("DELETE");
    let listed = rigd.client().list_environments().await.expect("list");
    assert!(listed.is_empty(), "{listed:?}");
}

/// A service that needed SIGKILL, or answered SIGINT with a failure, is remarked on in its
/// log (stream `rig`) as the environment is torn down; one that died of SIGINT is not.
#[tokio::test]
async fn an_unclean_stop_is_remarked_on_in_the_service_log() {
    let rigd = Rigd::start_with(&["--stop-grace", "1s"]);
    // Each has set its trap once it has printed `started`.
    let remarks = rigd
        .remarks_at_teardown(
            json!({"name": "stops", "services": {
                "polite": sh("echo started; exec sleep 3600"),
                // `wait` returns at once on a trapped signal; the background sleep ignores SIGINT
                // (as every asynchronous command of a non-interactive shell does).
                "grumpy": sh("trap 'exit 3' INT; echo started; sleep 3600 & wait"),
                "stubborn": sh("trap '' INT; echo started; exec sleep 3600"),
            }}),
            &["polite", "grumpy", "stubborn"],
        )
        .await;
    assert_eq!(
        remarks,
        [
            (
                "grumpy".to_string(),
                "ended with exit status 3 when told to stop (SIGINT)\n".to_string()
            ),
            // Its background sleep ignores SIGINT, and is killed once the grace is over.
            (
                "grumpy".to_string(),
                "other processes of its group did not exit within 1s of SIGINT, so they were \
                 killed (SIGKILL); have them exit on SIGINT, or give rigd a longer --stop-grace\n"
                    .to_string()
            ),
            (
                "stubborn".to_string(),
                "did not exit within 1s of SIGINT, so it was killed (SIGKILL); have it exit on \
                 SIGINT, or give rigd a longer --stop-grace\n"
                    .to_string()
            ),
        ]
    );
}

/// A wrapper that exits at once on SIGINT, leaving the rest of its group to stop (as
/// `python3 wrapper.py child.py`): `argv[1]` is the child script, the rest its arguments.
const WRAPPER: &str = r#"
import os, signal, subprocess, sys
signal.signal(signal.SIGINT, lambda *_: os._exit(0))
child = subprocess.Popen([sys.executable] + sys.argv[1:])
while True:
    signal.pause()
"#;

/// A child that takes a moment to shut down on SIGINT, then writes the file `argv[1]`.
const SLOW_CHILD: &str = r#"
import os, signal, sys, time
def stop(*_):
    time.sleep(0.5)
    open(sys.argv[1], "w").write("finished")
    os._exit(0)
signal.signal(signal.SIGINT, stop)
print("started", flush=True)
while True:
    signal.pause()
"#;

/// A child that ignores SIGINT.
const DEAF_CHILD: &str = r#"
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
print("started", flush=True)
while True:
    signal.pause()
"#;

/// When the leader of a service's group exits on SIGINT without waiting for the rest of its
/// group, the rest still get the grace period to shut down; those that outlive it are killed,
/// and that is remarked on.
#[tokio::test]
async fn the_rest_of_a_group_gets_the_grace_period_when_its_leader_exits_first() {
    let rigd = Rigd::start_with(&["--stop-grace", "3s"]);
    let wrapper = rigd.script("wrapper.py", WRAPPER);
    let slow = rigd.script("slow.py", SLOW_CHILD);
    let deaf = rigd.script("deaf.py", DEAF_CHILD);
    let finished = rigd.scratch().join("finished");
    let python = |args: Vec<String>| json!({"type": "process", "config": {"command": "python3"}, "args": args});
    let remarks = rigd
        .remarks_at_teardown(
            json!({"name": "wrapped", "services": {
                "polite": python(vec![wrapper.clone(), slow, finished.display().to_string()]),
                "deaf": python(vec![wrapper, deaf]),
            }}),
            &["polite", "deaf"],
        )
        .await;
    assert_eq!(
        std::fs::read_to_string(&finished).ok().as_deref(),
        Some("finished"),
        "the child was killed before it finished shutting down"
    );
    assert_eq!(
        remarks,
        [(
            "deaf".to_string(),
            "other processes of its group did not exit within 3s of SIGINT, so they were \
             killed (SIGKILL); have them exit on SIGINT, or give rigd a longer --stop-grace\n"
                .to_string()
        )]
    );
}

/// A process that left its service's group and its run tag, and keeps writing to the
/// service's stdout: once the service is down, rigd no longer reads it (the pipe is closed,
/// and nothing more goes into the log).
#[tokio::test]
async fn output_of_an_escaped_process_is_not_read_after_teardown() {
    let rigd = Rigd::start();
    let pidfile = rigd.scratch().join("writer.pid");
    let script = rigd.script(
        "escape.sh",
        &format!(
            "env -u RIG_RUN setsid sh -c 'while :; do echo tick; sleep 0.05; done' &\n\
             echo $! > {pidfile}\nexec sleep 1000\n",
            pidfile = pidfile.display()
        ),
    );
    let id = rigd
        .create(json!({"name": "escape", "services": {
            "leaky": {"type": "process", "config": {"command": "sh"}, "args": [script]},
        }}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    events.until(EnvironmentUp).await;
    events.until_printed("leaky", "tick\n").await;
    let read_pid = || {
        std::fs::read_to_string(&pidfile)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    };
    support::wait_until("the escaped writer's pid file", || read_pid().is_some());
    let writer = read_pid().expect("a pid");
    // Killed whatever happens to the test.
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // SAFETY: kill(2) of the process this test made escape.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let _writer = KillOnDrop(writer);
    let pipe = std::fs::read_link(format!("/proc/{writer}/fd/1")).expect("the writer's stdout");
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
    events.until(EnvironmentDown).await;
    let rigd_fds = format!("/proc/{}/fd", rigd.pid());
    support::wait_until("rigd closing the escaped writer's pipe", || {
        !std::fs::read_dir(&rigd_fds)
            .expect("rigd's fds")
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == pipe))
    });
}
