//! Idle HTTP/1.1 connections to the target, shared by all client connections of a proxy on the
//! raw path, as haproxy's `http-reuse` and Go's `ReverseProxy` share theirs.
//!
//! A client connection takes an upstream connection when a request arrives and parks it here
//! as soon as the response is done, so a thousand idle keep-alive clients hold no upstream
//! connection at all, and a client that opens a connection per request (a script calling
//! curl, a client without a session) reuses the upstream connection its predecessor left:
//! no new dial, no socket in `TIME_WAIT` on the target for every request.
//!
//! ```text
//! request ─► take: newest parked on this worker ─ live? ─► send ──► response done ─► park
//!                 └─ none (or all closed) ─► dial ──────────┘   └─ failed, closing ─► close
//! ```
//!
//! Each worker thread has its own shelf: a socket is only used on the event loop it is
//! registered with, and a worker never waits on another's lock (the lock is uncontended but
//! for the sweep). The newest connection is taken first, so a busy client keeps reusing the
//! one it just parked, and the oldest age out. A parked connection the target closed (or that
//! received bytes nobody asked for) is found out without a system call, from its readiness,
//! when it is taken and at each sweep. A connection the target closes just as it is taken is
//! the case the raw path already handles: a request sent whole is sent again over a fresh
//! connection when the write failed (the target cannot have read it), or when no answer came
//! and the request is safe to repeat (see `RequestHead::replayable`).
//!
//! Parked connections are closed after [`HttpSettings::pool_idle_timeout`] unused (checked
//! by the sweep the proxy's accept loop runs every [`Self::sweep_period`]) and when the proxy
//! has stopped; client connections stop parking them once it is shutting down.
//!
//! [`HttpSettings::pool_idle_timeout`]: super::HttpSettings::pool_idle_timeout

use std::io::ErrorKind;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::workers;

/// The longest time between two sweeps: a connection the target closed is closed on the
/// proxy's side within about this long too.
const MAX_SWEEP_PERIOD: Duration = Duration::from_secs(5);

/// One parked connection.
struct Parked {
    stream: TcpStream,
    since: Instant,
}

/// Idle upstream connections of one proxy, one shelf per worker thread and one for
/// connections served elsewhere.
pub(crate) struct IdleUpstreams {
    /// Oldest first on each shelf.
    shelves: Box<[Mutex<Vec<Parked>>]>,
    idle_timeout: Duration,
}

impl IdleUpstreams {
    /// No connection is kept for longer than `idle_timeout` unused; zero keeps none.
    pub(crate) fn new(idle_timeout: Duration) -> IdleUpstreams {
        IdleUpstreams {
            shelves: (0..=workers::count()).map(|_| Mutex::default()).collect(),
            idle_timeout,
        }
    }

    /// This thread's shelf: its worker's, or the last one off the workers.
    fn shelf(&self) -> &Mutex<Vec<Parked>> {
        let last = self.shelves.len() - 1;
        let index = workers::current().map_or(last, |index| index.min(last));
        &self.shelves[index]
    }

    /// Takes the most recently parked connection of this thread that is still open.
    pub(crate) fn take(&self) -> Option<TcpStream> {
        let mut closed = Vec::new();
        let taken = {
            let mut shelf = self.shelf().lock();
            loop {
                let parked = shelf.pop()?;
                if is_idle(&parked.stream) {
                    break Some(parked.stream);
                }
                closed.push(parked);
            }
        };
        drop(closed);
        taken
    }

    /// Parks `stream`, whose last exchange is complete with nothing unread, for the next
    /// request; closes it instead when the proxy keeps nothing.
    pub(crate) fn park(&self, stream: TcpStream) {
        if self.idle_timeout.is_zero() {
            return;
        }
        let parked = Parked {
            stream,
            since: Instant::now(),
        };
        self.shelf().lock().push(parked);
    }

    /// How often [`Self::sweep`] should run: often enough that a connection is closed within
    /// about one idle timeout of its last use, and within [`MAX_SWEEP_PERIOD`] of the
    /// target closing it. Never zero.
    pub(crate) fn sweep_period(&self) -> Duration {
        self.idle_timeout
            .min(MAX_SWEEP_PERIOD)
            .max(Duration::from_millis(1))
    }

    /// Closes the parked connections unused for the idle timeout and those the target has
    /// closed (or sent something unasked).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        for shelf in self.shelves.iter() {
            let closed: Vec<Parked> = {
                let mut shelf = shelf.lock();
                let (closed, kept) = std::mem::take(&mut *shelf).into_iter().partition(|parked| {
                    now.duration_since(parked.since) >= self.idle_timeout
                        || !is_idle(&parked.stream)
                });
                *shelf = kept;
                closed
            };
            // Closed outside the lock: a close is a system call or two.
            drop(closed);
        }
    }

    /// Closes every parked connection (the proxy has stopped).
    pub(crate) fn close_all(&self) {
        for shelf in self.shelves.iter() {
            let closed = std::mem::take(&mut *shelf.lock());
            drop(closed);
        }
    }

    /// How many connections are parked (tests).
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.shelves.iter().map(|shelf| shelf.lock().len()).sum()
    }
}

/// Whether a parked connection is still open with nothing to read. Tokio only reads the
/// socket when its event loop saw it become readable (the target closed it, or sent bytes
/// nobody asked for); otherwise this is a look at its readiness, with no system call.
fn is_idle(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(error) if error.kind() == ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// The newest live connection comes back first; closed ones are skipped and closed.
    #[tokio::test]
    async fn take_returns_the_newest_open_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdleUpstreams::new(Duration::from_secs(90));
        let (older, _older_peer) = pair(&listener).await;
        let (newer, newer_peer) = pair(&listener).await;
        let older_port = older.local_addr().unwrap().port();
        let newer_port = newer.local_addr().unwrap().port();
        pool.park(older);
        pool.park(newer);

        let taken = pool.take().expect("a parked connection");
        assert_eq!(taken.local_addr().unwrap().port(), newer_port);

        // The target closes the newer one (and the event loop sees it): the older one is
        // taken instead.
        drop(newer_peer);
        taken.readable().await.unwrap();
        pool.park(taken);
        let taken = pool.take().expect("a parked connection");
        assert_eq!(taken.local_addr().unwrap().port(), older_port);
        assert_eq!(pool.parked(), 0, "the closed connection was closed too");
        drop(taken);
        assert!(pool.take().is_none());
    }

    /// Bytes nobody asked for make a parked connection unusable.
    #[tokio::test]
    async fn a_connection_with_unsolicited_bytes_is_not_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdleUpstreams::new(Duration::from_secs(90));
        let (stream, mut peer) = pair(&listener).await;
        peer.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        stream.readable().await.unwrap();
        pool.park(stream);
        assert!(pool.take().is_none());
    }

    /// The sweep closes connections past the idle timeout and those the target closed, and
    /// keeps the rest.
    #[tokio::test(start_paused = true)]
    async fn the_sweep_closes_expired_and_closed_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdleUpstreams::new(Duration::from_secs(10));
        let (expiring, _p1) = pair(&listener).await;
        pool.park(expiring);
        tokio::time::advance(Duration::from_secs(6)).await;
        let (closing, closing_peer) = pair(&listener).await;
        let (kept, _p3) = pair(&listener).await;
        let kept_port = kept.local_addr().unwrap().port();
        drop(closing_peer);
        closing.readable().await.unwrap();
        pool.park(closing);
        pool.park(kept);
        tokio::time::advance(Duration::from_secs(5)).await;
        pool.sweep();
        let left: Vec<u16> = pool
            .shelf()
            .lock()
            .iter()
            .map(|p| p.stream.local_addr().unwrap().port())
            .collect();
        assert_eq!(left, vec![kept_port]);
    }

    #[tokio::test]
    async fn nothing_is_parked_with_no_idle_time_nor_kept_after_closing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = IdleUpstreams::new(Duration::ZERO);
        let (stream, _peer) = pair(&listener).await;
        pool.park(stream);
        assert_eq!(pool.parked(), 0);
        let pool = IdleUpstreams::new(Duration::from_secs(90));
        let (stream, _peer) = pair(&listener).await;
        pool.park(stream);
        pool.close_all();
        assert_eq!(pool.parked(), 0);
    }
}
