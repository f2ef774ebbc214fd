//! The second-level check of a cached cargo binary: every file its build read.
//!
//! A cache key hashes the package's listed sources (git-tracked and untracked-but-not-ignored
//! files), but a build may read more: `include_str!("../dist/app.js")` of a generated,
//! git-ignored file, or a `build.rs` that reads `../proto/*.proto`. After a build, cargo's
//! dep-info file next to the binary (`target/<profile>/<bin>.d`) lists every file the
//! compiler read, those named by build scripts' `cargo:rerun-if-changed` included. Their
//! digests are recorded with the cached entry (`<entry>/inputs.json`), and a lookup takes the
//! entry only while every one of them still has the recorded digest.
//!
//! Lookups stay fast: a file whose `stat` (device, inode, size, mtime, ctime) is unchanged is
//! not read again. The `stat` is only trusted when the file's ctime was already
//! [`SETTLED`] old when it was recorded: file timestamps are coarse, so a write just after the
//! recording could otherwise leave them unchanged ("racy git").
//!
//! Blocking: call from `spawn_blocking`.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::hash::{list_sources, ContentHash, Sources};

/// The record of an entry's build inputs, next to its `binary`.
pub(super) const INPUTS_FILE: &str = "inputs.json";

/// How old a file's ctime must be for its recorded `stat` to stand in for its content.
const SETTLED: Duration = Duration::from_secs(2);

/// The digest recorded for a path the build read that does not exist (any longer).
const ABSENT: &str = "absent";

/// What a cached binary was built from, beyond its cache key.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct BuildInputs {
    /// The installed `binary` these inputs belong to (device, inode): a lookup that sees
    /// another binary (replaced by a newer build while it looked) does not trust them.
    binary: (u64, u64),
    /// Every file (or directory) the build read.
    files: Vec<InputFile>,
}

/// One path the build read, with its digest.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct InputFile {
    path: PathBuf,
    /// SHA-256 of the content (of a directory: of its files' names and contents), or
    /// [`ABSENT`].
    digest: String,
    /// The file's `stat` when it was hashed, if it may stand in for the content.
    #[serde(default)]
    stat: Option<Stat>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

fn nanos_since_epoch(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The files a build read, from cargo's dep-info file of the binary `built`
/// (`<built>.d`), without those under `target_dir` (generated from the others: build
/// scripts' `OUT_DIR`).
pub(super) fn dep_info_files(built: &Path, target_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut name = built.as_os_str().to_os_string();
    name.push(".d");
    let dep_info = PathBuf::from(name);
    let text = std::fs::read_to_string(&dep_info).map_err(|e| {
        format!(
            "read cargo's list of the files the build read ({}): {e}",
            dep_info.display()
        )
    })?;
    let canonical_target = std::fs::canonicalize(target_dir).ok();
    let mut files = Vec::new();
    for path in parse_dep_info(&text) {
        if !path.is_absolute() {
            return Err(format!(
                "{} names {} relative to build.dep-info-basedir: rigd needs absolute paths \
                 there to tell when a cached binary is stale; unset build.dep-info-basedir \
                 in the cargo config",
                dep_info.display(),
                path.display()
            ));
        }
        let generated = path.starts_with(target_dir)
            || canonical_target
                .as_ref()
                .is_some_and(|t| path.starts_with(t));
        if !generated && !files.contains(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The prerequisites of a Makefile-style dep-info file (`target: dep dep ...`, spaces in
/// names escaped as `\ `), the targets (words ending in `:`) left out.
fn parse_dep_info(text: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let mut word = String::new();
        let mut chars = line.chars().peekable();
        let mut words = Vec::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' if matches!(chars.peek(), Some(' ') | Some('\\') | Some('#')) => {
                    word.extend(chars.next());
                }
                c if c.is_whitespace() => words.push(std::mem::take(&mut word)),
                c => word.push(c),
            }
        }
        words.push(word);
        let mut words: Vec<String> = words.into_iter().filter(|w| !w.is_empty()).collect();
        // `target: deps`; a line without a target lists no prerequisites of the binary.
        let Some(colon) = words.iter().position(|w| w.ends_with(':')) else {
            continue;
        };
        paths.extend(words.drain(colon + 1..).map(PathBuf::from));
    }
    paths
}

/// Hashes `files`, which a build that started at `build_started` read. Fails, naming the
/// file, when one of them changed after the build started (the binary may hold the change or
/// not, so it must not be cached as either).
pub(super) fn digest_inputs(
    files: &[PathBuf],
    build_started: SystemTime,
) -> Result<Vec<InputFile>, String> {
    let started = nanos_since_epoch(build_started);
    let settled_before = nanos_since_epoch(SystemTime::now()) - SETTLED.as_nanos() as i128;
    let mut inputs = Vec::with_capacity(files.len());
    for path in files {
        let (digest, stat, newest_ctime) = digest_path(path)
            .map_err(|e| format!("read {}, which the build read: {e}", path.display()))?;
        if newest_ctime.is_some_and(|ctime| ctime > started) {
            return Err(format!(
                "{}, which the build read, changed while it was being built",
                path.display()
            ));
        }
        let stat = stat.filter(|s| s.ctime_ns < settled_before);
        inputs.push(InputFile {
            path: path.clone(),
            digest,
            stat,
        });
    }
    Ok(inputs)
}

/// The digest of `path`, its `stat` (a file's), and the newest ctime seen (of the file, or
/// of the files in the directory). A file that changes while it is hashed counts as changed
/// now.
fn digest_path(path: &Path) -> std::io::Result<(String, Option<Stat>, Option<i128>)> {
    let before = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((ABSENT.to_string(), None, None));
        }
        Err(e) => return Err(e),
    };
    if before.is_dir() {
        return digest_dir(path).map(|(digest, newest)| (digest, None, newest));
    }
    let digest = digest_file(path)?;
    let after = Stat::of(&std::fs::metadata(path)?);
    let stat = Stat::of(&before);
    let newest = if after == stat {
        stat.ctime_ns
    } else {
        i128::MAX // written while it was read
    };
    Ok((digest, Some(stat), Some(newest)))
}

fn digest_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut h = ContentHash::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(h.hex());
        }
        h.bytes(&buf[..n]);
    }
}

/// A directory named by `cargo:rerun-if-changed` (cargo then watches every file in it).
fn digest_dir(dir: &Path) -> std::io::Result<(String, Option<i128>)> {
    let files = list_sources(dir, Sources::All)?;
    let mut newest = None;
    for rel in &files {
        if let Ok(meta) = std::fs::metadata(dir.join(rel)) {
            newest = newest.max(Some(Stat::of(&meta).ctime_ns));
        }
    }
    let mut h = ContentHash::new();
    h.files(dir, &files)?;
    Ok((h.hex(), newest))
}

/// Records `files` as the inputs of the binary installed in `entry` (`entry/binary`).
pub(super) fn save(entry: &Path, files: Vec<InputFile>) -> Result<(), String> {
    let binary = entry.join("binary");
    let meta = std::fs::metadata(&binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let record = BuildInputs {
        binary: (meta.dev(), meta.ino()),
        files,
    };
    let json = serde_json::to_vec(&record).map_err(|e| format!("encode the inputs: {e}"))?;
    let dest = entry.join(INPUTS_FILE);
    let tmp = entry.join(format!(".{INPUTS_FILE}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, &dest))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("record the build's inputs in {}: {e}", dest.display())
        })
}

/// Whether the binary in `entry` was built from what its recorded inputs hold now: false when
/// it has no record (built before rigd recorded them), its record belongs to another binary,
/// or any input changed.
pub(super) fn still_valid(entry: &Path) -> bool {
    let Ok(json) = std::fs::read(entry.join(INPUTS_FILE)) else {
        return false;
    };
    let Ok(record) = serde_json::from_slice::<BuildInputs>(&json) else {
        return false;
    };
    let binary = std::fs::metadata(entry.join("binary"));
    if !binary.is_ok_and(|m| (m.dev(), m.ino()) == record.binary) {
        return false;
    }
    record.files.iter().all(unchanged)
}

fn unchanged(input: &InputFile) -> bool {
    if let Some(recorded) = input.stat {
        if std::fs::metadata(&input.path).is_ok_and(|m| Stat::of(&m) == recorded) {
            return true;
        }
    }
    match digest_path(&input.path) {
        Ok((digest, _, _)) => digest == input.digest,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_prerequisites_with_escaped_spaces() {
        let text = "/t/release/app: /src/main.rs /my\\ dir/dist/app.js /src/build.rs\n\n";
        assert_eq!(
            parse_dep_info(text),
            [
                PathBuf::from("/src/main.rs"),
                PathBuf::from("/my dir/dist/app.js"),
                PathBuf::from("/src/build.rs"),
            ]
        );
    }

    #[test]
    fn generated_files_are_left_out_and_relative_paths_explained() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let built = target.join("release/app");
        std::fs::create_dir_all(built.parent().unwrap()).unwrap();
        let out = target.join("release/build/app-1/out/gen.rs");
        std::fs::write(
            target.join("release/app.d"),
            format!("{}: /src/main.rs {}\n", built.display(), out.display()),
        )
        .unwrap();
        assert_eq!(
            dep_info_files(&built, &target).unwrap(),
            [PathBuf::from("/src/main.rs")]
        );
        std::fs::write(target.join("release/app.d"), "app: src/main.rs\n").unwrap();
        let err = dep_info_files(&built, &target).unwrap_err();
        assert!(err.contains("dep-info-basedir"), "{err}");
    }

    /// An entry with `binary` and the inputs `files`, recorded as of now.
    fn entry_with(files: &[PathBuf]) -> tempfile::TempDir {
        let entry = tempfile::tempdir().unwrap();
        std::fs::write(entry.path().join("binary"), "bin").unwrap();
        let started = SystemTime::now();
        save(entry.path(), digest_inputs(files, started).unwrap()).unwrap();
        entry
    }

    #[test]
    fn an_entry_is_valid_until_an_input_changes_appears_or_is_replaced() {
        let src = tempfile::tempdir().unwrap();
        let (js, missing) = (src.path().join("app.js"), src.path().join("gone.txt"));
        std::fs::write(&js, "v1").unwrap();
        // Written before the build "started" at `entry_with`.
        let entry = entry_with(&[js.clone(), missing.clone()]);
        assert!(still_valid(entry.path()));
        std::fs::write(&js, "v2").unwrap();
        assert!(!still_valid(entry.path()), "an edited input");
        std::fs::write(&js, "v1").unwrap();
        assert!(still_valid(entry.path()), "the same content again");
        std::fs::write(&missing, "now here").unwrap();
        assert!(!still_valid(entry.path()), "a file that was absent appears");
        std::fs::remove_file(&missing).unwrap();
        // A newer binary (a rebuild in progress) does not go with this record.
        std::fs::write(entry.path().join("binary.new"), "bin2").unwrap();
        std::fs::rename(entry.path().join("binary.new"), entry.path().join("binary")).unwrap();
        assert!(!still_valid(entry.path()));
    }

    #[test]
    fn an_entry_without_a_record_is_not_valid() {
        let entry = tempfile::tempdir().unwrap();
        std::fs::write(entry.path().join("binary"), "bin").unwrap();
        assert!(!still_valid(entry.path()));
    }

    #[test]
    fn a_watched_directory_counts_every_file_in_it() {
        let src = tempfile::tempdir().unwrap();
        let proto = src.path().join("proto");
        std::fs::create_dir(&proto).unwrap();
        std::fs::write(proto.join("a.proto"), "message A {}").unwrap();
        let entry = entry_with(std::slice::from_ref(&proto));
        assert!(still_valid(entry.path()));
        std::fs::write(proto.join("b.proto"), "message B {}").unwrap();
        assert!(!still_valid(entry.path()));
    }

    #[test]
    fn an_input_changed_after_the_build_started_is_named() {
        let src = tempfile::tempdir().unwrap();
        let js = src.path().join("app.js");
        let started = SystemTime::now() - Duration::from_secs(60);
        std::fs::write(&js, "edited during the build").unwrap();
        let err = digest_inputs(std::slice::from_ref(&js), started).unwrap_err();
        assert!(err.contains("changed while it was being built"), "{err}");
        assert!(err.contains("app.js"), "{err}");
    }
}
