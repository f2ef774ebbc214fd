//! Writing an environment's log files when it is torn down (DELETE `?log=true`, TTL expiry,
//! rigd shutdown), and the condensed summary returned by DELETE.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::explain::{summarize, AnalysisEvents};
use crate::logfiles::{derive_outcome, write_logs, LogEvents};
use crate::orchestrator::Instance;

/// Where and how long log files are kept.
#[derive(Clone, Debug)]
pub(crate) struct LogSettings {
    /// The logs directory (`{rig-dir}/logs`).
    pub(crate) dir: PathBuf,
    /// Files older than this are pruned before each write; zero keeps everything.
    pub(crate) retention: Duration,
}

/// What a teardown with `log=true` produced: the files written and the condensed explanation.
#[derive(Clone, Debug, Default)]
pub(crate) struct WrittenLogs {
    /// The JSONL log, when it was written.
    pub(crate) jsonl: Option<PathBuf>,
    /// The pretty timeline, when it was written.
    pub(crate) pretty: Option<PathBuf>,
    /// The condensed explanation; empty when the run passed or nothing explains it. Computed
    /// from the events whatever happened to the files.
    pub(crate) summary: String,
    /// Why a file could not be written (also reported on rigd's stderr).
    pub(crate) error: Option<String>,
}

/// Computes the summary of a torn-down `instance` and writes its log files, on a blocking
/// thread (a busy environment has hundreds of thousands of events). A file that cannot be
/// written never fails the teardown: the error is reported on stderr and in
/// [`WrittenLogs::error`], and the summary is given all the same.
pub(crate) async fn write_instance_logs(
    instance: &Arc<Instance>,
    settings: &LogSettings,
) -> WrittenLogs {
    let instance = Arc::clone(instance);
    let settings = settings.clone();
    let id = instance.id().to_string();
    let task = tokio::task::spawn_blocking(move || {
        // The events are read twice, in batches, rather than held whole: once without the
        // bodies and the service output the header, timeline and summary do not read (a
        // service may have written gigabytes), then whole for the JSONL.
        let replay = instance.log().replay();
        let mut analysis = AnalysisEvents::default();
        let mut reader = replay.clone();
        while let Some(batch) = reader.next_batch() {
            batch.into_iter().for_each(|event| analysis.push(event));
        }
        let events = analysis.finish();
        let reason = instance.reason();
        let mut written = WrittenLogs {
            summary: summarize(&events, derive_outcome(&events, &reason)),
            ..WrittenLogs::default()
        };
        let injected: BTreeSet<String> = instance
            .spec()
            .services
            .iter()
            .filter(|(_, s)| s.injected)
            .map(|(name, _)| name.clone())
            .collect();
        let files = write_logs(
            &settings.dir,
            instance.name(),
            instance.id(),
            LogEvents {
                summary: &events,
                full: replay,
            },
            &injected,
            &reason,
            settings.retention,
        );
        match files {
            Ok(files) => {
                written.jsonl = Some(files.jsonl);
                match files.pretty {
                    Ok(pretty) => written.pretty = Some(pretty),
                    Err(e) => written.error = Some(e),
                }
            }
            Err(e) => written.error = Some(e.to_string()),
        }
        written
    });
    let written = task.await.unwrap_or_else(|e| WrittenLogs {
        error: Some(format!("writer task failed: {e}")),
        ..WrittenLogs::default()
    });
    if let Some(error) = &written.error {
        eprintln!("rigd: log files of environment {id}: {error}");
    }
    written
}
