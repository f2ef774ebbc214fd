//! Between requests a client connection holds no read buffer (and no upstream connection: it
//! is parked with the proxy's idle ones): it gives both buffers back (when nothing is buffered
//! in them), waits for the client to become readable, and only then takes a buffer and reads.
//! A thousand idle keep-alive connections hold their sockets and their tasks, not a thousand
//! buffers.
//!
//! ```text
//! response done ─► cbuf, ubuf empty? ─► dropped ─► client readable? ─► take cbuf, try_read
//! ```

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;

use super::{buffers, Connection, HEAD_READ};
use crate::http::socket::read_draining;

/// How waiting while idle ended.
pub(super) enum Idle {
    /// The proxy is shutting down.
    Cancelled,
    /// A side was readable after all not (its readiness was stale): wait again.
    Nothing,
    /// A read from the client into a fresh `cbuf` happened.
    Read(std::io::Result<usize>),
}

impl Connection {
    /// Waits with no read buffer held (`cbuf` must be empty) until the client sends
    /// something or `cancelled` fires.
    pub(super) async fn idle_read(
        &mut self,
        mut cancelled: Pin<&mut impl Future<Output = ()>>,
    ) -> Idle {
        debug_assert!(self.cbuf.is_empty());
        buffers::release(&mut self.cbuf);
        if self.ubuf.is_empty() {
            buffers::release(&mut self.ubuf);
        }
        #[cfg(test)]
        self.gauge.report(&self.cbuf, &self.ubuf);
        let ready = tokio::select! {
            biased;
            _ = cancelled.as_mut() => return Idle::Cancelled,
            ready = self.client.readable() => ready,
        };
        let read = ready.and_then(|()| {
            buffers::reserve(&mut self.cbuf, HEAD_READ);
            read_draining(&self.client, &mut self.cbuf)
        });
        #[cfg(test)]
        self.gauge.report(&self.cbuf, &self.ubuf);
        match read {
            Err(error) if error.kind() == ErrorKind::WouldBlock => Idle::Nothing,
            read => Idle::Read(read),
        }
    }
}

/// The read buffer capacity the raw connections of one proxy hold, as last reported by each
/// (when going idle, and after the first read of the next request): tests check that idle
/// connections hold none.
#[cfg(test)]
pub(crate) struct Gauge {
    total: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    reported: usize,
}

#[cfg(test)]
impl Gauge {
    pub(super) fn new(total: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Gauge {
        Gauge { total, reported: 0 }
    }

    /// Reports the capacity of `cbuf` and `ubuf` now.
    fn report(&mut self, cbuf: &bytes::BytesMut, ubuf: &bytes::BytesMut) {
        use std::sync::atomic::Ordering::SeqCst;
        let now = cbuf.capacity() + ubuf.capacity();
        self.total.fetch_add(now, SeqCst);
        self.total.fetch_sub(self.reported, SeqCst);
        self.reported = now;
    }
}

#[cfg(test)]
impl Drop for Gauge {
    fn drop(&mut self) {
        self.total
            .fetch_sub(self.reported, std::sync::atomic::Ordering::SeqCst);
    }
}
