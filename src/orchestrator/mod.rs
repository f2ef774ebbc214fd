//! The orchestrator: turns a validated spec into a running environment and tears it down.
//!
//! ```text
//!  POST /environments ──► Orchestrator::create ──► Instance (id, spec, event log, env dir)
//!                              │ spawns
//!                              ▼
//!                         runner::run ── artifact phase (crate::artifacts: builds and
//!                              │          images, cached; a failure ends the environment)
//!                              │
//!                              ├── lifecycle::run_service  (one task per service, ~test and
//!                              │       proxies included; dependencies wait on `service.ready`
//!                              │       events in the log, there is no DAG scheduler)
//!                              │
//!                              └── first failure cancels every service; then
//!                                  `environment.failing`, `environment.down` (with summary)
//!  DELETE / TTL ──► Instance::teardown ── cancel, wait for the runner, release ports,
//!                                          remove the env dir unless preserved
//! ```
//!
//! Everything observable goes through the instance's [`EventLog`](crate::events::EventLog).

mod callback;
mod dirs;
mod environment_up;
mod instance;
mod lifecycle;
mod runner;
pub mod summary;
#[cfg(test)]
mod tests;
mod watchdog;

pub use callback::CallbackDispatcher;
#[cfg(test)]
pub(crate) use dirs::Stuck;
pub use dirs::{remove_everything, DirPool, Unremoved};
pub use instance::{Instance, TeardownOptions};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rig_types::Environment;

use crate::artifacts::Cache;
use crate::ports::PortAllocator;
use crate::reaper::Reaper;
use crate::services::Registry;

/// Tunables shared by every environment of one rigd.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a stopping process gets between SIGINT and SIGKILL.
    pub stop_grace: Duration,
    /// How long a service gets to exit after it was told to stop before rigd reports it; never
    /// less than the stop grace and a margin (see [`Settings::shutdown_wait`]).
    pub shutdown_timeout: Duration,
    /// Default wait for a client's `callback.response`.
    pub callback_timeout: Duration,
    /// Silence after which the watchdog publishes `progress.stall` (zero disables it).
    pub stall_threshold: Duration,
    /// Bytes of service output and traffic events each environment keeps in memory before
    /// older ones are spilled to its directory.
    pub event_memory: usize,
}

/// Time a stopping service gets beyond its stop grace: for the SIGKILL after the grace, an
/// engine's forced removal of a container, and the output drained after.
const STOP_MARGIN: Duration = Duration::from_secs(5);

impl Settings {
    /// How long a service told to stop is waited for before rigd reports it and moves on:
    /// `shutdown_timeout`, or longer when the stop grace needs it, so that the runner that
    /// sends SIGKILL (or removes the container) after the grace is never cut short.
    pub fn shutdown_wait(&self) -> Duration {
        self.shutdown_timeout
            .max(self.stop_grace.saturating_add(STOP_MARGIN))
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            stop_grace: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            callback_timeout: Duration::from_secs(30),
            stall_threshold: Duration::from_secs(30),
            event_memory: crate::events::DEFAULT_EVENT_MEMORY,
        }
    }
}

/// Why an environment could not be created (a 500 from `POST /environments`).
#[derive(Debug, thiserror::Error)]
pub enum OrchestrateError {
    /// A service names a type this rigd has not registered.
    #[error("service {service:?}: unknown service type: {service_type:?}")]
    UnknownType {
        /// The service.
        service: String,
        /// Its type.
        service_type: String,
    },
    /// A service asks for hooks its type cannot run.
    #[error("service {service:?}: {message}")]
    Hooks {
        /// The service.
        service: String,
        /// What is wrong.
        message: String,
    },
    /// A service's config does not say how to get what it needs (its artifacts).
    #[error("service {service:?}: {message}")]
    Artifacts {
        /// The service.
        service: String,
        /// What is wrong.
        message: String,
    },
    /// The environment directory could not be created.
    #[error("create environment directory {path}: {source}")]
    EnvDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Creates environments. One per rigd, shared by every request.
pub struct Orchestrator {
    ports: Arc<PortAllocator>,
    registry: Arc<Registry>,
    temp_base: PathBuf,
    /// Environment and service directories, recycled.
    dirs: Arc<DirPool>,
    cache: Cache,
    settings: Settings,
    reaper: Option<Arc<Reaper>>,
}

impl Orchestrator {
    /// An orchestrator that creates environment directories under `temp_base`
    /// (`{rig-dir}/tmp` in rigd) and caches artifacts next to it (`cache`, a sibling of
    /// `temp_base`; see [`Orchestrator::with_cache_dir`]).
    pub fn new(
        ports: Arc<PortAllocator>,
        registry: Arc<Registry>,
        temp_base: PathBuf,
        settings: Settings,
    ) -> Orchestrator {
        let cache = Cache::new(temp_base.with_file_name("cache"));
        Orchestrator {
            ports,
            registry,
            dirs: Arc::new(DirPool::new(&temp_base, None)),
            temp_base,
            cache,
            settings,
            reaper: None,
        }
    }

    /// Caches artifacts under `dir` (`{rig-dir}/cache` in rigd).
    pub fn with_cache_dir(mut self, dir: PathBuf) -> Orchestrator {
        self.cache = Cache::new(dir);
        self
    }

    /// Registers every process group and environment directory with `reaper`, so they are
    /// cleaned up even if rigd is killed.
    pub fn with_reaper(mut self, reaper: Option<Arc<Reaper>>) -> Orchestrator {
        self.dirs = Arc::new(DirPool::new(&self.temp_base, reaper.clone()));
        self.reaper = reaper;
        self
    }

    /// Removes the directories kept for reuse (see [`DirPool`]); call it at shutdown, once
    /// the environments are torn down. Environments torn down later remove their directories
    /// for good.
    pub fn close_dirs(&self) {
        self.dirs.close();
    }

    /// The port allocator.
    pub fn ports(&self) -> &Arc<PortAllocator> {
        &self.ports
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Creates an environment from a decoded and validated spec and starts it in the
    /// background: inserts the `~test` node and (in observe mode) the proxies, creates the
    /// environment directory, checks every type is registered, then spawns the runner.
    /// Must be called inside a tokio runtime.
    pub fn create(&self, env: Environment) -> Result<Arc<Instance>, OrchestrateError> {
        runner::start(self, env)
    }
}
