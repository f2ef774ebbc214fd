//! HTTP traffic: [`Request`] (one HTTP/1.1 or h2c exchange seen by a rigd proxy) and
//! [`RequestFilter`] (which requests an assertion is about).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rig_types::{Event, EventType};

use super::{edge_words, millis, wanted, Observed, TrafficFilter};

/// One HTTP request/response observed by a proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Position in the environment's event log.
    pub seq: u64,
    /// The caller: a service name, or `~test` for the test itself.
    pub source: String,
    /// The service called.
    pub target: String,
    /// The target's ingress.
    pub ingress: String,
    /// The HTTP method (`GET`, ...).
    pub method: String,
    /// The path with its query string, as sent.
    pub path: String,
    /// The response status (the proxy's own status when the exchange failed).
    pub status: u16,
    /// Time until the response headers arrived.
    pub latency: Duration,
    /// Request headers (secrets redacted by rigd).
    pub request_headers: BTreeMap<String, Vec<String>>,
    /// Response headers.
    pub response_headers: BTreeMap<String, Vec<String>>,
    /// The captured request body (capped by rigd, see `request_body_truncated`).
    pub request_body: Vec<u8>,
    /// The request body was longer than the capture.
    pub request_body_truncated: bool,
    /// The captured response body.
    pub response_body: Vec<u8>,
    /// The response body was longer than the capture.
    pub response_body_truncated: bool,
    /// Why the exchange failed (target down, reset, timeout); empty when it did not.
    pub error: String,
    /// A readiness probe sent by rigd rather than application traffic.
    pub probe: bool,
}

impl Request {
    /// The request from a `request.completed` event; `None` for other events.
    pub fn from_event(event: &Event) -> Option<Request> {
        if event.event_type != EventType::RequestCompleted {
            return None;
        }
        let r = event.request.as_deref()?;
        Some(Request {
            seq: event.seq,
            source: r.source.clone(),
            target: r.target.clone(),
            ingress: r.ingress.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            status: r.status_code,
            latency: millis(r.latency_ms),
            request_headers: r.request_headers.clone(),
            response_headers: r.response_headers.clone(),
            request_body: r.request_body.clone().unwrap_or_default(),
            request_body_truncated: r.request_body_truncated,
            response_body: r.response_body.clone().unwrap_or_default(),
            response_body_truncated: r.response_body_truncated,
            error: r.error.clone(),
            probe: r.probe,
        })
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    /// The captured request body as text (invalid UTF-8 replaced).
    pub fn request_text(&self) -> String {
        String::from_utf8_lossy(&self.request_body).into_owned()
    }

    /// The captured response body as text (invalid UTF-8 replaced).
    pub fn response_text(&self) -> String {
        String::from_utf8_lossy(&self.response_body).into_owned()
    }

    /// The captured request body decoded from JSON.
    ///
    /// # Errors
    /// The body is not JSON of type `T` (or was truncated by the capture cap).
    pub fn request_json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.request_body)
    }

    /// The captured response body decoded from JSON.
    ///
    /// # Errors
    /// The body is not JSON of type `T` (or was truncated by the capture cap).
    pub fn response_json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.response_body)
    }
}

impl Observed for Request {
    const KIND: &'static str = "HTTP requests";

    fn from_event(event: &Event) -> Option<Request> {
        Request::from_event(event)
    }

    fn is_probe(&self) -> bool {
        self.probe
    }
}

/// `~test → api  GET /orders?id=1  200  1.3ms`.
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} → {}  {} {}  {}  {:.1}ms",
            self.source,
            self.target,
            self.method,
            self.path,
            self.status,
            self.latency.as_secs_f64() * 1000.0
        )?;
        if !self.error.is_empty() {
            write!(f, "  error: {}", self.error)?;
        }
        if self.probe {
            f.write_str("  (readiness probe)")?;
        }
        Ok(())
    }
}

/// Which requests a query or assertion is about. Every condition set must hold; readiness
/// probes are left out unless [`RequestFilter::include_probes`] is called.
///
/// ```
/// let orders = rig::RequestFilter::new().from("~test").to("api").method("POST").path("/orders");
/// assert_eq!(orders.to_string(), "POST /orders requests from ~test to api");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFilter {
    source: Option<String>,
    target: Option<String>,
    ingress: Option<String>,
    method: Option<String>,
    path: Option<String>,
    path_prefix: Option<String>,
    status: Option<u16>,
    probes: bool,
}

impl RequestFilter {
    /// Every request (but readiness probes).
    pub fn new() -> RequestFilter {
        RequestFilter::default()
    }

    /// Sent by `source` (a service name, or `~test` for the test's own calls).
    pub fn from(mut self, source: impl Into<String>) -> RequestFilter {
        self.source = Some(source.into());
        self
    }

    /// Sent to service `target`.
    pub fn to(mut self, target: impl Into<String>) -> RequestFilter {
        self.target = Some(target.into());
        self
    }

    /// On the edge from `source` to `target`.
    pub fn edge(self, source: impl Into<String>, target: impl Into<String>) -> RequestFilter {
        self.from(source).to(target)
    }

    /// To the target's ingress `ingress`.
    pub fn ingress(mut self, ingress: impl Into<String>) -> RequestFilter {
        self.ingress = Some(ingress.into());
        self
    }

    /// With this HTTP method (case-insensitive).
    pub fn method(mut self, method: impl Into<String>) -> RequestFilter {
        self.method = Some(method.into().to_ascii_uppercase());
        self
    }

    /// With exactly this path. A path without `?` is compared with the request's path
    /// without its query string; one with `?` with the whole.
    pub fn path(mut self, path: impl Into<String>) -> RequestFilter {
        self.path = Some(path.into());
        self
    }

    /// With a path starting with `prefix`.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> RequestFilter {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Answered with this status.
    pub fn status(mut self, status: u16) -> RequestFilter {
        self.status = Some(status);
        self
    }

    /// Also match rigd's readiness probes.
    pub fn include_probes(mut self) -> RequestFilter {
        self.probes = true;
        self
    }

    /// Whether `request` satisfies every condition.
    pub fn matches(&self, request: &Request) -> bool {
        (self.probes || !request.probe)
            && wanted(&self.source, &request.source)
            && wanted(&self.target, &request.target)
            && wanted(&self.ingress, &request.ingress)
            && self
                .method
                .as_deref()
                .is_none_or(|m| request.method.eq_ignore_ascii_case(m))
            && self.path.as_deref().is_none_or(|p| {
                if p.contains('?') {
                    request.path == p
                } else {
                    request.path_only() == p
                }
            })
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| request.path.starts_with(p))
            && self.status.is_none_or(|s| s == request.status)
    }
}

/// Reads like the condition: `GET /orders requests from ~test to api with status 200`.
impl fmt::Display for RequestFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        match (&self.method, &self.path, &self.path_prefix) {
            (m, Some(p), _) => words.push(format!(
                "{}{p}",
                m.as_deref().map_or(String::new(), |m| format!("{m} "))
            )),
            (m, None, Some(p)) => words.push(format!(
                "{}{p}*",
                m.as_deref().map_or(String::new(), |m| format!("{m} "))
            )),
            (Some(m), None, None) => words.push(m.clone()),
            (None, None, None) => {}
        }
        words.push("requests".into());
        edge_words(&mut words, &self.source, &self.target, &self.ingress);
        if let Some(s) = self.status {
            words.push(format!("with status {s}"));
        }
        if self.probes {
            words.push("(probes included)".into());
        }
        f.write_str(&words.join(" "))
    }
}

impl TrafficFilter for RequestFilter {
    type Item = Request;

    fn matches(&self, item: &Request) -> bool {
        RequestFilter::matches(self, item)
    }

    fn services(&self) -> Vec<&str> {
        super::named(&self.source, &self.target)
    }

    fn target_ingress(&self) -> Option<(Option<&str>, &str)> {
        super::target_ingress(&self.target, &self.ingress)
    }

    fn includes_probes(&self) -> bool {
        self.probes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(source: &str, target: &str, method: &str, path: &str, status: u16) -> Request {
        let event: Event = serde_json::from_value(json!({
            "seq": 7, "type": "request.completed", "timestamp": "2026-01-01T00:00:00Z",
            "request": {"source": source, "target": target, "ingress": "default",
                        "method": method, "path": path, "status_code": status,
                        "latency_ms": 1.25, "request_size": 0, "response_size": 2,
                        "response_body": "aGk="}
        }))
        .unwrap();
        Request::from_event(&event).unwrap()
    }

    #[test]
    fn converts_request_completed_events() {
        let r = request("~test", "api", "GET", "/orders?id=1", 200);
        assert_eq!(r.seq, 7);
        assert_eq!(r.path_only(), "/orders");
        assert_eq!(r.response_text(), "hi");
        assert_eq!(r.latency, Duration::from_micros(1250));
        assert_eq!(r.to_string(), "~test → api  GET /orders?id=1  200  1.2ms");
        let other: Event =
            serde_json::from_value(json!({"seq": 1, "type": "service.ready"})).unwrap();
        assert!(Request::from_event(&other).is_none());
    }

    #[test]
    fn bodies_decode_from_json() {
        // `{"sku":"a1","qty":2}` and `{"id":9}` as rigd logs them (base64).
        let event: Event = serde_json::from_value(json!({
            "seq": 3, "type": "request.completed", "timestamp": "2026-01-01T00:00:00Z",
            "request": {"source": "~test", "target": "api", "ingress": "default",
                        "method": "POST", "path": "/orders", "status_code": 201,
                        "latency_ms": 1.0, "request_size": 20, "response_size": 8,
                        "request_body": "eyJza3UiOiJhMSIsInF0eSI6Mn0=",
                        "response_body": "eyJpZCI6OX0="}
        }))
        .unwrap();
        let r = Request::from_event(&event).unwrap();
        let order: serde_json::Value = r.request_json().unwrap();
        assert_eq!(order, json!({"sku": "a1", "qty": 2}));
        let created: serde_json::Value = r.response_json().unwrap();
        assert_eq!(created["id"], 9);
        assert!(r.request_json::<Vec<u8>>().is_err(), "not that type");
    }

    #[test]
    fn every_condition_must_hold() {
        let r = request("~test", "api", "GET", "/orders?id=1", 200);
        assert!(RequestFilter::new().matches(&r));
        assert!(RequestFilter::new()
            .edge("~test", "api")
            .method("get")
            .path("/orders")
            .status(200)
            .matches(&r));
        assert!(RequestFilter::new().path("/orders?id=1").matches(&r));
        assert!(RequestFilter::new()
            .path_prefix("/ord")
            .ingress("default")
            .matches(&r));
        assert!(!RequestFilter::new().path("/orders?id=2").matches(&r));
        assert!(!RequestFilter::new().from("web").matches(&r));
        assert!(!RequestFilter::new().to("web").matches(&r));
        assert!(!RequestFilter::new().method("POST").matches(&r));
        assert!(!RequestFilter::new().status(500).matches(&r));
        assert!(!RequestFilter::new().ingress("admin").matches(&r));
    }

    #[test]
    fn probes_only_when_asked() {
        let mut r = request("~test", "api", "GET", "/", 200);
        r.probe = true;
        assert!(!RequestFilter::new().matches(&r));
        assert!(RequestFilter::new().include_probes().matches(&r));
        assert!(r.to_string().ends_with("(readiness probe)"));
    }

    #[test]
    fn filters_describe_themselves() {
        assert_eq!(RequestFilter::new().to_string(), "requests");
        assert_eq!(
            RequestFilter::new()
                .to("api")
                .method("get")
                .status(404)
                .to_string(),
            "GET requests to api with status 404"
        );
        assert_eq!(
            RequestFilter::new()
                .path_prefix("/v1/")
                .from("web")
                .to_string(),
            "/v1/* requests from web"
        );
    }
}
