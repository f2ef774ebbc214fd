//! Ending an environment: `down()`, a failed start, or a drop (the test returned early or
//! panicked), and the report rigd gives back.
//!
//! Every path runs the same teardown on the SDK's background runtime: mark the environment
//! as tearing down (so in-test services that stop are not reported as failures), `DELETE` it
//! with `log=true` (rigd writes the event log and, for a failure, a condensed summary), then
//! stop the stream follower, the keepalive and the in-test services.
//!
//! On drop the calling thread waits for that teardown (at most [`DROP_WAIT`]). This is what
//! makes drop-based cleanup reliable under `#[tokio::test]`: its current-thread runtime is
//! shut down right after the test returns, cancelling anything spawned on it, and a test
//! binary (or a nextest process) may exit right after that; work left "in the background"
//! would often never run. The wait cannot deadlock: the teardown runs on the SDK's own
//! thread, and rigd's teardown needs nothing from the test's runtime.
//!
//! `RIG_PRESERVE=true` keeps the environment directory always; `RIG_PRESERVE_ON_FAILURE=true`
//! keeps it when the test failed (a panic during drop) or the environment failed to start.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;

use super::panic_note;
use super::shared::{Phase, Shared};
use crate::background;
use crate::error::{Error, Result};
use crate::transport::client::{ClientError, DeleteOptions};

/// How long a drop waits for the teardown (rigd's own DELETE timeout is 180 s).
pub(crate) const DROP_WAIT: Duration = Duration::from_secs(190);

/// What rigd reported when the environment was torn down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownReport {
    /// The environment id.
    pub id: String,
    /// The environment directory (removed unless `preserved`).
    pub env_dir: PathBuf,
    /// The directory was kept (`RIG_PRESERVE`, `RIG_PRESERVE_ON_FAILURE`).
    pub preserved: bool,
    /// The JSONL event log (open it with `rig traffic`, `rig logs`, `rig explain`).
    pub log_file: Option<PathBuf>,
    /// The human-readable timeline.
    pub log_file_pretty: Option<PathBuf>,
    /// rigd's condensed failure explanation, when the environment or test failed and rigd
    /// has something to add to the test's own output: failed services, a stall, what was not
    /// ready, traffic errors, their stderr (the test's notes are not repeated; a run failed
    /// only by notes has none).
    pub summary: Option<String>,
    /// Why rigd could not write a log file (a full disk, say); the files it did write are
    /// named all the same.
    pub log_error: Option<String>,
    /// The environment was left running for this long instead of being torn down
    /// ([`EnvironmentBuilder::keep_for`](crate::EnvironmentBuilder::keep_for), `RIG_TTL`).
    pub kept_for: Option<Duration>,
}

/// Why the environment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `down()` or a drop after a passing test.
    Normal,
    /// The test is panicking: `reason=test_failed`.
    TestFailed,
    /// It never came up.
    StartFailed,
}

/// Owns an environment on rigd: whoever holds it must end it, and dropping it does.
pub(crate) struct Lifetime {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
    ended: bool,
    /// Leave the environment running this long rather than deleting it (not after a failed
    /// start).
    keep_for: Option<Duration>,
}

impl Lifetime {
    pub(crate) fn new(shared: Arc<Shared>, keep_for: Option<Duration>) -> Lifetime {
        panic_note::install();
        if keep_for.is_none() {
            at_exit::register(&shared);
        }
        Lifetime {
            shared,
            tasks: Vec::new(),
            ended: false,
            keep_for,
        }
    }

    /// How long the environment is kept after `ending`, if it is.
    fn kept(&self, ending: Ending) -> Option<Duration> {
        self.keep_for.filter(|_| ending != Ending::StartFailed)
    }

    /// A background task to stop at teardown.
    pub(crate) fn track(&mut self, task: AbortHandle) {
        self.tasks.push(task);
    }

    /// Tears down and waits (without blocking the caller's runtime).
    pub(crate) async fn end(&mut self, ending: Ending) -> Result<DownReport> {
        self.ended = true;
        at_exit::forget(&self.shared);
        let job = teardown(
            self.shared.clone(),
            std::mem::take(&mut self.tasks),
            ending,
            self.kept(ending),
        );
        // On the background runtime, so it completes even if this future is dropped.
        let handle = background::handle()?;
        match handle.spawn(job).await {
            Ok(result) => result,
            Err(e) => Err(Error::Runtime {
                reason: format!("teardown task failed: {e}"),
            }),
        }
    }
}

impl Lifetime {
    /// The teardown of a drop; after a panic, the panic's message is posted first.
    fn drop_job(&mut self, ending: Ending) -> impl Future<Output = Result<DownReport>> {
        let panic = match ending {
            Ending::TestFailed => panic_note::take(),
            _ => None,
        };
        let down = teardown(
            self.shared.clone(),
            std::mem::take(&mut self.tasks),
            ending,
            self.kept(ending),
        );
        let shared = self.shared.clone();
        async move {
            if let Some(note) = panic {
                post_panic_note(&shared, note).await;
            }
            down.await
        }
    }
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        at_exit::forget(&self.shared);
        let ending = if std::thread::panicking() {
            Ending::TestFailed
        } else {
            Ending::Normal
        };
        let (name, id) = (self.shared.name.clone(), self.shared.id.clone());
        let job = self.drop_job(ending);
        match background::block_on(job, DROP_WAIT) {
            Some(Ok(report)) if ending == Ending::TestFailed => {
                eprintln!("{}", failure_text(&name, &report));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                eprintln!("rig: tearing down environment {name:?} ({id}) failed: {e}")
            }
            None => eprintln!(
                "rig: environment {name:?} ({id}) was not torn down within {}s; rigd removes \
                 it when its TTL expires (or run `rig down {id}`)",
                DROP_WAIT.as_secs()
            ),
        }
    }
}

/// Records why the test failed (its panic's message and place) in the event log, so that
/// `rig explain` shows more than `FAILED`. Best effort: the teardown follows either way.
async fn post_panic_note(shared: &Shared, note: String) {
    let event = serde_json::json!({"type": "test.note", "error": note});
    if let Err(e) = shared.client.post_event(&shared.id, &event).await {
        eprintln!(
            "rig: could not record the test's panic in the log of environment {:?}: {e}",
            shared.name
        );
    }
}

/// Environments still owned when the process exits normally: a handle in a `static` (an
/// environment shared by a binary's tests) is never dropped. They are torn down from an
/// `atexit` handler, as a drop would, so that rigd does not end them as orphaned: that is
/// for a test process that was killed or crashed, and its run is logged failed.
mod at_exit {
    use std::sync::{Arc, Mutex, Once, Weak};

    use super::{teardown, Ending, Shared, DROP_WAIT};
    use crate::background;

    static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
    static HANDLER: Once = Once::new();

    /// Ends `shared`'s environment at exit unless [`forget`] is called first.
    pub(super) fn register(shared: &Arc<Shared>) {
        HANDLER.call_once(|| {
            // SAFETY: `atexit` takes a plain function; registering one has no other effect.
            unsafe {
                libc::atexit(end_live);
            }
        });
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|w| w.strong_count() > 0);
            live.push(Arc::downgrade(shared));
        }
    }

    /// `shared`'s environment is being ended another way.
    pub(super) fn forget(shared: &Arc<Shared>) {
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(shared)));
        }
    }

    extern "C" fn end_live() {
        // Nothing may unwind out of an `atexit` handler.
        let _ = std::panic::catch_unwind(|| {
            let live: Vec<Arc<Shared>> = match LIVE.lock() {
                Ok(mut live) => live.drain(..).filter_map(|w| w.upgrade()).collect(),
                Err(_) => return,
            };
            for shared in live {
                let job = teardown(shared, Vec::new(), Ending::Normal, None);
                let _ = background::block_on(job, DROP_WAIT);
            }
        });
    }
}

/// The teardown every path shares; with `kept_for` it only stops the SDK's side (stream
/// follower, keepalive, in-test services) and leaves the environment to rigd's TTL, which
/// starts afresh at `down()`.
async fn teardown(
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
    ending: Ending,
    kept_for: Option<Duration>,
) -> Result<DownReport> {
    shared.update(|s| s.tearing_down = true);
    let stop_local = |shared: &Shared| {
        for task in tasks {
            task.abort();
        }
        let funcs = std::mem::take(&mut shared.lock().funcs);
        for func in funcs {
            func.abort();
        }
    };
    if let Some(kept_for) = kept_for {
        let funcs = shared.lock().funcs.len();
        stop_local(&shared);
        // A last keepalive, so the environment stays a whole TTL from now rather than from
        // the keepalive task's last beat. Best effort: rigd's TTL ends it either way.
        let _ = shared.client.keepalive(&shared.id).await;
        let env_dir = match &shared.lock().phase {
            Phase::Up(info) => info.env_dir.clone(),
            _ => PathBuf::new(),
        };
        let report = DownReport {
            id: shared.id.clone(),
            env_dir,
            preserved: true,
            kept_for: Some(kept_for),
            ..DownReport::default()
        };
        eprintln!("{}", kept_text(&shared.name, &report, funcs));
        return Ok(report);
    }
    let options = delete_options(ending, &|key| std::env::var(key).ok());
    let result = shared.client.delete_environment(&shared.id, &options).await;
    stop_local(&shared);
    let response = result.map_err(|e| match e {
        ClientError::Api { status: 404, .. } => Error::EnvironmentDown {
            name: shared.name.clone(),
            id: shared.id.clone(),
            message: "it no longer exists on rigd (its TTL expired, `rig down` removed it, \
                      or rigd restarted)"
                .into(),
        },
        other => Error::Client(other),
    })?;
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(DownReport {
        id: shared.id.clone(),
        env_dir: response.env_dir.into(),
        preserved: options.preserve,
        log_file: non_empty(response.log_file).map(PathBuf::from),
        log_file_pretty: non_empty(response.log_file_pretty).map(PathBuf::from),
        summary: non_empty(response.summary),
        log_error: non_empty(response.log_error),
        kept_for: None,
    })
}

/// What a drop prints about an environment it leaves running.
fn kept_text(name: &str, report: &DownReport, funcs: usize) -> String {
    let minutes = report.kept_for.unwrap_or_default().as_secs_f64() / 60.0;
    // They ran in the test process, which is ending.
    let stopped = match funcs {
        0 => String::new(),
        1 => "; its in-test (func) service stopped with the test".to_string(),
        n => format!("; its {n} in-test (func) services stopped with the test"),
    };
    format!(
        "rig: environment {name:?} ({id}) left running for {minutes:.1} min without a client \
         (keep_for / RIG_TTL){stopped}; `rig ps` lists it, `rig traffic --follow` watches it, \
         `rig down {id}` ends it",
        id = report.id
    )
}

/// The `DELETE` parameters for `ending`, honouring `RIG_PRESERVE` and
/// `RIG_PRESERVE_ON_FAILURE` (exactly `true`, as upstream).
pub(crate) fn delete_options(
    ending: Ending,
    var: &dyn Fn(&str) -> Option<String>,
) -> DeleteOptions {
    let is_true = |key: &str| var(key).is_some_and(|v| v == "true");
    let failed = ending != Ending::Normal;
    DeleteOptions {
        preserve: is_true("RIG_PRESERVE") || (failed && is_true("RIG_PRESERVE_ON_FAILURE")),
        reason: (ending == Ending::TestFailed).then(|| "test_failed".to_string()),
        log: true,
    }
}

/// What a failed test prints about its environment.
pub(crate) fn failure_text(name: &str, report: &DownReport) -> String {
    let mut lines = vec![format!(
        "rig: environment {name:?} ({}) torn down after the test failed",
        report.id
    )];
    if let Some(summary) = &report.summary {
        lines.push(summary.trim_end().to_string());
    }
    if report.preserved {
        lines.push(format!(
            "rig: environment dir (preserved): {}",
            report.env_dir.display()
        ));
    } else {
        lines.push(format!(
            "rig: environment dir (cleaned): {}",
            report.env_dir.display()
        ));
        lines.push("rig: to preserve on failure, set RIG_PRESERVE_ON_FAILURE=true".into());
    }
    if let Some(log) = &report.log_file {
        lines.push(format!("rig: event log: {}", log.display()));
    }
    if let Some(pretty) = &report.log_file_pretty {
        lines.push(format!("rig: timeline:  {}", pretty.display()));
    }
    if let Some(error) = &report.log_error {
        lines.push(format!("rig: rigd could not write the log files: {error}"));
    }
    if let Some(stem) = report
        .log_file
        .as_deref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
    {
        let prefix = std::env::var("RIG_DIR")
            .ok()
            .filter(|d| !d.is_empty())
            .map(|d| format!("RIG_DIR={d} "))
            .unwrap_or_default();
        lines.push(format!("rig: {prefix}rig traffic {stem}"));
        lines.push(format!("rig: {prefix}rig logs    {stem}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_kept_environment_says_its_funcs_stopped_with_the_test() {
        let report = DownReport {
            id: "x1".into(),
            kept_for: Some(Duration::from_secs(120)),
            ..DownReport::default()
        };
        assert_eq!(
            kept_text("e", &report, 0),
            "rig: environment \"e\" (x1) left running for 2.0 min without a client (keep_for / \
             RIG_TTL); `rig ps` lists it, `rig traffic --follow` watches it, `rig down x1` ends it"
        );
        assert!(kept_text("e", &report, 2).contains(
            "(keep_for / RIG_TTL); its 2 in-test (func) services stopped with the test;"
        ));
    }

    #[test]
    fn preserve_and_reason_follow_the_ending_and_the_variables() {
        let o = delete_options(Ending::Normal, &vars(&[]));
        assert_eq!(o.query(), "?log=true");
        let o = delete_options(Ending::TestFailed, &vars(&[]));
        assert_eq!(o.query(), "?reason=test_failed&log=true");
        let on_failure = vars(&[("RIG_PRESERVE_ON_FAILURE", "true")]);
        assert!(!delete_options(Ending::Normal, &on_failure).preserve);
        assert!(delete_options(Ending::TestFailed, &on_failure).preserve);
        assert!(delete_options(Ending::StartFailed, &on_failure).preserve);
        assert_eq!(
            delete_options(Ending::StartFailed, &on_failure).reason,
            None
        );
        assert!(delete_options(Ending::Normal, &vars(&[("RIG_PRESERVE", "true")])).preserve);
        assert!(!delete_options(Ending::Normal, &vars(&[("RIG_PRESERVE", "1")])).preserve);
    }

    #[test]
    fn failure_text_has_summary_dir_and_log_commands() {
        let report = DownReport {
            id: "abc".into(),
            env_dir: "/r/tmp/abc".into(),
            preserved: false,
            log_file: Some("/r/logs/orders-abc.jsonl".into()),
            log_file_pretty: Some("/r/logs/orders-abc.log".into()),
            summary: Some("api: GET /x 500\n".into()),
            log_error: None,
            kept_for: None,
        };
        let text = failure_text("orders", &report);
        assert!(text.starts_with(
            "rig: environment \"orders\" (abc) torn down after the test failed\napi: GET /x 500\n\
             rig: environment dir (cleaned): /r/tmp/abc\n"
        ), "{text}");
        assert!(
            text.contains("rig: event log: /r/logs/orders-abc.jsonl"),
            "{text}"
        );
        assert!(text.contains("rig traffic orders-abc"), "{text}");
        assert!(!text.contains("could not write"), "{text}");
    }

    #[test]
    fn failure_text_says_when_rigd_could_not_write_the_log_files() {
        let report = DownReport {
            id: "abc".into(),
            log_file: Some("/r/logs/orders-abc.jsonl".into()),
            summary: Some("rig: api failed: exit status 1".into()),
            log_error: Some("write log file /r/logs/orders-abc.log: No space left".into()),
            ..DownReport::default()
        };
        let text = failure_text("orders", &report);
        assert!(text.contains("rig: api failed: exit status 1\n"), "{text}");
        assert!(
            text.contains(
                "rig: rigd could not write the log files: write log file \
                 /r/logs/orders-abc.log: No space left"
            ),
            "{text}"
        );
        assert!(text.contains("rig traffic orders-abc"), "{text}");
    }
}
