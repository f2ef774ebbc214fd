//! Port reservations shared by every rigd on the machine, whoever runs it.
//!
//! A service's port is allocated by binding it, then closed so the service can bind it itself.
//! Within one rigd the allocator remembers the port until its environment ends; another rigd
//! (another rig dir, another version, parallel CI jobs, another user's tests) knew nothing of
//! it and could take the port for a proxy it keeps open in that window. The service then
//! failed with "address in use", or worse, its readiness check and its test's requests reached
//! the other rigd's proxy.
//!
//! So each allocated port is also reserved: its file in a directory every user shares
//! (`/tmp/rig-ports/<port>`, world-writable with the sticky bit, as `/tmp` is) is `flock`ed
//! by the rigd that holds the port, until its environment ends. A port whose file another
//! process has locked is skipped. The kernel drops a process's locks when it exits, however it
//! exits, so nothing goes stale. The files are empty and never removed (removing a lock file
//! races with processes about to lock it); there are at most as many as candidate ports. They
//! are made readable by everyone: a lock needs only a read-only descriptor, so one user's rigd
//! locks the files another user's made.
//!
//! Nothing another user could plant in a shared directory is trusted: a symbolic link is not
//! followed and anything but a regular file (a FIFO would block the open) is passed over;
//! such a port, like one whose file cannot be opened, is used without coordination. Where the
//! shared directory cannot be used (another user made it without write access for all, say),
//! a private one, `/tmp/rig-ports-<uid>`, coordinates this user's rigds; without either,
//! ports are only unique per rigd.
//!
//! The directories are under `/tmp` whatever `TMPDIR` says: rigds started with different
//! ones (by Bazel, CI runners, or an SDK test that passes its own environment on) must still
//! find each other's reservations. Only where `/tmp` cannot hold them is `TMPDIR` used.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of the shared directory: everyone may add files, only their owner remove them.
const SHARED_DIR_MODE: u32 = 0o1777;

/// The mode of a port file: readable by every user, so every user's rigd can lock it.
const PORT_FILE_MODE: u32 = 0o644;

/// The temporary directory every process on the machine shares, whatever its `TMPDIR`.
const MACHINE_TEMP: &str = "/tmp";

/// Where rigds reserve ports.
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
    /// The directory shared by every rigd on the machine, or failing that by this user's.
    pub(super) fn shared() -> Reservations {
        Reservations::shared_with_temp(&std::env::temp_dir())
    }

    /// [`Reservations::shared`] for a process whose temporary directory is `temp`: under
    /// [`MACHINE_TEMP`] whatever `temp` is, and under `temp` only when that fails.
    pub(super) fn shared_with_temp(temp: &Path) -> Reservations {
        // SAFETY: getuid(2) cannot fail and has no memory-safety preconditions.
        let uid = unsafe { libc::getuid() };
        let machine = Path::new(MACHINE_TEMP);
        let bases = std::iter::once(machine).chain((temp != machine).then_some(temp));
        for base in bases {
            let shared = Reservations::shared_in(base.join("rig-ports"));
            if shared.dir.is_some() {
                return shared;
            }
            let private = Reservations::in_dir(base.join(format!("rig-ports-{uid}")));
            if private.dir.is_some() {
                return private;
            }
        }
        Reservations { dir: None }
    }

    /// Reservations in `dir`, shared with every user: created world-writable and sticky if
    /// missing; none when it cannot be made, or is not (or not only) such a directory.
    pub(super) fn shared_in(dir: PathBuf) -> Reservations {
        let made = match DirBuilder::new().mode(SHARED_DIR_MODE).create(&dir) {
            // The umask took bits away; the creator may give them back.
            Ok(()) => std::fs::set_permissions(&dir, Permissions::from_mode(SHARED_DIR_MODE)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(err) => Err(err),
        };
        let usable = made.is_ok()
            && std::fs::symlink_metadata(&dir).is_ok_and(|meta| {
                meta.is_dir() && meta.mode() & SHARED_DIR_MODE == SHARED_DIR_MODE
            });
        Reservations {
            dir: usable.then_some(dir),
        }
    }

    /// Reservations in `dir`, private to this user (created, mode 0700, if missing); none
    /// when it cannot be made.
    pub(super) fn in_dir(dir: PathBuf) -> Reservations {
        let made = DirBuilder::new().recursive(true).mode(0o700).create(&dir);
        Reservations {
            dir: made.is_ok().then_some(dir),
        }
    }

    /// Reserves `port`, or `None` when another process holds it. Without a directory, or
    /// when the port's file cannot be used, the port can be reserved (nothing is shared).
    pub(super) fn reserve(&self, port: u16) -> Option<Reservation> {
        let Some(dir) = &self.dir else {
            return Some(Reservation { _lock: None });
        };
        let Ok(file) = open_port_file(&dir.join(port.to_string())) else {
            return Some(Reservation { _lock: None });
        };
        // SAFETY: flock(2) on a descriptor this function owns; no memory is shared.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        locked.then_some(Reservation { _lock: Some(file) })
    }
}

/// Opens the regular file at `path`, creating it readable by all if missing, without
/// following a symbolic link and without blocking on a FIFO.
fn open_port_file(path: &Path) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let existing = || OpenOptions::new().read(true).custom_flags(flags).open(path);
    let file = match existing() {
        Err(err) if err.kind() == io::ErrorKind::NotFound => match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PORT_FILE_MODE)
            .custom_flags(flags)
            .open(path)
        {
            Ok(file) => {
                // The umask may have taken the others' read bit away.
                file.set_permissions(Permissions::from_mode(PORT_FILE_MODE))?;
                file
            }
            // Another process made it first.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => existing()?,
            Err(err) => return Err(err),
        },
        opened => opened?,
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
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

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_shared_directory_is_open_to_all_and_its_files_readable_by_all() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("rig-ports");
        let a = Reservations::shared_in(dir.clone());
        let b = Reservations::shared_in(dir.clone());
        assert_eq!(mode(&dir), 0o1777);
        let held = a.reserve(20000).expect("free");
        assert_eq!(mode(&dir.join("20000")), 0o644);
        assert!(b.reserve(20000).is_none(), "held by a");
        drop(held);
        assert!(b.reserve(20000).is_some(), "released");
    }

    #[test]
    fn a_shared_directory_not_open_to_all_is_not_used() {
        let temp = tempfile::tempdir().unwrap();
        let closed = temp.path().join("closed");
        DirBuilder::new().mode(0o755).create(&closed).unwrap();
        assert!(Reservations::shared_in(closed).dir.is_none());
        // A link to a directory open to all is not the directory itself.
        let open = temp.path().join("open");
        Reservations::shared_in(open.clone()).dir.expect("made");
        let link = temp.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(Reservations::shared_in(link).dir.is_none());
    }

    #[test]
    fn links_and_fifos_planted_in_the_shared_directory_are_passed_over() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("rig-ports");
        let reservations = Reservations::shared_in(dir.clone());
        // A link to somebody's private file: neither its mode nor its content may change.
        let victim = temp.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::fs::set_permissions(&victim, Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("20000")).unwrap();
        let reserved = reservations
            .reserve(20000)
            .expect("used without coordination");
        assert!(reserved._lock.is_none());
        assert_eq!(mode(&victim), 0o600);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        // A FIFO would block a plain open until a writer came.
        let fifo = std::ffi::CString::new(dir.join("20001").into_os_string().into_encoded_bytes())
            .unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
        let reserved = reservations
            .reserve(20001)
            .expect("used without coordination");
        assert!(reserved._lock.is_none());
    }

    /// Another user's rigd (played by `flock(1)` running as `nobody`) and this one see each
    /// other's reservations. Only root can run a command as another user.
    #[test]
    fn users_see_each_others_reservations() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};

        // SAFETY: geteuid(2) cannot fail and has no memory-safety preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: only root can run flock(1) as another user");
            return;
        }
        const NOBODY: u32 = 65534;
        let temp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(temp.path(), Permissions::from_mode(0o755)).unwrap();
        let dir = temp.path().join("rig-ports");
        let reservations = Reservations::shared_in(dir.clone());
        let as_nobody = |port: &str, command: &str| {
            let mut flock = Command::new("flock");
            flock
                .args(["--nonblock", "--conflict-exit-code", "7"])
                .arg(dir.join(port))
                .args(["-c", command])
                .uid(NOBODY)
                .gid(NOBODY);
            flock
        };

        // Ours, made by root: nobody can open it, and finds it locked until we let go.
        let held = reservations.reserve(20000).expect("free");
        let status = as_nobody("20000", "true").status().unwrap();
        assert_eq!(status.code(), Some(7), "nobody took root's reservation");
        drop(held);
        assert!(as_nobody("20000", "true").status().unwrap().success());

        // Theirs, made by nobody: we find it locked while they hold it.
        let mut theirs = as_nobody("20001", "echo locked; exec cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(theirs.stdout.take().unwrap()),
            &mut said,
        )
        .unwrap();
        assert_eq!(said, "locked\n", "flock as nobody: {:?}", theirs.wait());
        assert_eq!(
            std::fs::symlink_metadata(dir.join("20001")).unwrap().uid(),
            NOBODY
        );
        assert!(reservations.reserve(20001).is_none(), "held by nobody");
        drop(theirs.stdin.take());
        assert!(theirs.wait().unwrap().success());
        assert!(reservations.reserve(20001).is_some(), "released by nobody");
    }
}
