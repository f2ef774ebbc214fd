//! A connection with bytes already read from it put back in front: what hyper is handed when
//! the raw path gives a connection up, and when an `Upgrade: h2c` request turns into HTTP/2.

use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, whose reads return `prefix` first.
pub(crate) struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Prefixed<I> {
    /// Reads return `prefix`, then whatever `inner` reads.
    pub(crate) fn new(prefix: Bytes, inner: I) -> Prefixed<I> {
        Prefixed { prefix, inner }
    }

    /// Puts `front` before what is still to be read (copying only when both are non-empty).
    pub(crate) fn prepend(self, front: Bytes) -> Prefixed<I> {
        let prefix = if front.is_empty() {
            self.prefix
        } else if self.prefix.is_empty() {
            front
        } else {
            let mut joined = BytesMut::with_capacity(front.len() + self.prefix.len());
            joined.extend_from_slice(&front);
            joined.extend_from_slice(&self.prefix);
            joined.freeze()
        };
        Prefixed {
            prefix,
            inner: self.inner,
        }
    }

    /// The connection underneath.
    pub(crate) fn get_ref(&self) -> &I {
        &self.inner
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_prefix_comes_first() {
        let mut io = Prefixed::new(Bytes::from_static(b"GET / "), &b"HTTP/1.1"[..]);
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "GET / HTTP/1.1");
    }

    #[tokio::test]
    async fn prepended_bytes_come_before_the_prefix() {
        let io = Prefixed::new(Bytes::from_static(b"/ "), &b"HTTP/1.1"[..]);
        let mut io = io.prepend(Bytes::from_static(b"GET "));
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "GET / HTTP/1.1");
    }
}
