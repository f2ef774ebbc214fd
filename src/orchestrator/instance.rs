//! One running environment: its spec, event log, directory and teardown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rig_types::{Environment, Event, EventType};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::DirPool;
use crate::events::EventLog;
use crate::ports::PortAllocator;
use crate::reaper::Reaper;

/// Options of a teardown (`DELETE /environments/{id}` query parameters, or TTL expiry).
#[derive(Clone, Debug, Default)]
pub struct TeardownOptions {
    /// Keep the environment directory.
    pub preserve: bool,
    /// Why the environment ends (`test_failed` marks the log outcome as failed).
    pub reason: String,
    /// Why it ends, for people: the `message` of `environment.destroying` when rigd itself
    /// ends the environment (TTL expired, client gone); empty when a client asked.
    pub message: String,
}

/// A running (or finished but not yet deleted) environment.
///
/// An instance stays registered after its runner finishes (crash, failure) until it is deleted
/// or its TTL expires; only then are its ports released and its directory removed.
pub struct Instance {
    id: String,
    spec: Arc<Environment>,
    log: Arc<EventLog>,
    env_dir: PathBuf,
    dirs: Arc<DirPool>,
    cancel: CancellationToken,
    services_cancel: CancellationToken,
    /// The first service failure, recorded when it happens (see [`Instance::record_failure`]).
    first_failure: Mutex<Option<(String, String)>>,
    callback_counter: AtomicU64,
    done: watch::Receiver<bool>,
    preserve: AtomicBool,
    reason: Mutex<String>,
    ports: Arc<PortAllocator>,
    reaper: Option<Arc<Reaper>>,
    /// The hook each service is running (`hooks.init[0] (sql)`), for stall reports.
    running_hooks: Mutex<BTreeMap<String, String>>,
}

impl Instance {
    pub(super) fn new(
        id: String,
        spec: Arc<Environment>,
        env_dir: PathBuf,
        dirs: Arc<DirPool>,
        ports: Arc<PortAllocator>,
        reaper: Option<Arc<Reaper>>,
        done: watch::Receiver<bool>,
    ) -> Instance {
        let cancel = CancellationToken::new();
        Instance {
            id,
            spec,
            log: Arc::new(EventLog::new()),
            env_dir,
            dirs,
            services_cancel: cancel.child_token(),
            cancel,
            first_failure: Mutex::new(None),
            callback_counter: AtomicU64::new(0),
            done,
            preserve: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            ports,
            reaper,
            running_hooks: Mutex::new(BTreeMap::new()),
        }
    }

    /// Keeps about `budget` bytes of output and traffic events in memory and spills older ones
    /// to the environment directory (see [`EventLog::with_spill`]); a new instance keeps them
    /// all. Call it before anything is published.
    pub(super) fn with_event_memory(mut self, budget: usize) -> Instance {
        debug_assert!(self.log.is_empty(), "the log is replaced before it is used");
        self.log = Arc::new(EventLog::with_spill(self.env_dir.clone(), budget));
        self
    }

    /// The instance id (`<unix millis hex>-<8 random hex>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The environment name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec after the `~test` and observe transforms (filter `injected` services for
    /// user-facing views).
    pub fn spec(&self) -> &Arc<Environment> {
        &self.spec
    }

    /// The event log.
    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    /// The environment directory (`{rig-dir}/tmp/<id>`).
    pub fn env_dir(&self) -> &Path {
        &self.env_dir
    }

    /// Where the environment's and services' directories come from and go back to.
    pub(super) fn dirs(&self) -> &DirPool {
        &self.dirs
    }

    /// The reaper, if rigd runs with one.
    pub(super) fn reaper(&self) -> Option<&Arc<Reaper>> {
        self.reaper.as_ref()
    }

    /// The teardown reason, empty unless one was given.
    pub fn reason(&self) -> String {
        self.reason.lock().clone()
    }

    /// Publishes an event stamped with this environment's name; returns its seq.
    pub fn emit(&self, mut event: Event) -> u64 {
        if event.environment.is_empty() {
            event.environment = self.spec.name.clone();
        }
        self.log.publish(event)
    }

    /// The teardown token: cancelled by DELETE, TTL expiry or rigd shutdown.
    pub(super) fn teardown_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The token that stops every service: a child of the teardown token, also cancelled by
    /// the first failure.
    pub(super) fn services_token(&self) -> &CancellationToken {
        &self.services_cancel
    }

    /// Notes that `service` runs `hook` until the returned guard is dropped (the hook ended or
    /// was cancelled).
    pub(super) fn running_hook(&self, service: &str, hook: String) -> RunningHook<'_> {
        self.running_hooks.lock().insert(service.to_string(), hook);
        RunningHook {
            instance: self,
            service: service.to_string(),
        }
    }

    /// The hook `service` is running, if any.
    pub(super) fn hook_of(&self, service: &str) -> Option<String> {
        self.running_hooks.lock().get(service).cloned()
    }

    /// A number unique within this instance, to keep callback request ids unique.
    pub(super) fn next_callback_number(&self) -> u64 {
        self.callback_counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The first failure recorded (by a service or the client), if any.
    pub(super) fn first_failure(&self) -> Option<(String, String)> {
        self.first_failure.lock().clone()
    }

    /// Records that `service` failed (unless another failure came first) and stops every
    /// service at once, without waiting for the failed one to wind down.
    pub(super) fn record_failure(&self, service: &str, error: &str) {
        {
            let mut first = self.first_failure.lock();
            if first.is_none() {
                *first = Some((service.to_string(), error.to_string()));
            }
        }
        self.services_cancel.cancel();
    }

    /// Records a failure reported by the client (`service.error`): publishes `service.failed`
    /// and fails the environment like any service failure (upstream only records the event).
    pub fn fail_service(&self, service: &str, error: &str) {
        self.emit(Event::for_service(EventType::ServiceFailed, service).with_error(error));
        self.record_failure(service, error);
    }

    /// True once the runner has finished and `environment.down` is in the log.
    pub fn is_down(&self) -> bool {
        *self.done.borrow()
    }

    /// Waits until the runner has finished (`environment.down` published).
    pub async fn wait_down(&self) {
        let mut done = self.done.clone();
        // An error means the runner's sender is gone, which only happens after it finished.
        let _ = done.wait_for(|d| *d).await;
    }

    /// Tears the environment down and waits for every service to stop.
    ///
    /// Publishes `environment.destroying` unless the environment is already down (first
    /// letting the proxies' observations of exchanges that finished before the request reach
    /// the log, for two seconds at most), cancels every service, waits for `environment.down`, releases the ports and removes the
    /// environment directory unless `preserve` is set. The caller must make sure only one
    /// teardown runs per instance (the server removes the id from its map first).
    pub async fn teardown(&self, opts: TeardownOptions) {
        let already_down = self
            .log
            .lifecycle_events()
            .iter()
            .any(|e| e.event_type == EventType::EnvironmentDown);
        if !already_down {
            // An exchange that ended before the teardown was asked for belongs before
            // `environment.destroying`: `rig explain` and the summary look for the failure
            // there. Its observation may still be on its way (a gRPC call waits for the
            // target's descriptors); a stuck proxy delays the teardown only so long.
            let settled = self.log.settle_traffic();
            let _ = tokio::time::timeout(SETTLE_BEFORE_TEARDOWN, settled).await;
            let mut destroying = Event::new(EventType::EnvironmentDestroying);
            destroying.message = opts.message;
            self.emit(destroying);
        }
        if opts.preserve {
            self.preserve.store(true, Ordering::SeqCst);
        }
        if !opts.reason.is_empty() {
            *self.reason.lock() = opts.reason;
        }
        self.cancel.cancel();
        self.wait_down().await;
        self.ports.release(&self.id);
        // A directory that could not be removed stays in the reaper's record, so that the
        // reaper (at rigd's exit) and the next rigd try again.
        let done_with =
            self.preserve.load(Ordering::SeqCst) || remove_dir(&self.dirs, &self.env_dir).await;
        if let Some(reaper) = self.reaper.as_ref().filter(|_| done_with) {
            reaper.untrack_dir(&self.env_dir);
        }
    }
}

/// How long a teardown waits for the proxies' observations in flight before it publishes
/// `environment.destroying` (see [`Instance::teardown`]): each proxy's takes about a
/// millisecond; a gRPC call waits for its target's descriptors (fetched with a timeout of
/// its own).
const SETTLE_BEFORE_TEARDOWN: Duration = Duration::from_secs(2);

/// Removes the environment directory, on a blocking thread; its directories are kept for
/// reuse (see [`DirPool`]). True when it is gone; what is left is reported on stderr.
async fn remove_dir(dirs: &Arc<DirPool>, dir: &Path) -> bool {
    let (dirs, path) = (dirs.clone(), dir.to_path_buf());
    let removed = tokio::task::spawn_blocking(move || dirs.remove_tree(&path)).await;
    match removed {
        Ok(Ok(())) => true,
        Ok(Err(left)) => {
            eprintln!("rigd: {left}");
            false
        }
        Err(e) => {
            eprintln!("rigd: remove {}: {e}", dir.display());
            false
        }
    }
}

/// A hook in progress (see [`Instance::running_hook`]).
pub(super) struct RunningHook<'a> {
    instance: &'a Instance,
    service: String,
}

impl Drop for RunningHook<'_> {
    fn drop(&mut self) {
        self.instance.running_hooks.lock().remove(&self.service);
    }
}
