//! The raw TCP relay: every `tcp` edge (Postgres, Redis, anything declared `tcp`).
//!
//! [`serve`] owns the proxy's listener for the proxy's whole life and relays each accepted
//! connection to the target over its own upstream connection:
//!
//! ```text
//!  accept ─► connection.opened ─► dial target (5 s) ─┬─ refused/timeout ─► close client ─► connection.closed {error}
//!                                                    └─ relay both ways ─► connection.progress … ─► connection.closed
//! ```
//!
//! Bytes move kernel-side with `splice(2)` on Linux and through one 64 KiB buffer per direction
//! elsewhere; either way the relay counts exactly the bytes it delivered (`bytes_in`: client to
//! target, `bytes_out`: target to client). Half-close is propagated in both directions, and so
//! is a reset: a side that resets its connection gets the other side's connection reset too.
//! Observation never waits: records go to the [`Observer`] with `try_send`.
//!
//! Compared with upstream rig, failed connections carry an `error`, long-lived connections
//! report `connection.progress` periodically instead of only at close, and no per-connection
//! watcher outlives its connection.

pub(crate) mod connection;
mod copy;
pub(crate) mod error_text;
mod pump;
mod record;
mod relay;
#[cfg(target_os = "linux")]
mod splice;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observe::Observer;

pub use record::{ByteCounts, ConnectionPhase, ConnectionRecord};

/// Tuning of a TCP proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSettings {
    /// How long to wait for the target to accept a connection (upstream: 5 s). Zero waits as
    /// long as the operating system does.
    pub dial_timeout: Duration,
    /// How often a live connection reports `connection.progress` with its byte counts so far
    /// (only when they changed). Zero disables progress reports.
    pub progress_interval: Duration,
    /// Relay with `splice(2)` where the platform supports it (Linux). `false` forces the
    /// buffered copy everywhere; the events are the same either way.
    pub zero_copy: bool,
}

impl Default for TcpSettings {
    fn default() -> TcpSettings {
        TcpSettings {
            dial_timeout: Duration::from_secs(5),
            progress_interval: Duration::from_secs(10),
            zero_copy: true,
        }
    }
}

/// How long to pause accepting after a resource error (out of file descriptors, memory), so a
/// full descriptor table does not turn the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` and relays each one to `target` (`host:port`), reporting
/// `connection.opened`, `connection.progress` and `connection.closed` through `observer`.
///
/// Runs until `cancel` fires. Then it stops accepting, closes every live connection (each still
/// reports its `connection.closed` with the bytes relayed so far), waits for them to finish
/// and returns; by then every record has been handed to the observer. The listener is never
/// closed and re-bound while the proxy runs, so its port cannot be taken by anyone else.
pub async fn serve(
    listener: TcpListener,
    target: String,
    observer: Observer,
    settings: TcpSettings,
    cancel: CancellationToken,
) {
    let target: Arc<str> = target.into();
    let connections = TaskTracker::new();
    // Probes are recognised by their address pair; without the listener's own address none is.
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                let probe = local.is_some_and(|local| crate::probes::is_probe(peer, local));
                connections.spawn(connection::handle(
                    client,
                    probe,
                    target.clone(),
                    observer.clone(),
                    settings,
                    cancel.clone(),
                ));
            }
            // The connection died in the backlog or a signal interrupted the call: next one.
            Err(err) if is_per_connection(&err) => {}
            // Out of descriptors or memory: back off (live connections keep running and will
            // free resources), then keep serving. The listener stays open.
            Err(_) => {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    connections.close();
    connections.wait().await;
}

/// Makes closing `stream` reset the connection (`RST`, through a zero `SO_LINGER` timeout)
/// instead of ending it cleanly (`FIN`), to pass on a reset from the other side of a relay:
/// the peer then sees an error where its stream was cut short, not a clean, complete end.
/// Best effort: a socket that refuses the option is closed cleanly.
pub(crate) fn reset_on_close(stream: &tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Accept errors that concern only the connection being accepted.
pub(crate) fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
