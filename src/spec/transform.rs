//! Graph transforms applied to a validated spec: the `~test` node and observe-mode proxies.
//!
//! Both insert nodes marked `injected: true` whose names contain `~`, which validation
//! forbids in user names, so generated names can never collide with a user's.

use std::collections::BTreeMap;

use rig_types::{EgressSpec, Environment, IngressSpec, Protocol, Service};
use serde::{Deserialize, Serialize};

/// The service type whose processes run in containers, off the host's loopback.
const CONTAINER_TYPE: &str = "container";

/// The name of the node that stands for the test process itself.
pub const TEST_NODE: &str = "~test";

/// The configuration of an observe-mode proxy node (its `config` JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// The service whose egress the proxy sits on (`~test` for the test's own edges); empty
    /// in a proxy written in a spec that does not say.
    #[serde(default)]
    pub source: String,
    /// The service the traffic goes to.
    #[serde(default)]
    pub target_svc: String,
    /// The target's ingress.
    #[serde(default)]
    pub ingress: String,
    /// Key of the process-wide gRPC reflection cache, `"<target>:<ingress>"`; set only when
    /// the target ingress speaks gRPC, and omitted from JSON otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reflection_key: String,
    /// The source runs in a container (rig-rs): a Kafka proxy then advertises brokers the
    /// container can reach. Omitted from JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_in_container: bool,
    /// The environment does not observe: the proxy only relays (a container's Kafka edge,
    /// whose broker addresses it rewrites) and records nothing. Omitted from JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unobserved: bool,
}

impl ProxyConfig {
    /// The JSON form stored in the proxy node's `config` (same as its `Serialize` output).
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("source".into(), self.source.clone().into());
        map.insert("target_svc".into(), self.target_svc.clone().into());
        map.insert("ingress".into(), self.ingress.clone().into());
        if !self.reflection_key.is_empty() {
            map.insert("reflection_key".into(), self.reflection_key.clone().into());
        }
        if self.source_in_container {
            map.insert("source_in_container".into(), true.into());
        }
        if self.unobserved {
            map.insert("unobserved".into(), true.into());
        }
        serde_json::Value::Object(map)
    }
}

/// Adds (or replaces) the `~test` node: type `test`, injected, no ingresses, and one egress
/// per ingress of every non-injected service, named `<svc>` for the `default` ingress and
/// `<svc>~<ingress>` for the others.
///
/// Returns the sorted names of the non-injected services that have no ingress: the test
/// cannot depend on them through an edge, so `environment.up` waits for them by name.
pub fn insert_test_node(env: &mut Environment) -> Vec<String> {
    let mut egresses = BTreeMap::new();
    let mut no_ingress = Vec::new();
    for (name, service) in &env.services {
        if service.injected || name == TEST_NODE {
            continue;
        }
        if service.ingresses.is_empty() {
            no_ingress.push(name.clone());
        }
        for ingress in service.ingresses.keys() {
            let egress_name = if ingress == "default" {
                name.clone()
            } else {
                format!("{name}~{ingress}")
            };
            egresses.insert(
                egress_name,
                EgressSpec {
                    service: name.clone(),
                    ingress: ingress.clone(),
                },
            );
        }
    }
    env.services.insert(
        TEST_NODE.to_string(),
        Service {
            service_type: "test".to_string(),
            egresses,
            injected: true,
            ..Service::default()
        },
    );
    no_ingress
}

/// Splits a `~test` egress name into `(service, ingress)`: `api` gives `("api", "default")`
/// and `api~grpc` gives `("api", "grpc")`. The split is at the first `~`.
pub fn parse_test_egress(name: &str) -> (&str, &str) {
    name.split_once('~').unwrap_or((name, "default"))
}

/// The name of the proxy node on the edge from `source` to `target`'s `ingress`:
/// `<target>~proxy~<source>` for the `default` ingress, else
/// `<target>~<ingress>~proxy~<source>` (so `api~proxy~~test` for the test's edge to `api`).
pub fn proxy_node_name(source: &str, target: &str, ingress: &str) -> String {
    if ingress == "default" {
        format!("{target}~proxy~{source}")
    } else {
        format!("{target}~{ingress}~proxy~{source}")
    }
}

/// True for a proxy node inserted by [`transform_observe`].
fn is_proxy_node(service: &Service) -> bool {
    service.injected && service.service_type == "proxy"
}

/// In observe mode (`env.observe`), puts a proxy node on every edge whose target service and
/// ingress exist, the `~test` node's edges included. Without it, only a container's edges to a
/// Kafka ingress get one, which records nothing ([`ProxyConfig::unobserved`]): the brokers a
/// broker advertises are on the host's loopback, which a container cannot reach, and only the
/// Kafka proxy rewrites them.
///
/// Each proxy is `type: "proxy"`, injected, with one `default` ingress carrying only the
/// target ingress's protocol, one egress `target` to the real target, and a [`ProxyConfig`].
/// The source's egress keeps its name (so its environment variable names do not change) and
/// now points at the proxy's `default` ingress.
///
/// Run it after [`insert_test_node`]. Edges from or to existing proxy nodes are left alone, so
/// running it twice changes nothing.
pub fn transform_observe(env: &mut Environment) {
    let unobserved = !env.observe;
    let edges: Vec<(String, String, EgressSpec)> = env
        .services
        .iter()
        .filter(|(_, service)| !is_proxy_node(service))
        .flat_map(|(source, service)| {
            service
                .egresses
                .iter()
                .map(move |(name, egress)| (source.clone(), name.clone(), egress.clone()))
        })
        .collect();

    for (source, egress_name, egress) in edges {
        let Some(target) = env.services.get(&egress.service) else {
            continue;
        };
        if is_proxy_node(target) {
            continue;
        }
        let Some(target_ingress) = target.ingresses.get(&egress.ingress) else {
            continue;
        };
        let protocol = target_ingress.protocol.clone();
        let source_in_container = env
            .services
            .get(&source)
            .is_some_and(|s| s.service_type == CONTAINER_TYPE);
        if unobserved && !(source_in_container && protocol == Protocol::Kafka) {
            continue;
        }
        let config = ProxyConfig {
            source_in_container,
            unobserved,
            source: source.clone(),
            target_svc: egress.service.clone(),
            ingress: egress.ingress.clone(),
            reflection_key: if protocol == Protocol::Grpc {
                format!("{}:{}", egress.service, egress.ingress)
            } else {
                String::new()
            },
        };
        let proxy_name = proxy_node_name(&source, &egress.service, &egress.ingress);
        let proxy = Service {
            service_type: "proxy".to_string(),
            config: Some(config.to_json()),
            ingresses: BTreeMap::from([(
                "default".to_string(),
                // The target's readiness settings too (rig-rs; upstream copies only the
                // protocol), so probes through the proxy use the target's health path.
                IngressSpec {
                    protocol,
                    ready: target_ingress.ready.clone(),
                    ..IngressSpec::default()
                },
            )]),
            egresses: BTreeMap::from([("target".to_string(), egress)]),
            injected: true,
            ..Service::default()
        };
        env.services.insert(proxy_name.clone(), proxy);
        if let Some(retarget) = env
            .services
            .get_mut(&source)
            .and_then(|service| service.egresses.get_mut(&egress_name))
        {
            *retarget = EgressSpec {
                service: proxy_name,
                ingress: "default".to_string(),
            };
        }
    }
}
