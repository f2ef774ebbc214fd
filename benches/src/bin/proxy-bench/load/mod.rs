//! The load generator: fixed connections, fixed duration, latency in an HDR histogram.
//!
//! Each scenario runs `warmup + duration`; only exchanges that start after the warm-up and
//! finish before the end are measured. Every loop is bounded by the window's end (plus
//! [`GRACE`] for an exchange in flight), so a stuck proxy ends its scenario with errors rather
//! than hanging the run.

pub mod h2c;
pub mod http1;
pub mod idle;
pub mod tcp;

use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;

/// How long an exchange still in flight at the window's end may take before it is abandoned.
pub const GRACE: Duration = Duration::from_secs(5);

/// The time a scenario runs.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Exchanges that start before this are not measured.
    pub warm_end: Instant,
    /// No exchange starts after this.
    pub end: Instant,
}

impl Window {
    /// A window starting now.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Window {
        let now = Instant::now();
        Window {
            warm_end: now + warmup,
            end: now + warmup + duration,
        }
    }

    /// The measured part's length.
    pub fn measured(&self) -> Duration {
        self.end - self.warm_end
    }
}

/// What HTTP load on one path produced.
#[derive(Clone)]
pub struct HttpTally {
    /// Measured exchanges that succeeded.
    pub requests: u64,
    /// Measured exchanges that failed (connection error, non-2xx status, short body, timeout).
    pub errors: u64,
    /// Connections replaced because the server closed them between requests.
    pub reconnects: u64,
    /// The first failure, to show what went wrong.
    pub first_error: Option<String>,
    /// Latency of successful measured exchanges in nanoseconds, request start to last byte.
    pub latency: Histogram<u64>,
}

impl HttpTally {
    /// An empty tally.
    pub fn new() -> Result<HttpTally> {
        Ok(HttpTally {
            requests: 0,
            errors: 0,
            reconnects: 0,
            first_error: None,
            // 1 µs to 60 s with 3 significant digits.
            latency: Histogram::new_with_bounds(1_000, 60_000_000_000, 3)?,
        })
    }

    /// Records a successful exchange.
    pub fn success(&mut self, latency: Duration) {
        self.requests += 1;
        self.latency
            .saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records a failed exchange.
    pub fn failure(&mut self, error: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error());
        }
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: HttpTally) -> Result<()> {
        self.requests += other.requests;
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency.add(&other.latency)?;
        Ok(())
    }
}
