//! Several test processes (as `cargo nextest` runs them: one process per test) share one
//! rigd: the first to need it starts it under the rig dir's lock, the others find it.
//!
//! The parent test runs this test binary three times at once, each running only the ignored
//! `child_brings_up_an_environment`, all pointed at one fresh rig dir, and checks that every
//! child reached the same rigd.
//!
//! A test process killed while its environment is up (Ctrl-C on `cargo test`, `kill -9`)
//! leaves nothing running: rigd ends the environment once the process's event stream has
//! been gone for the orphan grace period.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rig::transport::client::RigdClient;
use rig::EventType;

use support::{http_server, rigd_binary, stop_rigd_of};

/// Where the parent tells a child to use as rig dir and to write its result.
const CHILD_ENV: &str = "RIG_SDK_TEST_CHILD";
/// The rigd address the parent gives the child it kills.
const DOOMED_ENV: &str = "RIG_SDK_TEST_DOOMED";
/// The rigd address the parent gives the child that exits holding its environment.
const HOLDER_ENV: &str = "RIG_SDK_TEST_HOLDER";

#[test]
fn several_test_processes_share_one_rigd() {
    let exe = std::env::current_exe().expect("the test executable");
    // SAFETY: getpid(2) cannot fail and has no preconditions.
    let pid = unsafe { libc::getpid() };
    let dir = std::env::temp_dir().join(format!("rig-sdk-processes-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a fresh rig dir");

    let children: Vec<_> = (0..3)
        .map(|i| {
            let out = dir.join(format!("child-{i}.out"));
            let child = Command::new(&exe)
                .args(["--exact", "child_brings_up_an_environment", "--ignored"])
                .env(CHILD_ENV, format!("{}|{}", dir.display(), out.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a child test process");
            (child, out)
        })
        .collect();

    let mut addrs = Vec::new();
    for (child, out) in children {
        let output = child.wait_with_output().expect("wait for the child");
        assert!(
            output.status.success(),
            "child test process failed: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&out).expect("the child wrote its result");
        let (addr, id) = text.split_once(' ').expect("`addr id`");
        assert!(!id.is_empty());
        addrs.push(addr.to_string());
    }
    assert!(
        addrs.windows(2).all(|w| w[0] == w[1]),
        "every process used the same rigd: {addrs:?}"
    );
    let addr_file = std::fs::read_dir(&dir)
        .expect("the rig dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "addr"))
        .expect("rigd's addr file in the rig dir");
    assert_eq!(
        std::fs::read_to_string(addr_file)
            .expect("addr file")
            .trim(),
        addrs[0]
    );
    // It would otherwise idle for 5 minutes.
    stop_rigd_of(&dir, libc::SIGTERM);
    std::fs::remove_dir_all(&dir).expect("remove the rig dir");
}

/// One "test process" of the test above; does nothing when run on its own.
#[tokio::test]
#[ignore = "run by several_test_processes_share_one_rigd"]
async fn child_brings_up_an_environment() -> Result<(), rig::BoxError> {
    let Ok(setting) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let (dir, out) = setting.split_once('|').expect("`dir|out`");
    let env = rig::Environment::builder("sdk-processes")
        .rigd_binary(rigd_binary())
        .rig_dir(PathBuf::from(dir))
        .observe(false)
        .service("web", http_server("."))
        .up()
        .await?;
    std::fs::write(out, format!("{} {}", env.rigd_addr(), env.id()))?;
    env.down().await?;
    Ok(())
}

#[tokio::test]
async fn a_killed_test_process_leaves_no_environment_behind() {
    let (_rigd, rig_dir, addr) = own_rigd("orphan", "1s");

    let child = Command::new(std::env::current_exe().expect("the test executable"))
        .args([
            "--exact",
            "child_is_killed_with_its_environment_up",
            "--ignored",
            "--nocapture",
        ])
        .env(DOOMED_ENV, &addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child test process");
    let mut child = Stopped { child, dir: None };
    let id = first_line_after(
        child.child.stdout.take().expect("stdout"),
        "environment up: ",
    );

    let client = RigdClient::new(&addr).expect("rigd's address");
    let mut events = client.events(&id, None);
    child.child.kill().expect("kill the child test process");
    child.child.wait().expect("reap the child test process");

    // The stream ends once the environment is down and its log files are written.
    let mut destroying = None;
    let follow = async {
        while let Some(event) = events.next().await {
            let event = event.expect("the event stream");
            if event.event_type == EventType::EnvironmentDestroying {
                destroying = Some(event.message);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), follow)
        .await
        .expect("the environment of the killed test ended");
    let message = destroying.expect("environment.destroying before environment.down");
    assert!(
        message.contains("disconnected 1s ago without ending it"),
        "{message}"
    );
    let listed = client.list_environments().await.expect("GET /environments");
    assert!(listed.is_empty(), "{listed:?}");
    // Its log was written, so `rig explain` can tell what the killed test did.
    let logs: Vec<_> = std::fs::read_dir(rig_dir.join("logs"))
        .expect("the logs directory")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    // A killed test did not pass.
    let text = std::fs::read_to_string(logs[0].path()).expect("the log");
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().unwrap_or("{}")).expect("the header");
    assert_eq!(header["outcome"], "failed", "{header}");
}

/// A test process that exits normally with an environment it never dropped (kept in a
/// `static` to share between tests, say) ends it on the way out, as a drop would: at once,
/// not after the orphan grace, and not as a killed test's.
#[tokio::test]
async fn a_test_process_exiting_with_an_environment_it_still_holds_ends_it() {
    // A grace long enough that only the process's own teardown can end it in time.
    let (_rigd, _, addr) = own_rigd("exit", "10m");
    let output = Command::new(std::env::current_exe().expect("the test executable"))
        .args([
            "--exact",
            "child_exits_holding_its_environment",
            "--ignored",
        ])
        .env(HOLDER_ENV, &addr)
        .output()
        .expect("run the child test process");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let client = RigdClient::new(&addr).expect("rigd's address");
    let listed = client.list_environments().await.expect("GET /environments");
    assert!(listed.is_empty(), "still running: {listed:?}");
}

/// The test process of the test above; does nothing when run on its own.
#[tokio::test]
#[ignore = "run by a_test_process_exiting_with_an_environment_it_still_holds_ends_it"]
async fn child_exits_holding_its_environment() -> Result<(), rig::BoxError> {
    let Ok(addr) = std::env::var(HOLDER_ENV) else {
        return Ok(());
    };
    let env = rig::Environment::builder("sdk-held")
        .rigd_addr(addr)
        .observe(false)
        .service("web", http_server("."))
        .up()
        .await?;
    // Never dropped, as a handle in a `static` is not.
    std::mem::forget(env);
    Ok(())
}

/// A rigd of the test's own on a fresh rig dir (`rig-sdk-<name>-<pid>/rig` in the temp dir)
/// with `orphan_grace`: the rigd (stopped, its directory removed, however the test ends), its
/// rig dir and its address.
fn own_rigd(name: &str, orphan_grace: &str) -> (Stopped, PathBuf, String) {
    // SAFETY: getpid(2) cannot fail and has no preconditions.
    let pid = unsafe { libc::getpid() };
    let dir = std::env::temp_dir().join(format!("rig-sdk-{name}-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    let rig_dir = dir.join("rig");
    let child = Command::new(rigd_binary())
        .args(["--addr", "127.0.0.1:0", "--idle", "0"])
        .args(["--orphan-grace", orphan_grace])
        .arg("--rig-dir")
        .arg(&rig_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rigd");
    let mut rigd = Stopped {
        child,
        dir: Some(dir),
    };
    let addr = first_line_after(
        rigd.child.stderr.take().expect("stderr"),
        "rigd listening on ",
    );
    (rigd, rig_dir, addr)
}

/// A process of the test above, stopped (SIGTERM) and reaped when dropped, with the
/// directory it used removed.
struct Stopped {
    child: std::process::Child,
    dir: Option<PathBuf>,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on a child of this process that has not been reaped, so its
            // pid is still its own.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The test process killed by the test above; does nothing when run on its own.
#[tokio::test]
#[ignore = "run by a_killed_test_process_leaves_no_environment_behind"]
async fn child_is_killed_with_its_environment_up() -> Result<(), rig::BoxError> {
    let Ok(addr) = std::env::var(DOOMED_ENV) else {
        return Ok(());
    };
    let env = rig::Environment::builder("sdk-killed")
        .rigd_addr(addr)
        .service("web", http_server("."))
        .up()
        .await?;
    println!("environment up: {}", env.id());
    std::future::pending::<()>().await;
    Ok(())
}

/// Reads `output` line by line until one starts with `prefix` and returns the rest of it,
/// then keeps draining `output` in the background so its writer never blocks.
fn first_line_after(output: impl std::io::Read + Send + 'static, prefix: &str) -> String {
    let mut lines = BufReader::new(output).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read a line");
        if let Some(rest) = line.strip_prefix(prefix) {
            let found = rest.trim().to_string();
            std::thread::spawn(move || lines.for_each(drop));
            return found;
        }
        seen.push(line);
    }
    panic!(
        "no line starting with {prefix:?}; the output was:\n{}",
        seen.join("\n")
    );
}
