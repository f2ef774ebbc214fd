//! Environment and service directories: recycled rather than created and removed.
//!
//! Every environment gets a directory (`{rig-dir}/tmp/<id>`) and every service one inside it
//! (its temp dir). Creating a directory allocates an inode and removing it frees one, and ext4
//! without a journal (as on the benchmark VM) skips every inode freed in the last minute (or
//! six, while its inode table block is dirty) when it looks for a free one, reading each
//! one's inode table block. So a rigd that creates and removes dozens of directories per
//! environment makes its own `mkdir`s slow: ~0.4 ms each after a few environments, on the
//! path of every service start (20 ms of CPU for an environment of 50 services).
//!
//! A [`DirPool`] keeps the directories of torn-down environments instead: emptied, made
//! private again and renamed into a spare directory of its own (`{rig-dir}/tmp/.spare-<pid>-<n>`,
//! on the same filesystem), from which [`DirPool::create`] renames them into place. A rename
//! allocates no inode, so a steady stream of environments no longer allocates or frees any
//! directory inodes. Only what the services wrote inside their directories is removed as
//! before. The pool holds at most [`MAX_SPARES`] directories; beyond that, directories are
//! removed as before, and an empty pool means a plain `mkdir`.
//!
//! The spare directory is tracked by the reaper like an environment directory, so it goes
//! away with a killed rigd, and [`DirPool::close`] removes it at shutdown.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::reaper::Reaper;

/// The most directories kept for reuse.
pub const MAX_SPARES: usize = 512;

/// The permissions of every directory handed out: rigd's user only (they hold service
/// configuration and data).
const PRIVATE: u32 = 0o700;

/// Distinguishes the spare directories of several pools over one temp base in one process.
static POOL_NUMBER: AtomicU64 = AtomicU64::new(0);

/// Hands out private, empty directories, reusing those of removed environments.
pub struct DirPool {
    /// Where spare directories wait: `{temp_base}/.spare-<pid>-<n>`, created on first use.
    root: PathBuf,
    state: Mutex<State>,
    reaper: Option<Arc<Reaper>>,
}

#[derive(Default)]
struct State {
    /// Paths of the spare directories, all inside `root`.
    spares: Vec<PathBuf>,
    /// Names the next spare.
    next: u64,
    /// `root` exists (and is tracked by the reaper).
    root_made: bool,
    /// After [`DirPool::close`]: no more recycling.
    closed: bool,
}

impl DirPool {
    /// A pool for directories under `temp_base`; `reaper` (if any) removes its spares if rigd
    /// dies.
    pub fn new(temp_base: &Path, reaper: Option<Arc<Reaper>>) -> DirPool {
        let number = POOL_NUMBER.fetch_add(1, Ordering::Relaxed);
        DirPool {
            root: temp_base.join(format!(".spare-{}-{number}", std::process::id())),
            state: Mutex::new(State::default()),
            reaper,
        }
    }

    /// Creates `path` (and missing parents) as an empty directory readable by rigd's user
    /// only: a spare renamed into place when there is one, else a new directory.
    pub fn create(&self, path: &Path) -> io::Result<()> {
        let spare = self.state.lock().spares.pop();
        if let Some(spare) = spare {
            if std::fs::rename(&spare, path).is_ok() {
                // Spares are emptied and made private when recycled; make sure nothing
                // changed that since (a process outliving its service, say).
                if is_empty_and_private(path) {
                    return Ok(());
                }
                remove_all(path);
            } else {
                remove_all(&spare);
            }
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE)
            .create(path)
    }

    /// Removes `dir` and everything in it, keeping `dir` and its subdirectories (each
    /// emptied) for later [`DirPool::create`] calls while the pool has room. Blocking: call it
    /// off the async threads. A missing `dir` is not an error.
    ///
    /// An entry that cannot be removed (written by a container as root, immutable, a mount
    /// point) does not stop the removal: everything else goes, and the error lists what is
    /// left and why.
    pub fn remove_tree(&self, dir: &Path) -> Result<(), Unremoved> {
        let mut left = Unremoved::new(dir);
        match std::fs::read_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => left.add(dir, e),
            Ok(entries) => {
                let mut all_gone = true;
                for entry in entries {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(e) => {
                            left.add(dir, e);
                            all_gone = false;
                            continue;
                        }
                    };
                    let path = entry.path();
                    // `file_type` does not follow symlinks: a link to a directory is removed,
                    // not recycled.
                    let gone = match entry.file_type() {
                        Ok(kind) if kind.is_dir() => self.recycle(&path, &mut left),
                        Ok(_) => remove_entry(&path, &mut left),
                        Err(e) => {
                            left.add(&path, e);
                            false
                        }
                    };
                    all_gone &= gone;
                }
                if all_gone {
                    self.recycle(dir, &mut left);
                }
            }
        }
        left.into_result()
    }

    /// Removes the spare directory and stops recycling (rigd shutdown). Later
    /// [`DirPool::remove_tree`] calls remove directories for good.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.spares.clear();
        if state.root_made {
            remove_all(&self.root);
            if let Some(reaper) = &self.reaper {
                reaper.untrack_dir(&self.root);
            }
            state.root_made = false;
        }
    }

    /// Empties `dir` and moves it among the spares, or removes it when the pool is full or
    /// closed. True when `dir` is gone from its place; what could not be removed is added to
    /// `left`.
    fn recycle(&self, dir: &Path, left: &mut Unremoved) -> bool {
        if !empty(dir, left) {
            return false;
        }
        let Some(spare) = self.claim_spare_name() else {
            return remove_dir(dir, left);
        };
        let private = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE));
        if private.is_err() || std::fs::rename(dir, &spare).is_err() {
            // Not recycled (never expected: same filesystem, our own directory): remove it as
            // before.
            return remove_dir(dir, left);
        }
        let mut state = self.state.lock();
        if state.closed {
            drop(state);
            let _ = std::fs::remove_dir(&spare);
            return true;
        }
        state.spares.push(spare);
        true
    }

    /// A fresh path inside the spare directory (creating it on first use), or `None` when
    /// the pool is full, closed, or its directory cannot be made.
    fn claim_spare_name(&self) -> Option<PathBuf> {
        let mut state = self.state.lock();
        if state.closed || state.spares.len() >= MAX_SPARES {
            return None;
        }
        if !state.root_made {
            if let Some(reaper) = &self.reaper {
                reaper.track_dir(&self.root);
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(PRIVATE)
                .create(&self.root)
                .ok()?;
            state.root_made = true;
        }
        state.next += 1;
        Some(self.root.join(state.next.to_string()))
    }

    /// How many directories wait for reuse.
    #[cfg(test)]
    fn spares(&self) -> usize {
        self.state.lock().spares.len()
    }
}

/// True when `dir` is a directory (not a link), owned by this user, with exactly the
/// private permissions, and holds nothing.
fn is_empty_and_private(dir: &Path) -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o7777 == PRIVATE)
        && std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// What a removal left behind: the entries that could not be removed, with the reasons.
#[derive(Debug)]
pub struct Unremoved {
    /// The directory whose removal was asked for.
    dir: PathBuf,
    /// Each entry that could not be removed and why; their parents are left too.
    failures: Vec<(PathBuf, io::Error)>,
}

/// How many failures an [`Unremoved`] names; the others are counted.
const FAILURES_NAMED: usize = 3;

impl Unremoved {
    fn new(dir: &Path) -> Unremoved {
        Unremoved {
            dir: dir.to_path_buf(),
            failures: Vec::new(),
        }
    }

    fn add(&mut self, path: &Path, error: io::Error) {
        self.failures.push((path.to_path_buf(), error));
    }

    fn into_result(self) -> Result<(), Unremoved> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// The directory whose removal was asked for.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entries that could not be removed, with the reasons.
    pub fn failures(&self) -> &[(PathBuf, io::Error)] {
        &self.failures
    }
}

impl std::fmt::Display for Unremoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not remove all of {}: ", self.dir.display())?;
        for (i, (path, error)) in self.failures.iter().take(FAILURES_NAMED).enumerate() {
            let separator = if i == 0 { "" } else { "; " };
            write!(f, "{separator}{}: {error}", path.display())?;
        }
        if self.failures.len() > FAILURES_NAMED {
            write!(f, "; and {} more", self.failures.len() - FAILURES_NAMED)?;
        }
        write!(
            f,
            ". Everything else was removed. Files a container wrote as root, immutable files \
             (chattr +i) and mount points cannot be removed by rigd; remove what is left \
             yourself (e.g. `sudo rm -rf {}`); rigd tries again at its next start",
            self.dir.display()
        )
    }
}

impl std::error::Error for Unremoved {}

/// Removes `path` (a file, link or whole directory tree), going on past entries that cannot
/// be removed: everything else goes, and the error lists what is left and why. A missing
/// `path` is not an error. Blocking.
pub fn remove_everything(path: &Path) -> Result<(), Unremoved> {
    let mut left = Unremoved::new(path);
    remove_entry(path, &mut left);
    left.into_result()
}

/// Removes a file, link or whole directory tree, adding what could not be removed to `left`.
/// True when `path` is gone.
fn remove_entry(path: &Path, left: &mut Unremoved) -> bool {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
        Err(e) => {
            left.add(path, e);
            return false;
        }
    };
    if metadata.is_dir() {
        // A directory whose entries stay is not empty: the entries explain why.
        return empty(path, left) && remove_dir(path, left);
    }
    gone(std::fs::remove_file(path), path, left)
}

/// Removes everything inside directory `dir`, going on past failures; true when it is empty.
fn empty(dir: &Path, left: &mut Unremoved) -> bool {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            left.add(dir, e);
            return false;
        }
    };
    let mut all_gone = true;
    for entry in entries {
        all_gone &= match entry {
            Ok(entry) => remove_entry(&entry.path(), left),
            Err(e) => {
                left.add(dir, e);
                false
            }
        };
    }
    all_gone
}

/// Removes the empty directory `dir`; true when it is gone.
fn remove_dir(dir: &Path, left: &mut Unremoved) -> bool {
    gone(std::fs::remove_dir(dir), dir, left)
}

/// Whether `path` is gone after a removal that ended with `removed` (already gone counts);
/// a failure is added to `left`.
fn gone(removed: io::Result<()>, path: &Path, left: &mut Unremoved) -> bool {
    match removed {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => {
            left.add(path, e);
            false
        }
    }
}

/// Removes `path` whatever it is, ignoring failures (best effort, like the reaper).
fn remove_all(path: &Path) {
    let _ = remove_everything(path);
}

/// An entry a test makes unremovable, even by root: immutable (`chattr +i`) when the test
/// runs as root, else in a directory without write permission. Removable again when dropped.
#[cfg(test)]
pub(crate) struct Stuck(PathBuf);

#[cfg(test)]
impl Stuck {
    /// Creates file `path` (its parent exists) and makes it unremovable.
    pub(crate) fn file(path: &Path) -> Stuck {
        std::fs::write(path, b"stuck").unwrap();
        let stuck = Stuck(path.to_path_buf());
        stuck.set(true);
        assert!(
            std::fs::remove_file(path).is_err(),
            "{} is still removable",
            path.display()
        );
        stuck
    }

    fn set(&self, stuck: bool) {
        // SAFETY: geteuid(2) cannot fail and has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let flag = if stuck { "+i" } else { "-i" };
            let mut chattr = std::process::Command::new("chattr");
            chattr.arg(flag).arg(&self.0);
            // Registered until it has exec'd, as every fork is (see `ports::forks`): the
            // tests of this binary allocate ports too.
            let spawned = {
                let _fork = crate::ports::forking();
                chattr.spawn()
            };
            let status = spawned.and_then(|mut child| child.wait());
            assert!(
                status.is_ok_and(|s| s.success()) || !stuck,
                "chattr {flag} {}: root makes a file unremovable with it (e2fsprogs, on a \
                 filesystem with attributes such as ext4)",
                self.0.display()
            );
        } else {
            let parent = self.0.parent().unwrap();
            let mode = if stuck { 0o500 } else { 0o700 };
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode));
        }
    }
}

#[cfg(test)]
impl Drop for Stuck {
    fn drop(&mut self) {
        self.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn removed_directories_are_reused_empty_and_private() {
        let base = tempfile::tempdir().unwrap();
        let pool = DirPool::new(base.path(), None);
        let env = base.path().join("env-1");
        pool.create(&env).unwrap();
        pool.create(&env.join("api")).unwrap();
        pool.create(&env.join("db")).unwrap();
        assert_eq!(mode(&env), PRIVATE);
        let api_inode = std::fs::metadata(env.join("api")).unwrap().ino();
        // What a service leaves behind: files, nested directories, links, loose modes.
        std::fs::write(env.join("api/state"), b"x").unwrap();
        std::fs::create_dir_all(env.join("db/data/base")).unwrap();
        std::fs::write(env.join("db/data/base/1"), b"y").unwrap();
        std::os::unix::fs::symlink("/", env.join("api/root")).unwrap();
        std::fs::set_permissions(env.join("api"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(env.join("summary.txt"), b"z").unwrap();

        pool.remove_tree(&env).unwrap();
        assert!(!env.exists());
        assert_eq!(pool.spares(), 3, "the env dir and both service dirs");

        let next = base.path().join("env-2");
        pool.create(&next).unwrap();
        for service in ["a", "b", "c", "d"] {
            pool.create(&next.join(service)).unwrap();
        }
        assert_eq!(pool.spares(), 0);
        let mut inodes = Vec::new();
        for dir in [
            next.clone(),
            next.join("a"),
            next.join("b"),
            next.join("c"),
            next.join("d"),
        ] {
            assert!(is_empty_and_private(&dir) || dir == next, "{dir:?}");
            assert_eq!(mode(&dir), PRIVATE, "{dir:?}");
            inodes.push(std::fs::metadata(&dir).unwrap().ino());
        }
        assert!(inodes.contains(&api_inode), "a directory was reused");
        // The link was removed, not followed.
        assert!(Path::new("/").read_dir().unwrap().next().is_some());
    }

    #[test]
    fn a_spare_that_changed_is_replaced_by_a_new_directory() {
        let base = tempfile::tempdir().unwrap();
        let pool = DirPool::new(base.path(), None);
        let env = base.path().join("env");
        pool.create(&env).unwrap();
        pool.remove_tree(&env).unwrap();
        // Something wrote into the spare after it was recycled.
        let spare = pool.state.lock().spares[0].clone();
        std::fs::write(spare.join("late"), b"x").unwrap();

        pool.create(&env).unwrap();
        assert!(is_empty_and_private(&env));
        assert_eq!(pool.spares(), 0);
    }

    #[test]
    fn a_full_pool_removes_and_a_closed_pool_leaves_nothing() {
        let base = tempfile::tempdir().unwrap();
        let pool = DirPool::new(base.path(), None);
        let env = base.path().join("env");
        pool.create(&env).unwrap();
        for i in 0..MAX_SPARES + 3 {
            pool.create(&env.join(i.to_string())).unwrap();
        }
        pool.remove_tree(&env).unwrap();
        assert_eq!(pool.spares(), MAX_SPARES);
        assert!(!env.exists());

        pool.close();
        assert_eq!(pool.spares(), 0);
        let left: Vec<_> = std::fs::read_dir(base.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // Closed: directories are removed for good, and creating still works.
        pool.create(&env).unwrap();
        pool.remove_tree(&env).unwrap();
        assert!(!env.exists() && pool.spares() == 0);
        assert!(std::fs::read_dir(base.path()).unwrap().next().is_none());
    }

    #[test]
    fn removing_a_missing_tree_is_fine() {
        let base = tempfile::tempdir().unwrap();
        let pool = DirPool::new(base.path(), None);
        pool.remove_tree(&base.path().join("gone")).unwrap();
    }

    #[test]
    fn an_entry_that_cannot_be_removed_stops_nothing_else_and_is_named() {
        let base = tempfile::tempdir().unwrap();
        let pool = DirPool::new(base.path(), None);
        let env = base.path().join("env");
        pool.create(&env).unwrap();
        // Several service dirs and files around one that cannot be removed, so that whatever
        // order the directory lists them in, some come after it.
        let mut others = Vec::new();
        for name in ["a", "b", "c", "d", "e", "f"] {
            pool.create(&env.join(name)).unwrap();
            std::fs::create_dir_all(env.join(name).join("data/deep")).unwrap();
            std::fs::write(env.join(name).join("data/deep/file"), b"x").unwrap();
            std::fs::write(env.join(format!("{name}.txt")), b"x").unwrap();
            others.push(env.join(name));
            others.push(env.join(format!("{name}.txt")));
        }
        std::fs::create_dir_all(env.join("c/written/by/root")).unwrap();
        std::fs::write(env.join("c/written/sibling"), b"x").unwrap();
        let stuck_path = env.join("c/written/by/root/file");
        let stuck = Stuck::file(&stuck_path);

        let left = pool.remove_tree(&env).unwrap_err();
        let failed: Vec<&Path> = left.failures().iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(failed, [stuck_path.as_path()], "{left}");
        let message = left.to_string();
        assert!(
            message.starts_with(&format!(
                "could not remove all of {}: {}: ",
                env.display(),
                stuck_path.display()
            )),
            "{message}"
        );
        assert!(
            message.ends_with(&format!(
                "remove what is left yourself (e.g. `sudo rm -rf {}`); rigd tries again at its \
                 next start",
                env.display()
            )),
            "{message}"
        );
        // Everything else went, the stuck entry's parents (not empty) excepted.
        for other in &others {
            if other != &env.join("c") {
                assert!(!other.exists(), "{} was left", other.display());
            }
        }
        assert!(!env.join("c/data").exists());
        assert!(!env.join("c/written/sibling").exists());
        assert!(stuck_path.exists());

        // Once it can be removed, the next removal finishes the job.
        drop(stuck);
        pool.remove_tree(&env).unwrap();
        assert!(!env.exists());
    }
}
