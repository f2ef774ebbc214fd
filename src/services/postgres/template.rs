//! The initdb template cache: `initdb` takes seconds, so the first native server of a rigd
//! copies an initialised data directory from `{rig-dir}/cache/postgres/<key>/data` instead of
//! running it, whenever an earlier rigd on that rig dir (or an earlier backend of this one)
//! has made one.
//!
//! The key is a SHA-256 of the server's version (`postgres --version`), the `initdb`
//! arguments and the user that owns the files, so an upgrade or another setting makes a new
//! template. A template is made once: the first backend to need it takes the key's lock (the
//! artifact cache's cross-process `flock`), runs `initdb` into its own data directory,
//! copies it into the cache under a temporary name and renames it into place; a backend that
//! finds the template ready copies it without the lock. Data directories are copied with
//! their permissions (PostgreSQL wants `0700`) and handed to the server's user.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::artifacts::Cache;
use crate::pool::native::{run_setup, RunAs, WorkDir};

/// The cache's root for this process (`{rig-dir}/cache`), set by the daemon at start.
static CACHE_ROOT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Where rigd's cache is (`{rig-dir}/cache`); templates go under its `postgres/`. Without it,
/// every server runs `initdb`.
pub fn set_cache_root(root: PathBuf) {
    *CACHE_ROOT.lock() = Some(root);
}

/// How the data directory of a new server is made.
pub struct Template<'a> {
    /// The directory of `initdb` and `postgres`.
    pub bin: &'a Path,
    /// `initdb`'s arguments other than `-D`.
    pub initdb_args: &'a [String],
    /// Who runs the server (owns the files), when not rigd's user.
    pub run_as: Option<RunAs>,
}

impl Template<'_> {
    /// Makes `data` (inside `dir`) an initialised data directory: a copy of the cached
    /// template when there is one, else `initdb` (whose result becomes the template).
    /// Returns true when the template was used.
    pub async fn init(&self, dir: &WorkDir, data: &Path) -> Result<bool, String> {
        let Some(root) = CACHE_ROOT.lock().clone() else {
            self.initdb(dir, data).await?;
            return Ok(false);
        };
        let key = format!("postgres/{}", self.key().await?);
        let template = root.join(&key).join("data");
        if is_complete(&template) && self.copy(&template, data).is_ok() {
            note_copied(dir, &template);
            return Ok(true);
        }
        let cache = Cache::new(&root);
        let lock = cache
            .lock(&key, &CancellationToken::new())
            .await
            .map_err(|e| format!("lock the initdb template {}: {e}", template.display()))?;
        if is_complete(&template) {
            let _ = std::fs::remove_dir_all(data);
            if self.copy(&template, data).is_ok() {
                note_copied(dir, &template);
                return Ok(true);
            }
        }
        let _ = std::fs::remove_dir_all(data);
        self.initdb(dir, data).await?;
        // A template that cannot be saved only costs the next backend an initdb.
        if let Err(e) = self.save(data, &template) {
            eprintln!(
                "rigd: postgres: save the initdb template {}: {e}",
                template.display()
            );
        }
        drop(lock);
        Ok(false)
    }

    async fn initdb(&self, dir: &WorkDir, data: &Path) -> Result<(), String> {
        let mut args = vec!["-D".to_string(), data.to_string_lossy().into_owned()];
        args.extend(self.initdb_args.iter().cloned());
        run_setup(&self.bin.join("initdb"), &args, dir, self.run_as).await
    }

    /// The cache key: SHA-256 of the server's version, the `initdb` arguments and the owner.
    async fn key(&self) -> Result<String, String> {
        let postgres = self.bin.join("postgres");
        let mut command = tokio::process::Command::new(&postgres);
        command
            .arg("--version")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // Registered until it has exec'd, as every fork is (see `ports::forks`).
        let spawned = {
            let _fork = crate::ports::forking();
            command.spawn()
        };
        let out = match spawned {
            Ok(child) => child.wait_with_output().await,
            Err(e) => Err(e),
        }
        .map_err(|e| format!("run {} --version: {e}", postgres.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} --version failed ({}): {}",
                postgres.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let owner = self
            .run_as
            .map_or_else(String::new, |u| format!("{}:{}", u.uid, u.gid));
        let text = format!(
            "{}\n{}\n{owner}",
            String::from_utf8_lossy(&out.stdout).trim(),
            self.initdb_args.join("\n")
        );
        Ok(crate::artifacts::sha256_hex(&text))
    }

    /// Copies `template` to `data`, owned by the server's user.
    fn copy(&self, template: &Path, data: &Path) -> std::io::Result<()> {
        copy_tree(template, data, self.run_as)
    }

    /// Copies a freshly initialised `data` into the cache as `template` (atomically: a copy
    /// under a temporary name, then a rename).
    fn save(&self, data: &Path, template: &Path) -> std::io::Result<()> {
        let parent = template
            .parent()
            .ok_or_else(|| std::io::Error::other("the template has no parent directory"))?;
        std::fs::create_dir_all(parent)?;
        let partial = parent.join(format!("data.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        copy_tree(data, &partial, self.run_as)?;
        let _ = std::fs::remove_dir_all(template);
        std::fs::rename(&partial, template)?;
        Cache::touch_last_used(parent);
        Ok(())
    }
}

/// Says in the server's log where its data directory came from.
fn note_copied(dir: &WorkDir, template: &Path) {
    use std::io::Write;
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log_path())
    {
        let _ = writeln!(
            log,
            "rigd: data directory copied from the initdb template {}",
            template.display()
        );
    }
}

/// True when `template` holds a complete data directory (renamed into place only once whole).
fn is_complete(template: &Path) -> bool {
    template.join("PG_VERSION").is_file()
}

/// Copies the directory `from` to `to` (which must not exist) with the permissions of each
/// file and directory, every entry owned by `owner` when given. Symbolic links are copied as
/// links.
fn copy_tree(from: &Path, to: &Path, owner: Option<RunAs>) -> std::io::Result<()> {
    let mode = std::fs::metadata(from)?.permissions().mode();
    std::fs::DirBuilder::new().mode(mode & 0o7777).create(to)?;
    chown(to, owner)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst, owner)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
            chown(&dst, owner)?;
        }
    }
    Ok(())
}

fn chown(path: &Path, owner: Option<RunAs>) -> std::io::Result<()> {
    match owner {
        Some(user) => std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_contents_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&from)
            .unwrap();
        std::fs::create_dir(from.join("base")).unwrap();
        std::fs::write(from.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(from.join("base/1"), b"page").unwrap();
        std::fs::set_permissions(from.join("base/1"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::os::unix::fs::symlink("base/1", from.join("link")).unwrap();
        let to = dir.path().join("to");
        copy_tree(&from, &to, None).unwrap();
        assert!(is_complete(&to));
        assert_eq!(std::fs::read(to.join("base/1")).unwrap(), b"page");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&to), 0o700);
        assert_eq!(mode(&to.join("base/1")), 0o600);
        assert_eq!(
            std::fs::read_link(to.join("link")).unwrap(),
            Path::new("base/1")
        );
        // The destination must be new: a half-copied tree is never merged into.
        assert!(copy_tree(&from, &to, None).is_err());
    }
}
