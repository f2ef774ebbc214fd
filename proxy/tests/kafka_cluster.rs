//! The Kafka relay with a real client (librdkafka through `rdkafka`) against librdkafka's mock
//! cluster of three brokers: producing, consuming in a consumer group, `acks=0` producing,
//! with every client connection going through proxy listeners.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rig_proxy::{Edge, Mode};
use rig_types::{Event, EventType, KafkaRequestInfo};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Upper bound for any wait: a failure guard, never a synchronisation.
const GUARD: Duration = Duration::from_secs(60);

async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Keeps every event; tests wait for conditions on them.
struct Collect(watch::Sender<Vec<Event>>);

impl rig_proxy::TrafficSink for Collect {
    fn emit(&self, event: Event) {
        self.0.send_modify(|events| events.push(event));
    }
}

impl Collect {
    async fn wait_for(&self, what: &str, condition: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let mut rx = self.0.subscribe();
        guarded(what, async {
            rx.wait_for(|events| condition(events))
                .await
                .expect("the sender lives in self")
                .clone()
        })
        .await
    }
}

fn kafka_requests(events: &[Event]) -> Vec<KafkaRequestInfo> {
    events
        .iter()
        .filter_map(|e| e.kafka_request.as_deref().cloned())
        .collect()
}

fn api_names(events: &[Event]) -> BTreeSet<String> {
    kafka_requests(events)
        .into_iter()
        .map(|k| k.api_name)
        .collect()
}

/// A mock cluster of three brokers behind a Kafka-mode proxy whose bootstrap target is the
/// first broker.
struct Setup {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    /// The real brokers' addresses.
    brokers: Vec<String>,
    proxy: String,
    sink: Arc<Collect>,
    cancel: CancellationToken,
    proxy_task: tokio::task::JoinHandle<()>,
}

impl Setup {
    async fn start() -> Setup {
        let cluster = MockCluster::new(3).expect("a mock cluster");
        let brokers: Vec<String> = cluster
            .bootstrap_servers()
            .split(',')
            .map(str::to_owned)
            .collect();
        assert_eq!(brokers.len(), 3);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = listener.local_addr().unwrap().to_string();
        let sink = Arc::new(Collect(watch::Sender::new(Vec::new())));
        let cancel = CancellationToken::new();
        let edge = Edge {
            source: "~test".into(),
            target: "kafka".into(),
            ingress: "default".into(),
        };
        let proxy_task = tokio::spawn(rig_proxy::run(
            listener,
            brokers[0].clone(),
            Mode::Kafka,
            edge,
            sink.clone(),
            cancel.clone(),
            rig_proxy::RunOptions::default(),
        ));
        let proxy_task = tokio::spawn(async move {
            proxy_task.await.unwrap().unwrap();
        });
        Setup {
            cluster,
            brokers,
            proxy,
            sink,
            cancel,
            proxy_task,
        }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.proxy)
            .set("client.id", "rig-kafka-test")
            .set("message.timeout.ms", "30000");
        config
    }

    async fn stop(self) -> Vec<Event> {
        self.cancel.cancel();
        guarded("the proxy to stop", self.proxy_task).await.unwrap();
        let events = self.sink.0.borrow().clone();
        drop(self.cluster);
        assert!(
            !events
                .iter()
                .any(|e| e.event_type == EventType::ObservationsDropped),
            "no observation may be dropped here"
        );
        events
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_broker_cluster_is_used_only_through_proxy_listeners() {
    let setup = Setup::start().await;
    // Partitions led by each broker, and the group coordinator on a broker that is not the
    // bootstrap target: the client has to reach all three.
    setup.cluster.create_topic("orders", 3, 1).unwrap();
    for (partition, broker) in [(0, 1), (1, 2), (2, 3)] {
        setup
            .cluster
            .partition_leader("orders", partition, Some(broker))
            .unwrap();
    }
    setup
        .cluster
        .coordinator(MockCoordinator::Group("billing".into()), 3)
        .unwrap();

    let producer: FutureProducer = setup.config().create().unwrap();
    for i in 0..30 {
        let key = format!("k{i}");
        let payload = format!("order {i}");
        let record = FutureRecord::to("orders")
            .partition(i % 3)
            .key(&key)
            .payload(&payload);
        guarded("a delivery", producer.send(record, Duration::from_secs(30)))
            .await
            .expect("delivered");
    }

    // What the client was told about the cluster: only proxy addresses.
    let metadata = producer
        .client()
        .fetch_metadata(Some("orders"), Duration::from_secs(10))
        .unwrap();
    let advertised: BTreeSet<String> = metadata
        .brokers()
        .iter()
        .map(|b| format!("{}:{}", b.host(), b.port()))
        .collect();
    assert_eq!(advertised.len(), 3, "{advertised:?}");
    for address in &advertised {
        assert!(
            !setup.brokers.contains(address),
            "a real broker address reached the client: {address}"
        );
        assert!(address.starts_with("127.0.0.1:"), "{address}");
    }
    assert!(
        advertised.contains(&setup.proxy),
        "the bootstrap broker is the proxy's own listener"
    );

    let consumer: StreamConsumer = setup
        .config()
        .set("group.id", "billing")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&["orders"]).unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 30 {
        let message = guarded("a message", consumer.recv())
            .await
            .expect("a message");
        seen.insert(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();

    let events = setup
        .sink
        .wait_for("OffsetCommit to be observed", |events| {
            api_names(events).contains("OffsetCommit")
        })
        .await;
    drop(consumer);
    drop(producer);
    let names = api_names(&events);
    for api in [
        "ApiVersions",
        "Metadata",
        "FindCoordinator",
        "JoinGroup",
        "SyncGroup",
        "Produce",
        "Fetch",
        "OffsetCommit",
    ] {
        assert!(names.contains(api), "no {api} in {names:?}");
    }

    let requests = kafka_requests(&events);
    // Every real broker was reached, each through the proxy.
    let reached: BTreeSet<&str> = requests.iter().map(|k| k.broker.as_str()).collect();
    for broker in &setup.brokers {
        assert!(
            reached.contains(broker.as_str()),
            "{broker} not reached via the proxy: {reached:?}"
        );
    }
    // Produce requests went to each partition's leader and say so.
    for (partition, leader) in [
        (0, &setup.brokers[0]),
        (1, &setup.brokers[1]),
        (2, &setup.brokers[2]),
    ] {
        assert!(
            requests.iter().any(|k| k.api_name == "Produce"
                && &k.broker == leader
                && k.topics.iter().any(|t| t.topic == "orders"
                    && t.partitions
                        .iter()
                        .any(|p| p.partition == partition && p.error_code == 0))),
            "no Produce to orders/{partition} via {leader}"
        );
    }
    // Responses naming brokers were rewritten; the coordinator lookup named broker 3.
    assert!(requests
        .iter()
        .any(|k| k.api_name == "Metadata" && k.rewritten));
    assert!(requests
        .iter()
        .any(|k| k.api_name == "FindCoordinator" && k.rewritten));
    assert!(requests
        .iter()
        .any(|k| k.api_name == "JoinGroup" && k.broker == setup.brokers[2]));
    for k in &requests {
        assert_eq!(k.client_id, "rig-kafka-test");
        assert!(k.request_size > 8 && k.response_size >= 8, "{k:?}");
        assert!(!k.no_response);
        assert_eq!(
            (&*k.source, &*k.target, &*k.ingress),
            ("~test", "kafka", "default")
        );
    }

    let events = setup.stop().await;
    let opened = events
        .iter()
        .filter(|e| e.event_type == EventType::ConnectionOpened)
        .count();
    let closed = events
        .iter()
        .filter(|e| e.event_type == EventType::ConnectionClosed)
        .count();
    assert!(
        opened >= 3,
        "one connection per broker at least, got {opened}"
    );
    assert_eq!(opened, closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_produce_is_reported_and_leaves_nothing_waiting() {
    let setup = Setup::start().await;
    setup.cluster.create_topic("fire", 1, 1).unwrap();
    let producer: FutureProducer = setup
        .config()
        .set("acks", "0")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for i in 0..5 {
        let payload = format!("event {i}");
        let record = FutureRecord::<(), _>::to("fire").payload(&payload);
        guarded("a send", producer.send(record, Duration::from_secs(30)))
            .await
            .expect("sent");
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    // After the unanswered Produce requests, later requests on the same connections are still
    // matched with their own responses.
    producer
        .client()
        .fetch_metadata(Some("fire"), Duration::from_secs(10))
        .unwrap();
    let events = setup
        .sink
        .wait_for("unanswered Produce and a later Metadata", |events| {
            let requests = kafka_requests(events);
            let produce = requests.iter().position(|k| k.api_name == "Produce");
            produce.is_some_and(|at| requests[at..].iter().any(|k| k.api_name == "Metadata"))
        })
        .await;
    let requests = kafka_requests(&events);
    let produces: Vec<_> = requests
        .iter()
        .filter(|k| k.api_name == "Produce")
        .collect();
    for produce in &produces {
        assert!(produce.no_response, "{produce:?}");
        assert_eq!(produce.response_size, 0);
        assert_eq!(produce.latency_ms, 0.0);
        assert_eq!(produce.topics[0].topic, "fire");
    }
    for k in requests.iter().filter(|k| k.api_name != "Produce") {
        assert!(!k.no_response && k.response_size > 0, "{k:?}");
    }
    drop(producer);
    setup.stop().await;
}
