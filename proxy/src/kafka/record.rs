//! `kafka.request.completed`: built from a few integers and the bytes kept of an exchange on
//! the data path; the header and topic details are decoded here, on the observer task, and
//! so are the topic names of Metadata responses, for later records that name topics by id.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rig_protocols::kafka::api_name;
use rig_protocols::kafka::details::{metadata_topic_ids, request_topics, response_topics, Topic};
use rig_protocols::kafka::header::parse_request_head;
use rig_types::{Event, EventType, KafkaPartition, KafkaRequestInfo, KafkaTopic};

use super::pending::Request;
use super::topic_names::TopicNames;
use crate::observe::{Edge, Record};

/// One observed Kafka request (and its response, if it gets one).
#[derive(Debug)]
pub struct KafkaRecord {
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    latency: Duration,
    request_size: u64,
    response_size: u64,
    request: Vec<u8>,
    request_complete: bool,
    response: Bytes,
    response_complete: bool,
    broker: Arc<str>,
    /// The proxy's topic names: learnt from a Metadata response, used for topics named by id.
    names: Arc<TopicNames>,
    no_response: bool,
    rewritten: bool,
    /// Why the exchange did not complete; empty when it did.
    error: String,
}

impl KafkaRecord {
    /// A request answered by a response of `response_size` bytes (4 + the original payload
    /// length, before any rewrite), read `latency` after the request. `response` holds the
    /// payload bytes kept for topic details and topic names (`response_complete` if that is
    /// all of it).
    pub(super) fn answered(
        request: Request,
        latency: Duration,
        response_size: u64,
        response: Bytes,
        response_complete: bool,
        broker: Arc<str>,
        names: Arc<TopicNames>,
    ) -> KafkaRecord {
        KafkaRecord {
            api_key: request.api_key,
            api_version: request.api_version,
            correlation_id: request.correlation_id,
            latency,
            request_size: request.size,
            response_size,
            request: request.kept,
            request_complete: request.complete,
            response,
            response_complete,
            broker,
            names,
            no_response: false,
            rewritten: false,
            error: String::new(),
        }
    }

    /// A request whose response was not read whole, or did not reach the client, before the
    /// connection ended: `error` says why. `response_size` is what the broker sent of it (4 +
    /// the payload bytes received, or 0); the latency runs until the connection ended.
    pub(super) fn failed(
        request: Request,
        response_size: u64,
        error: String,
        broker: Arc<str>,
        names: Arc<TopicNames>,
    ) -> KafkaRecord {
        let latency = request.read_at.elapsed();
        KafkaRecord::answered(
            request,
            latency,
            response_size,
            Bytes::new(),
            false,
            broker,
            names,
        )
        .with_error(error)
    }

    /// A request that gets no response by protocol (Produce with `acks=0`).
    pub(super) fn unanswered(
        request: Request,
        broker: Arc<str>,
        names: Arc<TopicNames>,
    ) -> KafkaRecord {
        let mut record = KafkaRecord::answered(
            request,
            Duration::ZERO,
            0,
            Bytes::new(),
            false,
            broker,
            names,
        );
        record.no_response = true;
        record
    }

    /// Marks the response as rewritten to point at proxy listeners.
    pub(super) fn rewritten(mut self) -> KafkaRecord {
        self.rewritten = true;
        self
    }

    /// Marks the exchange as failed: `error` says why.
    pub(super) fn with_error(mut self, error: String) -> KafkaRecord {
        self.error = error;
        self
    }
}

impl Record for KafkaRecord {
    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let record = *self;
        let head = parse_request_head(&record.request).ok();
        let client_id = head
            .as_ref()
            .and_then(|head| head.client_id.clone())
            .unwrap_or_default();
        let mut error_code = 0;
        let mut topics = Vec::new();
        if record.api_key == METADATA && record.response_complete {
            if let Ok(ids) = metadata_topic_ids(record.api_version, &record.response) {
                record.names.learn(ids);
            }
        }
        if record.response_complete {
            if let Ok((error, decoded)) =
                response_topics(record.api_key, record.api_version, &record.response)
            {
                error_code = error;
                topics = decoded;
            }
        }
        if topics.is_empty() && record.request_complete {
            let body = head
                .as_ref()
                .and_then(|head| head.body_offset)
                .and_then(|offset| record.request.get(offset..));
            if let Some(body) = body {
                topics =
                    request_topics(record.api_key, record.api_version, body).unwrap_or_default();
            }
        }
        let mut event = Event::new(EventType::KafkaRequestCompleted);
        event.kafka_request = Some(Box::new(KafkaRequestInfo {
            source: edge.source.clone(),
            target: edge.target.clone(),
            ingress: edge.ingress.clone(),
            api_key: record.api_key,
            api_name: api_name(record.api_key).into_owned(),
            api_version: record.api_version,
            correlation_id: record.correlation_id,
            latency_ms: record.latency.as_micros() as f64 / 1000.0,
            request_size: saturating_i64(record.request_size),
            response_size: saturating_i64(record.response_size),
            client_id,
            broker: record.broker.to_string(),
            no_response: record.no_response,
            error_code,
            topics: topics
                .into_iter()
                .map(|t| topic(t, &record.names))
                .collect(),
            rewritten: record.rewritten,
            error: record.error,
        }));
        event
    }
}

/// The Metadata API's key.
pub(super) const METADATA: i16 = 3;

/// A topic as recorded: by name, also when the request named it by id and the name is known.
fn topic(topic: Topic, names: &TopicNames) -> KafkaTopic {
    let name = topic.id.and_then(|id| names.name(&id));
    KafkaTopic {
        topic: name.map_or(topic.name, |name| name.to_string()),
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| KafkaPartition {
                partition: p.partition,
                error_code: p.error_code,
            })
            .collect(),
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
