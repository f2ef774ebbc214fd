//! Pools of shared infrastructure backends (PostgreSQL, Redis, moto for S3 and SQS).
//!
//! Starting a database server for every environment is slow, so, as upstream, rigd runs one
//! backend per type and key (an image or a set of binaries) and gives every environment its
//! own isolated slice of it, a **lease**: a database, a Redis DB number, a bucket, a queue.
//!
//! - The first [`Pool::acquire`] for a key starts the backend in a task of its own, so one
//!   environment's cancellation cannot kill a backend others wait for; concurrent acquirers
//!   wait for the same start, and all of them get its error if it fails (the next acquire
//!   tries again). A backend that died is noticed at the next acquire and started anew.
//! - Each lease holds a reference; [`Lease::release`] drops the lease's slice (drop the
//!   database, `FLUSHDB`, ...) and the reference. A lease dropped without `release` (its
//!   environment was cancelled mid-way) still gives its reference back.
//! - A backend without references is stopped after the pool's idle time; [`Pool::close`]
//!   (rigd shutdown) stops every backend at once. Backend processes are also in the reaper's
//!   record, so they die with rigd even after `kill -9` (see [`native`]); container backends
//!   ([`container`]) are labelled with their rigd and recorded the same way. [`server`] is
//!   what the backends see of either.

pub mod container;
pub mod native;
mod output_tail;
pub mod server;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

/// A running backend that hands out isolated slices of itself.
pub trait Backend: Send + Sync + 'static {
    /// What a lease holds: a database name, a DB number, a bucket, a queue URL.
    type Lease: Clone + std::fmt::Debug + Send + Sync + 'static;

    /// Creates a new isolated slice.
    fn new_lease(&self) -> impl Future<Output = Result<Self::Lease, String>> + Send;

    /// Deletes a slice and its data (best effort: a failure is only reported).
    fn drop_lease(&self, lease: Self::Lease) -> impl Future<Output = ()> + Send;

    /// Stops the backend and removes its files.
    fn stop(&self) -> impl Future<Output = ()> + Send;

    /// False once the backend has died on its own; the pool then starts a new one.
    fn alive(&self) -> bool {
        true
    }

    /// The end of the backend's output, quoted when it has died (empty when it keeps none).
    fn last_output(&self) -> impl Future<Output = String> + Send {
        std::future::ready(String::new())
    }
}

/// How long dropping a lease's slice may take ([`Lease::release`]): the environment's teardown
/// waits for it.
pub const RELEASE_LIMIT: Duration = Duration::from_secs(10);

/// A pool of backends of one type, one per key.
pub struct Pool<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B: Backend> {
    name: &'static str,
    idle: Duration,
    state: Mutex<State<B>>,
}

struct State<B: Backend> {
    /// Bumped by [`Pool::close`]: a backend whose start began in an earlier epoch is stopped
    /// as soon as it is up instead of joining the pool.
    epoch: u64,
    slots: HashMap<String, Slot<B>>,
}

/// The outcome of a backend start, as seen by those waiting for it.
type StartOutcome = Option<Result<(), String>>;

enum Slot<B: Backend> {
    Starting(watch::Receiver<StartOutcome>),
    Ready {
        backend: Arc<B>,
        refs: usize,
        /// Bumped whenever the reference count leaves or reaches zero; an idle timer only
        /// stops the backend if the generation it was armed with is still current.
        generation: u64,
    },
}

impl<B: Backend> Pool<B> {
    /// An empty pool named `name` (used in errors) whose unused backends stop after `idle`.
    pub fn new(name: &'static str, idle: Duration) -> Pool<B> {
        Pool {
            inner: Arc::new(Inner {
                name,
                idle,
                state: Mutex::new(State {
                    epoch: 0,
                    slots: HashMap::new(),
                }),
            }),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Leases a slice of the backend for `key`, starting the backend with `start` if none is
    /// running. Must be called inside a tokio runtime.
    pub async fn acquire<F, Fut>(&self, key: &str, start: F) -> Result<Lease<B>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<B, String>> + Send + 'static,
    {
        let mut start = Some(start);
        let backend = loop {
            let mut waiting = {
                let mut state = self.inner.state.lock();
                let dead = matches!(
                    state.slots.get(key),
                    Some(Slot::Ready { backend, .. }) if !backend.alive()
                );
                if dead {
                    // Leases still holding it see their connections fail; new ones get a
                    // fresh backend. Why it died goes to rigd's output.
                    if let Some(Slot::Ready { backend, .. }) = state.slots.remove(key) {
                        let (name, key) = (self.inner.name, key.to_string());
                        tokio::spawn(async move {
                            eprintln!(
                                "rigd: {name} pool: the backend for {key} has died; starting \
                                 a new one{}",
                                died_saying(backend.last_output().await)
                            );
                            backend.stop().await
                        });
                    }
                }
                match state.slots.get_mut(key) {
                    Some(Slot::Ready {
                        backend,
                        refs,
                        generation,
                    }) => {
                        *refs += 1;
                        *generation += 1;
                        break backend.clone();
                    }
                    Some(Slot::Starting(rx)) => rx.clone(),
                    None => {
                        let Some(start) = start.take() else {
                            return Err(format!(
                                "pool: start backend for {key}: the backend stopped while \
                                 starting"
                            ));
                        };
                        let (tx, rx) = watch::channel(None);
                        state
                            .slots
                            .insert(key.to_string(), Slot::Starting(rx.clone()));
                        tokio::spawn(run_start(
                            self.inner.clone(),
                            key.to_string(),
                            state.epoch,
                            start(),
                            tx,
                        ));
                        rx
                    }
                }
            };
            let outcome = waiting
                .wait_for(Option::is_some)
                .await
                .map(|o| o.clone())
                .unwrap_or(Some(Err("the start task ended unexpectedly".into())));
            if let Some(Err(e)) = outcome {
                return Err(format!("pool: start backend for {key}: {e}"));
            }
        };
        let reference = Reference {
            inner: self.inner.clone(),
            key: key.to_string(),
            backend: backend.clone(),
        };
        match backend.new_lease().await {
            Ok(lease) => Ok(Lease {
                backend,
                lease,
                _reference: reference,
            }),
            Err(e) if !backend.alive() => Err(format!(
                "pool: new lease for {key}: {e}; the backend has died{}",
                died_saying(backend.last_output().await)
            )),
            Err(e) => Err(format!("pool: new lease for {key}: {e}")),
        }
    }

    /// Stops every backend now (rigd shutdown). Backends still starting are stopped as soon
    /// as their start finishes, and their waiters get an error; a later acquire starts a new
    /// backend (an in-process rigd started again in the same process).
    pub async fn close(&self) {
        let backends: Vec<Arc<B>> = {
            let mut state = self.inner.state.lock();
            state.epoch += 1;
            state
                .slots
                .drain()
                .filter_map(|(_, slot)| match slot {
                    Slot::Ready { backend, .. } => Some(backend),
                    Slot::Starting(_) => None,
                })
                .collect()
        };
        futures_util::future::join_all(backends.iter().map(|b| b.stop())).await;
    }

    /// How many backends are running or starting.
    pub fn backends(&self) -> usize {
        self.inner.state.lock().slots.len()
    }
}

async fn run_start<B: Backend>(
    inner: Arc<Inner<B>>,
    key: String,
    epoch: u64,
    start: impl Future<Output = Result<B, String>>,
    tx: watch::Sender<StartOutcome>,
) {
    let result = start.await;
    let outcome = {
        let mut state = inner.state.lock();
        match result {
            Ok(backend) if state.epoch == epoch => {
                state.slots.insert(
                    key.clone(),
                    Slot::Ready {
                        backend: Arc::new(backend),
                        refs: 0,
                        generation: 0,
                    },
                );
                // If every waiter gave up meanwhile, the backend must still stop when idle.
                arm_idle_timer(&inner, &key, 0);
                Ok(Ok(()))
            }
            Ok(backend) => Err(backend),
            Err(e) => {
                if state.epoch == epoch {
                    state.slots.remove(&key);
                }
                Ok(Err(e))
            }
        }
    };
    match outcome {
        Ok(outcome) => {
            let _ = tx.send(Some(outcome));
        }
        Err(backend) => {
            // rigd closed the pool while this backend was starting.
            backend.stop().await;
            let _ = tx.send(Some(Err("rigd is shutting down".into())));
        }
    }
}

fn arm_idle_timer<B: Backend>(inner: &Arc<Inner<B>>, key: &str, generation: u64) {
    let inner = inner.clone();
    let key = key.to_string();
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep(inner.idle).await;
        let backend = {
            let mut state = inner.state.lock();
            match state.slots.get(&key) {
                Some(Slot::Ready {
                    refs: 0,
                    generation: g,
                    ..
                }) if *g == generation => match state.slots.remove(&key) {
                    Some(Slot::Ready { backend, .. }) => backend,
                    _ => return,
                },
                _ => return,
            }
        };
        backend.stop().await;
    });
}

/// One reference to a ready backend; dropping it gives the reference back and, at zero,
/// arms the idle timer.
struct Reference<B: Backend> {
    inner: Arc<Inner<B>>,
    key: String,
    /// The backend referred to: the key's slot may hold another by the time this is dropped
    /// (this one died and was replaced), whose count this reference is not part of.
    backend: Arc<B>,
}

impl<B: Backend> Drop for Reference<B> {
    fn drop(&mut self) {
        let mut state = self.inner.state.lock();
        if let Some(Slot::Ready {
            backend,
            refs,
            generation,
        }) = state.slots.get_mut(&self.key)
        {
            if !Arc::ptr_eq(backend, &self.backend) {
                return;
            }
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                *generation += 1;
                let generation = *generation;
                drop(state);
                arm_idle_timer(&self.inner, &self.key, generation);
            }
        }
    }
}

/// `output` (a dead backend's last output) as the end of a sentence about its death.
fn died_saying(output: String) -> String {
    let output = output.trim_end();
    if output.is_empty() {
        " (it left no output)".to_string()
    } else {
        format!("; its last output:\n{output}")
    }
}

/// A slice of a pooled backend, held by one service of one environment.
pub struct Lease<B: Backend> {
    backend: Arc<B>,
    lease: B::Lease,
    _reference: Reference<B>,
}

impl<B: Backend> Lease<B> {
    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// What the lease holds.
    pub fn get(&self) -> &B::Lease {
        &self.lease
    }

    /// Drops the slice (best effort, at most [`RELEASE_LIMIT`]; rigd's output says when it
    /// is cut short) and gives the reference back.
    pub async fn release(self) {
        let Lease {
            backend,
            lease,
            _reference,
        } = self;
        let what = format!("{lease:?}");
        if tokio::time::timeout(RELEASE_LIMIT, backend.drop_lease(lease))
            .await
            .is_err()
        {
            eprintln!(
                "rigd: {} pool: dropping {what} of the backend for {} did not finish within \
                 {RELEASE_LIMIT:?}; it is left as it is",
                _reference.inner.name, _reference.key
            );
        }
    }
}

#[cfg(test)]
mod tests;
