//! Infrastructure benchmark: environment-up time of a `postgres` and of a `redis` service,
//! native and container backends, for the first lease (the pool starts the server) and for
//! pooled leases (a new database or DB number on the running server). For native PostgreSQL
//! the first lease is measured twice: with an empty rig dir (`initdb` runs) and with the rig
//! dir's initdb template cached (the data directory is copied).
//!
//! Each measurement runs from `POST /environments` until the client reads `environment.up`
//! from the SSE stream, against an in-process rigd. A first lease is measured on a fresh rigd
//! (its shutdown stops the pool's server); pooled leases are measured one after another on one
//! rigd whose server is already up, each environment deleted before the next (teardown is not
//! timed). Upstream (Docker) reports 1.3 s for a cold PostgreSQL and 34 ms per pooled lease.
//!
//! Run with `cargo bench -p rig-benches --bench infra`. Native rows need PostgreSQL and
//! redis-server (`scripts/install-test-deps.sh` installs them); container rows need Docker and
//! an image: `RIG_BENCH_POSTGRES_IMAGE` / `RIG_BENCH_REDIS_IMAGE`, else the newest local
//! `rig-test/postgres` / `rig-test/redis` (built by `cargo test --test infra_containers`, as
//! nothing can be pulled on the test machines), else upstream's image if present. Rows
//! without what they need are skipped with a note. A few minutes.

use std::time::{Duration, Instant};

use rig_types::EventType;
use rigd::cli::client::{DeleteOptions, RigdClient};
use rigd::daemon::{Config, ShutdownSignal};
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Cold starts measured per type.
const COLD_RUNS: usize = 3;
/// Pooled leases measured per type.
const POOLED_RUNS: usize = 20;
/// The most one environment may take to come up.
const DEADLINE: Duration = Duration::from_secs(120);

/// A rigd serving in this process, with a private rig dir.
struct InProcessRigd {
    runtime: Runtime,
    client: RigdClient,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl InProcessRigd {
    /// A rigd with a fresh rig dir.
    fn start() -> InProcessRigd {
        let dir = tempfile::tempdir().expect("create the rig dir");
        let rig_dir = dir.path().join("rig");
        InProcessRigd::start_in(dir, rig_dir)
    }

    /// A rigd whose rig dir is `rig_dir` (kept between rigds: its cache survives).
    fn start_in(dir: tempfile::TempDir, rig_dir: std::path::PathBuf) -> InProcessRigd {
        std::fs::create_dir_all(&rig_dir).expect("create the rig dir");
        let mut config = Config::from_args([
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--idle".into(),
            "0".into(),
            "--rig-dir".into(),
            rig_dir.into_os_string(),
            "--addr-file".into(),
            dir.path().join("rigd.addr").into_os_string(),
        ])
        .expect("valid rigd flags");
        config.change_dir = false;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("start a runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind rigd's listener");
        let addr = listener.local_addr().expect("listener address").to_string();
        let stop = CancellationToken::new();
        let signal = ShutdownSignal::token(stop.clone());
        let server = runtime.spawn(async move {
            if let Err(e) = rigd::daemon::serve(&config, listener, signal).await {
                eprintln!("rigd failed: {e}");
            }
        });
        InProcessRigd {
            runtime,
            client: RigdClient::new(&addr).expect("rigd's address"),
            stop,
            server: Some(server),
            _dir: dir,
        }
    }

    /// Brings `spec` up, returns the time from the POST to `environment.up`, tears it down.
    fn time_up(&self, spec: &Value) -> Duration {
        self.runtime.block_on(async {
            let start = Instant::now();
            let id = self
                .client
                .create_environment(spec)
                .await
                .expect("POST /environments")
                .id;
            let mut stream = self.client.events(&id, None);
            let elapsed = loop {
                let event = tokio::time::timeout(DEADLINE, stream.next())
                    .await
                    .expect("environment.up within the deadline")
                    .expect("the event stream stays open")
                    .expect("a valid event");
                match event.event_type {
                    EventType::EnvironmentUp => break start.elapsed(),
                    EventType::EnvironmentDown | EventType::ServiceFailed => {
                        panic!("the environment failed: {} {}", event.error, event.message)
                    }
                    _ => {}
                }
            };
            drop(stream);
            self.client
                .delete_environment(&id, &DeleteOptions::default())
                .await
                .expect("DELETE");
            elapsed
        })
    }
}

impl Drop for InProcessRigd {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server);
        }
    }
}

/// One `service_type` service on `backend` (`native`, or `container` with `image`), without
/// observing proxies.
fn spec(service_type: &str, backend: &Backend) -> Value {
    let config = match backend {
        Backend::Native => json!({"backend": "native"}),
        Backend::Container(image) => json!({"backend": "container", "image": image}),
    };
    json!({
        "name": format!("bench-{service_type}"),
        "observe": false,
        "services": {"db": {
            "type": service_type,
            "config": config,
            "ingresses": {"default": {"protocol": "tcp"}}
        }}
    })
}

/// The backend a row measures.
enum Backend {
    Native,
    Container(String),
}

/// The image of `service_type`'s container rows: the environment's choice, else the newest
/// local test image, else upstream's if present; `None` without Docker or image.
fn container_image(service_type: &str, upstream: &str) -> Option<String> {
    let var = format!("RIG_BENCH_{}_IMAGE", service_type.to_uppercase());
    if let Ok(image) = std::env::var(&var) {
        return Some(image);
    }
    let local = |reference: &str| -> Option<String> {
        let out = std::process::Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}", reference])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().next().map(str::to_string)
    };
    local(&format!("rig-test/{service_type}")).or_else(|| local(upstream))
}

fn stats(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (mean, samples[samples.len() / 2], samples[samples.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One line of the table.
struct Row {
    service_type: &'static str,
    backend: &'static str,
    lease: &'static str,
    samples: Vec<Duration>,
    /// The row (by index) whose median this one's is compared with.
    baseline: Option<usize>,
}

/// First leases, each on a fresh rigd; with `rig_dir`, every rigd uses that one rig dir.
fn first_leases(spec: &Value, runs: usize, rig_dir: Option<&std::path::Path>) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let rigd = match rig_dir {
                Some(dir) => InProcessRigd::start_in(
                    tempfile::tempdir().expect("create a scratch dir"),
                    dir.to_path_buf(),
                ),
                None => InProcessRigd::start(),
            };
            rigd.time_up(spec)
        })
        .collect()
}

/// Pooled leases on one rigd whose server the first (untimed) environment started.
fn pooled_leases(spec: &Value, runs: usize) -> Vec<Duration> {
    let rigd = InProcessRigd::start();
    rigd.time_up(spec);
    (0..runs).map(|_| rigd.time_up(spec)).collect()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (cold_runs, pooled_runs) = if quick {
        (1, 2)
    } else {
        (COLD_RUNS, POOLED_RUNS)
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut notes = Vec::new();
    for (service_type, upstream) in [
        ("postgres", "postgres:16-alpine"),
        ("redis", "redis:7-alpine"),
    ] {
        let native = spec(service_type, &Backend::Native);
        let native_first = rows.len();
        rows.push(Row {
            service_type,
            backend: "native",
            lease: "first",
            samples: first_leases(&native, cold_runs, None),
            baseline: None,
        });
        if service_type == "postgres" {
            // One rig dir for every rigd: the first run makes the initdb template.
            let shared = tempfile::tempdir().expect("create the shared rig dir");
            let rig_dir = shared.path().join("rig");
            first_leases(&native, 1, Some(&rig_dir));
            rows.push(Row {
                service_type,
                backend: "native",
                lease: "first, initdb template cached",
                samples: first_leases(&native, cold_runs, Some(&rig_dir)),
                baseline: Some(native_first),
            });
        }
        let native_pooled = rows.len();
        rows.push(Row {
            service_type,
            backend: "native",
            lease: "pooled",
            samples: pooled_leases(&native, pooled_runs),
            baseline: None,
        });
        let Some(image) = container_image(service_type, upstream) else {
            notes.push(format!(
                "{service_type} container rows skipped: no Docker or no image (see the module docs)"
            ));
            continue;
        };
        let container = spec(service_type, &Backend::Container(image.clone()));
        notes.push(format!("{service_type} container image: {image}"));
        rows.push(Row {
            service_type,
            backend: "container",
            lease: "first",
            samples: first_leases(&container, cold_runs, None),
            baseline: Some(native_first),
        });
        rows.push(Row {
            service_type,
            backend: "container",
            lease: "pooled",
            samples: pooled_leases(&container, pooled_runs),
            baseline: Some(native_pooled),
        });
    }

    println!("environment up (POST → environment.up); ratio: this median / the named row's");
    println!(
        "{:<9} {:<10} {:<30} {:>4} {:>11} {:>11} {:>11}  ratio",
        "type", "backend", "lease", "runs", "mean", "median", "max"
    );
    let stats: Vec<(Duration, Duration, Duration)> =
        rows.iter_mut().map(|row| stats(&mut row.samples)).collect();
    for (row, (mean, median, max)) in rows.iter().zip(&stats) {
        let ratio = row.baseline.map_or_else(String::new, |b| {
            format!(
                "{:.2}x {} {}",
                median.as_secs_f64() / stats[b].1.as_secs_f64(),
                rows[b].backend,
                rows[b].lease
            )
        });
        println!(
            "{:<9} {:<10} {:<30} {:>4} {:>11} {:>11} {:>11}  {ratio}",
            row.service_type,
            row.backend,
            row.lease,
            row.samples.len(),
            ms(*mean),
            ms(*median),
            ms(*max),
        );
    }
    for note in notes {
        println!("note: {note}");
    }
}
