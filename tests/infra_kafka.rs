//! The `kafka` type through the real `rigd` binary, with a real broker (tansu, natively and in
//! a container image made of the host's tansu binary) and a real client (Python's
//! confluent-kafka, a current librdkafka: `tests/fixtures/kafka/client.py`): topics created
//! by the `schema` hook, messages produced and consumed with a consumer group through the
//! observing proxy, and the broker gone after `kill -9` of rigd.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rig_types::{Event, EventType};
use serde_json::{json, Value};
use support::images::{docker_available, image_from_host, ImageFile};
use support::{is_alive, Rigd};

/// How long a broker may take to go away once rigd is gone.
const DEADLINE: Duration = Duration::from_secs(30);

/// The result the client prints.
#[derive(Debug, serde::Deserialize)]
struct ClientRun {
    topics: Vec<String>,
    produced: usize,
    consumed: Vec<String>,
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kafka/client.py")
}

/// Runs the client against `bootstrap`: lists topics, produces `count` messages to `topic`
/// and consumes them back.
fn run_client(bootstrap: &str, topic: &str, count: usize) -> ClientRun {
    let out = Command::new("python3")
        .arg(client_script())
        .args([bootstrap, topic, &count.to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the Kafka client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client output {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn tansu() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")))
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
        .expect("tansu is installed (scripts/install-test-deps.sh)")
}

/// A `kafka` service whose `schema` hook creates `topics`.
fn broker(config: Value, topics: &[&str]) -> Value {
    json!({
        "type": "kafka",
        "config": config,
        "ingresses": {"default": {"protocol": "kafka"}},
        "hooks": {"init": [{"type": "schema", "config": {"topics": topics}}]}
    })
}

async fn up(rigd: &Rigd, spec: Value) -> (String, Event) {
    let id = rigd.create(spec).await;
    let up = rigd
        .events(&id)
        .until_matching("environment.up or a failure", |e| {
            matches!(
                e.event_type,
                EventType::EnvironmentUp | EventType::ServiceFailed | EventType::EnvironmentDown
            )
        })
        .await;
    assert_eq!(
        up.event_type,
        EventType::EnvironmentUp,
        "{}",
        support::describe(&rigd.log(&id).await)
    );
    (id, up)
}

fn assert_round_trip(run: &ClientRun, topic: &str, absent: &str, count: usize) {
    assert!(
        run.topics.iter().any(|t| t == topic),
        "the schema hook did not create {topic}: {:?}",
        run.topics
    );
    assert!(
        !run.topics.iter().any(|t| t == absent),
        "{absent} exists without being asked for: {:?}",
        run.topics
    );
    assert_eq!(run.produced, count);
    let want: Vec<String> = (0..count).map(|i| format!("message-{i}")).collect();
    assert_eq!(run.consumed, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_broker_serves_produce_and_consume_through_the_observing_proxy() {
    let rigd = Rigd::start();
    let (id, up) = up(
        &rigd,
        json!({
            "name": "kafka-native",
            "services": {"bus": broker(json!({"backend": "native"}), &["orders", "audit"])}
        }),
    )
    .await;
    let endpoint = &up.ingresses["bus"]["default"];
    let bootstrap = endpoint.hostport.clone();
    let run = tokio::task::spawn_blocking(move || run_client(&bootstrap, "orders", 5))
        .await
        .unwrap();
    assert_round_trip(&run, "orders", "payments", 5);
    assert!(run.topics.iter().any(|t| t == "audit"), "{:?}", run.topics);

    // The client's requests went through the proxy on the test's edge, named by API.
    let mut events = rigd.events(&id);
    let mut apis = BTreeSet::new();
    let wanted = [
        "ApiVersions",
        "Metadata",
        "Produce",
        "Fetch",
        "FindCoordinator",
    ];
    while !wanted.iter().all(|a| apis.contains(*a)) {
        let event = events
            .until_matching("kafka requests of every kind the client sends", |e| {
                e.event_type == EventType::KafkaRequestCompleted
            })
            .await;
        let kafka = event.kafka_request.expect("kafka_request");
        assert_eq!(
            (kafka.source.as_str(), kafka.target.as_str()),
            ("~test", "bus")
        );
        // Fetch names topics by id from version 13 on; the event names them.
        if kafka.api_name == "Fetch" || kafka.api_name == "Produce" {
            let topics: Vec<_> = kafka.topics.iter().map(|t| t.topic.as_str()).collect();
            assert!(topics.iter().all(|t| *t == "orders"), "{kafka:?}");
        }
        apis.insert(kafka.api_name.clone());
    }
    // The broker is reached only through the proxy: every request went to a proxy listener
    // (the bootstrap one or one opened for the broker the metadata named).
    rigd.client()
        .delete_environment(&id, &Default::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_rigd_leaves_no_broker_behind() {
    let rigd = Rigd::start();
    up(
        &rigd,
        json!({
            "name": "kafka-kill",
            "observe": false,
            "services": {"bus": broker(json!({"backend": "native"}), &["orders"])}
        }),
    )
    .await;
    let brokers = brokers_of(rigd.pid());
    assert_eq!(brokers.len(), 1, "one tansu broker: {brokers:?}");
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(rigd.pid() as i32, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + DEADLINE;
    while is_alive(brokers[0]) {
        assert!(
            Instant::now() < deadline,
            "the broker outlived rigd by {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tansu processes rigd `pid` started (its children running `tansu broker`).
fn brokers_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if ppid == Some(pid) && cmdline.contains("tansu") && cmdline.contains(" broker ") {
            found.push(child);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_broker_advertises_its_host_address() {
    if !docker_available() {
        panic!("no Docker engine answers (scripts/install-test-deps.sh starts one)");
    }
    let tansu = tansu();
    let image = image_from_host(
        "rig-test/tansu",
        &[ImageFile {
            host: &tansu,
            path: "/bin/tansu",
        }],
        &[],
    );
    let rigd = Rigd::start();
    // Observe off: the client follows the broker's own metadata, so this only works when
    // the broker advertises the host address of its published port.
    let (_id, up) = up(
        &rigd,
        json!({
            "name": "kafka-container",
            "observe": false,
            "services": {"bus": broker(json!({
                "backend": "container",
                "image": image,
                "cmd": ["/bin/tansu", "broker",
                        "--cluster-id", "rig",
                        "--listener-url", "tcp://0.0.0.0:9092",
                        "--advertised-listener-url", "tcp://${KAFKA_ADVERTISED_ADDRESS}",
                        "--storage-engine", "memory://tansu/"]
            }), &["orders"])}
        }),
    )
    .await;
    let bootstrap = up.ingresses["bus"]["default"].hostport.clone();
    let run = tokio::task::spawn_blocking(move || run_client(&bootstrap, "orders", 3))
        .await
        .unwrap();
    assert_round_trip(&run, "orders", "payments", 3);
}
