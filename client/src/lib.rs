//! The `rig` SDK: multi-service test environments from `cargo test`.
//!
//! A test describes the services it needs; `rig::up` asks `rigd` (found or started
//! automatically) to start them, wire them together through environment variables, check
//! their health and run their hooks, and returns once everything is ready. In observe mode
//! (the default) a proxy records every request between services and from the test, so the
//! test can assert on the traffic. The environment is torn down by [`Environment::down`] or
//! when it is dropped, and rigd keeps an event log of the whole run (`rig traffic`,
//! `rig logs`, `rig explain`).
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::test]
//! async fn orders_are_priced() -> rig::Result<()> {
//!     let env = rig::up("orders", [
//!         // A real program, wired to its dependency through environment variables
//!         // (PORT, PRICES_HOST, PRICES_PORT, RIG_WIRING, ...).
//!         ("api", rig::process("./target/debug/orders-api").egress("prices").ready_path("/health")),
//!         // A fake dependency written in the test itself.
//!         ("prices", rig::func(|wiring| async move {
//!             let listener = tokio::net::TcpListener::bind(&wiring.ingress()?.host_port).await?;
//!             loop {
//!                 let (mut conn, _) = listener.accept().await?;
//!                 let mut request = [0u8; 1024];
//!                 let _ = conn.read(&mut request).await?;
//!                 conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n42").await?;
//!             }
//!         })),
//!     ])
//!     .await?;
//!
//!     let url = format!("{}/orders", env.url("api")?);
//!     // ... call the API with your HTTP client of choice ...
//!
//!     // The API called the prices service exactly once.
//!     let priced = rig::RequestFilter::new().edge("api", "prices").method("GET");
//!     env.expect_requests(&priced, 1).await?;
//!     env.down().await?;
//!     Ok(())
//! }
//! ```
//!
//! # Traffic
//!
//! In observe mode every exchange is recorded, and [`Environment::observed`],
//! [`Environment::wait_for`] and [`Environment::expect`] (exactly `n`, with a failure message
//! listing what was seen) work with any filter: [`RequestFilter`] for HTTP requests,
//! [`GrpcFilter`] for gRPC calls (with the decoded messages), [`ConnectionFilter`] for raw TCP
//! connections and [`KafkaFilter`] for Kafka requests. rigd's readiness probes are left out
//! unless a filter includes them.
//!
//! ```no_run
//! # async fn example(env: &rig::Environment) -> rig::Result<()> {
//! env.expect(&rig::GrpcFilter::new().edge("api", "stock").method("inv.v1.Stock/Reserve"), 1).await?;
//! env.expect(&rig::ConnectionFilter::new().edge("api", "db"), 1).await?;
//! env.expect(&rig::KafkaFilter::new().from("api").api("Produce"), 3).await?;
//! # Ok(()) }
//! ```
//!
//! # Finding rigd
//!
//! In order: [`EnvironmentBuilder::rigd_addr`] or `RIG_SERVER_ADDR` (use that rigd); else a
//! running rigd recorded in the rig directory ([`EnvironmentBuilder::rig_dir`], `RIG_DIR`,
//! `~/.rig`); else start one: [`EnvironmentBuilder::rigd_binary`] or `RIG_BINARY`, else a
//! `rigd` next to the test executable or in its Cargo profile directory
//! (`target/debug/rigd`, built by `cargo build --bin rigd` or `cargo test --workspace`), else
//! `rigd` on `PATH`. Starting is serialised with a lock file, so parallel tests and test
//! processes (nextest) share one rigd, which exits after 5 idle minutes.
//!
//! # Runtimes
//!
//! `rig::up` must run inside a Tokio runtime; `#[tokio::test]`'s current-thread runtime is
//! fine. Hooks and [`func`] services run on that runtime, so while the test thread blocks
//! (a blocking HTTP client, `std::thread::sleep`) they cannot make progress: use async
//! clients, or `#[tokio::test(flavor = "multi_thread")]`. Everything else (following the
//! event stream, recording traffic, keepalives, teardown on drop) runs on the SDK's own
//! background thread and keeps going regardless. The SDK's waits use the test runtime's
//! timer: it needs the time driver (on in `#[tokio::test]`), and paused time
//! (`start_paused = true`) would make those waits expire at once.
//!
//! # Modules
//!
//! The crate root has everything a test needs. [`transport`] is the rigd client shared with
//! the `rig` CLI; [`types`] re-exports the wire types.

#![warn(missing_docs)]

mod background;
mod endpoint;
mod environment;
mod error;
mod logs;
mod service;
mod traffic;
pub mod transport;
mod wiring;

pub use endpoint::{attrs, Endpoint, FromAttribute};
pub use environment::{
    DownReport, Environment, EnvironmentBuilder, DEFAULT_CALLBACK_TIMEOUT, DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_TRAFFIC_WAIT,
};
pub use error::{BoxError, Error, Result};
pub use rig_types as types;
pub use rig_types::{Event, EventType, Protocol};
pub use service::{
    cargo, container, custom, func, go, kafka, postgres, process, redis, s3, sqs, temporal, Service,
};
pub use traffic::{
    Connection, ConnectionFilter, GrpcCall, GrpcFilter, KafkaFilter, KafkaRequest, Observed,
    Request, RequestFilter, TrafficFilter,
};
pub use wiring::{LogWriter, Wiring};

/// Brings up an environment called `name` with `services` and default options (observe on,
/// 2-minute startup timeout); see [`Environment::builder`] for the rest.
///
/// ```no_run
/// # async fn example() -> rig::Result<()> {
/// let env = rig::up("smoke", [
///     ("web", rig::process("python3").args(["-m", "http.server", "${PORT}", "--bind", "127.0.0.1"])),
/// ]).await?;
/// println!("serving on {}", env.url("web")?);
/// # Ok(()) }
/// ```
///
/// # Errors
/// See [`EnvironmentBuilder::up`].
pub async fn up<I, S>(name: impl Into<String>, services: I) -> Result<Environment>
where
    I: IntoIterator<Item = (S, Service)>,
    S: Into<String>,
{
    Environment::builder(name).services(services).up().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn handles_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<crate::Environment>();
        send_sync::<crate::Wiring>();
        send_sync::<crate::Request>();
        send_sync::<crate::RequestFilter>();
        send_sync::<crate::Error>();
        send::<crate::Service>();
        send::<crate::EnvironmentBuilder>();
    }
}
