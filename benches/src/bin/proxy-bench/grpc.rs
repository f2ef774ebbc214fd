//! `proxy-bench grpc`: gRPC unary calls per second, direct vs through rig's observing proxy.
//!
//! The origin is the tonic echo server of the tests (`serve-grpc-origin`, server reflection
//! on, so rig decodes every message with descriptors), rig's proxy runs in `grpc` mode as a
//! process of its own (`serve-rig-proxy --grpc`), and the load generator in this process keeps
//! `--concurrency` unary calls in flight over `--connections` HTTP/2 connections. Direct and
//! rig are measured in alternating rounds, so drift of the machine affects both alike; the
//! reported rate of a path is the median of its rounds. The result is printed and written as
//! JSON.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rig_grpc_echo::pb::EchoRequest;
use rig_grpc_echo::{EchoClient, Options, Reflection};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::children::Child;
use crate::cli::{GrpcOptions, SinkKind};
use crate::procfs::tree_cpu;
use crate::rig_proxy::parse_stats;
use crate::standalone;

/// `serve-grpc-origin`: the echo server with reflection, until stdin closes or SIGTERM.
pub fn serve_origin(threads: usize) -> Result<()> {
    standalone::runtime(threads)?.block_on(async {
        let stop = standalone::stop_signal();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the gRPC origin's listener")?;
        let addr = listener.local_addr()?;
        let server = rig_grpc_echo::serve(
            listener,
            Options {
                reflection: Reflection::V1,
                gzip: false,
            },
        );
        standalone::announce(&BTreeMap::from([("grpc", addr)]))?;
        stop.cancelled().await;
        server.abort();
        Ok(())
    })
}

/// One path's measurement over all rounds.
#[derive(Debug, Serialize)]
struct PathResult {
    /// Calls per second of each round.
    rounds: Vec<f64>,
    /// The median round.
    calls_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
    /// CPU time the proxy process used per call, in microseconds (rig only).
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy_cpu_us_per_call: Option<f64>,
}

#[derive(Debug, Serialize)]
struct GrpcReport {
    concurrency: usize,
    connections: usize,
    duration_secs: f64,
    rounds: usize,
    direct: PathResult,
    rig: PathResult,
    /// rig's calls/s ÷ direct's.
    ratio: f64,
    /// What rig's proxy recorded (`events`, `dropped`).
    rig_observation: BTreeMap<String, u64>,
}

/// Runs the gRPC benchmark and prints/writes the report.
pub fn run(options: GrpcOptions) -> Result<()> {
    let exe = std::env::current_exe().context("finding the proxy-bench executable")?;
    let threads = options.threads.to_string();
    let mut origin = Child::spawn(
        "grpc-origin",
        own_command(&exe, &["serve-grpc-origin", "--threads", &threads]),
        None,
    )?;
    let origin_addr = *origin
        .read_listening()?
        .get("grpc")
        .context("the gRPC origin announced no address")?;
    let target = origin_addr.to_string();
    let sink = match options.sink {
        SinkKind::Count => "count",
        SinkKind::Json => "json",
    };
    let mut proxy = Child::spawn(
        "rig",
        own_command(
            &exe,
            &[
                "serve-rig-proxy",
                "--grpc",
                &target,
                "--sink",
                sink,
                "--threads",
                &threads,
            ],
        ),
        None,
    )?;
    let proxy_addr = *proxy
        .read_listening()?
        .get("grpc")
        .context("rig's proxy announced no grpc address")?;
    let proxy_pid = proxy.pid();

    let runtime = standalone::runtime(options.threads)?;
    let (direct, rig, cpu) = runtime.block_on(async {
        let direct = clients(&origin_addr.to_string(), options.connections).await?;
        let rig = clients(&proxy_addr.to_string(), options.connections).await?;
        let mut direct_rounds = Vec::new();
        let mut rig_rounds = Vec::new();
        let mut rig_cpu = Duration::ZERO;
        let mut rig_calls = 0u64;
        for _ in 0..options.rounds {
            direct_rounds.push(measure(&direct, &options).await);
            let before = tree_cpu(proxy_pid).unwrap_or_default();
            let round = measure(&rig, &options).await;
            rig_cpu += tree_cpu(proxy_pid)
                .unwrap_or_default()
                .saturating_sub(before);
            rig_calls += round.calls;
            rig_rounds.push(round);
        }
        anyhow::Ok((direct_rounds, rig_rounds, (rig_cpu, rig_calls)))
    })?;
    let output = proxy.finish()?;
    drop(origin);

    let direct = summarise(direct, None);
    let per_call = (cpu.1 > 0).then(|| cpu.0.as_secs_f64() * 1e6 / cpu.1 as f64);
    let rig = summarise(rig, per_call);
    let ratio = if direct.calls_per_sec > 0.0 {
        rig.calls_per_sec / direct.calls_per_sec
    } else {
        0.0
    };
    let report = GrpcReport {
        concurrency: options.concurrency,
        connections: options.connections,
        duration_secs: options.duration.as_secs_f64(),
        rounds: options.rounds,
        direct,
        rig,
        ratio,
        rig_observation: parse_stats(&output).unwrap_or_default(),
    };
    print_report(&report);
    if let Some(dir) = options.json.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(&options.json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", options.json.display()))?;
    println!("JSON: {}", options.json.display());
    Ok(())
}

fn own_command(exe: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(exe);
    command.args(args);
    command
}

/// One client per HTTP/2 connection.
async fn clients(addr: &str, connections: usize) -> Result<Vec<EchoClient<Channel>>> {
    let mut out = Vec::new();
    for _ in 0..connections.max(1) {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let mut client = EchoClient::new(channel);
        // Check the path works before measuring it.
        client
            .unary(request())
            .await
            .with_context(|| format!("a unary call to {addr}"))?;
        out.push(client);
    }
    Ok(out)
}

fn request() -> EchoRequest {
    EchoRequest {
        text: "bench".into(),
        ..EchoRequest::default()
    }
}

struct Round {
    calls: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

/// Keeps `concurrency` calls in flight for the warmup, then counts calls for the duration.
async fn measure(clients: &[EchoClient<Channel>], options: &GrpcOptions) -> Round {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..options.concurrency.max(1) {
        let mut client = clients[i % clients.len()].clone();
        let (measuring, stop, calls, errors) = (
            measuring.clone(),
            stop.clone(),
            calls.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latency =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = client.unary(request()).await.is_ok();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let micros =
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = latency.record(micros.max(1));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latency
        }));
    }
    tokio::time::sleep(options.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(options.duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for task in tasks {
        if let Ok(h) = task.await {
            let _ = latency.add(h);
        }
    }
    Round {
        calls: calls.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latency,
    }
}

fn summarise(rounds: Vec<Round>, proxy_cpu_us_per_call: Option<f64>) -> PathResult {
    let rates: Vec<f64> = rounds
        .iter()
        .map(|r| r.calls as f64 / r.elapsed.as_secs_f64().max(1e-9))
        .collect();
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for round in &rounds {
        let _ = latency.add(&round.latency);
    }
    PathResult {
        rounds: rates,
        calls_per_sec: median,
        p50_us: latency.value_at_quantile(0.5),
        p99_us: latency.value_at_quantile(0.99),
        errors: rounds.iter().map(|r| r.errors).sum(),
        proxy_cpu_us_per_call,
    }
}

fn print_report(report: &GrpcReport) {
    println!(
        "gRPC unary (Echo/Unary, {} calls in flight over {} HTTP/2 connections, {} rounds of {:.1} s)",
        report.concurrency, report.connections, report.rounds, report.duration_secs
    );
    println!(
        "{:<8} {:>10} {:>9} {:>9} {:>7} {:>16}",
        "path", "calls/s", "p50", "p99", "errors", "proxy CPU/call"
    );
    for (name, path) in [("direct", &report.direct), ("rig", &report.rig)] {
        println!(
            "{:<8} {:>10.0} {:>7}µs {:>7}µs {:>7} {:>16}",
            name,
            path.calls_per_sec,
            path.p50_us,
            path.p99_us,
            path.errors,
            path.proxy_cpu_us_per_call
                .map(|us| format!("{us:.1}µs"))
                .unwrap_or_else(|| "-".into())
        );
    }
    println!("rig ÷ direct: {:.2}", report.ratio);
    println!(
        "rig recorded {} events ({} observations dropped)",
        report.rig_observation.get("events").copied().unwrap_or(0),
        report.rig_observation.get("dropped").copied().unwrap_or(0)
    );
}
