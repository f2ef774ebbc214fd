//! Forks against the listeners rigd allocates and closes.
//!
//! rigd allocates a service's ports by opening listeners on them, then closes them so the
//! service can bind the ports itself. A child process gets a copy of rigd's descriptors when
//! it is forked and holds them until it execs (a few hundred microseconds): one forked while
//! such a listener was open keeps the port listening that long, and the service binding it
//! then fails with "address in use".
//!
//! So every fork is registered ([`forking`]) from before it starts until it has exec'd, and
//! closing allocated listeners takes a [`Fence`]: the forks registered by then. The service
//! starts once its fence has [passed](Fence::passed), every fork in it having exec'd; forks
//! registered later cannot hold the closed listeners. Nothing waits while listeners are open
//! or forks run, and a service waits (without blocking a thread) only for the forks that
//! were in flight when its ports were closed. (A lock that kept forks and open listeners
//! apart had every allocation wait, on its thread, for the forks in flight, which serialised
//! the starts of an environment's services.)

use std::collections::BTreeSet;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// The forks in flight, by registration number.
struct Forks {
    /// The number the next fork gets.
    next: u64,
    running: BTreeSet<u64>,
}

static FORKS: Mutex<Forks> = parking_lot::const_mutex(Forks {
    next: 0,
    running: BTreeSet::new(),
});
/// Told whenever a fork ends.
static FORK_ENDED: Notify = Notify::const_new();

/// A fork in flight, registered until dropped: hold it from before the fork until the child
/// has exec'd (with `posix_spawn`, until the spawn returns) or the fork failed.
#[must_use = "the fork is registered only while the guard lives"]
pub struct ForkGuard(u64);

/// Registers a fork about to start.
pub fn forking() -> ForkGuard {
    let mut forks = FORKS.lock();
    let number = forks.next;
    forks.next += 1;
    forks.running.insert(number);
    ForkGuard(number)
}

impl Drop for ForkGuard {
    fn drop(&mut self) {
        FORKS.lock().running.remove(&self.0);
        FORK_ENDED.notify_waiters();
    }
}

/// The forks registered when some allocated listeners were closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// Forks numbered below this one might hold the listeners.
    before: u64,
}

impl Fence {
    /// A fence of the forks registered until now: take it right after closing listeners.
    pub fn now() -> Fence {
        Fence {
            before: FORKS.lock().next,
        }
    }

    /// A fence nothing is behind: for a service whose ports were not closed for it.
    pub fn none() -> Fence {
        Fence { before: 0 }
    }

    /// Whether every fork behind the fence has ended.
    fn is_passed(&self) -> bool {
        FORKS
            .lock()
            .running
            .first()
            .is_none_or(|&oldest| oldest >= self.before)
    }

    /// Resolves once every fork behind the fence has ended.
    pub async fn passed(self) {
        loop {
            // Created before the check, so an end between the check and the wait is not
            // missed (`notify_waiters` reaches every `Notified` already created).
            let ended = FORK_ENDED.notified();
            if self.is_passed() {
                return;
            }
            ended.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A fence waits for the forks registered before it, not for later ones. (The registry
    /// is shared by the whole test binary, so other forks may come and go meanwhile.)
    #[tokio::test]
    async fn a_fence_waits_for_the_forks_before_it_only() {
        let before = forking();
        let fence = Fence::now();
        let after = forking();
        assert!(!fence.is_passed());
        let waiting = tokio::spawn(fence.passed());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "passed with a fork behind it running"
        );
        drop(before);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("passed once the fork behind it ended")
            .unwrap();
        // The later fork is still running and does not hold the fence.
        assert!(Fence::now() != fence);
        drop(after);
        assert!(Fence::none().is_passed());
    }
}
