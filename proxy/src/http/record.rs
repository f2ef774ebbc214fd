//! Records of the HTTP proxy and their events. `into_event` runs on the observer task: header
//! maps become canonical, redacted `map[string][]string`s and captured frames one buffer here,
//! never on the data path.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Uri, Version};
use rig_types::event::Headers;
use rig_types::{ConnectionInfo, Event, EventType, RequestInfo, Timestamp};

use super::exchange::{RequestHead, RequestOutcome, ResponseOutcome};
use super::headers::to_event_map;
use crate::observe::{Edge, Record};

/// A finished exchange → `request.completed`.
pub(crate) struct HttpRecord {
    pub(crate) head: RequestHead,
    pub(crate) request: RequestOutcome,
    pub(crate) response: ResponseOutcome,
    pub(crate) redact: Arc<[HeaderName]>,
}

impl Record for HttpRecord {
    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let path = event_path(&self.head.method, &self.head.uri);
        let request_headers = to_event_map(&self.head.headers, &self.redact, true);
        let response_headers = to_event_map(&self.response.headers, &self.redact, false);
        self.into_event_with(edge, path, request_headers, response_headers)
    }
}

impl HttpRecord {
    /// The event, with the recorded path and the request and response headers given in the
    /// event's shape (the raw path builds them straight from the heads' lines, and takes the
    /// path as sent, which `http::Uri` may not take; the URI and the maps in the record are
    /// not looked at).
    pub(crate) fn into_event_with(
        self,
        edge: &Edge,
        path: String,
        request_headers: Headers,
        response_headers: Headers,
    ) -> Event {
        let HttpRecord {
            head,
            request,
            response,
            redact: _,
        } = self;
        // A broken request body is the root cause of whatever the response side saw after it
        // (a failed upstream request, a client connection gone), so it wins.
        let error = request.error.or(response.error).unwrap_or_default();
        let info = RequestInfo {
            source: edge.source.clone(),
            target: edge.target.clone(),
            ingress: edge.ingress.clone(),
            method: head.method.to_string(),
            path,
            status_code: response.status,
            latency_ms: millis(response.latency),
            request_size: size(request.body.total()),
            response_size: size(response.body.total()),
            request_headers,
            request_body_truncated: request.body.truncated(),
            request_body: request.body.into_vec(),
            response_headers,
            response_body_truncated: response.body.truncated(),
            response_body: response.body.into_vec(),
            duration_ms: Some(millis(response.duration)),
            started_at: Some(head.started_at),
            http_version: version_name(head.version).to_string(),
            probe: head.probe,
            error,
            upgrade: response.upgrade.unwrap_or_default(),
        };
        let mut event = Event::new(EventType::RequestCompleted);
        event.request = Some(Box::new(info));
        event
    }
}

/// A request hyper rejected before the proxy saw it (it answered `status` itself) →
/// `request.completed` with no method or path, only the status and why.
pub(crate) struct MalformedRecord {
    pub(crate) status: u16,
    pub(crate) error: String,
    pub(crate) started_at: Timestamp,
}

impl Record for MalformedRecord {
    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let info = RequestInfo {
            source: edge.source.clone(),
            target: edge.target.clone(),
            ingress: edge.ingress.clone(),
            status_code: self.status,
            started_at: Some(self.started_at),
            duration_ms: Some(0.0),
            error: self.error,
            ..RequestInfo::default()
        };
        let mut event = Event::new(EventType::RequestCompleted);
        event.request = Some(Box::new(info));
        event
    }
}

/// The end of an upgraded connection's tunnel → `connection.closed` with `upgrade`.
pub(crate) struct TunnelRecord {
    pub(crate) upgrade: String,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) duration: Duration,
    pub(crate) error: Option<String>,
}

impl Record for TunnelRecord {
    fn into_event(self: Box<Self>, edge: &Edge) -> Event {
        let info = ConnectionInfo {
            source: edge.source.clone(),
            target: edge.target.clone(),
            ingress: edge.ingress.clone(),
            bytes_in: size(self.bytes_in),
            bytes_out: size(self.bytes_out),
            duration_ms: millis(self.duration),
            error: self.error.unwrap_or_default(),
            upgrade: self.upgrade,
            probe: false,
        };
        let mut event = Event::new(EventType::ConnectionClosed);
        event.connection = Some(Box::new(info));
        event
    }
}

/// The recorded path: path and query exactly as sent (not percent-decoded, unlike upstream,
/// so the raw encoding is never lost); the authority for `CONNECT`.
fn event_path(method: &Method, uri: &Uri) -> String {
    if method == Method::CONNECT {
        return uri.authority().map(|a| a.to_string()).unwrap_or_default();
    }
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string())
}

/// Milliseconds with microsecond resolution, as upstream records latencies.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// A byte count as the event's `i64`.
pub(crate) fn size(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_their_raw_encoding_and_query() {
        let uri: Uri = "/a%20b/c?x=1&y=%2F".parse().unwrap();
        assert_eq!(event_path(&Method::GET, &uri), "/a%20b/c?x=1&y=%2F");
        let uri: Uri = "http://api.test:8080/p?q".parse().unwrap();
        assert_eq!(event_path(&Method::GET, &uri), "/p?q");
        let uri: Uri = "db.test:5432".parse().unwrap();
        assert_eq!(event_path(&Method::CONNECT, &uri), "db.test:5432");
    }

    #[test]
    fn millis_have_microsecond_resolution() {
        assert_eq!(millis(Duration::from_nanos(1_734_999)), 1.734);
        assert_eq!(millis(Duration::from_secs(2)), 2000.0);
    }
}
