//! Kafka traffic: [`KafkaRequest`] (one request/response pair seen by a rigd proxy) and
//! [`KafkaFilter`].

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use rig_types::{Event, EventType, KafkaRequestInfo};

use super::{edge_words, millis, wanted, Observed, TrafficFilter};

/// One Kafka request observed by a proxy: every field of the `kafka.request.completed` event
/// (through [`Deref`]: `req.api_name`, `req.api_version`, `req.correlation_id`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaRequest {
    /// Position in the environment's event log.
    pub seq: u64,
    /// The event's request details.
    pub info: KafkaRequestInfo,
}

impl KafkaRequest {
    /// The request of a `kafka.request.completed` event; `None` for other events.
    pub fn from_event(event: &Event) -> Option<KafkaRequest> {
        if event.event_type != EventType::KafkaRequestCompleted {
            return None;
        }
        Some(KafkaRequest {
            seq: event.seq,
            info: event.kafka_request.as_deref()?.clone(),
        })
    }

    /// From the complete request frame to the complete response frame.
    pub fn latency(&self) -> Duration {
        millis(self.info.latency_ms)
    }
}

impl Deref for KafkaRequest {
    type Target = KafkaRequestInfo;

    fn deref(&self) -> &KafkaRequestInfo {
        &self.info
    }
}

impl Observed for KafkaRequest {
    const KIND: &'static str = "Kafka requests";

    fn from_event(event: &Event) -> Option<KafkaRequest> {
        KafkaRequest::from_event(event)
    }
}

/// `~test → kafka  Metadata v12  #4  0.7ms`.
impl fmt::Display for KafkaRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} → {}  {} v{}  #{}  {:.1}ms",
            self.info.source,
            self.info.target,
            self.info.api_name,
            self.info.api_version,
            self.info.correlation_id,
            self.info.latency_ms
        )
    }
}

/// Which Kafka requests a query or assertion is about; every condition set must hold.
///
/// ```
/// let produce = rig::KafkaFilter::new().from("api").api("Produce");
/// assert_eq!(produce.to_string(), "Produce Kafka requests from api");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaFilter {
    source: Option<String>,
    target: Option<String>,
    ingress: Option<String>,
    api: Option<String>,
    api_key: Option<i16>,
}

impl KafkaFilter {
    /// Every request.
    pub fn new() -> KafkaFilter {
        KafkaFilter::default()
    }

    /// Sent by `source` (a service name, or `~test`).
    pub fn from(mut self, source: impl Into<String>) -> KafkaFilter {
        self.source = Some(source.into());
        self
    }

    /// Sent to service `target`.
    pub fn to(mut self, target: impl Into<String>) -> KafkaFilter {
        self.target = Some(target.into());
        self
    }

    /// On the edge from `source` to `target`.
    pub fn edge(self, source: impl Into<String>, target: impl Into<String>) -> KafkaFilter {
        self.from(source).to(target)
    }

    /// To the target's ingress `ingress`.
    pub fn ingress(mut self, ingress: impl Into<String>) -> KafkaFilter {
        self.ingress = Some(ingress.into());
        self
    }

    /// Of this API by name, case-insensitive: `Produce`, `Fetch`, `JoinGroup`, ...
    pub fn api(mut self, name: impl Into<String>) -> KafkaFilter {
        self.api = Some(name.into());
        self
    }

    /// Of this API by key (`0` is Produce).
    pub fn api_key(mut self, key: i16) -> KafkaFilter {
        self.api_key = Some(key);
        self
    }

    /// Whether `req` satisfies every condition.
    pub fn matches(&self, req: &KafkaRequest) -> bool {
        wanted(&self.source, &req.info.source)
            && wanted(&self.target, &req.info.target)
            && wanted(&self.ingress, &req.info.ingress)
            && self
                .api
                .as_deref()
                .is_none_or(|a| req.info.api_name.eq_ignore_ascii_case(a))
            && self.api_key.is_none_or(|k| k == req.info.api_key)
    }
}

impl TrafficFilter for KafkaFilter {
    type Item = KafkaRequest;

    fn matches(&self, item: &KafkaRequest) -> bool {
        KafkaFilter::matches(self, item)
    }

    fn services(&self) -> Vec<&str> {
        super::named(&self.source, &self.target)
    }

    fn target_ingress(&self) -> Option<(Option<&str>, &str)> {
        super::target_ingress(&self.target, &self.ingress)
    }
}

/// Reads like the condition: `Produce Kafka requests from api`.
impl fmt::Display for KafkaFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        match (&self.api, self.api_key) {
            (Some(a), _) => words.push(a.clone()),
            (None, Some(k)) => words.push(format!("API-{k}")),
            (None, None) => {}
        }
        words.push("Kafka requests".into());
        edge_words(&mut words, &self.source, &self.target, &self.ingress);
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(api_key: i16, api_name: &str) -> KafkaRequest {
        let event: Event = serde_json::from_value(json!({
            "seq": 91, "type": "kafka.request.completed", "timestamp": "2026-03-02T10:00:00.2Z",
            "kafka_request": {"source": "~test", "target": "kafka", "ingress": "default",
                              "api_key": api_key, "api_name": api_name, "api_version": 12,
                              "correlation_id": 4, "latency_ms": 0.655,
                              "request_size": 41, "response_size": 187}
        }))
        .unwrap();
        KafkaRequest::from_event(&event).unwrap()
    }

    #[test]
    fn converts_kafka_request_events() {
        let r = request(3, "Metadata");
        assert_eq!((r.seq, r.api_key, r.correlation_id), (91, 3, 4));
        assert_eq!(r.to_string(), "~test → kafka  Metadata v12  #4  0.7ms");
    }

    #[test]
    fn apis_match_by_name_or_key() {
        let r = request(3, "Metadata");
        assert!(KafkaFilter::new().api("metadata").matches(&r));
        assert!(KafkaFilter::new().api_key(3).to("kafka").matches(&r));
        assert!(!KafkaFilter::new().api("Produce").matches(&r));
        assert!(!KafkaFilter::new().api_key(0).matches(&r));
        assert!(!KafkaFilter::new().from("api").matches(&r));
        assert_eq!(
            KafkaFilter::new().api("JoinGroup").to_string(),
            "JoinGroup Kafka requests"
        );
    }
}
