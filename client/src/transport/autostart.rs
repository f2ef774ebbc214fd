//! Finding a running rigd, or starting one: the auto-start protocol shared with the SDKs
//! (upstream server reference, section 9.5), so `rig`, Rust tests and Go tests share one rigd.
//!
//! 1. `--server ADDR` or `$RIG_SERVER_ADDR`: use that rigd (it must answer `/health`); never
//!    start one.
//! 2. Otherwise pick the binary: `$RIG_BINARY` ("override mode": an error when the file is
//!    missing; files `{rig-dir}/rigd.addr` and `rigd.lock`), else `rigd` next to the running
//!    `rig` (they are built together), else `rigd` on `PATH` (both "managed mode": versioned
//!    files `{rig-dir}/rigd-v<version>.addr` and `.lock`, so versions run side by side).
//! 3. Fast path: the address in the addr file answers `GET /health` within 1 s (when it does
//!    not answer in time, once more within 5 s: a loaded machine). A healthy rigd of the same
//!    API version in the other mode's addr file is used too: in managed mode
//!    `{rig-dir}/rigd.addr` (one started by hand with that rig dir, or through
//!    `$RIG_BINARY`), in override mode the versioned one of a managed start. It serves the rig
//!    dir, and a second rigd beside it would split the environments between two servers
//!    (rig-rs addition).
//! 4. Otherwise `mkdir -p {rig-dir}`, take an exclusive `flock` on the lock file, check the
//!    addr file again (someone may have just started rigd), and spawn
//!    `rigd --idle 5m --rig-dir <dir> [--addr-file <versioned addr file>]` in a new session,
//!    cwd `{rig-dir}`, stdin null, stdout and stderr appended to `{rig-dir}/rigd.log`.
//! 5. Wait (polling every 100 ms, at most 10 s) for a non-empty addr file whose address is
//!    healthy. A rigd that exits first is reported at once with the end of its log.
//! 6. Release the lock: delete the file, unlock, close.
//!
//! The rig dir is `$RIG_DIR`, else `$HOME/.rig`, else `<temp>/rig`.

use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rig_types::Health;
use tokio::time::{Instant, MissedTickBehavior};

use super::client::{ClientError, RigdClient};
use super::lockfile::{LockError, LockFile};

/// The version in managed-mode file names (`rigd-v<VERSION>.addr`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long a freshly spawned rigd has to become healthy.
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the addr file is polled while waiting.
const POLL: Duration = Duration::from_millis(100);
/// How long to wait for another process that holds the lock.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// The idle timeout given to a spawned rigd.
const IDLE: &str = "5m";
/// Lines of a dead rigd's log shown in the error.
const LOG_TAIL_LINES: usize = 15;

/// Where the rigd address comes from when it is given rather than discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrSource {
    /// `--server`.
    Flag,
    /// `$RIG_SERVER_ADDR`.
    Env,
    /// The SDK's `Environment::builder(..).rigd_addr(..)`.
    Sdk,
}

impl AddrSource {
    fn describe(self) -> &'static str {
        match self {
            AddrSource::Flag => "--server",
            AddrSource::Env => "RIG_SERVER_ADDR",
            AddrSource::Sdk => "rigd_addr",
        }
    }
}

/// How the rigd is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Use the rigd at this address; never start one.
    Fixed {
        /// The address as given.
        addr: String,
        /// Who gave it.
        source: AddrSource,
    },
    /// `$RIG_BINARY`: this binary, unversioned addr and lock files.
    Override {
        /// The binary (absolute).
        binary: PathBuf,
    },
    /// A binary found next to `rig` or on `PATH` (if any), versioned files.
    Managed {
        /// The binary found, if any.
        binary: Option<PathBuf>,
        /// Every place looked at, for the error when nothing was found.
        searched: Vec<PathBuf>,
    },
}

/// The files of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// Holds rigd's `host:port`.
    pub addr: PathBuf,
    /// Serialises starting rigd.
    pub lock: PathBuf,
    /// rigd's stdout and stderr.
    pub log: PathBuf,
}

/// A healthy rigd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningServer {
    /// Its `host:port`.
    pub addr: String,
    /// The process id, when this call started it.
    pub spawned_pid: Option<u32>,
    /// Its log file, when it was found or started through the rig dir.
    pub log: Option<PathBuf>,
}

/// Why no rigd could be found or started.
#[derive(Debug, thiserror::Error)]
pub enum AutostartError {
    /// The rigd binary given (`$RIG_BINARY`, or the SDK's `rigd_binary(..)`) does not exist.
    #[error("{given_by}: {}: file not found", path.display())]
    BinaryMissing {
        /// The path given.
        path: PathBuf,
        /// What gave it: `RIG_BINARY` or `rigd_binary(..)`.
        given_by: &'static str,
    },
    /// No rigd binary anywhere.
    #[error(
        "rigd not found (looked at {} and on PATH); build it in the rig-rs workspace with \
         `cargo build -p rigd` (or `cargo install --path .` there, which puts it on PATH), set \
         RIG_BINARY to it, or point RIG_SERVER_ADDR (`rig --server`) at a running rigd",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoBinary {
        /// Where we looked.
        searched: Vec<PathBuf>,
    },
    /// The given rigd does not answer.
    #[error("no healthy rigd at {addr} (from {}): {source}", from.describe())]
    NotAnswering {
        /// The address.
        addr: String,
        /// Who gave it.
        from: AddrSource,
        /// The failure.
        source: ClientError,
    },
    /// The rigd found speaks another API version than this client.
    #[error(
        "{detail} (rigd at {addr}): use a rig and rigd of the same release — stop that rigd \
         (`rig down --all`, then end the process) or point RIG_DIR or RIG_SERVER_ADDR elsewhere"
    )]
    Incompatible {
        /// The address.
        addr: String,
        /// Which versions disagree.
        detail: String,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// The start lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// rigd exited before it became healthy.
    #[error("rigd exited ({status}) before becoming healthy (log: {}){tail}", log.display())]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of what it wrote there, formatted for display (may be empty).
        tail: String,
    },
    /// rigd did not become healthy in time.
    #[error("rigd did not become healthy within {}s (log: {})", after.as_secs(), log.display())]
    NotHealthy {
        /// Its log file.
        log: PathBuf,
        /// The time allowed.
        after: Duration,
    },
}

/// The resolved auto-start configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autostart {
    rig_dir: PathBuf,
    mode: Mode,
}

impl Autostart {
    /// Resolves the configuration from this process's environment, executable and working
    /// directory. `server` is the `--server` flag, if given.
    pub fn from_process(server: Option<&str>) -> Result<Autostart, AutostartError> {
        let exe = std::env::current_exe().ok();
        let cwd = std::env::current_dir().ok();
        Autostart::resolve(
            &|key| std::env::var_os(key),
            exe.as_deref(),
            cwd.as_deref(),
            server,
        )
    }

    /// Uses the rigd at `addr` (given by `source`) and never starts one.
    pub fn fixed(addr: impl Into<String>, source: AddrSource) -> Autostart {
        Autostart {
            rig_dir: default_rig_dir(&|key| std::env::var_os(key)),
            mode: Mode::Fixed {
                addr: addr.into(),
                source,
            },
        }
    }

    /// Resolves the configuration from explicit inputs: `env` looks a variable up,
    /// `current_exe` is the running `rig`, `cwd` makes relative paths absolute (rigd runs in
    /// the rig dir, so a relative path would mean something else to it).
    pub fn resolve(
        env: &dyn Fn(&str) -> Option<OsString>,
        current_exe: Option<&Path>,
        cwd: Option<&Path>,
        server: Option<&str>,
    ) -> Result<Autostart, AutostartError> {
        let var = |key: &str| env(key).filter(|v| !v.is_empty());
        let absolute = |p: PathBuf| match cwd {
            Some(cwd) if p.is_relative() => cwd.join(p),
            _ => p,
        };
        let rig_dir = absolute(default_rig_dir(env));

        let given = match server.filter(|s| !s.trim().is_empty()) {
            Some(addr) => Some((addr.to_string(), AddrSource::Flag)),
            None => {
                var("RIG_SERVER_ADDR").map(|a| (a.to_string_lossy().into_owned(), AddrSource::Env))
            }
        };
        if let Some((addr, source)) = given {
            return Ok(Autostart {
                rig_dir,
                mode: Mode::Fixed { addr, source },
            });
        }

        if let Some(binary) = var("RIG_BINARY") {
            let binary = absolute(PathBuf::from(binary));
            if !binary.is_file() {
                return Err(AutostartError::BinaryMissing {
                    path: binary,
                    given_by: "RIG_BINARY",
                });
            }
            return Ok(Autostart {
                rig_dir,
                mode: Mode::Override { binary },
            });
        }

        let mut searched = Vec::new();
        let mut binary = None;
        for candidate in beside_exe(current_exe) {
            if binary.is_none() && is_executable(&candidate) {
                binary = Some(candidate.clone());
            }
            searched.push(candidate);
        }
        if binary.is_none() {
            if let Some(path) = var("PATH") {
                binary = std::env::split_paths(&path)
                    .map(|dir| absolute(dir.join("rigd")))
                    .find(|candidate| is_executable(candidate));
            }
        }
        Ok(Autostart {
            rig_dir,
            mode: Mode::Managed { binary, searched },
        })
    }

    /// The rig dir.
    pub fn rig_dir(&self) -> &Path {
        &self.rig_dir
    }

    /// How rigd is found.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The addr, lock and log files for this mode.
    pub fn files(&self) -> ServerFiles {
        let versioned = matches!(self.mode, Mode::Managed { .. });
        let (addr, lock) = (file_name(versioned, "addr"), file_name(versioned, "lock"));
        ServerFiles {
            addr: self.rig_dir.join(addr),
            lock: self.rig_dir.join(lock),
            log: self.rig_dir.join("rigd.log"),
        }
    }

    /// Finds a healthy rigd, starting one when needed (see the module docs).
    pub async fn ensure(&self) -> Result<RunningServer, AutostartError> {
        let (binary, versioned) = match &self.mode {
            Mode::Fixed { addr, source } => return check_given(addr, *source).await,
            Mode::Override { binary } => (Some(binary), false),
            Mode::Managed { binary, .. } => (binary.as_ref(), true),
        };
        let files = self.files();
        let found = |addr: String| RunningServer {
            addr,
            spawned_pid: None,
            log: Some(files.log.clone()),
        };
        if let Some(addr) = healthy_addr(&files.addr).await? {
            return Ok(found(addr));
        }
        // A rigd already serving the rig dir under the other mode's addr file (started by
        // hand or with `RIG_BINARY`, or by a managed start): one rigd per rig dir.
        if let Some(addr) = rigd_serving_the_dir(&self.rig_dir, versioned).await {
            return Ok(RunningServer {
                addr,
                spawned_pid: None,
                log: None,
            });
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.rig_dir)
            .map_err(|source| AutostartError::Io {
                what: format!("cannot create the rig dir {}", self.rig_dir.display()),
                source,
            })?;
        let lock = LockFile::acquire(&files.lock, LOCK_TIMEOUT).await?;
        if let Some(addr) = healthy_addr(&files.addr).await? {
            drop(lock);
            return Ok(found(addr));
        }
        let result = match binary {
            Some(binary) => self.spawn_and_wait(binary, versioned, &files).await,
            None => Err(AutostartError::NoBinary {
                searched: match &self.mode {
                    Mode::Managed { searched, .. } => searched.clone(),
                    _ => Vec::new(),
                },
            }),
        };
        drop(lock);
        result
    }

    async fn spawn_and_wait(
        &self,
        binary: &Path,
        versioned: bool,
        files: &ServerFiles,
    ) -> Result<RunningServer, AutostartError> {
        // Under the lock and unhealthy: whatever address the file holds is stale, and must
        // not be mistaken for the new rigd's.
        match std::fs::remove_file(&files.addr) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(AutostartError::Io {
                    what: format!("cannot remove the stale {}", files.addr.display()),
                    source: e,
                })
            }
            _ => {}
        }
        let log_start = std::fs::metadata(&files.log).map_or(0, |m| m.len());
        let mut child = self.spawn(
            binary,
            versioned.then_some(files.addr.as_path()),
            &files.log,
        )?;
        let pid = child.id();
        let addr = wait_healthy(&mut child, files, log_start).await?;
        Ok(RunningServer {
            addr,
            spawned_pid: Some(pid),
            log: Some(files.log.clone()),
        })
    }

    fn spawn(
        &self,
        binary: &Path,
        addr_file: Option<&Path>,
        log: &Path,
    ) -> Result<Child, AutostartError> {
        let log_err = |source| AutostartError::Io {
            what: format!("cannot open {}", log.display()),
            source,
        };
        let stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log)
            .map_err(log_err)?;
        let stderr = stdout.try_clone().map_err(log_err)?;
        let mut command = Command::new(binary);
        command
            .arg("--idle")
            .arg(IDLE)
            .arg("--rig-dir")
            .arg(&self.rig_dir);
        if let Some(addr_file) = addr_file {
            command.arg("--addr-file").arg(addr_file);
        }
        command
            .current_dir(&self.rig_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: the closure runs in the forked child before exec and only calls setsid(2),
        // which is async-signal-safe. A new session detaches rigd from the terminal, so
        // Ctrl-C in the shell that ran `rig` does not reach it.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn().map_err(|source| AutostartError::Io {
            what: format!("cannot start {}", binary.display()),
            source,
        })
    }
}

/// Where a rigd built with the running program would be: next to it (`rig` and `rigd` are
/// built together), and, for a test executable in a Cargo target directory
/// (`target/<profile>/deps/<test>`), in the profile directory above (`target/<profile>/rigd`,
/// where `cargo build --bin rigd` or `cargo test --workspace` puts it).
fn beside_exe(current_exe: Option<&Path>) -> Vec<PathBuf> {
    let Some(dir) = current_exe.and_then(Path::parent) else {
        return Vec::new();
    };
    let mut candidates = vec![dir.join("rigd")];
    if dir.file_name().is_some_and(|name| name == "deps") {
        if let Some(profile_dir) = dir.parent() {
            candidates.push(profile_dir.join("rigd"));
        }
    }
    candidates
}

/// Checks a rigd address given by `--server`, `RIG_SERVER_ADDR` or the SDK's builder.
async fn check_given(addr: &str, source: AddrSource) -> Result<RunningServer, AutostartError> {
    let not_answering = |e| AutostartError::NotAnswering {
        addr: addr.to_string(),
        from: source,
        source: e,
    };
    let client = RigdClient::new(addr).map_err(not_answering)?;
    let health = client.health().await.map_err(not_answering)?;
    compatible(client.addr(), &health)?;
    Ok(RunningServer {
        addr: client.addr().to_string(),
        spawned_pid: None,
        log: None,
    })
}

/// The rig dir: `$RIG_DIR`, else `$HOME/.rig`, else `<temp>/rig`.
pub fn default_rig_dir(env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    let var = |key: &str| env(key).filter(|v| !v.is_empty());
    if let Some(dir) = var("RIG_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(home) = var("HOME") {
        return PathBuf::from(home).join(".rig");
    }
    std::env::temp_dir().join("rig")
}

/// The address in `addr_file`, if the file holds one and rigd there answers `/health`;
/// an error if that rigd speaks another API version.
async fn healthy_addr(addr_file: &Path) -> Result<Option<String>, AutostartError> {
    let Ok(text) = std::fs::read_to_string(addr_file) else {
        return Ok(None);
    };
    let Ok(client) = RigdClient::new(text.trim()) else {
        return Ok(None);
    };
    // Something that answers there slowly (rigd on a loaded machine) is asked again with
    // more patience: that beats starting a second rigd beside it.
    let Ok(health) = client.health_patiently().await else {
        return Ok(None);
    };
    compatible(client.addr(), &health)?;
    Ok(Some(client.addr().to_string()))
}

/// The address of the rigd serving `rig_dir` under the other mode's addr file, when it
/// answers `/health` and speaks this client's API version: `rigd.addr` (started by hand or
/// in override mode) for a managed start (`versioned`), else `rigd-v<version>.addr`.
async fn rigd_serving_the_dir(rig_dir: &Path, versioned: bool) -> Option<String> {
    let other = file_name(!versioned, "addr");
    healthy_addr(&rig_dir.join(other)).await.ok().flatten()
}

/// The name of a rigd file (`addr`, `lock`) in the rig dir: versioned for a managed start
/// (`rigd-v<version>.addr`), plain otherwise (`rigd.addr`).
fn file_name(versioned: bool, extension: &str) -> String {
    if versioned {
        format!("rigd-v{VERSION}.{extension}")
    } else {
        format!("rigd.{extension}")
    }
}

/// Refuses a rigd this client cannot talk to.
fn compatible(addr: &str, health: &Health) -> Result<(), AutostartError> {
    match health.incompatibility() {
        Some(detail) => Err(AutostartError::Incompatible {
            addr: addr.to_string(),
            detail,
        }),
        None => Ok(()),
    }
}

/// Polls until the spawned rigd is healthy, exits, or [`SPAWN_TIMEOUT`] passes.
async fn wait_healthy(
    child: &mut Child,
    files: &ServerFiles,
    log_start: u64,
) -> Result<String, AutostartError> {
    let deadline = Instant::now() + SPAWN_TIMEOUT;
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Ok(Some(status)) = child.try_wait() {
            return Err(AutostartError::Exited {
                status,
                log: files.log.clone(),
                tail: log_tail(&files.log, log_start),
            });
        }
        if let Some(addr) = healthy_addr(&files.addr).await? {
            return Ok(addr);
        }
        if Instant::now() >= deadline {
            return Err(AutostartError::NotHealthy {
                log: files.log.clone(),
                after: SPAWN_TIMEOUT,
            });
        }
    }
}

/// The last lines written to `log` since `start`, each as `\n  | line`.
fn log_tail(log: &Path, start: u64) -> String {
    let mut text = String::new();
    let read = std::fs::File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(start))?;
        f.take(1 << 20).read_to_string(&mut text)
    });
    if read.is_err() {
        return String::new();
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines[skip..].iter().map(|l| format!("\n  | {l}")).collect()
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests;
