//! gRPC traffic: [`GrpcCall`] (one call seen by a rigd proxy) and [`GrpcFilter`].

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use rig_types::{Event, EventType, GrpcCallInfo, GRPC_STATUS_NAMES as STATUS_NAMES};

use super::{edge_words, millis, wanted, Observed, TrafficFilter};

/// One gRPC call observed by a proxy: every field of the `grpc.call.completed` event
/// (through [`Deref`]: `call.service`, `call.method`, `call.grpc_status`,
/// `call.request_body_decoded`, ...) plus its position in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcCall {
    /// Position in the environment's event log.
    pub seq: u64,
    /// The event's call details.
    pub info: GrpcCallInfo,
}

impl GrpcCall {
    /// The call of a `grpc.call.completed` event; `None` for other events.
    pub fn from_event(event: &Event) -> Option<GrpcCall> {
        if event.event_type != EventType::GrpcCallCompleted {
            return None;
        }
        Some(GrpcCall {
            seq: event.seq,
            info: event.grpc_call.as_deref()?.clone(),
        })
    }

    /// `pkg.Service/Method`.
    pub fn full_method(&self) -> String {
        format!("{}/{}", self.info.service, self.info.method)
    }

    /// Whether the call ended with status OK.
    pub fn is_ok(&self) -> bool {
        status_is(&self.info.grpc_status, "OK")
    }

    /// Time until the response headers arrived.
    pub fn latency(&self) -> Duration {
        millis(self.info.latency_ms)
    }

    /// rigd's own health checks: marked `probe` by the proxy, or (events of older proxies)
    /// `grpc.health.v1.Health/Check` with the probe marker in the request metadata.
    fn probe(&self) -> bool {
        self.info.probe
            || self.info.service == "grpc.health.v1.Health"
                && self.info.request_metadata.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("x-rig-probe") && v.iter().any(|v| v == "1")
                })
    }
}

impl Deref for GrpcCall {
    type Target = GrpcCallInfo;

    fn deref(&self) -> &GrpcCallInfo {
        &self.info
    }
}

impl Observed for GrpcCall {
    const KIND: &'static str = "gRPC calls";

    fn from_event(event: &Event) -> Option<GrpcCall> {
        GrpcCall::from_event(event)
    }

    fn is_probe(&self) -> bool {
        self.probe()
    }
}

/// `web → api  shop.v1.Orders/Place  NotFound "no such sku"  1.3ms`.
impl fmt::Display for GrpcCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.info.grpc_status.as_str() {
            "" => "(no status)",
            s => s,
        };
        write!(
            f,
            "{} → {}  {}  {status}",
            self.info.source,
            self.info.target,
            self.full_method()
        )?;
        if !self.info.grpc_message.is_empty() {
            write!(f, " {:?}", self.info.grpc_message)?;
        }
        write!(f, "  {:.1}ms", self.info.latency_ms)?;
        if self.probe() {
            f.write_str("  (readiness probe)")?;
        }
        Ok(())
    }
}

/// Whether the recorded status `got` (a name, or a decimal code from older logs) is `want`
/// (a name in any case and with or without underscores, e.g. `NOT_FOUND`, or a code).
fn status_is(got: &str, want: &str) -> bool {
    let canonical = |s: &str| -> String {
        match s.parse::<usize>() {
            Ok(code) => STATUS_NAMES
                .get(code)
                .map_or_else(|| s.to_string(), |n| n.to_ascii_lowercase()),
            Err(_) => {
                let lower = s.replace('_', "").to_ascii_lowercase();
                // Both spellings of code 1 are in use.
                if lower == "cancelled" {
                    "canceled".to_string()
                } else {
                    lower
                }
            }
        }
    };
    canonical(got) == canonical(want)
}

/// Which gRPC calls a query or assertion is about. Every condition set must hold; rigd's
/// health-check probes are left out unless [`GrpcFilter::include_probes`] is called.
///
/// ```
/// let reserve = rig::GrpcFilter::new().to("inventory").method("inv.v1.Stock/Reserve").status("OK");
/// assert_eq!(reserve.to_string(), "inv.v1.Stock/Reserve gRPC calls to inventory with status OK");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrpcFilter {
    source: Option<String>,
    target: Option<String>,
    ingress: Option<String>,
    service: Option<String>,
    method: Option<String>,
    status: Option<String>,
    probes: bool,
}

impl GrpcFilter {
    /// Every call (but readiness probes).
    pub fn new() -> GrpcFilter {
        GrpcFilter::default()
    }

    /// Made by `source` (a service name, or `~test`).
    pub fn from(mut self, source: impl Into<String>) -> GrpcFilter {
        self.source = Some(source.into());
        self
    }

    /// Made to service `target`.
    pub fn to(mut self, target: impl Into<String>) -> GrpcFilter {
        self.target = Some(target.into());
        self
    }

    /// On the edge from `source` to `target`.
    pub fn edge(self, source: impl Into<String>, target: impl Into<String>) -> GrpcFilter {
        self.from(source).to(target)
    }

    /// To the target's ingress `ingress`.
    pub fn ingress(mut self, ingress: impl Into<String>) -> GrpcFilter {
        self.ingress = Some(ingress.into());
        self
    }

    /// Of the fully qualified gRPC service `pkg.Service`.
    pub fn service(mut self, service: impl Into<String>) -> GrpcFilter {
        self.service = Some(service.into());
        self
    }

    /// Of this method: `Method`, or `pkg.Service/Method` (a leading `/` is allowed) which
    /// also sets the service.
    pub fn method(mut self, method: impl Into<String>) -> GrpcFilter {
        let method = method.into();
        let method = method.trim_start_matches('/');
        match method.rsplit_once('/') {
            Some((service, name)) => {
                self.service = Some(service.to_string());
                self.method = Some(name.to_string());
            }
            None => self.method = Some(method.to_string()),
        }
        self
    }

    /// Ended with this status: a name (`OK`, `NotFound`, also `NOT_FOUND`) or a code (`5`).
    pub fn status(mut self, status: impl Into<String>) -> GrpcFilter {
        self.status = Some(status.into());
        self
    }

    /// Also match rigd's health-check probes.
    pub fn include_probes(mut self) -> GrpcFilter {
        self.probes = true;
        self
    }

    /// Whether `call` satisfies every condition.
    pub fn matches(&self, call: &GrpcCall) -> bool {
        (self.probes || !call.probe())
            && wanted(&self.source, &call.info.source)
            && wanted(&self.target, &call.info.target)
            && wanted(&self.ingress, &call.info.ingress)
            && wanted(&self.service, &call.info.service)
            && wanted(&self.method, &call.info.method)
            && self
                .status
                .as_deref()
                .is_none_or(|s| status_is(&call.info.grpc_status, s))
    }
}

impl TrafficFilter for GrpcFilter {
    type Item = GrpcCall;

    fn matches(&self, item: &GrpcCall) -> bool {
        GrpcFilter::matches(self, item)
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

/// Reads like the condition: `inv.v1.Stock/Reserve gRPC calls to inventory with status OK`.
impl fmt::Display for GrpcFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        match (&self.service, &self.method) {
            (Some(s), Some(m)) => words.push(format!("{s}/{m}")),
            (Some(s), None) => words.push(format!("{s}/*")),
            (None, Some(m)) => words.push(format!("*/{m}")),
            (None, None) => {}
        }
        words.push("gRPC calls".into());
        edge_words(&mut words, &self.source, &self.target, &self.ingress);
        if let Some(s) = &self.status {
            words.push(format!("with status {s}"));
        }
        if self.probes {
            words.push("(probes included)".into());
        }
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(service: &str, method: &str, status: &str) -> GrpcCall {
        let event: Event = serde_json::from_value(json!({
            "seq": 32, "type": "grpc.call.completed", "timestamp": "2026-03-02T10:00:00.2Z",
            "grpc_call": {"source": "orders", "target": "inventory", "ingress": "default",
                          "service": service, "method": method, "grpc_status": status,
                          "grpc_message": "sku missing", "latency_ms": 0.912,
                          "request_size": 12, "response_size": 0,
                          "request_body_decoded": {"sku": "abc-1"}}
        }))
        .unwrap();
        GrpcCall::from_event(&event).unwrap()
    }

    #[test]
    fn converts_grpc_call_events() {
        let c = call("inv.v1.Stock", "Reserve", "NotFound");
        assert_eq!(c.seq, 32);
        assert_eq!(c.full_method(), "inv.v1.Stock/Reserve");
        assert_eq!(c.request_body_decoded, Some(json!({"sku": "abc-1"})));
        assert!(!c.is_ok());
        assert_eq!(
            c.to_string(),
            "orders → inventory  inv.v1.Stock/Reserve  NotFound \"sku missing\"  0.9ms"
        );
        let other: Event =
            serde_json::from_value(json!({"seq": 1, "type": "request.completed"})).unwrap();
        assert!(GrpcCall::from_event(&other).is_none());
    }

    #[test]
    fn every_condition_must_hold() {
        let c = call("inv.v1.Stock", "Reserve", "NotFound");
        assert!(GrpcFilter::new().matches(&c));
        assert!(GrpcFilter::new()
            .edge("orders", "inventory")
            .method("/inv.v1.Stock/Reserve")
            .status("NOT_FOUND")
            .matches(&c));
        assert!(GrpcFilter::new().method("Reserve").status("5").matches(&c));
        assert!(!GrpcFilter::new().method("inv.v1.Stock/Release").matches(&c));
        assert!(!GrpcFilter::new().service("inv.v1.Other").matches(&c));
        assert!(!GrpcFilter::new().status("OK").matches(&c));
        assert!(!GrpcFilter::new().from("web").matches(&c));
        assert!(call("a.B", "C", "0").is_ok());
        assert!(status_is("Cancelled", "CANCELED"));
        assert!(status_is("1", "canceled"));
    }

    #[test]
    fn health_probes_only_when_asked() {
        let mut c = call("grpc.health.v1.Health", "Check", "OK");
        assert!(GrpcFilter::new().matches(&c));
        c.info
            .request_metadata
            .insert("X-Rig-Probe".into(), vec!["1".into()]);
        assert!(!GrpcFilter::new().matches(&c));
        assert!(GrpcFilter::new().include_probes().matches(&c));
        assert!(c.to_string().ends_with("(readiness probe)"));
    }
}
