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
//! Lock files are kept after use (upstream deletes them as the lock is released, which let two
//! builds of one key run at once: a waiter then holds the lock of a file no longer at the
//! path, and a third process locks a fresh file there). `rig prune` removes the lock files of
//! entries it removes, and of entries that are gone, when no one holds them; a lock is only
//! taken once its file is still the one at the path, else taken again on the file there.

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
        let path = self.lock_path(key);
        loop {
            let file = open_lock_file(&path)?;
            // SAFETY: flock(2) on a file descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                return match err.kind() {
                    std::io::ErrorKind::WouldBlock => Ok(None),
                    _ => Err(err),
                };
            }
            if still_linked(&file, &path)? {
                return Ok(Some(CacheLock { _file: file }));
            }
            // `rig prune` removed the lock file between our open and flock: lock the new one.
        }
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join(format!("{key}.lock"))
    }

    /// Takes the exclusive lock of `key`, waiting for other holders in this or any other
    /// process. Returns `None` when `cancel` fires first.
    pub async fn lock(
        &self,
        key: &str,
        cancel: &CancellationToken,
    ) -> std::io::Result<Option<CacheLock>> {
        let path = self.lock_path(key);
        // flock(2) blocks a thread; if the wait is cancelled the thread finishes on its own
        // and dropping its result closes the file, which releases the lock at once.
        let waiting = tokio::task::spawn_blocking(move || -> std::io::Result<CacheLock> {
            loop {
                let file = open_lock_file(&path)?;
                flock_waiting(&file)?;
                if still_linked(&file, &path)? {
                    return Ok(CacheLock { _file: file });
                }
                // `rig prune` removed the lock file while we waited on it: whoever
                // locks the path now does not see our lock, so lock the file there.
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

/// Opens (creating it if missing) the lock file at `path`.
fn open_lock_file(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Waits for the exclusive flock(2) of `file`.
fn flock_waiting(file: &File) -> std::io::Result<()> {
    loop {
        // SAFETY: flock(2) on a file descriptor the caller owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether `path` still names the open `file` (`rig prune` unlinks lock files no one holds:
/// a lock taken on a file that is no longer at its path excludes no one).
fn still_linked(file: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
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

    /// Whether a process waits in flock(2) for the file with inode `ino` (`/proc/locks`
    /// lists waiters as `-> FLOCK ...  maj:min:ino ...`).
    fn someone_waits_on(ino: u64) -> bool {
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        locks.lines().any(|line| {
            line.contains("->")
                && line.contains("FLOCK")
                && line
                    .split_whitespace()
                    .any(|field| field.rsplit(':').next() == Some(&ino.to_string()))
        })
    }

    /// `rig prune` unlinks a lock file no one holds; a build that opened it just before and
    /// then waited on it must not hold a lock that excludes no one: it locks the file now at
    /// the path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_whose_lock_file_was_unlinked_locks_the_one_at_the_path() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let never = CancellationToken::new();
        let first = cache.lock("cargo/k", &never).await.unwrap().unwrap();
        let path = dir.path().join("cargo/k.lock");
        let ino = std::fs::metadata(&path).unwrap().ino();
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.lock("cargo/k", &CancellationToken::new()).await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !someone_waits_on(ino) {
            assert!(
                std::time::Instant::now() < deadline,
                "the waiter never waited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::remove_file(&path).unwrap();
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter gets a lock")
            .unwrap()
            .unwrap();
        assert!(second.is_some());
        assert!(
            cache.try_lock("cargo/k").unwrap().is_none(),
            "the waiter's lock excludes whoever locks the path now"
        );
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
