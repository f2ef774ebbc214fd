//! An estimate of the memory one event holds, for the log's memory budget.
//!
//! Captured bodies and header maps are what make an event large, so those are counted by
//! length; every allocation is charged a fixed overhead on top. The estimate runs on every
//! publish, so it walks the event once and never serialises it.

use std::mem::size_of;

use rig_types::event::GrpcMessage;
use rig_types::event::Headers;
use rig_types::{ConnectionInfo, Event, GrpcCallInfo, KafkaRequestInfo, RequestInfo};

/// What an allocation costs beyond its bytes (allocator header, rounding, the owner's pointer
/// and lengths).
const PER_ALLOCATION: usize = 32;

/// Bytes `event` holds in memory, approximately, as stored in the log (`Arc<Event>`).
pub(crate) fn approx_size(event: &Event) -> usize {
    let mut size = size_of::<Event>() + 2 * size_of::<usize>() + PER_ALLOCATION;
    size += texts([
        &event.environment,
        &event.service,
        &event.ingress,
        &event.artifact,
        &event.error,
        &event.env_dir,
        &event.message,
    ]);
    if let Some(log) = &event.log {
        size += text(&log.data);
    }
    if let Some(request) = &event.request {
        size += request_size(request);
    }
    if let Some(connection) = &event.connection {
        size += connection_size(connection);
    }
    if let Some(call) = &event.grpc_call {
        size += grpc_size(call);
    }
    if let Some(kafka) = &event.kafka_request {
        size += kafka_size(kafka);
    }
    // Lifecycle-only payloads: small, and counted roughly.
    let lifecycle = [
        event.endpoint.is_some(),
        event.callback.is_some(),
        event.result.is_some(),
        event.diagnostic.is_some(),
        !event.ingresses.is_empty(),
    ];
    size += lifecycle.iter().filter(|present| **present).count() * 1024;
    size
}

fn request_size(request: &RequestInfo) -> usize {
    size_of::<RequestInfo>()
        + PER_ALLOCATION
        + texts([
            &request.source,
            &request.target,
            &request.ingress,
            &request.method,
            &request.path,
            &request.http_version,
            &request.error,
            &request.upgrade,
        ])
        + headers(&request.request_headers)
        + headers(&request.response_headers)
        + body(&request.request_body)
        + body(&request.response_body)
}

fn connection_size(connection: &ConnectionInfo) -> usize {
    size_of::<ConnectionInfo>()
        + PER_ALLOCATION
        + texts([
            &connection.source,
            &connection.target,
            &connection.ingress,
            &connection.error,
            &connection.upgrade,
        ])
}

fn grpc_size(call: &GrpcCallInfo) -> usize {
    size_of::<GrpcCallInfo>()
        + PER_ALLOCATION
        + texts([
            &call.source,
            &call.target,
            &call.ingress,
            &call.service,
            &call.method,
            &call.grpc_status,
            &call.grpc_message,
        ])
        + headers(&call.request_metadata)
        + headers(&call.response_metadata)
        + headers(&call.response_headers)
        + body(&call.request_body)
        + body(&call.response_body)
        + call.request_body_decoded.as_ref().map_or(0, value)
        + call.response_body_decoded.as_ref().map_or(0, value)
        + messages(&call.request_messages)
        + messages(&call.response_messages)
}

/// Decoded stream messages.
fn messages(messages: &[GrpcMessage]) -> usize {
    messages
        .iter()
        .map(|m| size_of::<GrpcMessage>() + text(&m.decoding) + m.decoded.as_ref().map_or(0, value))
        .sum()
}

fn kafka_size(kafka: &KafkaRequestInfo) -> usize {
    size_of::<KafkaRequestInfo>()
        + PER_ALLOCATION
        + texts([
            &kafka.source,
            &kafka.target,
            &kafka.ingress,
            &kafka.api_name,
            &kafka.client_id,
            &kafka.broker,
            &kafka.error,
        ])
        + kafka
            .topics
            .iter()
            .map(|topic| {
                PER_ALLOCATION + text(&topic.topic) + topic.partitions.len() * 2 * PER_ALLOCATION
            })
            .sum::<usize>()
}

/// The heap bytes of several strings.
fn texts<const N: usize>(strings: [&str; N]) -> usize {
    strings.into_iter().map(text).sum()
}

/// A string's heap bytes (nothing when empty: an empty `String` does not allocate).
fn text(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        s.len() + PER_ALLOCATION
    }
}

fn body(body: &Option<Vec<u8>>) -> usize {
    body.as_ref().map_or(0, |b| b.len() + PER_ALLOCATION)
}

fn headers(headers: &Headers) -> usize {
    headers
        .iter()
        .map(|(name, values)| {
            // A B-tree slot, the name, the list and each value.
            PER_ALLOCATION + text(name) + values.iter().map(|v| text(v)).sum::<usize>()
        })
        .sum()
}

/// A decoded JSON body: nodes, keys and strings.
fn value(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    PER_ALLOCATION
        + match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(s) => text(s),
            Value::Array(items) => items.iter().map(self::value).sum(),
            Value::Object(fields) => fields
                .iter()
                .map(|(key, field)| text(key) + self::value(field))
                .sum(),
        }
}

#[cfg(test)]
mod tests {
    use rig_types::EventType;

    use super::*;

    /// Bodies, headers and output count by their length, so an event with a 64 KiB body is
    /// charged about 64 KiB more than the same event without.
    #[test]
    fn bodies_headers_and_output_count_by_length() {
        let bare = approx_size(&Event::new(EventType::RequestCompleted));
        assert!(bare < 1024, "{bare}");

        let mut info = RequestInfo {
            method: "GET".into(),
            path: "/".into(),
            ..RequestInfo::default()
        };
        let mut event = Event::new(EventType::RequestCompleted);
        event.request = Some(Box::new(info.clone()));
        let small = approx_size(&event);
        info.response_body = Some(vec![0; 64 * 1024]);
        info.request_headers
            .insert("X-Big".into(), vec!["v".repeat(4096)]);
        event.request = Some(Box::new(info));
        let large = approx_size(&event);
        assert!(large - small >= 68 * 1024, "{small} → {large}");
        assert!(large - small < 70 * 1024, "{small} → {large}");

        let line = Event::log("api", rig_types::LogStream::Stdout, "x".repeat(10_000));
        assert!(approx_size(&line) > 10_000);
    }

    #[test]
    fn decoded_grpc_bodies_and_messages_count_their_strings() {
        let decoded = serde_json::json!({"name": "n".repeat(5000), "items": [1, 2, 3]});
        let call = GrpcCallInfo {
            response_body_decoded: Some(decoded.clone()),
            ..GrpcCallInfo::default()
        };
        let mut event = Event::new(EventType::GrpcCallCompleted);
        event.grpc_call = Some(Box::new(call));
        let one = approx_size(&event);
        assert!(one > 5000, "{one}");

        let message = GrpcMessage {
            decoded: Some(decoded),
            ..GrpcMessage::default()
        };
        let call = event.grpc_call.as_mut().unwrap();
        call.response_messages = vec![message.clone(), message];
        assert!(approx_size(&event) > one + 10_000);
    }
}
