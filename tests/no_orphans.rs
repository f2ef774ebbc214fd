//! No orphans: after `kill -9` of rigd with environments running, no service process survives
//! and the environment directories go away — through the reaper while it lives, and through
//! the next rigd start when the reaper was killed too.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rig_types::EventType;
use serde_json::json;
use support::{is_alive as alive, processes_with_env, reaper_of, ProcInfo, Rigd};

/// How long the reaper (or the next rigd) may take to clean up.
const CLEANUP: Duration = Duration::from_secs(60);

/// A service whose process group has a grandchild: `sh` starts a background `sleep`, so
/// killing the group leader alone is not enough; and another that leaves the group (`setsid`,
/// as daemons do), so killing the group is not enough either.
fn forking_service(rigd: &Rigd) -> serde_json::Value {
    let script = rigd.script(
        "forker.sh",
        "sleep 1000 &\nsetsid sleep 1000 &\nsleep 1000\n",
    );
    json!({"type": "process", "config": {"command": "sh"}, "args": [script]})
}

/// The session id of process `pid` (field 6 of `/proc/<pid>/stat`), if it is running.
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// Whether one of `found` is a `sleep` that has left its service's group for a session of
/// its own.
fn has_left_its_group(found: &[ProcInfo]) -> bool {
    found
        .iter()
        .any(|p| p.cmdline.starts_with("sleep") && session_of(p.pid) == Some(p.pid))
}

async fn environment_with_children(rigd: &Rigd) -> (String, Vec<ProcInfo>) {
    let id = rigd
        .create(json!({"name": "orphans", "services": {
            "forker": forking_service(rigd),
            "web": support::http_service(),
        }}))
        .await;
    rigd.events(&id).until(EventType::EnvironmentUp).await;
    let prefix = format!("RIG_ENV_DIR={}", rigd.rig_dir().join("tmp").display());
    // The sleeps and the shell have been started by the time the shell runs its last line,
    // and one sleep has its own session; wait for that condition rather than for a fixed
    // time.
    let deadline = Instant::now() + CLEANUP;
    let children = loop {
        let found = processes_with_env(&prefix);
        if found
            .iter()
            .filter(|p| p.cmdline.starts_with("sleep"))
            .count()
            >= 3
            && has_left_its_group(&found)
        {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the service's processes never appeared: {found:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    (id, children)
}

fn kill9(pid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(
        unsafe { libc::kill(pid as i32, libc::SIGKILL) },
        0,
        "kill -9 {pid}"
    );
}

/// Waits until none of `pids` is alive and `dir` is gone; panics with what is left.
fn wait_cleaned(children: &[ProcInfo], env_dir: &Path) {
    let deadline = Instant::now() + CLEANUP;
    loop {
        let left: Vec<_> = children.iter().filter(|p| alive(p.pid)).collect();
        if left.is_empty() && !env_dir.exists() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {CLEANUP:?}: processes left {left:#?}, env dir exists: {}",
            env_dir.exists()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many process groups the reaper record at `path` lists.
fn recorded_groups(path: &Path) -> usize {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["groups"].as_object().map(|g| g.len()))
        .unwrap_or(0)
}

#[tokio::test]
async fn kill_9_of_rigd_leaves_no_service_process_behind() {
    let rigd = Rigd::start();
    let (id, children) = environment_with_children(&rigd).await;
    let env_dir = rigd.rig_dir().join("tmp").join(&id);
    assert!(env_dir.is_dir());

    kill9(rigd.pid());
    wait_cleaned(&children, &env_dir);
}

/// Deleting the environment kills its processes, also those that left their service's
/// process group.
#[tokio::test]
async fn delete_leaves_no_service_process_behind() {
    let rigd = Rigd::start();
    let (id, children) = environment_with_children(&rigd).await;
    let env_dir = rigd.rig_dir().join("tmp").join(&id);
    let mut events = rigd.events_with_logs(&id);
    events.until(EventType::EnvironmentUp).await;
    rigd.client()
        .delete_environment(&id, &rigd::cli::client::DeleteOptions::default())
        .await
        .expect("DELETE");
    wait_cleaned(&children, &env_dir);
    events.until(EventType::EnvironmentDown).await;
    assert!(
        events.rig_remarks().contains(&(
            "forker".to_string(),
            "1 process it started outside its process group (with setsid, or as a daemon) \
             was still running when it ended, and killed (SIGKILL)\n"
                .to_string()
        )),
        "{:?}",
        events.rig_remarks()
    );
}

#[tokio::test]
async fn the_next_rigd_reaps_what_a_killed_rigd_and_reaper_left() {
    let rigd = Rigd::start();
    let (id, children) = environment_with_children(&rigd).await;
    let env_dir = rigd.rig_dir().join("tmp").join(&id);

    // Kill the reaper first, then rigd: only the record on disk is left. The reaper records
    // each group as rigd reports it; wait until both services' groups are on disk.
    let record = rigd
        .rig_dir()
        .join("reaper")
        .join(format!("{}.json", rigd.pid()));
    let deadline = Instant::now() + CLEANUP;
    while recorded_groups(&record) < 2 {
        assert!(
            Instant::now() < deadline,
            "the reaper never recorded the groups"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let reaper = reaper_of(rigd.pid());
    kill9(reaper);
    kill9(rigd.pid());
    // A rigd starting while the killed one is still exiting leaves its record alone (it
    // belongs to a live rigd): start the next one once both are gone, as a user would.
    let deadline = Instant::now() + CLEANUP;
    while alive(rigd.pid()) || alive(reaper) {
        assert!(
            Instant::now() < deadline,
            "rigd or its reaper outlived kill -9"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Nothing kills the services now (they get no parent-death signal): every process,
    // group leaders included, is left for the record.
    let survivors: Vec<_> = children.iter().filter(|p| alive(p.pid)).collect();
    assert_eq!(
        survivors.len(),
        children.len(),
        "only the next rigd may reap them: {children:#?}"
    );

    // A new rigd on the same rig dir reaps them at start.
    let addr_file = rigd.scratch().join("second.addr");
    let mut second = Command::new(env!("CARGO_BIN_EXE_rigd"))
        .args(["--addr", "127.0.0.1:0", "--idle", "0", "--rig-dir"])
        .arg(rigd.rig_dir())
        .arg("--addr-file")
        .arg(&addr_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_cleaned(&children, &env_dir);
    let _ = second.kill();
    let _ = second.wait();
}

/// Makes `path` removable again when dropped (also when the test fails), undoing
/// [`unremovable_script`]'s lock.
struct Unlock(std::path::PathBuf);

impl Unlock {
    fn now(&self) {
        if running_as_root() {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        } else if let Some(parent) = self.0.parent() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
        }
    }
}

impl Drop for Unlock {
    fn drop(&mut self) {
        self.now();
    }
}

fn running_as_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A service script leaving `data/stuck` in its temp dir, which rigd's user cannot remove
/// (as a container running as root leaves files a non-root rigd cannot remove): immutable
/// when the tests run as root, else in a directory without write permission.
fn unremovable_script() -> String {
    let lock = if running_as_root() {
        "chattr +i \"$RIG_TEMP_DIR/data/stuck\""
    } else {
        "chmod 500 \"$RIG_TEMP_DIR/data\""
    };
    format!(
        "mkdir \"$RIG_TEMP_DIR/data\"\necho x > \"$RIG_TEMP_DIR/data/stuck\"\n\
         echo x > \"$RIG_TEMP_DIR/free\"\n{lock}\necho locked\nexec sleep 1000\n"
    )
}

/// The directories the reaper record at `path` lists.
fn recorded_dirs(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            let dirs = v["dirs"].as_array()?.iter();
            Some(dirs.filter_map(|d| Some(d.as_str()?.to_string())).collect())
        })
        .unwrap_or_default()
}

/// An environment directory rigd cannot wholly remove at teardown is reported (what is left,
/// why, what to do), everything else in it goes, and it stays in the reaper's record: once
/// it can be removed, the reaper removes it as rigd exits (or the next rigd does).
#[tokio::test]
async fn an_env_dir_that_cannot_be_removed_stays_tracked_until_it_is_gone() {
    let rigd = Rigd::start();
    let script = rigd.script("stuck.sh", &unremovable_script());
    let id = rigd
        .create(json!({"name": "stuck", "services": {
            "writer": {"type": "process", "config": {"command": "sh"}, "args": [script]},
        }}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    events.until(EventType::EnvironmentUp).await;
    events.until_printed("writer", "locked\n").await;
    let env_dir = rigd.rig_dir().join("tmp").join(&id);
    let stuck = env_dir.join("writer/data/stuck");
    let unlock = Unlock(stuck.clone());
    rigd.client()
        .delete_environment(&id, &rigd::cli::client::DeleteOptions::default())
        .await
        .expect("DELETE");

    let reported = format!(
        "rigd: could not remove all of {}: {}: ",
        env_dir.display(),
        stuck.display()
    );
    let deadline = Instant::now() + CLEANUP;
    while !rigd.output().contains(&reported) {
        assert!(
            Instant::now() < deadline,
            "rigd never reported the leftover: {}",
            rigd.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(rigd.output().contains(&format!(
        "remove what is left yourself (e.g. `sudo rm -rf {}`)",
        env_dir.display()
    )));
    assert!(stuck.exists());
    assert!(
        !env_dir.join("writer/free").exists(),
        "the rest was removed"
    );

    // rigd tells the reaper about directories in order: once a later environment's is on
    // record, so would be the end of the stuck one's.
    let record = rigd
        .rig_dir()
        .join("reaper")
        .join(format!("{}.json", rigd.pid()));
    let later = rigd
        .create(json!({"name": "later", "services": {"web": support::http_service()}}))
        .await;
    let later_dir = rigd.rig_dir().join("tmp").join(&later);
    let deadline = Instant::now() + CLEANUP;
    while !recorded_dirs(&record).contains(&later_dir.display().to_string()) {
        assert!(
            Instant::now() < deadline,
            "the reaper never recorded {}",
            later_dir.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        recorded_dirs(&record).contains(&env_dir.display().to_string()),
        "the directory left behind is no longer tracked: {:?}",
        recorded_dirs(&record)
    );

    // Removable again: rigd's exit removes it (through its reaper).
    unlock.now();
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(rigd.pid() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + CLEANUP;
    while alive(rigd.pid()) {
        assert!(Instant::now() < deadline, "rigd did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!env_dir.exists(), "{} was left", env_dir.display());
}
