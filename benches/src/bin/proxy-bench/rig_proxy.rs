//! `serve-rig-proxy`: rig's observing proxy as a process of its own, so its memory can be
//! read from `/proc` and its CPU is not shared with the load generator's runtime.
//!
//! The proxy runs exactly as rigd runs it (`rig_proxy::run`, default settings: bodies captured
//! up to 64 KiB per direction, headers redacted) with a [`BenchSink`] in place of rigd's event
//! log. At exit it prints `stats events=N dropped=N json_bytes=N`, so the harness can show
//! that every exchange was observed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use rig_proxy::{Edge, Mode, TrafficSink};
use rig_types::{Event, EventType};
use tokio_util::sync::CancellationToken;

use crate::cli::{RigProxyOptions, SinkKind};
use crate::standalone;

/// How long the proxies may take to drain after the stop signal.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// A sink that counts events and, for [`SinkKind::Json`], serialises each one to JSON as
/// rigd's log file writer would (into a reused buffer that is then discarded).
pub struct BenchSink {
    kind: SinkKind,
    events: AtomicU64,
    dropped: AtomicU64,
    json_bytes: AtomicU64,
    buffer: Mutex<Vec<u8>>,
}

impl BenchSink {
    /// A sink of the given kind with all counters at zero.
    pub fn new(kind: SinkKind) -> BenchSink {
        BenchSink {
            kind,
            events: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            json_bytes: AtomicU64::new(0),
            buffer: Mutex::new(Vec::with_capacity(64 * 1024)),
        }
    }

    /// The `stats ...` line printed at exit.
    pub fn stats_line(&self) -> String {
        format!(
            "stats events={} dropped={} json_bytes={}",
            self.events.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.json_bytes.load(Ordering::Relaxed)
        )
    }
}

impl TrafficSink for BenchSink {
    fn emit(&self, event: Event) {
        self.events.fetch_add(1, Ordering::Relaxed);
        if event.event_type == EventType::ObservationsDropped {
            self.dropped.fetch_add(event.dropped, Ordering::Relaxed);
        }
        if self.kind == SinkKind::Json {
            let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            buffer.clear();
            if serde_json::to_writer(&mut *buffer, &event).is_ok() {
                buffer.push(b'\n');
                self.json_bytes
                    .fetch_add(buffer.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Runs one proxy per requested mode until stdin closes or SIGTERM, then prints the stats.
pub fn main(options: RigProxyOptions) -> Result<()> {
    let sink = Arc::new(BenchSink::new(options.sink));
    standalone::runtime(options.threads)?.block_on(async {
        let stop = standalone::stop_signal();
        let cancel = CancellationToken::new();
        let mut addrs = BTreeMap::new();
        let mut proxies = Vec::new();
        let modes = [
            ("http", Mode::Http, &options.http),
            ("tcp", Mode::Tcp, &options.tcp),
            ("grpc", Mode::Grpc, &options.grpc),
        ];
        for (name, mode, target) in modes {
            let Some(target) = target else { continue };
            let listener = std::net::TcpListener::bind("127.0.0.1:0")
                .with_context(|| format!("binding the {name} proxy's listener"))?;
            addrs.insert(name, listener.local_addr()?);
            let edge = Edge {
                source: "bench-client".into(),
                target: "origin".into(),
                ingress: name.into(),
            };
            let sink: Arc<dyn TrafficSink> = sink.clone();
            proxies.push(tokio::spawn(rig_proxy::run(
                listener,
                target.clone(),
                mode,
                edge,
                sink,
                cancel.clone(),
                rig_proxy::RunOptions::default(),
            )));
        }
        standalone::announce(&addrs)?;
        stop.cancelled().await;
        cancel.cancel();
        for proxy in proxies {
            match tokio::time::timeout(DRAIN_LIMIT, proxy).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => eprintln!("serve-rig-proxy: {error}"),
                Ok(Err(error)) => eprintln!("serve-rig-proxy: proxy task failed: {error}"),
                Err(_) => {
                    eprintln!("serve-rig-proxy: a proxy did not drain within {DRAIN_LIMIT:?}")
                }
            }
        }
        anyhow::Ok(())
    })?;
    println!("{}", sink.stats_line());
    Ok(())
}

/// Parses a `stats ...` line into its counters.
pub fn parse_stats(text: &str) -> Option<BTreeMap<String, u64>> {
    let line = text.lines().find(|line| line.starts_with("stats "))?;
    line.split_whitespace()
        .skip(1)
        .map(|word| {
            let (name, value) = word.split_once('=')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sink_counts_events_drops_and_bytes() {
        let sink = BenchSink::new(SinkKind::Json);
        sink.emit(Event::new(EventType::ConnectionClosed));
        let mut dropped = Event::new(EventType::ObservationsDropped);
        dropped.dropped = 7;
        sink.emit(dropped);
        let stats = parse_stats(&sink.stats_line()).unwrap();
        assert_eq!(stats["events"], 2);
        assert_eq!(stats["dropped"], 7);
        assert!(stats["json_bytes"] > 20, "{stats:?}");
    }

    #[test]
    fn count_sink_serialises_nothing() {
        let sink = BenchSink::new(SinkKind::Count);
        sink.emit(Event::new(EventType::ConnectionClosed));
        let stats = parse_stats(&sink.stats_line()).unwrap();
        assert_eq!((stats["events"], stats["json_bytes"]), (1, 0));
    }

    #[test]
    fn stats_lines_are_found_among_other_output() {
        let stats = parse_stats("something\nstats events=3 dropped=0 json_bytes=9\n").unwrap();
        assert_eq!(stats["events"], 3);
        assert!(parse_stats("no stats here").is_none());
    }
}
