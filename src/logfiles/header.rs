//! The first line of a JSONL log file (`log.header`) and the outcome rules.
//!
//! ```text
//! {"type":"log.header","environment":"TestOrders","outcome":"crashed","services":["api","db"],
//!  "duration_ms":3312,"timestamp":"2026-02-24T20:33:00.123456789Z"}
//! ```
//!
//! The shape and the outcome rules are upstream's, so upstream's `rig` CLI lists our files and
//! ours lists theirs. `outcome` and `services` are omitted when empty; `duration_ms` is a whole
//! number of milliseconds (upstream stores a float, which JSON cannot tell apart); `timestamp`
//! is when the file was written.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;

use rig_types::{Event, EventType, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `type` of the header line.
pub const LOG_HEADER_TYPE: &str = "log.header";

/// The teardown reason the SDKs send when the test failed (`DELETE ?reason=test_failed`).
pub const REASON_TEST_FAILED: &str = "test_failed";

/// The teardown reason of an environment rigd ended because its owner (a test process or
/// `rig up`) went away without ending it: killed or crashed (the SDK ends what it still
/// owns when its process exits normally).
pub const REASON_ORPHANED: &str = "orphaned";

/// How a run ended, as recorded in the log header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Nothing failed.
    Passed,
    /// The test failed: the client said so (`reason=test_failed`) or posted a `test.note`.
    Failed,
    /// The environment itself failed (`environment.failing`).
    Crashed,
}

impl Outcome {
    /// The wire name: `passed`, `failed` or `crashed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Crashed => "crashed",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Outcome> {
        match name {
            "passed" => Some(Outcome::Passed),
            "failed" => Some(Outcome::Failed),
            "crashed" => Some(Outcome::Crashed),
            _ => None,
        }
    }

    /// True for `failed` and `crashed`.
    pub fn is_failure(self) -> bool {
        self != Outcome::Passed
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The outcome of a run (upstream `deriveOutcome`, plus rule 4), first rule that applies:
/// 1. `crashed` when any event is `environment.failing`;
/// 2. `failed` when the teardown reason is `test_failed`, or `orphaned` (the test process
///    was killed or crashed; upstream has no such reason);
/// 3. `failed` when any `test.note` was posted;
/// 4. `failed` when the environment was never up (no `environment.up`): torn down while
///    starting, by a client that gave up waiting (the SDK's startup timeout), an interrupted
///    `rig up` or `rig down`. Upstream calls such a run `passed`;
/// 5. `passed`.
pub fn derive_outcome<E: Borrow<Event>>(events: &[E], reason: &str) -> Outcome {
    let has = |t: EventType| events.iter().any(|e| e.borrow().event_type == t);
    if has(EventType::EnvironmentFailing) {
        Outcome::Crashed
    } else if reason == REASON_TEST_FAILED
        || reason == REASON_ORPHANED
        || has(EventType::TestNote)
        || !has(EventType::EnvironmentUp)
    {
        Outcome::Failed
    } else {
        Outcome::Passed
    }
}

/// The first line of a JSONL log file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogHeader {
    /// Always [`LOG_HEADER_TYPE`] in a valid header.
    #[serde(rename = "type")]
    pub kind: String,
    /// The environment's name (unsanitised).
    #[serde(default)]
    pub environment: String,
    /// How the run ended; `None` when absent or unknown (shown as `unknown`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_outcome"
    )]
    pub outcome: Option<Outcome>,
    /// Sorted names of the services that appear in the events, injected nodes excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Milliseconds from the first event to the last.
    #[serde(default, serialize_with = "whole_number")]
    pub duration_ms: f64,
    /// When the file was written.
    #[serde(default)]
    pub timestamp: Timestamp,
}

impl LogHeader {
    /// The header of a log of `events` (in `seq` order) written at `now`.
    ///
    /// `injected` names the services the transforms added (`~test`, proxies); they are left
    /// out of `services`.
    pub fn for_events<E: Borrow<Event>>(
        environment: &str,
        events: &[E],
        injected: &BTreeSet<String>,
        reason: &str,
        now: Timestamp,
    ) -> LogHeader {
        let services: BTreeSet<&str> = events
            .iter()
            .map(|e| e.borrow().service.as_str())
            .filter(|s| !s.is_empty() && !injected.contains(*s))
            .collect();
        LogHeader {
            kind: LOG_HEADER_TYPE.to_string(),
            environment: environment.to_string(),
            outcome: Some(derive_outcome(events, reason)),
            services: services.into_iter().map(str::to_string).collect(),
            duration_ms: duration_ms(events) as f64,
            timestamp: now,
        }
    }

    /// True when `kind` is `log.header`.
    pub fn is_header(&self) -> bool {
        self.kind == LOG_HEADER_TYPE
    }
}

/// Whole milliseconds from the first event's timestamp to the last's (truncated); 0 for fewer
/// than two events and when the clock went backwards.
pub fn duration_ms<E: Borrow<Event>>(events: &[E]) -> i64 {
    match (events.first(), events.last()) {
        (Some(first), Some(last)) => {
            let d = last
                .borrow()
                .timestamp
                .duration_since(&first.borrow().timestamp);
            (d.as_nanos() / 1_000_000).max(0)
        }
        _ => 0,
    }
}

/// Writes a whole float as an integer (`3312`, as Go prints `float64(3312)`), anything else as
/// a float.
fn whole_number<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact.
    if v.fract() == 0.0 && v.abs() < LIMIT {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Reads an outcome string; unknown values become `None` rather than an error.
fn lenient_outcome<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Outcome>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.as_deref().and_then(Outcome::from_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(mut e: Event, millis: i128) -> Arc<Event> {
        e.timestamp = Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + millis * 1_000_000);
        Arc::new(e)
    }

    fn svc(t: EventType, s: &str) -> Event {
        Event::for_service(t, s)
    }

    #[test]
    fn outcome_rules_apply_in_order() {
        let starting = vec![at(svc(EventType::ServiceReady, "api"), 0)];
        assert_eq!(derive_outcome(&starting, ""), Outcome::Failed, "never up");
        let ready = vec![
            starting[0].clone(),
            at(Event::new(EventType::EnvironmentUp), 0),
        ];
        assert_eq!(derive_outcome(&ready, ""), Outcome::Passed);
        assert_eq!(derive_outcome(&ready, "ttl_expired"), Outcome::Passed);
        assert_eq!(derive_outcome(&ready, "test_failed"), Outcome::Failed);
        assert_eq!(
            derive_outcome(&ready, "orphaned"),
            Outcome::Failed,
            "killed"
        );
        assert_eq!(derive_outcome(&ready, "TEST_FAILED"), Outcome::Passed);

        let mut noted = ready.clone();
        noted.push(at(
            Event::new(EventType::TestNote).with_error("x_test.go:3: boom"),
            1,
        ));
        assert_eq!(derive_outcome(&noted, ""), Outcome::Failed);

        let mut crashed = noted.clone();
        crashed.push(at(
            Event::new(EventType::EnvironmentFailing).with_error("service \"api\": exit status 1"),
            2,
        ));
        assert_eq!(derive_outcome(&crashed, ""), Outcome::Crashed);
        assert_eq!(derive_outcome(&crashed, "test_failed"), Outcome::Crashed);
        assert_eq!(derive_outcome::<Event>(&[], ""), Outcome::Failed);
    }

    #[test]
    fn header_lists_sorted_services_without_injected_ones() {
        let events = vec![
            at(svc(EventType::ServiceStarting, "db"), 0),
            at(svc(EventType::ServiceStarting, "api"), 10),
            at(svc(EventType::ServiceStarting, "~test"), 20),
            at(svc(EventType::ServiceStarting, "api~proxy~~test"), 30),
            at(Event::new(EventType::EnvironmentUp), 40),
            at(svc(EventType::ServiceReady, "api"), 3312),
        ];
        let injected = BTreeSet::from(["~test".to_string(), "api~proxy~~test".to_string()]);
        let now: Timestamp = "2026-02-24T20:33:00.5Z".parse().unwrap();
        let header = LogHeader::for_events("TestOrders", &events, &injected, "", now);
        assert_eq!(header.services, ["api", "db"]);
        assert_eq!(header.outcome, Some(Outcome::Passed));
        assert_eq!(
            serde_json::to_string(&header).unwrap(),
            concat!(
                r#"{"type":"log.header","environment":"TestOrders","outcome":"passed","#,
                r#""services":["api","db"],"duration_ms":3312,"timestamp":"2026-02-24T20:33:00.5Z"}"#
            )
        );
    }

    #[test]
    fn duration_is_whole_milliseconds_and_never_negative() {
        let one = vec![at(Event::new(EventType::EnvironmentUp), 5)];
        assert_eq!(duration_ms(&one), 0);
        assert_eq!(duration_ms::<Event>(&[]), 0);
        let mut first = Event::new(EventType::EnvironmentUp);
        first.timestamp = Timestamp::from_unix_nanos(1_000_000_000);
        let mut last = Event::new(EventType::EnvironmentDown);
        last.timestamp = Timestamp::from_unix_nanos(1_001_999_999);
        assert_eq!(duration_ms(&[first.clone(), last.clone()]), 1);
        assert_eq!(duration_ms(&[last, first]), 0);
    }

    #[test]
    fn upstream_headers_parse_and_unknown_outcomes_are_none() {
        let line = r#"{"type":"log.header","environment":"TestCrash","outcome":"crashed","services":["worker"],"duration_ms":500.5,"timestamp":"2026-02-24T20:33:00+01:00"}"#;
        let h: LogHeader = serde_json::from_str(line).unwrap();
        assert!(h.is_header());
        assert_eq!(h.outcome, Some(Outcome::Crashed));
        assert_eq!(h.duration_ms, 500.5);
        assert_eq!(serde_json::to_string(&h).unwrap(), line);
        let odd: LogHeader =
            serde_json::from_str(r#"{"type":"log.header","outcome":"weird"}"#).unwrap();
        assert_eq!(odd.outcome, None);
        assert!(odd.services.is_empty());
    }
}
