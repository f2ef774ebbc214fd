//! A `kafka` ingress in observe mode through the real `rigd`: a real Kafka client (librdkafka
//! through `rdkafka`) produces to a cluster of three brokers (librdkafka's mock cluster) via
//! the proxy rigd puts on the test's edge, and rigd's event log records every request with
//! the broker it went to.
//!
//! The service is a real process: a small TCP forwarder (python3) on the service's `PORT` in
//! front of the cluster's first broker, standing in for a broker that advertises addresses the
//! client could not otherwise be kept away from.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rig_types::EventType;
use serde_json::json;
use support::Rigd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_ingress_is_observed_across_three_brokers() {
    let cluster = MockCluster::new(3).expect("a mock cluster");
    let brokers: Vec<String> = cluster
        .bootstrap_servers()
        .split(',')
        .map(str::to_owned)
        .collect();
    cluster.create_topic("orders", 3, 1).unwrap();
    for (partition, broker) in [(0, 1), (1, 2), (2, 3)] {
        cluster
            .partition_leader("orders", partition, Some(broker))
            .unwrap();
    }

    let rigd = Rigd::start();
    let forwarder = rigd.script("forwarder.py", support::KAFKA_FORWARDER);
    let id = rigd
        .create(json!({
            "name": "kafka-observe",
            "services": {"kafka": {
                "type": "process",
                "config": {"command": "python3"},
                "args": [forwarder, brokers[0]],
                "ingresses": {"default": {"protocol": "kafka"}}
            }}
        }))
        .await;
    let mut events = rigd.events(&id);
    let up = events.until(EventType::EnvironmentUp).await;
    let endpoint = up.ingresses["kafka"]["default"].hostport.clone();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &endpoint)
        .set("client.id", "rig-e2e")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    for partition in 0..3 {
        let payload = format!("order {partition}");
        let record = FutureRecord::<(), _>::to("orders")
            .partition(partition)
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("delivered through the proxy");
    }

    // Every partition leader was reached, each through a proxy listener.
    let mut reached = BTreeSet::new();
    let mut names = BTreeSet::new();
    while reached.len() < 3 {
        let event = events
            .until_matching("Produce requests to every broker", |e| {
                e.event_type == EventType::KafkaRequestCompleted
            })
            .await;
        let kafka = event
            .kafka_request
            .expect("kafka events carry kafka_request");
        assert_eq!(
            (
                kafka.source.as_str(),
                kafka.target.as_str(),
                kafka.ingress.as_str()
            ),
            ("~test", "kafka", "default")
        );
        assert_eq!(kafka.client_id, "rig-e2e");
        names.insert(kafka.api_name.clone());
        if kafka.api_name == "Produce" {
            reached.insert(kafka.broker.clone());
        }
    }
    drop(producer);
    // The bootstrap connection goes to the service (the forwarder); the three brokers the
    // metadata named were reached only through listeners the proxy opened for them.
    assert_eq!(reached, brokers.iter().cloned().collect::<BTreeSet<_>>());
    for api in ["ApiVersions", "Metadata", "Produce"] {
        assert!(names.contains(api), "no {api} in {names:?}");
    }
    // rigd's TCP readiness probe through the proxy is marked as a probe; the producer's
    // connections are not.
    let connections: Vec<_> = events
        .seen()
        .iter()
        .filter(|e| e.event_type == EventType::ConnectionOpened)
        .filter_map(|e| e.connection.as_deref())
        .collect();
    assert!(connections.iter().any(|c| c.probe), "no probe connection");
    assert!(
        connections.iter().any(|c| !c.probe),
        "no application connection"
    );
    drop(cluster);
}
