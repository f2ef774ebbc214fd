//! Raw TCP traffic: [`Connection`] (one connection through a rigd proxy) and
//! [`ConnectionFilter`].
//!
//! A proxy records a `connection.opened` event when it accepts a connection and a
//! `connection.closed` event, with byte counts and duration, when both directions are done.
//! A filter selects opened connections by default (one item per connection, including those
//! still open); [`ConnectionFilter::closed`] selects the closed ones and their byte counts.

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use rig_types::{ConnectionInfo, Event, EventType};

use super::{edge_words, millis, wanted, Observed, TrafficFilter};

/// One TCP connection observed by a proxy: every field of its `connection.opened` or
/// `connection.closed` event (through [`Deref`]: `conn.source`, `conn.bytes_in`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    /// Position in the environment's event log.
    pub seq: u64,
    /// From a `connection.closed` event (byte counts and duration are final); `false` for
    /// `connection.opened` (all zero).
    pub closed: bool,
    /// The event's connection details.
    pub info: ConnectionInfo,
}

impl Connection {
    /// The connection of a `connection.opened` or `connection.closed` event; `None` for
    /// other events.
    pub fn from_event(event: &Event) -> Option<Connection> {
        let closed = match event.event_type {
            EventType::ConnectionOpened => false,
            EventType::ConnectionClosed => true,
            _ => return None,
        };
        Some(Connection {
            seq: event.seq,
            closed,
            info: event.connection.as_deref()?.clone(),
        })
    }

    /// How long the connection lasted (zero for an opened event).
    pub fn duration(&self) -> Duration {
        millis(self.info.duration_ms)
    }
}

impl Deref for Connection {
    type Target = ConnectionInfo;

    fn deref(&self) -> &ConnectionInfo {
        &self.info
    }
}

impl Observed for Connection {
    const KIND: &'static str = "TCP connections";

    fn from_event(event: &Event) -> Option<Connection> {
        Connection::from_event(event)
    }

    fn is_probe(&self) -> bool {
        self.info.probe
    }
}

/// `api → db  opened`, or `api → db  closed  120↑ 4096↓  12.5ms`.
impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.info.source, self.info.target)?;
        if self.closed {
            write!(
                f,
                "  closed  {}↑ {}↓  {:.1}ms",
                self.info.bytes_in, self.info.bytes_out, self.info.duration_ms
            )?;
        } else {
            f.write_str("  opened")?;
        }
        if !self.info.upgrade.is_empty() {
            write!(f, "  ({} tunnel)", self.info.upgrade)?;
        }
        if !self.info.error.is_empty() {
            write!(f, "  error: {}", self.info.error)?;
        }
        if self.info.probe {
            f.write_str("  (readiness probe)")?;
        }
        Ok(())
    }
}

/// Which TCP connections a query or assertion is about. Every condition set must hold;
/// rigd's readiness probes are left out unless [`ConnectionFilter::include_probes`] is called.
///
/// ```
/// let db = rig::ConnectionFilter::new().edge("api", "db");
/// assert_eq!(db.to_string(), "TCP connections from api to db");
/// let moved = db.closed().min_bytes_out(1);
/// assert_eq!(moved.to_string(), "closed TCP connections from api to db with at least 1 byte(s) out");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionFilter {
    source: Option<String>,
    target: Option<String>,
    ingress: Option<String>,
    closed: bool,
    min_bytes_in: Option<i64>,
    min_bytes_out: Option<i64>,
    probes: bool,
}

impl ConnectionFilter {
    /// Every connection, counted once when it opens.
    pub fn new() -> ConnectionFilter {
        ConnectionFilter::default()
    }

    /// Opened by `source` (a service name, or `~test`).
    pub fn from(mut self, source: impl Into<String>) -> ConnectionFilter {
        self.source = Some(source.into());
        self
    }

    /// To service `target`.
    pub fn to(mut self, target: impl Into<String>) -> ConnectionFilter {
        self.target = Some(target.into());
        self
    }

    /// On the edge from `source` to `target`.
    pub fn edge(self, source: impl Into<String>, target: impl Into<String>) -> ConnectionFilter {
        self.from(source).to(target)
    }

    /// To the target's ingress `ingress`.
    pub fn ingress(mut self, ingress: impl Into<String>) -> ConnectionFilter {
        self.ingress = Some(ingress.into());
        self
    }

    /// Only connections that have closed (their `connection.closed` events, with final
    /// byte counts and duration).
    pub fn closed(mut self) -> ConnectionFilter {
        self.closed = true;
        self
    }

    /// Closed connections that carried at least `bytes` from client to target.
    pub fn min_bytes_in(mut self, bytes: i64) -> ConnectionFilter {
        self.closed = true;
        self.min_bytes_in = Some(bytes);
        self
    }

    /// Closed connections that carried at least `bytes` from target to client.
    pub fn min_bytes_out(mut self, bytes: i64) -> ConnectionFilter {
        self.closed = true;
        self.min_bytes_out = Some(bytes);
        self
    }

    /// Also match rigd's readiness probes (bare connections that carry no data).
    pub fn include_probes(mut self) -> ConnectionFilter {
        self.probes = true;
        self
    }

    /// Whether `conn` satisfies every condition.
    pub fn matches(&self, conn: &Connection) -> bool {
        (self.probes || !conn.info.probe)
            && conn.closed == self.closed
            && wanted(&self.source, &conn.info.source)
            && wanted(&self.target, &conn.info.target)
            && wanted(&self.ingress, &conn.info.ingress)
            && self.min_bytes_in.is_none_or(|n| conn.info.bytes_in >= n)
            && self.min_bytes_out.is_none_or(|n| conn.info.bytes_out >= n)
    }
}

impl TrafficFilter for ConnectionFilter {
    type Item = Connection;

    fn matches(&self, item: &Connection) -> bool {
        ConnectionFilter::matches(self, item)
    }

    fn services(&self) -> Vec<&str> {
        super::named(&self.source, &self.target)
    }

    fn target_ingress(&self) -> Option<(Option<&str>, &str)> {
        super::target_ingress(&self.target, &self.ingress)
    }

    fn includes_probes(&self) -> bool {
        self.probes
    }

    /// A connection has an opened and, later, a closed event: a failure message lists the
    /// ones of the phase the filter counts, so each connection appears once.
    fn lists(&self, conn: &Connection) -> bool {
        conn.closed == self.closed
    }

    fn listed_kind(&self) -> &'static str {
        if self.closed {
            "closed TCP connections"
        } else {
            "TCP connections"
        }
    }
}

/// Reads like the condition: `closed TCP connections from api to db`.
impl fmt::Display for ConnectionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        if self.closed {
            words.push("closed".to_string());
        }
        words.push("TCP connections".into());
        edge_words(&mut words, &self.source, &self.target, &self.ingress);
        if let Some(n) = self.min_bytes_in {
            words.push(format!("with at least {n} byte(s) in"));
        }
        if let Some(n) = self.min_bytes_out {
            words.push(format!("with at least {n} byte(s) out"));
        }
        if self.probes {
            words.push("(probes included)".into());
        }
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(kind: &str, bytes_in: i64, bytes_out: i64) -> Connection {
        let event: Event = serde_json::from_value(json!({
            "seq": 33, "type": kind, "timestamp": "2026-03-02T10:00:00.2Z",
            "connection": {"source": "orders", "target": "db", "ingress": "default",
                           "bytes_in": bytes_in, "bytes_out": bytes_out, "duration_ms": 2.5}
        }))
        .unwrap();
        Connection::from_event(&event).unwrap()
    }

    #[test]
    fn opened_and_closed_events_are_connections() {
        let opened = conn("connection.opened", 0, 0);
        let closed = conn("connection.closed", 10, 20);
        assert!(!opened.closed && closed.closed);
        assert_eq!(closed.duration(), Duration::from_micros(2500));
        assert_eq!(opened.to_string(), "orders → db  opened");
        assert_eq!(closed.to_string(), "orders → db  closed  10↑ 20↓  2.5ms");
        let other: Event =
            serde_json::from_value(json!({"seq": 1, "type": "connection.progress"})).unwrap();
        assert!(Connection::from_event(&other).is_none());
    }

    #[test]
    fn a_connection_counts_once() {
        let (opened, closed) = (
            conn("connection.opened", 0, 0),
            conn("connection.closed", 10, 20),
        );
        let any = ConnectionFilter::new().edge("orders", "db");
        assert!(any.matches(&opened) && !any.matches(&closed));
        let done = ConnectionFilter::new().closed();
        assert!(!done.matches(&opened) && done.matches(&closed));
        assert!(ConnectionFilter::new().min_bytes_in(10).matches(&closed));
        assert!(!ConnectionFilter::new().min_bytes_out(21).matches(&closed));
        assert!(!ConnectionFilter::new().to("cache").matches(&opened));
    }

    #[test]
    fn probes_only_when_asked() {
        let mut probe = conn("connection.opened", 0, 0);
        probe.info.probe = true;
        assert!(!ConnectionFilter::new().matches(&probe));
        assert!(ConnectionFilter::new().include_probes().matches(&probe));
        assert!(probe.to_string().ends_with("(readiness probe)"));
    }
}
