//! Port reservations shared by every rigd of a user on the machine.
//!
//! A service's port is allocated by binding it, then closed so the service can bind it itself.
//! Within one rigd the allocator remembers the port until its environment ends; another rigd
//! (another rig dir, another version, parallel CI jobs) knew nothing of it and could take the
//! port for a proxy it keeps open in that window. The service then failed with "address in
//! use", or worse, its readiness check and its test's requests reached the other rigd's proxy.
//!
//! So each allocated port is also reserved: its file in a shared directory
//! (`$TMPDIR/rig-ports-<uid>/<port>`) is `flock`ed by the rigd that holds the port, until its
//! environment ends. A port whose file another process has locked is skipped. The kernel drops
//! a process's locks when it exits, however it exits, so nothing goes stale. The files are
//! empty and never removed (removing a lock file races with processes about to lock it); there
//! are at most as many as candidate ports.
//!
//! Best effort: without the directory (not creatable, say), ports are only unique per rigd, as
//! before.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

/// Where this user's rigds reserve ports.
#[derive(Debug)]
pub(super) struct Reservations {
    dir: Option<PathBuf>,
}

/// A port reserved by this process until dropped (its file stays locked while open).
#[derive(Debug)]
pub(super) struct Reservation {
    _lock: Option<File>,
}

impl Reservations {
    /// The directory shared by every rigd of this user.
    pub(super) fn shared() -> Reservations {
        // SAFETY: getuid(2) cannot fail and has no memory-safety preconditions.
        let uid = unsafe { libc::getuid() };
        Reservations::in_dir(std::env::temp_dir().join(format!("rig-ports-{uid}")))
    }

    /// Reservations in `dir` (created, mode 0700, if missing); none when it cannot be made.
    pub(super) fn in_dir(dir: PathBuf) -> Reservations {
        let made = DirBuilder::new().recursive(true).mode(0o700).create(&dir);
        Reservations {
            dir: made.is_ok().then_some(dir),
        }
    }

    /// Reserves `port`, or `None` when another process holds it. Without a directory every
    /// port can be reserved (nothing is shared).
    pub(super) fn reserve(&self, port: u16) -> Option<Reservation> {
        let Some(dir) = &self.dir else {
            return Some(Reservation { _lock: None });
        };
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(port.to_string()))
        {
            Ok(file) => file,
            // The file cannot be used (permissions changed under us): do without it.
            Err(_) => return Some(Reservation { _lock: None }),
        };
        // SAFETY: flock(2) on a descriptor this function owns; no memory is shared.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        locked.then_some(Reservation { _lock: Some(file) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_reserved_once_until_released() {
        let dir = tempfile::tempdir().unwrap();
        // Two rigds: each opens the files itself, as separate processes would.
        let a = Reservations::in_dir(dir.path().to_path_buf());
        let b = Reservations::in_dir(dir.path().to_path_buf());
        let held = a.reserve(20000).expect("free");
        assert!(b.reserve(20000).is_none(), "held by a");
        assert!(b.reserve(20001).is_some(), "another port is free");
        drop(held);
        assert!(b.reserve(20000).is_some(), "released");
    }

    #[test]
    fn without_a_directory_every_port_can_be_reserved() {
        let file = tempfile::NamedTempFile::new().unwrap();
        // A path under a regular file cannot be a directory.
        let none = Reservations::in_dir(file.path().join("ports"));
        assert!(none.reserve(20000).is_some());
        assert!(none.reserve(20000).is_some());
    }
}
