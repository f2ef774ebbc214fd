//! One request/response exchange in flight, and the moment it becomes a record.
//!
//! An exchange has two halves that end independently: the request body (read by the upstream
//! client) and the response (its body read by the server, or a response the proxy made). Each
//! half reports its outcome once; whichever reports second hands the finished
//! [`HttpRecord`](super::record::HttpRecord) to the observer. Outcomes are reported from `Drop`
//! too, so an exchange that is abandoned half-way (client gone, proxy shut down) is still
//! recorded, exactly once, and nothing ever waits for observation.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Uri, Version};
use parking_lot::Mutex;
use rig_types::Timestamp;
use tokio::time::Instant;

use super::capture::Capture;
use super::context::Context;
use super::record::HttpRecord;
use crate::grpc::GrpcRecord;
use crate::observe::Observation;

/// What is known when the request arrives.
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) started_at: Timestamp,
    pub(crate) probe: bool,
    /// A gRPC call (`application/grpc`), recorded as `grpc.call.completed`.
    pub(crate) grpc: bool,
    /// The request headers as forwarded to the target.
    pub(crate) headers: HeaderMap,
}

/// How the request body ended.
pub(crate) struct RequestOutcome {
    pub(crate) body: Capture,
    pub(crate) error: Option<String>,
}

/// How the response ended.
pub(crate) struct ResponseOutcome {
    /// The status the client was sent (`0` when it got none).
    pub(crate) status: u16,
    /// The response headers as forwarded to the client.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Capture,
    /// Arrival to response headers.
    pub(crate) latency: Duration,
    /// Arrival to the end of the response body.
    pub(crate) duration: Duration,
    pub(crate) error: Option<String>,
    /// The protocol switched to, for `101 Switching Protocols`.
    pub(crate) upgrade: Option<String>,
    /// The response trailers, kept for gRPC calls.
    pub(crate) trailers: Option<HeaderMap>,
}

#[derive(Default)]
struct Halves {
    head: Option<RequestHead>,
    request: Option<RequestOutcome>,
    response: Option<ResponseOutcome>,
    /// The client gave up the response (closed the connection, or reset the HTTP/2 stream)
    /// before it ended.
    client_gone: bool,
}

/// HTTP/2's `CANCEL` error code: what a gRPC client resets a call it gives up with.
const CANCEL: u32 = 0x8;

/// The shared state of one exchange.
pub(crate) struct Exchange {
    ctx: Arc<Context>,
    started: Instant,
    halves: Mutex<Halves>,
}

impl Exchange {
    /// Starts an exchange that arrived at `started`.
    pub(crate) fn new(ctx: Arc<Context>, started: Instant, head: RequestHead) -> Arc<Exchange> {
        Arc::new(Exchange {
            ctx,
            started,
            halves: Mutex::new(Halves {
                head: Some(head),
                ..Halves::default()
            }),
        })
    }

    /// Time since the request arrived.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The proxy's target, `host:port`, for error texts.
    pub(crate) fn target(&self) -> &str {
        &self.ctx.target
    }

    /// Whether the proxy is shutting down (to blame a cut-off exchange on the right side).
    pub(crate) fn shutting_down(&self) -> bool {
        self.ctx.cancel.is_cancelled()
    }

    /// Notes that the client gave up the response before it ended (before
    /// [`Exchange::finish_response`] reports the half): a gRPC call is then recorded with the
    /// status its client saw, as one reset with `CANCEL`. hyper does not say how a client
    /// ended a stream; gRPC clients give calls up with `CANCEL`.
    pub(crate) fn client_gave_up(&self) {
        self.halves.lock().client_gone = true;
    }

    /// Reports the request half; records the exchange if the response half is done.
    pub(crate) fn finish_request(&self, outcome: RequestOutcome) {
        let record = {
            let mut halves = self.halves.lock();
            if halves.request.is_some() {
                return;
            }
            halves.request = Some(outcome);
            self.take_record(&mut halves)
        };
        self.emit(record);
    }

    /// Reports the response half; records the exchange if the request half is done.
    pub(crate) fn finish_response(&self, outcome: ResponseOutcome) {
        let record = {
            let mut halves = self.halves.lock();
            if halves.response.is_some() {
                return;
            }
            halves.response = Some(outcome);
            self.take_record(&mut halves)
        };
        self.emit(record);
    }

    fn take_record(&self, halves: &mut Halves) -> Option<Observation> {
        if halves.request.is_none() || halves.response.is_none() {
            return None;
        }
        let head = halves.head.take()?;
        let request = halves.request.take()?;
        let response = halves.response.take()?;
        let redact = self.ctx.redact.clone();
        Some(if head.grpc {
            Box::new(GrpcRecord {
                head,
                request,
                response,
                redact,
                grpc: self.ctx.grpc.clone(),
                client_reset: halves.client_gone.then_some(CANCEL),
            })
        } else {
            Box::new(HttpRecord {
                head,
                request,
                response,
                redact,
            })
        })
    }

    fn emit(&self, record: Option<Observation>) {
        if let Some(record) = record {
            self.ctx.observer.record(record);
        }
    }
}

/// Reports the response half if the request handler is dropped before it produced a
/// response: the client went away (or the proxy shut down) while the target was answering.
pub(crate) struct ResponseGuard {
    exchange: Option<Arc<Exchange>>,
}

impl ResponseGuard {
    /// Guards `exchange` until [`ResponseGuard::disarm`].
    pub(crate) fn new(exchange: &Arc<Exchange>) -> ResponseGuard {
        ResponseGuard {
            exchange: Some(exchange.clone()),
        }
    }

    /// The response half is now reported elsewhere.
    pub(crate) fn disarm(&mut self) {
        self.exchange = None;
    }
}

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        let Some(exchange) = self.exchange.take() else {
            return;
        };
        let elapsed = exchange.elapsed();
        let error = if exchange.shutting_down() {
            "proxy: shut down before the target responded"
        } else {
            exchange.client_gave_up();
            "client: the connection closed before the target responded"
        };
        exchange.finish_response(ResponseOutcome {
            status: 0,
            headers: HeaderMap::new(),
            body: Capture::default(),
            latency: elapsed,
            duration: elapsed,
            error: Some(error.to_string()),
            upgrade: None,
            trailers: None,
        });
    }
}
