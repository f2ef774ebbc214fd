//! The `s3` and `sqs` types with their native backend (moto's server), through the real
//! `rigd` binary and a real AWS client (boto3, which comes with moto): a bucket and a queue
//! per environment on shared servers, isolated from each other, deleted at teardown.

mod support;

use rig_types::{Event, EventType};
use rigd::cli::client::DeleteOptions;
use serde_json::json;
use support::clients::boto3;
use support::Rigd;

async fn up(rigd: &Rigd, name: &str) -> (String, Event) {
    let id = rigd
        .create(json!({
            "name": name,
            "services": {
                "store": {"type": "s3", "config": {"backend": "native"},
                          "ingresses": {"default": {"protocol": "tcp", "container_port": 9000}}},
                "queue": {"type": "sqs", "config": {"backend": "native"},
                          "ingresses": {"default": {"protocol": "tcp", "container_port": 9324}}}
            }
        }))
        .await;
    let up = rigd.events(&id).until(EventType::EnvironmentUp).await;
    (id, up)
}

#[tokio::test]
async fn each_environment_gets_its_own_bucket_and_queue_deleted_at_teardown() {
    let rigd = Rigd::start();
    let ((a, up_a), (b, up_b)) = tokio::join!(up(&rigd, "alpha"), up(&rigd, "beta"));
    // s3 and sqs share one moto server.
    let motos = support::children_with_cmdline(rigd.pid(), "moto_server");
    assert_eq!(motos.len(), 1, "one moto_server for s3 and sqs: {motos:?}");
    let s3 = |up: &Event| up.ingresses["store"]["default"].clone();
    let sqs = |up: &Event| up.ingresses["queue"]["default"].clone();
    let bucket = |up: &Event| s3(up).attributes.unwrap()["S3_BUCKET"].clone();
    assert_ne!(bucket(&up_a), bucket(&up_b));
    assert!(bucket(&up_a).as_str().unwrap().starts_with("rig-"));

    // alpha writes an object and a message; beta sees neither.
    let wrote = boto3(
        &[&s3(&up_a), &sqs(&up_a)],
        "S3.put_object(Bucket=BUCKET, Key='dir/hello world.txt', Body=b'from alpha')\n\
         S3.put_object(Bucket=BUCKET, Key='a&b<c>.txt', Body=b'to be deleted in a batch')\n\
         SQS.send_message(QueueUrl=QUEUE, MessageBody='for alpha')\n\
         print(S3.get_object(Bucket=BUCKET, Key='dir/hello world.txt')['Body'].read().decode())",
    );
    assert_eq!(wrote, "from alpha");
    let seen_by_beta = boto3(
        &[&s3(&up_b), &sqs(&up_b)],
        "print(S3.list_objects_v2(Bucket=BUCKET).get('KeyCount'))\n\
         print(len(SQS.receive_message(QueueUrl=QUEUE, WaitTimeSeconds=0).get('Messages', [])))",
    );
    assert_eq!(seen_by_beta, "0\n0");
    let received = boto3(
        &[&s3(&up_a), &sqs(&up_a)],
        "print(SQS.receive_message(QueueUrl=QUEUE, WaitTimeSeconds=1)['Messages'][0]['Body'])",
    );
    assert_eq!(received, "for alpha");

    // Tearing alpha down deletes its bucket (objects first) and its queue.
    rigd.client()
        .delete_environment(&a, &DeleteOptions::default())
        .await
        .unwrap();
    let alpha_bucket = bucket(&up_a);
    let alpha_queue = sqs(&up_a).attributes.unwrap()["SQS_QUEUE_URL"].clone();
    let left = boto3(
        &[&s3(&up_b), &sqs(&up_b)],
        "print(sorted(b['Name'] for b in S3.list_buckets()['Buckets']))\n\
         print([u.rsplit('/', 1)[1] for u in SQS.list_queues().get('QueueUrls', [])])",
    );
    let mut lines = left.lines();
    let buckets = lines.next().unwrap_or_default();
    let queues = lines.next().unwrap_or_default();
    assert!(
        !buckets.contains(&format!("'{}'", alpha_bucket.as_str().unwrap())),
        "{buckets}"
    );
    assert!(
        buckets.contains(bucket(&up_b).as_str().unwrap()),
        "{buckets}"
    );
    let alpha_queue_name = alpha_queue.as_str().unwrap().rsplit('/').next().unwrap();
    assert!(
        !queues.contains(&format!("'{alpha_queue_name}'")),
        "{queues}"
    );
    rigd.client()
        .delete_environment(&b, &DeleteOptions::default())
        .await
        .unwrap();
}

/// Bucket and queue names come from the moto server, not from a pool's backend: an `s3` (or
/// `sqs`) backend that stops and starts again while the other type keeps the shared server
/// up never hands out a name again, so a bucket or queue left behind (a release that failed)
/// is never reused with its leftovers.
#[tokio::test]
async fn successive_backends_on_one_moto_server_never_reuse_a_name() {
    use rigd::pool::Backend;
    use rigd::services::infra::Infra;
    use rigd::services::s3::S3Infra;
    use rigd::services::sqs::SqsInfra;

    let program = S3Infra::find_native().expect("moto_server on PATH");
    // sqs keeps the server up while two s3 backends come and go, leaving their buckets.
    let sqs_keeper = SqsInfra::start_native(program.clone()).await.unwrap();
    let port = SqsInfra::port(&sqs_keeper);
    let mut buckets = Vec::new();
    for _ in 0..2 {
        let s3 = S3Infra::start_native(program.clone()).await.unwrap();
        assert_eq!(S3Infra::port(&s3), port, "one shared moto server");
        buckets.push(s3.new_lease().await.unwrap());
        s3.stop().await;
    }
    assert_ne!(buckets[0], buckets[1], "a bucket name was handed out twice");

    // And the other way round: s3 keeps it up while two sqs backends come and go.
    let s3_keeper = S3Infra::start_native(program.clone()).await.unwrap();
    sqs_keeper.stop().await;
    let mut queues = Vec::new();
    for _ in 0..2 {
        let sqs = SqsInfra::start_native(program.clone()).await.unwrap();
        assert_eq!(SqsInfra::port(&sqs), port, "one shared moto server");
        queues.push(sqs.new_lease().await.unwrap().url);
        sqs.stop().await;
    }
    s3_keeper.stop().await;
    assert_ne!(queues[0], queues[1], "a queue name was handed out twice");
}
