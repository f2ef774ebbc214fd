//! Startup benchmark: how long rigd takes from `POST /environments` to `environment.up` for
//! 1, 10 and 50 `process` services, against starting the same processes by hand.
//!
//! - **rig**: a real rigd process (`bench_rigd`, the rigd binary, with its reaper) gets a spec
//!   of N `bench_listener` services with a TCP ingress each from the SDK's client running on
//!   this process's own runtime; the time runs from the POST until the client reads
//!   `environment.up` from the SSE stream. Teardown is not timed.
//! - **direct**: the baseline a test would write by hand: pick N free ports, spawn N
//!   `bench_listener`s, then connect to each port in turn, retrying every millisecond, until
//!   every one accepts. Killing the processes is not timed.
//!
//! After the measurements, the mean and median of each side and their ratios (rig / direct)
//! are printed for each N, then where rig's time goes: the phases of ten more runs taken from
//! the event timestamps (setup, spawning, readiness polling, delivery to the client), the
//! direct baseline's spawn time, rig again with `ready.interval` set to 1 ms (the
//! baseline's retry period) and with observe mode on, and the CPU time rigd and its reaper
//! use per environment.
//!
//! Run with `cargo bench -p rig-benches --bench startup` (about two minutes on 2 cores).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use rig_types::{Event, EventType};
use rigd::cli::client::{DeleteOptions, RigdClient};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

/// Service counts measured.
const SIZES: [usize; 3] = [1, 10, 50];
/// The most any single start may take before the benchmark gives up.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// The connect-retry period of the hand-written baseline.
const RETRY: Duration = Duration::from_millis(1);
/// How many times one rig start is tried before the benchmark gives up.
const MAX_ATTEMPTS: usize = 5;
/// Runs per N of the diagnostics printed after the measurements.
const DIAGNOSTIC_RUNS: usize = 10;

/// The listener binary built from `src/bin/bench_listener.rs`.
fn listener_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bench_listener"))
}

/// A real rigd process (`bench_rigd`, the rigd binary built in this package) with a private
/// rig dir, and a client on this thread's own runtime: the two share nothing but loopback
/// HTTP, as a test and its rigd do.
struct RigdProcess {
    runtime: Runtime,
    client: RigdClient,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RigdProcess {
    fn start() -> RigdProcess {
        let dir = tempfile::tempdir().expect("create the rig dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bench_rigd"))
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--idle")
            .arg("0")
            .arg("--rig-dir")
            .arg(dir.path().join("rig"))
            .arg("--addr-file")
            .arg(dir.path().join("rigd.addr"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bench_rigd");
        // rigd says `rigd listening on <addr>` on stderr once it accepts connections.
        let mut stderr = BufReader::new(child.stderr.take().expect("rigd's stderr"));
        let addr = loop {
            let mut line = String::new();
            let read = stderr.read_line(&mut line).expect("read rigd's stderr");
            assert!(read > 0, "rigd exited before listening");
            if let Some(addr) = line.trim().strip_prefix("rigd listening on ") {
                break addr.to_string();
            }
        };
        // Keep draining rigd's stderr so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("start the client's runtime");
        RigdProcess {
            runtime,
            client: RigdClient::new(&addr).expect("rigd's address"),
            child,
            _dir: dir,
        }
    }

    /// Creates the environment, waits for `environment.up`, tears it down; returns the time
    /// from the POST to `up` and every event seen until then.
    ///
    /// rigd allocates a port, closes it and lets the service bind it, like upstream; another
    /// process on a busy machine can take the port in between, which fails the environment.
    /// Such a run is reported on stderr, counted in `failures` and retried (a few times).
    fn start_environment(
        &self,
        spec: &Value,
        failures: &AtomicUsize,
    ) -> (Duration, SystemTime, Vec<Event>) {
        for _ in 0..MAX_ATTEMPTS {
            match self.try_start_environment(spec) {
                Ok(run) => return run,
                Err(message) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    let summary: Vec<&str> = message.lines().take(5).collect();
                    eprintln!("startup: a run failed, retrying: {}", summary.join(" / "));
                }
            }
        }
        panic!("the environment failed {MAX_ATTEMPTS} times in a row");
    }

    fn try_start_environment(
        &self,
        spec: &Value,
    ) -> Result<(Duration, SystemTime, Vec<Event>), String> {
        self.runtime.block_on(async {
            let posted_at = SystemTime::now();
            let start = Instant::now();
            let id = self
                .client
                .create_environment(spec)
                .await
                .expect("POST /environments")
                .id;
            let mut stream = self.client.events(&id, None);
            let mut events = Vec::new();
            let outcome = loop {
                let event = tokio::time::timeout(START_DEADLINE, stream.next())
                    .await
                    .expect("environment.up within the deadline")
                    .expect("the event stream stays open")
                    .expect("a valid event");
                let event_type = event.event_type.clone();
                let message = event.message.clone();
                events.push(event);
                match event_type {
                    EventType::EnvironmentUp => break Ok(start.elapsed()),
                    EventType::EnvironmentDown => break Err(message),
                    _ => {}
                }
            };
            drop(stream);
            self.client
                .delete_environment(&id, &DeleteOptions::default())
                .await
                .expect("DELETE");
            outcome.map(|elapsed| (elapsed, posted_at, events))
        })
    }
}

impl RigdProcess {
    /// The CPU time rigd and its reaper use per environment of `spec`, over `runs` starts
    /// and teardowns.
    fn cpu_per_environment(&self, spec: &Value, runs: usize, failures: &AtomicUsize) -> Cpu {
        let reaper = reaper_of(self.child.id());
        let reaper_cpu = || reaper.map_or(Duration::ZERO, cpu_time);
        let (rigd_before, reaper_before) = (cpu_time(self.child.id()), reaper_cpu());
        for _ in 0..runs {
            self.start_environment(spec, failures);
        }
        let count = u32::try_from(runs).unwrap_or(u32::MAX).max(1);
        Cpu {
            rigd: cpu_time(self.child.id()).saturating_sub(rigd_before) / count,
            reaper: reaper_cpu().saturating_sub(reaper_before) / count,
        }
    }
}

impl Drop for RigdProcess {
    /// SIGTERM, as a user's Ctrl-C would: rigd tears down and exits.
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// A spec of `n` listener services with a TCP ingress each, probed on rigd's default
/// readiness schedule, without observing proxies (the baseline has none either).
fn spec(n: usize) -> Value {
    spec_with_ready(n, json!(null))
}

/// [`spec`] with observe mode on (rigd's default): a proxy in front of every service.
fn spec_observed(n: usize) -> Value {
    let mut spec = spec(n);
    spec["observe"] = json!(true);
    spec
}

/// [`spec`] with `ready` set on every ingress.
fn spec_with_ready(n: usize, ready: Value) -> Value {
    let services: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("svc{i:02}"),
                json!({
                    "type": "process",
                    "config": {"command": listener_binary()},
                    "ingresses": {"default": {"protocol": "tcp", "ready": ready}}
                }),
            )
        })
        .collect();
    json!({"name": format!("startup-{n}"), "observe": false, "services": services})
}

/// The hand-written baseline: free ports, spawn, poll each port until it accepts. Returns
/// the total time and the part spent until every process was spawned.
fn start_directly(n: usize) -> (Duration, Duration) {
    let start = Instant::now();
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let children: Vec<Child> = ports
        .iter()
        .map(|port| {
            Command::new(listener_binary())
                .env_clear()
                .env("PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn bench_listener")
        })
        .collect();
    let spawned = start.elapsed();
    for &port in &ports {
        wait_accepting(port);
    }
    let elapsed = start.elapsed();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    (elapsed, spawned)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_accepting(port: u16) {
    let deadline = Instant::now() + START_DEADLINE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never accepted");
        std::thread::sleep(RETRY);
    }
}

/// Every measured duration, by (N, side).
type Samples = Mutex<BTreeMap<(usize, &'static str), Vec<Duration>>>;

fn record(samples: &Samples, n: usize, side: &'static str, d: Duration) {
    samples
        .lock()
        .expect("samples lock")
        .entry((n, side))
        .or_default()
        .push(d);
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn mean(values: &[Duration]) -> Duration {
    let count = u32::try_from(values.len()).unwrap_or(u32::MAX).max(1);
    values.iter().sum::<Duration>() / count
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn startup(c: &mut Criterion) {
    let rigd = RigdProcess::start();
    let samples = Samples::default();
    let failures = AtomicUsize::new(0);
    let mut group = c.benchmark_group("startup");
    group.sampling_mode(SamplingMode::Flat);
    for n in SIZES {
        let rig_spec = spec(n);
        group.bench_with_input(BenchmarkId::new("rig", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (elapsed, _, _) = rigd.start_environment(&rig_spec, &failures);
                    record(&samples, n, "rig", elapsed);
                    total += elapsed;
                }
                total
            })
        });
        group.bench_with_input(BenchmarkId::new("direct", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (elapsed, _) = start_directly(n);
                    record(&samples, n, "direct", elapsed);
                    total += elapsed;
                }
                total
            })
        });
    }
    group.finish();

    let samples = samples.into_inner().expect("samples lock");
    println!(
        "\nstartup: time until all N services accept (rig: POST → environment.up read by the \
         client); mean / median"
    );
    for n in SIZES {
        let rig = samples.get(&(n, "rig")).map_or(&[][..], Vec::as_slice);
        let direct = samples.get(&(n, "direct")).map_or(&[][..], Vec::as_slice);
        println!(
            "  N={n:<3} rig {:>7.2} / {:>7.2} ms   direct {:>7.2} / {:>7.2} ms   ratio {:>5.2}x / \
             {:>5.2}x",
            ms(mean(rig)),
            ms(median(rig)),
            ms(mean(direct)),
            ms(median(direct)),
            mean(rig).as_secs_f64() / mean(direct).as_secs_f64(),
            median(rig).as_secs_f64() / median(direct).as_secs_f64(),
        );
    }
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        println!("  ({failed} rig runs failed (port taken by another process?) and were retried)");
    }
    println!(
        "\nstartup: where rig's time goes (medians of {DIAGNOSTIC_RUNS} runs, ms; phases from event \
         timestamps)"
    );
    for n in SIZES {
        let phases: Vec<Phases> = (0..DIAGNOSTIC_RUNS)
            .map(|_| Phases::of(rigd.start_environment(&spec(n), &failures)))
            .collect();
        let fast: Vec<Duration> = (0..DIAGNOSTIC_RUNS)
            .map(|_| {
                rigd.start_environment(&spec_with_ready(n, json!({"interval": "1ms"})), &failures)
                    .0
            })
            .collect();
        let observed: Vec<Duration> = (0..DIAGNOSTIC_RUNS)
            .map(|_| rigd.start_environment(&spec_observed(n), &failures).0)
            .collect();
        let spawn: Vec<Duration> = (0..DIAGNOSTIC_RUNS).map(|_| start_directly(n).1).collect();
        let field = |f: fn(&Phases) -> f64| {
            let mut v: Vec<f64> = phases.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let direct = median(samples.get(&(n, "direct")).map_or(&[][..], Vec::as_slice));
        println!(
            "  N={n:<3} POST→first event {:.1} | first→last service.starting {:.1} (direct spawns \
             all in {:.1}) | last starting→last healthy {:.1} ({:.0} failed probes) | up→client \
             {:.1} | total {:.1}",
            field(|p| p.first_event),
            field(|p| p.starting_spread),
            ms(median(&spawn)),
            field(|p| p.readiness_tail),
            field(|p| p.failed_probes),
            field(|p| p.client_delay),
            field(|p| p.total),
        );
        println!(
            "        with ready.interval=1ms: {:.1} ms, ratio {:.2}x",
            ms(median(&fast)),
            median(&fast).as_secs_f64() / direct.as_secs_f64()
        );
        println!(
            "        with observe on (a proxy per edge): {:.1} ms, ratio {:.2}x",
            ms(median(&observed)),
            median(&observed).as_secs_f64() / direct.as_secs_f64()
        );
        let runs = CPU_RUNS_PER_SERVICE.div_ceil(n);
        let cpu = rigd.cpu_per_environment(&spec(n), runs, &failures);
        println!(
            "        CPU per environment (start and teardown, {runs} runs): rigd {:.2} ms, its \
             reaper {:.2} ms",
            ms(cpu.rigd),
            ms(cpu.reaper)
        );
    }
}

/// Service starts per N over which rigd's CPU time is averaged (the kernel counts it in
/// 10 ms ticks, so small environments need many runs).
const CPU_RUNS_PER_SERVICE: usize = 500;

/// CPU time used per environment.
struct Cpu {
    rigd: Duration,
    reaper: Duration,
}

/// User plus system CPU time of process `pid` so far, from `/proc/<pid>/stat`; zero when
/// it cannot be read.
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The fields after the parenthesised command name; utime and stime are fields 14, 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// The reaper of rigd `rigd_pid`: its child running `__reap`.
fn reaper_of(rigd_pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let parent: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let reaps = cmdline.split(|&b| b == 0).any(|arg| arg == b"__reap");
            (parent == rigd_pid && reaps).then_some(pid)
        })
}

/// Where the time of one rig run went, in milliseconds.
struct Phases {
    /// From the POST to the first event (validation, environment setup).
    first_event: f64,
    /// From the first to the last `service.starting` (port allocation and spawning).
    starting_spread: f64,
    /// From the last `service.starting` to the last `service.healthy` (readiness polling).
    readiness_tail: f64,
    /// From `environment.up` to the client reading it.
    client_delay: f64,
    /// `health.check_failed` events.
    failed_probes: f64,
    /// From the POST to the client reading `environment.up`.
    total: f64,
}

impl Phases {
    fn of((elapsed, posted_at, events): (Duration, SystemTime, Vec<Event>)) -> Phases {
        let at = |e: &Event| {
            ms(e.timestamp
                .to_system_time()
                .duration_since(posted_at)
                .unwrap_or_default())
        };
        let times = |t: EventType| -> Vec<f64> {
            events
                .iter()
                .filter(|e| e.event_type == t && !e.service.starts_with('~'))
                .map(at)
                .collect()
        };
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let starting = times(EventType::ServiceStarting);
        let healthy = times(EventType::ServiceHealthy);
        let up = max(&times(EventType::EnvironmentUp));
        Phases {
            first_event: events.first().map_or(0.0, at),
            starting_spread: max(&starting) - min(&starting),
            readiness_tail: max(&healthy) - max(&starting),
            client_delay: ms(elapsed) - up,
            failed_probes: times(EventType::HealthCheckFailed).len() as f64,
            total: ms(elapsed),
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = startup
}
criterion_main!(benches);
