//! The record of a raw-path exchange: the message heads exactly as they passed (copied out of
//! the read buffers) plus the captures and timings. Turning the heads into the recorded shape
//! (header maps without hop-by-hop headers, probe flag, method and path) happens in
//! [`Record::into_event`] on the observer task, straight from the heads' lines, and the event
//! is assembled by the same [`HttpRecord`] the hyper path uses, so both paths produce the same
//! event.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use httparse::{Header, ParserConfig};
use rig_types::event::Headers;
use rig_types::{Event, Timestamp};

use super::parse::{response_parser, MAX_HEADERS, MAX_RESPONSE_HEADERS};
use crate::http::capture::Capture;
use crate::http::exchange::{RequestHead, RequestOutcome, ResponseOutcome};
use crate::http::headers::{
    is_probe, lines_are_probe, lines_to_event_map, strip_hop_by_hop, to_event_map, value_string,
};
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
        let request = parse_request(&request_head, &redact);
        let (status, response_headers) = match answer {
            Answer::Nothing => (0, Headers::new()),
            Answer::Made(status, headers) => (status, to_event_map(&headers, &redact, false)),
            Answer::Forwarded(head) => parse_response(&head, &redact),
        };
        let record = HttpRecord {
            head: RequestHead {
                method: request.method,
                // Recorded as `request.path` below.
                uri: Uri::default(),
                version: Version::HTTP_11,
                started_at,
                probe: request.probe,
                grpc: false,
                // Given to the event as it is below.
                headers: HeaderMap::new(),
            },
            request: RequestOutcome {
                body: request_body,
                error: request_error,
            },
            response: ResponseOutcome {
                status,
                headers: HeaderMap::new(),
                body: response_body,
                latency,
                duration,
                error: response_error,
                upgrade: None,
                trailers: None,
            },
            redact,
        };
        record.into_event_with(edge, request.path, request.headers, response_headers)
    }
}

/// What the event records of a request head.
struct RequestParts {
    method: Method,
    /// The request target as sent (the raw path takes origin-form targets of visible ASCII
    /// only, so the text is the bytes), also when `http::Uri` would not take it (`"` in
    /// the query, `<`, `>`, `` ` ``).
    path: String,
    /// In the event's shape.
    headers: Headers,
    probe: bool,
}

/// Method, target and headers of a request head the raw path took (so it parses).
fn parse_request(head: &Bytes, redact: &[HeaderName]) -> RequestParts {
    let mut slots = [MaybeUninit::<Header<'_>>::uninit(); MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let _ =
        ParserConfig::default().parse_request_with_uninit_headers(&mut request, head, &mut slots);
    let method = request
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or_default();
    let path = request.path.map_or_else(|| "/".to_string(), value_string);
    let (headers, probe) = event_headers(head, request.headers, redact, true);
    RequestParts {
        method,
        path,
        headers,
        probe,
    }
}

/// Status and headers of a response head the raw path forwarded (so it parses).
fn parse_response(head: &Bytes, redact: &[HeaderName]) -> (u16, Headers) {
    let mut slots = [MaybeUninit::<Header<'_>>::uninit(); MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let _ = response_parser().parse_response_with_uninit_headers(&mut response, head, &mut slots);
    let (headers, _) = event_headers(head, response.headers, redact, false);
    (response.code.unwrap_or_default(), headers)
}

/// The header lines of `head` in the event's shape, hop-by-hop headers removed as hyper's
/// path removes them ([`strip_hop_by_hop`]), and whether they mark a readiness probe.
///
/// The usual head (hop-by-hop headers at most `Connection: keep-alive|close`, `Keep-Alive`,
/// `Transfer-Encoding`) goes straight from its lines to the event's map; anything else is
/// put in a [`HeaderMap`] and stripped by [`strip_hop_by_hop`] itself, so both give the same.
fn event_headers(
    head: &Bytes,
    lines: &[Header<'_>],
    redact: &[HeaderName],
    skip_host: bool,
) -> (Headers, bool) {
    let simple = lines.iter().all(|line| {
        let name = line.name.as_bytes();
        !(name.eq_ignore_ascii_case(b"te") || name.eq_ignore_ascii_case(b"close"))
            && (!name.eq_ignore_ascii_case(b"connection") || only_keep_alive_or_close(line.value))
    });
    if !simple {
        let map = header_map(head, lines);
        return (to_event_map(&map, redact, skip_host), is_probe(&map));
    }
    let probe = lines_are_probe(lines.iter().map(|line| (line.name, line.value)));
    let kept = lines
        .iter()
        .filter(|line| !is_dropped_hop_by_hop(line.name.as_bytes()))
        .map(|line| (line.name, line.value));
    (lines_to_event_map(kept, redact, skip_host), probe)
}

/// The header lines as hyper would have put them in a map (names lower-cased, values as
/// sent, sharing `head`, in order), hop-by-hop headers removed by [`strip_hop_by_hop`].
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
    strip_hop_by_hop(&mut map, false);
    map
}

/// Whether a `Connection` value lists only `keep-alive` and `close`.
fn only_keep_alive_or_close(value: &[u8]) -> bool {
    value.split(|&b| b == b',').all(|token| {
        let token = token.trim_ascii();
        token.eq_ignore_ascii_case(b"keep-alive") || token.eq_ignore_ascii_case(b"close")
    })
}

/// The hop-by-hop headers [`strip_hop_by_hop`] removes whatever their value (`TE` aside).
fn is_dropped_hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"http2-settings",
        b"transfer-encoding",
        b"upgrade",
    ]
    .iter()
    .any(|hop| name.eq_ignore_ascii_case(hop))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map every head gets, by the general path: all lines, then `strip_hop_by_hop`.
    fn stripped(head: &Bytes) -> HeaderMap {
        let mut slots = [MaybeUninit::<Header<'_>>::uninit(); MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let _ = ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            head,
            &mut slots,
        );
        let mut map = HeaderMap::new();
        for line in response.headers.iter() {
            map.append(
                HeaderName::from_bytes(line.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(line.value).unwrap(),
            );
        }
        strip_hop_by_hop(&mut map, false);
        map
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_as_strip_hop_by_hop_drops_them() {
        let redact = [HeaderName::from_static("x-secret")];
        let heads: [&[u8]; 8] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nX-Kept: k\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nClose: odd\r\nUpgrade: h2c\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTE: trailers, gzip\r\nProxy-Connection: x\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nHTTP2-Settings: AAA\r\nDate: today\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Secret: a\r\nx-SECRET: b\r\nVia: 1\r\nvia: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Bin: \xff\xfe\r\nwww-authenticate: x\r\nConnection: Close\r\n\r\n",
        ];
        for head in heads {
            let head = Bytes::from_static(head);
            let (_, headers) = parse_response(&head, &redact);
            let expected = to_event_map(&stripped(&head), &redact, false);
            assert_eq!(headers, expected, "{}", String::from_utf8_lossy(&head));
        }
    }

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
