//! `proxy-bench`: the proxy benchmark harness.
//!
//! One run starts a real origin (hyper, HTTP/1.1 + h2c; a TCP sink and echo) and puts the
//! same load, at the same concurrency, on every path to it:
//!
//! | path | what |
//! |---|---|
//! | `direct` | the client talks to the origin |
//! | `rig` | rig's observing proxy (`rig_proxy::run`, capturing bodies) with a counting sink |
//! | `rig+json` | the same, with every event serialised to JSON as rigd's log would |
//! | `splice` | a bare layer-4 splice relay without observation: what relaying alone costs |
//! | `haproxy`, `nginx` | when installed, run on generated configs on loopback ports |
//! | `pingora` | a minimal pingora reverse proxy, when built with `--features pingora` |
//!
//! Each proxy runs as a process of its own (the harness re-executes itself with a `serve-*`
//! subcommand for rig, the origin, the splice relay and pingora), so its resident memory and CPU time can be
//! read from `/proc`. The scenarios: HTTP/1.1 keep-alive with 16 B and 64 KiB bodies, h2c with
//! 16 B bodies (req/s and p50/p99/p99.9 latency from an HDR histogram), TCP bulk (Gbit/s), and
//! resident memory per 1,000 idle HTTP/1.1 and TCP connections. The result is a table on
//! stdout and a JSON file. Everything runs on loopback and every loop is bounded in time.
//!
//! `proxy-bench grpc` measures gRPC unary calls per second direct and through rig's proxy in
//! `grpc` mode (see `grpc.rs`).
//!
//! Run it with `scripts/proxy-bench.sh [--quick]` (`scripts/proxy-bench.sh --grpc [--quick]`
//! for gRPC; see the README's "Benchmarks").
//!
//! `proxy-bench kafka` measures Kafka produce throughput through rig's Kafka proxy against a
//! librdkafka mock cluster, direct vs proxied (`scripts/proxy-bench.sh --kafka`).

mod bench;
mod children;
mod cli;
mod grpc;
mod kafka;
mod load;
mod origin;
mod peers;
#[cfg(feature = "pingora")]
mod pingora_peer;
mod procfs;
mod report;
mod rig_proxy;
mod splice_relay;
mod standalone;

use std::process::ExitCode;

use cli::Command;

/// rigd's allocator (see `src/bin/rigd.rs`), so that `serve-rig-proxy` runs rig's proxy as
/// rigd runs it. The load generator and the origin run on it too; they are the same for
/// every path, so the columns stay comparable.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match cli::parse(&args) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(options)) => bench::run(options),
        Ok(Command::ServeOrigin { threads }) => origin::main(threads),
        Ok(Command::ServeRigProxy(options)) => rig_proxy::main(options),
        Ok(Command::Grpc(options)) => grpc::run(options),
        Ok(Command::ServeGrpcOrigin { threads }) => grpc::serve_origin(threads),
        Ok(Command::ServePingora(options)) => serve_pingora(options),
        Ok(Command::ServeSpliceRelay(options)) => splice_relay::main(options),
        Ok(Command::Kafka(options)) => kafka::run(options),
        Err(error) => {
            eprintln!("proxy-bench: {error:#}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("proxy-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "pingora")]
fn serve_pingora(options: cli::PingoraOptions) -> anyhow::Result<()> {
    pingora_peer::main(options)
}

#[cfg(not(feature = "pingora"))]
fn serve_pingora(_options: cli::PingoraOptions) -> anyhow::Result<()> {
    anyhow::bail!(
        "this proxy-bench was built without pingora; build it with `--features pingora` \
         (scripts/proxy-bench.sh --pingora)"
    )
}
