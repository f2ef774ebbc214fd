//! Connection observations: the byte counters a relay updates while it runs, and the records
//! that become `connection.opened`, `connection.progress` and `connection.closed` events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rig_types::{ConnectionInfo, Event, EventType};

use crate::observe::{Edge, Record};

/// Bytes relayed so far in each direction of one connection.
///
/// Each counter has a single writer (the relay direction that delivers the bytes) and is read
/// by the progress reporter while the relay runs, so plain relaxed atomics are enough.
#[derive(Debug, Default)]
pub struct ByteCounts {
    /// Bytes delivered from the client to the target.
    pub bytes_in: AtomicU64,
    /// Bytes delivered from the target to the client.
    pub bytes_out: AtomicU64,
}

impl ByteCounts {
    /// The counts as they are now: `(bytes_in, bytes_out)`.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }
}

/// Which connection event a [`ConnectionRecord`] becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionPhase {
    /// `connection.opened`: the client connected (before the target is dialled).
    Opened,
    /// `connection.progress`: byte counts of a connection that is still open.
    Progress,
    /// `connection.closed`: the connection ended (or could not reach the target).
    Closed,
}

impl ConnectionPhase {
    fn event_type(self) -> EventType {
        match self {
            ConnectionPhase::Opened => EventType::ConnectionOpened,
            ConnectionPhase::Progress => EventType::ConnectionProgress,
            ConnectionPhase::Closed => EventType::ConnectionClosed,
        }
    }
}

/// One observation of a relayed connection, built on the data path (a few integers and, rarely,
/// an error string) and turned into its event on the observer task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRecord {
    phase: ConnectionPhase,
    bytes_in: u64,
    bytes_out: u64,
    elapsed: Duration,
    error: String,
    upgrade: String,
    probe: bool,
}

impl ConnectionRecord {
    /// A `connection.opened` record: zero bytes, zero duration.
    pub fn opened() -> ConnectionRecord {
        ConnectionRecord::new(ConnectionPhase::Opened, (0, 0), Duration::ZERO)
    }

    /// A `connection.progress` record with the counts `(bytes_in, bytes_out)` so far and the
    /// time since the connection was accepted.
    pub fn progress(counts: (u64, u64), elapsed: Duration) -> ConnectionRecord {
        ConnectionRecord::new(ConnectionPhase::Progress, counts, elapsed)
    }

    /// A `connection.closed` record with the final counts `(bytes_in, bytes_out)` and the
    /// connection's lifetime.
    pub fn closed(counts: (u64, u64), elapsed: Duration) -> ConnectionRecord {
        ConnectionRecord::new(ConnectionPhase::Closed, counts, elapsed)
    }

    fn new(phase: ConnectionPhase, counts: (u64, u64), elapsed: Duration) -> ConnectionRecord {
        ConnectionRecord {
            phase,
            bytes_in: counts.0,
            bytes_out: counts.1,
            elapsed,
            error: String::new(),
            upgrade: String::new(),
            probe: false,
        }
    }

    /// Sets why the connection failed (reported in the additive `error` field).
    pub fn with_error(mut self, error: impl Into<String>) -> ConnectionRecord {
        self.error = error.into();
        self
    }

    /// Marks the record as the tunnel of an upgraded HTTP connection, e.g. `websocket`
    /// (reported in the additive `upgrade` field).
    pub fn with_upgrade(mut self, upgrade: impl Into<String>) -> ConnectionRecord {
        self.upgrade = upgrade.into();
        self
    }

    /// Marks the record as one of rigd's readiness probes (the additive `probe` field; see
    /// [`crate::probes`]).
    pub fn with_probe(mut self, probe: bool) -> ConnectionRecord {
        self.probe = probe;
        self
    }

    /// Which event this record becomes.
    pub fn phase(&self) -> ConnectionPhase {
        self.phase
    }
}

impl Record for ConnectionRecord {
    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let record = *self;
        let mut event = Event::new(record.phase.event_type());
        event.connection = Some(Box::new(ConnectionInfo {
            source: edge.source.clone(),
            target: edge.target.clone(),
            ingress: edge.ingress.clone(),
            bytes_in: saturating_i64(record.bytes_in),
            bytes_out: saturating_i64(record.bytes_out),
            duration_ms: millis(record.elapsed),
            error: record.error,
            upgrade: record.upgrade,
            probe: record.probe,
        }));
        event
    }
}

/// Milliseconds with microsecond resolution, as upstream reports durations (at most three
/// decimals).
fn millis(elapsed: Duration) -> f64 {
    elapsed.as_micros() as f64 / 1000.0
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edge() -> Edge {
        Edge {
            source: "~test".into(),
            target: "db".into(),
            ingress: "default".into(),
        }
    }

    #[test]
    fn opened_has_the_six_upstream_fields_at_zero_and_no_service() {
        let event = Box::new(ConnectionRecord::opened()).into_event(&edge());
        assert_eq!(event.event_type, EventType::ConnectionOpened);
        let v = serde_json::to_value(&event).unwrap();
        assert!(v.get("service").is_none());
        assert!(v.get("ingress").is_none(), "no top-level ingress either");
        assert_eq!(
            v["connection"],
            json!({"source": "~test", "target": "db", "ingress": "default",
                   "bytes_in": 0, "bytes_out": 0, "duration_ms": 0.0})
        );
    }

    #[test]
    fn closed_carries_counts_microsecond_duration_and_additive_fields() {
        let record = ConnectionRecord::closed((5, 7), Duration::from_nanos(12_345_678))
            .with_error("dial tcp 127.0.0.1:9: connection refused")
            .with_upgrade("websocket");
        let event = Box::new(record).into_event(&edge());
        assert_eq!(event.event_type, EventType::ConnectionClosed);
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(
            v["connection"],
            json!({"source": "~test", "target": "db", "ingress": "default",
                   "bytes_in": 5, "bytes_out": 7, "duration_ms": 12.345,
                   "error": "dial tcp 127.0.0.1:9: connection refused",
                   "upgrade": "websocket"})
        );
    }

    #[test]
    fn progress_reads_counts_and_saturates_huge_values() {
        let counts = ByteCounts::default();
        counts.bytes_in.store(u64::MAX, Ordering::Relaxed);
        counts.bytes_out.store(3, Ordering::Relaxed);
        let record = ConnectionRecord::progress(counts.snapshot(), Duration::from_secs(10));
        assert_eq!(record.phase(), ConnectionPhase::Progress);
        let event = Box::new(record).into_event(&edge());
        assert_eq!(event.event_type, EventType::ConnectionProgress);
        let info = event.connection.unwrap();
        assert_eq!((info.bytes_in, info.bytes_out), (i64::MAX, 3));
        assert_eq!(info.duration_ms, 10_000.0);
    }
}
