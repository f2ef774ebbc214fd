//! The server state shared by every request: the orchestrator, the registry of live
//! environments with their TTLs, the idle timer and the shutdown token.
//!
//! Invariants:
//! - an environment is in the registry from its `201` until a DELETE, its TTL expiry or rigd's
//!   shutdown removes it; removal always happens **before** teardown starts, under the
//!   registry lock, so exactly one caller tears an environment down (concurrent DELETEs get
//!   one 200 and one 404) and every `{id}` route answers 404 from that point on;
//! - teardown runs in its own task, so a client that disconnects during a DELETE cannot
//!   interrupt it half way;
//! - once [`AppState::shutdown`] has closed the registry, nothing can be registered again;
//! - log files are written after the teardown and before the idle timer hears that the
//!   environment is gone (DELETE `?log=true`, TTL expiry and shutdown write them when a logs
//!   directory is configured), so an idle rigd never exits half way through a log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rig_types::{Environment, GoDuration};
use tokio_util::sync::CancellationToken;

use super::idle::IdleTimer;
use super::owner::{Owners, REASON_ORPHANED};
use super::teardown_logs::{write_instance_logs, LogSettings, WrittenLogs};
use super::ttl::Ttl;
use crate::logfiles::DEFAULT_RETENTION;
use crate::orchestrator::{Instance, OrchestrateError, Orchestrator, TeardownOptions};

/// The teardown reason recorded when an environment's TTL expires.
pub const REASON_TTL_EXPIRED: &str = "ttl_expired";

/// The teardown reason recorded when rigd shuts down with the environment still registered.
pub const REASON_RIGD_SHUTDOWN: &str = "rigd_shutdown";

/// How long an environment waits for its owner to reconnect, unless `--orphan-grace` says
/// otherwise: longer than the SDK takes to give up reconnecting a dropped event stream.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// Server options (from rigd's flags).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// TTL of environments whose spec has no `ttl`.
    pub default_ttl: Duration,
    /// How long an environment whose owner stream closed waits for it to reconnect before
    /// it is torn down (see [`owner`](super::owner)); zero disables orphan teardown.
    pub orphan_grace: Duration,
    /// Idle shutdown timeout; zero disables it.
    pub idle_timeout: Duration,
    /// Keep every environment directory at teardown (rigd's own `RIG_PRESERVE=true`).
    pub preserve_all: bool,
    /// Where log files are written at teardown (`{rig-dir}/logs`); `None` writes none, and
    /// DELETE `?log=true` then answers without `log_file`.
    pub log_dir: Option<PathBuf>,
    /// How long log files are kept (rigd's `--log-retention`); zero keeps them all.
    pub log_retention: Duration,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            default_ttl: Duration::from_secs(10 * 60),
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            idle_timeout: Duration::from_secs(5 * 60),
            preserve_all: false,
            log_dir: None,
            log_retention: DEFAULT_RETENTION,
        }
    }
}

/// Everything the HTTP handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    orchestrator: Orchestrator,
    options: ServerOptions,
    registry: Mutex<Registry>,
    idle: IdleTimer,
    /// Root of every SSE stream: cancelled when rigd shuts down.
    streams: CancellationToken,
    /// Notified whenever an environment's teardown has finished (it leaves `ending`).
    ended: tokio::sync::Notify,
}

#[derive(Default)]
struct Registry {
    environments: HashMap<String, Arc<Entry>>,
    /// Environments being torn down: no longer reachable by id, still listed.
    ending: HashMap<String, Arc<Entry>>,
    closed: bool,
}

/// A registered environment.
pub(crate) struct Entry {
    instance: Arc<Instance>,
    ttl: Ttl,
    owners: Arc<Owners>,
}

impl Entry {
    /// The environment.
    pub(crate) fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// Its TTL.
    pub(crate) fn ttl(&self) -> &Ttl {
        &self.ttl
    }

    /// The clients that end it when they are done.
    pub(crate) fn owners(&self) -> &Arc<Owners> {
        &self.owners
    }
}

/// Why an environment could not be registered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    /// The orchestrator refused the spec.
    #[error("orchestrate: {0}")]
    Orchestrate(#[from] OrchestrateError),
    /// rigd is shutting down.
    #[error("rigd is shutting down")]
    ShuttingDown,
}

/// An environment torn down by [`AppState::destroy`].
pub(crate) struct Destroyed {
    /// The environment.
    pub(crate) instance: Arc<Instance>,
    /// Its log files, when asked for and written.
    pub(crate) logs: Option<WrittenLogs>,
}

/// What [`AppState::shutdown`] could not finish in time.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Ids of the environments torn down.
    pub torn_down: Vec<String>,
    /// Ids of the environments whose teardown did not finish within the grace period.
    pub timed_out: Vec<String>,
}

impl AppState {
    /// The state of a server creating environments with `orchestrator`. The idle countdown
    /// starts now.
    pub fn new(orchestrator: Orchestrator, options: ServerOptions) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                orchestrator,
                idle: IdleTimer::new(options.idle_timeout),
                options,
                registry: Mutex::new(Registry::default()),
                streams: CancellationToken::new(),
                ended: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The orchestrator.
    pub fn orchestrator(&self) -> &Orchestrator {
        &self.inner.orchestrator
    }

    /// The idle timer (the daemon waits on [`IdleTimer::expired`]).
    pub fn idle(&self) -> &IdleTimer {
        &self.inner.idle
    }

    /// The number of registered environments.
    pub fn environment_count(&self) -> usize {
        self.inner.registry.lock().environments.len()
    }

    /// A token cancelled when rigd shuts down; every SSE stream ends with it.
    pub(crate) fn stream_token(&self) -> CancellationToken {
        self.inner.streams.child_token()
    }

    /// The registered environment `id`.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.inner.registry.lock().environments.get(id).cloned()
    }

    /// Every registered environment, in no particular order.
    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
        self.inner
            .registry
            .lock()
            .environments
            .values()
            .cloned()
            .collect()
    }

    /// Every environment being torn down, in no particular order.
    pub(crate) fn ending_entries(&self) -> Vec<Arc<Entry>> {
        self.inner
            .registry
            .lock()
            .ending
            .values()
            .cloned()
            .collect()
    }

    /// Takes `id` out of the registry (so nobody else can end it) into the environments
    /// being torn down; `None` when it is not registered, or `expected` is given and `id` is
    /// registered as another entry.
    fn begin_ending(&self, id: &str, expected: Option<&Arc<Entry>>) -> Option<Arc<Entry>> {
        let mut registry = self.inner.registry.lock();
        let entry = registry.environments.get(id)?;
        if expected.is_some_and(|e| !Arc::ptr_eq(e, entry)) {
            return None;
        }
        let entry = registry.environments.remove(id)?;
        registry.ending.insert(id.to_string(), Arc::clone(&entry));
        Some(entry)
    }

    /// Creates and registers an environment from a validated spec, starts its TTL and tells
    /// the idle timer. Must run inside the runtime.
    pub(crate) fn create(&self, env: Environment) -> Result<Arc<Instance>, CreateError> {
        if self.inner.registry.lock().closed {
            return Err(CreateError::ShuttingDown);
        }
        let spec_ttl = env.ttl.clone();
        let period = self.ttl_period(&spec_ttl);
        let instance = self.inner.orchestrator.create(env)?;
        let entry = Arc::new(Entry {
            instance: Arc::clone(&instance),
            ttl: Ttl::start(period, spec_ttl),
            owners: Arc::default(),
        });
        {
            let mut registry = self.inner.registry.lock();
            if registry.closed {
                drop(registry);
                // Shutdown began while the environment was being created: it is not
                // registered, so nobody else will tear it down.
                let state = self.clone();
                tokio::spawn(async move {
                    state.stop_instance(&entry, shutdown_teardown()).await;
                    entry.instance.log().close();
                });
                return Err(CreateError::ShuttingDown);
            }
            registry
                .environments
                .insert(instance.id().to_string(), Arc::clone(&entry));
            self.inner.idle.environment_created();
        }
        self.watch_orphan(Arc::clone(&entry));
        self.watch_ttl(entry);
        Ok(instance)
    }

    /// Removes `id` from the registry and tears it down, then writes its log files when
    /// `write_log` is set. Returns `None` when the id is not registered (unknown, or another
    /// caller removed it first). The teardown runs in its own task and completes even if the
    /// caller is dropped.
    pub(crate) async fn destroy(
        &self,
        id: &str,
        preserve: bool,
        reason: String,
        write_log: bool,
    ) -> Option<Destroyed> {
        let entry = self.begin_ending(id, None)?;
        let instance = Arc::clone(&entry.instance);
        let opts = TeardownOptions {
            preserve,
            reason,
            message: String::new(),
        };
        let state = self.clone();
        let task = tokio::spawn(async move { state.teardown(entry, opts, write_log).await });
        let logs = match task.await {
            Ok(logs) => logs,
            Err(e) => {
                eprintln!("rigd: teardown of environment {id} failed: {e}");
                None
            }
        };
        Some(Destroyed { instance, logs })
    }

    /// Pushes the TTL deadline of `id` out by one TTL from now; `false` when unknown.
    pub(crate) fn keepalive(&self, id: &str) -> bool {
        match self.get(id) {
            Some(entry) => {
                entry.ttl.extend();
                true
            }
            None => false,
        }
    }

    /// Shuts the server state down: refuses new environments and tears every registered one
    /// down concurrently, waiting at most `grace`. The event stream of each environment torn
    /// down ends once it has delivered `environment.down`; streams of environments that did
    /// not finish in time stay open until [`AppState::end_streams`].
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let entries: Vec<Arc<Entry>> = {
            let mut registry = self.inner.registry.lock();
            registry.closed = true;
            let entries: Vec<Arc<Entry>> = registry.environments.drain().map(|(_, e)| e).collect();
            for entry in &entries {
                registry
                    .ending
                    .insert(entry.instance.id().to_string(), Arc::clone(entry));
            }
            entries
        };
        let mut report = ShutdownReport::default();
        let mut tasks = Vec::with_capacity(entries.len());
        for entry in entries {
            let id = entry.instance.id().to_string();
            let state = self.clone();
            let task = tokio::spawn(async move {
                state.teardown(entry, shutdown_teardown(), true).await;
            });
            tasks.push((id, task));
        }
        let deadline = tokio::time::Instant::now() + grace;
        for (id, task) in tasks {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(_) => report.torn_down.push(id),
                Err(_) => report.timed_out.push(id),
            }
        }
        // Teardowns that began before the shutdown (DELETE, TTL, an owner gone) are waited
        // for too: they are still stopping services and writing their logs, and the pools
        // they use close next.
        for id in self.wait_for_ending(deadline).await {
            if !report.timed_out.contains(&id) {
                report.timed_out.push(id);
            }
        }
        report
    }

    /// Waits until no environment is being torn down, or `deadline`; returns the ids of
    /// those still being torn down then.
    async fn wait_for_ending(&self, deadline: tokio::time::Instant) -> Vec<String> {
        loop {
            let ended = self.inner.ended.notified();
            tokio::pin!(ended);
            // Registered before looking, so a teardown finishing in between still wakes us.
            ended.as_mut().enable();
            let left: Vec<String> = self.inner.registry.lock().ending.keys().cloned().collect();
            if left.is_empty() || tokio::time::timeout_at(deadline, ended).await.is_err() {
                return left;
            }
        }
    }

    /// Ends every SSE stream now, delivered or not (idempotent): the last step of a shutdown
    /// whose teardowns did not all finish.
    pub fn end_streams(&self) {
        self.inner.streams.cancel();
    }

    /// The TTL of a new environment: the spec's, else the default.
    fn ttl_period(&self, spec_ttl: &str) -> Duration {
        if spec_ttl.is_empty() {
            return self.inner.options.default_ttl;
        }
        // Validation has already rejected unparsable and non-positive values.
        GoDuration::parse(spec_ttl)
            .ok()
            .and_then(GoDuration::to_std)
            .filter(|d| !d.is_zero())
            .unwrap_or(self.inner.options.default_ttl)
    }

    /// Waits for the TTL of `entry` in the background and tears it down on expiry.
    fn watch_ttl(&self, entry: Arc<Entry>) {
        let state = self.clone();
        tokio::spawn(async move {
            if entry.ttl.expired().await {
                let message = format!(
                    "its TTL ({}) passed without word from a client",
                    entry.ttl.period_text()
                );
                state.expire(entry, REASON_TTL_EXPIRED, message).await;
            }
        });
    }

    /// Waits in the background for `entry` to lose its owner for good, and tears it down
    /// then; nothing when orphan teardown is disabled.
    fn watch_orphan(&self, entry: Arc<Entry>) {
        let grace = self.inner.options.orphan_grace;
        if grace.is_zero() {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            if entry.owners.orphaned(grace, entry.ttl.stopped()).await {
                let message = format!(
                    "the client that created it (a test process or `rig up`) disconnected \
                     {} ago without ending it: it was killed or crashed",
                    GoDuration::from_std(grace)
                );
                state.expire(entry, REASON_ORPHANED, message).await;
            }
        });
    }

    /// Tears down `entry` on rigd's own initiative, if it is still registered. As
    /// upstream does for an expired TTL, the environment always leaves its log files.
    async fn expire(&self, entry: Arc<Entry>, reason: &str, message: String) {
        if let Some(entry) = self.begin_ending(entry.instance.id(), Some(&entry)) {
            let opts = TeardownOptions {
                preserve: false,
                reason: reason.to_string(),
                message,
            };
            self.teardown(entry, opts, true).await;
        }
    }

    /// Tears down an environment already removed from the registry, then writes its log
    /// files when `write_log` is set and a logs directory is configured, and ends its event
    /// streams.
    async fn teardown(
        &self,
        entry: Arc<Entry>,
        opts: TeardownOptions,
        write_log: bool,
    ) -> Option<WrittenLogs> {
        self.stop_instance(&entry, opts).await;
        let logs = match (&self.inner.options.log_dir, write_log) {
            (Some(dir), true) => {
                let settings = LogSettings {
                    dir: dir.clone(),
                    retention: self.inner.options.log_retention,
                };
                Some(write_instance_logs(&entry.instance, &settings).await)
            }
            _ => None,
        };
        // No longer listed, and then followers of the event stream, which have everything,
        // see their streams end: once the log files they may look for are written.
        self.inner
            .registry
            .lock()
            .ending
            .remove(entry.instance.id());
        entry.instance.log().close();
        self.inner.idle.environment_destroyed();
        self.inner.ended.notify_waiters();
        logs
    }

    /// Stops the TTL and tears the instance down; its event streams go on until its log is
    /// closed.
    async fn stop_instance(&self, entry: &Entry, mut opts: TeardownOptions) {
        entry.ttl.stop();
        opts.preserve |= self.inner.options.preserve_all;
        entry.instance.teardown(opts).await;
    }
}

/// How rigd shutting down ends an environment.
fn shutdown_teardown() -> TeardownOptions {
    TeardownOptions {
        preserve: false,
        reason: REASON_RIGD_SHUTDOWN.to_string(),
        message: "rigd shut down".to_string(),
    }
}
