//! Ctrl-C (SIGINT) and SIGTERM as an async stream, for commands that must clean up before
//! exiting. Once installed, the signals no longer kill the process; the command decides.

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::error::CliError;

/// Listens for SIGINT and SIGTERM.
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Installs the handlers. Must run inside a tokio runtime.
    pub fn install() -> Result<Signals, CliError> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| CliError::failed(format!("cannot handle {name}: {e}")))
        };
        Ok(Signals {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// Waits for the next signal and returns its name. Cancel-safe.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.interrupt.recv() => "SIGINT",
            Some(()) = self.terminate.recv() => "SIGTERM",
            else => std::future::pending().await,
        }
    }
}
