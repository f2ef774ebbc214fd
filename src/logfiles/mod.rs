//! Log files written when an environment is torn down (`DELETE ?log=true`, TTL expiry, rigd
//! shutdown).
//!
//! Two files per environment in `{rig-dir}/logs/`, named `<sanitised name>-<id>` (see
//! [`names`]):
//! - `<base>.jsonl`: the authoritative machine log that the `rig` CLI reads: a `log.header` line
//!   ([`LogHeader`], with the run's [`Outcome`]) then every event in `seq` order, in the wire
//!   format of upstream rig, so upstream's CLI opens our files and ours opens theirs;
//! - `<base>.log`: a human-readable timeline ([`render_pretty`]).
//!
//! Before writing, files older than the retention period are pruned ([`prune`]). The directory
//! is created owner-only (0700) and the files are owner-only (0600): logs hold request bodies
//! and service output (architecture section 8).
//!
//! [`write_logs`] does blocking file I/O with buffered writers; async callers run it on a
//! blocking thread (`tokio::task::spawn_blocking`).

mod header;
mod jsonl;
pub mod names;
mod pretty;
mod retention;
mod timing;

#[cfg(test)]
mod tests;

pub use header::{
    derive_outcome, duration_ms, LogHeader, Outcome, LOG_HEADER_TYPE, REASON_ORPHANED,
    REASON_TEST_FAILED,
};
pub use jsonl::{write_jsonl, EventSource};
pub use pretty::{format_bytes, render_pretty};
pub(crate) use pretty::{generic_line, is_rig_remark, output_lines, FAILURE_LOG_LINES};
pub use retention::{prune, DEFAULT_RETENTION};
pub use timing::{exchange_end, happened_at, in_time_order, order_by_time};

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rig_types::{Event, Timestamp};

/// Buffer size of the JSONL writer: large enough that a big log is written in few system calls.
const WRITE_BUFFER: usize = 256 * 1024;

/// The files written for one environment.
#[derive(Clone, Debug, PartialEq)]
pub struct LogFiles {
    /// The machine-readable log (`<base>.jsonl`).
    pub jsonl: PathBuf,
    /// The human-readable timeline (`<base>.log`), or why it could not be written (the
    /// JSONL was: it is kept).
    pub pretty: Result<PathBuf, String>,
    /// The header written as the first JSONL line (it carries the outcome).
    pub header: LogHeader,
}

/// Why the log files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// The environment recorded no events, so there is nothing to write.
    #[error("environment {environment:?} ({id}) recorded no events; no log files written")]
    NoEvents {
        /// The environment's name.
        environment: String,
        /// Its id.
        id: String,
    },
    /// The logs directory could not be created.
    #[error("create log directory {}: {source} (check that the rig directory is writable)", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A log file could not be written.
    #[error("write log file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Every event of an environment (`service.log` included), in `seq` order, as the log files
/// are written from them.
pub struct LogEvents<'a, S> {
    /// For the header and the timeline: bodies of exchanges and service output that neither
    /// reads may be left out (see [`crate::explain::AnalysisEvents`]).
    pub summary: &'a [Arc<Event>],
    /// For the JSONL file: the events whole.
    pub full: S,
}

impl<'a> LogEvents<'a, &'a [Arc<Event>]> {
    /// `events` whole, for both.
    pub fn whole(events: &'a [Arc<Event>]) -> Self {
        LogEvents {
            summary: events,
            full: events,
        }
    }
}

/// Writes the JSONL log and the pretty timeline of an environment into `logs_dir`.
///
/// Steps: create `logs_dir` (owner-only) if needed; prune log files older than `retention`
/// (zero disables pruning); fail with [`LogFileError::NoEvents`] when there are no events;
/// write `<base>.jsonl`, then `<base>.log`. `injected` names the services left out of the
/// header's list; `reason` is the teardown reason (`test_failed` marks the outcome failed).
///
/// Each file is written under a temporary name (`.<file name>.part`, which neither the CLI
/// nor pruning looks at) and renamed into place once complete, so a file under its own name
/// is always whole. When the JSONL cannot be written this fails and leaves no file; when only
/// the timeline cannot, the JSONL is kept and [`LogFiles::pretty`] says why.
pub fn write_logs(
    logs_dir: &Path,
    name: &str,
    id: &str,
    events: LogEvents<'_, impl EventSource>,
    injected: &BTreeSet<String>,
    reason: &str,
    retention: Duration,
) -> Result<LogFiles, LogFileError> {
    create_private_dir(logs_dir).map_err(|source| LogFileError::CreateDir {
        path: logs_dir.to_path_buf(),
        source,
    })?;
    prune(logs_dir, retention, SystemTime::now());
    let LogEvents { summary, full } = events;
    if summary.is_empty() {
        return Err(LogFileError::NoEvents {
            environment: name.to_string(),
            id: id.to_string(),
        });
    }
    let base = names::base_name(name, id);
    let jsonl = logs_dir.join(format!("{base}.{}", names::JSONL_EXTENSION));
    let pretty = logs_dir.join(format!("{base}.{}", names::PRETTY_EXTENSION));
    let header = LogHeader::for_events(name, summary, injected, reason, Timestamp::now());

    write_file(&jsonl, |out| {
        write_jsonl(BufWriter::with_capacity(WRITE_BUFFER, out), &header, full)
    })?;
    let pretty = write_file(&pretty, |out| {
        out.write_all(render_pretty(&header, summary).as_bytes())
    })
    .map(|()| pretty)
    .map_err(|e| e.to_string());
    Ok(LogFiles {
        jsonl,
        pretty,
        header,
    })
}

/// Writes `path` owner-only: fills a temporary file next to it with `fill`, then renames it
/// into place. On failure the temporary file is removed and `path` is left as it was.
fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), LogFileError> {
    let wrap = |source| LogFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let part = part_path(path);
    let written = fill_new_file(&part, fill).and_then(|()| fs::rename(&part, path));
    if written.is_err() {
        let _ = fs::remove_file(&part);
    }
    written.map_err(wrap)
}

/// `.<file name>.part` next to `path`.
fn part_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.part"))
}

/// Creates (or truncates) `path` owner-only and fills it with `fill`.
fn fill_new_file(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // The mode above only applies to new files.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    fill(&mut file)
}

/// Creates `dir` and its missing parents owner-only (0700); an existing directory is kept as
/// it is.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
