//! No orphans: whatever happens to rigd, the processes and directories it created go away.
//!
//! Three layers:
//! 1. every service runs in its own process group, so one signal reaches all of its
//!    processes. Process services get no `PR_SET_PDEATHSIG`: setting it needs a `pre_exec`
//!    hook, which makes std fork(2) rigd instead of using posix_spawn(3), a large
//!    per-service cost of starting an environment; it only ever covered the group leader,
//!    and it fires when the *thread* that spawned exits, not rigd. Layers 2 and 3 cover it.
//!    (Pooled infrastructure servers, started rarely, keep it, spawned from a thread that
//!    lives as long as rigd: `crate::pool::native`.)
//! 2. a companion **reaper** process (`rigd __reap <record>`) that rigd tells, over a pipe,
//!    which process groups and environment directories are live. When the pipe closes — rigd
//!    exited or was killed, even with `kill -9` — it kills those groups and removes those
//!    directories. It ignores terminal signals so a Ctrl-C aimed at rigd cannot take it down
//!    first;
//! 3. the reaper keeps a **record** file under `{rig-dir}/reaper/` (saved once rigd has been
//!    quiet for a few milliseconds, at most 50 ms after a change); if rigd and its reaper both
//!    die, the next rigd start reaps what the record lists ([`reap_leftovers`]).
//!
//! Docker containers are tracked the same way (the reaper removes them through the engine),
//! and also carry labels naming their rig dir and rigd, so the next rigd start removes any
//! whose rigd is gone (`crate::docker::sweep_leftovers_blocking`).
//!
//! A group is only killed if its processes started no earlier than the recorded leader, so a
//! process group id reused by an unrelated program after a reboot is left alone.
//!
//! A process can leave its group (`setsid`, a daemon such as `redis-server --daemonize yes`
//! or what `pg_ctl start` starts). So every service process is also given a **run tag**, a
//! variable [`RUN_TAG_VAR`] unique to that run of that service, which its descendants inherit
//! wherever they go: when the group is killed (by rigd, the reaper or the next rigd), every
//! process of the same user whose environment holds the tag is killed too ([`kill_tagged`]).
//! The scan of `/proc` this takes happens at teardown only.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::orchestrator::{remove_everything, Unremoved};

/// The argument that runs the rigd binary as a reaper.
pub const REAPER_ARG: &str = "__reap";

static INSTALLED: std::sync::OnceLock<std::sync::Arc<Reaper>> = std::sync::OnceLock::new();

/// Makes `reaper` this process's reaper (the `rigd` binary does this at startup; in-process
/// tests run without one). Returns false if one was already installed.
pub fn install(reaper: Reaper) -> bool {
    INSTALLED.set(std::sync::Arc::new(reaper)).is_ok()
}

/// This process's reaper, if one was installed.
pub fn installed() -> Option<std::sync::Arc<Reaper>> {
    INSTALLED.get().cloned()
}

/// Starts the reaper for a rigd using `rig_dir`, after reaping what dead rigds left there.
/// Failure is reported and rigd runs on without it (parent-death signals still apply).
pub fn start(rig_dir: &Path) {
    let record_dir = rig_dir.join("reaper");
    // What could not be removed before is reported again: this is when people look.
    let reaped = reap_leftovers(&record_dir, true);
    if reaped > 0 {
        eprintln!("rigd: cleaned up after {reaped} rigd(s) that did not shut down cleanly");
    }
    // Containers are labelled with their rigd, so even those created just before a crash
    // (not yet in any record) are found.
    // In the background: a wedged engine must not delay rigd's start.
    crate::docker::set_rig_dir(rig_dir);
    let dir = rig_dir.to_path_buf();
    std::thread::spawn(move || {
        let removed = crate::docker::sweep_leftovers_blocking(&dir);
        if removed > 0 {
            eprintln!("rigd: removed {removed} container(s) left by rigds that did not shut down");
        }
    });
    let started = std::env::current_exe().and_then(|exe| Reaper::spawn(&exe, &record_dir));
    sweep_every(record_dir.clone(), LEFTOVER_SWEEP);
    match started {
        Ok(reaper) => {
            install(reaper);
        }
        Err(e) => eprintln!("rigd: start reaper: {e}; processes may outlive a crash of rigd"),
    }
}

/// rigd's handle on its reaper process.
pub struct Reaper {
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

/// One instruction from rigd to its reaper, one JSON object per line.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Message {
    Group {
        pgid: i32,
        start: u64,
        /// The group's run tag ([`RUN_TAG_VAR`]); empty for untagged groups.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        tag: String,
    },
    Ungroup {
        pgid: i32,
    },
    Dir {
        path: PathBuf,
    },
    Undir {
        path: PathBuf,
    },
    Container {
        id: String,
    },
    Uncontainer {
        id: String,
    },
}

/// What a reaper is responsible for, as written to its record file.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Record {
    rigd_pid: u32,
    /// rigd's start time (clock ticks since boot): with the pid, the owner label of its
    /// containers.
    #[serde(default)]
    rigd_start: u64,
    /// rigd's boot and pid namespace (`crate::docker::this_namespace`), the other owner label
    /// of its containers; empty in records of older rigds and when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    rigd_namespace: String,
    reaper_pid: u32,
    /// The reaper's start time (clock ticks since boot); 0 in records of older rigds.
    #[serde(default)]
    reaper_start: u64,
    /// Process group id → the leader's start time (clock ticks since boot).
    groups: BTreeMap<i32, u64>,
    /// Process group id → the run tag its processes carry ([`RUN_TAG_VAR`]), for the groups
    /// that have one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<i32, String>,
    dirs: BTreeSet<PathBuf>,
    /// Docker container ids.
    #[serde(default)]
    containers: BTreeSet<String>,
    /// Set once reaping is done but for `dirs`, which could not be removed and have been
    /// reported: later tries stay quiet unless told to remind.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reported: bool,
}

impl Record {
    /// What is left of this record once everything but `left` has been reaped: the
    /// directories that could not be removed, for the next try.
    fn leftover(&self, left: &[Unremoved]) -> Record {
        Record {
            rigd_pid: self.rigd_pid,
            rigd_start: self.rigd_start,
            rigd_namespace: self.rigd_namespace.clone(),
            reaper_pid: self.reaper_pid,
            reaper_start: self.reaper_start,
            dirs: left.iter().map(|l| l.dir().to_path_buf()).collect(),
            reported: true,
            ..Record::default()
        }
    }
}

impl Reaper {
    /// Starts the reaper: `rigd_exe __reap <record_dir>/<rigd pid>.json`.
    pub fn spawn(rigd_exe: &Path, record_dir: &Path) -> std::io::Result<Reaper> {
        create_private_dir(record_dir)?;
        let record = record_dir.join(format!("{}.json", std::process::id()));
        let mut child = Command::new(rigd_exe)
            .arg(REAPER_ARG)
            .arg(&record)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("reaper has no stdin"))?;
        Ok(Reaper {
            stdin: Mutex::new(Some(stdin)),
            child: Mutex::new(child),
        })
    }

    /// Asks the reaper to kill process group `pgid` (led by `leader`) if rigd dies.
    pub fn track_group(&self, pgid: i32, leader: u32) {
        self.track_group_since(pgid, process_start(leader).unwrap_or(0));
    }

    /// [`Reaper::track_group`] for a group whose leader was spawned after `since` (from
    /// [`boot_ticks_now`] taken before the spawn): no `/proc` read on the path of every
    /// service start. Only processes of the group started at or after `since` are killed.
    pub fn track_group_since(&self, pgid: i32, since: u64) {
        self.track_group_tagged(pgid, since, "");
    }

    /// [`Reaper::track_group_since`] for a group whose processes carry the run tag `tag`
    /// ([`RUN_TAG_VAR`]): processes with that tag are killed too, in the group or not.
    pub fn track_group_tagged(&self, pgid: i32, since: u64, tag: &str) {
        self.send(&Message::Group {
            pgid,
            start: since,
            tag: tag.to_string(),
        });
    }

    /// The group has been stopped; forget it.
    pub fn untrack_group(&self, pgid: i32) {
        self.send(&Message::Ungroup { pgid });
    }

    /// Asks the reaper to remove `path` if rigd dies.
    pub fn track_dir(&self, path: &Path) {
        self.send(&Message::Dir {
            path: path.to_path_buf(),
        });
    }

    /// The directory has been removed (or is preserved on purpose); forget it.
    pub fn untrack_dir(&self, path: &Path) {
        self.send(&Message::Undir {
            path: path.to_path_buf(),
        });
    }

    /// Asks the reaper to remove Docker container `id` if rigd dies.
    pub fn track_container(&self, id: &str) {
        self.send(&Message::Container { id: id.to_string() });
    }

    /// The container has been removed; forget it.
    pub fn untrack_container(&self, id: &str) {
        self.send(&Message::Uncontainer { id: id.to_string() });
    }

    fn send(&self, message: &Message) {
        let Ok(mut line) = serde_json::to_vec(message) else {
            return;
        };
        line.push(b'\n');
        let mut stdin = self.stdin.lock();
        let Some(pipe) = stdin.as_mut() else { return };
        if let Err(e) = pipe.write_all(&line) {
            eprintln!("rigd: reaper is gone ({e}); processes may outlive a crash of rigd");
            *stdin = None;
        }
    }

    /// Ends the reaper and waits for it: it reaps whatever is still tracked, which after a
    /// clean shutdown is nothing.
    pub fn finish(&self) {
        // Closing stdin is what tells the reaper rigd is done.
        drop(self.stdin.lock().take());
        let _ = self.child.lock().wait();
    }
}

/// The reaper saves its record once rigd has sent nothing for this long after a change...
const SAVE_QUIET: Duration = Duration::from_millis(5);
/// ...or once the oldest unsaved change is this old, whichever comes first. An environment's
/// start sends a message per service, one at a time; saving after each (a write and a rename)
/// cost a rename per message, on the same CPUs as the services starting. Only the record
/// lags: the reaper itself always knows everything rigd sent.
const SAVE_DELAY_MAX: Duration = Duration::from_millis(50);
/// Having read all rigd sent, the reaper sleeps this long before it waits on the pipe again,
/// so the messages of a starting environment (one per service) are read a few at a time
/// rather than each waking it: rigd's writes then wake nobody, and the reaper does not
/// compete for the CPUs the services start on. Nothing is lost: what rigd writes waits in
/// the pipe, and the end of the pipe (rigd gone) comes after everything rigd wrote.
const READ_PAUSE: Duration = Duration::from_millis(2);

/// The reaper process's main loop: follow rigd's instructions until the pipe closes, then
/// reap. Returns the process exit code.
pub fn run(record_path: &Path) -> i32 {
    ignore_terminal_signals();
    let rigd_pid = parent_pid();
    let mut record = Record {
        rigd_pid,
        rigd_start: process_start(rigd_pid).unwrap_or(0),
        // The reaper is rigd's child: same boot, same pid namespace.
        rigd_namespace: crate::docker::this_namespace()
            .unwrap_or_default()
            .to_string(),
        reaper_pid: std::process::id(),
        reaper_start: process_start(std::process::id()).unwrap_or(0),
        ..Record::default()
    };
    save(record_path, &record);
    let input = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("rigd reaper: read instructions: {e}");
            return 1;
        }
    };
    let mut reader = std::io::BufReader::new(input);
    let mut unsaved_since: Option<Instant> = None;
    let mut line = String::new();
    loop {
        if let Some(since) = unsaved_since {
            let nothing_buffered = reader.buffer().is_empty();
            let overdue = since.elapsed() >= SAVE_DELAY_MAX;
            if overdue
                || (nothing_buffered
                    && !readable_within(
                        reader.get_ref(),
                        SAVE_QUIET.min(SAVE_DELAY_MAX.saturating_sub(since.elapsed())),
                    ))
            {
                save(record_path, &record);
                unsaved_since = None;
            }
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        apply(&mut record, line.trim_end());
        unsaved_since.get_or_insert_with(Instant::now);
        if reader.buffer().is_empty() {
            std::thread::sleep(READ_PAUSE);
        }
    }
    if unsaved_since.is_some() {
        // Should reaping be cut short, the next rigd finds the rest.
        save(record_path, &record);
    }
    let left = reap(&record);
    if left.is_empty() {
        let _ = std::fs::remove_file(record_path);
    } else {
        // The next rigd (or a running one's sweep) tries again.
        report(&left);
        save(record_path, &record.leftover(&left));
    }
    0
}

/// Tells rigd's user what could not be removed, why, and what to do.
fn report(left: &[Unremoved]) {
    for unremoved in left {
        eprintln!("rigd: {unremoved}");
    }
}

/// Applies one instruction line from rigd to the record.
fn apply(record: &mut Record, line: &str) {
    match serde_json::from_str::<Message>(line) {
        Ok(Message::Group { pgid, start, tag }) => {
            record.groups.insert(pgid, start);
            if tag.is_empty() {
                record.tags.remove(&pgid);
            } else {
                record.tags.insert(pgid, tag);
            }
        }
        Ok(Message::Ungroup { pgid }) => {
            record.groups.remove(&pgid);
            record.tags.remove(&pgid);
        }
        Ok(Message::Dir { path }) => {
            record.dirs.insert(path);
        }
        Ok(Message::Undir { path }) => {
            record.dirs.remove(&path);
        }
        Ok(Message::Container { id }) => {
            record.containers.insert(id);
        }
        Ok(Message::Uncontainer { id }) => {
            record.containers.remove(&id);
        }
        Err(e) => eprintln!("rigd reaper: ignoring {line:?}: {e}"),
    }
}

/// Whether `file` has something to read (or has reached its end) within `wait`. A failed
/// or interrupted wait counts as not readable, so the caller saves now rather than late.
fn readable_within(file: &std::fs::File, wait: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Rounded up to whole milliseconds, so a short wait is not a busy loop.
    let millis = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fd` is one valid pollfd and the count says one.
    let ready = unsafe { libc::poll(&mut fd, 1, millis) };
    ready > 0
}

/// How often a running rigd looks again for what dead rigds left behind: a rigd killed
/// together with its reaper (`kill -9` of their process group) after this one started, or
/// one still exiting when this one started, would otherwise wait for the next rigd's start.
const LEFTOVER_SWEEP: Duration = Duration::from_secs(30);

/// Reaps leftovers in `record_dir` every `period`, on a thread of its own, until the
/// directory is gone.
fn sweep_every(record_dir: PathBuf, period: Duration) {
    let spawned = std::thread::Builder::new()
        .name("rigd-leftovers".into())
        .spawn(move || {
            while record_dir.is_dir() {
                std::thread::sleep(period);
                let reaped = reap_leftovers(&record_dir, false);
                if reaped > 0 {
                    eprintln!(
                        "rigd: cleaned up after {reaped} rigd(s) that did not shut down cleanly"
                    );
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("rigd: start the leftover sweeper: {e}; leftovers wait for the next rigd");
    }
}

/// Reaps what dead rigds left behind, from the records in `record_dir`. Records of a live
/// rigd or a live reaper are left alone. Returns how many records were reaped.
///
/// Directories that cannot be removed (see [`Unremoved`]) stay in their record for the next
/// try; they are reported the first time, and again when `remind` is set.
pub fn reap_leftovers(record_dir: &Path, remind: bool) -> usize {
    let Ok(entries) = std::fs::read_dir(record_dir) else {
        return 0;
    };
    let mut reaped = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(record) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        else {
            continue;
        };
        // A pid now used by another process (started at another time) is not the rigd or
        // reaper of the record: its leftovers are reaped all the same.
        if running(record.rigd_pid, record.rigd_start)
            || running(record.reaper_pid, record.reaper_start)
        {
            continue;
        }
        let left = reap(&record);
        if left.is_empty() {
            let _ = std::fs::remove_file(&path);
            reaped += 1;
            continue;
        }
        if remind || !record.reported {
            report(&left);
        }
        save(&path, &record.leftover(&left));
    }
    reaped
}

/// Kills, removes and force-removes what `record` lists; returns the directories that could
/// not be removed (all the rest went).
fn reap(record: &Record) -> Vec<Unremoved> {
    for (&pgid, &start) in &record.groups {
        kill_group(pgid, start);
    }
    let tags: Vec<&str> = record.tags.values().map(String::as_str).collect();
    kill_tagged(&tags, None);
    let left = record
        .dirs
        .iter()
        .filter_map(|dir| remove_dir_and_its_workers(dir, record.rigd_start).err())
        .collect();
    // The recorded ids, and anything labelled as rigd's (created just before it died, before
    // it could tell us).
    let owner =
        (record.rigd_start != 0).then(|| format!("{}:{}", record.rigd_pid, record.rigd_start));
    let namespace = (!record.rigd_namespace.is_empty()).then(|| record.rigd_namespace.clone());
    crate::docker::remove_containers_blocking(
        record.containers.iter().cloned().collect(),
        owner,
        namespace,
    );
    left
}

/// Removes `dir` after SIGKILLing every process working in it (its current directory is
/// inside `dir`) that started during rigd's life (`since`, clock ticks since boot). A
/// recorded group does not always hold every process of a service: a PostgreSQL backend runs
/// in a session of its own, and one caught in `CREATE DATABASE` waits forever for the killed
/// checkpointer while writing into its data directory.
/// Entries that cannot be removed (see [`Unremoved`]) do not stop the removal of the rest.
fn remove_dir_and_its_workers(dir: &Path, since: u64) -> Result<(), Unremoved> {
    let mut attempts = 5;
    loop {
        for pid in working_in(dir, since) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let removed = remove_everything(dir);
        attempts -= 1;
        if removed.is_ok() || attempts == 0 {
            return removed;
        }
        // A killed worker may still have been writing: let it die, then try again.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Processes started no earlier than `since` whose current directory is inside `dir`, from
/// `/proc` (never this process).
fn working_in(dir: &Path, since: u64) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            pid != me
                && std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .is_ok_and(|cwd| cwd.starts_with(dir))
                && stat(pid as u32).is_some_and(|s| s.start >= since && !s.zombie)
        })
        .collect()
}

/// SIGKILLs every process in group `pgid` that started no earlier than `start`. Repeats a few
/// times in case a member forked while being killed.
fn kill_group(pgid: i32, start: u64) {
    for _ in 0..5 {
        let members = group_members(pgid, start);
        if members.is_empty() {
            return;
        }
        for pid in members {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The environment variable that carries a service process's run tag: a value unique to one
/// run of one service, inherited by everything it starts, even outside its process group.
pub const RUN_TAG_VAR: &str = "RIG_RUN";

/// SIGKILLs every process of this user (never this one) whose environment holds
/// `RIG_RUN=<tag>` for one of `tags`, from `/proc`. Repeats a few times in case one forked
/// while being killed. Returns how many processes were killed outside process group
/// `group` (one just killed may not have exited yet). Reads the environment of every process
/// of the user: for teardown, not for a hot path.
pub fn kill_tagged(tags: &[&str], group: Option<i32>) -> usize {
    if tags.is_empty() {
        return 0;
    }
    let wanted: Vec<Vec<u8>> = tags
        .iter()
        .map(|tag| format!("{RUN_TAG_VAR}={tag}").into_bytes())
        .collect();
    let mut killed = BTreeSet::new();
    for _ in 0..5 {
        let found = tagged(&wanted);
        if found.is_empty() {
            break;
        }
        for pid in found {
            let outside = group.is_none_or(|g| stat(pid as u32).is_some_and(|s| s.pgrp != g));
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            if outside {
                killed.insert(pid);
            }
        }
    }
    killed.len()
}

/// Processes of this user (never this one) whose environment holds one of the `wanted`
/// entries (`NAME=value`, byte for byte). A zombie's environment reads empty: never found.
fn tagged(wanted: &[Vec<u8>]) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // SAFETY: geteuid(2) cannot fail.
    let uid = unsafe { libc::geteuid() };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<i32>().ok()?, e.path())))
        .filter(|(pid, path)| {
            *pid != me
                && std::fs::metadata(path).is_ok_and(|m| m.uid() == uid)
                && std::fs::read(path.join("environ")).is_ok_and(|environ| {
                    environ
                        .split(|&b| b == 0)
                        .any(|var| wanted.iter().any(|w| w == var))
                })
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Processes in group `pgid` started at or after `start`, from `/proc`.
pub(crate) fn group_members(pgid: i32, start: u64) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            stat(pid as u32).is_some_and(|s| s.pgrp == pgid && s.start >= start && !s.zombie)
        })
        .collect()
}

struct Stat {
    pgrp: i32,
    start: u64,
    zombie: bool,
}

/// Fields of `/proc/<pid>/stat` (after the parenthesised command name, which may hold spaces).
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest[0] is field 3 (state); pgrp is field 5, starttime field 22.
    Some(Stat {
        zombie: fields.first()? == &"Z",
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// A process's start time in clock ticks since boot.
pub fn process_start(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start)
}

/// Now, in the unit of [`process_start`] (clock ticks since boot, rounded down as the kernel
/// rounds a start time), so a process spawned after this call has a start time no earlier.
/// 0 (which matches any start) if the clock cannot be read.
pub fn boot_ticks_now() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; sysconf has no preconditions.
    let (read, ticks_per_second) = unsafe {
        (
            libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    if read != 0 || ticks_per_second <= 0 {
        return 0;
    }
    let nanos = now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128;
    (nanos / (1_000_000_000 / ticks_per_second as u128)) as u64
}

/// Whether `pid` is a live process (not a zombie) that started at `start` (clock ticks since
/// boot; 0 when unknown, which accepts any start).
fn running(pid: u32, start: u64) -> bool {
    pid != 0 && stat(pid).is_some_and(|s| !s.zombie && (start == 0 || s.start == start))
}

fn parent_pid() -> u32 {
    // SAFETY: getppid(2) cannot fail.
    unsafe { libc::getppid() as u32 }
}

fn ignore_terminal_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: installing SIG_IGN has no preconditions.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

fn save(path: &Path, record: &Record) {
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec(record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_private(&tmp, &bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        eprintln!("rigd reaper: write {}: {e}", path.display());
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn messages_round_trip_as_json_lines() {
        for m in [
            Message::Group {
                pgid: 42,
                start: 7,
                tag: String::new(),
            },
            Message::Group {
                pgid: 42,
                start: 7,
                tag: "env/api/1".into(),
            },
            Message::Ungroup { pgid: 42 },
            Message::Dir {
                path: "/tmp/a b\nc".into(),
            },
            Message::Undir { path: "/x".into() },
            Message::Container { id: "abc".into() },
            Message::Uncontainer { id: "abc".into() },
        ] {
            let line = serde_json::to_string(&m).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Message>(&line).unwrap(), m);
        }
    }

    /// The clock read before a spawn is a lower bound of the child's start time, in the
    /// same unit, and not far below it (a group is matched by `start >= since`).
    #[test]
    fn boot_ticks_before_a_spawn_bound_the_childs_start() {
        let since = boot_ticks_now();
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let start = process_start(child.id()).unwrap();
        let after = boot_ticks_now();
        let _ = child.kill();
        let _ = child.wait();
        assert!(since > 0);
        assert!(
            since <= start && start <= after,
            "{since} <= {start} <= {after}"
        );
    }

    #[test]
    fn stat_reads_this_process() {
        let me = stat(std::process::id()).unwrap();
        // SAFETY: getpgrp(2) cannot fail.
        assert_eq!(me.pgrp, unsafe { libc::getpgrp() });
        assert!(me.start > 0 && !me.zombie);
        assert!(running(std::process::id(), 0));
        assert!(!running(0, 0));
    }

    #[test]
    fn leftovers_of_a_dead_rigd_are_reaped_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A process group that looks like a service of a dead rigd.
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let env_dir = dir.path().join("env");
        std::fs::create_dir(&env_dir).unwrap();
        let dead = Record {
            rigd_pid: u32::MAX - 1,
            rigd_start: 0,
            reaper_pid: u32::MAX - 2,
            reaper_start: 0,
            groups: BTreeMap::from([(pgid, process_start(child.id()).unwrap())]),
            dirs: BTreeSet::from([env_dir.clone()]),
            ..Record::default()
        };
        save(&dir.path().join("1.json"), &dead);
        let live = Record {
            rigd_pid: std::process::id(),
            ..Record::default()
        };
        save(&dir.path().join("2.json"), &live);

        assert_eq!(reap_leftovers(dir.path(), false), 1);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(!env_dir.exists());
        assert!(!dir.path().join("1.json").exists());
        assert!(
            dir.path().join("2.json").exists(),
            "a live rigd's record is kept"
        );
    }

    #[test]
    fn a_record_whose_rigd_pid_was_reused_is_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let env_dir = dir.path().join("env");
        std::fs::create_dir(&env_dir).unwrap();
        // This process has the recorded pids, but started at another time than recorded.
        let me = std::process::id();
        let start = process_start(me).unwrap();
        let reused = Record {
            rigd_pid: me,
            rigd_start: start + 1,
            reaper_pid: me,
            reaper_start: start + 1,
            dirs: BTreeSet::from([env_dir.clone()]),
            ..Record::default()
        };
        save(&dir.path().join("1.json"), &reused);
        let current = Record {
            rigd_pid: me,
            rigd_start: start,
            ..Record::default()
        };
        save(&dir.path().join("2.json"), &current);

        assert_eq!(reap_leftovers(dir.path(), false), 1);
        assert!(!env_dir.exists());
        assert!(
            dir.path().join("2.json").exists(),
            "a live rigd's record is kept"
        );
        assert!(running(me, start) && running(me, 0) && !running(me, start + 1));
    }

    #[test]
    fn a_dir_that_cannot_be_removed_stays_in_the_record_until_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let env_dir = dir.path().join("env");
        std::fs::create_dir_all(env_dir.join("web/data")).unwrap();
        std::fs::write(env_dir.join("web/data/free"), b"x").unwrap();
        std::fs::create_dir(env_dir.join("db")).unwrap();
        let stuck = crate::orchestrator::Stuck::file(&env_dir.join("db/stuck"));
        let dead = Record {
            rigd_pid: u32::MAX - 1,
            reaper_pid: u32::MAX - 2,
            dirs: BTreeSet::from([env_dir.clone()]),
            containers: BTreeSet::from(["no-such-container-of-rig-tests".to_string()]),
            ..Record::default()
        };
        let path = dir.path().join("1.json");
        save(&path, &dead);

        assert_eq!(reap_leftovers(dir.path(), false), 0, "not all reaped");
        assert!(!env_dir.join("web").exists(), "the rest was removed");
        let kept: Record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            kept,
            Record {
                dirs: BTreeSet::from([env_dir.clone()]),
                containers: BTreeSet::new(),
                reported: true,
                ..dead
            },
            "only what is left stays, for the next try"
        );
        // Still there at the next try; once it can go, it goes with the record.
        assert_eq!(reap_leftovers(dir.path(), false), 0);
        assert!(path.exists());
        drop(stuck);
        assert_eq!(reap_leftovers(dir.path(), false), 1);
        assert!(!env_dir.exists());
        assert!(!path.exists());
    }

    #[test]
    fn leftovers_of_a_rigd_that_dies_later_are_reaped_by_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("reaper");
        std::fs::create_dir(&records).unwrap();
        sweep_every(records.clone(), Duration::from_millis(10));
        // After the sweeper started, a rigd dies leaving a service group behind.
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        let dead = Record {
            rigd_pid: u32::MAX - 1,
            reaper_pid: u32::MAX - 2,
            groups: BTreeMap::from([(child.id() as i32, process_start(child.id()).unwrap())]),
            ..Record::default()
        };
        save(&records.join("1.json"), &dead);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the running rigd never reaped the later leftovers"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // The sweeper stops with the record directory.
        drop(dir);
    }

    #[test]
    fn a_reused_group_id_is_not_killed() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        // Recorded as started after the real process: treated as a different group.
        let start = process_start(child.id()).unwrap() + 1_000_000;
        kill_group(pgid, start);
        assert!(running(child.id(), 0));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
