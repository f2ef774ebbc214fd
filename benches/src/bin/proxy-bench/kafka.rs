//! `proxy-bench kafka`: Kafka produce throughput through rig's Kafka proxy vs direct.
//!
//! A librdkafka mock cluster runs in this process; a real producer (librdkafka through
//! `rdkafka`) sends the same messages to it directly and through `rig_proxy::run` in Kafka
//! mode (every broker behind its own proxy listener, every request observed, with a sink that
//! serialises each event to JSON as rigd's log would). Rounds alternate between the two paths
//! so drift affects both; the best and the median round of each are reported, with the
//! ratios proxy ÷ direct.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use rig_proxy::{Edge, Mode};
use rig_types::Event;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::KafkaOptions;

const TOPIC: &str = "bench";

/// Counts deliveries and failures.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// The producer's context: counts into shared [`Deliveries`].
struct Counting(Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// One measured round.
#[derive(Clone, Copy, Debug, Serialize)]
struct Round {
    messages_per_sec: f64,
    mib_per_sec: f64,
}

#[derive(Serialize)]
struct KafkaReport {
    messages: usize,
    message_size: usize,
    brokers: i32,
    rounds: usize,
    direct: Vec<Round>,
    rig: Vec<Round>,
    best_direct: Round,
    best_rig: Round,
    median_direct: Round,
    median_rig: Round,
    ratio: f64,
    median_ratio: f64,
    kafka_events: u64,
}

/// Runs the Kafka benchmark and prints its table.
pub fn run(options: KafkaOptions) -> Result<()> {
    let cluster =
        MockCluster::new(options.brokers).context("starting librdkafka's mock cluster")?;
    let partitions = options.brokers * 2;
    cluster
        .create_topic(TOPIC, partitions, 1)
        .context("creating the bench topic")?;
    let bootstrap = cluster.bootstrap_servers();
    let first_broker = bootstrap
        .split(',')
        .next()
        .context("the mock cluster has no broker")?
        .to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let proxy = listener.local_addr()?.to_string();
    let events = Arc::new(AtomicU64::new(0));
    let counted = events.clone();
    let sink = Arc::new(move |event: Event| {
        // As rigd's log does: every event becomes a JSON line.
        if serde_json::to_vec(&event).is_ok() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let cancel = CancellationToken::new();
    let edge = Edge {
        source: "~test".into(),
        target: "kafka".into(),
        ingress: "default".into(),
    };
    let proxy_task = runtime.spawn(rig_proxy::run(
        listener,
        first_broker,
        Mode::Kafka,
        edge,
        sink,
        cancel.clone(),
    ));

    let payload = vec![b'x'; options.size];
    println!(
        "kafka produce: {} messages of {} B, {} mock brokers, {} rounds per path",
        options.messages, options.size, options.brokers, options.rounds
    );
    let mut direct = Vec::new();
    let mut rig = Vec::new();
    // A warm-up on each path (connections, metadata, listeners) before measuring.
    produce(&bootstrap, &payload, options.messages / 10 + 1)?;
    produce(&proxy, &payload, options.messages / 10 + 1)?;
    for round in 0..options.rounds {
        let d = produce(&bootstrap, &payload, options.messages)?;
        let r = produce(&proxy, &payload, options.messages)?;
        println!(
            "  round {}: direct {:>10.0} msg/s {:>7.1} MiB/s | rig {:>10.0} msg/s {:>7.1} MiB/s",
            round + 1,
            d.messages_per_sec,
            d.mib_per_sec,
            r.messages_per_sec,
            r.mib_per_sec
        );
        direct.push(d);
        rig.push(r);
    }
    cancel.cancel();
    runtime
        .block_on(proxy_task)
        .context("the proxy task")?
        .context("the proxy")?;

    let best = |rounds: &[Round]| {
        rounds
            .iter()
            .copied()
            .max_by(|a, b| a.messages_per_sec.total_cmp(&b.messages_per_sec))
            .expect("at least one round")
    };
    let best_direct = best(&direct);
    let best_rig = best(&rig);
    let median = |rounds: &[Round]| {
        let mut sorted = rounds.to_vec();
        sorted.sort_by(|a, b| a.messages_per_sec.total_cmp(&b.messages_per_sec));
        sorted[sorted.len() / 2]
    };
    let median_direct = median(&direct);
    let median_rig = median(&rig);
    let ratio = best_rig.messages_per_sec / best_direct.messages_per_sec;
    let median_ratio = median_rig.messages_per_sec / median_direct.messages_per_sec;
    let kafka_events = events.load(Ordering::Relaxed);
    println!(
        "best:   direct {:>10.0} msg/s, rig {:>10.0} msg/s: rig/direct = {:.3}",
        best_direct.messages_per_sec, best_rig.messages_per_sec, ratio
    );
    println!(
        "median: direct {:>10.0} msg/s, rig {:>10.0} msg/s: rig/direct = {:.3} ({} events observed)",
        median_direct.messages_per_sec, median_rig.messages_per_sec, median_ratio, kafka_events
    );
    let report = KafkaReport {
        messages: options.messages,
        message_size: options.size,
        brokers: options.brokers,
        rounds: options.rounds,
        direct,
        rig,
        best_direct,
        best_rig,
        median_direct,
        median_rig,
        ratio,
        median_ratio,
        kafka_events,
    };
    if let Some(parent) = options.json.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(&options.json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", options.json.display()))?;
    println!("JSON: {}", options.json.display());
    Ok(())
}

/// Produces `count` messages through `bootstrap` and waits until all are acknowledged.
fn produce(bootstrap: &str, payload: &[u8], count: usize) -> Result<Round> {
    let deliveries = Arc::new(Deliveries::default());
    let producer: BaseProducer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000")
        .create_with_context(Counting(deliveries.clone()))
        .context("creating the producer")?;
    let started = Instant::now();
    for i in 0..count {
        let key = (i as u64).to_be_bytes();
        let mut record = BaseRecord::to(TOPIC).key(&key[..]).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => bail!("producing to {bootstrap}: {error}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .with_context(|| format!("flushing to {bootstrap}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = deliveries.ok.load(Ordering::Relaxed);
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if ok != count as u64 {
        bail!("{ok} of {count} messages delivered through {bootstrap} ({failed} failed)");
    }
    Ok(Round {
        messages_per_sec: count as f64 / elapsed,
        mib_per_sec: (count * payload.len()) as f64 / elapsed / (1024.0 * 1024.0),
    })
}
