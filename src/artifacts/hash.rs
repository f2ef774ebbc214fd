//! Content hashes for cache keys: which source files a build depends on, and their digest.
//!
//! Files are listed with git when the directory is in a work tree (tracked files, plus
//! untracked ones that are not ignored, those of submodules included, so `target/` and editor
//! droppings do not count), else by walking the directory: also when the directory is itself
//! git-ignored (generated packages) or git lists nothing in it. Blocking: call from
//! `spawn_blocking`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// Which files of a directory a build reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sources {
    /// Every file (a Cargo package: sources, manifests, build scripts, included data),
    /// except `target/` and `.git/` when walking.
    All,
    /// `*.go`, `go.mod` and `go.sum` (upstream's rule for Go modules).
    Go,
}

impl Sources {
    fn git_pathspecs(self) -> &'static [&'static str] {
        match self {
            Sources::All => &[],
            Sources::Go => &["*.go", "go.mod", "go.sum"],
        }
    }

    fn wanted(self, name: &str) -> bool {
        match self {
            Sources::All => true,
            Sources::Go => name.ends_with(".go") || name == "go.mod" || name == "go.sum",
        }
    }
}

/// A SHA-256 over labelled parts, written as lowercase hex.
pub(crate) struct ContentHash(Sha256);

impl ContentHash {
    pub(crate) fn new() -> ContentHash {
        ContentHash(Sha256::new())
    }

    /// Adds a `label:value` line.
    pub(crate) fn field(&mut self, label: &str, value: &str) {
        self.0
            .update(format!("{label}:{}\n", value.len()).as_bytes());
        self.0.update(value.as_bytes());
        self.0.update(b"\n");
    }

    /// Adds raw bytes.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Adds every file of `files` (paths relative to `base`, sorted by the caller) with its
    /// name and content. Files listed but gone (deleted, not yet staged) are skipped.
    pub(crate) fn files(&mut self, base: &Path, files: &[PathBuf]) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        for rel in files {
            let mut file = match std::fs::File::open(base.join(rel)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if file.metadata()?.is_dir() {
                continue;
            }
            self.field("file", &rel.to_string_lossy());
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                self.0.update(&buf[..n]);
            }
            self.0.update(b"\n");
        }
        Ok(())
    }

    pub(crate) fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The SHA-256 of `text`, in hex.
pub(crate) fn sha256_hex(text: &str) -> String {
    let mut h = ContentHash::new();
    h.0.update(text.as_bytes());
    h.hex()
}

/// The source files of `dir` (relative paths, sorted, no duplicates).
pub(crate) fn list_sources(dir: &Path, sources: Sources) -> std::io::Result<Vec<PathBuf>> {
    let mut files = match git_files(dir, sources) {
        Some(files) => files,
        None => {
            let mut found = Vec::new();
            walk(dir, Path::new(""), sources, &mut found)?;
            found
        }
    };
    files.sort();
    files.dedup();
    Ok(files)
}

/// The files git knows in `dir`: tracked ones (those of checked-out submodules included) and
/// untracked ones that are not ignored (in submodules too). `None` when `dir` is not in a
/// work tree, is itself ignored (git then lists nothing in it, yet the build reads it all), or
/// git lists nothing at all: the caller walks the directory instead.
fn git_files(dir: &Path, sources: Sources) -> Option<Vec<PathBuf>> {
    // Exit 0: ignored; 1: not ignored; 128: not in a work tree (or git failed).
    if run_git(dir, &["check-ignore", "-q", "."])?.status.code() != Some(1) {
        return None;
    }
    let mut files = ls_files(dir, &["--recurse-submodules"], sources)?;
    untracked_files(dir, Path::new(""), sources, &mut files)?;
    (!files.is_empty()).then_some(files)
}

/// Adds the untracked, not ignored files of the work tree at `dir` and of its checked-out
/// submodules, recursively (`git ls-files --others` does not look into submodules), as paths
/// under `prefix`.
fn untracked_files(
    dir: &Path,
    prefix: &Path,
    sources: Sources,
    out: &mut Vec<PathBuf>,
) -> Option<()> {
    let untracked = ls_files(dir, &["--others", "--exclude-standard"], sources)?;
    out.extend(untracked.into_iter().map(|p| prefix.join(p)));
    for submodule in submodules(dir)? {
        let sub_dir = dir.join(&submodule);
        // Not checked out (no `.git` in it): nothing of it is built.
        if sub_dir.join(".git").exists() {
            untracked_files(&sub_dir, &prefix.join(&submodule), sources, out)?;
        }
    }
    Some(())
}

/// The submodules under `dir` (gitlinks, mode 160000, of the index), relative to `dir`.
fn submodules(dir: &Path) -> Option<Vec<PathBuf>> {
    let out = run_git(dir, &["ls-files", "-z", "--stage"])?;
    if !out.status.success() {
        return None;
    }
    Some(
        out.stdout
            .split(|b| *b == 0)
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                let (info, path) = entry.split_once('\t')?;
                info.starts_with("160000 ").then(|| PathBuf::from(path))
            })
            .collect(),
    )
}

/// `git ls-files -z <extra> -- <the pathspecs of sources>` in `dir`.
fn ls_files(dir: &Path, extra: &[&str], sources: Sources) -> Option<Vec<PathBuf>> {
    let mut args = vec!["ls-files", "-z"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(sources.git_pathspecs());
    let out = run_git(dir, &args)?;
    if !out.status.success() {
        return None;
    }
    Some(
        out.stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect(),
    )
}

/// Runs `git -C dir args`; `None` when it cannot run.
fn run_git(dir: &Path, args: &[&str]) -> Option<std::process::Output> {
    let mut git = Command::new("git");
    git.arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Registered until it has exec'd, as every fork is (see `ports::forks`).
    let spawned = {
        let _fork = crate::ports::forking();
        git.spawn()
    };
    spawned.ok()?.wait_with_output().ok()
}

fn walk(root: &Path, rel: &Path, sources: Sources, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = rel.join(&*name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if name == "target" || name == ".git" {
                continue;
            }
            walk(root, &path, sources, out)?;
        } else if sources.wanted(&name) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn digest(dir: &Path, sources: Sources) -> String {
        let files = list_sources(dir, sources).unwrap();
        let mut h = ContentHash::new();
        h.files(dir, &files).unwrap();
        h.hex()
    }

    #[test]
    fn walking_skips_target_and_filters_go_sources() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Cargo.toml", "[package]");
        write(dir.path(), "src/main.rs", "fn main() {}");
        write(dir.path(), "target/release/junk", "x");
        write(dir.path(), "main.go", "package main");
        write(dir.path(), "go.mod", "module m");
        write(dir.path(), "README", "hi");
        let all = list_sources(dir.path(), Sources::All).unwrap();
        assert!(all.contains(&PathBuf::from("src/main.rs")));
        assert!(!all.iter().any(|p| p.starts_with("target")));
        let go = list_sources(dir.path(), Sources::Go).unwrap();
        assert_eq!(go, [PathBuf::from("go.mod"), PathBuf::from("main.go")]);
    }

    #[test]
    fn digests_change_with_content_and_names_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "main.go", "package main");
        let first = digest(dir.path(), Sources::Go);
        assert_eq!(first, digest(dir.path(), Sources::Go), "stable");
        write(dir.path(), "notes.txt", "ignored for go");
        assert_eq!(first, digest(dir.path(), Sources::Go));
        write(dir.path(), "main.go", "package main // edited");
        assert_ne!(first, digest(dir.path(), Sources::Go));
    }

    /// Runs `git args` in `dir` (with an identity and local submodules allowed).
    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c"])
            .arg("protocol.file.allow=always")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    /// A package in a git-ignored directory (`/gen/` ignored, the package is `gen/app`): git
    /// lists nothing there, so its files are walked rather than none of them hashed.
    #[test]
    fn a_package_in_an_ignored_directory_is_walked() {
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q", "."]);
        write(repo.path(), ".gitignore", "/gen/\n");
        write(repo.path(), "README", "tracked");
        git(repo.path(), &["add", "."]);
        git(repo.path(), &["commit", "-qm", "init"]);
        let app = repo.path().join("gen/app");
        write(&app, "Cargo.toml", "[package]");
        write(&app, "src/main.rs", "fn main() {}");
        write(&app, "target/release/app", "built");
        let files = list_sources(&app, Sources::All).unwrap();
        assert_eq!(
            files,
            [PathBuf::from("Cargo.toml"), PathBuf::from("src/main.rs")]
        );
        let first = digest(&app, Sources::All);
        write(&app, "src/main.rs", "fn main() { println!() }");
        assert_ne!(
            first,
            digest(&app, Sources::All),
            "an edit changes the hash"
        );
    }

    /// An app repository in `scratch/app` with a committed `src/main.rs`, and a library
    /// repository with `lib_files` (committed) added to it as the submodule `vendor/lib`.
    fn app_with_submodule(scratch: &Path, lib_files: &[(&str, &str)]) -> PathBuf {
        let lib = scratch.join("lib");
        std::fs::create_dir(&lib).unwrap();
        git(&lib, &["init", "-q", "."]);
        for (path, text) in lib_files {
            write(&lib, path, text);
        }
        git(&lib, &["add", "."]);
        git(&lib, &["commit", "-qm", "lib"]);
        let app = scratch.join("app");
        std::fs::create_dir(&app).unwrap();
        git(&app, &["init", "-q", "."]);
        write(&app, "src/main.rs", "fn main() {}");
        let lib = lib.to_string_lossy();
        git(&app, &["submodule", "add", "-q", &lib, "vendor/lib"]);
        git(&app, &["add", "."]);
        git(&app, &["commit", "-qm", "app"]);
        app
    }

    /// The files of a submodule count (git lists a submodule as one path, a directory).
    #[test]
    fn the_files_of_a_submodule_are_hashed() {
        let scratch = tempfile::tempdir().unwrap();
        let app = app_with_submodule(scratch.path(), &[("src/lib.rs", "pub fn hi() {}")]);
        let files = list_sources(&app, Sources::All).unwrap();
        assert!(
            files.contains(&PathBuf::from("vendor/lib/src/lib.rs")),
            "{files:?}"
        );
        let first = digest(&app, Sources::All);
        write(&app, "vendor/lib/src/lib.rs", "pub fn hi() { println!() }");
        assert_ne!(
            first,
            digest(&app, Sources::All),
            "an edit changes the hash"
        );
    }

    /// A new file in a submodule that is not yet added there counts, as in the main
    /// repository (`git ls-files --others` does not look into submodules); ignored ones
    /// do not.
    #[test]
    fn untracked_files_of_a_submodule_are_hashed() {
        let scratch = tempfile::tempdir().unwrap();
        let app = app_with_submodule(
            scratch.path(),
            &[("src/lib.rs", "pub fn hi() {}"), (".gitignore", "/junk/\n")],
        );
        let first = digest(&app, Sources::All);
        write(&app, "vendor/lib/junk/x.rs", "ignored");
        assert_eq!(
            first,
            digest(&app, Sources::All),
            "ignored in the submodule"
        );
        write(&app, "vendor/lib/src/extra.rs", "pub fn extra() {}");
        let files = list_sources(&app, Sources::All).unwrap();
        assert!(
            files.contains(&PathBuf::from("vendor/lib/src/extra.rs")),
            "{files:?}"
        );
        assert_ne!(
            first,
            digest(&app, Sources::All),
            "a new file changes the hash"
        );
    }

    #[test]
    fn fields_are_length_prefixed() {
        let mut a = ContentHash::new();
        a.field("x", "ab");
        a.field("y", "c");
        let mut b = ContentHash::new();
        b.field("x", "a");
        b.field("y", "bc");
        assert_ne!(a.hex(), b.hex());
        assert_eq!(sha256_hex("").len(), 64);
    }
}
