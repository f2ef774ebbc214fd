//! The artifact phase: everything an environment needs built or fetched before its services
//! start (binaries of `cargo` and `go` services, container images).
//!
//! ```text
//!  POST ── each service type lists its artifacts (ServiceType::artifacts) ── dedup by key
//!  runner ── resolve_all: one task per artifact, in parallel
//!              cache key (content hash) ── cached? ── artifact.cached
//!              └─ flock {cache}/<key>.lock (across environments and rigd processes)
//!                   ── cached now? ── artifact.cached
//!                   └─ artifact.started ── build/pull (output → service.log) ──
//!                        artifact.completed | artifact.failed (cancels the others)
//!  services ── read their outputs by artifact key (RunContext::artifacts)
//! ```
//!
//! The cache lives under `{rig-dir}/cache` and is content-addressed: a resolver names the
//! directory its output goes to from a hash of everything the output depends on, so an
//! unchanged package is never rebuilt and a changed one never reuses a stale binary. A build
//! whose sources changed while it ran (the key taken again afterwards differs) is used by its
//! environment only and cached under neither key: it may hold any part of the edit.

mod cache;
pub mod cargo;
mod cargo_deps;
mod command;
mod depinfo;
pub mod docker;
pub mod go;
mod go_deps;
mod hash;
mod resolve;

pub use cache::{Cache, CacheLock};
pub use command::{BuildCommand, BuildFailure};
pub(crate) use hash::sha256_hex;
pub use resolve::{resolve_all, Reporter};

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::reaper::Reaper;
use crate::services::OutputSink;

/// A boxed, sendable future (resolver methods are called through `dyn Resolver`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One thing an environment needs before its services start.
#[derive(Clone)]
pub struct Artifact {
    /// The deduplication key, also the `artifact` field of artifact events
    /// (`cargo:<dir>`, `gobuild:<module>`, `docker:<image>`).
    pub key: String,
    /// The service whose log receives the build output (the first one that asked; the
    /// others sharing it get a line on the `rig` stream saying so).
    pub service: String,
    /// How to produce it.
    pub resolver: Arc<dyn Resolver>,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("key", &self.key)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// What a resolver produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The file produced (a binary); empty for container images.
    pub path: PathBuf,
    /// Extra facts about it (`module`, `image`, `image_id`, ...).
    pub meta: BTreeMap<String, String>,
}

/// Artifact key → output, filled by the artifact phase and read by the services.
pub type Outputs = BTreeMap<String, Output>;

/// What a resolver gets to produce its artifact.
pub struct BuildJob {
    /// The cache key the build started from (`cargo/<sha256>`), whose directory is `dir`.
    pub key: String,
    /// The artifact's cache directory (created): where the output goes.
    pub dir: PathBuf,
    /// The cache root (`{rig-dir}/cache`), for state shared between builds (target dirs).
    pub cache_root: PathBuf,
    /// Fires when the environment is torn down or another artifact failed: stop building.
    pub cancel: CancellationToken,
    /// Where build output goes (`service.log` of the service that asked for the artifact).
    pub output: OutputSink,
    /// Kills build processes if rigd dies (absent in in-process tests).
    pub reaper: Option<Arc<Reaper>>,
}

/// How one kind of artifact is produced and cached.
pub trait Resolver: Send + Sync + 'static {
    /// The cache directory of the output, relative to the cache root (`cargo/<sha256>`): a
    /// content hash of everything the output depends on.
    fn cache_key(&self) -> BoxFuture<'_, Result<String, String>>;

    /// The output if `dir` (the cache directory) already holds a valid one.
    fn cached<'a>(&'a self, dir: &'a std::path::Path) -> BoxFuture<'a, Option<Output>>;

    /// Produces the artifact into `job.dir`. Errors carry the tool's own message (compiler
    /// errors, pull errors) so that `artifact.failed` tells the user what to fix.
    fn resolve(&self, job: BuildJob) -> BoxFuture<'_, Result<Output, String>>;

    /// True when failures may be transient (network): retried twice, after 1 s then 2 s.
    fn retryable(&self) -> bool {
        false
    }

    /// For a [`Resolver::retryable`] resolver, whether failing with `error` is worth another
    /// try (not when it timed out: another try would only wait as long again).
    fn retry_after(&self, error: &str) -> bool {
        let _ = error;
        true
    }
}
