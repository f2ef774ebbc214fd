//! The content-addressed artifact cache under `{rig-dir}/cache`, and its per-key locks.
//!
//! Layout (upstream's, plus `cargo/`):
//!
//! ```text
//! cache/
//!   cargo/<sha256>/binary   go/<sha256>/binary   docker/<sha256>/.image-id .image-ref
//!   <kind>/<sha256>/.last-used     touched on every hit and build (for future eviction)
//!   <kind>/<sha256>.lock           flock(2) held while the artifact is checked and built
//! ```
//!
//! Lock files are kept after use (upstream deletes them): deleting a lock file while another
//! process waits on it lets a third process lock a fresh file at the same path, and two builds
//! of the same key would then run at once.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

/// The artifact cache.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// An exclusive lock on one cache key, released on drop (closing the file releases the flock).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

impl Cache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `key`, created if missing.
    pub fn output_dir(&self, key: &str) -> std::io::Result<PathBuf> {
        let dir = self.root.join(key);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Takes the exclusive lock of `key` if no one (in this or any other process) holds it;
    /// `None` when someone does.
    pub fn try_lock(&self, key: &str) -> std::io::Result<Option<CacheLock>> {
        let file = self.open_lock_file(key)?;
        // SAFETY: flock(2) on a file descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(CacheLock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(err)
        }
    }

    fn open_lock_file(&self, key: &str) -> std::io::Result<File> {
        let path = self.root.join(format!("{key}.lock"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    }

    /// Takes the exclusive lock of `key`, waiting for other holders in this or any other
    /// process. Returns `None` when `cancel` fires first.
    pub async fn lock(
        &self,
        key: &str,
        cancel: &CancellationToken,
    ) -> std::io::Result<Option<CacheLock>> {
        let file = self.open_lock_file(key)?;
        // flock(2) blocks a thread; if the wait is cancelled the thread finishes on its own
        // and dropping its result closes the file, which releases the lock at once.
        let waiting = tokio::task::spawn_blocking(move || -> std::io::Result<CacheLock> {
            loop {
                // SAFETY: flock(2) on a file descriptor this closure owns.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
                if rc == 0 {
                    return Ok(CacheLock { _file: file });
                }
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        });
        tokio::select! {
            _ = cancel.cancelled() => Ok(None),
            joined = waiting => joined
                .map_err(std::io::Error::other)?
                .map(Some),
        }
    }

    /// Marks `dir` as used now (`.last-used`), best effort.
    pub fn touch_last_used(dir: &Path) {
        let path = dir.join(".last-used");
        let touched = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        if let Err(e) = touched {
            eprintln!("rigd: touch {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// True when another open file description could take the lock of `path` right now.
    fn lockable(path: &Path) -> bool {
        let file = File::open(path).unwrap();
        // SAFETY: flock(2) on a file descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        rc == 0
    }

    #[tokio::test]
    async fn a_lock_excludes_other_holders_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let never = CancellationToken::new();
        let first = cache.lock("go/abc", &never).await.unwrap().unwrap();
        let path = dir.path().join("go/abc.lock");
        assert!(!lockable(&path), "held locks exclude other holders");
        drop(first);
        assert!(lockable(&path), "dropping the guard releases the lock");
        let second = tokio::time::timeout(Duration::from_secs(10), cache.lock("go/abc", &never))
            .await
            .expect("a free lock is taken at once");
        assert!(second.unwrap().is_some());
    }

    #[tokio::test]
    async fn try_lock_says_when_someone_else_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let held = cache.try_lock("cargo/k").unwrap().expect("free at first");
        assert!(cache.try_lock("cargo/k").unwrap().is_none(), "held");
        drop(held);
        assert!(cache.try_lock("cargo/k").unwrap().is_some(), "free again");
    }

    #[tokio::test]
    async fn waiting_for_a_lock_can_be_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let never = CancellationToken::new();
        let _held = cache.lock("k", &never).await.unwrap().unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(cache.lock("k", &cancel).await.unwrap().is_none());
    }

    #[test]
    fn output_dirs_are_created_and_touched() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let out = cache.output_dir("cargo/0123").unwrap();
        assert!(out.is_dir());
        Cache::touch_last_used(&out);
        assert!(out.join(".last-used").exists());
    }
}
