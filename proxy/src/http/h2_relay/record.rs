//! The record of one relayed HTTP/2 stream. Header fields stay as decoded bytes until
//! [`RelayRecord::into_event`] runs on the observer task and hands the same
//! [`HttpRecord`] (or [`GrpcRecord`]) the hyper path builds, so both paths produce the same
//! event.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, Version};
use rig_types::{Event, Timestamp};

use super::fields::Fields;
use crate::grpc::{GrpcContext, GrpcRecord};
use crate::http::capture::Capture;
use crate::http::exchange::{RequestHead, RequestOutcome, ResponseOutcome};
use crate::http::headers::is_probe;
use crate::http::raw::Answer;
use crate::http::record::HttpRecord;
use crate::observe::{Edge, Preparation, Record};

/// A finished stream → `request.completed` (or `grpc.call.completed`).
pub(super) struct RelayRecord {
    pub(super) request_fields: Fields,
    pub(super) request_body: Capture,
    pub(super) request_error: Option<String>,
    pub(super) answer: Answer<Fields>,
    pub(super) response_body: Capture,
    /// The response's trailers, for gRPC calls.
    pub(super) trailers: Option<Fields>,
    /// Trailers the proxy sent in place of the target's.
    pub(super) made_trailers: Option<HeaderMap>,
    pub(super) response_error: Option<String>,
    pub(super) started_at: Timestamp,
    /// Arrival to the response head.
    pub(super) latency: Duration,
    /// Arrival to the end of the response.
    pub(super) duration: Duration,
    pub(super) redact: Arc<[HeaderName]>,
    /// Set for a gRPC call.
    pub(super) grpc: Option<Arc<GrpcContext>>,
}

impl Record for RelayRecord {
    fn ready(&self) -> Option<Preparation> {
        self.grpc.as_ref()?.descriptors_ready()
    }

    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let RelayRecord {
            request_fields,
            request_body,
            request_error,
            answer,
            response_body,
            trailers,
            made_trailers,
            response_error,
            started_at,
            latency,
            duration,
            redact,
            grpc,
        } = *self;
        let request = request_fields.into_parts();
        let head = RequestHead {
            uri: request.uri(),
            method: request.method.unwrap_or_default(),
            version: Version::HTTP_2,
            started_at,
            probe: is_probe(&request.headers),
            grpc: grpc.is_some(),
            headers: request.headers,
        };
        let (status, headers) = match answer {
            Answer::Nothing => (0, HeaderMap::new()),
            Answer::Made(status, headers) => (status, headers),
            Answer::Forwarded(fields) => {
                let parts = fields.into_parts();
                (parts.status.unwrap_or_default(), parts.headers)
            }
        };
        let request = RequestOutcome {
            body: request_body,
            error: request_error,
        };
        let response = ResponseOutcome {
            status,
            headers,
            body: response_body,
            latency,
            duration,
            error: response_error,
            upgrade: None,
            trailers: made_trailers.or_else(|| trailers.map(|fields| fields.into_parts().headers)),
        };
        match grpc {
            Some(grpc) => Box::new(GrpcRecord {
                head,
                request,
                response,
                redact,
                grpc,
            })
            .into_event(edge),
            None => Box::new(HttpRecord {
                head,
                request,
                response,
                redact,
            })
            .into_event(edge),
        }
    }
}
