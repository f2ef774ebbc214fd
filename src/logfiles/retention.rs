//! Pruning old log files before new ones are written.
//!
//! Every write first deletes the regular files in the logs directory whose name ends in
//! `.jsonl` or `.log` and whose modification time is older than the retention period (72 hours
//! by default, rigd's `--log-retention`). Nothing else in the directory is touched: no other
//! extensions, no directories, no symbolic links. Pruning is best effort: a file that cannot be
//! examined or removed is left in place and the write goes on.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::names::{JSONL_EXTENSION, PRETTY_EXTENSION};

/// How long log files are kept by default: 72 hours, as upstream.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(72 * 60 * 60);

/// Deletes the log files in `dir` last modified more than `retention` before `now`; returns
/// the paths removed. A zero `retention` disables pruning. Errors are reported on stderr and
/// otherwise ignored.
pub fn prune(dir: &Path, retention: Duration, now: SystemTime) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    if retention.is_zero() {
        return removed;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return removed,
        Err(e) => {
            eprintln!(
                "rigd: prune log files: read directory {}: {e}",
                dir.display()
            );
            return removed;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !is_log_file_name(&path) {
            continue;
        }
        // `DirEntry::metadata` does not follow symbolic links.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let Ok(modified) = meta.modified() else {
            continue;
        };
        let expired = now
            .duration_since(modified)
            .is_ok_and(|age| age > retention);
        if !expired {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            // Another rigd pruned it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("rigd: prune log files: remove {}: {e}", path.display()),
        }
    }
    removed
}

fn is_log_file_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == JSONL_EXTENSION || e == PRETTY_EXTENSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn touch(path: &Path, age: Duration, now: SystemTime) {
        let file = fs::File::create(path).unwrap();
        file.set_modified(now - age).unwrap();
    }

    #[test]
    fn removes_only_old_log_files() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let d = dir.path();
        touch(&d.join("old-1.jsonl"), 73 * HOUR, now);
        touch(&d.join("old-1.log"), 100 * HOUR, now);
        touch(&d.join("new-2.jsonl"), 71 * HOUR, now);
        touch(&d.join("new-2.log"), Duration::ZERO, now);
        touch(&d.join("old-notes.txt"), 1000 * HOUR, now);
        touch(&d.join("old.jsonl.bak"), 1000 * HOUR, now);
        fs::create_dir(d.join("old-dir.log")).unwrap();
        fs::File::open(d.join("old-dir.log"))
            .unwrap()
            .set_modified(now - 1000 * HOUR)
            .unwrap();
        std::os::unix::fs::symlink(d.join("old-1.jsonl"), d.join("link.jsonl")).unwrap();

        let mut removed = prune(d, DEFAULT_RETENTION, now);
        removed.sort();
        assert_eq!(removed, [d.join("old-1.jsonl"), d.join("old-1.log")]);
        let mut left: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "link.jsonl",
                "new-2.jsonl",
                "new-2.log",
                "old-dir.log",
                "old-notes.txt",
                "old.jsonl.bak"
            ]
        );
    }

    #[test]
    fn shorter_retention_removes_more_and_zero_disables() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        touch(&dir.path().join("a.jsonl"), 2 * HOUR, now);
        assert!(prune(dir.path(), Duration::ZERO, now).is_empty());
        assert!(prune(dir.path(), 3 * HOUR, now).is_empty());
        assert_eq!(prune(dir.path(), HOUR, now).len(), 1);
        assert!(!dir.path().join("a.jsonl").exists());
    }

    #[test]
    fn a_missing_directory_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(prune(&dir.path().join("nope"), HOUR, SystemTime::now()).is_empty());
    }
}
