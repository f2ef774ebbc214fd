//! Between requests a client connection holds no read buffer: it gives both buffers back (when
//! nothing is buffered in them), waits for the client, or its idle upstream connection, to
//! become readable, and only then takes a buffer and reads. A thousand idle keep-alive
//! connections hold their sockets and their tasks, not a thousand buffers.
//!
//! ```text
//! response done ─► cbuf, ubuf empty? ─► dropped ─► readable? ─► client: take cbuf, try_read
//!                                                            └─► upstream: probe one byte
//! ```

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;

use bytes::BytesMut;

use super::{Connection, Event, HEAD_READ};

/// How waiting while idle ended.
pub(super) enum Idle {
    /// The proxy is shutting down.
    Cancelled,
    /// A side was readable after all not (its readiness was stale): wait again.
    Nothing,
    /// A read happened (on the client into a fresh `cbuf`).
    Read(Event),
}

/// Which side became readable.
enum Side {
    Client(std::io::Result<()>),
    Upstream(std::io::Result<()>),
}

/// Drops `buf`'s memory (its share of it: slices an event still holds keep theirs).
fn release(buf: &mut BytesMut) {
    if buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

impl Connection {
    /// Waits with no read buffer held (`cbuf` must be empty) until the client sends
    /// something, the idle upstream connection says something (its close, or bytes nobody
    /// asked for), or `cancelled` fires.
    pub(super) async fn idle_read(
        &mut self,
        mut cancelled: Pin<&mut impl Future<Output = ()>>,
    ) -> Idle {
        debug_assert!(self.cbuf.is_empty());
        release(&mut self.cbuf);
        if self.ubuf.is_empty() {
            release(&mut self.ubuf);
        }
        #[cfg(test)]
        self.gauge.report(&self.cbuf, &self.ubuf);
        let side = match self.upstream.as_ref() {
            Some(upstream) => tokio::select! {
                biased;
                _ = cancelled.as_mut() => return Idle::Cancelled,
                ready = self.client.readable() => Side::Client(ready),
                ready = upstream.readable() => Side::Upstream(ready),
            },
            None => tokio::select! {
                biased;
                _ = cancelled.as_mut() => return Idle::Cancelled,
                ready = self.client.readable() => Side::Client(ready),
            },
        };
        let read = match side {
            Side::Client(Err(error)) => Event::Client(Err(error)),
            Side::Client(Ok(())) => {
                self.cbuf.reserve(HEAD_READ);
                Event::Client(read_draining(&self.client, &mut self.cbuf))
            }
            Side::Upstream(Err(error)) => Event::Upstream(Err(error)),
            Side::Upstream(Ok(())) => {
                let mut probe = [0u8; 1];
                let upstream = self.upstream.as_ref().expect("watched");
                Event::Upstream(upstream.try_read(&mut probe))
            }
        };
        #[cfg(test)]
        self.gauge.report(&self.cbuf, &self.ubuf);
        match read {
            Event::Client(Err(error)) | Event::Upstream(Err(error))
                if error.kind() == ErrorKind::WouldBlock =>
            {
                Idle::Nothing
            }
            read => Idle::Read(read),
        }
    }
}

/// Reads what `stream` has into `buf`'s spare capacity, like `try_read_buf`, and when that
/// was less than room was left for (the socket is drained: a request arrived whole, as usual)
/// also tells Tokio the socket is no longer readable. Otherwise Tokio only learns that from
/// the next read failing with `WouldBlock`, and the proxy, watching the client while it waits
/// for the response, would make that extra system call for every request. Data arriving
/// after the read raises a new readiness event that this does not clear, so no wake-up is
/// lost.
fn read_draining(stream: &tokio::net::TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let mut drained = None;
    let read = stream.try_io(tokio::io::Interest::READABLE, || {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        let n = socket2::SockRef::from(stream).recv(spare)?;
        // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        if n > 0 && n < room {
            drained = Some(n);
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match drained {
        Some(n) => Ok(n),
        None => read,
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
    fn report(&mut self, cbuf: &BytesMut, ubuf: &BytesMut) {
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
