//! Harness for the black-box tests of the real `rigd` binary (`lifecycle`, `service_env`,
//! `callbacks`, `api`).
//!
//! [`Rigd::start`] runs `CARGO_BIN_EXE_rigd` on `127.0.0.1:0` with a private rig dir and no
//! idle timeout, waits for its addr file and hands out a [`RigdClient`]; dropping it sends
//! SIGTERM (SIGKILL after [`STOP_DEADLINE`]) and reaps it. [`Events`] follows an
//! environment's SSE stream with a deadline on every wait, and panics with the events seen so
//! far when the wanted one does not come. [`Rigd::request`] speaks raw HTTP/1.1 for the tests
//! that need to control headers or see exact bodies. [`processes_with_env`] reads `/proc` to
//! find the children of an environment (they all carry `RIG_ENV_DIR`).
//!
//! The CLI tests have their own harness in `tests/cli_support/` (they start rigd through the
//! CLI's auto-start); this one starts the binary directly.

#![allow(dead_code)] // Each test binary uses its own subset.

pub mod clients;
pub mod images;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rig_types::{Event, EventType};
use rigd::cli::client::{DeleteOptions, RigdClient};
use rigd::cli::event_stream::EventStream;
use serde_json::{json, Value};

/// A `process` script for an environment whose `db` egress is a postgres service: it writes
/// the names in table `items`, in id order, to `items.txt` in its temp dir (whole, by rename)
/// and keeps running.
pub const PSQL_ITEMS_READER: &str =
    "PGHOST=$DB_PGHOST PGPORT=$DB_PGPORT PGUSER=$DB_PGUSER PGPASSWORD=$DB_PGPASSWORD \
     PGDATABASE=$DB_PGDATABASE psql -X -tA -c 'SELECT name FROM items ORDER BY id' \
     > \"$RIG_TEMP_DIR/items.tmp\" 2>&1\n\
     mv \"$RIG_TEMP_DIR/items.tmp\" \"$RIG_TEMP_DIR/items.txt\"\n\
     exec sleep 1000\n";

/// Polls `cond` every 20 ms until it holds; panics naming `what` after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long any single wait for an event may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// How long rigd may take to write its addr file.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long rigd may take to exit after SIGTERM before it is killed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// How often a file or process condition is re-checked while waiting on it.
const POLL: Duration = Duration::from_millis(10);

/// Set in rigd's own environment only: children must not see it (they get exactly
/// `host_env` plus the wiring).
pub const RIGD_ONLY_VAR: &str = "RIG_IT_RIGD_ONLY";

/// A TCP forwarder (python3: `forwarder.py host:port`, listening on `$PORT`) standing in for a
/// Kafka broker in front of librdkafka's mock cluster, so that a `kafka` ingress has a real
/// process behind it.
pub const KAFKA_FORWARDER: &str = r#"
import asyncio, os, signal, sys

# Stop quietly when rigd stops the service (asyncio would print a traceback).
signal.signal(signal.SIGINT, lambda *_: os._exit(0))
host, port = sys.argv[1].rsplit(":", 1)

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def handle(client_reader, client_writer):
    try:
        broker_reader, broker_writer = await asyncio.open_connection(host, int(port))
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, broker_writer), pipe(broker_reader, client_writer))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()

asyncio.run(main())
"#;

/// A running `rigd` binary with a private rig dir.
pub struct Rigd {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    client: RigdClient,
}

impl Rigd {
    /// Starts rigd (`--addr 127.0.0.1:0 --rig-dir <tmp>/rig --idle 0 --addr-file
    /// <tmp>/rigd.addr`) and waits until its addr file names the address it listens on.
    pub fn start() -> Rigd {
        Rigd::start_with(&[])
    }

    /// The API client.
    pub fn client(&self) -> &RigdClient {
        &self.client
    }

    /// `host:port` rigd listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// rigd's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The rig dir given with `--rig-dir`.
    pub fn rig_dir(&self) -> PathBuf {
        self.dir.path().join("rig")
    }

    /// A scratch directory of this test, outside the rig dir.
    pub fn scratch(&self) -> PathBuf {
        let path = self.dir.path().join("scratch");
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        path
    }

    /// Writes a shell script into the scratch directory and returns its path. Service args
    /// are expanded like Go's `os.Expand`, so scripts that use `$` themselves go in files.
    pub fn script(&self, name: &str, text: &str) -> String {
        let path = self.scratch().join(name);
        std::fs::write(&path, text).expect("write the script");
        path.to_string_lossy().into_owned()
    }

    /// What rigd printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rigd.output")).unwrap_or_default()
    }

    /// `POST /environments` with `spec` after [`with_path`]; panics with rigd's answer on
    /// failure.
    pub async fn create(&self, spec: Value) -> String {
        self.client
            .create_environment(&with_path(spec))
            .await
            .unwrap_or_else(|e| panic!("create the environment: {e}"))
            .id
    }

    /// Creates an environment from `spec` and waits for its `environment.up`: the id and the
    /// event.
    pub async fn up(&self, spec: Value) -> (String, Event) {
        let id = self.create(spec).await;
        let up = self.events(&id).until(EventType::EnvironmentUp).await;
        (id, up)
    }

    /// A `kafka` service: a `process` running [`KAFKA_FORWARDER`] on its `PORT` in front of
    /// `broker` (`host:port`), with a `kafka` ingress.
    pub fn kafka_forwarder(&self, broker: &str) -> Value {
        let forwarder = self.script("forwarder.py", KAFKA_FORWARDER);
        json!({
            "type": "process",
            "config": {"command": "python3"},
            "args": [forwarder, broker],
            "ingresses": {"default": {"protocol": "kafka"}}
        })
    }

    /// Follows the events of environment `id` from the start.
    pub fn events(&self, id: &str) -> Events {
        Events::from_client(&self.client, id)
    }

    /// Follows the events of environment `id` from just after `last_event_id`.
    pub fn events_after(&self, id: &str, last_event_id: u64) -> Events {
        Events::new(self.client.events(id, Some(last_event_id)))
    }

    /// Answers a `callback.request` event with success, or with `error`.
    pub async fn answer(&self, id: &str, request: &Event, error: Option<&str>) {
        let callback = request
            .callback
            .as_ref()
            .unwrap_or_else(|| panic!("not a callback request: {request:?}"));
        let mut body = json!({
            "type": "callback.response",
            "service": request.service,
            "request_id": callback.request_id,
        });
        if let Some(error) = error {
            body["error"] = json!(error);
        }
        self.client
            .post_event(id, &body)
            .await
            .unwrap_or_else(|e| panic!("answer callback {:?}: {e}", callback.name));
    }

    /// `GET /environments/{id}/log`: every event, `service.log` included.
    pub async fn log(&self, id: &str) -> Vec<Event> {
        let response = self
            .request("GET", &format!("/environments/{id}/log"), &[], None)
            .await;
        assert_eq!(response.status, 200, "GET log: {}", response.text());
        serde_json::from_slice(&response.body).expect("the log is a JSON array of events")
    }

    /// `GET /environments`.
    pub async fn list(&self) -> Vec<Value> {
        let response = self.request("GET", "/environments", &[], None).await;
        assert_eq!(
            response.status,
            200,
            "GET /environments: {}",
            response.text()
        );
        serde_json::from_slice(&response.body).expect("the list is a JSON array")
    }

    /// One HTTP/1.1 request on a fresh connection, answer read in full. `Host` defaults to
    /// rigd's address and, when there is a body, `Content-Type` to `application/json`;
    /// `headers` override both.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> RawResponse {
        let response = self.send(method, path, headers, body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(WAIT, response.into_body().collect())
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: body not complete within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: read body: {e}"))
            .to_bytes()
            .to_vec();
        RawResponse {
            status,
            headers,
            body,
        }
    }

    /// Like [`Rigd::request`] but returns as soon as the response headers arrive, with the
    /// body still streaming (for SSE).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> http::Response<Incoming> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .unwrap_or_else(|e| panic!("connect to rigd at {}: {e}", self.addr));
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        let mut builder = http::Request::builder().method(method).uri(path);
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if !has("host") {
            builder = builder.header("host", &self.addr);
        }
        if body.is_some() && !has("content-type") {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
            .expect("a valid request");
        tokio::time::timeout(WAIT, sender.send_request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }
}

impl Drop for Rigd {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a plain signal to the child this harness spawned and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(POLL),
            }
        }
        eprintln!(
            "rigd did not exit within {STOP_DEADLINE:?} of SIGTERM; killing it. Output:\n{}",
            self.output()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read in full by [`Rigd::request`].
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON; panics with the text when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An environment's event stream, with every event seen kept for assertions and panic
/// messages.
pub struct Events {
    stream: EventStream,
    seen: Vec<Event>,
}

impl Events {
    /// Follows the events of environment `id` through `client`, from the start.
    pub fn from_client(client: &RigdClient, id: &str) -> Events {
        Events::new(client.events(id, None))
    }

    fn new(stream: EventStream) -> Events {
        Events {
            stream,
            seen: Vec::new(),
        }
    }

    /// The next event; panics when none arrives within [`WAIT`] or the stream fails.
    pub async fn next(&mut self) -> Event {
        match self.try_next(WAIT).await {
            Some(event) => event,
            None => panic!(
                "no event within {WAIT:?} or the stream ended; seen:\n{}",
                describe(&self.seen)
            ),
        }
    }

    /// The next event within `within`, `None` on timeout or end of stream.
    pub async fn try_next(&mut self, within: Duration) -> Option<Event> {
        match tokio::time::timeout(within, self.stream.next()).await {
            Err(_) | Ok(None) => None,
            Ok(Some(Err(e))) => panic!("event stream failed: {e}; seen:\n{}", describe(&self.seen)),
            Ok(Some(Ok(event))) => {
                self.seen.push(event.clone());
                Some(event)
            }
        }
    }

    /// Reads until an event of type `t` arrives and returns it.
    pub async fn until(&mut self, t: EventType) -> Event {
        let wanted = t.clone();
        self.until_matching(&t.to_string(), move |e| e.event_type == wanted)
            .await
    }

    /// Reads until an event satisfying `pred` arrives and returns it; `what` names it in the
    /// panic message. Panics early when `environment.down` comes first: nothing follows it.
    pub async fn until_matching(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next(left).await {
                Some(event) if pred(&event) => return event,
                Some(event) if event.event_type == EventType::EnvironmentDown => panic!(
                    "the environment went down before {what}; seen:\n{}",
                    describe(&self.seen)
                ),
                Some(_) => {}
                None => panic!("no {what} within {WAIT:?}; seen:\n{}", describe(&self.seen)),
            }
        }
    }

    /// Every event received so far, in order.
    pub fn seen(&self) -> &[Event] {
        &self.seen
    }

    /// Returns once `service` has written `line` (a whole line, newline included), whether
    /// that was seen already or is still to come; the stream must include logs
    /// ([`Rigd::events_with_logs`]).
    pub async fn until_printed(&mut self, service: &str, line: &str) {
        let printed =
            |e: &Event| e.service == service && e.log.as_ref().is_some_and(|l| l.data == line);
        if !self.seen.iter().any(printed) {
            self.until_matching(&format!("{service} printing {line:?}"), printed)
                .await;
        }
    }

    /// rigd's remarks (`service.log` on the stream `rig`) seen so far, as (service, line),
    /// sorted.
    pub fn rig_remarks(&self) -> Vec<(String, String)> {
        let mut remarks: Vec<(String, String)> = self
            .seen
            .iter()
            .filter_map(|event| {
                let log = event.log.as_ref().filter(|log| log.stream.is_rig())?;
                Some((event.service.clone(), log.data.clone()))
            })
            .collect();
        remarks.sort();
        remarks
    }

    /// The id of the last event returned by [`Events::next`]: where a new stream resumes
    /// without a gap. (`EventStream::last_event_id` also counts events parsed but not yet
    /// returned, which a dropped stream never delivers.)
    pub fn last_id(&self) -> Option<u64> {
        self.seen.last().map(|e| e.seq)
    }

    /// The types of the events seen for `service`, in order.
    pub fn service_types(&self, service: &str) -> Vec<EventType> {
        self.seen
            .iter()
            .filter(|e| e.service == service)
            .map(|e| e.event_type.clone())
            .collect()
    }

    /// The position of the first event of type `t` for `service` (`""` for environment
    /// events); panics when there is none.
    pub fn position(&self, t: EventType, service: &str) -> usize {
        self.seen
            .iter()
            .position(|e| e.event_type == t && e.service == service)
            .unwrap_or_else(|| panic!("no {t} for {service:?}; seen:\n{}", describe(&self.seen)))
    }

    /// True when an event of type `t` was seen.
    pub fn saw(&self, t: EventType) -> bool {
        self.seen.iter().any(|e| e.event_type == t)
    }
}

/// One line per event: seq, type, service and error, for panic messages.
pub fn describe(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            let mut line = format!("  {:>4} {}", e.seq, e.event_type);
            if !e.service.is_empty() {
                line.push_str(&format!(" service={}", e.service));
            }
            if !e.error.is_empty() {
                line.push_str(&format!(" error={:?}", e.error));
            }
            if !e.message.is_empty() {
                line.push_str(&format!(" message={:?}", e.message));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `spec` with `host_env.PATH` set to this process's `PATH` when absent: rigd gives children
/// exactly `host_env` plus the wiring, so without it `sh` and `python3` are not found.
pub fn with_path(mut spec: Value) -> Value {
    let path = std::env::var("PATH").unwrap_or_default();
    let host_env = spec
        .as_object_mut()
        .expect("a spec is a JSON object")
        .entry("host_env")
        .or_insert_with(|| json!({}));
    if host_env.get("PATH").is_none() {
        host_env["PATH"] = json!(path);
    }
    spec
}

/// A `process` service serving HTTP with Python on its default ingress.
pub fn http_service() -> Value {
    json!({
        "type": "process",
        "config": {"command": "python3"},
        "args": ["-m", "http.server", "--bind", "127.0.0.1", "${PORT}"],
        "ingresses": {"default": {"protocol": "http"}}
    })
}

/// A `process` service running `sh -c script` (no ingress). rigd expands `$` in args, so
/// the script should not use shell variables of its own.
pub fn sh(script: &str) -> Value {
    json!({"type": "process", "config": {"command": "sh"}, "args": ["-c", script]})
}

/// A live process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Its pid.
    pub pid: u32,
    /// Its command line, arguments joined by spaces.
    pub cmdline: String,
}

/// Live (non-zombie) processes with an environment entry starting with `prefix` (e.g.
/// `RIG_ENV_DIR=/tmp/x/rig/tmp/`). Zombies have an empty environment, so they never match.
pub fn processes_with_env(prefix: &str) -> Vec<ProcInfo> {
    let prefix = prefix.as_bytes();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|var| var.starts_with(prefix))
        {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .split('\0')
                    .filter(|a| !a.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        found.push(ProcInfo { pid, cmdline });
    }
    found
}

/// Live children of process `parent` whose command line contains `needle`.
pub fn children_with_cmdline(parent: u32, needle: &str) -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (ppid == parent && cmdline.contains(needle) && is_alive(pid))
                .then_some(ProcInfo { pid, cmdline })
        })
        .collect()
}

/// Panics unless no live process carries `RIG_ENV_DIR` under `dir` (checked once: callers
/// ask after rigd said every service stopped).
pub fn assert_no_processes_under(dir: &Path) {
    let prefix = format!("RIG_ENV_DIR={}", dir.display());
    let left = processes_with_env(&prefix);
    assert!(
        left.is_empty(),
        "processes of {} still running: {left:#?}",
        dir.display()
    );
}

impl Rigd {
    /// Like [`Rigd::start`], with `extra` flags appended to rigd's command line (e.g.
    /// `["--stop-grace", "1s"]`).
    pub fn start_with(extra: &[&str]) -> Rigd {
        Rigd::start_with_env(extra, &[])
    }

    /// Like [`Rigd::start_with`], with `env` added to rigd's own environment (e.g.
    /// `DOCKER_HOST`).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Rigd {
        let dir = tempfile::Builder::new()
            .prefix("rigd-it-")
            .tempdir()
            .expect("create the test directory");
        let addr_file = dir.path().join("rigd.addr");
        let output = File::create(dir.path().join("rigd.output")).expect("create rigd.output");
        let child = Command::new(env!("CARGO_BIN_EXE_rigd"))
            .args(["--addr", "127.0.0.1:0", "--idle", "0"])
            .arg("--rig-dir")
            .arg(dir.path().join("rig"))
            .arg("--addr-file")
            .arg(&addr_file)
            .args(extra)
            .env(RIGD_ONLY_VAR, "leaked from rigd")
            .env_remove("RIG_PRESERVE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone rigd.output"))
            .stderr(output)
            .spawn()
            .expect("spawn rigd");
        let mut rigd = Rigd {
            child,
            dir,
            addr: String::new(),
            client: RigdClient::new("127.0.0.1:1").expect("placeholder address"),
        };
        let deadline = Instant::now() + START_DEADLINE;
        while rigd.addr.is_empty() {
            let written = std::fs::read_to_string(&addr_file).unwrap_or_default();
            rigd.addr = written.trim().to_string();
            if let Ok(Some(status)) = rigd.child.try_wait() {
                panic!("rigd {extra:?} exited with {status}:\n{}", rigd.output());
            }
            assert!(
                Instant::now() < deadline,
                "rigd {extra:?} wrote no addr file within {START_DEADLINE:?}:\n{}",
                rigd.output()
            );
            std::thread::sleep(POLL);
        }
        rigd.client = RigdClient::new(&rigd.addr).expect("the addr file holds host:port");
        rigd
    }

    /// Follows the events of environment `id` from the start, `service.log` included
    /// (`?logs=true`).
    pub fn events_with_logs(&self, id: &str) -> Events {
        Events::new(self.client.events(id, None).with_logs(true))
    }

    /// Brings `spec` up, waits until each of `services` has printed `started`, deletes the
    /// environment and returns rigd's remarks about its services
    /// ([`Events::rig_remarks`]) once it is down.
    pub async fn remarks_at_teardown(
        &self,
        spec: Value,
        services: &[&str],
    ) -> Vec<(String, String)> {
        let id = self.create(spec).await;
        let mut events = self.events_with_logs(&id);
        events.until(EventType::EnvironmentUp).await;
        for service in services {
            events.until_printed(service, "started\n").await;
        }
        self.client
            .delete_environment(&id, &DeleteOptions::default())
            .await
            .expect("DELETE");
        events.until(EventType::EnvironmentDown).await;
        events.rig_remarks()
    }

    /// How many file descriptors rigd has open (entries of `/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read rigd's /proc fd directory")
            .count()
    }
}

/// True while process `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The reaper process of rigd `pid`: its child running `rigd __reap`.
pub fn reaper_of(pid: u32) -> u32 {
    let entries = std::fs::read_dir("/proc").unwrap();
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) && cmdline.windows(6).any(|w| w == b"__reap") {
            return child;
        }
    }
    panic!("rigd {pid} has no reaper process");
}

/// Plays the SDK for a `client` service's start callback: serves the gRPC echo service (with
/// v1 reflection, no gzip) on the `default` port rigd published in `event`'s wiring.
pub async fn serve_grpc_echo_for(event: &Event) -> tokio::task::JoinHandle<()> {
    let callback = event.callback.as_ref().expect("a callback request");
    let wiring = callback.wiring.as_ref().expect("the wiring");
    let port = wiring.ingresses["default"].port().expect("a port");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the published port is free");
    let options = rig_grpc_echo::Options {
        reflection: rig_grpc_echo::Reflection::V1,
        gzip: false,
    };
    rig_grpc_echo::serve(listener, options)
}

/// True when some `connection.closed` from `source` to `target` carried bytes both ways.
pub fn traffic_seen(log: &[Event], source: &str, target: &str) -> bool {
    log.iter().any(|e| {
        e.event_type == EventType::ConnectionClosed
            && e.connection.as_ref().is_some_and(|c| {
                c.source == source && c.target == target && c.bytes_in > 0 && c.bytes_out > 0
            })
    })
}
