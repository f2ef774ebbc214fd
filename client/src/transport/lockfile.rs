//! An exclusive `flock(2)` on a lock file, so concurrent `rig` processes and SDK test runs
//! start one rigd between them.
//!
//! Releasing deletes the file (as upstream does) and then unlocks. A waiter that opened the
//! file before it was deleted would otherwise lock an orphaned inode while a newcomer locks a
//! fresh file; so after locking, [`LockFile::acquire`] checks that the path still names the
//! locked inode and starts over when it does not.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// How often a held lock is retried.
const POLL: Duration = Duration::from_millis(50);

/// A held lock; released on drop.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The file could not be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another process held the lock for too long.
    #[error(
        "timed out after {}s waiting for {} (another rig or SDK process is starting rigd; \
         if none is running, delete the file)",
        waited.as_secs(), path.display()
    )]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

impl LockFile {
    /// Creates (owner-only) or opens `path` and takes an exclusive lock on it, waiting at most
    /// `timeout` for another holder to release it.
    pub async fn acquire(path: &Path, timeout: Duration) -> Result<LockFile, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(io_err)?;
            while !try_lock(&file).map_err(io_err)? {
                if Instant::now() >= deadline {
                    return Err(LockError::Timeout {
                        path: path.to_path_buf(),
                        waited: timeout,
                    });
                }
                tokio::time::sleep(POLL).await;
            }
            if still_names(path, &file) {
                return Ok(LockFile {
                    file,
                    path: path.to_path_buf(),
                });
            }
            // The previous holder deleted the file while we waited; lock the current one.
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: flock on a file descriptor this struct owns and keeps open.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// One non-blocking attempt; `Ok(false)` when someone else holds the lock.
fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a valid, open file descriptor owned by `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

fn still_names(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(on_disk), Ok(held)) => on_disk.dev() == held.dev() && on_disk.ino() == held.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rig-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn second_holder_waits_until_release_and_file_is_removed() {
        let dir = temp_dir("wait");
        let path = dir.join("rigd.lock");
        let first = LockFile::acquire(&path, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(path.exists());

        // While held, a short acquire times out with a message naming the file.
        let err = LockFile::acquire(&path, Duration::from_millis(120))
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("rigd.lock"), "{err}");

        let waiter = {
            let path = path.clone();
            tokio::spawn(async move { LockFile::acquire(&path, Duration::from_secs(10)).await })
        };
        drop(first);
        let second = waiter.await.unwrap().unwrap();
        // The waiter holds the file that the path names now, not the deleted one.
        assert!(still_names(&path, &second.file));
        drop(second);
        assert!(!path.exists(), "release deletes the lock file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_lock_on_a_deleted_file_is_detected() {
        let dir = temp_dir("stale");
        let path = dir.join("rigd.lock");
        let held = LockFile::acquire(&path, Duration::from_secs(5))
            .await
            .unwrap();
        // A waiter that opened the file before the holder released it.
        let stale = File::open(&path).unwrap();
        drop(held);
        assert!(
            try_lock(&stale).unwrap(),
            "the old inode is free once released"
        );
        assert!(
            !still_names(&path, &stale),
            "but the path no longer names it"
        );
        let fresh = LockFile::acquire(&path, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(still_names(&path, &fresh.file));
        drop(fresh);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
