//! The portable relay direction: a large user-space buffer between two sockets.
//!
//! Used where `splice(2)` is unavailable (other platforms, or when the kernel refuses it) and
//! when zero-copy is turned off. The 64 KiB buffer is allocated once per direction, and only
//! when the first bytes arrive, so idle connections cost no buffer memory.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpStream;

use super::pump::PumpEnd;

/// Size of the per-direction copy buffer.
pub(super) const BUFFER_SIZE: usize = 64 * 1024;

/// Moves bytes from `src` to `dst` until `src` reaches EOF or either side fails, adding every
/// byte written to `dst` to `delivered`.
pub(super) async fn pump(src: &TcpStream, dst: &TcpStream, delivered: &AtomicU64) -> PumpEnd {
    let mut buffer: Option<Box<[u8]>> = None;
    loop {
        if let Err(err) = src.readable().await {
            return PumpEnd::ReadFailed(err);
        }
        let buf = buffer.get_or_insert_with(|| vec![0u8; BUFFER_SIZE].into_boxed_slice());
        let filled = match src.try_read(buf) {
            Ok(0) => return PumpEnd::Eof,
            Ok(n) => n,
            Err(err) if retry(&err) => continue,
            Err(err) => return PumpEnd::ReadFailed(err),
        };
        let mut written = 0;
        while written < filled {
            if let Err(err) = dst.writable().await {
                return PumpEnd::WriteFailed(err);
            }
            match dst.try_write(&buf[written..filled]) {
                Ok(0) => return PumpEnd::WriteFailed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    delivered.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(err) if retry(&err) => continue,
                Err(err) => return PumpEnd::WriteFailed(err),
            }
        }
    }
}

/// Spurious readiness (`WouldBlock`) and interrupted calls are retried.
pub(super) fn retry(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
