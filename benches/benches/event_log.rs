//! Criterion benchmarks for the per-environment event log (`rigd::events`).
//!
//! Mirrors upstream's `eventlog_bench_test.go` (publish, publish log, publish mixed, events
//! merge, lifecycle snapshot, wait_for, subscribe) and adds the subscription fan-out: the time
//! for N events to reach 100 subscribers, against the same N with one subscriber, and the
//! JSON serialisation of an event carrying a 64 KiB body, against copying the body, and the
//! publishing of such events into a log that spills them to disk, against one that keeps them.
//!
//! Run with `cargo bench -p rig-benches --bench event_log`; the measurements take about a
//! minute on a 2-core machine. Publish throughput is reported in elements per second.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rig_types::{ConnectionInfo, Event, EventType, LogStream, RequestInfo};
use rigd::events::{EventFilter, EventLog};
use tokio_util::sync::CancellationToken;

/// Events published into one log before it is replaced, so memory stays bounded however many
/// iterations criterion asks for.
const PUBLISH_CHUNK: u64 = 50_000;

fn lifecycle_event() -> Event {
    Event::for_service(EventType::ServiceStarting, "api")
}

fn log_event() -> Event {
    Event::log("api", LogStream::Stdout, "GET /orders 200 1.2ms\n")
}

fn traffic_event() -> Event {
    let mut e = Event::new(EventType::ConnectionClosed);
    e.connection = Some(Box::new(ConnectionInfo {
        source: "~test".into(),
        target: "api".into(),
        ingress: "default".into(),
        bytes_in: 512,
        bytes_out: 2048,
        duration_ms: 3.5,
        ..ConnectionInfo::default()
    }));
    e
}

/// A log with `lifecycle` lifecycle events spread evenly among `logs` log events; the last
/// event is the lifecycle event `environment.up`.
fn preloaded(lifecycle: usize, logs: usize) -> EventLog {
    let log = EventLog::new();
    let total = lifecycle + logs;
    let mut published = 0;
    for i in 0..total {
        if (i + 1) * lifecycle / total > i * lifecycle / total {
            published += 1;
            let t = if published == lifecycle {
                EventType::EnvironmentUp
            } else {
                EventType::ServiceStarting
            };
            log.publish(Event::for_service(t, "api"));
        } else {
            log.publish(log_event());
        }
    }
    log
}

/// Times `iters` publishes of events produced by `make` (construction is not timed).
fn time_publishes(iters: u64, make: &dyn Fn(u64) -> Event) -> Duration {
    time_publishes_into(iters, PUBLISH_CHUNK, &EventLog::new, make)
}

/// [`time_publishes`] into logs made by `new_log`, each taking `chunk` events.
fn time_publishes_into(
    iters: u64,
    chunk: u64,
    new_log: &dyn Fn() -> EventLog,
    make: &dyn Fn(u64) -> Event,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(chunk);
        let events: Vec<Event> = (done..done + n).map(make).collect();
        let log = new_log();
        let start = Instant::now();
        for event in events {
            black_box(log.publish(event));
        }
        elapsed += start.elapsed();
        drop(log);
        done += n;
    }
    elapsed
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lifecycle", |b| {
        b.iter_custom(|iters| time_publishes(iters, &|_| lifecycle_event()))
    });
    group.bench_function("log", |b| {
        b.iter_custom(|iters| time_publishes(iters, &|_| log_event()))
    });
    group.bench_function("mixed_3log_1lifecycle", |b| {
        b.iter_custom(|iters| {
            time_publishes(iters, &|i| {
                if i % 4 == 3 {
                    lifecycle_event()
                } else {
                    log_event()
                }
            })
        })
    });
    group.bench_function("traffic", |b| {
        b.iter_custom(|iters| time_publishes(iters, &|_| traffic_event()))
    });
    group.finish();

    // An exchange with a 64 KiB response body, into a log that keeps everything in memory
    // and into one whose 16 MiB budget sends most of them to a spill file (JSON serialisation
    // and the write included; the page cache absorbs the writes).
    let dir = tempfile::tempdir().expect("a directory for the spill files");
    let mut group = c.benchmark_group("publish_exchange_64k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("in_memory", |b| {
        b.iter_custom(|iters| time_publishes_into(iters, 1000, &EventLog::new, &exchange_event))
    });
    group.bench_function("spilling", |b| {
        b.iter_custom(|iters| {
            time_publishes_into(
                iters,
                1000,
                &|| EventLog::with_spill(dir.path(), 16 << 20),
                &exchange_event,
            )
        })
    });
    group.finish();
}

/// A `request.completed` with a 64 KiB response body.
fn exchange_event(i: u64) -> Event {
    let mut e = Event::new(EventType::RequestCompleted);
    e.request = Some(Box::new(RequestInfo {
        source: "~test".into(),
        target: "api".into(),
        ingress: "http".into(),
        method: "GET".into(),
        path: format!("/orders/{i}"),
        status_code: 200,
        latency_ms: 1.5,
        response_body: Some(vec![b'x'; 64 * 1024]),
        ..RequestInfo::default()
    }));
    e
}

/// Time for `events` published events to reach every one of `subscribers` subscribers, each
/// a task on a two-worker runtime reading until the log is closed.
fn fan_out(runtime: &tokio::runtime::Runtime, subscribers: usize, events: usize) -> Duration {
    let log = EventLog::new();
    let prepared: Vec<Event> = (0..events)
        .map(|i| {
            if i % 4 == 3 {
                lifecycle_event()
            } else {
                traffic_event()
            }
        })
        .collect();
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut sub = log.subscribe(
                0,
                Some(EventFilter::without_logs()),
                CancellationToken::new(),
            );
            runtime.spawn(async move {
                let mut received = 0usize;
                while sub.next().await.is_some() {
                    received += 1;
                }
                received
            })
        })
        .collect();
    let start = Instant::now();
    for event in prepared {
        log.publish(event);
    }
    log.close();
    runtime.block_on(async {
        for reader in readers {
            let received = reader.await.expect("subscriber task panicked");
            assert_eq!(received, events, "a subscriber missed events");
        }
    });
    start.elapsed()
}

fn subscribe_fan_out(c: &mut Criterion) {
    const EVENTS: usize = 10_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("build the tokio runtime");
    let mut group = c.benchmark_group("subscribe_fan_out");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(EVENTS as u64));
    for subscribers in [1, 100] {
        group.bench_function(
            BenchmarkId::new(
                format!("events={EVENTS}"),
                format!("subscribers={subscribers}"),
            ),
            |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| fan_out(&runtime, subscribers, EVENTS))
                        .sum()
                })
            },
        );
    }
    group.finish();
}

fn snapshots(c: &mut Criterion) {
    let mut group = c.benchmark_group("events_merge");
    for (lifecycle, logs) in [(100, 0), (100, 1_000), (100, 10_000), (1_000, 10_000)] {
        let log = preloaded(lifecycle, logs);
        group.bench_function(format!("lifecycle={lifecycle}/logs={logs}"), |b| {
            b.iter(|| black_box(log.events()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("lifecycle_events");
    for (lifecycle, logs) in [(100, 0), (100, 10_000)] {
        let log = preloaded(lifecycle, logs);
        group.bench_function(format!("lifecycle={lifecycle}/logs={logs}"), |b| {
            b.iter(|| black_box(log.lifecycle_events()))
        });
    }
    group.finish();
}

/// Polls a future that must complete without waiting.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("benchmarked future was expected to complete at once"),
    }
}

fn wait_for(c: &mut Criterion) {
    let mut group = c.benchmark_group("wait_for");
    for (lifecycle, logs) in [(100, 0), (100, 10_000)] {
        let log = preloaded(lifecycle, logs);
        group.bench_function(format!("lifecycle={lifecycle}/logs={logs}"), |b| {
            b.iter(|| {
                black_box(ready(
                    log.wait_for(|e| e.event_type == EventType::EnvironmentUp),
                ))
            })
        });
    }
    group.finish();
}

fn subscribe_replay(c: &mut Criterion) {
    const PRELOAD: u64 = 200;
    let log = EventLog::new();
    for i in 0..PRELOAD {
        log.publish(if i % 4 == 3 {
            lifecycle_event()
        } else {
            log_event()
        });
    }
    log.close();
    let mut group = c.benchmark_group("subscribe");
    group.throughput(Throughput::Elements(PRELOAD));
    group.bench_function("replay_200", |b| {
        b.iter_batched(
            || log.subscribe(0, None, CancellationToken::new()),
            |mut sub| {
                let mut n = 0;
                while ready(sub.next()).is_some() {
                    n += 1;
                }
                assert_eq!(n, PRELOAD);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A `request.completed` event with a captured 64 KiB response body (as the proxy records a
/// 64 KiB response), serialised to JSON as the event log and SSE do, against copying the same
/// body: the ratio is what the JSON (mostly the body's base64) costs per byte recorded.
fn body_json(c: &mut Criterion) {
    let body: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let mut event = Event::new(EventType::RequestCompleted);
    event.request = Some(Box::new(rig_types::RequestInfo {
        source: "~test".into(),
        target: "api".into(),
        method: "GET".into(),
        path: "/64k".into(),
        status_code: 200,
        response_size: body.len() as i64,
        response_body: Some(body.clone()),
        ..rig_types::RequestInfo::default()
    }));
    let mut group = c.benchmark_group("body_json");
    group.throughput(Throughput::Bytes(body.len() as u64));
    let mut out = Vec::with_capacity(128 * 1024);
    group.bench_function("serialize_64k_body", |b| {
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, black_box(&event)).unwrap();
            out.len()
        })
    });
    group.bench_function("baseline_copy_64k", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&body));
            out.len()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = publish, subscribe_fan_out, snapshots, wait_for, subscribe_replay, body_json
}
criterion_main!(benches);
