//! The `rig` commands that work on a running rigd, end to end with the real binaries:
//! `traffic --follow` and `logs --follow` attach over SSE and end when the environment is torn
//! down; `ps` shows endpoints; `down` by name and `--all`; `version` reports rigd's version;
//! rigd is found through `--server`, `RIG_SERVER_ADDR` or the addr file.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use rig_types::EventType;
use serde_json::json;
use support::Rigd;

const PATIENCE: Duration = Duration::from_secs(60);

fn rig(args: &[&str], rig_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rig"));
    cmd.args(args)
        .args(["--color", "never"])
        .env("RIG_DIR", rig_dir)
        .env_remove("RIG_SERVER_ADDR")
        .env_remove("NO_COLOR");
    cmd
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run rig");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A running `rig ... --follow` and its output so far.
struct Follower {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Follower {
    fn start(mut cmd: Command) -> Follower {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rig");
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Follower {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing every needle.
    fn wait_for(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        if let Some(l) = self
            .seen
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needles:?} within {PATIENCE:?}; seen:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit on its own and returns its status and every line.
    fn finish(mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("rig --follow did not exit; seen:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.seen.extend(self.lines.iter());
        (status.code().unwrap_or(-1), self.seen)
    }
}

fn get(addr: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn web(name: &str) -> serde_json::Value {
    json!({"name": name, "services": {"web": support::http_service()}})
}

#[tokio::test]
async fn follow_ps_and_down_on_a_live_environment() {
    let rigd = Rigd::start();
    let rig_dir = rigd.scratch().join("rig-dir");
    std::fs::create_dir_all(&rig_dir).unwrap();
    let addr = rigd.addr().to_string();
    let id = rigd.create(web("Live/Orders")).await;
    let mut events = rigd.events(&id);
    let up = events.until(EventType::EnvironmentUp).await;
    let web_addr = up.ingresses["web"]["default"].hostport.clone();

    // Both followers find the environment by a differently spelt name; rigd by --server and
    // by RIG_SERVER_ADDR.
    let mut traffic = Follower::start(rig(
        &["traffic", "--follow", "live_orders", "--server", &addr],
        &rig_dir,
    ));
    let mut logs_cmd = rig(&["logs", "-f", "LIVE/orders"], &rig_dir);
    logs_cmd.env("RIG_SERVER_ADDR", &addr);
    let mut logs = Follower::start(logs_cmd);
    traffic.wait_for(&["following the traffic of Live/Orders"]);

    assert_eq!(get(&web_addr, "/hello-from-test"), 404);
    let row = traffic.wait_for(&["~test → web", "GET", "/hello-from-test", "404"]);
    assert!(row.starts_with('1'), "the first exchange is #1: {row}");
    // Probes are hidden by default: no row for the readiness check of `/`.
    logs.wait_for(&["web", "GET /hello-from-test HTTP/1.1", "404"]);

    // No log file yet: `rig traffic` and `rig explain` read the running environment's log.
    let no_logs = rigd.scratch().join("no-logs");
    let mut cmd = rig(&["traffic", "live/orders"], &rig_dir);
    cmd.env("RIG_LOGS", &no_logs).env("RIG_SERVER_ADDR", &addr);
    let (code, out, err) = output(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("~test → web") && out.contains("/hello-from-test"),
        "{out}"
    );
    assert!(
        err.contains("showing the live log of running environment Live/Orders"),
        "{err}"
    );
    // `rig logs` by --server alone; a --server that does not answer is named, not ignored.
    let mut cmd = rig(&["logs", "live/orders", "--server", &addr], &rig_dir);
    cmd.env("RIG_LOGS", &no_logs);
    let (code, out, err) = output(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET /hello-from-test"), "{out}");
    let mut cmd = rig(
        &["traffic", "live/orders", "--server", "127.0.0.1:1"],
        &rig_dir,
    );
    cmd.env("RIG_LOGS", &no_logs);
    let (code, _, err) = output(&mut cmd);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no rigd answering at 127.0.0.1:1"), "{err}");
    let mut cmd = rig(&["explain", "Live/Orders"], &rig_dir);
    cmd.env("RIG_LOGS", &no_logs).env("RIG_SERVER_ADDR", &addr);
    let (code, out, err) = output(&mut cmd);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("explain JSON");
    assert_eq!(report["test"], "Live/Orders");
    assert_eq!(report["outcome"], "passed");

    // ps: the environment, its id and the URL of `web`.
    let (code, out, err) = output(rig(&["ps", "--server", &addr], &rig_dir).arg("--color=never"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Live/Orders") && out.contains(&id), "{out}");
    // The address the test was given (the observing proxy), as a hand-made call should use.
    let web_row = out
        .lines()
        .find(|l| l.trim_start().starts_with("web "))
        .unwrap_or_else(|| panic!("no row for web: {out}"));
    assert!(
        web_row.contains(&format!(
            "http://{web_addr}  (observed; service at 127.0.0.1:"
        )),
        "{out}"
    );
    let (_, json_out, _) = output(&mut rig(&["ps", "--json", "--server", &addr], &rig_dir));
    let listed: serde_json::Value = serde_json::from_str(&json_out).expect("ps --json");
    assert_eq!(listed[0]["id"], json!(id), "{json_out}");
    assert!(
        listed[0]["detail"]["services"]["web"].is_object(),
        "{json_out}"
    );

    // version: rig and the running rigd (found here through the addr file in RIG_DIR).
    std::fs::write(rig_dir.join("rigd.addr"), format!("{addr}\n")).unwrap();
    let (code, out, _) = output(&mut rig(&["version"], &rig_dir));
    assert_eq!(code, 0);
    let version = env!("CARGO_PKG_VERSION");
    assert!(out.contains(&format!("rig   {version}")), "{out}");
    assert!(out.contains(&format!("rigd  {version} at {addr}")), "{out}");

    // down by a unique part of the name; the followers end by themselves.
    let (code, out, err) = output(&mut rig(&["down", "orders"], &rig_dir));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("torn down Live/Orders ({id})")),
        "{out}"
    );
    assert!(out.contains("log:") && out.contains(".jsonl"), "{out}");
    let (code, lines) = traffic.finish();
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("is down")), "{lines:?}");
    let (code, lines) = logs.finish();
    assert_eq!(code, 0, "{lines:?}");

    let (code, _, err) = output(&mut rig(&["ps"], &rig_dir));
    assert_eq!(code, 0);
    assert!(err.contains("No active environments"), "{err}");
}

/// A running environment's log larger than any whole response the client takes (64 MiB; it
/// has spilled to disk) is still read by `rig traffic`, as it streams in.
#[tokio::test]
async fn a_live_log_larger_than_a_response_limit_is_read_whole() {
    let rigd = Rigd::start();
    let rig_dir = rigd.scratch().join("rig-dir");
    std::fs::create_dir_all(&rig_dir).unwrap();
    // Ready once everything is written: a pipe holds 64 KiB, so by then rigd has taken in
    // all but the last few KiB of it.
    let script = "yes 'output line of a chatty service' | head -c 75000000; echo; \
                  exec python3 -m http.server --bind 127.0.0.1 $PORT";
    let id = rigd
        .create(
            json!({"name": "chatty", "observe": false, "services": {"talker": {
            "type": "process", "config": {"command": "sh"}, "args": ["-c", script],
            "ingresses": {"default": {"protocol": "http"}}}}}),
        )
        .await;
    rigd.events(&id).until(EventType::EnvironmentUp).await;
    let mut cmd = rig(&["traffic", "chatty", "--server", rigd.addr()], &rig_dir);
    cmd.env("RIG_LOGS", rigd.scratch().join("no-logs"));
    let (code, out, err) = output(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("showing the live log of running environment chatty"),
        "{err}"
    );
    assert!(out.is_empty(), "no traffic, no rows: {out}");
    assert!(err.contains("No traffic events found"), "{err}");
}

#[tokio::test]
async fn down_all_and_errors_that_say_what_to_do() {
    let rigd = Rigd::start();
    let rig_dir = rigd.scratch().join("rig-dir");
    std::fs::create_dir_all(&rig_dir).unwrap();
    let addr = rigd.addr().to_string();
    let a = rigd.create(web("Alpha")).await;
    let b = rigd.create(web("Beta")).await;
    for id in [&a, &b] {
        rigd.events(id).until(EventType::EnvironmentUp).await;
    }

    let (code, _, err) = output(&mut rig(&["down", "Alpah", "--server", &addr], &rig_dir));
    assert_eq!(code, 1);
    assert!(
        err.contains("no environment matching \"Alpah\"; did you mean Alpha?"),
        "{err}"
    );
    assert!(err.contains(&format!("  Beta  {b}")), "{err}");
    let (code, _, err) = output(&mut rig(&["traffic", "-f", "--server", &addr], &rig_dir));
    assert_eq!(code, 2, "two environments: the follower must be told which");
    assert!(err.contains("2 environments are active; name one"), "{err}");
    let (code, _, err) = output(&mut rig(&["down"], &rig_dir));
    assert_eq!(code, 2);
    assert!(err.contains("rig down --all"), "{err}");

    let (code, out, err) = output(&mut rig(&["down", "--all", "--server", &addr], &rig_dir));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("torn down Alpha ({a})")), "{out}");
    assert!(out.contains(&format!("torn down Beta ({b})")), "{out}");
    assert!(rigd.list().await.is_empty());

    // Without any rigd to find.
    let empty = rigd.scratch().join("empty-rig-dir");
    let (code, _, err) = output(&mut rig(&["ps"], &empty));
    assert_eq!(code, 1);
    assert!(
        err.contains("rigd is not running (no addr file in"),
        "{err}"
    );
    assert!(err.contains("rig up <spec.json>"), "{err}");
    let (code, out, _) = output(&mut rig(&["version"], &empty));
    assert_eq!(code, 0);
    assert!(out.contains("rigd  not running"), "{out}");
}

/// A rigd that answers `/health` late (a loaded machine; here stopped with SIGSTOP for
/// longer than the first check waits) is waited for, as the SDK waits for it: `rig ps` lists
/// its environments instead of calling it "not running" and its addr file "stale".
#[test]
fn a_slow_rigd_is_waited_for_not_called_not_running() {
    let rigd = Rigd::start();
    let rig_dir = rigd.scratch().join("rig-dir");
    std::fs::create_dir_all(&rig_dir).unwrap();
    std::fs::write(rig_dir.join("rigd.addr"), rigd.addr()).unwrap();
    let pid = rigd.pid() as libc::pid_t;
    // SAFETY: kill(2) on the rigd this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let ps = rig(&["ps"], &rig_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rig ps");
    // The condition under test, not a wait for something: rigd stays silent past the first
    // check's 1 s.
    std::thread::sleep(rig::transport::client::HEALTH_TIMEOUT + Duration::from_millis(500));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let out = ps.wait_with_output().expect("rig ps ends");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "No active environments on rigd at {}",
            rigd.addr()
        )),
        "{stdout}{stderr}"
    );

    // One that stays silent is there, stuck: said so, rather than "not running".
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let (code, _, err) = output(&mut rig(&["ps"], &rig_dir));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("rigd is not answering ("), "{err}");
    assert!(
        err.contains("it is running but stuck or overloaded"),
        "{err}"
    );
}

/// Waits until `id`'s log has the request for `path` (the proxy records it off the data path).
async fn until_request(rigd: &Rigd, id: &str, path: &str) {
    rigd.events(id)
        .until_matching(&format!("the request for {path}"), |e| {
            e.event_type == EventType::RequestCompleted
                && e.request.as_ref().is_some_and(|r| r.path == path)
        })
        .await;
}

/// A log file is written when its environment is torn down, so an environment of that name
/// running now is a later run: `rig traffic NAME` reads its log so far and says so, rather
/// than the earlier run's file without a word. With two of them running, the file is read and
/// their ids are listed; with no file, two running environments are listed, not called
/// missing.
#[tokio::test]
async fn a_running_environment_comes_before_the_log_file_of_an_earlier_run() {
    let rigd = Rigd::start();
    let rig_dir = rigd.scratch().join("rig-dir");
    std::fs::create_dir_all(&rig_dir).unwrap();
    let addr = rigd.addr().to_string();
    let traffic = |name: &str, logs: &Path| {
        let mut cmd = rig(&["traffic", name], &rig_dir);
        cmd.env("RIG_LOGS", logs).env("RIG_SERVER_ADDR", &addr);
        output(&mut cmd)
    };

    // The earlier run, torn down: its log file holds /earlier-run.
    let (earlier, up) = rigd.up(web("Orders/Run")).await;
    assert_eq!(
        get(&up.ingresses["web"]["default"].hostport, "/earlier-run"),
        404
    );
    until_request(&rigd, &earlier, "/earlier-run").await;
    let (code, out, err) = output(&mut rig(&["down", &earlier, "--server", &addr], &rig_dir));
    assert_eq!(code, 0, "{out}{err}");
    let logs = rigd.rig_dir().join("logs");
    // Following a run that has ended says where its log is, not only that nothing runs.
    let (code, _, err) = output(
        rig(&["traffic", "--follow", "orders/run"], &rig_dir)
            .env("RIG_LOGS", &logs)
            .env("RIG_SERVER_ADDR", &addr),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "orders/run is not running: its run has ended and its log is {}",
            logs.join(format!("Orders_Run-{earlier}.jsonl")).display()
        )),
        "{err}"
    );

    // The run now: `rig traffic` by its name shows /this-run, not the earlier run's file.
    let (now, up) = rigd.up(web("Orders/Run")).await;
    assert_eq!(
        get(&up.ingresses["web"]["default"].hostport, "/this-run"),
        404
    );
    until_request(&rigd, &now, "/this-run").await;
    let (code, out, err) = traffic("orders_run", &logs);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("/this-run") && !out.contains("/earlier-run"),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "Orders/Run ({now}) is running on rigd at {addr}: reading its log so far"
        )),
        "{err}"
    );
    // So does `rig traffic` without a name: the one running environment is the latest run.
    let (code, out, err) = output(
        rig(&["traffic"], &rig_dir)
            .env("RIG_LOGS", &logs)
            .env("RIG_SERVER_ADDR", &addr),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("/this-run") && !out.contains("/earlier-run"),
        "{out}"
    );
    assert!(
        err.contains(&format!("Orders/Run ({now}) is running")),
        "{err}"
    );
    // The earlier run's file by its path is still that file.
    let file = logs.join(format!("Orders_Run-{earlier}.jsonl"));
    let (code, out, err) = traffic(file.to_str().unwrap(), &logs);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/earlier-run"), "{out}");

    // Two runs of that name: the file, and the ids of the running ones to choose from.
    let (second, _) = rigd.up(web("Orders/Run")).await;
    let (code, out, err) = traffic("Orders/Run", &logs);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/earlier-run"), "{out}");
    assert!(
        err.contains("2 environments named \"Orders/Run\" are running"),
        "{err}"
    );
    assert!(err.contains(&now) && err.contains(&second), "{err}");

    // No file at all: the two running environments, not "no log files" alone.
    let (code, _, err) = traffic("orders", &rigd.scratch().join("no-logs"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "2 environments running on rigd at {addr} match \"orders\"; name one by its id"
        )),
        "{err}"
    );
    assert!(err.contains(&now) && err.contains(&second), "{err}");
    let (code, _, err) = output(
        rig(&["logs"], &rig_dir)
            .env("RIG_LOGS", rigd.scratch().join("no-logs"))
            .env("RIG_SERVER_ADDR", &addr),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "2 environments running on rigd at {addr}; name one by its id"
        )),
        "{err}"
    );
}
