//! Polling a probe until it succeeds or the readiness deadline passes.

use std::future::Future;
use std::time::Duration;

use rig_types::{GoDuration, ReadySpec};
use tokio::time::Instant;

use super::error::ProbeError;

/// How long to wait after the first failed probe when `ready.interval` is not set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);

/// How long to keep probing when `ready.timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The interval stops doubling here (or at the configured interval, if that is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Timing of a readiness poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollSettings {
    /// The wait after the first failed probe; it doubles after each further failure, up to
    /// `max(1 s, interval)`.
    pub interval: Duration,
    /// The poll fails once this much time has passed since it started.
    pub timeout: Duration,
}

impl Default for PollSettings {
    /// 10 ms initial interval, 30 s timeout.
    fn default() -> Self {
        PollSettings {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl PollSettings {
    /// The settings of an ingress's `ready` spec: `ready.interval` and `ready.timeout` when
    /// positive, the defaults (10 ms, 30 s) when absent, zero or negative.
    pub fn from_spec(ready: Option<&ReadySpec>) -> PollSettings {
        let positive = |d: GoDuration| d.to_std().filter(|d| !d.is_zero());
        let defaults = PollSettings::default();
        PollSettings {
            interval: ready
                .and_then(|r| positive(r.interval))
                .unwrap_or(defaults.interval),
            timeout: ready
                .and_then(|r| positive(r.timeout))
                .unwrap_or(defaults.timeout),
        }
    }
}

/// The endpoint did not become ready before the deadline.
///
/// Displays exactly as upstream: `readiness check failed after 30s (last error: dial tcp
/// 127.0.0.1:8080: connection refused)`.
#[derive(Debug, thiserror::Error)]
#[error(
    "readiness check failed after {} (last error: {last_error})",
    GoDuration::from_std(*.timeout)
)]
pub struct ReadinessError {
    /// The configured timeout.
    pub timeout: Duration,
    /// Why the last probe failed.
    #[source]
    pub last_error: ProbeError,
}

/// Runs `probe` until it succeeds, calling `on_failure` with each failure (the caller
/// publishes `health.check_failed`).
///
/// The first probe runs immediately. After a failure the poll waits `settings.interval`, then
/// twice that, and so on, capped at `max(1 s, settings.interval)`: by default 10, 20, 40, 80,
/// 160, 320, 640 ms, then 1 s repeatedly. When `settings.timeout` has passed since the start,
/// during a wait or during a probe, the poll returns [`ReadinessError`] with the last error
/// (a probe cut short by the deadline counts as [`ProbeError::Unfinished`] and is not passed
/// to `on_failure`).
///
/// Cancellation: drop the returned future (for example by racing it against a cancellation
/// token in `tokio::select!`); no task or connection outlives it. All timing uses
/// `tokio::time`, so a paused test clock drives it.
pub async fn poll<F, Fut>(
    settings: PollSettings,
    probe: F,
    on_failure: impl FnMut(&ProbeError),
) -> Result<(), ReadinessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ProbeError>>,
{
    poll_hinted(
        settings,
        probe,
        on_failure,
        std::future::ready(Hint::Unavailable),
    )
    .await
}

/// What a hint says about an endpoint (see [`poll_hinted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// No hint will come: probe on the plain schedule.
    Unavailable,
    /// The endpoint may be ready now: probe at once.
    ProbeNow,
    /// The endpoint is known to be ready, as surely as a probe would tell: no probe needed.
    Ready,
}

/// [`poll`], plus a `hint` that the endpoint may have become ready (for example
/// [`listening`](super::listen_watch::listening)); it is used once.
///
/// - The first probe waits for the hint, for at most one interval: a process that was just
///   started is rarely listening yet, and a probe bound to fail would only add a
///   `health.check_failed`. [`Hint::Unavailable`] lets it run at once, as in [`poll`].
/// - A [`Hint::ProbeNow`] during a later wait moves the next probe to that moment.
/// - A [`Hint::Ready`] ends the poll, successfully, whenever it comes.
///
/// The schedule of the waits after a failed probe is unchanged.
pub async fn poll_hinted<F, Fut>(
    settings: PollSettings,
    mut probe: F,
    mut on_failure: impl FnMut(&ProbeError),
    hint: impl Future<Output = Hint>,
) -> Result<(), ReadinessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ProbeError>>,
{
    tokio::pin!(hint);
    let mut hint_armed = true;
    let start = Instant::now();
    let deadline = far_checked_add(start, settings.timeout);
    let cap = settings.interval.max(MAX_BACKOFF);
    let mut interval = settings.interval;
    tokio::select! {
        biased;
        heard = &mut hint => {
            hint_armed = false;
            if heard == Hint::Ready {
                return Ok(());
            }
        }
        () = tokio::time::sleep_until(far_checked_add(start, interval).min(deadline)) => {}
    }
    let fail = |last_error| ReadinessError {
        timeout: settings.timeout,
        last_error,
    };
    loop {
        let probe_started = Instant::now();
        let outcome = tokio::select! {
            biased;
            outcome = probe() => outcome,
            () = tokio::time::sleep_until(deadline) => {
                return Err(fail(ProbeError::Unfinished {
                    running_for: deadline.saturating_duration_since(probe_started),
                }));
            }
        };
        let error = match outcome {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        on_failure(&error);

        let wake = far_checked_add(Instant::now(), interval);
        if wake >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Err(fail(error));
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => break,
                heard = &mut hint, if hint_armed => {
                    hint_armed = false;
                    match heard {
                        Hint::Ready => return Ok(()),
                        Hint::ProbeNow => break,
                        Hint::Unavailable => {}
                    }
                }
            }
        }
        interval = interval.saturating_mul(2).min(cap);
    }
}

/// `instant + duration`, or a point about 30 years ahead when that overflows (a timeout of
/// centuries means "never").
fn far_checked_add(instant: Instant, duration: Duration) -> Instant {
    instant
        .checked_add(duration)
        .unwrap_or_else(|| instant + Duration::from_secs(86_400 * 365 * 30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ready::{probe, ProbeKind};
    use std::future::ready;
    use tokio::net::{TcpListener, TcpSocket};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn failure() -> ProbeError {
        ProbeError::HttpStatus { status: 500 }
    }

    /// Polls a probe that always fails and returns the gaps between consecutive attempts, the
    /// time the poll took and its error.
    async fn schedule(settings: PollSettings) -> (Vec<Duration>, Duration, ReadinessError) {
        let start = Instant::now();
        let mut attempts = Vec::new();
        let mut failures = 0;
        let err = poll(
            settings,
            || {
                attempts.push(Instant::now());
                ready(Err(failure()))
            },
            |_| failures += 1,
        )
        .await
        .unwrap_err();
        assert_eq!(failures, attempts.len(), "one callback per failed attempt");
        assert_eq!(attempts[0], start, "the first probe runs immediately");
        let gaps = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        (gaps, start.elapsed(), err)
    }

    /// The times of the attempts of a poll (10 ms interval, 100 ms timeout) that always
    /// fails, given `hint`.
    async fn hinted_attempts(hint: impl Future<Output = Hint>) -> Vec<Duration> {
        let start = Instant::now();
        let mut attempts = Vec::new();
        let err = poll_hinted(
            PollSettings {
                interval: ms(10),
                timeout: ms(100),
            },
            || {
                attempts.push(Instant::now() - start);
                ready(Err(failure()))
            },
            |_| {},
            hint,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err.last_error, ProbeError::HttpStatus { .. }),
            "{err}"
        );
        attempts
    }

    /// A hint that resolves to `value` after `millis`.
    async fn hint_after(millis: u64, value: Hint) -> Hint {
        tokio::time::sleep(ms(millis)).await;
        value
    }

    /// The first probe waits for the hint; the waits after it keep the schedule.
    #[tokio::test(start_paused = true)]
    async fn the_first_probe_waits_for_the_hint() {
        assert_eq!(
            hinted_attempts(hint_after(3, Hint::ProbeNow)).await,
            [3, 13, 33, 73].map(ms)
        );
    }

    /// Without a hint within the first interval, the first probe runs at its end; a hint
    /// during a later wait moves the next probe to that moment, once.
    #[tokio::test(start_paused = true)]
    async fn a_later_hint_moves_the_next_probe_earlier_once() {
        assert_eq!(
            hinted_attempts(hint_after(15, Hint::ProbeNow)).await,
            [10, 15, 35, 75].map(ms)
        );
    }

    /// "No hint will come" lets the first probe run at once, on the plain schedule; a watcher
    /// that gives up later moves no probe.
    #[tokio::test(start_paused = true)]
    async fn an_unavailable_hint_keeps_the_plain_schedule() {
        assert_eq!(
            hinted_attempts(ready(Hint::Unavailable)).await,
            [0, 10, 30, 70].map(ms)
        );
        assert_eq!(
            hinted_attempts(hint_after(15, Hint::Unavailable)).await,
            [10, 20, 40, 80].map(ms)
        );
    }

    /// A hint that the endpoint is ready ends the poll without a probe, whether it comes
    /// before the first probe or after failed ones.
    #[tokio::test(start_paused = true)]
    async fn a_ready_hint_ends_the_poll_without_probing() {
        for (at, probes_before) in [(3, 0), (15, 1), (35, 2)] {
            let start = Instant::now();
            let mut attempts = 0;
            poll_hinted(
                PollSettings {
                    interval: ms(10),
                    timeout: ms(100),
                },
                || {
                    attempts += 1;
                    ready(Err(failure()))
                },
                |_| {},
                hint_after(at, Hint::Ready),
            )
            .await
            .expect("ready on the hint");
            assert_eq!((attempts, start.elapsed()), (probes_before, ms(at)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn default_schedule_doubles_to_one_second() {
        let settings = PollSettings {
            timeout: Duration::from_secs(4),
            ..PollSettings::default()
        };
        let (gaps, took, err) = schedule(settings).await;
        let want: Vec<_> = [10, 20, 40, 80, 160, 320, 640, 1000, 1000]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(gaps, want);
        assert_eq!(took, Duration::from_secs(4));
        assert_eq!(
            err.to_string(),
            "readiness check failed after 4s (last error: HTTP 500)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cap_is_the_configured_interval_when_longer_than_one_second() {
        let settings = PollSettings {
            interval: ms(2500),
            timeout: Duration::from_secs(10),
        };
        let (gaps, took, _) = schedule(settings).await;
        assert_eq!(gaps, vec![ms(2500), ms(2500), ms(2500)]);
        assert_eq!(took, Duration::from_secs(10));

        let settings = PollSettings {
            interval: ms(300),
            timeout: ms(3500),
        };
        let (gaps, _, err) = schedule(settings).await;
        assert_eq!(gaps, vec![ms(300), ms(600), ms(1000), ms(1000)]);
        assert_eq!(
            err.to_string(),
            "readiness check failed after 3.5s (last error: HTTP 500)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_on_the_first_passing_probe() {
        let start = Instant::now();
        let mut attempts = 0;
        let mut reported = Vec::new();
        poll(
            PollSettings::default(),
            || {
                attempts += 1;
                ready(if attempts < 4 { Err(failure()) } else { Ok(()) })
            },
            |e| reported.push(e.to_string()),
        )
        .await
        .unwrap();
        assert_eq!(attempts, 4);
        assert_eq!(reported, vec!["HTTP 500"; 3]);
        assert_eq!(start.elapsed(), ms(10 + 20 + 40));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_cuts_a_hanging_probe_short() {
        let start = Instant::now();
        let mut failures = 0;
        let settings = PollSettings {
            interval: ms(10),
            timeout: ms(250),
        };
        let mut first = true;
        let err = poll(
            settings,
            || {
                // First attempt fails at once; the second never finishes.
                let fail_now = std::mem::take(&mut first);
                async move {
                    if fail_now {
                        Err(failure())
                    } else {
                        std::future::pending().await
                    }
                }
            },
            |_| failures += 1,
        )
        .await
        .unwrap_err();
        assert_eq!(start.elapsed(), ms(250));
        assert_eq!(
            failures, 1,
            "the interrupted probe is not reported as a failure"
        );
        assert_eq!(
            err.to_string(),
            "readiness check failed after 250ms (last error: probe still running after 240ms \
             when the readiness deadline passed)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_poll_cancels_it() {
        let mut attempts = 0;
        let polling = poll(
            PollSettings::default(),
            || {
                attempts += 1;
                ready(Err(failure()))
            },
            |_| {},
        );
        let outcome = tokio::time::timeout(ms(100), polling).await;
        assert!(outcome.is_err(), "the poll was still running");
        // 0, 10, 30, 70 ms; then the future was dropped at 100 ms.
        assert_eq!(attempts, 4);
    }

    #[test]
    fn settings_from_spec() {
        assert_eq!(PollSettings::from_spec(None), PollSettings::default());
        assert_eq!(
            PollSettings::default(),
            PollSettings {
                interval: ms(10),
                timeout: Duration::from_secs(30)
            }
        );
        let spec = |interval: i64, timeout: i64| ReadySpec {
            interval: GoDuration::from_millis(interval),
            timeout: GoDuration::from_millis(timeout),
            ..ReadySpec::default()
        };
        assert_eq!(
            PollSettings::from_spec(Some(&spec(0, 0))),
            PollSettings::default()
        );
        assert_eq!(
            PollSettings::from_spec(Some(&spec(-5, -5))),
            PollSettings::default()
        );
        assert_eq!(
            PollSettings::from_spec(Some(&spec(50, 2000))),
            PollSettings {
                interval: ms(50),
                timeout: Duration::from_secs(2)
            }
        );
        assert_eq!(
            PollSettings::from_spec(Some(&spec(0, 100))),
            PollSettings {
                interval: ms(10),
                timeout: ms(100)
            }
        );
    }

    /// Upstream `TestPoll_Success`.
    #[tokio::test]
    async fn open_port_is_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut failures = 0;
        poll(
            PollSettings::default(),
            || probe(&ProbeKind::Tcp, &addr),
            |_| failures += 1,
        )
        .await
        .unwrap();
        assert_eq!(failures, 0);
    }

    /// Upstream `TestPoll_Timeout` and `TestPoll_OnFailureCallback`.
    #[tokio::test]
    async fn closed_port_times_out_with_last_error() {
        // A second, not upstream's 100 ms: on a loaded machine a probe can still be in
        // flight at a short deadline, which reports "still running" instead.
        let settings = PollSettings {
            interval: ms(10),
            timeout: ms(1000),
        };
        let mut reported = Vec::new();
        let err = poll(
            settings,
            || probe(&ProbeKind::Tcp, "127.0.0.1:1"),
            |e| reported.push(e.to_string()),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "readiness check failed after 1s (last error: dial tcp 127.0.0.1:1: connection \
             refused)"
        );
        assert!(!reported.is_empty());
        assert!(reported
            .iter()
            .all(|e| e == "dial tcp 127.0.0.1:1: connection refused"));
    }

    /// Upstream `TestPoll_DelayedReady`: the listener appears 100 ms after polling starts.
    #[tokio::test]
    async fn listener_appearing_later_is_found() {
        // A bound socket that is not listening yet: connections are refused, and no other
        // socket can take the port in the meantime.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let late_listener = tokio::spawn(async move {
            tokio::time::sleep(ms(100)).await;
            let listener = socket.listen(16).unwrap();
            // Keep accepting so the listener lives until the test ends.
            loop {
                let _ = listener.accept().await;
            }
        });
        let hostport = addr.to_string();
        let mut failures = 0;
        poll(
            PollSettings::default(),
            || probe(&ProbeKind::Tcp, &hostport),
            |_| failures += 1,
        )
        .await
        .unwrap();
        assert!(failures >= 1, "the port was closed when polling started");
        late_listener.abort();
    }
}
