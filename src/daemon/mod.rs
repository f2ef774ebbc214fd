//! The `rigd` daemon: startup, serving, and shutdown around the [`server`](crate::server).
//!
//! ```text
//! startup   create {rig-dir} (owner-only) ── chdir into it ── listen on --addr
//!           ── write the addr file atomically ── "rigd listening on <addr>"
//! serve     until the first of: SIGINT/SIGTERM (or the injected trigger), idle timeout,
//!           a serve error
//! shutdown  stop accepting ── tear down every environment concurrently (bounded; a second
//!           signal stops waiting) ── end SSE streams ── drain connections (bounded)
//!           ── remove the addr file ── exit 0
//! ```
//!
//! Upstream left running environments to exit hooks; here every environment is torn down
//! explicitly, so its processes are stopped gracefully and its directory removed.
//! [`run`] takes its shutdown trigger as a parameter ([`ShutdownSignal`]), so tests start and
//! stop a whole rigd in-process without sending signals.

mod config;
mod files;
mod signal;

#[cfg(test)]
mod tests;

pub use config::{default_rig_dir, Config, EnvSource, FlagError, ProcessEnv, USAGE};
pub use signal::{ShutdownReason, ShutdownSignal};

use std::future::IntoFuture;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::orchestrator::{Orchestrator, Settings};
use crate::ports::PortAllocator;
use crate::server::{app, AppState, ServerOptions};
use crate::services::Registry;

/// How long shutdown waits for environments to tear down.
pub const TEARDOWN_GRACE: Duration = Duration::from_secs(30);

/// A second shutdown request within this time of the first counts as the same request.
pub const SECOND_SIGNAL_DEBOUNCE: Duration = Duration::from_millis(500);

/// How long shutdown waits for open HTTP connections once SSE streams have ended.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Why rigd could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The rig directory (or the addr file's directory) could not be created.
    #[error("create directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The working directory could not be changed to the rig directory.
    #[error("chdir {}: {source}", path.display())]
    Chdir {
        /// The rig directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The listen address could not be bound.
    #[error("listen: {addr}: {source}")]
    Listen {
        /// The address from `--addr`.
        addr: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The addr file could not be written.
    #[error("write addr file {}: {source}", path.display())]
    AddrFile {
        /// The addr file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The SIGINT/SIGTERM handlers could not be installed.
    #[error("install signal handlers: {0}")]
    Signals(io::Error),
    /// The HTTP server failed.
    #[error("serve error: {0}")]
    Serve(io::Error),
}

/// The whole `rigd` command line: `rigd __reap <record>` runs the reaper, anything else is
/// parsed as rigd's flags and served with [`main`]. Returns the process's exit code (2 on a
/// usage error, as Go's flag package). The `rigd` binary is this function; the startup
/// benchmark builds a copy so it can time a real rigd process.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == crate::reaper::REAPER_ARG) {
        let record = args.nth(1).unwrap_or_default();
        return ExitCode::from(crate::reaper::run(Path::new(&record)) as u8);
    }
    match Config::from_args(args) {
        Ok(config) => main(config),
        Err(FlagError::HelpRequested) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rigd: {e}");
            eprintln!("Run `rigd --help` for usage.");
            ExitCode::from(2)
        }
    }
}

/// Runs rigd with OS signal handling on a new runtime and maps the outcome to an exit code:
/// 0 after a clean shutdown, 1 when rigd could not start or serve (the error is printed as
/// `rigd: <error>`).
pub fn main(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rigd: start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The reaper keeps its records in the rig dir: a rig dir that cannot be made is rigd's
    // error, not a failed reaper's.
    if let Err(source) = files::create_private_dir(&config.rig_dir) {
        let error = DaemonError::CreateDir {
            path: config.rig_dir.clone(),
            source,
        };
        eprintln!("rigd: {error}");
        return ExitCode::FAILURE;
    }
    crate::reaper::start(&config.rig_dir);
    let result = runtime.block_on(async {
        let signals = ShutdownSignal::os().map_err(DaemonError::Signals)?;
        run(config, signals).await
    });
    // Teardown tasks that outlived the grace period must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(reaper) = crate::reaper::installed() {
        reaper.finish();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rigd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts rigd as configured and serves until `shutdown` fires, the idle timer expires, or
/// serving fails; then shuts down as described in the module docs.
pub async fn run(config: Config, shutdown: ShutdownSignal) -> Result<(), DaemonError> {
    files::create_private_dir(&config.rig_dir).map_err(|source| DaemonError::CreateDir {
        path: config.rig_dir.clone(),
        source,
    })?;
    if config.change_dir {
        std::env::set_current_dir(&config.rig_dir).map_err(|source| DaemonError::Chdir {
            path: config.rig_dir.clone(),
            source,
        })?;
    }
    if let Some(parent) = config
        .addr_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        files::create_private_dir(parent).map_err(|source| DaemonError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let listener = TcpListener::bind(&config.addr)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: config.addr.clone(),
            source,
        })?;
    serve(&config, listener, shutdown).await
}

/// Serves on an already-bound `listener` (the second half of [`run`]; `config.addr` is not
/// used): writes the addr file, serves until shutdown, then shuts down. The rig directory and
/// the addr file's directory must exist.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    mut shutdown: ShutdownSignal,
) -> Result<(), DaemonError> {
    let addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: config.addr.clone(),
            source,
        })?
        .to_string();

    crate::services::postgres::template::set_cache_root(config.rig_dir.join("cache"));
    let orchestrator = Orchestrator::new(
        Arc::new(PortAllocator::new()),
        Arc::new(Registry::builtin()),
        config.rig_dir.join("tmp"),
        Settings {
            stop_grace: config.stop_grace,
            stall_threshold: config.stall_timeout,
            event_memory: config.event_memory,
            ..Settings::default()
        },
    )
    .with_cache_dir(config.rig_dir.join("cache"))
    .with_reaper(crate::reaper::installed());
    let state = AppState::new(
        orchestrator,
        ServerOptions {
            default_ttl: config.default_ttl,
            orphan_grace: config.orphan_grace,
            idle_timeout: config.idle,
            preserve_all: config.preserve_all,
            log_dir: Some(config.rig_dir.join("logs")),
            log_retention: config.log_retention,
        },
    );

    files::write_addr_file(&config.addr_file, &addr).map_err(|source| DaemonError::AddrFile {
        path: config.addr_file.clone(),
        source,
    })?;
    eprintln!("rigd listening on {addr}");

    let stop_accepting = CancellationToken::new();
    // Responses are small writes that must go out at once, SSE frames above all (the client
    // waits for `environment.up`): no Nagle delay behind a previous frame's ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let mut server = tokio::spawn(
        axum::serve(listener, app(state.clone()))
            .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
            .into_future(),
    );

    let outcome = tokio::select! {
        reason = shutdown.recv() => Ok(reason),
        () = state.idle().expired() => Ok(ShutdownReason::IdleTimeout),
        result = &mut server => Err(match result {
            Ok(Ok(())) => io::Error::other("server stopped unexpectedly"),
            Ok(Err(e)) => e,
            Err(e) => io::Error::other(e),
        }),
    };
    if let Ok(reason) = &outcome {
        eprintln!("rigd: {reason}, shutting down");
    }

    stop_accepting.cancel();
    // Streams of environments torn down end by themselves after `environment.down`; only
    // when the teardown wait is cut short are the remaining streams ended by force.
    let first_signal = tokio::time::Instant::now();
    let teardown = state.shutdown(TEARDOWN_GRACE);
    tokio::pin!(teardown);
    let all_down = loop {
        tokio::select! {
            report = &mut teardown => {
                for id in &report.timed_out {
                    eprintln!(
                        "rigd: environment {id} did not finish tearing down within {}s; \
                         exiting anyway",
                        TEARDOWN_GRACE.as_secs()
                    );
                }
                break report.timed_out.is_empty();
            }
            again = shutdown.recv() => {
                // One Ctrl-C often arrives twice (to the process group and forwarded by a
                // wrapper); only a deliberate second request cuts the wait short.
                if first_signal.elapsed() < SECOND_SIGNAL_DEBOUNCE {
                    continue;
                }
                eprintln!("rigd: {again} again, not waiting for environments to tear down");
                break false;
            }
        }
    };
    if !all_down {
        state.end_streams();
    }
    if !server.is_finished()
        && tokio::time::timeout(DRAIN_GRACE, &mut server)
            .await
            .is_err()
    {
        eprintln!(
            "rigd: open connections did not close within {}s; closing them",
            DRAIN_GRACE.as_secs()
        );
        state.end_streams();
        server.abort();
    }
    remove_own_addr_file(&config.addr_file, &addr);
    // Environments are down: the directories kept for reuse go too.
    state.orchestrator().close_dirs();
    // Environments are down: stop the shared backends (databases) they leased.
    crate::services::Pools::shared().close().await;
    outcome.map(|_| ()).map_err(DaemonError::Serve)
}

/// Removes the addr file if it still holds our address (another rigd may have replaced it).
fn remove_own_addr_file(path: &Path, addr: &str) {
    match std::fs::read_to_string(path) {
        Ok(content) if content == addr => {
            if let Err(e) = files::remove_addr_file(path) {
                eprintln!("rigd: remove {}: {e}", path.display());
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("rigd: read {}: {e}", path.display()),
    }
}
