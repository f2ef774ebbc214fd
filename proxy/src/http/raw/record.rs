//! The record of a raw-path exchange: the message heads exactly as they passed (slices of the
//! read buffers) plus the captures and timings. Turning the heads into the recorded shape
//! (header maps without hop-by-hop headers, probe flag, method and path) happens in
//! [`Record::into_event`] on the observer task, through the same [`HttpRecord`] the hyper path
//! uses, so both paths produce the same event.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use httparse::{Header, ParserConfig};
use rig_types::{Event, Timestamp};

use super::parse::MAX_HEADERS;
use crate::http::capture::Capture;
use crate::http::exchange::{RequestHead, RequestOutcome, ResponseOutcome};
use crate::http::headers::{is_probe, strip_hop_by_hop};
use crate::http::record::HttpRecord;
use crate::observe::{Edge, Record};

/// What the client was answered with; `Head` is how the path keeps a forwarded response head
/// (its bytes on the raw path, its decoded fields on the h2c relay).
#[derive(Default)]
pub(crate) enum Answer<Head = Bytes> {
    /// Nothing (status `0`).
    #[default]
    Nothing,
    /// The target's final response head, as forwarded.
    Forwarded(Head),
    /// A response the proxy made (a failure), with its status and headers.
    Made(u16, HeaderMap),
}

/// A finished raw-path exchange → `request.completed`.
pub(crate) struct RawRecord {
    /// The request head as forwarded.
    pub(crate) request_head: Bytes,
    pub(crate) request_body: Capture,
    pub(crate) request_error: Option<String>,
    pub(crate) answer: Answer,
    pub(crate) response_body: Capture,
    pub(crate) response_error: Option<String>,
    pub(crate) started_at: Timestamp,
    /// Arrival to the response head.
    pub(crate) latency: Duration,
    /// Arrival to the end of the response.
    pub(crate) duration: Duration,
    pub(crate) redact: Arc<[HeaderName]>,
}

impl Record for RawRecord {
    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let RawRecord {
            request_head,
            request_body,
            request_error,
            answer,
            response_body,
            response_error,
            started_at,
            latency,
            duration,
            redact,
        } = *self;
        let (method, uri, mut headers) = parse_request(&request_head);
        strip_hop_by_hop(&mut headers, false);
        let head = RequestHead {
            method,
            uri,
            version: Version::HTTP_11,
            started_at,
            probe: is_probe(&headers),
            grpc: false,
            headers,
        };
        let (status, headers) = match answer {
            Answer::Nothing => (0, HeaderMap::new()),
            Answer::Made(status, headers) => (status, headers),
            Answer::Forwarded(head) => {
                let (status, mut headers) = parse_response(&head);
                strip_hop_by_hop(&mut headers, false);
                (status, headers)
            }
        };
        let record = HttpRecord {
            head,
            request: RequestOutcome {
                body: request_body,
                error: request_error,
            },
            response: ResponseOutcome {
                status,
                headers,
                body: response_body,
                latency,
                duration,
                error: response_error,
                upgrade: None,
                trailers: None,
            },
            redact,
        };
        Box::new(record).into_event(edge)
    }
}

/// Method, target and headers of a request head the raw path took (so it parses).
fn parse_request(head: &Bytes) -> (Method, Uri, HeaderMap) {
    let mut slots = [MaybeUninit::<Header<'_>>::uninit(); MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let _ =
        ParserConfig::default().parse_request_with_uninit_headers(&mut request, head, &mut slots);
    let method = request
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or_default();
    let uri = request
        .path
        .and_then(|p| Uri::from_maybe_shared(head.slice_ref(p.as_bytes())).ok())
        .unwrap_or_default();
    (method, uri, header_map(head, request.headers))
}

/// Status and headers of a response head the raw path forwarded (so it parses).
fn parse_response(head: &Bytes) -> (u16, HeaderMap) {
    let mut slots = [MaybeUninit::<Header<'_>>::uninit(); MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let _ =
        ParserConfig::default().parse_response_with_uninit_headers(&mut response, head, &mut slots);
    (
        response.code.unwrap_or_default(),
        header_map(head, response.headers),
    )
}

/// The header lines as hyper would have put them in a map: names lower-cased, values as
/// sent (sharing `head`), in order.
fn header_map(head: &Bytes, lines: &[Header<'_>]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(lines.len());
    for line in lines {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line.name.as_bytes()),
            HeaderValue::from_maybe_shared(head.slice_ref(line.value)),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_become_what_hyper_would_have_recorded() {
        let head = Bytes::from_static(
            b"POST /a%20b?x=1 HTTP/1.1\r\nHost: api\r\nConnection: keep-alive\r\n\
              X-Rig-Probe: 1\r\nAccept: a\r\naccept: b\r\nAuthorization: secret\r\n\r\n",
        );
        let record = RawRecord {
            request_head: head,
            request_body: Capture::default(),
            request_error: None,
            answer: Answer::Forwarded(Bytes::from_static(
                b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
            )),
            response_body: Capture::default(),
            response_error: None,
            started_at: Timestamp::now(),
            latency: Duration::from_millis(1),
            duration: Duration::from_millis(2),
            redact: Arc::from([HeaderName::from_static("authorization")]),
        };
        let event = Box::new(record).into_event(&Edge::default());
        let r = event.request.unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/a%20b?x=1"));
        assert_eq!(r.status_code, 201);
        assert!(r.probe);
        assert_eq!(r.request_headers["Accept"], ["a", "b"]);
        assert_eq!(r.request_headers["Authorization"], ["[REDACTED]"]);
        assert!(!r.request_headers.contains_key("Host"));
        assert!(!r.request_headers.contains_key("Connection"));
        assert_eq!(r.response_headers.keys().collect::<Vec<_>>(), ["X-A"]);
        assert_eq!(r.http_version, "HTTP/1.1");
    }
}
