//! `proxy-bench run`: starts the origin and every path, checks each path works, measures idle
//! memory, then runs each load scenario on every path in turn (interleaved, so drift of the
//! machine affects all paths alike) and reports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::children::Child;
use crate::cli::{RunOptions, SinkKind};
use crate::load::{h2c, http1, idle, tcp, HttpTally, Window};
use crate::origin::{LARGE_LEN, SMALL_BODY};
use crate::peers::{self, OriginAddrs};
use crate::procfs::{tree_cpu, tree_rss_kib};
use crate::report::{
    HttpSummary, MemorySummary, Outcome, PathInfo, Report, ScenarioResult, TcpSummary,
};
use crate::rig_proxy::parse_stats;
use crate::standalone;

/// Every path the harness knows, in column order.
pub const PATH_NAMES: &[&str] = &[
    "direct", "rig", "rig+json", "splice", "haproxy", "nginx", "pingora",
];

/// Every scenario `--scenarios` can pick, in the order they run: the idle-memory ones first
/// (while no load has grown any process), then the load scenarios.
pub const SCENARIO_NAMES: &[&str] = &[
    "idle_http",
    "idle_tcp",
    "http1_small",
    "http1_64k",
    "h2c_small",
    "tcp_bulk",
];

/// What the table's footnote says about the numbers.
const CAVEAT: &str = "the load generator, the origin and the proxy all run on this machine's \
    {cpus} cores at once, so every number includes competition for CPU with the other two; \
    compare the columns with each other (same run, same concurrency), not with figures from \
    bigger machines. \"proxy CPU\" is what the proxy process itself used.";

/// One way from the client to the origin.
struct Path {
    name: &'static str,
    http: SocketAddr,
    h2c: SocketAddr,
    tcp: Option<SocketAddr>,
    /// The proxy process (none for "direct").
    child: Option<Child>,
    /// Capabilities whose check failed ("http", "h2c", "tcp"), with the reason.
    broken: BTreeMap<&'static str, String>,
}

/// A load scenario.
struct Scenario {
    key: &'static str,
    title: &'static str,
    kind: Kind,
}

enum Kind {
    Http1 { uri: &'static str, len: usize },
    H2c { uri: &'static str, len: usize },
    TcpBulk,
}

const LOAD: [Scenario; 4] = [
    Scenario {
        key: "http1_small",
        title: "HTTP/1.1 16 B",
        kind: Kind::Http1 {
            uri: "/small",
            len: SMALL_BODY.len(),
        },
    },
    Scenario {
        key: "http1_64k",
        title: "HTTP/1.1 64 KiB",
        kind: Kind::Http1 {
            uri: "/64k",
            len: LARGE_LEN,
        },
    },
    Scenario {
        key: "h2c_small",
        title: "h2c 16 B",
        kind: Kind::H2c {
            uri: "/small",
            len: SMALL_BODY.len(),
        },
    },
    Scenario {
        key: "tcp_bulk",
        title: "TCP bulk",
        kind: Kind::TcpBulk,
    },
];

/// Runs the whole benchmark and prints/writes the report.
pub fn run(options: RunOptions) -> Result<()> {
    raise_fd_limit();
    let exe = std::env::current_exe().context("finding the proxy-bench executable")?;
    let dir = tempfile::Builder::new()
        .prefix("proxy-bench-")
        .tempdir()
        .context("creating a temporary directory for the proxies' configs")?;
    let threads = options.threads.to_string();

    let mut origin = Child::spawn(
        "origin",
        own_command(&exe, &["serve-origin", "--threads", &threads]),
        None,
    )?;
    let listening = origin.read_listening()?;
    let origin_addrs = OriginAddrs {
        http: *listening
            .get("http")
            .context("the origin announced no http address")?,
        tcp: *listening
            .get("tcp")
            .context("the origin announced no tcp address")?,
    };

    let (mut paths, infos) = start_paths(&options, &exe, dir.path(), origin_addrs);
    let runtime = standalone::runtime(options.threads)?;
    let started = Instant::now();
    let mut scenarios = runtime.block_on(measure(&options, &mut paths))?;
    // The memory rows go last in the table.
    let memory_rows = scenarios
        .iter()
        .take_while(|s| s.key.starts_with("idle_"))
        .count();
    scenarios.rotate_left(memory_rows);

    let mut rig_observation = BTreeMap::new();
    for path in paths {
        if let Some(child) = path.child {
            let output = child.finish()?;
            if let Some(stats) = parse_stats(&output) {
                rig_observation.insert(path.name.to_string(), stats);
            }
        }
    }
    drop(origin);

    let report = Report {
        settings: settings(&options, started.elapsed()),
        cpus: crate::cli::cpu_count(),
        caveat: CAVEAT.replace("{cpus}", &crate::cli::cpu_count().to_string()),
        paths: infos,
        scenarios,
        rig_observation,
    };
    print!("{}", report.render());
    report.write_json(&options.json)?;
    println!("JSON: {}", options.json.display());
    Ok(())
}

fn settings(options: &RunOptions, elapsed: Duration) -> BTreeMap<&'static str, serde_json::Value> {
    use serde_json::json;
    BTreeMap::from([
        ("quick", json!(options.quick)),
        ("duration_s", json!(options.duration.as_secs_f64())),
        ("warmup_s", json!(options.warmup.as_secs_f64())),
        ("rounds", json!(options.rounds)),
        ("http1_connections", json!(options.connections)),
        ("h2c_connections", json!(options.h2c_connections)),
        ("h2c_streams", json!(options.connections)),
        ("tcp_streams", json!(options.tcp_streams)),
        ("idle_connections", json!(options.idle)),
        ("threads", json!(options.threads)),
        ("run_seconds", json!(elapsed.as_secs_f64().round())),
    ])
}

fn own_command(exe: &FsPath, args: &[&str]) -> Command {
    let mut command = Command::new(exe);
    command.args(args);
    command
}

/// Starts every selected path; those that cannot start are reported as skipped.
fn start_paths(
    options: &RunOptions,
    exe: &FsPath,
    dir: &FsPath,
    origin: OriginAddrs,
) -> (Vec<Path>, Vec<PathInfo>) {
    let mut paths = Vec::new();
    let mut infos = Vec::new();
    let selected = PATH_NAMES.iter().filter(|name| {
        options
            .paths
            .as_ref()
            .is_none_or(|chosen| chosen.iter().any(|c| c == *name))
    });
    for &name in selected {
        let started: Result<Option<(Path, String, Option<String>)>> = match name {
            "direct" => Ok(Some((
                path(name, origin.http, origin.http, Some(origin.tcp), None),
                "no proxy: the client talks to the origin".to_string(),
                None,
            ))),
            "rig" => start_rig(exe, origin, SinkKind::Count, options.threads).map(Some),
            "rig+json" => start_rig(exe, origin, SinkKind::Json, options.threads).map(Some),
            "splice" => start_splice_relay(exe, origin).map(Some),
            "haproxy" => peers::haproxy(dir, origin, options.threads).map(|r| r.map(peer(name))),
            "nginx" => peers::nginx(dir, origin, options.threads).map(|r| r.map(peer(name))),
            _ => start_pingora(exe, origin, options.threads),
        };
        let mut info = PathInfo {
            name: name.to_string(),
            version: String::new(),
            skipped: None,
            note: None,
        };
        match started {
            Ok(Some((path, version, note))) => {
                info.version = version;
                info.note = note;
                paths.push(path);
            }
            Ok(None) => info.skipped = Some(skip_reason(name)),
            Err(error) => info.skipped = Some(format!("could not start: {error:#}")),
        }
        if let Some(reason) = &info.skipped {
            eprintln!("proxy-bench: {name}: skipped: {reason}");
        }
        infos.push(info);
    }
    (paths, infos)
}

fn path(
    name: &'static str,
    http: SocketAddr,
    h2c: SocketAddr,
    tcp: Option<SocketAddr>,
    child: Option<Child>,
) -> Path {
    Path {
        name,
        http,
        h2c,
        tcp,
        child,
        broken: BTreeMap::new(),
    }
}

fn peer(name: &'static str) -> impl Fn(peers::Running) -> (Path, String, Option<String>) {
    move |running| {
        let ports = running.ports;
        (
            path(name, ports.http, ports.h2c, ports.tcp, Some(running.child)),
            running.version,
            running.note,
        )
    }
}

fn skip_reason(name: &str) -> String {
    match name {
        "pingora" => "not built: run scripts/proxy-bench.sh --pingora (builds the `pingora` \
                      feature, which needs cmake)"
            .into(),
        _ => format!(
            "{name} is not installed (scripts/proxy-bench.sh --install-peers installs haproxy \
             and nginx with apt-get)"
        ),
    }
}

fn start_rig(
    exe: &FsPath,
    origin: OriginAddrs,
    sink: SinkKind,
    threads: usize,
) -> Result<(Path, String, Option<String>)> {
    let (http, tcp, threads) = (
        origin.http.to_string(),
        origin.tcp.to_string(),
        threads.to_string(),
    );
    let args = [
        "serve-rig-proxy",
        "--http",
        &http,
        "--tcp",
        &tcp,
        "--sink",
        sink.name(),
        "--threads",
        &threads,
    ];
    let name = match sink {
        SinkKind::Count => "rig",
        SinkKind::Json => "rig+json",
    };
    let mut child = Child::spawn(name, own_command(exe, &args), None)?;
    let listening = child.read_listening()?;
    let http = *listening
        .get("http")
        .context("rig's proxy announced no http address")?;
    let tcp = listening.get("tcp").copied();
    let version = format!(
        "rig-proxy {} (observing: bodies captured up to 64 KiB, headers redacted; sink: {})",
        env!("CARGO_PKG_VERSION"),
        match sink {
            SinkKind::Count => "counts events",
            SinkKind::Json => "serialises every event to JSON, as rigd's log does",
        }
    );
    Ok((path(name, http, http, tcp, Some(child)), version, None))
}

fn start_splice_relay(exe: &FsPath, origin: OriginAddrs) -> Result<(Path, String, Option<String>)> {
    let (http, tcp) = (origin.http.to_string(), origin.tcp.to_string());
    let args = ["serve-splice-relay", "--http", &http, "--tcp", &tcp];
    let mut child = Child::spawn("splice", own_command(exe, &args), None)?;
    let listening = child.read_listening()?;
    let http = *listening
        .get("http")
        .context("the splice relay announced no http address")?;
    let tcp = listening.get("tcp").copied();
    Ok((
        path("splice", http, http, tcp, Some(child)),
        "bare layer-4 relay built by the harness: splice(2) through a 1 MiB pipe per \
         direction as rig's TCP relay, on one blocking thread per direction, no observation \
         (what relaying alone costs here)"
            .into(),
        Some(
            "a thread stack per direction, so its memory per idle connection is not comparable"
                .into(),
        ),
    ))
}

#[cfg(feature = "pingora")]
fn start_pingora(
    exe: &FsPath,
    origin: OriginAddrs,
    threads: usize,
) -> Result<Option<(Path, String, Option<String>)>> {
    let listen = crate::children::free_port()?;
    let (target, listen_arg, threads) = (
        origin.http.to_string(),
        listen.to_string(),
        threads.to_string(),
    );
    let args = [
        "serve-pingora",
        "--target",
        &target,
        "--listen",
        &listen_arg,
        "--threads",
        &threads,
    ];
    let mut child = Child::spawn("pingora", own_command(exe, &args), None)?;
    child.wait_for_port(listen)?;
    Ok(Some((
        path("pingora", listen, listen, None, Some(child)),
        "pingora-proxy 0.9 (minimal reverse proxy built by the harness)".into(),
        Some("HTTP only: pingora has no stock TCP relay".into()),
    )))
}

#[cfg(not(feature = "pingora"))]
fn start_pingora(
    _exe: &FsPath,
    _origin: OriginAddrs,
    _threads: usize,
) -> Result<Option<(Path, String, Option<String>)>> {
    Ok(None)
}

async fn measure(options: &RunOptions, paths: &mut [Path]) -> Result<Vec<ScenarioResult>> {
    for path in paths.iter_mut() {
        check(path).await;
    }

    let wanted = |key: &str| {
        options
            .scenarios
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == key))
    };
    let mut results = Vec::new();
    if wanted("idle_http") || wanted("idle_tcp") {
        let mut idle_http = scenario_result("idle_http", "idle HTTP/1.1");
        let mut idle_tcp = scenario_result("idle_tcp", "idle TCP");
        for path in paths.iter() {
            let (http, tcp) = memory(path, options.idle).await;
            eprintln!(
                "proxy-bench: idle memory via {}: {}, {}",
                path.name,
                brief(&http),
                brief(&tcp)
            );
            idle_http.paths.push((path.name.to_string(), http));
            idle_tcp.paths.push((path.name.to_string(), tcp));
        }
        results.extend([idle_http, idle_tcp].into_iter().filter(|s| wanted(s.key)));
    }

    for scenario in LOAD.iter().filter(|s| wanted(s.key)) {
        let mut result = scenario_result(scenario.key, scenario.title);
        // The paths take turns, each round starting one path later, so that a slow moment
        // of the machine or the order of the paths does not favour one of them.
        let mut rounds: Vec<Vec<Outcome>> = paths.iter().map(|_| Vec::new()).collect();
        for round in 0..options.rounds {
            for turn in 0..paths.len() {
                let i = (turn + round) % paths.len();
                let outcome = load(scenario, &paths[i], options).await;
                eprintln!(
                    "proxy-bench: {} via {} (round {}): {}",
                    scenario.title,
                    paths[i].name,
                    round + 1,
                    brief(&outcome)
                );
                rounds[i].push(outcome);
            }
        }
        for (path, outcomes) in paths.iter().zip(rounds) {
            result.paths.push((path.name.to_string(), median(outcomes)));
        }
        results.push(result);
    }
    Ok(results)
}

/// The round with the median throughput (all of its numbers, as measured together), or the
/// first failure if a round failed.
fn median(mut outcomes: Vec<Outcome>) -> Outcome {
    if let Some(failed) = outcomes
        .iter()
        .position(|o| !matches!(o, Outcome::Http(_) | Outcome::Tcp(_)))
    {
        return outcomes.swap_remove(failed);
    }
    let throughput = |outcome: &Outcome| match outcome {
        Outcome::Http(http) => http.req_per_s,
        Outcome::Tcp(tcp) => tcp.gbit_per_s,
        _ => 0.0,
    };
    outcomes.sort_by(|a, b| throughput(a).total_cmp(&throughput(b)));
    let middle = outcomes.len() / 2;
    outcomes.swap_remove(middle)
}

fn scenario_result(key: &'static str, title: &'static str) -> ScenarioResult {
    ScenarioResult {
        key,
        title,
        paths: Vec::new(),
    }
}

/// One exchange of each kind: a path that fails here is reported as failed for the
/// scenarios that need it instead of producing meaningless numbers.
async fn check(path: &mut Path) {
    let http = async {
        http1::probe(path.http, "/small", SMALL_BODY.len()).await?;
        http1::probe(path.http, "/64k", LARGE_LEN).await
    };
    if let Err(error) = http.await {
        path.broken.insert("http", format!("{error:#}"));
    }
    if let Err(error) = h2c::probe(path.h2c, "/small", SMALL_BODY.len()).await {
        path.broken.insert("h2c", format!("{error:#}"));
    }
    if let Some(addr) = path.tcp {
        if let Err(error) = tcp::echo_connection(addr).await {
            path.broken.insert("tcp", format!("{error:#}"));
        }
    }
    for (what, reason) in &path.broken {
        eprintln!(
            "proxy-bench: {} fails its {what} check: {reason}",
            path.name
        );
    }
}

/// The proxy's memory growth with `count` idle TCP connections open, then with `count` idle
/// HTTP/1.1 connections open as well (each measured on top of the previous state, so freed
/// memory is never reused and counted twice).
async fn memory(path: &Path, count: usize) -> (Outcome, Outcome) {
    let Some(pid) = path.child.as_ref().map(Child::pid) else {
        let none = || Outcome::NotApplicable {
            reason: "no proxy process".into(),
        };
        return (none(), none());
    };
    let mut held = Vec::new();
    let tcp = match (path.tcp, path.broken.get("tcp")) {
        (None, _) => Outcome::NotApplicable {
            reason: "no TCP relay".into(),
        },
        (_, Some(reason)) => failed(reason),
        (Some(addr), None) => grow(pid, idle::tcp(addr, count), &mut held).await,
    };
    let http = match path.broken.get("http") {
        Some(reason) => failed(reason),
        None => grow(pid, idle::http(path.http, count), &mut held).await,
    };
    drop(held);
    (http, tcp)
}

async fn grow(
    pid: u32,
    open: impl std::future::Future<Output = Result<idle::Held>>,
    held: &mut Vec<idle::Held>,
) -> Outcome {
    let measured = async {
        let before = tree_rss_kib(pid)?;
        let connections = open.await?;
        let after = tree_rss_kib(pid)?;
        let opened = connections.len();
        held.push(connections);
        anyhow::Ok(MemorySummary {
            before_kib: before,
            after_kib: after,
            connections: opened,
            mib_per_1000: after.saturating_sub(before) as f64 / 1024.0 * 1000.0
                / opened.max(1) as f64,
        })
    };
    match measured.await {
        Ok(summary) => Outcome::Memory(summary),
        Err(error) => Outcome::Failed {
            error: format!("{error:#}"),
        },
    }
}

fn failed(reason: &str) -> Outcome {
    Outcome::Failed {
        error: format!("the path failed its check: {reason}"),
    }
}

async fn load(scenario: &Scenario, path: &Path, options: &RunOptions) -> Outcome {
    let pid = path.child.as_ref().map(Child::pid);
    let result = match scenario.kind {
        Kind::Http1 { uri, len } => {
            if let Some(reason) = path.broken.get("http") {
                return failed(reason);
            }
            let window = Window::starting_now(options.warmup, options.duration);
            let cpu = cpu_between(pid, window.warm_end, window.end);
            let tally = http1::run(path.http, uri, len, options.connections, window).await;
            http_summary(tally, window, cpu.await.ok().flatten())
        }
        Kind::H2c { uri, len } => {
            if let Some(reason) = path.broken.get("h2c") {
                return failed(reason);
            }
            let window = Window::starting_now(options.warmup, options.duration);
            let cpu = cpu_between(pid, window.warm_end, window.end);
            let tally = h2c::run(
                path.h2c,
                uri,
                len,
                options.h2c_connections,
                options.connections,
                window,
            )
            .await;
            http_summary(tally, window, cpu.await.ok().flatten())
        }
        Kind::TcpBulk => {
            let Some(addr) = path.tcp else {
                return Outcome::NotApplicable {
                    reason: "no TCP relay".into(),
                };
            };
            if let Some(reason) = path.broken.get("tcp") {
                return failed(reason);
            }
            let cpu_before = pid.and_then(|pid| tree_cpu(pid).ok());
            let tally = tcp::bulk(addr, options.tcp_streams, options.duration).await;
            let cpu = pid
                .and_then(|pid| tree_cpu(pid).ok())
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            tally.map(|t| {
                let gib = t.bytes as f64 / (1u64 << 30) as f64;
                Outcome::Tcp(TcpSummary {
                    gbit_per_s: t.gbit_per_s(),
                    bytes: t.bytes,
                    seconds: t.elapsed.as_secs_f64(),
                    proxy_cpu_ms_per_gib: cpu
                        .filter(|_| gib > 0.0)
                        .map(|c| c.as_secs_f64() * 1e3 / gib),
                })
            })
        }
    };
    result.unwrap_or_else(|error| Outcome::Failed {
        error: format!("{error:#}"),
    })
}

/// CPU time the proxy uses between two instants, measured on a task of its own.
fn cpu_between(
    pid: Option<u32>,
    from: Instant,
    to: Instant,
) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let pid = pid?;
        tokio::time::sleep_until(from.into()).await;
        let before = tree_cpu(pid).ok()?;
        tokio::time::sleep_until(to.into()).await;
        let after = tree_cpu(pid).ok()?;
        Some(after.saturating_sub(before))
    })
}

fn http_summary(
    tally: Result<HttpTally>,
    window: Window,
    cpu: Option<Duration>,
) -> Result<Outcome> {
    let tally = tally?;
    if tally.requests == 0 {
        anyhow::bail!(
            "no request succeeded in the measured time ({} failed; first: {})",
            tally.errors,
            tally.first_error.as_deref().unwrap_or("none")
        );
    }
    let us = |quantile: f64| tally.latency.value_at_quantile(quantile) as f64 / 1e3;
    Ok(Outcome::Http(HttpSummary {
        req_per_s: tally.requests as f64 / window.measured().as_secs_f64(),
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: tally.latency.max() as f64 / 1e3,
        requests: tally.requests,
        errors: tally.errors,
        reconnects: tally.reconnects,
        first_error: tally.first_error.clone(),
        proxy_cpu_us_per_req: cpu.map(|c| c.as_secs_f64() * 1e6 / tally.requests as f64),
    }))
}

/// A one-line summary for the progress output on stderr.
fn brief(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Http(h) => format!(
            "{:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} errors",
            h.req_per_s, h.p50_us, h.p99_us, h.errors
        ),
        Outcome::Tcp(t) => format!("{:.2} Gbit/s", t.gbit_per_s),
        Outcome::Memory(m) => format!("{:.1} MiB per 1,000 connections", m.mib_per_1000),
        Outcome::Failed { error } => format!("failed: {error}"),
        Outcome::NotApplicable { reason } => format!("n/a ({reason})"),
    }
}

/// Raises the soft open-files limit to the hard limit: the idle-connection measurement holds
/// thousands of sockets in the harness and in every proxy (which inherit the limit).
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TcpSummary;

    fn tcp(gbit_per_s: f64) -> Outcome {
        Outcome::Tcp(TcpSummary {
            gbit_per_s,
            bytes: 1,
            seconds: 1.0,
            proxy_cpu_ms_per_gib: None,
        })
    }

    #[test]
    fn the_median_round_is_reported_and_a_failure_wins() {
        let Outcome::Tcp(middle) = median(vec![tcp(3.0), tcp(1.0), tcp(2.0)]) else {
            panic!("not a TCP outcome");
        };
        assert_eq!(middle.gbit_per_s, 2.0);
        let failed = median(vec![tcp(3.0), failed("down"), tcp(2.0)]);
        assert!(matches!(failed, Outcome::Failed { .. }));
    }
}
