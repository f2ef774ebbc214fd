//! Infrastructure benchmark: environment-up time of a `postgres` and of a `redis` service on
//! the native backends, for the first lease (the pool starts the server: `initdb` + start for
//! PostgreSQL) and for pooled leases (a new database or DB number on the running server).
//!
//! Each measurement runs from `POST /environments` until the client reads `environment.up`
//! from the SSE stream, against an in-process rigd. A cold start is measured on a fresh rigd
//! (its shutdown stops the pool's server); pooled leases are measured one after another on one
//! rigd whose server is already up, each environment deleted before the next (teardown is not
//! timed). Upstream (Docker) reports 1.3 s for a cold PostgreSQL and 34 ms per pooled lease.
//!
//! Run with `cargo bench -p rig-benches --bench infra` (PostgreSQL and redis-server must be
//! installed; `scripts/install-test-deps.sh` does it). About half a minute.

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
    fn start() -> InProcessRigd {
        let dir = tempfile::tempdir().expect("create the rig dir");
        let rig_dir = dir.path().join("rig");
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
                .expect("POST /environments");
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

/// One `service_type` service on the native backend, without observing proxies.
fn spec(service_type: &str) -> Value {
    json!({
        "name": format!("bench-{service_type}"),
        "observe": false,
        "services": {"db": {
            "type": service_type,
            "config": {"backend": "native"},
            "ingresses": {"default": {"protocol": "tcp"}}
        }}
    })
}

fn stats(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (mean, samples[samples.len() / 2], samples[samples.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (cold_runs, pooled_runs) = if quick {
        (1, 2)
    } else {
        (COLD_RUNS, POOLED_RUNS)
    };
    println!("environment up, native backends (POST → environment.up)");
    println!(
        "{:<10} {:<8} {:>5} {:>11} {:>11} {:>11}",
        "type", "lease", "runs", "mean", "median", "max"
    );
    for service_type in ["postgres", "redis"] {
        let spec = spec(service_type);
        let mut cold: Vec<Duration> = (0..cold_runs)
            .map(|_| InProcessRigd::start().time_up(&spec))
            .collect();
        let rigd = InProcessRigd::start();
        rigd.time_up(&spec); // starts the server
        let mut pooled: Vec<Duration> = (0..pooled_runs).map(|_| rigd.time_up(&spec)).collect();
        drop(rigd);
        for (lease, samples) in [("first", &mut cold), ("pooled", &mut pooled)] {
            let (mean, median, max) = stats(samples);
            println!(
                "{service_type:<10} {lease:<8} {:>5} {:>11} {:>11} {:>11}",
                samples.len(),
                ms(mean),
                ms(median),
                ms(max)
            );
        }
    }
}
