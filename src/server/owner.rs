//! Environments that end when the client that created them goes away.
//!
//! A client that tears its environment down itself when it is done (the `rig` SDK for a
//! running test, `rig up`) follows the event stream with `?owner=true`. While such an owner
//! stream is open the environment lives as usual; once the last one has closed and none has
//! reopened for the orphan grace period (`--orphan-grace`, 30 s), rigd tears the environment
//! down with reason `orphaned`. A test binary killed by Ctrl-C or `kill -9` therefore frees
//! its processes, containers and ports half a minute later instead of when the 10-minute TTL
//! expires. The grace period covers the SDK reconnecting a dropped stream.
//!
//! Environments nobody owns (upstream clients, `keep_for`) keep the TTL as their only limit.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use crate::logfiles::REASON_ORPHANED;

/// The owner streams of one environment.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    state: Mutex<OwnerState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct OwnerState {
    /// Owner streams open now.
    open: usize,
    /// Whether an owner stream was ever opened: only then can the environment be orphaned.
    claimed: bool,
}

/// Held by an open owner stream; dropping it (the client disconnected, the stream ended)
/// lets go of the environment.
#[derive(Debug)]
pub(crate) struct OwnerGuard {
    owners: Arc<Owners>,
}

impl Owners {
    /// Registers an open owner stream.
    pub(crate) fn attach(self: &Arc<Owners>) -> OwnerGuard {
        {
            let mut state = self.state.lock();
            state.open += 1;
            state.claimed = true;
        }
        self.changed.notify_waiters();
        OwnerGuard {
            owners: Arc::clone(self),
        }
    }

    /// Whether the environment has been claimed by an owner that is no longer connected.
    pub(crate) fn abandoned(&self) -> bool {
        let state = self.state.lock();
        state.claimed && state.open == 0
    }

    /// Waits until the environment has been without an owner stream for `grace` after being
    /// claimed, and returns `true`; returns `false` once `stopped` is cancelled (the
    /// environment is being torn down anyway).
    pub(crate) async fn orphaned(&self, grace: Duration, stopped: &CancellationToken) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read, so no change between the two is missed.
            changed.as_mut().enable();
            if self.abandoned() {
                tokio::select! {
                    biased;
                    () = stopped.cancelled() => return false,
                    () = &mut changed => {}
                    () = tokio::time::sleep(grace) => return true,
                }
            } else {
                tokio::select! {
                    biased;
                    () = stopped.cancelled() => return false,
                    () = &mut changed => {}
                }
            }
        }
    }
}

impl Drop for OwnerGuard {
    fn drop(&mut self) {
        self.owners.state.lock().open -= 1;
        self.owners.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const GRACE: Duration = Duration::from_secs(30);

    fn watch(owners: &Arc<Owners>, stopped: &CancellationToken) -> tokio::task::JoinHandle<bool> {
        let (owners, stopped) = (Arc::clone(owners), stopped.clone());
        tokio::spawn(async move { owners.orphaned(GRACE, &stopped).await })
    }

    #[tokio::test(start_paused = true)]
    async fn an_environment_nobody_claimed_is_never_orphaned() {
        let owners = Arc::new(Owners::default());
        let stopped = CancellationToken::new();
        let watcher = watch(&owners, &stopped);
        tokio::time::sleep(GRACE * 10).await;
        assert!(!watcher.is_finished());
        stopped.cancel();
        assert!(!watcher.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn orphaned_a_grace_period_after_the_last_owner_left() {
        let owners = Arc::new(Owners::default());
        let stopped = CancellationToken::new();
        let watcher = watch(&owners, &stopped);
        let first = owners.attach();
        let second = owners.attach();
        tokio::time::sleep(GRACE * 2).await;
        drop(first);
        tokio::time::sleep(GRACE * 2).await;
        assert!(!watcher.is_finished(), "one owner is still connected");
        let left = Instant::now();
        drop(second);
        assert!(watcher.await.unwrap());
        assert_eq!(left.elapsed(), GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_owner_reconnecting_within_the_grace_period_keeps_the_environment() {
        let owners = Arc::new(Owners::default());
        let stopped = CancellationToken::new();
        let watcher = watch(&owners, &stopped);
        drop(owners.attach());
        tokio::time::sleep(GRACE / 2).await;
        let back = owners.attach();
        tokio::time::sleep(GRACE * 3).await;
        assert!(!watcher.is_finished());
        // Leaving again starts a new, full grace period.
        let left = Instant::now();
        drop(back);
        assert!(watcher.await.unwrap());
        assert_eq!(left.elapsed(), GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_teardown_ends_the_watch() {
        let owners = Arc::new(Owners::default());
        let stopped = CancellationToken::new();
        let watcher = watch(&owners, &stopped);
        drop(owners.attach());
        stopped.cancel();
        assert!(!watcher.await.unwrap());
    }
}
