//! The one shared h2c (prior knowledge) connection to the target that every HTTP/2 request
//! hyper serves is multiplexed over: requests that came by `Upgrade: h2c`, and h2c
//! connections the [relay](super::h2_relay) left to hyper. Prior-knowledge h2c connections
//! normally go through the relay, each with its own connection to the target.
//!
//! ```text
//! request ─► slot: live connection? ─ yes ─► clone its SendRequest ─► new stream
//!                    └─ no ─► connect lock ─► dial, handshake, spawn ─► slot
//! ```
//!
//! A request costs one short lock and a `SendRequest` clone: no pool checkout, no key
//! lookup, no waiter bookkeeping. Only one connection is dialled at a time; requests that
//! arrive meanwhile wait for it. A connection that has closed is replaced on the next
//! request, and a request it never sent is sent once more over a fresh connection (as a
//! pool's retry of canceled requests would). A connection unused for
//! [`HttpSettings::pool_idle_timeout`](super::HttpSettings::pool_idle_timeout) (checked
//! every that long, so it lives between one and two timeouts) is retired: requests in
//! flight on it finish, then it closes.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;

use super::body::RequestBody;
use super::upstream::{connect, SendError};

/// The live connection, if any, shared by all requests.
struct Slot {
    sender: http2::SendRequest<RequestBody>,
    /// Which connection this is, so that a stale failure does not retire its successor.
    id: u64,
    /// Whether a request used it since the idle check last looked.
    used: bool,
}

#[derive(Default)]
struct Shared {
    slot: Option<Slot>,
    /// Connections opened so far (the next one's id).
    opened: u64,
}

/// The proxy's h2c connection to its target, opened on the first HTTP/2 request.
pub(crate) struct Http2Upstream {
    target: Arc<str>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    shared: Arc<Mutex<Shared>>,
    /// Held while dialling, so that concurrent requests open one connection, not many.
    connecting: tokio::sync::Mutex<()>,
}

impl Http2Upstream {
    /// Nothing connects until the first request.
    pub(crate) fn new(
        target: Arc<str>,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Http2Upstream {
        Http2Upstream {
            target,
            connect_timeout,
            idle_timeout,
            shared: Arc::default(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends `request` (absolute URI, or authority form for `CONNECT`) as a new stream and
    /// waits for the response head, at most `limit` (connecting included) if set.
    ///
    /// Kept small: this future is part of every request's task, which is moved in memory as
    /// it is spawned and polled, so dialling is boxed away in [`Http2Upstream::send_fresh`].
    pub(crate) async fn send(
        &self,
        request: Request<RequestBody>,
        limit: Option<Duration>,
    ) -> Result<Response<Incoming>, SendError> {
        let Some((mut sender, id)) = self.current() else {
            return Box::pin(within(limit, self.send_fresh(request))).await;
        };
        let sent = sender.try_send_request(request);
        let sent = match limit {
            None => sent.await,
            Some(limit) => tokio::time::timeout(limit, sent)
                .await
                .map_err(|_| SendError::Timeout(limit))?,
        };
        match sent {
            Ok(response) => Ok(response),
            Err(mut error) => match error.take_message() {
                // The connection closed before the request went out: once more over a fresh
                // one.
                Some(unsent) => {
                    self.retire(id);
                    Box::pin(within(limit, self.send_fresh(unsent))).await
                }
                None => Err(SendError::Http2(error.into_error())),
            },
        }
    }

    /// Sends `request` over a connection opened for it (or by another request meanwhile).
    async fn send_fresh(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let (mut sender, _) = self.open().await?;
        sender
            .try_send_request(request)
            .await
            .map_err(|error| SendError::Http2(error.into_error()))
    }

    /// The live connection's sender, marked used; `None` when there is none or it closed.
    fn current(&self) -> Option<(http2::SendRequest<RequestBody>, u64)> {
        let mut shared = self.shared.lock();
        let slot = shared.slot.as_mut()?;
        if slot.sender.is_closed() {
            shared.slot = None;
            return None;
        }
        slot.used = true;
        Some((slot.sender.clone(), slot.id))
    }

    /// Forgets connection `id` if it is still the live one.
    fn retire(&self, id: u64) {
        retire(&self.shared, id);
    }

    /// The live connection once one is open: dials one unless another request did so while
    /// this one waited.
    async fn open(&self) -> Result<(http2::SendRequest<RequestBody>, u64), SendError> {
        let _dialling = self.connecting.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let stream = connect(&self.target, self.connect_timeout)
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(stream)
            .await
            .map_err(SendError::Http2)?;
        let id = {
            let mut shared = self.shared.lock();
            shared.opened += 1;
            let id = shared.opened;
            shared.slot = Some(Slot {
                sender: sender.clone(),
                id,
                used: true,
            });
            id
        };
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(run_connection(connection, shared, id, self.idle_timeout));
        Ok((sender, id))
    }
}

type Connection =
    http2::Connection<hyper_util::rt::TokioIo<tokio::net::TcpStream>, RequestBody, TokioExecutor>;

/// Drives connection `id` to its end, retiring it once it sat unused for an idle check
/// period. It ends when the target closes it, or when it is retired (or the proxy gone) and
/// its last stream is done.
async fn run_connection(
    connection: Connection,
    shared: Weak<Mutex<Shared>>,
    id: u64,
    idle_timeout: Duration,
) {
    tokio::pin!(connection);
    let mut live = true;
    loop {
        tokio::select! {
            biased;
            // Errors reach the requests in flight; the next request dials anew.
            _ = connection.as_mut() => break,
            _ = tokio::time::sleep(idle_timeout), if live => {
                live = shared.upgrade().is_some_and(|shared| keep_if_used(&shared, id));
            }
        }
    }
    if let Some(shared) = shared.upgrade() {
        retire(&shared, id);
    }
}

/// Whether connection `id` is still the live one and was used since the last check (which
/// this check resets); if it is live but unused, it is retired.
fn keep_if_used(shared: &Mutex<Shared>, id: u64) -> bool {
    let mut shared = shared.lock();
    match shared.slot.as_mut() {
        Some(slot) if slot.id == id && slot.used => {
            slot.used = false;
            true
        }
        Some(slot) if slot.id == id => {
            shared.slot = None;
            false
        }
        _ => false,
    }
}

/// `response` within `limit`, if set.
async fn within<F>(limit: Option<Duration>, response: F) -> Result<Response<Incoming>, SendError>
where
    F: Future<Output = Result<Response<Incoming>, SendError>>,
{
    match limit {
        Some(limit) => tokio::time::timeout(limit, response)
            .await
            .unwrap_or(Err(SendError::Timeout(limit))),
        None => response.await,
    }
}

fn retire(shared: &Mutex<Shared>, id: u64) {
    let mut shared = shared.lock();
    if shared.slot.as_ref().is_some_and(|slot| slot.id == id) {
        shared.slot = None;
    }
}
