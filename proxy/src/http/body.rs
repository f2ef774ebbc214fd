//! Bodies that pass frames through untouched while capturing and counting them.
//!
//! [`RequestBody`] wraps the client's body on its way to the target, [`ResponseBody`] the
//! target's body on its way back. Each forwards every frame as it arrives (no buffering; data
//! frames are the same `Bytes`), keeps capped clones, and reports its end, failure or early
//! drop to the [`Exchange`] exactly once.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::capture::Capture;
use super::error::{describe, Side};
use super::exchange::{Exchange, RequestOutcome, ResponseOutcome};

/// A body stream failed; `side` says whose stream it was.
#[derive(Debug)]
pub(crate) struct BodyError {
    pub(crate) side: Side,
    pub(crate) source: hyper::Error,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.side {
            Side::Client => write!(f, "reading the client's request body failed"),
            _ => write!(f, "reading the target's response body failed"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The client's request body on its way to the target.
pub(crate) struct RequestBody {
    inner: Incoming,
    capture: Capture,
    exchange: Option<Arc<Exchange>>,
}

impl RequestBody {
    /// Wraps the client's body. An empty body is reported finished at once.
    pub(crate) fn new(inner: Incoming, limit: usize, exchange: Arc<Exchange>) -> RequestBody {
        let mut body = RequestBody {
            inner,
            capture: Capture::new(limit),
            exchange: Some(exchange),
        };
        if body.inner.is_end_stream() {
            body.finish(None);
        }
        body
    }

    fn finish(&mut self, error: Option<String>) {
        if let Some(exchange) = self.exchange.take() {
            exchange.finish_request(RequestOutcome {
                body: std::mem::take(&mut self.capture),
                error,
            });
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.capture.push(data);
                }
                if this.inner.is_end_stream() {
                    this.finish(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(source)) => {
                this.finish(Some(format!(
                    "client: the request body broke off after {} bytes: {}",
                    this.capture.total(),
                    describe(&source)
                )));
                Poll::Ready(Some(Err(BodyError {
                    side: Side::Client,
                    source,
                })))
            }
            None => {
                this.finish(None);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // Not read to the end: the target answered early or the exchange failed; the response
        // side carries the reason if there is one.
        self.finish(None);
    }
}

/// The target's response head, kept until the response body ends.
struct PendingResponse {
    exchange: Arc<Exchange>,
    status: StatusCode,
    headers: HeaderMap,
    latency: Duration,
}

/// The target's response body on its way to the client.
pub(crate) struct ResponseBody {
    inner: Incoming,
    capture: Capture,
    pending: Option<PendingResponse>,
}

impl ResponseBody {
    /// Wraps the target's body; `headers` are the forwarded response headers to record.
    pub(crate) fn new(
        inner: Incoming,
        limit: usize,
        exchange: Arc<Exchange>,
        status: StatusCode,
        headers: HeaderMap,
        latency: Duration,
    ) -> ResponseBody {
        ResponseBody {
            inner,
            capture: Capture::new(limit),
            pending: Some(PendingResponse {
                exchange,
                status,
                headers,
                latency,
            }),
        }
    }

    fn finish(&mut self, error: Option<String>) {
        if let Some(pending) = self.pending.take() {
            let duration = pending.exchange.elapsed();
            pending.exchange.finish_response(ResponseOutcome {
                status: pending.status.as_u16(),
                headers: pending.headers,
                body: std::mem::take(&mut self.capture),
                latency: pending.latency,
                duration,
                error,
                upgrade: None,
            });
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.capture.push(data);
                }
                if this.inner.is_end_stream() {
                    this.finish(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(source)) => {
                this.finish(Some(format!(
                    "upstream: the response body broke off after {} bytes: {}",
                    this.capture.total(),
                    describe(&source)
                )));
                Poll::Ready(Some(Err(BodyError {
                    side: Side::Upstream,
                    source,
                })))
            }
            None => {
                this.finish(None);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.pending.is_none() || self.inner.is_end_stream() {
            self.finish(None);
            return;
        }
        let delivered = self.capture.total();
        let shutting_down = self
            .pending
            .as_ref()
            .is_some_and(|p| p.exchange.shutting_down());
        self.finish(Some(if shutting_down {
            format!("proxy: shut down after {delivered} bytes of the response body")
        } else {
            format!("client: the connection closed after {delivered} bytes of the response body")
        }));
    }
}

/// What the proxy answers with: the target's streamed body, or a body it made itself.
pub(crate) enum ProxyBody {
    /// The target's body.
    Stream(ResponseBody),
    /// A body generated by the proxy (error text), or nothing (`101`).
    Full(Option<Bytes>),
}

impl ProxyBody {
    /// No body.
    pub(crate) fn empty() -> ProxyBody {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut *self {
            ProxyBody::Stream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Stream(body) => body.is_end_stream(),
            ProxyBody::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Stream(body) => body.size_hint(),
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
