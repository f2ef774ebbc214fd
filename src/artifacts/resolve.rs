//! Resolving an environment's artifacts: in parallel, deduplicated, cached, locked per key.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rig_types::{Event, EventType, LogStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Artifact, BuildJob, Cache, Output, Outputs};
use crate::events::EventLog;
use crate::reaper::Reaper;
use crate::services::OutputSink;

/// How long a cache key may take before the service log says what rigd is doing.
const KEY_NOTE_AFTER: Duration = Duration::from_secs(2);

/// Back-off before the second and third attempt of a retryable resolver.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

/// Where an artifact phase reports to.
#[derive(Clone)]
pub struct Reporter {
    /// The environment's event log.
    pub log: Arc<EventLog>,
    /// The environment name, stamped on every event.
    pub environment: String,
    /// Kills build processes if rigd dies.
    pub reaper: Option<Arc<Reaper>>,
}

impl Reporter {
    fn emit(&self, event_type: EventType, key: &str, error: Option<&str>) {
        let mut event = Event::new(event_type);
        event.environment = self.environment.clone();
        event.artifact = key.to_string();
        if let Some(error) = error {
            event.error = error.to_string();
        }
        self.log.publish(event);
    }
}

/// Resolves every artifact (the first of each key wins), in parallel, and returns the
/// outputs by key.
///
/// Per artifact: compute its cache key; a cached output gives `artifact.cached`; otherwise
/// take the key's lock (other environments and other rigds sharing the cache wait here, with
/// a line in the service's log saying so), check the cache again (the holder may just have
/// built it: `artifact.cached`, as no build ran here), then `artifact.started`, build,
/// and `artifact.completed` or `artifact.failed`. The first failure cancels the other builds;
/// the error returned is `artifact "<key>": <error>` of the first real failure. When `cancel`
/// fires (teardown) every build is killed and `Err` is returned without `artifact.failed`.
pub async fn resolve_all(
    artifacts: &[Artifact],
    cache: &Cache,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> Result<Outputs, String> {
    let mut seen = BTreeSet::new();
    let unique: Vec<Artifact> = artifacts
        .iter()
        .filter(|a| seen.insert(a.key.clone()))
        .cloned()
        .collect();
    let phase = cancel.child_token();
    let mut tasks = JoinSet::new();
    for artifact in unique {
        let sharers: Vec<String> = artifacts
            .iter()
            .filter(|a| a.key == artifact.key && a.service != artifact.service)
            .map(|a| a.service.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (cache, reporter, phase) = (cache.clone(), reporter.clone(), phase.clone());
        tasks.spawn(async move {
            let result = resolve_one(&artifact, &sharers, &cache, &reporter, &phase).await;
            (artifact.key, result)
        });
    }

    let mut outputs = Outputs::new();
    let mut first_error: Option<String> = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((key, Ok(output))) => {
                outputs.insert(key, output);
            }
            Ok((key, Err(Failure::Cancelled))) => {
                first_error.get_or_insert_with(|| format!("artifact {key:?}: cancelled"));
            }
            Ok((key, Err(Failure::Failed(err)))) => {
                phase.cancel();
                let err = format!("artifact {key:?}: {err}");
                // A real failure beats the cancellations it caused.
                if first_error
                    .as_ref()
                    .is_none_or(|e| e.ends_with(": cancelled"))
                {
                    first_error = Some(err);
                }
            }
            Err(join_error) => {
                phase.cancel();
                first_error = Some(format!("artifact task ended abnormally: {join_error}"));
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(outputs),
    }
}

enum Failure {
    Cancelled,
    Failed(String),
}

/// Resolves `artifact`; `sharers` are the other services that use it, whose logs say where
/// its build output goes.
async fn resolve_one(
    artifact: &Artifact,
    sharers: &[String],
    cache: &Cache,
    reporter: &Reporter,
    cancel: &CancellationToken,
) -> Result<Output, Failure> {
    let key = &artifact.key;
    let failed = |err: String| {
        reporter.emit(EventType::ArtifactFailed, key, Some(&err));
        Failure::Failed(err)
    };
    // Dropped on cancellation, which kills the tools it runs.
    let computing = artifact.resolver.cache_key();
    tokio::pin!(computing);
    let slow = tokio::time::sleep(KEY_NOTE_AFTER);
    tokio::pin!(slow);
    let mut noted = false;
    let cache_key = loop {
        tokio::select! {
            _ = cancel.cancelled() => return Err(Failure::Cancelled),
            k = &mut computing => break k.map_err(|e| failed(format!("cache key: {e}")))?,
            _ = &mut slow, if !noted => {
                noted = true;
                OutputSink::new(reporter.log.clone(), &reporter.environment, &artifact.service)
                    .note([format!(
                        "resolving the dependencies of {key} to compute its cache key \
                         (cargo metadata or go list may be downloading them)"
                    )]);
            }
        }
    };
    let dir = cache
        .output_dir(&cache_key)
        .map_err(|e| failed(format!("create cache directory {cache_key}: {e}")))?;
    if let Some(output) = artifact.resolver.cached(&dir).await {
        Cache::touch_last_used(&dir);
        reporter.emit(EventType::ArtifactCached, key, None);
        return Ok(output);
    }

    let _lock = match cache
        .try_lock(&cache_key)
        .map_err(|e| failed(format!("acquire lock: {e}")))?
    {
        Some(lock) => lock,
        None => {
            // Someone else (another environment, another rigd sharing the rig dir) is
            // producing it: say so, since nothing else moves until they are done.
            OutputSink::new(
                reporter.log.clone(),
                &reporter.environment,
                &artifact.service,
            )
            .write(
                LogStream::Stderr,
                format!(
                    "rigd: waiting for another environment or rigd that is producing \
                         {key} ({}.lock)\n",
                    cache.root().join(&cache_key).display()
                ),
            );
            cache
                .lock(&cache_key, cancel)
                .await
                .map_err(|e| failed(format!("acquire lock: {e}")))?
                .ok_or(Failure::Cancelled)?
        }
    };
    if let Some(output) = artifact.resolver.cached(&dir).await {
        Cache::touch_last_used(&dir);
        reporter.emit(EventType::ArtifactCached, key, None);
        return Ok(output);
    }
    // Again: `rig prune` may have removed the entry before we got its lock.
    let dir = cache
        .output_dir(&cache_key)
        .map_err(|e| failed(format!("create cache directory {cache_key}: {e}")))?;

    reporter.emit(EventType::ArtifactStarted, key, None);
    for service in sharers {
        OutputSink::new(reporter.log.clone(), &reporter.environment, service).note([format!(
            "building {key} for this service and {0}: the build output is in {0}'s log",
            artifact.service
        )]);
    }
    let attempts = if artifact.resolver.retryable() {
        RETRY_DELAYS.len() + 1
    } else {
        1
    };
    let mut last_error = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::select! {
                _ = cancel.cancelled() => return Err(Failure::Cancelled),
                _ = tokio::time::sleep(RETRY_DELAYS[attempt - 1]) => {}
            }
        }
        if cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        let job = BuildJob {
            key: cache_key.clone(),
            dir: dir.clone(),
            cache_root: cache.root().to_path_buf(),
            cancel: cancel.clone(),
            output: OutputSink::new(
                reporter.log.clone(),
                &reporter.environment,
                &artifact.service,
            ),
            reaper: reporter.reaper.clone(),
        };
        match artifact.resolver.resolve(job).await {
            Ok(output) => {
                Cache::touch_last_used(&dir);
                reporter.emit(EventType::ArtifactCompleted, key, None);
                return Ok(output);
            }
            Err(_) if cancel.is_cancelled() => return Err(Failure::Cancelled),
            Err(e) if !artifact.resolver.retry_after(&e) => return Err(failed(e)),
            Err(e) => last_error = e,
        }
    }
    Err(failed(last_error))
}

#[cfg(test)]
mod tests;
