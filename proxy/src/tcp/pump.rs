//! One direction of a relay: from one socket's read side to the other socket's write side,
//! zero-copy where the platform allows it, ending with a half-close of the destination (or,
//! when the source was reset, with the destination set to be reset too).

use std::io;
use std::sync::atomic::AtomicU64;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::copy;
use super::error_text::describe;

/// How a relay direction ended.
#[derive(Debug)]
pub(super) enum PumpEnd {
    /// The source closed its write side; everything it sent was delivered.
    Eof,
    /// Reading the source failed (e.g. it reset the connection): the source socket is dead.
    ReadFailed(io::Error),
    /// Writing to the destination failed (e.g. it went away).
    WriteFailed(io::Error),
}

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    /// Client to target (`bytes_in`).
    Upstream,
    /// Target to client (`bytes_out`).
    Downstream,
}

impl Direction {
    fn source(self) -> &'static str {
        match self {
            Direction::Upstream => "client",
            Direction::Downstream => "target",
        }
    }

    fn destination(self) -> &'static str {
        match self {
            Direction::Upstream => "target",
            Direction::Downstream => "client",
        }
    }
}

impl PumpEnd {
    /// True when the source socket can no longer be used in either direction.
    pub(super) fn source_is_dead(&self) -> bool {
        matches!(self, PumpEnd::ReadFailed(_))
    }

    /// The failure for a `connection.closed` event's `error`, e.g.
    /// `read from client: connection reset by peer`; `None` for a clean end.
    pub(super) fn failure(&self, direction: Direction) -> Option<String> {
        match self {
            PumpEnd::Eof => None,
            PumpEnd::ReadFailed(err) => Some(format!(
                "read from {}: {}",
                direction.source(),
                describe(err)
            )),
            PumpEnd::WriteFailed(err) => Some(format!(
                "write to {}: {}",
                direction.destination(),
                describe(err)
            )),
        }
    }
}

/// Relays `src` to `dst` until the source is done, adding every byte written to `dst` to
/// `delivered`, then half-closes `dst` so its peer sees the end of the stream (the other
/// direction keeps running).
///
/// When reading the source failed (it reset the connection), `dst` is not half-closed but set
/// to be reset when it is closed, which the relay then does at once: its peer gets the reset
/// too, rather than a clean end that would make a stream cut short look complete.
pub(super) async fn pump(
    src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    delivered: &AtomicU64,
    zero_copy: bool,
) -> PumpEnd {
    let end = relay_bytes(src.as_ref(), dst.as_ref(), delivered, zero_copy).await;
    if end.source_is_dead() {
        super::reset_on_close(dst.as_ref());
    } else {
        // Errors are expected here when the destination is already gone; nothing more to do.
        let _ = dst.shutdown().await;
    }
    end
}

#[cfg(target_os = "linux")]
async fn relay_bytes(
    src: &TcpStream,
    dst: &TcpStream,
    delivered: &AtomicU64,
    zero_copy: bool,
) -> PumpEnd {
    use super::splice;
    if zero_copy {
        match splice::pump(src, dst, delivered).await {
            splice::Outcome::Finished(end) => return end,
            splice::Outcome::Unsupported => {}
        }
    }
    copy::pump(src, dst, delivered).await
}

#[cfg(not(target_os = "linux"))]
async fn relay_bytes(
    src: &TcpStream,
    dst: &TcpStream,
    delivered: &AtomicU64,
    _zero_copy: bool,
) -> PumpEnd {
    copy::pump(src, dst, delivered).await
}
