//! `rigd`: brings up multi-service test environments from a JSON spec, wires services through
//! environment variables, checks their health, runs hooks, observes the traffic between them
//! and tears everything down.
//!
//! The crate is laid out one module per concern (see `shared/design/architecture.md`):
//! - [`spec`]: decoding, defaulting, validation and the `~test`/observe transforms;
//! - [`events`]: the per-environment event log and its subscriptions;
//! - [`ports`]: the port allocator;
//! - [`wiring`]: environment variables, `RIG_WIRING` and template expansion;
//! - [`artifacts`]: the artifact phase (builds and images, cached under `{rig-dir}/cache`);
//! - [`docker`]: running containers with the Docker engine;
//! - [`logfiles`]: the JSONL and pretty log files written at teardown;
//! - [`explain`]: the condensed explanation of a failed run (DELETE `summary`, `rig explain`).

pub mod artifacts;
pub mod cli;
pub mod daemon;
pub mod docker;
pub mod events;
pub mod explain;
pub mod logfiles;
pub mod orchestrator;
pub mod pool;
pub mod ports;
pub mod ready;
pub mod reaper;
pub mod server;
pub mod services;
pub mod spec;
pub mod wire;
pub mod wiring;
