//! The `redis` type (pooled): one Redis server per rigd, a database number (0–127) per
//! environment service.
//!
//! Config: `{"backend": "native" | "container" | "auto", "image": "<container image>"}`. Every
//! ingress gets the server's address and the attribute `REDIS_URL=redis://${HOST}:${PORT}/<db>`
//! (upstream). Readiness is a `PING`. On teardown the database is flushed (`FLUSHDB`) and its
//! number goes back to the end of the free list.
//!
//! Backends (`backend.rs`): native (`redis-server` from the machine) or a container of `image`
//! (default upstream's `redis:7-alpine`); `auto` picks native when `redis-server` is found.

mod backend;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

pub use backend::RedisBackend;

use super::infra::{Infra, Pooled};
use crate::ready::ProbeKind;

/// The `redis` service type.
pub type Redis = Pooled<RedisInfra>;

/// How `redis` finds, starts and leases its backend.
pub struct RedisInfra;

impl Infra for RedisInfra {
    type Backend = RedisBackend;
    const NAME: &'static str = "redis";
    /// Upstream: 2 minutes.
    const IDLE: Duration = Duration::from_secs(120);
    const MISSING: &'static str = backend::MISSING;

    fn find_native() -> Option<PathBuf> {
        backend::find_binary()
    }

    async fn start_native(program: PathBuf) -> Result<RedisBackend, String> {
        RedisBackend::start(program).await
    }

    const DEFAULT_IMAGE: Option<&'static str> = Some(backend::DEFAULT_IMAGE);

    async fn start_container(image: String) -> Result<RedisBackend, String> {
        RedisBackend::start_container(image).await
    }

    fn port(backend: &RedisBackend) -> u16 {
        backend.port()
    }

    fn attributes(db: &u8) -> BTreeMap<String, Value> {
        BTreeMap::from([(
            "REDIS_URL".to_string(),
            json!(format!("redis://${{HOST}}:${{PORT}}/{db}")),
        )])
    }

    fn ready_probe() -> Option<ProbeKind> {
        Some(ProbeKind::Redis)
    }
}
