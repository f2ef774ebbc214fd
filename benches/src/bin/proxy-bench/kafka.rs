//! `proxy-bench kafka`: Kafka produce throughput through rig's Kafka proxy vs direct.
//!
//! A librdkafka mock cluster runs in this process; a real producer (librdkafka through
//! `rdkafka`) sends the same messages to it directly and through `rig_proxy::run` in Kafka
//! mode (every broker behind its own proxy listener, every request observed, with a sink that
//! serialises each event to JSON as rigd's log would). After a warm-up on each path, every
//! round measures both paths, in alternating order so drift affects both alike; the best and
//! the median round of each are reported with the ratios rig ÷ direct, and the median of the
//! rounds' own ratios (the figure least sensitive to a noisy machine). `--only direct|rig`
//! measures one path, for counting instructions per message under callgrind
//! (`scripts/proxy-bench.sh --kafka-instructions`).

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

use crate::cli::{KafkaOptions, KafkaPaths};

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
    best_direct: Option<Round>,
    best_rig: Option<Round>,
    median_direct: Option<Round>,
    median_rig: Option<Round>,
    /// Best rig round ÷ best direct round.
    ratio: Option<f64>,
    /// Median rig round ÷ median direct round.
    median_ratio: Option<f64>,
    /// The median of each round's rig ÷ direct: robust to drift across rounds.
    paired_median_ratio: Option<f64>,
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
        rig_proxy::RunOptions::default(),
    ));

    let payload = vec![b'x'; options.size];
    println!(
        "kafka produce: {} messages of {} B, {} mock brokers, {} rounds per path",
        options.messages, options.size, options.brokers, options.rounds
    );
    let measure_direct = options.paths != KafkaPaths::Rig;
    let measure_rig = options.paths != KafkaPaths::Direct;
    let mut direct = Vec::new();
    let mut rig = Vec::new();
    let mut paired = Vec::new();
    // A warm-up on each path (connections, metadata, listeners) before measuring.
    let warm_up = options.messages / 10 + 1;
    if measure_direct {
        produce(&bootstrap, &payload, warm_up)?;
    }
    if measure_rig {
        produce(&proxy, &payload, warm_up)?;
    }
    for round in 0..options.rounds {
        // Which path goes first alternates, so drift on a noisy machine hits both alike.
        let rig_first = round % 2 == 1;
        let mut r = None;
        if measure_rig && rig_first {
            r = Some(produce(&proxy, &payload, options.messages)?);
        }
        let d = if measure_direct {
            Some(produce(&bootstrap, &payload, options.messages)?)
        } else {
            None
        };
        if measure_rig && !rig_first {
            r = Some(produce(&proxy, &payload, options.messages)?);
        }
        println!(
            "  round {}: direct {} | rig {}{}",
            round + 1,
            describe(d),
            describe(r),
            match (d, r) {
                (Some(d), Some(r)) => format!(
                    " | rig/direct {:.3}",
                    r.messages_per_sec / d.messages_per_sec
                ),
                _ => String::new(),
            }
        );
        if let (Some(d), Some(r)) = (d, r) {
            paired.push(r.messages_per_sec / d.messages_per_sec);
        }
        direct.extend(d);
        rig.extend(r);
    }
    cancel.cancel();
    runtime
        .block_on(proxy_task)
        .context("the proxy task")?
        .context("the proxy")?;

    let best_direct = best(&direct);
    let best_rig = best(&rig);
    let median_direct = median(&direct);
    let median_rig = median(&rig);
    let ratio = best_rig
        .zip(best_direct)
        .map(|(r, d)| r.messages_per_sec / d.messages_per_sec);
    let median_ratio = median_rig
        .zip(median_direct)
        .map(|(r, d)| r.messages_per_sec / d.messages_per_sec);
    paired.sort_by(f64::total_cmp);
    let paired_median_ratio = paired.get(paired.len() / 2).copied();
    let kafka_events = events.load(Ordering::Relaxed);
    let rate = |round: Option<Round>| round.map_or(0.0, |r| r.messages_per_sec);
    println!(
        "best:   direct {:>10.0} msg/s, rig {:>10.0} msg/s: rig/direct = {}",
        rate(best_direct),
        rate(best_rig),
        ratio_text(ratio)
    );
    println!(
        "median: direct {:>10.0} msg/s, rig {:>10.0} msg/s: rig/direct = {} \
         (median of the rounds' own ratios: {}; {} events observed)",
        rate(median_direct),
        rate(median_rig),
        ratio_text(median_ratio),
        ratio_text(paired_median_ratio),
        kafka_events
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
        paired_median_ratio,
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

/// The fastest round, if any.
fn best(rounds: &[Round]) -> Option<Round> {
    rounds
        .iter()
        .copied()
        .max_by(|a, b| a.messages_per_sec.total_cmp(&b.messages_per_sec))
}

/// The median round (the upper one of an even count), if any.
fn median(rounds: &[Round]) -> Option<Round> {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.messages_per_sec.total_cmp(&b.messages_per_sec));
    sorted.get(sorted.len() / 2).copied()
}

/// One round's rates, or `-` for a path not measured.
fn describe(round: Option<Round>) -> String {
    match round {
        Some(r) => format!(
            "{:>10.0} msg/s {:>7.1} MiB/s",
            r.messages_per_sec, r.mib_per_sec
        ),
        None => format!("{:>25}", "-"),
    }
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.3}"))
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
