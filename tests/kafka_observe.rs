//! A `kafka` ingress in observe mode through the real `rigd`: a real Kafka client (librdkafka
//! through `rdkafka`) produces to a cluster of three brokers (librdkafka's mock cluster) via
//! the proxy rigd puts on the test's edge, and rigd's event log records every request with
//! the broker it went to.
//!
//! The service is a real process: a small TCP forwarder (python3) on the service's `PORT` in
//! front of the cluster's first broker, standing in for a broker that advertises addresses the
//! client could not otherwise be kept away from.
//!
//! The same through a `container` service's egress: the client runs in a Docker container
//! (this test binary, copied into a local image) and reaches the host only through the bridge
//! gateway, so the proxy must advertise every broker there.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rig_types::EventType;
use serde_json::json;
use support::images::{image_from_host, ImageFile};
use support::{Events, Rigd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_ingress_is_observed_across_three_brokers() {
    let (cluster, brokers) = orders_on_three_brokers();
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({
            "name": "kafka-observe",
            "services": {"kafka": rigd.kafka_forwarder(&brokers[0])}
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

/// A mock cluster of three brokers with a topic `orders` whose partitions 0, 1 and 2 are led
/// by brokers 1, 2 and 3, and the brokers' addresses.
fn orders_on_three_brokers() -> (MockCluster<'static, DefaultProducerContext>, Vec<String>) {
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
    (cluster, brokers)
}

/// What the client in the container prints once every message is delivered.
const DELIVERED: &str = "delivered to every partition";

/// Runs inside the container of `a_container_producing_through_its_egress_reaches_every_broker`
/// (this test binary, copied into the image): produces one message to each partition of
/// `orders` through the container's `kafka` egress, prints [`DELIVERED`], and keeps running
/// (a service must). Outside a container, without the egress in its environment, it does
/// nothing.
#[test]
#[ignore = "the Kafka client of a container; run by the container test"]
fn kafka_client_in_a_container() {
    let (Ok(host), Ok(port)) = (std::env::var("KAFKA_HOST"), std::env::var("KAFKA_PORT")) else {
        eprintln!("no KAFKA_HOST/KAFKA_PORT: not in the container, nothing to do");
        return;
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", format!("{host}:{port}"))
        .set("client.id", "rig-container")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("a producer");
    for partition in 0..3 {
        let payload = format!("order {partition}");
        producer
            .send(
                BaseRecord::<(), _>::to("orders")
                    .partition(partition)
                    .payload(&payload),
            )
            .expect("queued");
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every message delivered through the proxy");
    println!("{DELIVERED}");
    loop {
        std::thread::park();
    }
}

/// An image holding this test binary (without its debug info) at `/kafka-client`, and the
/// shared libraries it loads (librdkafka's among them).
fn image_of_this_test_binary() -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stripped = dir.path().join("kafka-client");
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(&exe)
        .status()
        .expect("run strip (binutils)");
    assert!(status.success(), "strip {}", exe.display());
    let image = image_from_host(
        KAFKA_CLIENT_IMAGE,
        &[ImageFile {
            host: Path::new(&stripped),
            path: "/kafka-client",
        }],
        &[],
    );
    // Every build of this test makes another image: keep only the current one.
    let tags = Command::new("docker")
        .args([
            "images",
            KAFKA_CLIENT_IMAGE,
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .output()
        .expect("run docker images");
    for old in String::from_utf8_lossy(&tags.stdout)
        .lines()
        .filter(|tag| *tag != image)
    {
        let _ = Command::new("docker").args(["rmi", old]).output();
    }
    image
}

/// The repository of [`image_of_this_test_binary`]'s images.
const KAFKA_CLIENT_IMAGE: &str = "rig-test/kafka-client";

/// A client in a container reaches the host only through the Docker bridge gateway: the
/// Kafka proxy on its edge must advertise every broker (the bootstrap broker included) at
/// `host.docker.internal`, on listeners bound there. Before, it advertised `127.0.0.1`, which
/// inside the container is the container itself, and the client never got past the metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_producing_through_its_egress_reaches_every_broker() {
    let (cluster, brokers) = orders_on_three_brokers();
    let rigd = Rigd::start();
    let mut events = produce_from_a_container(&rigd, &brokers[0], true).await;
    let mut reached = BTreeSet::new();
    while reached.len() < 3 {
        let event = events
            .until_matching("Produce requests from the container to every broker", |e| {
                e.event_type == EventType::KafkaRequestCompleted
                    && e.kafka_request.as_ref().is_some_and(|k| {
                        k.source == "producer" && k.api_name == "Produce" && k.error_code == 0
                    })
            })
            .await;
        let kafka = event
            .kafka_request
            .expect("kafka events carry kafka_request");
        assert_eq!(kafka.client_id, "rig-container");
        reached.insert(kafka.broker.clone());
    }
    assert_eq!(reached, brokers.iter().cloned().collect::<BTreeSet<_>>());
    // The proxy records an exchange after it forwards the response, so the client may print
    // its report before the last Produce is in the log: look among the events seen first.
    until_delivered(&mut events).await;
    drop(cluster);
}

/// Without observe, a container's Kafka edge still goes through a proxy that rewrites the
/// brokers' addresses (the container cannot reach the host's loopback), which records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_reaches_every_broker_without_observe() {
    let (cluster, brokers) = orders_on_three_brokers();
    let rigd = Rigd::start();
    let mut events = produce_from_a_container(&rigd, &brokers[0], false).await;
    until_delivered(&mut events).await;
    assert!(
        !events.seen().iter().any(|e| e.event_type.is_traffic()),
        "an environment that does not observe records no traffic"
    );
    drop(cluster);
}

/// Starts an environment whose container `producer` produces to `orders` through its `kafka`
/// egress, bootstrapping at `broker`; returns its events, service output included.
async fn produce_from_a_container(rigd: &Rigd, broker: &str, observe: bool) -> Events {
    let image = image_of_this_test_binary();
    let id = rigd
        .create(json!({
            "name": "kafka-container",
            "observe": observe,
            "services": {
                "kafka": rigd.kafka_forwarder(broker),
                "producer": {
                    "type": "container",
                    "config": {
                        "image": image,
                        "cmd": ["/kafka-client", "--exact", "kafka_client_in_a_container",
                                "--ignored", "--nocapture", "--test-threads", "1"]
                    },
                    "egresses": {"kafka": {"service": "kafka"}}
                }
            }
        }))
        .await;
    rigd.events_with_logs(&id)
}

/// Waits for the container's report that every message was delivered.
async fn until_delivered(events: &mut Events) {
    let delivered = |e: &rig_types::Event| {
        e.event_type == EventType::ServiceLog
            && e.service == "producer"
            && e.log.as_ref().is_some_and(|l| l.data.contains(DELIVERED))
    };
    if !events.seen().iter().any(&delivered) {
        events
            .until_matching("the container's report of its deliveries", delivered)
            .await;
    }
}
