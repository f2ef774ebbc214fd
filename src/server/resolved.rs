//! The point-in-time view of an environment returned by `GET /environments/{id}`.
//!
//! Built from a scan of the lifecycle events against the (transformed) spec:
//!
//! - only non-injected services appear (no `~test`, no proxies);
//! - `status` starts `pending` and follows the service's latest `service.starting`,
//!   `.healthy`, `.ready`, `.failed`, `.stopping` or `.stopped` event;
//! - `ingresses` are the endpoints of the service's `ingress.published` events (a later event
//!   replaces an earlier one);
//! - `egresses` are, for each egress of the service, the published endpoint of the egress's
//!   target ingress.
//!
//! **Egresses in observe mode (our fix, architecture 4.5).** The observe transform retargets
//! every egress to an injected proxy node. Upstream only followed egresses whose target was a
//! non-injected service, so in observe mode every `egresses` map was empty. Here the target may
//! be a proxy: the egress then shows the proxy's published endpoint, which is the address the
//! service was really given and connects to (its attributes are the target's, resolved against
//! the proxy address).
//!
//! `test_ingresses` (ours) are the addresses `environment.up` gave the test: in observe mode,
//! the proxies in front of each ingress.
//!
//! Attribute templates (`${HOST}`, `${PORT}`, `${HOSTPORT}`) are resolved here, at the output
//! boundary. Empty maps serialise as `null`, as upstream.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rig_types::{
    Endpoint, Environment, Event, EventType, ResolvedEndpoint, ResolvedEnvironment,
    ResolvedService, ServiceStatus,
};

use crate::spec::go_quote;
use crate::wiring::resolve_endpoint;

/// A template in a published endpoint could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("resolve attributes: service {service} {section}: endpoint {endpoint}: {message}")]
pub(crate) struct ResolveError {
    service: String,
    section: &'static str,
    endpoint: String,
    message: String,
}

/// Builds the resolved view of environment `id` from its spec and lifecycle events.
pub(crate) fn resolve_environment(
    id: &str,
    spec: &Environment,
    lifecycle: &[Arc<Event>],
) -> Result<ResolvedEnvironment, ResolveError> {
    let mut status: BTreeMap<&str, ServiceStatus> = spec
        .services
        .iter()
        .filter(|(_, s)| !s.injected)
        .map(|(name, _)| (name.as_str(), ServiceStatus::Pending))
        .collect();
    // Published endpoints of every service, injected ones included (egresses may target
    // proxies).
    let mut published: HashMap<&str, BTreeMap<&str, &Endpoint>> = HashMap::new();

    let mut failed = String::new();
    for event in lifecycle {
        if event.event_type == EventType::EnvironmentFailing && failed.is_empty() {
            failed = event.error.clone();
        }
        if event.service.is_empty() {
            continue;
        }
        if event.event_type == EventType::IngressPublished {
            if let (Some(endpoint), false) = (&event.endpoint, event.ingress.is_empty()) {
                published
                    .entry(event.service.as_str())
                    .or_default()
                    .insert(event.ingress.as_str(), endpoint);
            }
            continue;
        }
        if let (Some(slot), Some(new)) = (
            status.get_mut(event.service.as_str()),
            status_for(&event.event_type),
        ) {
            // A failed service stays failed while rigd stops it (rig-rs; upstream showed
            // `stopped`, hiding which service failed).
            if *slot != ServiceStatus::Failed {
                *slot = new;
            }
        }
    }

    let mut services = BTreeMap::new();
    for (name, service) in spec.services.iter().filter(|(_, s)| !s.injected) {
        let name = name.as_str();
        let ingresses = match published.get(name) {
            Some(eps) => resolve_all(name, "ingresses", eps.iter().map(|(k, v)| (*k, *v)))?,
            None => BTreeMap::new(),
        };
        let egress_targets = service.egresses.iter().filter_map(|(egress, e)| {
            published
                .get(e.service.as_str())
                .and_then(|eps| eps.get(e.ingress.as_str()))
                .map(|ep| (egress.as_str(), *ep))
        });
        let egresses = resolve_all(name, "egresses", egress_targets)?;
        services.insert(
            name.to_string(),
            ResolvedService {
                ingresses: non_empty(ingresses),
                egresses: non_empty(egresses),
                status: status.get(name).copied().unwrap_or_default(),
            },
        );
    }

    let test_ingresses = lifecycle
        .iter()
        .rfind(|e| e.event_type == EventType::EnvironmentUp)
        .map(|up| up.ingresses.clone())
        .unwrap_or_default();
    Ok(ResolvedEnvironment {
        id: id.to_string(),
        name: spec.name.clone(),
        services,
        test_ingresses,
        failed,
    })
}

/// The status an event type sets, if it sets one.
fn status_for(event_type: &EventType) -> Option<ServiceStatus> {
    Some(match event_type {
        EventType::ServiceStarting => ServiceStatus::Starting,
        EventType::ServiceHealthy => ServiceStatus::Healthy,
        EventType::ServiceReady => ServiceStatus::Ready,
        EventType::ServiceFailed => ServiceStatus::Failed,
        EventType::ServiceStopping => ServiceStatus::Stopping,
        EventType::ServiceStopped => ServiceStatus::Stopped,
        _ => return None,
    })
}

fn resolve_all<'a>(
    service: &str,
    section: &'static str,
    endpoints: impl Iterator<Item = (&'a str, &'a Endpoint)>,
) -> Result<BTreeMap<String, ResolvedEndpoint>, ResolveError> {
    endpoints
        .map(|(name, endpoint)| {
            resolve_endpoint(endpoint)
                .map(|resolved| (name.to_string(), resolved))
                .map_err(|e| ResolveError {
                    service: go_quote(service),
                    section,
                    endpoint: go_quote(name),
                    message: e.to_string(),
                })
        })
        .collect()
}

fn non_empty(
    map: BTreeMap<String, ResolvedEndpoint>,
) -> Option<BTreeMap<String, ResolvedEndpoint>> {
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig_types::Protocol;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> Environment {
        serde_json::from_value(value).unwrap()
    }

    fn published(service: &str, ingress: &str, endpoint: Endpoint) -> Arc<Event> {
        Arc::new(Event {
            ingress: ingress.into(),
            endpoint: Some(Box::new(endpoint)),
            ..Event::for_service(EventType::IngressPublished, service)
        })
    }

    fn event(t: EventType, service: &str) -> Arc<Event> {
        Arc::new(Event::for_service(t, service))
    }

    #[test]
    fn status_follows_the_latest_status_event() {
        let env = spec(json!({"name": "e", "services": {
            "api": {"type": "process"}, "db": {"type": "process"}, "idle": {"type": "process"},
            "~test": {"type": "test", "injected": true}
        }}));
        let events = vec![
            event(EventType::ServiceStarting, "api"),
            event(EventType::ServiceHealthy, "api"),
            event(EventType::ServiceReady, "api"),
            event(EventType::WiringResolved, "api"),
            event(EventType::ServiceStarting, "db"),
            event(EventType::ServiceFailed, "db"),
            event(EventType::ServiceStarting, "~test"),
        ];
        let view = resolve_environment("id1", &env, &events).unwrap();
        assert_eq!(view.id, "id1");
        assert_eq!(view.name, "e");
        assert_eq!(
            view.services.keys().collect::<Vec<_>>(),
            ["api", "db", "idle"]
        );
        assert_eq!(view.services["api"].status, ServiceStatus::Ready);
        assert_eq!(view.services["db"].status, ServiceStatus::Failed);
        assert_eq!(view.services["idle"].status, ServiceStatus::Pending);
        assert_eq!(view.services["idle"].ingresses, None);
        assert_eq!(view.services["idle"].egresses, None);
        assert_eq!(view.failed, "");
    }

    #[test]
    fn a_failure_stays_visible_while_the_environment_stops() {
        let env = spec(json!({"name": "e", "services": {"db": {"type": "process"}}}));
        let failing = Event {
            error: "service \"db\": exit status 1".into(),
            ..Event::for_service(EventType::EnvironmentFailing, "db")
        };
        let events = vec![
            event(EventType::ServiceStarting, "db"),
            event(EventType::ServiceFailed, "db"),
            Arc::new(failing),
            event(EventType::ServiceStopping, "db"),
            event(EventType::ServiceStopped, "db"),
        ];
        let view = resolve_environment("id1", &env, &events).unwrap();
        assert_eq!(view.services["db"].status, ServiceStatus::Failed);
        assert_eq!(view.failed, "service \"db\": exit status 1");
    }

    #[test]
    fn ingresses_and_egresses_resolve_templates() {
        let env = spec(json!({"name": "e", "services": {
            "db": {"type": "process", "ingresses": {"default": {"protocol": "tcp"}}},
            "api": {"type": "process", "egresses": {"database": {"service": "db", "ingress": "default"}}}
        }}));
        let mut ep = Endpoint::new("127.0.0.1:5432", Protocol::Tcp);
        ep.attributes = Some(BTreeMap::from([
            ("PGHOST".to_string(), json!("${HOST}")),
            ("N".to_string(), json!(5)),
        ]));
        let events = vec![
            published("db", "default", ep.clone()),
            published(
                "db",
                "default",
                Endpoint {
                    hostport: "127.0.0.1:6000".into(),
                    ..ep
                },
            ),
        ];
        let view = resolve_environment("x", &env, &events).unwrap();
        let db = &view.services["db"].ingresses.as_ref().unwrap()["default"];
        assert_eq!(db.hostport, "127.0.0.1:6000");
        assert_eq!(
            db.attributes.as_ref().unwrap()["PGHOST"],
            json!("127.0.0.1")
        );
        assert_eq!(db.attributes.as_ref().unwrap()["N"], json!(5));
        let egress = &view.services["api"].egresses.as_ref().unwrap()["database"];
        assert_eq!(egress, db);
    }

    #[test]
    fn observe_mode_egresses_show_the_proxy_address() {
        // After the observe transform: api's egress points at the injected proxy.
        let env = spec(json!({"name": "e", "observe": true, "services": {
            "db": {"type": "process", "ingresses": {"default": {"protocol": "tcp"}}},
            "api": {"type": "process", "egresses": {"db": {"service": "db~proxy~api", "ingress": "default"}}},
            "db~proxy~api": {"type": "proxy", "injected": true,
                "ingresses": {"default": {"protocol": "tcp"}},
                "egresses": {"target": {"service": "db", "ingress": "default"}}}
        }}));
        let events = vec![
            published(
                "db",
                "default",
                Endpoint::new("127.0.0.1:5432", Protocol::Tcp),
            ),
            published(
                "db~proxy~api",
                "default",
                Endpoint::new("127.0.0.1:7001", Protocol::Tcp),
            ),
        ];
        let view = resolve_environment("x", &env, &events).unwrap();
        assert!(!view.services.contains_key("db~proxy~api"));
        let egress = &view.services["api"].egresses.as_ref().unwrap()["db"];
        assert_eq!(egress.hostport, "127.0.0.1:7001");
        assert_eq!(
            view.services["db"].ingresses.as_ref().unwrap()["default"].hostport,
            "127.0.0.1:5432"
        );
    }

    #[test]
    fn an_unresolvable_template_is_an_error_naming_the_endpoint() {
        let env = spec(json!({"name": "e", "services": {
            "db": {"type": "process", "ingresses": {"default": {"protocol": "tcp"}}}
        }}));
        let mut ep = Endpoint::new("127.0.0.1:5432", Protocol::Tcp);
        ep.attributes = Some(BTreeMap::from([("X".to_string(), json!("${PGHOST}"))]));
        let err = resolve_environment("x", &env, &[published("db", "default", ep)]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(r#"resolve attributes: service "db" ingresses: endpoint "default": "#),
            "{text}"
        );
    }
}
