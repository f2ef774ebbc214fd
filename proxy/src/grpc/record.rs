//! A finished gRPC call → `grpc.call.completed`, built on the observer task: status from the
//! trailers (or the headers of a trailers-only response), metadata maps, raw bodies within the
//! HTTP capture limit, and every message decoded.

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderName;
use http::HeaderMap;
use rig_protocols::grpc::{
    decode_body, decode_message, event_status, parse_timeout, reset_status, split_path,
    DecodedBody, Decoding, Direction, MethodSchema, Schema,
};
use rig_types::{Event, EventType, GrpcCallInfo, GrpcMessage};

use super::descriptors::Lookup;
use super::GrpcContext;
use crate::http::capture::Capture;
use crate::http::exchange::{RequestHead, RequestOutcome, ResponseOutcome};
use crate::http::headers::to_event_map;
use crate::http::record::{millis, size};
use crate::observe::{Edge, Preparation, Record};

/// A finished gRPC exchange.
pub(crate) struct GrpcRecord {
    pub(crate) head: RequestHead,
    pub(crate) request: RequestOutcome,
    pub(crate) response: ResponseOutcome,
    pub(crate) redact: Arc<[HeaderName]>,
    pub(crate) grpc: Arc<GrpcContext>,
    /// The error code of the client's `RST_STREAM`, when it reset the call before the
    /// response ended: the call's status, if the target sent none (see [`reset_call_status`]).
    pub(crate) client_reset: Option<u32>,
}

impl Record for GrpcRecord {
    fn ready(&self) -> Option<Preparation> {
        self.grpc.descriptors_ready()
    }

    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let GrpcRecord {
            head,
            request,
            response,
            redact,
            grpc,
            client_reset,
        } = *self;
        let schema: Option<Arc<Schema>> =
            grpc.descriptors.as_ref().and_then(|d| match d.lookup() {
                Lookup::Ready(fetched) => fetched.ok(),
                Lookup::Pending(_) => None,
            });
        let (service, method) = split_path(head.uri.path());
        let method_schema = schema.as_ref().and_then(|s| s.method(service, method));

        // The status is in the trailers, or in the headers of a trailers-only response.
        let status_source = match &response.trailers {
            Some(trailers) if trailers.contains_key("grpc-status") => trailers,
            _ => &response.headers,
        };
        let grpc_status = match (status_source.get("grpc-status"), client_reset) {
            (Some(raw), _) => event_status(&String::from_utf8_lossy(raw.as_bytes())).into_owned(),
            (None, Some(code)) => reset_call_status(code, &head.headers, &response),
            (None, None) => String::new(),
        };
        let grpc_message = status_source
            .get("grpc-message")
            .map(|v| decode_message(v.as_bytes()))
            .unwrap_or_default();

        let requests = Side::decode(
            &request.body,
            encoding(&head.headers),
            method_schema.as_ref(),
            Direction::Request,
            &grpc,
        );
        let responses = Side::decode(
            &response.body,
            encoding(&response.headers),
            method_schema.as_ref(),
            Direction::Response,
            &grpc,
        );
        let error = request.error.or(response.error).unwrap_or_default();
        let info = GrpcCallInfo {
            source: edge.source.clone(),
            target: edge.target.clone(),
            ingress: edge.ingress.clone(),
            service: service.to_string(),
            method: method.to_string(),
            grpc_status,
            grpc_message,
            latency_ms: millis(response.latency),
            request_size: size(request.body.total()),
            response_size: size(response.body.total()),
            request_metadata: to_event_map(&head.headers, &redact, true),
            response_metadata: response
                .trailers
                .as_ref()
                .map(|t| to_event_map(t, &redact, false))
                .unwrap_or_default(),
            request_body_truncated: request.body.total() > grpc.body_limit as u64,
            request_body: request.body.prefix(grpc.body_limit),
            response_body_truncated: response.body.total() > grpc.body_limit as u64,
            response_body: response.body.prefix(grpc.body_limit),
            request_body_decoded: requests.first_decoded(),
            response_body_decoded: responses.first_decoded(),
            response_headers: to_event_map(&response.headers, &redact, false),
            request_messages_truncated: request.body.truncated(),
            request_messages: requests.messages,
            response_messages_truncated: response.body.truncated(),
            response_messages: responses.messages,
            duration_ms: Some(millis(response.duration)),
            started_at: Some(head.started_at),
            probe: head.probe,
            error,
        };
        let mut event = Event::new(EventType::GrpcCallCompleted);
        event.grpc_call = Some(Box::new(info));
        event
    }
}

/// The status the client gave a call it reset before the target sent one, named as
/// upstream names statuses: `Canceled` for a cancel, `DeadlineExceeded` for one once the
/// request's `grpc-timeout` had passed, gRPC's mapping for other reset codes (see
/// [`reset_status`]).
fn reset_call_status(code: u32, request: &HeaderMap, response: &ResponseOutcome) -> String {
    let timeout = request
        .get("grpc-timeout")
        .and_then(|v| parse_timeout(v.as_bytes()));
    let status = reset_status(code, timeout, response.duration);
    event_status(&status.to_string()).into_owned()
}

/// The `grpc-encoding` of one direction.
fn encoding(headers: &HeaderMap) -> Option<&str> {
    headers.get("grpc-encoding").and_then(|v| v.to_str().ok())
}

/// One direction's decoded messages.
struct Side {
    messages: Vec<GrpcMessage>,
    /// The first message's JSON, unless it is empty (upstream never decodes an empty
    /// message).
    first: Option<serde_json::Value>,
}

impl Side {
    fn decode(
        body: &Capture,
        encoding: Option<&str>,
        method: Option<&MethodSchema>,
        direction: Direction,
        grpc: &GrpcContext,
    ) -> Side {
        let chunks: Vec<Bytes> = body.chunks().to_vec();
        let DecodedBody { messages, .. } =
            decode_body(chunks, encoding, method, direction, grpc.limits);
        let first = messages
            .first()
            .filter(|m| m.size > 0)
            .and_then(|m| m.json.clone());
        let messages = messages
            .into_iter()
            .map(|m| GrpcMessage {
                size: size(m.size as u64),
                compressed: m.compressed,
                decoded: m.json,
                decoding: match m.decoding {
                    Some(Decoding::Schema) => "reflection".to_string(),
                    Some(Decoding::Wire) => "wire".to_string(),
                    None => String::new(),
                },
                error: m.error.unwrap_or_default(),
            })
            .collect();
        Side { messages, first }
    }

    fn first_decoded(&self) -> Option<serde_json::Value> {
        self.first.clone()
    }
}
