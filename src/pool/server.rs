//! The server behind a pooled backend, native process or container, seen the same way by the
//! backends: alive or not, stopped, waited for, its output quoted when it fails.

use std::future::Future;
use std::time::Duration;

use super::container::ContainerServer;
use super::native::{NativeProcess, WorkDir};

/// A backend's server.
pub enum Server {
    /// A process from binaries on the machine, in its private work directory.
    Native {
        /// The process (group).
        process: NativeProcess,
        /// Its work directory; declared after the process so it is removed once the process
        /// has gone.
        dir: WorkDir,
    },
    /// A container run by the Docker engine.
    Container(ContainerServer),
}

impl Server {
    /// False once the server has exited.
    pub fn alive(&self) -> bool {
        match self {
            Server::Native { process, .. } => process.alive(),
            Server::Container(c) => c.alive(),
        }
    }

    /// Stops the server (and removes its container).
    pub async fn stop(&self) {
        match self {
            Server::Native { process, .. } => process.stop().await,
            Server::Container(c) => c.stop().await,
        }
    }

    /// The end of the server's output, for error messages.
    pub async fn log_tail(&self) -> String {
        match self {
            Server::Native { dir, .. } => dir.log_tail(),
            Server::Container(c) => c.log_tail().await,
        }
    }

    /// The container, for a container backend.
    pub fn container(&self) -> Option<&ContainerServer> {
        match self {
            Server::Container(c) => Some(c),
            Server::Native { .. } => None,
        }
    }

    /// Polls `ready` until it succeeds; stops the server and quotes its output if it exits or
    /// `timeout` passes first. `what` names the server in errors (`postgres`).
    pub async fn wait_ready<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        ready: F,
    ) -> Result<(), StartFailed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let result = poll_ready(timeout, || self.alive(), ready).await;
        match result {
            Ok(()) => Ok(()),
            Err(not_ready) => {
                let tail = self.log_tail().await;
                self.stop().await;
                Err(StartFailed {
                    exited: matches!(not_ready, NotReady::Exited),
                    message: not_ready.message(what, timeout, &tail),
                })
            }
        }
    }
}

/// A server that did not become ready (it has been stopped).
#[derive(Debug)]
pub struct StartFailed {
    /// It exited by itself while starting, rather than running past the deadline.
    pub exited: bool,
    /// What happened, quoting the end of its output.
    pub message: String,
}

impl From<StartFailed> for String {
    fn from(failed: StartFailed) -> String {
        failed.message
    }
}

/// Why a server did not become ready.
pub(crate) enum NotReady {
    /// It exited while starting.
    Exited,
    /// The deadline passed; the last probe error.
    TimedOut(String),
}

impl NotReady {
    /// The error message, quoting the end of the server's output.
    pub(crate) fn message(&self, what: &str, timeout: Duration, tail: &str) -> String {
        match self {
            NotReady::Exited => {
                format!("{what} exited while starting; its output ends with:\n{tail}")
            }
            NotReady::TimedOut(last) => format!(
                "{what} not ready after {}s (last error: {last}); its output ends with:\n{tail}",
                timeout.as_secs()
            ),
        }
    }
}

/// Polls `ready` every 50 ms until it succeeds, `alive` turns false, or `timeout` passes.
pub(crate) async fn poll_ready<F, Fut>(
    timeout: Duration,
    alive: impl Fn() -> bool,
    mut ready: F,
) -> Result<(), NotReady>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match ready().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !alive() {
            return Err(NotReady::Exited);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(NotReady::TimedOut(last));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
