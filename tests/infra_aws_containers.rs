//! The container backend of `s3` and `sqs` (moto's server in a container), through the real
//! `rigd` binary, a real Docker engine and a real AWS client (boto3, which comes with moto),
//! with an image made locally from the machine's Python and moto (`support::images::moto`;
//! nothing can be pulled here): a service puts and gets an object and sends and receives a
//! message through the observing proxy, environments share one container with their own
//! buckets and queues, the container goes with rigd (even after `kill -9`), and `auto` without
//! `moto_server` on `PATH` picks the container.

mod support;

use std::path::Path;

use rig_types::{Event, EventType};
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::clients::{attr, boto3};
use support::images;
use support::images::{containers_named, published_port};
use support::{traffic_seen, Rigd};

/// A `process` service's Python script: with boto3 clients for its egresses `store` (s3) and
/// `queue` (sqs), puts and gets an object and sends and receives a message, naming the
/// environment (its argument); then sends a message to the queue URL moto itself returns
/// (`GetQueueUrl`), with a client whose endpoint is that URL's host, and receives it. Writes
/// what it got, a line each, to `$RIG_TEMP_DIR/out.txt`, then idles.
const WORKER: &str = r#"
import os, sys, time, boto3
from urllib.parse import urlsplit
from botocore.config import Config
e = os.environ
def client(kind, prefix, endpoint):
    return boto3.client(kind, endpoint_url=endpoint, region_name=e[prefix + "AWS_REGION"],
        aws_access_key_id=e[prefix + "AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=e[prefix + "AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}))
name = sys.argv[1]
s3 = client("s3", "STORE_", e["STORE_S3_ENDPOINT"])
sqs = client("sqs", "QUEUE_", e["QUEUE_SQS_ENDPOINT"])
bucket, queue = e["STORE_S3_BUCKET"], e["QUEUE_SQS_QUEUE_URL"]
s3.put_object(Bucket=bucket, Key="greeting", Body=("object from " + name).encode())
got = s3.get_object(Bucket=bucket, Key="greeting")["Body"].read().decode()
sqs.send_message(QueueUrl=queue, MessageBody="message from " + name)
message = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"][0]["Body"]
own = sqs.get_queue_url(QueueName=queue.rsplit("/", 1)[1])["QueueUrl"]
parts = urlsplit(own)
direct = client("sqs", "QUEUE_", parts.scheme + "://" + parts.netloc)
direct.send_message(QueueUrl=own, MessageBody="via moto's URL")
back = direct.receive_message(QueueUrl=own, WaitTimeSeconds=5)["Messages"][0]["Body"]
out = os.path.join(e["RIG_TEMP_DIR"], "out")
with open(out + ".tmp", "w") as f:
    f.write("\n".join([got, message, back, own]) + "\n")
os.rename(out + ".tmp", out + ".txt")
time.sleep(1000)
"#;

fn s3(image: &str, backend: &str) -> Value {
    json!({
        "type": "s3",
        "config": {"backend": backend, "image": image},
        "ingresses": {"default": {"protocol": "tcp", "container_port": 9000}}
    })
}

fn sqs(image: &str, backend: &str) -> Value {
    json!({
        "type": "sqs",
        "config": {"backend": backend, "image": image},
        "ingresses": {"default": {"protocol": "tcp", "container_port": 9324}}
    })
}

fn require_docker() {
    if !images::docker_available() {
        panic!("Docker is not available (scripts/install-test-deps.sh starts it)");
    }
}

#[tokio::test]
async fn container_s3_and_sqs_serve_a_service_through_the_proxy_and_environments_share_one_container(
) {
    require_docker();
    let image = images::moto();
    let rigd = Rigd::start();
    let worker = rigd.script("worker.py", WORKER);
    let spec = |name: &str| {
        json!({
            "name": name,
            "services": {
                "store": s3(&image, "container"),
                "queue": sqs(&image, "container"),
                "worker": {
                    "type": "process",
                    "config": {"command": "python3"},
                    "args": [worker, name],
                    "egresses": {"store": {"service": "store"}, "queue": {"service": "queue"}}
                }
            }
        })
    };
    let ((a, up_a), (b, up_b)) = tokio::join!(rigd.up(spec("alpha")), rigd.up(spec("beta")));
    for (name, up) in [("alpha", &up_a), ("beta", &up_b)] {
        let out = Path::new(&up.env_dir).join("worker").join("out.txt");
        support::wait_until("the worker's object and messages", || out.exists());
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                format!("object from {name}").as_str(),
                &format!("message from {name}"),
                "via moto's URL"
            ],
            "{text}"
        );
        // moto's own queue URL names an address on the host (here the proxy the worker
        // reached it through), never the server's port inside the container.
        assert!(lines[3].starts_with("http://127.0.0.1:"), "{text}");
        assert!(!lines[3].contains(":5000/"), "{text}");
    }

    // One moto container, named like the other pool containers, serves s3 and sqs of both
    // environments; no moto_server runs on the host.
    let running = containers_named(&format!("rig-moto-{}-", rigd.pid()));
    assert_eq!(
        running.len(),
        1,
        "one container for s3 and sqs: {running:?}"
    );
    assert!(
        support::children_with_cmdline(rigd.pid(), "moto_server").is_empty(),
        "a native moto_server runs"
    );
    // The environment's s3 and sqs are on the container's published port (the worker's
    // endpoints are the proxies in front of it).
    let resolved = rigd.client().get_environment(&a).await.unwrap();
    let target = serde_json::to_string(&resolved).unwrap();
    let port = published_port(&running[0], 5000);
    assert!(
        !port.is_empty(),
        "port 5000 of {} is not published",
        running[0]
    );
    assert!(
        target.contains(&format!("\"127.0.0.1:{port}\"")),
        "the environment does not name the container's port: {target}"
    );
    let store = |up: &Event| up.ingresses["store"]["default"].clone();
    let queue = |up: &Event| up.ingresses["queue"]["default"].clone();
    assert_ne!(
        attr(&store(&up_a), "S3_BUCKET"),
        attr(&store(&up_b), "S3_BUCKET")
    );
    assert_ne!(
        attr(&queue(&up_a), "SQS_QUEUE_URL"),
        attr(&queue(&up_b), "SQS_QUEUE_URL")
    );
    // Each environment sees its own object only.
    assert_eq!(
        boto3(
            &[&store(&up_b)],
            "print(S3.get_object(Bucket=BUCKET, Key='greeting')['Body'].read().decode())"
        ),
        "object from beta"
    );

    for id in [&a, &b] {
        let log = rigd.log(id).await;
        for target in ["store", "queue"] {
            assert!(
                traffic_seen(&log, "worker", target),
                "no connection.closed worker → {target} with traffic in {}",
                support::describe(&log)
            );
        }
    }

    // Tearing alpha down deletes its bucket (asked of beta's endpoint: alpha's proxy is gone).
    rigd.client()
        .delete_environment(&a, &DeleteOptions::default())
        .await
        .unwrap();
    let buckets = boto3(
        &[&store(&up_b)],
        "print(sorted(b['Name'] for b in S3.list_buckets()['Buckets']))",
    );
    assert!(
        !buckets.contains(&format!("'{}'", attr(&store(&up_a), "S3_BUCKET"))),
        "{buckets}"
    );
    assert!(
        buckets.contains(&attr(&store(&up_b), "S3_BUCKET")),
        "{buckets}"
    );
    rigd.client()
        .delete_environment(&b, &DeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_moto_container_stops_with_rigd_and_is_reaped_after_kill_9() {
    require_docker();
    let image = images::moto();
    let spec = json!({"name": "moto-reaped", "observe": false,
                      "services": {"store": s3(&image, "container"),
                                   "queue": sqs(&image, "container")}});

    images::pool_container_goes_with_rigd(&spec, "rig-moto").await;
}

#[tokio::test]
async fn auto_without_moto_server_on_path_runs_the_container() {
    require_docker();
    let image = images::moto();
    // No moto_server on rigd's PATH (it lives in pyenv's directories).
    let rigd = Rigd::start_with_env(&[], &[("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")]);
    let (id, up) = rigd
        .up(json!({"name": "moto-auto", "observe": false,
                   "services": {"store": s3(&image, "auto")}}))
        .await;
    let running = containers_named(&format!("rig-moto-{}-", rigd.pid()));
    assert_eq!(running.len(), 1, "{running:?}");
    let store = &up.ingresses["store"]["default"];
    let got = boto3(
        &[store],
        "S3.put_object(Bucket=BUCKET, Key='k', Body=b'in the container')\n\
         print(S3.get_object(Bucket=BUCKET, Key='k')['Body'].read().decode())",
    );
    assert_eq!(got, "in the container");
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .unwrap();
}

/// The container backend without a reachable Docker engine fails in the artifact phase, as
/// the other types' do, asking whether Docker is running.
#[tokio::test]
async fn the_container_backend_without_docker_asks_whether_docker_is_running() {
    let rigd = Rigd::start_with_env(&[], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let id = rigd
        .create(json!({"name": "moto-nodocker",
                       "services": {"queue": sqs("rig-test/moto:absent", "container")}}))
        .await;
    let failed = rigd.events(&id).until(EventType::ArtifactFailed).await;
    assert!(
        failed.error.contains("is Docker running?"),
        "{}",
        failed.error
    );
}
