//! `insert_test_node` and `transform_observe`: upstream's `TestInsertTestNode_*` and
//! `TestTransformObserve_*`, the proxy node shape, and `parse_test_egress`.

use std::collections::BTreeMap;

use rig_types::{EgressSpec, Environment, IngressSpec, Protocol, ReadySpec};
use serde_json::json;

use super::{env_of, svc};
use crate::spec::{
    insert_test_node, parse_test_egress, proxy_node_name, transform_observe, ProxyConfig, TEST_NODE,
};

fn egress(service: &str, ingress: &str) -> EgressSpec {
    EgressSpec {
        service: service.into(),
        ingress: ingress.into(),
    }
}

/// The environment with both transforms applied, observe on.
fn observed(mut env: Environment) -> Environment {
    env.observe = true;
    insert_test_node(&mut env);
    transform_observe(&mut env);
    env
}

/// Upstream `TestInsertTestNode_Basic`.
#[test]
fn test_node_basic() {
    let mut env = env_of(vec![
        ("api", svc("process", &[("default", "http")], &[])),
        ("db", svc("postgres", &[("default", "tcp")], &[])),
    ]);
    let no_ingress = insert_test_node(&mut env);
    assert!(no_ingress.is_empty());
    let node = &env.services[TEST_NODE];
    assert_eq!(TEST_NODE, "~test");
    assert_eq!(node.service_type, "test");
    assert!(node.injected);
    assert!(node.ingresses.is_empty() && node.hooks.is_none() && node.config.is_none());
    assert_eq!(
        node.egresses,
        BTreeMap::from([
            ("api".to_string(), egress("api", "default")),
            ("db".to_string(), egress("db", "default")),
        ])
    );
}

/// Upstream `TestInsertTestNode_MultiIngress`.
#[test]
fn test_node_multi_ingress() {
    let mut env = env_of(vec![(
        "temporal",
        svc("temporal", &[("default", "grpc"), ("ui", "http")], &[]),
    )]);
    insert_test_node(&mut env);
    assert_eq!(
        env.services[TEST_NODE].egresses,
        BTreeMap::from([
            ("temporal".to_string(), egress("temporal", "default")),
            ("temporal~ui".to_string(), egress("temporal", "ui")),
        ])
    );
}

/// Upstream `TestInsertTestNode_NoIngress`: no egress, and the service is returned instead.
#[test]
fn test_node_no_ingress() {
    let mut env = env_of(vec![
        ("worker", svc("process", &[], &[])),
        ("cron", svc("process", &[], &[])),
        ("api", svc("process", &[("default", "http")], &[])),
    ]);
    let no_ingress = insert_test_node(&mut env);
    assert_eq!(no_ingress, vec!["cron", "worker"]);
    assert_eq!(
        env.services[TEST_NODE].egresses.keys().collect::<Vec<_>>(),
        vec!["api"]
    );
}

/// Upstream `TestInsertTestNode_SingleNamedIngress`.
#[test]
fn test_node_single_named_ingress() {
    let mut env = env_of(vec![("api", svc("process", &[("grpc", "grpc")], &[]))]);
    insert_test_node(&mut env);
    assert_eq!(
        env.services[TEST_NODE].egresses,
        BTreeMap::from([("api~grpc".to_string(), egress("api", "grpc"))])
    );
}

/// Injected services get no `~test` edge and are not reported as no-ingress; an existing
/// `~test` is replaced.
#[test]
fn test_node_skips_injected_and_replaces_existing() {
    let mut proxy = svc("proxy", &[("default", "http")], &[]);
    proxy.injected = true;
    let mut hidden = svc("process", &[], &[]);
    hidden.injected = true;
    let mut env = env_of(vec![
        ("api", svc("process", &[("default", "http")], &[])),
        ("api~proxy~x", proxy),
        ("hidden", hidden),
        (
            TEST_NODE,
            svc("process", &[("default", "http")], &[("x", "y", "")]),
        ),
    ]);
    assert!(insert_test_node(&mut env).is_empty());
    let node = &env.services[TEST_NODE];
    assert_eq!(node.service_type, "test");
    assert!(node.ingresses.is_empty());
    assert_eq!(node.egresses.keys().collect::<Vec<_>>(), vec!["api"]);
}

/// `~test` egress names map back to (service, ingress), splitting at the first `~`.
#[test]
fn parse_test_egress_names() {
    assert_eq!(parse_test_egress("api"), ("api", "default"));
    assert_eq!(parse_test_egress("api~grpc"), ("api", "grpc"));
    assert_eq!(
        parse_test_egress("kafka~schema-registry"),
        ("kafka", "schema-registry")
    );
    assert_eq!(parse_test_egress("a~b~c"), ("a", "b~c"));
    // Round trip with insert_test_node's naming.
    let mut env = env_of(vec![(
        "t",
        svc("temporal", &[("default", "grpc"), ("ui", "http")], &[]),
    )]);
    insert_test_node(&mut env);
    for (name, e) in &env.services[TEST_NODE].egresses {
        assert_eq!(
            parse_test_egress(name),
            (e.service.as_str(), e.ingress.as_str())
        );
    }
}

/// Upstream `TestTransformObserve_BasicEdge`, with the full proxy node shape.
#[test]
fn observe_basic_edge() {
    let mut backend = svc("process", &[("default", "http")], &[]);
    if let Some(ingress) = backend.ingresses.get_mut("default") {
        ingress.container_port = 8080;
        ingress.ready = Some(ReadySpec {
            path: "/health".into(),
            ..ReadySpec::default()
        });
        ingress.attributes = Some(BTreeMap::from([(
            "URL".to_string(),
            json!("http://${HOSTPORT}"),
        )]));
    }
    let env = observed(env_of(vec![
        (
            "api",
            svc(
                "process",
                &[("default", "http")],
                &[("backend", "backend", "default")],
            ),
        ),
        ("backend", backend),
    ]));

    let proxy = &env.services["backend~proxy~api"];
    assert_eq!(proxy.service_type, "proxy");
    assert!(proxy.injected);
    // The protocol and (a rig-rs addition) the readiness settings are copied; the container
    // port and the attributes are not.
    assert_eq!(
        proxy.ingresses,
        BTreeMap::from([(
            "default".to_string(),
            IngressSpec {
                protocol: Protocol::Http,
                ready: Some(ReadySpec {
                    path: "/health".into(),
                    ..ReadySpec::default()
                }),
                ..IngressSpec::default()
            }
        )])
    );
    assert_eq!(
        proxy.egresses,
        BTreeMap::from([("target".to_string(), egress("backend", "default"))])
    );
    assert_eq!(
        proxy.config,
        Some(json!({"source": "api", "target_svc": "backend", "ingress": "default"}))
    );
    assert!(proxy.args.is_empty() && proxy.hooks.is_none());

    assert_eq!(
        env.services["api"].egresses["backend"],
        egress("backend~proxy~api", "default")
    );
    assert!(env.services.contains_key("api~proxy~~test"));
    assert!(env.services.contains_key("backend~proxy~~test"));
    assert_eq!(
        env.services[TEST_NODE].egresses["api"],
        egress("api~proxy~~test", "default")
    );
    assert_eq!(env.services.len(), 2 + 1 + 3);
}

/// Upstream `TestTransformObserve_Disabled`.
#[test]
fn observe_disabled_inserts_no_proxies() {
    let mut env = env_of(vec![
        (
            "api",
            svc(
                "process",
                &[("default", "http")],
                &[("db", "db", "default")],
            ),
        ),
        ("db", svc("postgres", &[("default", "tcp")], &[])),
    ]);
    insert_test_node(&mut env);
    let before = env.clone();
    transform_observe(&mut env);
    assert_eq!(env, before);
    assert!(env.services.contains_key(TEST_NODE));
    assert!(!env.services.values().any(|s| s.service_type == "proxy"));
}

/// Upstream `TestTransformObserve_CustomEgressName`.
#[test]
fn observe_keeps_custom_egress_names() {
    let env = observed(env_of(vec![
        (
            "api",
            svc(
                "process",
                &[("default", "http")],
                &[("database", "db", "default")],
            ),
        ),
        ("db", svc("postgres", &[("default", "tcp")], &[])),
    ]));
    assert_eq!(
        env.services["api"].egresses["database"],
        egress("db~proxy~api", "default")
    );
    assert_eq!(env.services["api"].egresses.len(), 1);
}

/// Upstream `TestTransformObserve_NonDefaultIngress`, and the gRPC reflection key.
#[test]
fn observe_non_default_ingress_and_grpc_reflection_key() {
    let env = observed(env_of(vec![
        (
            "temporal",
            svc("temporal", &[("default", "grpc"), ("ui", "http")], &[]),
        ),
        (
            "worker",
            svc(
                "process",
                &[],
                &[("t", "temporal", "default"), ("ui", "temporal", "ui")],
            ),
        ),
    ]));
    for name in [
        "temporal~proxy~~test",
        "temporal~ui~proxy~~test",
        "temporal~proxy~worker",
        "temporal~ui~proxy~worker",
    ] {
        assert!(env.services.contains_key(name), "missing {name}");
    }
    assert_eq!(
        env.services["temporal~proxy~worker"].config,
        Some(
            json!({"source": "worker", "target_svc": "temporal", "ingress": "default", "reflection_key": "temporal:default"})
        )
    );
    assert_eq!(
        env.services["temporal~ui~proxy~~test"].config,
        Some(json!({"source": "~test", "target_svc": "temporal", "ingress": "ui"}))
    );
    assert_eq!(
        env.services["temporal~proxy~~test"].ingresses["default"].protocol,
        Protocol::Grpc
    );
    assert_eq!(
        env.services["worker"].egresses["ui"],
        egress("temporal~ui~proxy~worker", "default")
    );
    assert_eq!(
        env.services[TEST_NODE].egresses["temporal~ui"],
        egress("temporal~ui~proxy~~test", "default")
    );
}

/// Edges to a missing service or ingress are left alone; running the transform twice
/// changes nothing.
#[test]
fn observe_skips_broken_edges_and_is_idempotent() {
    let mut env = env_of(vec![
        (
            "api",
            svc(
                "process",
                &[("default", "http")],
                &[("x", "ghost", "default"), ("y", "db", "admin")],
            ),
        ),
        ("db", svc("postgres", &[("default", "tcp")], &[])),
    ]);
    env.observe = true;
    insert_test_node(&mut env);
    transform_observe(&mut env);
    assert_eq!(
        env.services["api"].egresses["x"],
        egress("ghost", "default")
    );
    assert_eq!(env.services["api"].egresses["y"], egress("db", "admin"));
    let once = env.clone();
    transform_observe(&mut env);
    assert_eq!(env, once);
}

/// Proxy names, and `ProxyConfig`'s JSON (serde and `to_json` agree).
/// rig-rs: a proxy whose source runs in a container says so, for the Kafka proxy to
/// advertise brokers the container can reach; the test node's and processes' do not.
#[test]
fn observe_marks_proxies_whose_source_is_a_container() {
    let env = observed(env_of(vec![
        ("kafka", svc("kafka", &[("default", "kafka")], &[])),
        (
            "consumer",
            svc("container", &[], &[("kafka", "kafka", "default")]),
        ),
        (
            "worker",
            svc("process", &[], &[("kafka", "kafka", "default")]),
        ),
    ]));
    let config = |proxy: &str| -> ProxyConfig {
        serde_json::from_value(env.services[proxy].config.clone().expect("a config"))
            .expect("a proxy config")
    };
    assert!(config("kafka~proxy~consumer").source_in_container);
    assert_eq!(
        env.services["kafka~proxy~consumer"].config,
        Some(json!({
            "source": "consumer",
            "target_svc": "kafka",
            "ingress": "default",
            "source_in_container": true
        }))
    );
    assert!(!config("kafka~proxy~worker").source_in_container);
    assert!(!config("kafka~proxy~~test").source_in_container);
}

/// rig-rs: without observe, a container's Kafka edge still gets a proxy, one that records
/// nothing: only it makes the brokers reachable from the container. No other edge gets one.
#[test]
fn unobserved_a_containers_kafka_edge_gets_a_proxy_that_records_nothing() {
    let mut env = env_of(vec![
        ("kafka", svc("kafka", &[("default", "kafka")], &[])),
        ("api", svc("process", &[("default", "http")], &[])),
        (
            "consumer",
            svc(
                "container",
                &[],
                &[("kafka", "kafka", "default"), ("api", "api", "default")],
            ),
        ),
        (
            "worker",
            svc("process", &[], &[("kafka", "kafka", "default")]),
        ),
    ]);
    insert_test_node(&mut env);
    transform_observe(&mut env);
    let proxies: Vec<&str> = env
        .services
        .iter()
        .filter(|(_, s)| s.service_type == "proxy")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(proxies, ["kafka~proxy~consumer"]);
    assert_eq!(
        env.services["kafka~proxy~consumer"].config,
        Some(json!({
            "source": "consumer",
            "target_svc": "kafka",
            "ingress": "default",
            "source_in_container": true,
            "unobserved": true
        }))
    );
    assert_eq!(
        env.services["consumer"].egresses["kafka"],
        egress("kafka~proxy~consumer", "default")
    );
    assert_eq!(
        env.services["consumer"].egresses["api"],
        egress("api", "default")
    );
}

#[test]
fn proxy_names_and_config_json() {
    assert_eq!(
        proxy_node_name("api", "backend", "default"),
        "backend~proxy~api"
    );
    assert_eq!(
        proxy_node_name("~test", "api", "default"),
        "api~proxy~~test"
    );
    assert_eq!(
        proxy_node_name("~test", "temporal", "ui"),
        "temporal~ui~proxy~~test"
    );

    let plain = ProxyConfig {
        source: "a".into(),
        target_svc: "b".into(),
        ingress: "default".into(),
        reflection_key: String::new(),
        source_in_container: false,
        unobserved: false,
    };
    let grpc = ProxyConfig {
        reflection_key: "b:default".into(),
        ..plain.clone()
    };
    let from_container = ProxyConfig {
        source_in_container: true,
        ..plain.clone()
    };
    let unobserved = ProxyConfig {
        source_in_container: true,
        unobserved: true,
        ..plain.clone()
    };
    for config in [plain, grpc, from_container, unobserved] {
        let via_serde = serde_json::to_value(&config).expect("serialises");
        assert_eq!(config.to_json(), via_serde);
        assert_eq!(
            serde_json::to_string(&config.to_json()).ok(),
            serde_json::to_string(&config).ok()
        );
        let back: ProxyConfig = serde_json::from_value(via_serde).expect("deserialises");
        assert_eq!(back, config);
    }
    let text = serde_json::to_string(&ProxyConfig::default()).expect("serialises");
    assert_eq!(text, r#"{"source":"","target_svc":"","ingress":""}"#);
    // A proxy written in a spec need not say where it sits (only rigd's own nodes do).
    let written: ProxyConfig =
        serde_json::from_value(serde_json::json!({})).expect("an empty config decodes");
    assert_eq!(written, ProxyConfig::default());
}
