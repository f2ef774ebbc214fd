//! Native backend processes: a database server run from binaries found on the machine.
//!
//! Each backend gets a private working directory under the system temp dir
//! (`rig-<type>-<rigd pid>-<n>`) and runs in its own process group with a parent-death signal;
//! both the group and the directory are in the reaper's record, so neither outlives rigd, even
//! after `kill -9`. Its output goes to `server.log` in that directory, whose tail explains a
//! failed start.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::process::{Child, Command};

use super::output_tail::{quote_end, SCAN};
use super::server::poll_ready;

/// How long a stopping backend gets between SIGINT and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A user the backend runs as instead of root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
}

impl RunAs {
    /// Looks up a user by name.
    pub fn user(name: &str) -> Option<RunAs> {
        let name = CString::new(name).ok()?;
        // SAFETY: getpwnam returns null or a pointer to a static record that stays valid until
        // the next getpw* call; the fields are copied out at once. rigd calls getpw* nowhere
        // else concurrently.
        unsafe {
            let pw = libc::getpwnam(name.as_ptr());
            if pw.is_null() {
                return None;
            }
            Some(RunAs {
                uid: (*pw).pw_uid,
                gid: (*pw).pw_gid,
            })
        }
    }
}

/// True when rigd runs as root.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A backend's private working directory, removed when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `<temp>/rig-<kind>-<rigd pid>-<n>` (owner-only, owned by `owner` if given) and
    /// records it with the reaper. The dirs of this kind left by processes that no longer run
    /// are removed first.
    pub fn create(kind: &str, owner: Option<RunAs>) -> std::io::Result<WorkDir> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        remove_orphans(kind);
        let path = std::env::temp_dir().join(format!("rig-{kind}-{}-{n}", std::process::id()));
        // Leftovers of a rigd that had this pid before.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let dir = WorkDir { path };
        if let Some(owner) = owner {
            std::os::unix::fs::chown(&dir.path, Some(owner.uid), Some(owner.gid))?;
        }
        if let Some(reaper) = crate::reaper::installed() {
            reaper.track_dir(&dir.path);
        }
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log file the backend's output goes to.
    pub fn log_path(&self) -> PathBuf {
        self.path.join("server.log")
    }

    /// The end of the backend's log, for error messages (see [`quote_end`]).
    pub fn log_tail(&self) -> String {
        let Ok(mut f) = File::open(self.log_path()) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(SCAN as u64)));
        let mut bytes = Vec::new();
        if f.read_to_end(&mut bytes).is_err() {
            return String::new();
        }
        quote_end(&String::from_utf8_lossy(&bytes))
    }
}

/// Removes the `<temp>/rig-<kind>-<pid>-<n>` dirs whose process is gone. A rigd that was
/// killed (or a test process that exited without closing its pools) leaves its backends' dirs
/// behind: a postgres data dir is 69 MB. Dirs of a live process, or one this process cannot
/// tell about, stay; so does whatever cannot be removed.
fn remove_orphans(kind: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let prefix = format!("rig-{kind}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = orphan_pid(&name.to_string_lossy(), &prefix) else {
            continue;
        };
        // SAFETY: kill(2) with signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in a work dir's name `<prefix><pid>-<n>`, unless it is this process's or the
/// name is not one.
fn orphan_pid(name: &str, prefix: &str) -> Option<libc::pid_t> {
    let (pid, n) = name.strip_prefix(prefix)?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    let pid: libc::pid_t = pid.parse().ok()?;
    (pid > 0 && pid as u32 != std::process::id()).then_some(pid)
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        if let Some(reaper) = crate::reaper::installed() {
            reaper.untrack_dir(&self.path);
        }
    }
}

/// Runs a command to completion (a setup step such as `initdb`) with its output appended to
/// the work dir's log; a failure quotes the log's tail.
pub async fn run_setup(
    program: &Path,
    args: &[String],
    dir: &WorkDir,
    run_as: Option<RunAs>,
) -> Result<(), String> {
    let mut cmd = command(program, args, dir, run_as)?;
    let mut child = {
        let _fork = crate::ports::forking();
        cmd.spawn()
            .map_err(|e| format!("run {}: {e}", program.display()))?
    };
    let status = child
        .wait()
        .await
        .map_err(|e| format!("run {}: {e}", program.display()))?;
    if status.success() {
        return Ok(());
    }
    Err(format!(
        "{} failed ({status}); its output ends with:\n{}",
        program.display(),
        dir.log_tail()
    ))
}

/// A long-running backend process (the leader of its own process group).
pub struct NativeProcess {
    child: Mutex<Option<Child>>,
    pgid: i32,
}

impl NativeProcess {
    /// Starts `program` in its own process group, output appended to the work dir's log, and
    /// records the group with the reaper.
    pub fn spawn(
        program: &Path,
        args: &[String],
        dir: &WorkDir,
        run_as: Option<RunAs>,
    ) -> Result<NativeProcess, String> {
        let cmd = command(program, args, dir, run_as)?;
        let child = spawn_lasting(cmd).map_err(|e| format!("start {}: {e}", program.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| format!("start {}: exited at once", program.display()))?;
        if let Some(reaper) = crate::reaper::installed() {
            reaper.track_group(pid as i32, pid);
        }
        Ok(NativeProcess {
            child: Mutex::new(Some(child)),
            pgid: pid as i32,
        })
    }

    /// False once the process has exited.
    pub fn alive(&self) -> bool {
        let mut child = self.child.lock();
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGINT to the group, SIGKILL after [`STOP_GRACE`]; waits for the leader and forgets
    /// the group.
    pub async fn stop(&self) {
        let Some(mut child) = self.child.lock().take() else {
            return;
        };
        signal_group(self.pgid, libc::SIGINT);
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            signal_group(self.pgid, libc::SIGKILL);
            let _ = child.wait().await;
        }
        // Helpers the leader left behind.
        signal_group(self.pgid, libc::SIGKILL);
        if let Some(reaper) = crate::reaper::installed() {
            reaper.untrack_group(self.pgid);
        }
    }
}

impl Drop for NativeProcess {
    fn drop(&mut self) {
        if self.child.get_mut().is_some() {
            signal_group(self.pgid, libc::SIGKILL);
            if let Some(reaper) = crate::reaper::installed() {
                reaper.untrack_group(self.pgid);
            }
        }
    }
}

/// A command for the spawner thread, the runtime its child is registered with, and where
/// the child goes.
type SpawnJob = (
    Command,
    tokio::runtime::Handle,
    std::sync::mpsc::SyncSender<std::io::Result<Child>>,
);

/// Spawns `cmd` (within a tokio runtime) from a thread that lives as long as rigd.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that spawned a child exits, not the process,
/// and tokio's threads come and go: `block_in_place` (a spill of the event log) hands a
/// worker's place to a new thread, and the old one later retires from the blocking pool. A
/// backend spawned from it would be killed under every environment using it.
fn spawn_lasting(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<std::sync::mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("rig-backend-spawner".to_string())
            .spawn(move || {
                for (mut cmd, runtime, reply) in queue {
                    let _runtime = runtime.enter();
                    let _fork = crate::ports::forking();
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("rigd cannot start a thread");
        jobs
    });
    let runtime = tokio::runtime::Handle::current();
    let (reply, child) = std::sync::mpsc::sync_channel(1);
    spawner
        .send((cmd, runtime, reply))
        .map_err(|_| std::io::Error::other("the backend spawner thread is gone"))?;
    child
        .recv()
        .map_err(|_| std::io::Error::other("the backend spawner thread is gone"))?
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the group.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

fn command(
    program: &Path,
    args: &[String],
    dir: &WorkDir,
    run_as: Option<RunAs>,
) -> Result<Command, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log_path())
        .map_err(|e| format!("open {}: {e}", dir.log_path().display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("open {}: {e}", dir.log_path().display()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Finds `name` on rigd's `PATH`, then in `extra` directories (glob-free, already expanded).
pub fn find_program(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A free loopback port, found by binding port 0 (the backend binds it a moment later).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

/// Polls `ready` every 50 ms until it succeeds, the process dies, or `timeout` passes.
pub async fn wait_ready<F, Fut>(
    what: &str,
    process: &NativeProcess,
    dir: &WorkDir,
    timeout: Duration,
    ready: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    poll_ready(timeout, || process.alive(), ready)
        .await
        .map_err(|not_ready| not_ready.message(what, timeout, &dir.log_tail()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend outlives the thread that started it: its parent-death signal is tied to
    /// the spawner thread, which lives as long as the process, not to a runtime thread that
    /// may retire.
    #[test]
    fn a_backend_outlives_the_thread_that_started_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = WorkDir::create("spawner-test", None).unwrap();
        let sleep = find_program("sleep", &[]).expect("sleep on PATH");
        let process = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let _runtime = runtime.enter();
                    NativeProcess::spawn(&sleep, &["60".to_string()], &dir, None).unwrap()
                })
                .join()
                .unwrap()
        });
        // The thread that asked is gone. Had it spawned the child, the kernel would have
        // sent the child SIGKILL as it exited: the child would be dead within moments.
        let mut child = process.child.lock().take().unwrap();
        let ended = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(500), child.wait()).await
        });
        assert!(
            ended.is_err(),
            "the backend died with the thread: {ended:?}"
        );
        signal_group(process.pgid, libc::SIGKILL);
        let _ = runtime.block_on(child.wait());
    }

    #[test]
    fn only_work_dir_names_of_other_processes_have_an_orphan_pid() {
        let me = std::process::id();
        assert_eq!(orphan_pid("rig-pg-123-4", "rig-pg-"), Some(123));
        assert_eq!(orphan_pid(&format!("rig-pg-{me}-4"), "rig-pg-"), None);
        for name in [
            "rig-pg-123",
            "rig-pg--4",
            "rig-pg-12a-4",
            "rig-pg-0-1",
            "rig-redis-1-1",
        ] {
            assert_eq!(orphan_pid(name, "rig-pg-"), None, "{name}");
        }
    }

    /// A dir left by a process that is gone is removed when the next one of its kind is made;
    /// one of a live process stays.
    #[test]
    fn creating_a_work_dir_removes_those_of_processes_that_are_gone() {
        let kind = "orphan-test";
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::os::unix::process::parent_id();
        let tmp = std::env::temp_dir();
        let (orphan, other) = (
            tmp.join(format!("rig-{kind}-{dead}-1")),
            tmp.join(format!("rig-{kind}-{live}-1")),
        );
        for dir in [&orphan, &other] {
            std::fs::create_dir_all(dir.join("data")).unwrap();
        }
        let made = WorkDir::create(kind, None).unwrap();
        assert!(
            !orphan.exists(),
            "the orphan {} is still there",
            orphan.display()
        );
        assert!(other.exists(), "the dir of a live process was removed");
        assert!(made.path().is_dir());
        std::fs::remove_dir_all(&other).unwrap();
    }
}
