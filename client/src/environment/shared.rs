//! What the event-stream session learns about an environment, shared with the
//! [`Environment`](crate::Environment) handle, and waiting for it to change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::traffic_store::TrafficStore;
use crate::endpoint::Endpoint;
use crate::transport::client::RigdClient;

/// Where the environment is in its life, as far as its event stream tells.
#[derive(Clone, Debug, Default)]
pub(crate) enum Phase {
    /// Created; `environment.up` has not arrived.
    #[default]
    Starting,
    /// `environment.up` arrived.
    Up(Arc<UpInfo>),
    /// `environment.down` arrived, with rigd's summary.
    Down(String),
    /// The event stream broke for good.
    Lost(String),
}

/// What `environment.up` carries.
#[derive(Debug)]
pub(crate) struct UpInfo {
    /// Service → ingress → endpoint (the `~test` proxies in observe mode).
    pub(crate) ingresses: BTreeMap<String, BTreeMap<String, Endpoint>>,
    /// The environment directory.
    pub(crate) env_dir: PathBuf,
}

/// Mutable state, behind [`Shared::lock`].
#[derive(Default)]
pub(crate) struct State {
    /// Lifecycle phase.
    pub(crate) phase: Phase,
    /// Every traffic event, in arrival (= log) order.
    pub(crate) traffic: TrafficStore,
    /// The sequence number of the last event the stream delivered.
    pub(crate) seen_seq: u64,
    /// The text of the last `progress.stall`, for a startup timeout's message.
    pub(crate) stall: Option<String>,
    /// Teardown started: failures of in-test services are expected from now on.
    pub(crate) tearing_down: bool,
    /// The tasks of in-test services, on the test's runtime.
    pub(crate) funcs: Vec<AbortHandle>,
}

/// One environment's identity, client and state.
pub(crate) struct Shared {
    /// The environment id.
    pub(crate) id: String,
    /// The environment name.
    pub(crate) name: String,
    /// The client for its rigd.
    pub(crate) client: RigdClient,
    /// Whether its traffic is observed (recorded).
    pub(crate) observe: bool,
    state: Mutex<State>,
    version: watch::Sender<u64>,
}

impl Shared {
    /// The state of a new environment whose handle keeps up to `traffic_memory` bytes of
    /// traffic events in memory.
    pub(crate) fn new(
        id: String,
        name: String,
        client: RigdClient,
        observe: bool,
        traffic_memory: usize,
    ) -> Shared {
        Shared {
            id,
            name,
            client,
            observe,
            state: Mutex::new(State {
                traffic: TrafficStore::new(traffic_memory),
                ..State::default()
            }),
            version: watch::channel(0).0,
        }
    }

    /// The state. Never held across an `await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the state and wakes every waiter.
    pub(crate) fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Waits until `check` returns `Some` (checked now and after every change), at most
    /// `timeout`; `None` on timeout. Uses the caller's runtime for the timer.
    pub(crate) async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let mut changes = self.version.subscribe();
        let wait = async {
            loop {
                changes.borrow_and_update();
                if let Some(found) = check(&self.lock()) {
                    return found;
                }
                // The sender lives as long as `self`, so this only fails if we are gone.
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            "id".into(),
            "env".into(),
            RigdClient::new("127.0.0.1:1").unwrap(),
            true,
            1024,
        ))
    }

    #[tokio::test]
    async fn a_waiter_sees_a_change_made_from_another_thread() {
        let s = shared();
        let writer = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.update(|st| st.stall = Some("stalled".into()));
            })
        };
        let got = s
            .wait_until(Duration::from_secs(10), |st| st.stall.clone())
            .await;
        writer.join().unwrap();
        assert_eq!(got.as_deref(), Some("stalled"));
    }

    #[tokio::test]
    async fn a_waiter_times_out_when_nothing_matches() {
        let s = shared();
        s.update(|st| st.stall = None);
        let got = s
            .wait_until(Duration::from_millis(20), |st| st.stall.clone())
            .await;
        assert!(got.is_none());
    }
}
