//! The idle timer: shuts rigd down after a period with no environments and no API requests.
//!
//! Upstream restarts the countdown only when the environment count drops to zero; a client
//! polling `/health` or listing environments could therefore see rigd exit under it. Here the
//! countdown restarts on **any** API request too (architecture decision 4.7):
//!
//! - the countdown starts when the timer is created;
//! - [`IdleTimer::touch`] (every API request) restarts it;
//! - while at least one environment exists it cannot fire; when the count drops back to zero
//!   it restarts at the full timeout;
//! - a timeout of zero disables the timer.
//!
//! The timer uses tokio time, so tests drive it with a paused clock.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Tracks activity and tells the daemon when rigd has been idle for its timeout.
#[derive(Debug)]
pub struct IdleTimer {
    timeout: Option<Duration>,
    state: Mutex<IdleState>,
    changed: Notify,
}

#[derive(Debug)]
struct IdleState {
    /// Environments currently registered.
    active: usize,
    /// When the countdown ends if nothing else happens.
    deadline: Instant,
    /// Latched once the timer fired.
    fired: bool,
}

impl IdleTimer {
    /// A timer that fires after `timeout` of inactivity; a zero `timeout` disables it.
    /// The countdown starts now.
    pub fn new(timeout: Duration) -> IdleTimer {
        let timeout = (!timeout.is_zero()).then_some(timeout);
        IdleTimer {
            timeout,
            state: Mutex::new(IdleState {
                active: 0,
                deadline: deadline_after(timeout),
                fired: false,
            }),
            changed: Notify::new(),
        }
    }

    /// The configured timeout, `None` when the timer is disabled.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Records API activity: the countdown restarts at the full timeout.
    pub fn touch(&self) {
        self.restart();
    }

    /// Records that an environment was registered; the timer cannot fire until every
    /// environment is gone again.
    pub fn environment_created(&self) {
        self.state.lock().active += 1;
        self.changed.notify_waiters();
    }

    /// Records that an environment was torn down; when none is left the countdown restarts
    /// at the full timeout.
    pub fn environment_destroyed(&self) {
        {
            let mut state = self.state.lock();
            state.active = state.active.saturating_sub(1);
            if state.active == 0 {
                state.deadline = deadline_after(self.timeout);
            }
        }
        self.changed.notify_waiters();
    }

    /// The number of environments the timer knows about.
    pub fn active_environments(&self) -> usize {
        self.state.lock().active
    }

    /// Completes once rigd has had no environment and no API request for the whole timeout.
    /// Never completes when the timer is disabled. Once fired, it stays fired: every later
    /// call completes at once.
    pub async fn expired(&self) {
        if self.timeout.is_none() {
            return std::future::pending().await;
        }
        loop {
            // Register for changes before looking at the state, so a change between the
            // look and the wait still wakes this task.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let deadline = {
                let mut state = self.state.lock();
                if state.fired || (state.active == 0 && Instant::now() >= state.deadline) {
                    state.fired = true;
                    return;
                }
                (state.active == 0).then_some(state.deadline)
            };
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = &mut changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    fn restart(&self) {
        if self.timeout.is_none() {
            return;
        }
        self.state.lock().deadline = deadline_after(self.timeout);
        self.changed.notify_waiters();
    }
}

fn deadline_after(timeout: Option<Duration>) -> Instant {
    let now = Instant::now();
    // A timeout too large for the clock never fires in practice; saturate at a far deadline.
    timeout
        .and_then(|t| now.checked_add(t))
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn fires_after_the_timeout_when_nothing_happens() {
        let start = Instant::now();
        let idle = IdleTimer::new(TIMEOUT);
        assert!(
            tokio::time::timeout(TIMEOUT - Duration::from_millis(1), idle.expired())
                .await
                .is_err(),
            "fired before the timeout"
        );
        idle.expired().await;
        assert_eq!(start.elapsed(), TIMEOUT);
        // Latched: a second wait completes at once.
        idle.expired().await;
        assert_eq!(start.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_restarts_the_countdown() {
        let start = Instant::now();
        let idle = IdleTimer::new(TIMEOUT);
        tokio::time::sleep(Duration::from_secs(3)).await;
        idle.touch();
        idle.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3) + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_during_a_wait_restarts_the_countdown() {
        let start = Instant::now();
        let idle = std::sync::Arc::new(IdleTimer::new(TIMEOUT));
        let waiter = tokio::spawn({
            let idle = idle.clone();
            async move { idle.expired().await }
        });
        tokio::time::sleep(Duration::from_secs(4)).await;
        idle.touch();
        waiter.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(4) + TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn never_fires_while_an_environment_exists() {
        let idle = IdleTimer::new(TIMEOUT);
        idle.environment_created();
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), idle.expired())
                .await
                .is_err(),
            "fired while an environment existed"
        );
        let destroyed_at = Instant::now();
        idle.environment_destroyed();
        idle.expired().await;
        assert_eq!(destroyed_at.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_count_must_reach_zero() {
        let idle = IdleTimer::new(TIMEOUT);
        idle.environment_created();
        idle.environment_created();
        idle.environment_destroyed();
        assert_eq!(idle.active_environments(), 1);
        assert!(tokio::time::timeout(TIMEOUT * 10, idle.expired())
            .await
            .is_err());
        idle.environment_destroyed();
        assert!(tokio::time::timeout(TIMEOUT * 2, idle.expired())
            .await
            .is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_disables_the_timer() {
        let idle = IdleTimer::new(Duration::ZERO);
        assert_eq!(idle.timeout(), None);
        idle.touch();
        idle.environment_created();
        idle.environment_destroyed();
        assert!(
            tokio::time::timeout(Duration::from_secs(1_000 * 3600), idle.expired())
                .await
                .is_err(),
            "a disabled timer fired"
        );
    }
}
