//! Per-environment time to live.
//!
//! Every environment gets a deadline when it is created: its spec `ttl`, or rigd's default
//! TTL (`--default-ttl`, 10 minutes) when the spec has none. When the deadline passes, the
//! environment is torn down with reason `ttl_expired`, as if it had been deleted.
//!
//! Upstream's fixed deadline force-destroys environments whose tests run longer than the TTL.
//! Here the deadline is a safety net for clients that vanished: `POST
//! /environments/{id}/keepalive` pushes it out by one TTL from now, and the `rig` SDK calls it
//! while its test runs (architecture decision 4.8).

use std::time::Duration;

use parking_lot::Mutex;
use rig_types::GoDuration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The deadline of one environment.
#[derive(Debug)]
pub(crate) struct Ttl {
    period: Duration,
    spec_text: String,
    deadline: Mutex<Instant>,
    changed: Notify,
    stopped: CancellationToken,
}

impl Ttl {
    /// A deadline `period` from now. `spec_text` is the spec's `ttl` as the user wrote it
    /// (empty when the default applies); listings show it.
    pub(crate) fn start(period: Duration, spec_text: String) -> Ttl {
        Ttl {
            period,
            spec_text,
            deadline: Mutex::new(deadline_after(period)),
            changed: Notify::new(),
            stopped: CancellationToken::new(),
        }
    }

    /// The spec's `ttl` text, empty when the environment uses the default TTL.
    pub(crate) fn spec_text(&self) -> &str {
        &self.spec_text
    }

    /// Time left before expiry, zero once passed.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline
            .lock()
            .saturating_duration_since(Instant::now())
    }

    /// Time left as a Go duration string truncated to whole seconds (`9m59s`, `0s`).
    pub(crate) fn remaining_text(&self) -> String {
        let secs = i64::try_from(self.remaining().as_secs()).unwrap_or(i64::MAX);
        GoDuration::from_secs(secs).to_string()
    }

    /// Moves the deadline to one period from now.
    pub(crate) fn extend(&self) {
        *self.deadline.lock() = deadline_after(self.period);
        self.changed.notify_waiters();
    }

    /// Stops the timer: [`Ttl::expired`] returns `false`.
    pub(crate) fn stop(&self) {
        self.stopped.cancel();
    }

    /// Cancelled once the timer is stopped, when the environment's teardown begins.
    pub(crate) fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    /// The period each keepalive grants, as a Go duration (`10m0s`).
    pub(crate) fn period_text(&self) -> String {
        GoDuration::from_std(self.period).to_string()
    }

    /// Waits for the deadline, following extensions. Returns `true` when the deadline passed
    /// and `false` when the timer was stopped first.
    pub(crate) async fn expired(&self) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.stopped.is_cancelled() {
                return false;
            }
            let deadline = *self.deadline.lock();
            if Instant::now() >= deadline {
                return true;
            }
            tokio::select! {
                biased;
                () = self.stopped.cancelled() => return false,
                () = &mut changed => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

fn deadline_after(period: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(period)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_period() {
        let start = Instant::now();
        let ttl = Ttl::start(Duration::from_secs(60), "1m".into());
        assert_eq!(ttl.remaining_text(), "1m0s");
        assert!(ttl.expired().await);
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        assert_eq!(ttl.remaining_text(), "0s");
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_is_truncated_to_whole_seconds() {
        let ttl = Ttl::start(Duration::from_secs(600), String::new());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(ttl.remaining_text(), "9m58s");
    }

    #[tokio::test(start_paused = true)]
    async fn extend_moves_the_deadline_while_waiting() {
        let start = Instant::now();
        let ttl = std::sync::Arc::new(Ttl::start(Duration::from_secs(60), String::new()));
        let waiter = tokio::spawn({
            let ttl = ttl.clone();
            async move { ttl.expired().await }
        });
        tokio::time::sleep(Duration::from_secs(50)).await;
        ttl.extend();
        assert!(waiter.await.unwrap());
        assert_eq!(start.elapsed(), Duration::from_secs(110));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_wait_without_expiry() {
        let ttl = std::sync::Arc::new(Ttl::start(Duration::from_secs(60), String::new()));
        let waiter = tokio::spawn({
            let ttl = ttl.clone();
            async move { ttl.expired().await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        ttl.stop();
        assert!(!waiter.await.unwrap());
    }
}
