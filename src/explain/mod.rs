//! Explaining a run from its events: what failed, the traffic errors that matter, the stderr
//! lines that go with them (upstream `internal/explain`).
//!
//! Everything here is a pure function over a list of events, so the same engine serves the
//! `summary` of `DELETE /environments/{id}?log=true` and the `rig explain` command reading a
//! JSONL log file:
//! - [`analyze`] collects the signals ([`Analysis`], which serialises with upstream's report
//!   field names);
//! - [`condensed`] renders the few `rig: ` lines printed when a test fails;
//! - [`summarize`] is both in one call.
//!
//! Generalisations over upstream: test notes and stderr are understood for Rust as well as Go
//! (`file.rs:line:col:` locations, `panicked at` panics; see [`parse_assertion`] and
//! [`error_fingerprint`]), readiness probes (`"probe": true`) never count as traffic errors,
//! dropped traffic observations are reported, and multi-line text never breaks the `rig: `
//! prefix.

mod analysis;
mod assertion;
mod condensed;
mod fingerprint;
mod location;
mod retained;

#[cfg(test)]
mod tests;

pub use analysis::{
    analyze, for_analysis, Analysis, PendingService, Phases, ServiceFailure, ServiceLine,
    TrafficError, TrafficKind, STDERR_LINES_PER_SERVICE,
};
pub use assertion::{parse_assertion, Assertion};
pub(crate) use condensed::is_failure_line;
pub use condensed::{
    condensed, MAX_BODY_BYTES, MAX_FAILURES, MAX_STALL_SERVICES, MAX_STDERR_LINES,
    MAX_TRAFFIC_ERRORS,
};
pub use fingerprint::error_fingerprint;
pub use location::{rust_panic, split_location, SourceLocation};
pub use retained::AnalysisEvents;

use std::borrow::Borrow;

use rig_types::Event;

use crate::logfiles::Outcome;

/// The condensed explanation of a run: [`condensed`] of [`analyze`]. `""` when the run passed
/// or nothing explains the failure.
///
/// `events` are every event of the run in `seq` order (`service.log` included), as written to
/// the JSONL log; `outcome` is the run's outcome (the log header's, see
/// [`derive_outcome`](crate::logfiles::derive_outcome)).
pub fn summarize<E: Borrow<Event>>(events: &[E], outcome: Outcome) -> String {
    condensed(&analyze(events, outcome))
}
