use super::schema::{SchemaHook, Topic};
use super::*;
use rig_types::IngressSpec;
use serde_json::json;

fn spec(config: Option<serde_json::Value>, ingresses: &[(&str, Protocol)]) -> Service {
    Service {
        config,
        ingresses: ingresses
            .iter()
            .map(|(name, protocol)| {
                (
                    name.to_string(),
                    IngressSpec {
                        protocol: protocol.clone(),
                        ..IngressSpec::default()
                    },
                )
            })
            .collect(),
        ..Service::default()
    }
}

fn broker_only() -> Service {
    spec(None, &[("default", Protocol::Kafka)])
}

fn with_registry() -> Service {
    spec(
        None,
        &[
            ("default", Protocol::Kafka),
            (SCHEMA_REGISTRY, Protocol::Http),
        ],
    )
}

#[test]
fn auto_is_native_when_tansu_is_found_and_no_registry_is_wanted() {
    let tansu = std::path::PathBuf::from("/usr/bin/tansu");
    assert_eq!(
        choose(BackendChoice::Auto, Some(tansu.clone()), &broker_only()).unwrap(),
        Backend::Native(tansu.clone())
    );
    assert_eq!(
        choose(BackendChoice::Auto, None, &broker_only()).unwrap(),
        Backend::Container
    );
    assert_eq!(
        choose(BackendChoice::Auto, Some(tansu.clone()), &with_registry()).unwrap(),
        Backend::Container
    );
    assert_eq!(
        choose(BackendChoice::Container, Some(tansu), &broker_only()).unwrap(),
        Backend::Container
    );
}

#[test]
fn native_without_tansu_or_with_a_registry_is_a_clear_error() {
    let err = choose(BackendChoice::Native, None, &broker_only()).unwrap_err();
    assert!(
        err.message()
            .starts_with("kafka: native backend: tansu not found"),
        "{err}"
    );
    assert!(err.message().contains("cargo install"), "{err}");
    let err = choose(
        BackendChoice::Native,
        Some("/usr/bin/tansu".into()),
        &with_registry(),
    )
    .unwrap_err();
    assert!(err.message().contains("no schema registry"), "{err}");
}

#[test]
fn config_takes_backend_image_and_cmd() {
    let s = spec(
        Some(
            json!({"backend": "container", "image": "my/kafka:1", "cmd": ["run", "${KAFKA_ADVERTISED_ADDRESS}"]}),
        ),
        &[],
    );
    let config = KafkaConfig::of(&s).unwrap();
    assert_eq!(config.backend, BackendChoice::Container);
    assert_eq!(config.image(), "my/kafka:1");
    assert_eq!(config.cmd.unwrap().len(), 2);
    // Upstream's default image; upstream's SDK sends only `image`.
    let config = KafkaConfig::of(&spec(Some(json!({"image": ""})), &[])).unwrap();
    assert_eq!(config.image(), DEFAULT_IMAGE);
    let err = KafkaConfig::of(&spec(Some(json!({"backend": "docker"})), &[])).unwrap_err();
    assert!(err.message().starts_with("invalid kafka config: "), "{err}");
}

#[test]
fn the_broker_ingress_is_default_or_the_first_kafka_one() {
    assert_eq!(kafka_ingress(&with_registry()), "default");
    let s = spec(None, &[("admin", Protocol::Http), ("bus", Protocol::Kafka)]);
    assert_eq!(kafka_ingress(&s), "bus");
    assert_eq!(kafka_ingress(&spec(None, &[])), "default");
}

#[test]
fn redpanda_advertises_the_host_address_and_serves_the_registry_when_asked() {
    let cmd = redpanda_command(9092, Some(8081)).join(" ");
    assert!(
        cmd.starts_with("redpanda start --mode dev-container"),
        "{cmd}"
    );
    assert!(cmd.contains("--kafka-addr 0.0.0.0:9092"), "{cmd}");
    assert!(
        cmd.contains("--advertise-kafka-addr ${KAFKA_ADVERTISED_ADDRESS}"),
        "{cmd}"
    );
    assert!(cmd.contains("--schema-registry-addr 0.0.0.0:8081"), "{cmd}");
    assert!(!redpanda_command(9092, None)
        .join(" ")
        .contains("schema-registry"));
}

#[test]
fn only_kafka_ingresses_get_the_kafka_probe() {
    let ep = |protocol| Endpoint {
        hostport: "127.0.0.1:1".into(),
        protocol,
        attributes: None,
    };
    assert_eq!(
        Kafka.ready_probe("default", &ep(Protocol::Kafka)),
        Some(ProbeKind::Kafka)
    );
    assert_eq!(
        Kafka.ready_probe(SCHEMA_REGISTRY, &ep(Protocol::Http)),
        None
    );
}

#[test]
fn the_schema_hook_reads_topics_and_subjects() {
    let hook = SchemaHook::parse(Some(&json!({
        "topics": ["orders", {"name": "payments", "partitions": 3}]
    })))
    .unwrap();
    assert_eq!(
        hook.topics,
        [
            Topic::Name("orders".into()),
            Topic::Detailed {
                name: "payments".into(),
                partitions: 3,
                replication_factor: 1
            }
        ]
    );
    let hook = SchemaHook::parse(Some(&json!({
        "subject": "user-value", "schema_type": "AVRO", "schema": "{}"
    })))
    .unwrap();
    assert_eq!(hook.subject, "user-value");

    let err = SchemaHook::parse(None).unwrap_err();
    assert!(err.message().contains("needs \"topics\""), "{err}");
    let err =
        SchemaHook::parse(Some(&json!({"topics": [{"name": "x", "partitions": 0}]}))).unwrap_err();
    assert!(err.message().contains("partitions ≥ 1"), "{err}");
    let err = SchemaHook::parse(Some(&json!({"topic": "x"}))).unwrap_err();
    assert!(
        err.message()
            .starts_with("kafka init: invalid schema hook config"),
        "{err}"
    );
}

/// A misspelt or unsupported topic setting, or a wrong type, is an error naming it, not a
/// topic created with defaults.
#[test]
fn topic_settings_are_checked() {
    let message = |config: serde_json::Value| {
        SchemaHook::parse(Some(&config))
            .expect_err("an invalid topic")
            .message()
            .to_string()
    };
    let err = message(json!({"topics": [{"name": "payments", "partition": 3}]}));
    assert!(err.contains("unknown field `partition`"), "{err}");
    assert!(err.contains("`partitions`"), "{err}");
    let err = message(json!({"topics": [{"name": "payments", "configs": {"retention.ms": "1"}}]}));
    assert!(err.contains("unknown field `configs`"), "{err}");
    let err = message(json!({"topics": [{"name": "payments", "partitions": "3"}]}));
    assert!(
        err.contains("invalid type: string \"3\", expected i32"),
        "{err}"
    );
    let err = message(json!({"topics": [3]}));
    assert!(
        err.contains("invalid type: integer `3`, expected a topic name, or {"),
        "{err}"
    );
    let err = message(json!({"topics": [{"partitions": 3}]}));
    assert!(err.contains("missing field `name`"), "{err}");
}
