//! Upgraded connections (WebSocket and any other `Upgrade`, and `CONNECT`): once the target
//! switches protocols, both sides are taken over from hyper and joined by a byte tunnel.
//!
//! The switch itself is recorded as `request.completed` (status `101`, `upgrade` set) by the
//! exchange; the tunnel's end is recorded here as `connection.closed` with the same `upgrade`,
//! the bytes each way and the tunnel's lifetime.
//!
//! As in the TCP relay (`crate::tcp`), a side that resets its connection gets the other side's
//! connection reset too, so that a stream cut short does not look complete to the other peer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::context::Context;
use super::error::Side;
use super::raw::Prefixed;
use super::record::TunnelRecord;

/// Buffer size of each tunnel direction.
const TUNNEL_BUFFER: usize = 64 * 1024;

/// Joins the client's and the target's upgraded connections until both are done (or the proxy
/// shuts down), then records the tunnel.
pub(crate) async fn tunnel(
    ctx: Arc<Context>,
    upgrade: String,
    client: OnUpgrade,
    upstream: OnUpgrade,
) {
    let started = Instant::now();
    let record = |bytes_in, bytes_out, error| {
        ctx.observer.record(Box::new(TunnelRecord {
            upgrade: upgrade.clone(),
            bytes_in,
            bytes_out,
            duration: started.elapsed(),
            error,
        }))
    };
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(client), Ok(upstream)) => (client, upstream),
        (Err(e), _) => {
            return record(
                0,
                0,
                Some(format!("client: taking over the connection failed: {e}")),
            )
        }
        (_, Err(e)) => {
            return record(
                0,
                0,
                Some(format!("upstream: taking over the connection failed: {e}")),
            )
        }
    };
    let mut client = Counted::new(Conn::client(client), Side::Client);
    let mut upstream = Counted::new(Conn::upstream(upstream), Side::Upstream);
    let outcome = tokio::select! {
        result = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut upstream,
            TUNNEL_BUFFER,
            TUNNEL_BUFFER,
        ) => result.err().map(|e| e.to_string()),
        _ = ctx.cancel.cancelled() => Some("proxy: shut down while the tunnel was open".to_string()),
    };
    // Prefer the error as seen on the side where it happened.
    let error = outcome.map(|fallback| {
        client
            .error
            .take()
            .or_else(|| upstream.error.take())
            .unwrap_or(fallback)
    });
    // A side that could not be read (it reset its connection) has the reset passed on: the other
    // side's connection is reset when it is dropped below, not closed cleanly.
    if client.read_failed {
        upstream.io.reset_on_close();
    }
    if upstream.read_failed {
        client.io.reset_on_close();
    }
    // Bytes delivered, as the TCP relay counts them: what was written to the opposite side, not
    // what was read and perhaps never written when the tunnel failed or was cut.
    record(upstream.written, client.written, error);
}

/// An upgraded connection that counts the bytes written to it and remembers its first error.
struct Counted<T> {
    io: T,
    side: Side,
    /// Bytes written to this side: delivered to its peer as far as the proxy can tell.
    written: u64,
    /// Whether reading from this side failed (e.g. it reset the connection).
    read_failed: bool,
    error: Option<String>,
}

impl<T> Counted<T> {
    fn new(io: T, side: Side) -> Counted<T> {
        Counted {
            io,
            side,
            written: 0,
            read_failed: false,
            error: None,
        }
    }

    fn note<R>(&mut self, result: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if let Poll::Ready(Err(e)) = &result {
            if self.error.is_none() {
                self.error = Some(format!("{}: {e}", self.side));
            }
        }
        result
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Err(_)) = result {
            self.read_failed = true;
        }
        self.note(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.written += n as u64;
        }
        self.note(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        self.note(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_shutdown(cx);
        self.note(result)
    }
}

/// One side of a tunnel: the TCP connection itself when hyper hands back the one it was given
/// (as it does for the proxy's own server and upstream connections), so that a reset can be
/// passed on to it; hyper's upgraded connection otherwise.
enum Conn {
    /// The connection, with the bytes hyper had already read from it in front.
    Tcp(Prefixed<TcpStream>),
    /// A connection of another type, which cannot be reset.
    Upgraded(TokioIo<Upgraded>),
}

impl Conn {
    /// The client's side, served by hyper-util (which wraps the connection it is given).
    fn client(upgraded: Upgraded) -> Conn {
        use hyper_util::server::conn::auto::upgrade::downcast;
        match downcast::<TokioIo<Prefixed<TcpStream>>>(upgraded) {
            Ok(parts) => Conn::Tcp(parts.io.into_inner().prepend(parts.read_buf)),
            Err(upgraded) => Conn::Upgraded(TokioIo::new(upgraded)),
        }
    }

    /// The target's side, a connection of the proxy's HTTP/1.1 client.
    fn upstream(upgraded: Upgraded) -> Conn {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Conn::Tcp(Prefixed::new(parts.read_buf, parts.io.into_inner())),
            Err(upgraded) => Conn::Upgraded(TokioIo::new(upgraded)),
        }
    }

    /// Makes dropping the connection reset it instead of closing it cleanly (see
    /// [`crate::tcp::reset_on_close`]); a connection that is not a TCP connection closes
    /// cleanly.
    fn reset_on_close(&self) {
        if let Conn::Tcp(io) = self {
            crate::tcp::reset_on_close(io.get_ref());
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Conn::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            Conn::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(io) => Pin::new(io).poll_flush(cx),
            Conn::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            Conn::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
