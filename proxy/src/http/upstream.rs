//! The client side: connections to the one target of a proxy.
//!
//! Requests on the raw HTTP/1.1 path take an idle upstream connection shared by the proxy's
//! client connections ([`IdleUpstreams`]) and park it again when their response is done.
//! Requests hyper serves over HTTP/1.x (upgrades, HTTP/1.0, unusual requests) get a
//! dedicated upstream connection per client connection ([`Http1Upstream`]): opened on the
//! first request, reused for the connection's following requests and reopened when the
//! target closed it. HTTP/2 clients share one h2c (prior knowledge) connection multiplexing
//! their streams ([`Http2Upstream`]; gRPC needs HTTP/2 end to end, with trailers).
//!
//! The proxy always dials the target, whatever authority the request names, so the request's
//! `Host`/`:authority` reaches the service exactly as the client sent it.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::body::RequestBody;
use super::http2_upstream::Http2Upstream;
use super::idle_upstreams::IdleUpstreams;
use super::raw::replayable;
use super::settings::HttpSettings;

/// Why no upstream response arrived.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The TCP connection to the target could not be established.
    Connect(io::Error),
    /// The h2c connection failed: handshaking, writing the request or reading the response
    /// head.
    Http2(hyper::Error),
    /// The HTTP/1.1 connection failed: handshaking, writing the request or reading the
    /// response head.
    Http1(hyper::Error),
    /// The response headers did not arrive in time.
    Timeout(Duration),
}

/// Shared client state for the target: the idle HTTP/1.1 connections, the h2c connection
/// and the dialing settings.
pub(crate) struct Upstream {
    target: Arc<str>,
    connect_timeout: Duration,
    http2: Http2Upstream,
    /// Parked connections of the raw path.
    pub(crate) idle: IdleUpstreams,
    response_timeout: Option<Duration>,
}

impl Upstream {
    /// Nothing connects until the first request.
    pub(crate) fn new(target: Arc<str>, settings: &HttpSettings) -> Upstream {
        Upstream {
            http2: Http2Upstream::new(
                target.clone(),
                settings.connect_timeout,
                settings.pool_idle_timeout,
            ),
            idle: IdleUpstreams::new(settings.pool_idle_timeout),
            target,
            connect_timeout: settings.connect_timeout,
            response_timeout: settings.response_timeout,
        }
    }

    /// Sends an HTTP/2 request (absolute-form URI, authority form for `CONNECT`) over the
    /// shared h2c connection and waits for the response head, within the response timeout if
    /// one is set.
    ///
    /// Not an `async fn` wrapping another: each such layer would store the request and the
    /// inner future again in every request's task.
    pub(crate) fn send_http2(
        &self,
        request: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, SendError>> + '_ {
        self.http2.send(request, self.response_timeout)
    }

    /// Sends an HTTP/1.1 request (origin- or authority-form URI, `Host` set) over the client
    /// connection's own upstream connection, opening it first if needed, and waits for the
    /// response head, within the response timeout if one is set.
    pub(crate) async fn send_http1(
        &self,
        connection: &Http1Upstream,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        self.within_timeout(Box::pin(self.send_http1_now(connection, request)))
            .await
    }

    async fn send_http1_now(
        &self,
        connection: &Http1Upstream,
        mut request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        // A reused connection may turn out closed by the target. A request it never wrote is
        // sent once more over a fresh connection; so is one it wrote as the target closed the
        // connection, if repeating it is safe.
        let mut reused = true;
        loop {
            let mut sender = match connection.take_ready().await {
                Some(sender) => sender,
                None => {
                    reused = false;
                    self.open_http1().await?
                }
            };
            let again = if reused { resendable(&request) } else { None };
            let response = sender.try_send_request(request);
            connection.put(sender);
            match response.await {
                Ok(response) => return Ok(response),
                Err(mut error) => match (error.take_message(), again) {
                    (Some(unsent), _) if reused => {
                        reused = false;
                        request = unsent;
                    }
                    (None, Some(again)) if closed_by_target(error.error()) => {
                        reused = false;
                        request = again;
                    }
                    _ => return Err(SendError::Http1(error.into_error())),
                },
            }
        }
    }

    /// Dials the target and hands the new HTTP/1.1 connection to its own task.
    async fn open_http1(&self) -> Result<http1::SendRequest<RequestBody>, SendError> {
        let stream = connect(&self.target, self.connect_timeout)
            .await
            .map_err(SendError::Connect)?;
        // As leniently as the raw path reads responses (`raw::parse::response_parser`).
        let (sender, connection) = http1::Builder::new()
            .allow_obsolete_multiline_headers_in_responses(true)
            .allow_spaces_after_header_name_in_responses(true)
            .max_headers(crate::http::raw::MAX_RESPONSE_HEADERS)
            .handshake(stream)
            .await
            .map_err(SendError::Http1)?;
        // The task ends when the target closes the connection, or after its last request
        // once the client connection (which holds the sender) is gone.
        tokio::spawn(connection.with_upgrades());
        Ok(sender)
    }

    /// Dials the target for the raw HTTP/1.1 path, within the connect timeout, with
    /// `TCP_NODELAY`.
    pub(crate) async fn connect_raw(&self) -> io::Result<TcpStream> {
        connect(&self.target, self.connect_timeout)
            .await
            .map(TokioIo::into_inner)
    }

    /// How long the target may take to send its response head, if limited.
    pub(crate) fn response_timeout(&self) -> Option<Duration> {
        self.response_timeout
    }

    async fn within_timeout<F>(&self, response: F) -> Result<Response<Incoming>, SendError>
    where
        F: Future<Output = Result<Response<Incoming>, SendError>>,
    {
        match self.response_timeout {
            Some(limit) => tokio::time::timeout(limit, response)
                .await
                .unwrap_or(Err(SendError::Timeout(limit))),
            None => response.await,
        }
    }
}

/// The upstream HTTP/1.1 connection of one client connection, if open.
#[derive(Default)]
pub(crate) struct Http1Upstream {
    sender: Mutex<Option<http1::SendRequest<RequestBody>>>,
}

impl Http1Upstream {
    /// Takes the connection once it can send a request; `None` when there is none or it
    /// closed.
    async fn take_ready(&self) -> Option<http1::SendRequest<RequestBody>> {
        let mut sender = self.sender.lock().take()?;
        sender.ready().await.ok()?;
        Some(sender)
    }

    /// Keeps the connection for the next request, unless one was kept meanwhile.
    fn put(&self, sender: http1::SendRequest<RequestBody>) {
        let mut slot = self.sender.lock();
        if slot.is_none() {
            *slot = Some(sender);
        }
    }
}

/// A copy of `request` to send again if the target closes the connection before answering
/// it: only for a request without a body whose method is safe (`GET`, `HEAD`, `OPTIONS`,
/// `TRACE`) or that carries an `Idempotency-Key` (or `X-Idempotency-Key`), as the raw path
/// decides (`raw::parse::RequestHead::replayable`). A body has streamed away by then.
fn resendable(request: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let headers = request.headers();
    let keyed =
        headers.contains_key("idempotency-key") || headers.contains_key("x-idempotency-key");
    if !request.body().is_end_stream() || !replayable(request.method().as_str(), keyed) {
        return None;
    }
    let mut again = Request::new(RequestBody::empty());
    *again.method_mut() = request.method().clone();
    *again.uri_mut() = request.uri().clone();
    *again.version_mut() = request.version();
    *again.headers_mut() = request.headers().clone();
    Some(again)
}

/// Whether `error` says the target closed or reset the connection before answering (and not,
/// say, that it answered with something unreadable).
fn closed_by_target(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

/// Dials `target` within `limit`, with `TCP_NODELAY`.
pub(crate) async fn connect(target: &str, limit: Duration) -> io::Result<TokioIo<TcpStream>> {
    let stream = tokio::time::timeout(limit, TcpStream::connect(target))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TCP connection within {limit:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    crate::pacing::unpace(&stream);
    Ok(TokioIo::new(stream))
}
