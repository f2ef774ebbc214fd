//! `rig up` end to end: the real `rig` binary against the real `rigd`, with `process`
//! services made of `sh` one-liners.
//!
//! Checks what a user sees and what the services receive: progress, endpoints and the env
//! dir on stdout; `dir` filled with the spec file's directory (the services' cwd) and
//! `host_env` filled from rig's own environment; Ctrl-C tears down and exits 0; a crashing
//! service prints the failure summary and exits 1; Ctrl-C before the environment is up exits
//! 130 and the run is logged as failed; rigd shutting down is reported as such; validation
//! errors are listed one per line.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cli_support::RigDir;

/// How long any one expected line may take to appear.
const PATIENCE: Duration = Duration::from_secs(30);

/// A rigd for one test, and `rig up` runs against it.
struct Rigd {
    dir: RigDir,
    addr: String,
    pid: u32,
}

impl Rigd {
    async fn start(name: &str) -> Rigd {
        let mut dir = RigDir::new(name);
        let server = dir.ensure().await;
        let pid = server.spawned_pid.expect("a rigd started for this test");
        Rigd {
            dir,
            addr: server.addr,
            pid,
        }
    }

    /// Sends `signal` to rigd.
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the rigd this test started (reaped by `RigDir` on drop).
        unsafe {
            libc::kill(self.pid as libc::pid_t, signal);
        }
    }

    /// Writes `spec` to `<dir>/<sub>/spec.json` and returns its path.
    fn spec_file(&self, sub: &str, spec: &str) -> PathBuf {
        self.dir.spec_file(sub, spec)
    }

    /// Starts `rig up <spec> --server <addr> --color never <extra>` with one extra variable
    /// in its environment.
    fn rig_up(&self, spec: &Path, extra: &[&str]) -> RigUp {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rig"))
            .arg("up")
            .arg(spec)
            .args(["--server", &self.addr, "--color", "never"])
            .args(extra)
            .env("RIG_UP_TEST_MARKER", "from-rig-env")
            .env_remove("RIG_SERVER_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rig");
        let lines = reader(child.stdout.take().expect("stdout"));
        let errors = reader(child.stderr.take().expect("stderr"));
        RigUp {
            child,
            lines,
            errors,
            seen: Vec::new(),
        }
    }
}

fn reader(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running `rig up` and what it printed so far.
struct RigUp {
    child: Child,
    lines: Receiver<String>,
    errors: Receiver<String>,
    seen: Vec<String>,
}

impl RigUp {
    /// Reads stdout until a line contains `needle`; fails with everything seen after
    /// [`PATIENCE`].
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let stderr: Vec<String> = self.errors.try_iter().collect();
                    panic!(
                        "no line containing {needle:?}\nstdout:\n{}\nstderr:\n{}",
                        self.seen.join("\n"),
                        stderr.join("\n")
                    );
                }
            }
        }
    }

    /// Reads stdout until every needle has appeared in some line, in any order.
    fn wait_for_all(&mut self, needles: &[&str]) {
        for needle in needles {
            if !self.seen.iter().any(|l| l.contains(needle)) {
                self.wait_for(needle);
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Waits for exit (within [`PATIENCE`]) and returns the code, all stdout and all stderr.
    fn finish(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "rig up did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipes close at exit; the reader threads then end their channels.
        self.seen.extend(self.lines.iter());
        let stderr: Vec<String> = self.errors.iter().collect();
        (
            status.code().unwrap_or(-1),
            self.seen.join("\n"),
            stderr.join("\n"),
        )
    }
}

/// Polls `done` (a file a service writes) until it holds; panics with `never` after
/// [`PATIENCE`].
fn until(done: impl Fn() -> bool, never: &str) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn up_fills_dir_and_host_env_then_ctrl_c_tears_down() {
    let rigd = Rigd::start("ctrlc").await;
    let spec = rigd.spec_file(
        "project",
        r#"{"name": "it-up", "services": {"worker": {
            "type": "process",
            "config": {"command": "sh"},
            "args": ["-c", "pwd > cwd.txt; echo \"$RIG_UP_TEST_MARKER\" > marker.txt; exec sleep 600"]
        }}}"#,
    );
    let project = std::fs::canonicalize(spec.parent().expect("parent")).expect("canonical");
    let mut rig = rigd.rig_up(&spec, &[]);

    rig.wait_for("  · worker  starting");
    rig.wait_for("  ✓ worker  ready (");
    rig.wait_for("  ✓ environment \"it-up\" is up in ");
    rig.wait_for("  worker  -  (no ingress)");
    rig.wait_for("  env dir: ");
    rig.wait_for("press Ctrl-C to tear the environment down");

    // The service ran in the spec file's directory and saw rig's environment. A service
    // without an ingress is ready as soon as it starts, so its files may come a little later.
    until(
        || std::fs::read_to_string(project.join("marker.txt")).is_ok_and(|s| s.ends_with('\n')),
        "the service never wrote marker.txt",
    );
    let cwd = std::fs::read_to_string(project.join("cwd.txt"))
        .expect("the service wrote cwd.txt in the spec's directory");
    assert_eq!(cwd.trim(), project.display().to_string());
    let marker = std::fs::read_to_string(project.join("marker.txt")).expect("marker.txt");
    assert_eq!(marker.trim(), "from-rig-env");

    rig.signal(libc::SIGINT);
    rig.wait_for("tearing down \"it-up\"");
    rig.wait_for("  ■ worker  stopped");
    rig.wait_for("  ✓ torn down \"it-up\"");
    let (code, stdout, stderr) = rig.finish();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("SIGINT received"), "{stderr}");
}

/// Ctrl-C before the environment is up tears it down too, but exits 130: the session was
/// interrupted, and a script must not take it for one that ran.
#[tokio::test]
async fn ctrl_c_before_the_environment_is_up_exits_130() {
    let rigd = Rigd::start("early").await;
    let spec = rigd.spec_file(
        "early",
        r#"{"name": "it-early", "services": {"never": {
            "type": "process",
            "config": {"command": "sleep"},
            "args": ["600"],
            "ingresses": {"default": {"protocol": "http"}}
        }}}"#,
    );
    let mut rig = rigd.rig_up(&spec, &[]);
    rig.wait_for("  · never  starting");
    rig.signal(libc::SIGINT);
    rig.wait_for("tearing down \"it-early\"");
    rig.wait_for("  ✓ torn down \"it-early\"");
    let (code, stdout, stderr) = rig.finish();
    assert_eq!(code, 130, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("is up"), "{stdout}");
    assert!(
        stderr.contains("interrupted before \"it-early\" was up"),
        "{stderr}"
    );
    // A run that never came up did not pass.
    let log = std::fs::read_dir(rigd.dir.rig_dir().join("logs"))
        .expect("rigd's log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("it-early")
        })
        .expect("the run's JSONL log");
    let text = std::fs::read_to_string(&log).expect("the log");
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a header line")).expect("JSON");
    assert_eq!(header["outcome"], "failed", "{header}");
    // And `rig explain` says what was not ready.
    let explain = Command::new(env!("CARGO_BIN_EXE_rig"))
        .arg("explain")
        .arg(&log)
        .arg("--pretty")
        .output()
        .expect("run rig explain");
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        text.contains("Torn down before it was up:\n    never: starting"),
        "{text}"
    );
}

#[tokio::test]
async fn a_crashing_service_prints_the_summary_and_exits_one() {
    let rigd = Rigd::start("crash").await;
    let spec = rigd.spec_file(
        "crash",
        r#"{"name": "it-crash", "services": {"broken": {
            "type": "process",
            "config": {"command": "sh"},
            "args": ["-c", "echo intentional failure >&2; exit 3"],
            "ingresses": {"default": {"protocol": "http"}}
        }}}"#,
    );
    let mut rig = rigd.rig_up(&spec, &[]);
    rig.wait_for("  ✗ broken  failed: exit status 3");
    rig.wait_for("environment failed:");
    rig.wait_for("intentional failure");
    let (code, stdout, stderr) = rig.finish();
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    // With an ingress it can never pass its health check, so the environment never came up.
    assert!(!stdout.contains("is up"), "{stdout}");
}

/// `rig up` of an environment `name` whose one service sleeps, once it is up.
fn up_with_a_sleeping_worker(rigd: &Rigd, name: &str) -> RigUp {
    let spec = rigd.spec_file(
        name,
        &format!(
            r#"{{"name": "{name}", "services": {{"worker": {{
                "type": "process", "config": {{"command": "sleep"}}, "args": ["600"]
            }}}}}}"#
        ),
    );
    let mut rig = rigd.rig_up(&spec, &[]);
    rig.wait_for("press Ctrl-C to tear the environment down");
    rig
}

/// rigd shutting down tears the environment down under `rig up`, which says so plainly and
/// does not try to delete it from a rigd that is gone.
#[tokio::test]
async fn rigd_shutting_down_is_reported_without_a_delete() {
    let rigd = Rigd::start("rigd-stops").await;
    let mut rig = up_with_a_sleeping_worker(&rigd, "it-stops");
    rigd.signal(libc::SIGTERM);
    rig.wait_for("the environment is being torn down");
    rig.wait_for("  ✗ rigd stopped: it tore environment \"it-stops\" (");
    let (code, stdout, stderr) = rig.finish();
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("unexpectedly"), "{stdout}");
    assert!(!stderr.contains("deleting environment"), "{stderr}");
    assert!(!stderr.contains("cannot connect"), "{stderr}");
}

/// `rig down` from another terminal: `rig up` says the environment was torn down elsewhere.
#[tokio::test]
async fn rig_down_elsewhere_is_reported_as_such() {
    let rigd = Rigd::start("down-elsewhere").await;
    let mut rig = up_with_a_sleeping_worker(&rigd, "it-elsewhere");
    let down = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["down", "it-elsewhere", "--server", &rigd.addr])
        .env_remove("RIG_SERVER_ADDR")
        .output()
        .expect("run rig down");
    assert!(down.status.success(), "{down:?}");
    rig.wait_for("  ✗ environment \"it-elsewhere\" (");
    let (code, stdout, stderr) = rig.finish();
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains(") was torn down by another client (rig down) or its TTL"),
        "{stdout}"
    );
    assert!(!stdout.contains("unexpectedly"), "{stdout}");
}

#[tokio::test]
async fn validation_errors_are_listed_and_exit_one() {
    let rigd = Rigd::start("invalid").await;
    let spec = rigd.spec_file(
        "invalid",
        r#"{"name": "", "services": {"a": {"type": "process", "egresses": {"x": {"service": "nowhere"}}}}}"#,
    );
    let rig = rigd.rig_up(&spec, &[]);
    let (code, stdout, stderr) = rig.finish();
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.starts_with("rig up: cannot create the environment: rigd returned HTTP 422: spec validation failed:\n  - "),
        "{stderr}"
    );
    assert!(
        stderr.lines().filter(|l| l.starts_with("  - ")).count() >= 2,
        "{stderr}"
    );
}

/// A hand-written spec is decoded before it is sent: a field it does not have is warned
/// about (rigd would ignore it), and a wrong value is reported at its place in the file, byte
/// order mark or not (rigd receives the document re-encoded on one line).
#[tokio::test]
async fn misspelt_fields_are_warned_and_errors_point_into_the_file() {
    let rigd = Rigd::start("typos").await;
    let spec = rigd.spec_file(
        "typo",
        r#"{"name": "", "services": {"a": {"type": "process", "confg": {"command": "sh"}}}}"#,
    );
    let (code, stdout, stderr) = rigd.rig_up(&spec, &[]).finish();
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "warning: {}: unknown field services.a.confg is ignored: is it misspelt?\n\
             rig up: cannot create the environment: rigd returned HTTP 422",
            spec.display()
        )),
        "{stderr}"
    );

    // A key the service's type does not take, inside its config.
    let spec = rigd.spec_file(
        "config-typo",
        r#"{"name": "", "services": {"a": {"type": "process", "config": {"comand": "sh"}}}}"#,
    );
    let (_, stdout, stderr) = rigd.rig_up(&spec, &[]).finish();
    assert!(
        stderr.starts_with(&format!(
            "warning: {}: unknown field services.a.config.comand is ignored: is it misspelt? \
             (a process config takes command, dir, env)\n",
            spec.display()
        )),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let spec = rigd.spec_file(
        "wrong-type",
        "\u{feff}{\n  \"name\": \"t\",\n  \"services\": {\"a\": {\n    \"type\": \"process\",\n    \"args\": [100]\n  }}\n}\n",
    );
    let (code, stdout, stderr) = rigd.rig_up(&spec, &[]).finish();
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "rig up: {} is not a valid spec: service \"a\": args[0]: invalid type: integer \
             `100`, expected a string at line 5 column 16",
            spec.display()
        )
    );
}

#[tokio::test]
async fn a_missing_spec_file_exits_one_and_bad_flags_exit_two() {
    let out = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["up", "/nonexistent/spec.json"])
        .output()
        .expect("run rig");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("rig up: cannot read spec file /nonexistent/spec.json: No such file"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["up", "spec.json", "--colour", "sometimes"])
        .output()
        .expect("run rig");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "rig up: invalid --colour value \"sometimes\": expected auto, always or never"
    );
}

#[tokio::test]
async fn logs_flag_shows_each_output_line_marked_by_stream() {
    let rigd = Rigd::start("logs").await;
    let spec = rigd.spec_file(
        "logs",
        r#"{"name": "it-logs", "services": {"talker": {
            "type": "process",
            "config": {"command": "sh"},
            "args": ["-c", "echo hello out; echo hello err >&2; exec sleep 600"]
        }}}"#,
    );
    let mut rig = rigd.rig_up(&spec, &["--logs"]);
    // stdout and stderr are read concurrently by rigd: their order is not defined.
    rig.wait_for_all(&[
        "    talker | hello out",
        "    talker ! hello err",
        "following traffic and logs; press Ctrl-C",
    ]);
    rig.signal(libc::SIGTERM);
    rig.wait_for("  ✓ torn down \"it-logs\"");
    let (code, stdout, stderr) = rig.finish();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

/// rigd's remarks about a service (an unset variable in its arguments at start, an unclean
/// stop at teardown) are shown without `--logs`, unlike the service's own output.
#[tokio::test]
async fn rig_remarks_are_shown_without_logs() {
    let rigd = Rigd::start("remarks").await;
    let spec = rigd.spec_file(
        "remarks",
        r#"{"name": "it-remarks", "services": {"grumpy": {
            "type": "process",
            "config": {"command": "sh"},
            "args": ["-c", "trap 'exit 3' INT; echo chatter; touch trapped; sleep 600 & wait", "$NOT_SET"]
        }}}"#,
    );
    let trapped = spec.with_file_name("trapped");
    let mut rig = rigd.rig_up(&spec, &[]);
    rig.wait_for(
        "    grumpy rig: args[2] \"$NOT_SET\": $NOT_SET is not set for this service, so it \
         expands to nothing; check the spelling, or write $$ for a literal $",
    );
    rig.wait_for("press Ctrl-C to tear the environment down");
    // The service's SIGINT trap is set once the file is there.
    until(|| trapped.exists(), "the service never set its trap");
    rig.signal(libc::SIGINT);
    rig.wait_for("    grumpy rig: ended with exit status 3 when told to stop (SIGINT)");
    rig.wait_for("  ✓ torn down \"it-remarks\"");
    let (code, stdout, stderr) = rig.finish();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        !stdout.contains("chatter"),
        "the output needs --logs:\n{stdout}"
    );
}
