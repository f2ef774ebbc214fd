//! Upgraded connections (WebSocket and any other `Upgrade`, and `CONNECT`): once the target
//! switches protocols, both sides are taken over from hyper and joined by a byte tunnel.
//!
//! The switch itself is recorded as `request.completed` (status `101`, `upgrade` set) by the
//! exchange; the tunnel's end is recorded here as `connection.closed` with the same `upgrade`,
//! the bytes each way and the tunnel's lifetime.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::context::Context;
use super::error::Side;
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
    let mut client = Counted::new(TokioIo::new(client), Side::Client);
    let mut upstream = Counted::new(TokioIo::new(upstream), Side::Upstream);
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
    error: Option<String>,
}

impl<T> Counted<T> {
    fn new(io: T, side: Side) -> Counted<T> {
        Counted {
            io,
            side,
            written: 0,
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
