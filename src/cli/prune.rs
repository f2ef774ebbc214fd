//! `rig prune`: delete old log files and unused artifact cache entries.
//!
//! - Logs (`$RIG_LOGS`, else `{rig-dir}/logs`): `*.jsonl` files last modified before the
//!   cutoff, with their `.log` companions.
//! - Cache (`{rig-dir}/cache/<type>/<hash>/`): entries whose `.last-used` file (or, while
//!   it is missing, the directory) is older than the cutoff, unless rigd holds the entry's
//!   lock (`<hash>.lock`: the entry is being checked or built). The lock files of removed
//!   entries, and of entries that no longer exist, go too unless someone holds them (taken
//!   with a non-blocking flock before the unlink; see `artifacts::cache`).
//!
//! The cutoff is now minus `--max-age` (default 24h; Go durations plus days: `7d`, `1d12h`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::args::Args;
use super::error::{CliError, CmdResult, EXIT_OK};
use super::flags::{self, Opt};
use super::format;
use super::logdir;
use super::output::{eprint_line, Out};

/// `rig prune --help`.
pub const USAGE: &str = "\
Usage: rig prune [options]

Delete log files and artifact cache entries that have not been used for a while.

Options:
  -l, --logs          only log files ($RIG_LOGS, else $RIG_DIR/logs)
  -c, --cache         only the artifact cache ($RIG_DIR/cache)
  -m, --max-age DUR   remove what is older than DUR (default 24h): 90m, 24h, 7d, 1d12h
  -n, --dry-run       only show what would be removed
  -h, --help          show this help

Without -l or -c both are pruned.";

const OPTS: &[Opt] = &[
    Opt::switch("-l", &["--logs"]),
    Opt::switch("-c", &["--cache"]),
    Opt::value("-m", &["--max-age"]),
    Opt::switch("-n", &["--dry-run"]),
];

/// The default `--max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Runs `rig prune`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("prune", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("prune", 0, "no arguments")?;
    let max_age = match parsed.value("-m") {
        None => DEFAULT_MAX_AGE,
        Some(v) => format::parse_duration(v)
            .map_err(|e| CliError::usage(format!("invalid --max-age: {e}")))?,
    };
    let (logs, cache) = match (parsed.has("-l"), parsed.has("-c")) {
        (false, false) => (true, true),
        other => other,
    };
    let now = SystemTime::now();
    let cutoff = now.checked_sub(max_age).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut pruner = Pruner {
        dry_run: parsed.has("-n"),
        now,
        cutoff,
        entries: 0,
        bytes: 0,
    };
    if cache {
        pruner.cache(&logdir::rig_dir().join("cache"));
    }
    if logs {
        pruner.logs(&logdir::log_dir());
    }
    let bytes = format::bytes(pruner.bytes as i64);
    let noun = if pruner.entries == 1 {
        "entry"
    } else {
        "entries"
    };
    Out.line(match (pruner.entries, pruner.dry_run) {
        (0, _) => "nothing to prune".to_string(),
        (n, true) => format!("would prune {n} {noun} (would free ~{bytes})"),
        (n, false) => format!("pruned {n} {noun} (freed ~{bytes})"),
    });
    Ok(EXIT_OK)
}

struct Pruner {
    dry_run: bool,
    now: SystemTime,
    cutoff: SystemTime,
    entries: usize,
    bytes: u64,
}

impl Pruner {
    fn cache(&mut self, dir: &Path) {
        for type_dir in subdirs(dir) {
            let type_name = file_name(&type_dir);
            for entry in subdirs(&type_dir) {
                let hash = file_name(&entry);
                // Held while rigd checks or builds the entry: skip it, whatever its age. Held
                // by us until the entry is gone, so no build starts into it meanwhile.
                let lock = match EntryLock::try_take(&type_dir.join(format!("{hash}.lock"))) {
                    Ok(lock) => lock,
                    Err(InUse) => {
                        if self.dry_run {
                            Out.line(format!("would keep cache/{type_name}/{hash} (in use)"));
                        }
                        continue;
                    }
                };
                // An entry without `.last-used` is being made (rigd creates the directory,
                // then marks it after the build): as old as its directory.
                let last_used = fs::metadata(entry.join(".last-used"))
                    .or_else(|_| fs::metadata(&entry))
                    .and_then(|m| m.modified())
                    .ok();
                if last_used.is_some_and(|t| t >= self.cutoff) {
                    continue;
                }
                let size = tree_size(&entry);
                let age = last_used.map_or("unknown".to_string(), |t| self.ago(t));
                if self.dry_run {
                    Out.line(format!(
                        "would remove cache/{type_name}/{hash} (last used {age}, {})",
                        format::bytes(size as i64)
                    ));
                } else if let Err(e) = fs::remove_dir_all(&entry) {
                    eprint_line(format!("warning: failed to remove {type_name}/{hash}: {e}"));
                    continue;
                }
                if !self.dry_run {
                    // Held by us: anyone who opened it meanwhile sees, once they lock it, that
                    // it is no longer at its path and locks a new file there.
                    lock.unlink();
                }
                self.entries += 1;
                self.bytes += size;
            }
            self.orphan_locks(&type_dir);
        }
    }

    /// Removes the lock files in `type_dir` whose entry is gone (one per key ever built
    /// would pile up otherwise), unless someone holds them.
    fn orphan_locks(&self, type_dir: &Path) {
        let Ok(names) = fs::read_dir(type_dir) else {
            return;
        };
        for entry in names.flatten() {
            let path = entry.path();
            let Some(hash) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".lock"))
            else {
                continue;
            };
            if type_dir.join(hash).exists() || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if self.dry_run {
                continue;
            }
            if let Ok(lock) = EntryLock::try_take(&path) {
                lock.unlink();
            }
        }
    }

    fn logs(&mut self, dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        for jsonl in files {
            let Ok(meta) = fs::symlink_metadata(&jsonl) else {
                continue;
            };
            let Ok(modified) = meta.modified() else {
                continue;
            };
            if !meta.is_file() || modified >= self.cutoff {
                continue;
            }
            let pretty = jsonl.with_extension("log");
            let pretty_size = fs::metadata(&pretty).map(|m| m.len()).ok();
            if self.dry_run {
                Out.line(format!(
                    "would remove logs/{} ({}, {})",
                    file_name(&jsonl),
                    self.ago(modified),
                    format::bytes(meta.len() as i64)
                ));
                if let Some(size) = pretty_size {
                    Out.line(format!(
                        "would remove logs/{} ({})",
                        file_name(&pretty),
                        format::bytes(size as i64)
                    ));
                }
            } else {
                if let Err(e) = fs::remove_file(&jsonl) {
                    if e.kind() != io::ErrorKind::NotFound {
                        eprint_line(format!(
                            "warning: failed to remove {}: {e}",
                            jsonl.display()
                        ));
                        continue;
                    }
                }
                if pretty_size.is_some() {
                    let _ = fs::remove_file(&pretty);
                }
            }
            self.entries += 1;
            self.bytes += meta.len() + pretty_size.unwrap_or(0);
        }
    }

    fn ago(&self, t: SystemTime) -> String {
        match self.now.duration_since(t) {
            Ok(d) => format!("{} ago", format::age(d)),
            Err(_) => "just now".to_string(),
        }
    }
}

/// A cache entry's lock (`<hash>.lock`, flock(2) as rigd takes it), held until dropped.
struct EntryLock {
    file: Option<fs::File>,
    path: PathBuf,
}

/// Someone holds the lock of an entry.
struct InUse;

impl EntryLock {
    /// Takes the lock at `path` if it is free; an entry without a lock file has no holder
    /// (no lock file is created).
    fn try_take(path: &Path) -> Result<EntryLock, InUse> {
        let Ok(file) = fs::OpenOptions::new().write(true).open(path) else {
            return Ok(EntryLock {
                file: None,
                path: path.to_path_buf(),
            });
        };
        // SAFETY: flock(2) on a file descriptor this function owns.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc == 0 {
            Ok(EntryLock {
                file: Some(file),
                path: path.to_path_buf(),
            })
        } else {
            Err(InUse)
        }
    }

    /// Removes the lock file while holding its lock (best effort). Safe because rigd checks,
    /// once it has a lock, that its file is still at the path (`artifacts::cache`).
    fn unlink(&self) {
        if self.file.is_some() {
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    eprint_line(format!(
                        "warning: failed to remove {}: {e}",
                        self.path.display()
                    ));
                }
            }
        }
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Bytes of the regular files under `dir` (symbolic links not followed).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(t) = entry.file_type() else { continue };
            if t.is_dir() {
                stack.push(entry.path());
            } else if t.is_file() {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}
