//! Building a binary of a Cargo package (`cargo` service type).
//!
//! Cache key: `cargo/<sha256>` over the toolchain (`rustc -vV`, run in the package directory
//! so `rust-toolchain.toml` counts), the profile, features and binary name, the build
//! environment's `CARGO_*` and `RUST*` variables, the cargo config files (`.cargo/config.toml`
//! from the package directory up, and in `$CARGO_HOME`), the package's files (git-tracked
//! and untracked-but-not-ignored, or every file but `target/`), the files of every local package it depends on outside its directory (path dependencies
//! and workspace members, found with `cargo metadata`: `super::cargo_deps`; upstream's Go
//! builds miss those), and the nearest `Cargo.lock` with the workspace manifest next to it.
//! A cached binary is taken only while every file its build read, as cargo's dep-info lists
//! them (git-ignored ones such as an `include_str!`ed `dist/app.js` or a build script's
//! `rerun-if-changed` files included), is unchanged: `super::depinfo`.
//!
//! Builds use a target directory of their own under the cache
//! (`{cache}/cargo-target/<hash of the package path>`), so they never wait on (or disturb)
//! the user's own `target/`, and rebuilds after an edit are incremental. Builds of one
//! package with different settings share it, one at a time (`cargo-target/<hash>.lock`, held
//! until the binary is copied out, since each build replaces `target/<profile>/<bin>`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use serde::Deserialize;

use super::cargo_deps::local_dependencies;
use super::hash::{list_sources, sha256_hex, ContentHash, Sources};
use super::{BoxFuture, BuildCommand, BuildJob, Output, Resolver};

/// The default build profile.
pub const DEFAULT_PROFILE: &str = "release";

/// A `cargo build` of one package's binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CargoBuild {
    /// The package directory (holds `Cargo.toml`), absolute.
    pub package_dir: PathBuf,
    /// The binary target to build; required when the package has several.
    pub bin: Option<String>,
    /// The profile (`release`, `dev`, or a custom one).
    pub profile: String,
    /// Features to enable.
    pub features: Vec<String>,
    /// The build's environment.
    pub env: BTreeMap<String, String>,
}

impl CargoBuild {
    /// The artifact key: `cargo:<package dir>`, with `?bin=..&profile=..&features=..` for
    /// the settings that differ from the defaults.
    pub fn key(&self) -> String {
        let mut params = Vec::new();
        if let Some(bin) = &self.bin {
            params.push(format!("bin={bin}"));
        }
        if self.profile != DEFAULT_PROFILE {
            params.push(format!("profile={}", self.profile));
        }
        if !self.features.is_empty() {
            params.push(format!("features={}", self.features.join(",")));
        }
        let mut key = format!("cargo:{}", self.package_dir.display());
        if !params.is_empty() {
            key.push('?');
            key.push_str(&params.join("&"));
        }
        key
    }

    fn manifest(&self) -> PathBuf {
        self.package_dir.join("Cargo.toml")
    }

    #[cfg(test)]
    fn compute_cache_key(&self) -> Result<String, String> {
        self.hash_inputs(&KeyTools::default())
    }

    fn hash_inputs(&self, tools: &KeyTools) -> Result<String, String> {
        if !self.manifest().is_file() {
            return Err(format!(
                "no Cargo.toml in {}: \"path\" must name a Cargo package directory",
                self.package_dir.display()
            ));
        }
        let toolchain = tool_output(tools, "rustc", &["-vV"], &self.package_dir, &self.env)?;
        let mut h = ContentHash::new();
        h.field("toolchain", &toolchain);
        h.field("profile", &self.profile);
        let mut features = self.features.clone();
        features.sort();
        h.field("features", &features.join(","));
        h.field("bin", self.bin.as_deref().unwrap_or(""));
        // What cargo and rustc read besides the sources: `CARGO_*` and `RUST*` variables
        // (RUSTFLAGS, CARGO_PROFILE_*, CARGO_BUILD_*, RUSTC_WRAPPER, ...) and the
        // `.cargo/config.toml` files ([env], build.rustflags, build.target, [profile]).
        for (var, value) in self.env.iter().filter(|(var, _)| read_by_the_build(var)) {
            h.field(&format!("env:{var}"), value);
        }
        let configs = self.config_files();
        h.files(Path::new("/"), &configs)
            .map_err(|e| format!("read the cargo config files {configs:?}: {e}"))?;
        // First: cargo metadata writes a missing Cargo.lock, which is hashed below.
        let dependencies = local_dependencies(tools, &self.package_dir, &self.env)?;
        hash_package(&mut h, &self.package_dir)?;
        let inside = canonical(&self.package_dir);
        for dir in dependencies {
            if canonical(&dir).starts_with(&inside) {
                continue; // among the package's own files
            }
            h.field("path-dependency", &dir.to_string_lossy());
            hash_package(&mut h, &dir)?;
        }
        if let Some(root) = self
            .package_dir
            .ancestors()
            .find(|dir| dir.join("Cargo.lock").is_file())
        {
            let mut extra = vec![PathBuf::from("Cargo.lock")];
            if root != self.package_dir {
                extra.push(PathBuf::from("Cargo.toml"));
            }
            h.field("workspace", &root.to_string_lossy());
            h.files(root, &extra)
                .map_err(|e| format!("read {}: {e}", root.join("Cargo.lock").display()))?;
        }
        Ok(format!("cargo/{}", h.hex()))
    }

    /// The cargo config files a build in the package directory reads: `.cargo/config.toml`
    /// and `.cargo/config` in it and every directory above, and in `$CARGO_HOME` (default
    /// `$HOME/.cargo`). Absolute, in cargo's order of precedence, existing ones only.
    fn config_files(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let lexical = self.package_dir.clone();
        for start in [canonical(&self.package_dir), lexical] {
            for dir in start.ancestors() {
                let dir = dir.join(".cargo");
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        let var = |name: &str| self.env.get(name).filter(|v| !v.is_empty());
        let home = var("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| Path::new(home).join(".cargo")));
        if let Some(home) = home.filter(|home| !dirs.contains(home)) {
            dirs.push(home);
        }
        dirs.iter()
            .flat_map(|dir| [dir.join("config.toml"), dir.join("config")])
            .filter(|file| file.is_file())
            .collect()
    }

    fn build_command(&self, target_dir: &Path) -> BuildCommand {
        let mut args = vec![
            "build".to_string(),
            "--manifest-path".to_string(),
            self.manifest().to_string_lossy().into_owned(),
            "--profile".to_string(),
            self.profile.clone(),
            "--message-format".to_string(),
            "json-render-diagnostics".to_string(),
            "--color".to_string(),
            "never".to_string(),
        ];
        if let Some(bin) = &self.bin {
            args.extend(["--bin".to_string(), bin.clone()]);
        }
        if !self.features.is_empty() {
            args.extend(["--features".to_string(), self.features.join(",")]);
        }
        let mut env = self.env.clone();
        env.insert(
            "CARGO_TARGET_DIR".to_string(),
            target_dir.to_string_lossy().into_owned(),
        );
        BuildCommand {
            program: "cargo".to_string(),
            args,
            dir: self.package_dir.clone(),
            env,
            log_stdout: false,
        }
    }

    /// The binary this build produced, from cargo's JSON messages. A package's own binaries
    /// come first; a named `bin` may also come from another member of the workspace (when
    /// `path` is a workspace root without a package of its own).
    fn pick_binary(&self, messages: &[u8]) -> Result<PathBuf, String> {
        let manifest = self.manifest();
        let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
        // Binaries of other packages: name → (executable, package directory).
        let mut members: BTreeMap<String, (PathBuf, PathBuf)> = BTreeMap::new();
        for line in messages.split(|b| *b == b'\n') {
            let Ok(message) = serde_json::from_slice::<Message>(line) else {
                continue;
            };
            let (Some(target), Some(executable)) = (message.target, message.executable) else {
                continue;
            };
            if message.reason != "compiler-artifact" || !target.kind.iter().any(|k| k == "bin") {
                continue;
            }
            match message.manifest_path.as_deref() {
                Some(m) if !same_file(Path::new(m), &manifest) => {
                    let dir = Path::new(m).parent().unwrap_or(Path::new(m)).to_path_buf();
                    members.insert(target.name, (PathBuf::from(executable), dir));
                }
                _ => {
                    found.insert(target.name, PathBuf::from(executable));
                }
            }
        }
        if let Some(bin) = &self.bin {
            if let Some(path) = found.remove(bin) {
                return Ok(path);
            }
            if let Some((path, _)) = members.remove(bin) {
                return Ok(path);
            }
            return Err(format!(
                "cargo built no binary named {bin:?} (built: {:?})",
                names(&found)
                    .into_iter()
                    .chain(members.keys().cloned())
                    .collect::<Vec<_>>()
            ));
        }
        match found.len() {
            1 => Ok(found.into_values().next().unwrap_or_default()),
            0 => match members.values().next() {
                Some((_, member)) => Err(format!(
                    "{} has no package of its own (a workspace root): point `path` at the \
                     member package, e.g. {}, or set \"bin\" to one of its members' binaries \
                     ({})",
                    manifest.display(),
                    member.display(),
                    members.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
                None => Err(format!(
                    "{} has no binary target: a `cargo` service runs a binary ([[bin]] or \
                     src/main.rs)",
                    manifest.display()
                )),
            },
            _ => Err(format!(
                "{} has several binaries ({}): set \"bin\" in the service config",
                manifest.display(),
                names(&found).join(", ")
            )),
        }
    }
}

/// Whether the environment variable `var` can change what a cargo build produces: `CARGO_*`
/// and `RUST*` ones, except those that only steer output and diagnostics, and
/// `CARGO_TARGET_DIR`, which rigd sets itself.
fn read_by_the_build(var: &str) -> bool {
    (var.starts_with("CARGO") || var.starts_with("RUST"))
        && var != "CARGO_TARGET_DIR"
        && !var.starts_with("CARGO_TERM_")
        && !matches!(var, "RUST_LOG" | "RUST_BACKTRACE" | "RUST_LIB_BACKTRACE")
}

/// Adds the files of the package in `dir` (sources, manifests, data; not `target/`).
fn hash_package(h: &mut ContentHash, dir: &Path) -> Result<(), String> {
    let files = list_sources(dir, Sources::All)
        .map_err(|e| format!("list the files of {}: {e}", dir.display()))?;
    h.files(dir, &files)
        .map_err(|e| format!("read the files of {}: {e}", dir.display()))
}

/// `path` with symlinks resolved, or as given when that fails.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn names(found: &BTreeMap<String, PathBuf>) -> Vec<String> {
    found.keys().cloned().collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// The parts of a cargo JSON message used here.
#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    manifest_path: Option<String>,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    executable: Option<String>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    #[serde(default)]
    kind: Vec<String>,
}

/// The tools a cache-key computation runs (`rustc -vV`, `cargo metadata`, `go list`), which
/// may take long (`cargo metadata` downloads the index and crates it lacks): each runs in a
/// process group of its own, dies with rigd (`PR_SET_PDEATHSIG`), and is killed when the
/// computation is abandoned.
#[derive(Clone, Default)]
pub(super) struct KeyTools(Arc<Mutex<KeyToolsState>>);

#[derive(Default)]
struct KeyToolsState {
    abandoned: bool,
    /// Process groups (= pids) of the tools running now.
    running: BTreeSet<i32>,
}

impl KeyTools {
    /// Kills the tools that run now and refuses to start new ones.
    fn abandon(&self) {
        let mut state = self.0.lock();
        state.abandoned = true;
        for pgid in &state.running {
            crate::services::process::signal_group(*pgid, libc::SIGKILL);
        }
    }

    /// A guard that abandons the computation when dropped (its future was dropped: the
    /// environment is being torn down).
    pub(super) fn abandon_on_drop(&self) -> AbandonOnDrop {
        AbandonOnDrop(Some(self.clone()))
    }
}

/// Abandons a cache-key computation when dropped ([`KeyTools::abandon_on_drop`]).
pub(super) struct AbandonOnDrop(Option<KeyTools>);

impl AbandonOnDrop {
    /// The computation finished: nothing to kill.
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(tools) = self.0.take() {
            tools.abandon();
        }
    }
}

/// Runs a tool of a cache-key computation (blocking) and returns its stdout.
pub(super) fn tool_output(
    tools: &KeyTools,
    program: &str,
    args: &[&str],
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    let resolved = crate::services::process::resolve_program(program, Some(dir), env)
        .map_err(|e| format!("{program} is needed to build this service: {e}"))?;
    let mut command = std::process::Command::new(&resolved);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    // SAFETY: prctl(2) is async-signal-safe; it only sets a flag of the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let what = || format!("{program} {}", args.join(" "));
    let child = {
        let mut state = tools.0.lock();
        if state.abandoned {
            return Err(format!("{}: cancelled", what()));
        }
        // Registered until it has exec'd, as every fork is (see `ports::forks`).
        let spawned = {
            let _fork = crate::ports::forking();
            command.spawn()
        };
        let child = spawned.map_err(|e| format!("run {}: {e}", what()))?;
        state.running.insert(child.id() as i32);
        child
    };
    let pid = child.id() as i32;
    let out = child.wait_with_output();
    tools.0.lock().running.remove(&pid);
    let out = out.map_err(|e| format!("run {}: {e}", what()))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}\n{}",
            what(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Puts the binary a build produced where its environment runs it from.
///
/// `key_now` is the cache key of the sources as they are after the build. When it is still
/// `job.key`, the key the build started from, the binary goes into that key's entry
/// (`job.dir`). Otherwise the sources changed while they were being built: the binary may
/// hold some of the edit, all of it or none, so it belongs under neither key. It then goes into
/// a directory of its own under `{cache}/unfiled/`, which no environment looks up (`rig prune`
/// removes it once unused), and `what`'s service log says so.
pub(super) fn file_binary(
    built: &Path,
    job: &BuildJob,
    key_now: Result<String, String>,
    what: &str,
) -> Result<PathBuf, String> {
    if key_now.as_deref() == Ok(job.key.as_str()) {
        return install_binary(built, &job.dir);
    }
    let dir = unfiled_dir(&job.cache_root)?;
    let path = install_binary(built, &dir)?;
    super::Cache::touch_last_used(&dir);
    let why = match key_now {
        Ok(_) => format!("the sources of {what} changed while they were being built"),
        Err(e) => format!("the binary of {what} cannot be cached ({e})"),
    };
    job.output.note([format!(
        "{why}: this binary runs in this environment only and is not cached (the next \
         environment builds again)"
    )]);
    Ok(path)
}

/// A new, empty directory under `{cache_root}/unfiled/` for a binary cached under no key.
fn unfiled_dir(cache_root: &Path) -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let parent = cache_root.join("unfiled");
    std::fs::create_dir_all(&parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!("{}-{nanos}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("create {}: {e}", dir.display())),
        }
    }
}

/// Copies `from` to `dir/binary` atomically (a reader never sees a partial binary) and
/// durably (written out before it is renamed into place).
fn install_binary(from: &Path, dir: &Path) -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // A name of its own: several rigds may install into one directory.
    let tmp = dir.join(format!(".binary.tmp.{}.{n}", std::process::id()));
    let dest = dir.join("binary");
    let installed = std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &dest));
    if let Err(e) = installed {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "copy {} into the cache as {}: {e}",
            from.display(),
            dest.display()
        ));
    }
    Ok(dest)
}

/// A cached `binary` in `dir`, if there is a non-empty one.
pub(super) fn cached_binary(dir: &Path, meta: (&str, String)) -> Option<Output> {
    let path = dir.join("binary");
    let len = std::fs::metadata(&path).ok()?.len();
    (len > 0).then(|| Output {
        path,
        meta: BTreeMap::from([(meta.0.to_string(), meta.1)]),
    })
}

impl CargoBuild {
    /// Takes the lock of the package's target directory (`{cache}/<target_key>.lock`),
    /// waiting, with a line in the service log, while another build of the package holds it.
    async fn lock_target_dir(
        &self,
        job: &BuildJob,
        target_key: &str,
    ) -> Result<super::CacheLock, String> {
        let cache = super::Cache::new(&job.cache_root);
        let locked = |e: std::io::Error| {
            format!(
                "lock {}: {e}",
                job.cache_root.join(format!("{target_key}.lock")).display()
            )
        };
        if let Some(lock) = cache.try_lock(target_key).map_err(locked)? {
            return Ok(lock);
        }
        job.output.note([format!(
            "waiting for another build of {} (other features, profile or flags) to finish with \
             the package's target directory",
            self.package_dir.display()
        )]);
        cache
            .lock(target_key, &job.cancel)
            .await
            .map_err(locked)?
            .ok_or_else(|| "cancelled".to_string())
    }
}

impl Resolver for CargoBuild {
    fn cache_key(&self) -> BoxFuture<'_, Result<String, String>> {
        let this = self.clone();
        Box::pin(async move {
            let tools = KeyTools::default();
            let guard = tools.abandon_on_drop();
            let key = tokio::task::spawn_blocking(move || this.hash_inputs(&tools))
                .await
                .map_err(|e| format!("hash sources: {e}"))?;
            guard.disarm();
            key
        })
    }

    fn cached<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Option<Output>> {
        Box::pin(async move {
            let output = cached_binary(
                dir,
                ("package", self.package_dir.to_string_lossy().into_owned()),
            )?;
            // Every file the build read (git-ignored ones included) must be as it was.
            let entry = dir.to_path_buf();
            let valid = tokio::task::spawn_blocking(move || super::depinfo::still_valid(&entry))
                .await
                .unwrap_or(false);
            valid.then_some(output)
        })
    }

    fn resolve(&self, job: BuildJob) -> BoxFuture<'_, Result<Output, String>> {
        Box::pin(async move {
            let target_key = format!(
                "cargo-target/{}",
                &sha256_hex(&self.package_dir.to_string_lossy())[..16]
            );
            let target_dir = job.cache_root.join(&target_key);
            // Held until the binary is copied out: a build of the package with other
            // features, profile or flags replaces `target/<profile>/<bin>` too.
            let _target_lock = self.lock_target_dir(&job, &target_key).await?;
            // `rig prune` keeps what was used within its `--max-age`, this directory too.
            if std::fs::create_dir_all(&target_dir).is_ok() {
                super::Cache::touch_last_used(&target_dir);
            }
            let command = self.build_command(&target_dir);
            let what = format!("cargo build {}", self.package_dir.display());
            let build_started = std::time::SystemTime::now();
            let messages = command
                .run(&job.output, &job.cancel, job.reaper.as_ref())
                .await
                .map_err(|f| f.describe(&what))?;
            let built = self.pick_binary(&messages)?;
            let inputs = read_inputs(&built, &target_dir, build_started).await;
            let key_now = self.cache_key().await;
            // A changed key says the most; else a file outside the listed sources changed.
            let (key_now, inputs) = match (key_now, inputs) {
                (Ok(key), Err(e)) if key == job.key => (Err(e), None),
                (key_now, inputs) => (key_now, inputs.ok()),
            };
            let path = file_binary(
                &built,
                &job,
                key_now,
                &self.package_dir.display().to_string(),
            )?;
            if let Some(inputs) = inputs.filter(|_| path == job.dir.join("binary")) {
                if let Err(e) = super::depinfo::save(&job.dir, inputs) {
                    job.output.note([format!(
                        "{e}: the next environment builds {} again",
                        self.package_dir.display()
                    )]);
                }
            }
            Ok(Output {
                path,
                meta: BTreeMap::from([(
                    "package".to_string(),
                    self.package_dir.to_string_lossy().into_owned(),
                )]),
            })
        })
    }
}

/// The files the build of `built` read, from cargo's dep-info, hashed; an error when they
/// cannot be read or one changed after `build_started`.
async fn read_inputs(
    built: &Path,
    target_dir: &Path,
    build_started: std::time::SystemTime,
) -> Result<Vec<super::depinfo::InputFile>, String> {
    let (built, target_dir) = (built.to_path_buf(), target_dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let files = super::depinfo::dep_info_files(&built, &target_dir)?;
        super::depinfo::digest_inputs(&files, build_started)
    })
    .await
    .map_err(|e| format!("hash the files the build read: {e}"))?
}

/// The `cargo` service config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CargoConfig {
    /// The package directory, relative to the spec `dir` (or absolute).
    #[serde(default)]
    pub path: String,
    /// The binary target to run.
    #[serde(default)]
    pub bin: Option<String>,
    /// The build profile (default `release`).
    #[serde(default)]
    pub profile: Option<String>,
    /// Features to enable.
    #[serde(default)]
    pub features: Vec<String>,
    /// Extra environment variables for the running service (as `process`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(dir: &Path) -> CargoBuild {
        CargoBuild {
            package_dir: dir.to_path_buf(),
            bin: None,
            profile: DEFAULT_PROFILE.to_string(),
            features: Vec::new(),
            env: std::env::vars().collect(),
        }
    }

    #[test]
    fn keys_name_the_package_and_non_default_settings() {
        let mut b = build(Path::new("/src/api"));
        assert_eq!(b.key(), "cargo:/src/api");
        b.bin = Some("server".into());
        b.profile = "dev".into();
        b.features = vec!["a".into(), "b".into()];
        assert_eq!(
            b.key(),
            "cargo:/src/api?bin=server&profile=dev&features=a,b"
        );
    }

    #[test]
    fn cache_keys_follow_sources_profile_and_features() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
        std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n").unwrap();
        let b = build(dir.path());
        let first = b.compute_cache_key().unwrap();
        assert!(first.starts_with("cargo/"));
        assert_eq!(first, b.compute_cache_key().unwrap());
        std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
        std::fs::write(dir.path().join("target/release/x"), "built").unwrap();
        assert_eq!(
            first,
            b.compute_cache_key().unwrap(),
            "target/ is not a source"
        );
        let mut dev = b.clone();
        dev.profile = "dev".into();
        assert_ne!(first, dev.compute_cache_key().unwrap());
        let mut feat = b.clone();
        feat.features = vec!["fast".into()];
        assert_ne!(first, feat.compute_cache_key().unwrap());
        std::fs::write(dir.path().join("src/main.rs"), "fn main() { }\n").unwrap();
        assert_ne!(first, b.compute_cache_key().unwrap());
    }

    #[test]
    fn cache_keys_follow_cargo_config_files_and_cargo_variables() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ws/app");
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"x\"\nversion = \"0.1.0\"\n[workspace]\n",
        )
        .unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        let mut b = build(&dir);
        b.env.insert(
            "CARGO_HOME".into(),
            root.path().join("home").to_string_lossy().into(),
        );
        let first = b.compute_cache_key().unwrap();
        // Above the package, and in CARGO_HOME.
        for config in ["ws/.cargo/config.toml", "home/config.toml"] {
            let path = root.path().join(config);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "[env]\nGREETING = \"a\"\n").unwrap();
            let with = b.compute_cache_key().unwrap();
            assert_ne!(first, with, "{config}");
            std::fs::write(&path, "[env]\nGREETING = \"b\"\n").unwrap();
            assert_ne!(with, b.compute_cache_key().unwrap(), "{config}");
            std::fs::remove_file(&path).unwrap();
        }
        assert_eq!(first, b.compute_cache_key().unwrap());
        let mut opt = b.clone();
        opt.env
            .insert("CARGO_PROFILE_RELEASE_OPT_LEVEL".into(), "s".into());
        assert_ne!(first, opt.compute_cache_key().unwrap());
        let mut logged = b.clone();
        logged.env.insert("RUST_LOG".into(), "debug".into());
        logged
            .env
            .insert("CARGO_TARGET_DIR".into(), "/elsewhere".into());
        assert_eq!(
            first,
            logged.compute_cache_key().unwrap(),
            "not build inputs"
        );
    }

    #[test]
    fn a_path_dependency_outside_the_package_is_part_of_the_key() {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = root.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
             [workspace]\n[dependencies]\nshared = { path = \"../shared-lib\" }\n",
        );
        write("app/src/main.rs", "fn main() { shared::hi() }\n");
        write(
            "shared-lib/Cargo.toml",
            "[package]\nname = \"shared\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        );
        write("shared-lib/src/lib.rs", "pub fn hi() {}\n");
        let b = build(&root.path().join("app"));
        let first = b.compute_cache_key().unwrap();
        assert_eq!(first, b.compute_cache_key().unwrap(), "stable");
        write(
            "shared-lib/src/lib.rs",
            "pub fn hi() { println!(\"hi\") }\n",
        );
        assert_ne!(first, b.compute_cache_key().unwrap());
    }

    #[test]
    fn a_directory_without_a_manifest_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = build(dir.path()).compute_cache_key().unwrap_err();
        assert!(
            err.contains("no Cargo.toml") && err.contains("\"path\""),
            "{err}"
        );
    }

    #[test]
    fn the_binary_is_picked_from_cargo_messages() {
        let dir = Path::new("/p");
        let msg = |name: &str, kind: &str, exe: &str| {
            serde_json::json!({
                "reason": "compiler-artifact",
                "manifest_path": "/p/Cargo.toml",
                "target": {"name": name, "kind": [kind]},
                "executable": exe,
            })
            .to_string()
        };
        let one = [
            msg("api", "bin", "/t/api"),
            "{\"reason\":\"build-finished\"}".into(),
        ]
        .join("\n");
        assert_eq!(
            build(dir).pick_binary(one.as_bytes()).unwrap(),
            PathBuf::from("/t/api")
        );
        let two = [msg("api", "bin", "/t/api"), msg("cli", "bin", "/t/cli")].join("\n");
        let err = build(dir).pick_binary(two.as_bytes()).unwrap_err();
        assert!(err.contains("api, cli") && err.contains("\"bin\""), "{err}");
        let mut chosen = build(dir);
        chosen.bin = Some("cli".into());
        assert_eq!(
            chosen.pick_binary(two.as_bytes()).unwrap(),
            PathBuf::from("/t/cli")
        );
        let err = build(dir).pick_binary(b"").unwrap_err();
        assert!(err.contains("no binary target"), "{err}");
    }

    /// `path` at a workspace root without a package of its own: `bin` names a member's
    /// binary; without it the error says where to point `path`.
    #[test]
    fn a_workspace_root_takes_a_members_binary_by_name() {
        let api = serde_json::json!({
            "reason": "compiler-artifact",
            "manifest_path": "/ws/api/Cargo.toml",
            "target": {"name": "api", "kind": ["bin"]},
            "executable": "/t/api",
        })
        .to_string();
        let mut root = build(Path::new("/ws"));
        let err = root.pick_binary(api.as_bytes()).unwrap_err();
        assert!(
            err.contains("point `path` at the member package, e.g. /ws/api"),
            "{err}"
        );
        root.bin = Some("api".into());
        assert_eq!(
            root.pick_binary(api.as_bytes()).unwrap(),
            PathBuf::from("/t/api")
        );
        root.bin = Some("web".into());
        let err = root.pick_binary(api.as_bytes()).unwrap_err();
        assert!(err.contains("(built: [\"api\"])"), "{err}");
    }
}
