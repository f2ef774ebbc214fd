//! Writing an environment's log files when it is torn down (DELETE `?log=true`, TTL expiry,
//! rigd shutdown), and the condensed summary returned by DELETE.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::explain::{summarize, AnalysisEvents};
use crate::logfiles::{write_logs, LogEvents, LogFiles};
use crate::orchestrator::Instance;

/// Where and how long log files are kept.
#[derive(Clone, Debug)]
pub(crate) struct LogSettings {
    /// The logs directory (`{rig-dir}/logs`).
    pub(crate) dir: PathBuf,
    /// Files older than this are pruned before each write; zero keeps everything.
    pub(crate) retention: Duration,
}

/// The files written for an environment and its condensed explanation.
#[derive(Clone, Debug)]
pub(crate) struct WrittenLogs {
    /// The JSONL and pretty files.
    pub(crate) files: LogFiles,
    /// The condensed explanation; empty when the run passed or nothing explains it.
    pub(crate) summary: String,
}

/// Writes the log files of a torn-down `instance` and computes its summary, on a blocking
/// thread (a busy environment has hundreds of thousands of events). Failures are reported on
/// stderr and give `None`: a missing log never fails a teardown.
pub(crate) async fn write_instance_logs(
    instance: &Arc<Instance>,
    settings: &LogSettings,
) -> Option<WrittenLogs> {
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
            &instance.reason(),
            settings.retention,
        )?;
        let summary = match files.header.outcome {
            Some(outcome) => summarize(&events, outcome),
            None => String::new(),
        };
        Ok::<_, crate::logfiles::LogFileError>(WrittenLogs { files, summary })
    });
    match task.await {
        Ok(Ok(written)) => Some(written),
        Ok(Err(e)) => {
            eprintln!("rigd: log files of environment {id}: {e}");
            None
        }
        Err(e) => {
            eprintln!("rigd: log files of environment {id}: writer task failed: {e}");
            None
        }
    }
}
