//! Bodies that pass frames through untouched while capturing and counting them.
//!
//! [`RequestBody`] wraps the client's body on its way to the target, [`ResponseBody`] the
//! target's body on its way back. Each forwards every frame as it arrives (no buffering; data
//! frames are the same `Bytes`), keeps capped clones, and reports its end, failure or early
//! drop to the [`Exchange`] exactly once.
//!
//! A gRPC response that breaks off (the target resets the stream or drops the connection)
//! ends with trailers carrying `grpc-status: 14` instead of a reset, so the client gets a
//! status naming the cause (see [`Failure::grpc_trailers`]).

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
use super::error::{describe, Failure, Side};
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

/// A frame to forward (or the end of the stream), and the outcome to report if the stream
/// just ended or failed.
type Polled = (
    Option<Result<Frame<Bytes>, BodyError>>,
    Option<Option<String>>,
);

/// Polls one frame of `inner`, keeping a capped clone of its data. Returns the frame for the
/// caller to forward and, when the stream has just ended or failed, `Some(error)`: the outcome
/// to report (`what` names the stream in the error text, e.g. `client: the request body`).
fn poll_observed(
    inner: &mut Incoming,
    capture: &mut Capture,
    trailers: Option<&mut Option<HeaderMap>>,
    cx: &mut TaskContext<'_>,
    side: Side,
    what: &str,
) -> Poll<Polled> {
    Poll::Ready(match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
        Some(Ok(frame)) => {
            if let Some(data) = frame.data_ref() {
                capture.push(data);
            } else if let (Some(kept), Some(sent)) = (trailers, frame.trailers_ref()) {
                *kept = Some(sent.clone());
            }
            // Trailers are a body's last frame, whether or not the stream says so yet (hyper's
            // HTTP/1.1 client does only when polled once more, which the server writing them
            // to the client never does).
            let end = (frame.is_trailers() || inner.is_end_stream()).then_some(None);
            (Some(Ok(frame)), end)
        }
        Some(Err(source)) => {
            let error = format!(
                "{what} broke off after {} bytes: {}",
                capture.total(),
                describe(&source)
            );
            (Some(Err(BodyError { side, source })), Some(Some(error)))
        }
        None => (None, Some(None)),
    })
}

/// The client's request body on its way to the target.
pub(crate) struct RequestBody {
    /// `None` for an empty body.
    inner: Option<Incoming>,
    capture: Capture,
    exchange: Option<Arc<Exchange>>,
}

impl RequestBody {
    /// Wraps the client's body. An empty body is reported finished at once.
    pub(crate) fn new(inner: Incoming, limit: usize, exchange: Arc<Exchange>) -> RequestBody {
        if inner.is_end_stream() {
            exchange.finish_request(RequestOutcome {
                body: Capture::new(limit),
                error: None,
            });
            return RequestBody::empty();
        }
        RequestBody {
            inner: Some(inner),
            capture: Capture::new(limit),
            exchange: Some(exchange),
        }
    }

    /// An empty body with nothing to report: what a request without a body is sent again
    /// with.
    pub(crate) fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            capture: Capture::new(0),
            exchange: None,
        }
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
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let (item, end) = ready!(poll_observed(
            inner,
            &mut this.capture,
            None,
            cx,
            Side::Client,
            "client: the request body",
        ));
        if let Some(error) = end {
            this.finish(error);
        }
        Poll::Ready(item)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), Incoming::size_hint)
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
    /// gRPC calls only. Boxed so that other bodies stay small.
    grpc: Option<Box<GrpcEnd>>,
}

/// How a gRPC response ended.
#[derive(Default)]
struct GrpcEnd {
    /// A copy of the trailers (gRPC status and trailing metadata).
    trailers: Option<HeaderMap>,
    /// The proxy ended the stream: the target broke it off and the client got a status.
    ended: bool,
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
            grpc: None,
        }
    }

    /// For a gRPC call: keeps a copy of the response trailers for the record, and ends a
    /// broken-off response with a gRPC status.
    pub(crate) fn grpc(mut self, grpc: bool) -> ResponseBody {
        self.grpc = grpc.then(Box::default);
        self
    }

    fn ended(&self) -> bool {
        self.grpc.as_ref().is_some_and(|grpc| grpc.ended)
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
                trailers: self.grpc.as_mut().and_then(|grpc| grpc.trailers.take()),
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
        if this.ended() {
            return Poll::Ready(None);
        }
        let trailers = this.grpc.as_mut().map(|grpc| &mut grpc.trailers);
        let (item, end) = ready!(poll_observed(
            &mut this.inner,
            &mut this.capture,
            trailers,
            cx,
            Side::Upstream,
            "upstream: the response body",
        ));
        if let (Some(Err(error)), Some(grpc)) = (&item, this.grpc.as_mut()) {
            // A gRPC client understands a status, where a reset leaves it guessing.
            let target = this.pending.as_ref().map_or("", |p| p.exchange.target());
            let failure = Failure::from_body(error, target, this.capture.total());
            let trailers = failure.grpc_trailers();
            grpc.trailers = Some(trailers.clone());
            grpc.ended = true;
            this.finish(Some(failure.event_error()));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if let Some(error) = end {
            this.finish(error);
        }
        Poll::Ready(item)
    }

    fn is_end_stream(&self) -> bool {
        self.ended() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.pending.is_none() || self.is_end_stream() {
            self.finish(None);
            return;
        }
        let delivered = self.capture.total();
        let shutting_down = self
            .pending
            .as_ref()
            .is_some_and(|p| p.exchange.shutting_down());
        if !shutting_down {
            if let Some(pending) = &self.pending {
                pending.exchange.client_gave_up();
            }
        }
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
