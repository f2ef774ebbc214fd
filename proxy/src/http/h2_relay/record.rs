//! The record of one relayed HTTP/2 stream. Header fields stay as decoded bytes until
//! [`RelayRecord::into_event`] runs on the observer task. A plain HTTP stream's header maps
//! go straight from the fields into the event's shape, as the raw path builds them from its
//! header lines; a gRPC call's fields become the header maps [`GrpcRecord`] reads. Either way
//! the event is the one the hyper path records (a test holds the two to it).

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, Uri, Version};
use rig_types::event::Headers;
use rig_types::{Event, Timestamp};

use super::fields::Fields;
use crate::grpc::{GrpcContext, GrpcRecord};
use crate::http::capture::Capture;
use crate::http::exchange::{RequestHead, RequestOutcome, ResponseOutcome};
use crate::http::headers::{is_probe, lines_are_probe, lines_to_event_map, to_event_map};
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
    /// The error code of the client's `RST_STREAM`, when it reset the stream before the
    /// response ended.
    pub(super) client_reset: Option<u32>,
}

impl Record for RelayRecord {
    fn ready(&self) -> Option<Preparation> {
        self.grpc.as_ref()?.descriptors_ready()
    }

    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let mut this = *self;
        if let Some(grpc) = this.grpc.take() {
            return this.into_grpc_event(grpc, edge);
        }
        // Plain HTTP: the event's header maps straight from the fields, as the raw path
        // builds them from its header lines; no header maps on the way.
        let request = this.request_fields.pseudo();
        let probe = lines_are_probe(this.request_fields.regular());
        let request_headers = lines_to_event_map(this.request_fields.regular(), &this.redact, true);
        let (status, response_headers) = match &this.answer {
            Answer::Nothing => (0, Headers::new()),
            Answer::Made(status, headers) => (*status, to_event_map(headers, &this.redact, false)),
            Answer::Forwarded(fields) => (
                fields.pseudo().status.unwrap_or_default(),
                lines_to_event_map(fields.regular(), &this.redact, false),
            ),
        };
        let path = request.event_path();
        let head = RequestHead {
            // Recorded as `path` below.
            uri: Uri::default(),
            method: request.method.unwrap_or_default(),
            version: Version::HTTP_2,
            started_at: this.started_at,
            probe,
            grpc: false,
            headers: HeaderMap::new(),
        };
        let response = ResponseOutcome {
            status,
            headers: HeaderMap::new(),
            body: this.response_body,
            latency: this.latency,
            duration: this.duration,
            error: this.response_error,
            upgrade: None,
            trailers: None,
        };
        let request = RequestOutcome {
            body: this.request_body,
            error: this.request_error,
        };
        let record = HttpRecord {
            head,
            request,
            response,
            redact: this.redact,
        };
        record.into_event_with(edge, path, request_headers, response_headers)
    }
}

impl RelayRecord {
    /// `grpc.call.completed`: the gRPC record reads metadata and status from header maps.
    fn into_grpc_event(self, grpc: Arc<GrpcContext>, edge: &Edge) -> Event {
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
            grpc: _,
            client_reset,
        } = self;
        let request = request_fields.into_parts();
        let head = RequestHead {
            uri: request.uri(),
            method: request.method.unwrap_or_default(),
            version: Version::HTTP_2,
            started_at,
            probe: is_probe(&request.headers),
            grpc: true,
            headers: request.headers,
        };
        let (status, headers) = status_and_headers(answer);
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
        Box::new(GrpcRecord {
            head,
            request,
            response,
            redact,
            grpc,
            client_reset,
        })
        .into_event(edge)
    }
}

/// The status and header map of what the client was answered with.
fn status_and_headers(answer: Answer<Fields>) -> (u16, HeaderMap) {
    match answer {
        Answer::Nothing => (0, HeaderMap::new()),
        Answer::Made(status, headers) => (status, headers),
        Answer::Forwarded(fields) => {
            let parts = fields.into_parts();
            (parts.status.unwrap_or_default(), parts.headers)
        }
    }
}

#[cfg(test)]
mod tests {
    use http::header::AUTHORIZATION;
    use http::HeaderValue;

    use super::*;
    use crate::http::h2_relay::fields::FieldsBuilder;

    fn fields(pairs: &[(&str, &[u8])]) -> Fields {
        let mut builder = FieldsBuilder::default();
        for (name, value) in pairs {
            builder.push(name.as_bytes(), value);
        }
        builder.finish()
    }

    fn record(
        request_fields: Fields,
        answer: Answer<Fields>,
        started_at: Timestamp,
    ) -> RelayRecord {
        RelayRecord {
            request_fields,
            request_body: Capture::default(),
            request_error: None,
            answer,
            response_body: Capture::default(),
            trailers: None,
            made_trailers: None,
            response_error: Some("reset".into()),
            started_at,
            latency: Duration::from_micros(1500),
            duration: Duration::from_micros(2500),
            redact: Arc::from([AUTHORIZATION]),
            grpc: None,
            client_reset: None,
        }
    }

    /// The event the hyper path's record gives for the same fields put in header maps.
    fn through_header_maps(record: RelayRecord, edge: &Edge) -> Event {
        let request = record.request_fields.into_parts();
        let (status, headers) = status_and_headers(record.answer);
        let record = HttpRecord {
            head: RequestHead {
                uri: request.uri(),
                method: request.method.unwrap_or_default(),
                version: Version::HTTP_2,
                started_at: record.started_at,
                probe: is_probe(&request.headers),
                grpc: false,
                headers: request.headers,
            },
            request: RequestOutcome {
                body: record.request_body,
                error: record.request_error,
            },
            response: ResponseOutcome {
                status,
                headers,
                body: record.response_body,
                latency: record.latency,
                duration: record.duration,
                error: record.response_error,
                upgrade: None,
                trailers: None,
            },
            redact: record.redact,
        };
        Box::new(record).into_event(edge)
    }

    /// Plain HTTP streams build the event's header maps straight from the decoded fields:
    /// the event is the one header maps would give, odd fields included (repeated and
    /// upper-case names, invalid names and values, `Host`, `HTTP2-Settings`, redaction,
    /// the probe mark).
    #[test]
    fn events_from_fields_are_the_events_from_header_maps() {
        let request = fields(&[
            (":method", b"POST"),
            (":scheme", b"http"),
            (":authority", b"api:80"),
            (":path", b"/a%20b?c=1"),
            ("host", b"api"),
            ("accept", b"x"),
            ("x-other", b"1"),
            ("Accept", b"y"),
            ("x-rig-probe", b" 1 "),
            ("authorization", b"Bearer secret"),
            ("http2-settings", b"AAA"),
            ("bad name", b"z"),
            (":unknown", b"z"),
            ("x-control", b"a\x01b"),
            ("x-latin", b"caf\xe9"),
        ]);
        fn response() -> Fields {
            fields(&[
                (":status", b"201"),
                ("content-type", b"text/plain"),
                ("set-cookie", b"a=1"),
                ("set-cookie", b"b=2"),
            ])
        }
        fn made() -> Answer<Fields> {
            let mut headers = HeaderMap::new();
            headers.insert("x-rig-proxy-error", HeaderValue::from_static("reset"));
            Answer::Made(502, headers)
        }
        let edge = Edge {
            source: "~test".into(),
            target: "api".into(),
            ingress: "http".into(),
        };
        let started_at = Timestamp::now();
        for answer in [|| Answer::Forwarded(response()), made, || Answer::Nothing] {
            let relayed = Box::new(record(request.clone(), answer(), started_at)).into_event(&edge);
            let expected =
                through_header_maps(record(request.clone(), answer(), started_at), &edge);
            assert_eq!(relayed.request, expected.request);
        }
        let relayed = Box::new(record(request, Answer::Forwarded(response()), started_at))
            .into_event(&edge)
            .request
            .unwrap();
        assert!(relayed.probe);
        assert_eq!(relayed.status_code, 201);
        assert_eq!(relayed.path, "/a%20b?c=1");
        assert_eq!(relayed.request_headers["Accept"], ["x", "y"]);
        assert_eq!(relayed.request_headers["Authorization"], ["[REDACTED]"]);
        assert_eq!(relayed.request_headers["X-Latin"], ["caf\u{fffd}"]);
        assert!(!relayed.request_headers.contains_key("Host"));
        assert!(!relayed.request_headers.contains_key("Http2-Settings"));
        assert!(!relayed.request_headers.contains_key("X-Control"));
        assert!(relayed
            .request_headers
            .keys()
            .all(|name| !name.contains(' ') && !name.starts_with(':')));
        assert_eq!(relayed.response_headers["Set-Cookie"], ["a=1", "b=2"]);
    }
}
