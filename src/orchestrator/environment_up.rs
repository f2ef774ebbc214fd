//! `environment.up`: published by the injected `~test` node once every real service is ready.

use std::collections::BTreeMap;
use std::sync::Arc;

use rig_types::{Endpoint, Event, EventType};

use super::Instance;
use crate::spec::parse_test_egress;
use crate::wiring::resolve_endpoint;

/// Waits for the services without ingresses (which `~test` has no egress to), then publishes
/// `environment.up` with every real ingress, resolved: `ingresses[service][ingress]`. In
/// observe mode these are the addresses of the `~test` proxies.
pub(super) async fn emit_environment_up(
    instance: &Arc<Instance>,
    test_egresses: &BTreeMap<String, Endpoint>,
    no_ingress: &[String],
) -> Result<(), String> {
    for service in no_ingress {
        let wanted = service.clone();
        instance
            .log()
            .wait_for(move |e| e.event_type == EventType::ServiceReady && e.service == wanted)
            .await;
    }
    let mut ingresses: BTreeMap<String, BTreeMap<String, Endpoint>> = BTreeMap::new();
    for (egress, endpoint) in test_egresses {
        let resolved =
            resolve_endpoint(endpoint).map_err(|e| format!("resolve egress {egress:?}: {e}"))?;
        let (service, ingress) = parse_test_egress(egress);
        ingresses
            .entry(service.to_string())
            .or_default()
            .insert(ingress.to_string(), resolved);
    }
    for service in no_ingress {
        ingresses.entry(service.clone()).or_default();
    }
    let mut event = Event::new(EventType::EnvironmentUp);
    event.ingresses = ingresses;
    event.env_dir = instance.env_dir().to_string_lossy().into_owned();
    instance.emit(event);
    Ok(())
}
