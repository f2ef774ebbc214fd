//! Running a build tool (`cargo build`, `go build`): its own process group, output streamed
//! into the service log, the tail kept for the error message, killed on cancellation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use rig_types::LogStream;
use tokio_util::sync::CancellationToken;

use crate::reaper::Reaper;
use crate::services::process::{describe_exit, signal_group, spawn, OutputReaders, OUTPUT_DRAIN};
use crate::services::OutputSink;

/// How much of a failed build's output goes into the error message (the end of it, where
/// the compiler's summary is).
const ERROR_TAIL: usize = 16 * 1024;

/// One build tool invocation.
#[derive(Clone, Debug)]
pub struct BuildCommand {
    /// The program (a path, or a name looked up on `env`'s `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The working directory.
    pub dir: PathBuf,
    /// Its whole environment.
    pub env: BTreeMap<String, String>,
    /// Stream stdout into the log too (off when stdout is machine-readable, like cargo's
    /// JSON messages; it is returned either way).
    pub log_stdout: bool,
}

/// Why a build command did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildFailure {
    /// The build was cancelled (teardown, or another artifact failed).
    Cancelled,
    /// It could not be started.
    Spawn(String),
    /// It ran and failed: how it exited, and the end of its output.
    Exited {
        /// `exit status 101`, `signal: killed`, ...
        status: String,
        /// The last `ERROR_TAIL` bytes of its output (stderr, plus stdout when logged).
        output: String,
    },
}

impl BuildFailure {
    /// `"<what>: <status>\n<output>"`, the shape of upstream's build errors.
    pub fn describe(&self, what: &str) -> String {
        match self {
            BuildFailure::Cancelled => format!("{what}: cancelled"),
            BuildFailure::Spawn(e) => format!("{what}: {e}"),
            BuildFailure::Exited { status, output } => {
                let output = output.trim_end();
                if output.is_empty() {
                    format!("{what}: {status}")
                } else {
                    format!("{what}: {status}\n{output}")
                }
            }
        }
    }
}

impl BuildCommand {
    /// Runs the command to the end, returning its stdout. Output chunks become `service.log`
    /// events on `output`; when `cancel` fires the whole process group is killed.
    pub async fn run(
        &self,
        output: &OutputSink,
        cancel: &CancellationToken,
        reaper: Option<&Arc<Reaper>>,
    ) -> Result<Vec<u8>, BuildFailure> {
        let program =
            crate::services::process::resolve_program(&self.program, Some(&self.dir), &self.env)
                .map_err(|e| BuildFailure::Spawn(e.to_string()))?;
        let mut child = spawn(&program, &self.args, Some(&self.dir), &self.env, None)
            .map_err(|e| BuildFailure::Spawn(format!("start {}: {e}", program.display())))?;
        let pgid = child.id().map(|pid| pid as i32);
        if let (Some(reaper), Some(pid)) = (reaper, child.id()) {
            reaper.track_group(pid as i32, pid);
        }

        let tail = Arc::new(Mutex::new(Tail::default()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let mut readers = OutputReaders::default();
        if let Some(mut out) = child.stdout.take() {
            let (sink, tail, stdout) = (output.clone(), tail.clone(), stdout.clone());
            let log = self.log_stdout;
            readers.spawn(async move {
                if log {
                    sink.pump_with(out, LogStream::Stdout, |chunk| {
                        tail.lock().push(chunk);
                        stdout.lock().extend_from_slice(chunk);
                    })
                    .await;
                } else {
                    // Kept as it is read, so a drain cut short still returns what came.
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0; 8192];
                    while let Ok(n @ 1..) = out.read(&mut buf).await {
                        stdout.lock().extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let sink = output.clone();
            let tail = tail.clone();
            readers.spawn(async move {
                sink.pump_with(err, LogStream::Stderr, |chunk| tail.lock().push(chunk))
                    .await
            });
        }
        let status = tokio::select! {
            status = child.wait() => Some(status),
            _ = cancel.cancelled() => None,
        };
        if let Some(pgid) = pgid {
            signal_group(pgid, libc::SIGKILL);
            if let Some(reaper) = reaper {
                reaper.untrack_group(pgid);
            }
        }
        let status = match status {
            Some(status) => status,
            None => {
                let _ = child.wait().await;
                return Err(BuildFailure::Cancelled);
            }
        };
        // Bounded: a process the build started outside its group may keep the pipes open.
        // Readers still reading then are aborted (also when cancelled), closing the pipes.
        let drained_by = tokio::time::Instant::now() + OUTPUT_DRAIN;
        tokio::select! {
            _ = readers.drain(drained_by) => {}
            _ = cancel.cancelled() => return Err(BuildFailure::Cancelled),
        }
        let status = status.map_err(|e| BuildFailure::Spawn(format!("wait: {e}")))?;
        let stdout = std::mem::take(&mut *stdout.lock());
        if status.success() {
            return Ok(stdout);
        }
        let output = tail.lock().text();
        Err(BuildFailure::Exited {
            status: describe_exit(status),
            output,
        })
    }
}

/// The last [`ERROR_TAIL`] bytes of output.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
        if self.0.len() > 2 * ERROR_TAIL {
            let cut = self.0.len() - ERROR_TAIL;
            self.0.drain(..cut);
        }
    }

    fn text(&self) -> String {
        let start = self.0.len().saturating_sub(ERROR_TAIL);
        String::from_utf8_lossy(&self.0[start..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventLog;

    /// A build that leaves a process holding its stdout (started in a session of its own, out
    /// of reach of the group kill) still finishes, with what it printed.
    #[tokio::test]
    async fn a_build_that_leaves_a_process_holding_its_output_still_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let command = BuildCommand {
            program: "sh".to_string(),
            args: vec![
                "-c".to_string(),
                // The parent waits until the sleeper has left the group (it reads the fifo
                // once the sleeper's new session exists), so the group kill cannot reach it.
                "mkfifo left; setsid sh -c 'echo > left; exec sleep 300' & read _ < left; \
                 echo \"$!\"; echo built"
                    .to_string(),
            ],
            dir: dir.path().to_path_buf(),
            env: BTreeMap::from([("PATH".to_string(), std::env::var("PATH").unwrap())]),
            log_stdout: false,
        };
        let sink = OutputSink::new(Arc::new(EventLog::new()), "env", "api");
        let cancel = CancellationToken::new();
        let run = command.run(&sink, &cancel, None);
        let stdout = tokio::time::timeout(std::time::Duration::from_secs(60), run)
            .await
            .expect("the build never finished: its output is still held open")
            .expect("the build succeeded");
        let stdout = String::from_utf8(stdout).unwrap();
        let pid: i32 = stdout.lines().next().unwrap().parse().unwrap();
        // SAFETY: kill(2) of the sleeper this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(stdout.ends_with("built\n"), "{stdout:?}");
    }
}
