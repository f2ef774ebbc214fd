//! The streams of one relayed connection, from the request `HEADERS` to the end of both
//! directions: what is captured and timed for each, and the record it becomes.
//!
//! Both directions of the relay report here (under one short lock per chunk of frames); a
//! stream is recorded when its request and its response have both ended, or when the
//! connection ends with it still open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use rig_types::Timestamp;
use tokio::time::Instant;

use super::fields::Fields;
use super::record::RelayRecord;
use crate::http::capture::Capture;
use crate::http::context::Context;
use crate::http::raw::Answer;

/// One stream in flight.
struct Stream {
    started: Instant,
    started_at: Timestamp,
    request_fields: Fields,
    grpc: bool,
    request_body: Capture,
    request_done: bool,
    request_error: Option<String>,
    answer: Answer<Fields>,
    latency: Option<Duration>,
    /// Arrival to the end of the response.
    duration: Option<Duration>,
    response_body: Capture,
    trailers: Option<Fields>,
    /// Trailers the proxy sent in place of the target's (a gRPC call that broke off).
    made_trailers: Option<HeaderMap>,
    response_done: bool,
    response_error: Option<String>,
    /// The error code of the client's `RST_STREAM`, when it reset the stream before the
    /// response ended.
    client_reset: Option<u32>,
}

impl Stream {
    fn answered(&self) -> bool {
        !matches!(self.answer, Answer::Nothing)
    }

    /// Ends the response half now, with `error` if it did not end well.
    fn end_response(&mut self, error: Option<String>) {
        if !self.response_done {
            self.response_done = true;
            self.response_error = self.response_error.take().or(error);
            let elapsed = self.started.elapsed();
            self.latency.get_or_insert(elapsed);
            self.duration = Some(elapsed);
        }
    }
}

/// Why a stream still open when the connection ends did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cutoff {
    /// The client closed its connection.
    ClientGone,
    /// The proxy shut down.
    Shutdown,
    /// The client announced a frame larger than the target accepts; the proxy closed the
    /// connection (the target would have, with `FRAME_SIZE_ERROR`).
    ClientFrameTooLarge,
    /// The target announced a frame larger than the client accepts; the proxy closed the
    /// connection.
    TargetFrameTooLarge,
}

/// The streams of one connection.
pub(super) struct Streams {
    ctx: Arc<Context>,
    open: HashMap<u32, Stream>,
    /// The highest stream id the client opened.
    last_client_stream: u32,
    /// The client has stopped sending (closed its side of the connection).
    client_closed: bool,
    /// The last stream id of the `GOAWAY` the target sent, if it sent one: streams above it
    /// were not processed, as the client was told.
    target_goaway: Option<u32>,
}

impl Streams {
    pub(super) fn new(ctx: Arc<Context>) -> Streams {
        Streams {
            ctx,
            open: HashMap::new(),
            last_client_stream: 0,
            client_closed: false,
            target_goaway: None,
        }
    }

    /// The proxy's target, `host:port`, for error texts.
    pub(super) fn target(&self) -> Arc<str> {
        self.ctx.target.clone()
    }

    /// A request head (or, for a stream already open, its trailers) from the client. A
    /// header block on a stream opened before but no longer open (trailers that come after
    /// the exchange was settled, say when the target answered and reset the stream first)
    /// is passed on but opens no new record. (Stream 0, which is no stream, is recorded: the
    /// target refuses the connection for it.)
    pub(super) fn request_headers(&mut self, id: u32, fields: Fields, grpc: bool, end: bool) {
        let ctx = &self.ctx;
        if id != 0 && id <= self.last_client_stream && !self.open.contains_key(&id) {
            return;
        }
        self.last_client_stream = self.last_client_stream.max(id);
        let stream = self.open.entry(id).or_insert_with(|| {
            let limit = if grpc {
                ctx.grpc.capture_limit
            } else {
                ctx.capture_limit
            };
            Stream {
                started: Instant::now(),
                started_at: Timestamp::now(),
                request_fields: fields,
                grpc,
                request_body: Capture::new(limit),
                request_done: false,
                request_error: None,
                answer: Answer::Nothing,
                latency: None,
                duration: None,
                response_body: Capture::new(limit),
                trailers: None,
                made_trailers: None,
                response_done: false,
                response_error: None,
                client_reset: None,
            }
        });
        if end {
            stream.request_done = true;
        }
        self.settle(id);
    }

    /// The request head of stream `id` could not be read whole: `error` says why.
    pub(super) fn request_problem(&mut self, id: u32, error: String) {
        if let Some(stream) = self.open.get_mut(&id) {
            stream.request_error.get_or_insert(error);
        }
    }

    /// Notes that the client stopped sending.
    pub(super) fn client_closed(&mut self) {
        self.client_closed = true;
    }

    /// Whether the client stopped sending.
    pub(super) fn is_client_closed(&self) -> bool {
        self.client_closed
    }

    /// Notes the target's `GOAWAY` (passed on to the client) and its last stream id.
    pub(super) fn target_goaway(&mut self, last_stream: u32) {
        let last = self
            .target_goaway
            .map_or(last_stream, |l| l.min(last_stream));
        self.target_goaway = Some(last);
    }

    /// The last stream id of the target's `GOAWAY`, if it sent one.
    pub(super) fn target_goaway_last(&self) -> Option<u32> {
        self.target_goaway
    }

    /// The highest stream id the client opened (for `GOAWAY`).
    pub(super) fn last_client_stream(&self) -> u32 {
        self.last_client_stream
    }

    /// Request body bytes from the client.
    pub(super) fn request_data(&mut self, id: u32, data: Option<&Bytes>, len: usize, end: bool) {
        let Some(stream) = self.open.get_mut(&id) else {
            return;
        };
        match data {
            Some(data) => stream.request_body.push(data),
            None => stream.request_body.count(len),
        }
        if end {
            stream.request_done = true;
            self.settle(id);
        }
    }

    /// Whether the request body of stream `id` is still being captured (its bytes are
    /// wanted as a slice).
    pub(super) fn wants_request_bytes(&self, id: u32) -> bool {
        self.open
            .get(&id)
            .is_some_and(|s| s.request_body.has_room())
    }

    /// Whether the response body of stream `id` is still being captured.
    pub(super) fn wants_response_bytes(&self, id: u32) -> bool {
        self.open
            .get(&id)
            .is_some_and(|s| s.response_body.has_room())
    }

    /// A response head from the target: informational (`1xx`, passed on, not recorded), final,
    /// or trailers after the final one.
    pub(super) fn response_headers(&mut self, id: u32, fields: Fields, status: u16, end: bool) {
        let Some(stream) = self.open.get_mut(&id) else {
            return;
        };
        if stream.answered() {
            stream.trailers = Some(fields);
        } else if (100..200).contains(&status) {
            return;
        } else {
            stream.answer = Answer::Forwarded(fields);
            stream.latency = Some(stream.started.elapsed());
        }
        if end {
            stream.end_response(None);
            self.settle(id);
        }
    }

    /// Response body bytes from the target.
    pub(super) fn response_data(&mut self, id: u32, data: Option<&Bytes>, len: usize, end: bool) {
        let Some(stream) = self.open.get_mut(&id) else {
            return;
        };
        match data {
            Some(data) => stream.response_body.push(data),
            None => stream.response_body.count(len),
        }
        if end {
            stream.end_response(None);
            self.settle(id);
        }
    }

    /// The target reset stream `id`: if its response had already ended, that only asks the
    /// client to stop sending the request (RFC 9113 §8.1, usually with `NO_ERROR`), the
    /// exchange is complete and `true` is returned; otherwise `false`, and nothing changes.
    pub(super) fn target_reset_after_response(&mut self, id: u32) -> bool {
        let Some(stream) = self.open.get_mut(&id) else {
            return false;
        };
        if !stream.response_done {
            return false;
        }
        stream.request_done = true;
        self.settle(id);
        true
    }

    /// Whether stream `id` is open and its response head has not come yet.
    pub(super) fn awaits_response(&self, id: u32) -> bool {
        self.open.get(&id).is_some_and(|s| !s.answered())
    }

    /// Whether stream `id` is open and the client has not finished its request.
    pub(super) fn awaits_request_end(&self, id: u32) -> bool {
        self.open.get(&id).is_some_and(|s| !s.request_done)
    }

    /// Whether stream `id` is a gRPC call.
    pub(super) fn is_grpc(&self, id: u32) -> bool {
        self.open.get(&id).is_some_and(|s| s.grpc)
    }

    /// Bytes of response body relayed on stream `id` so far.
    pub(super) fn response_bytes(&self, id: u32) -> u64 {
        self.open.get(&id).map_or(0, |s| s.response_body.total())
    }

    /// The client reset stream `id`.
    pub(super) fn client_reset(&mut self, id: u32, code: u32) {
        let Some(stream) = self.open.get_mut(&id) else {
            return;
        };
        let why = format!("client: reset the stream ({})", error_code_name(code));
        if !stream.response_done {
            stream.client_reset = Some(code);
        }
        if !stream.request_done {
            stream.request_done = true;
            stream.request_error = Some(why.clone());
        }
        stream.end_response(Some(why));
        self.settle(id);
    }

    /// The response of stream `id` ended without a proper end: `error` says how. The proxy
    /// may have answered the client itself (`made`: status, headers and body).
    pub(super) fn fail_response(
        &mut self,
        id: u32,
        error: String,
        made: Option<(u16, HeaderMap, Bytes)>,
    ) {
        let Some(stream) = self.open.get_mut(&id) else {
            return;
        };
        if let Some((status, headers, body)) = made {
            stream.answer = Answer::Made(status, headers);
            stream.response_body = Capture::new(usize::MAX);
            stream.response_body.push(&body);
        }
        stream.end_response(Some(error));
        // The target will not read the rest of the request.
        stream.request_done = true;
        self.settle(id);
    }

    /// The response of gRPC call `id` broke off after its head: the proxy ended it with
    /// `trailers` (the call's failure status); `error` says what happened.
    pub(super) fn fail_with_trailers(&mut self, id: u32, error: String, trailers: HeaderMap) {
        if let Some(stream) = self.open.get_mut(&id) {
            stream.made_trailers = Some(trailers);
        }
        self.fail_response(id, error, None);
    }

    /// Streams of the connection whose response has not ended (in no particular order).
    pub(super) fn unfinished(&self) -> Vec<u32> {
        self.open
            .iter()
            .filter(|(_, s)| !s.response_done)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Records every stream still open as cut off.
    pub(super) fn cut_off(&mut self, why: Cutoff) {
        let ids: Vec<u32> = self.open.keys().copied().collect();
        for id in ids {
            let Some(stream) = self.open.get_mut(&id) else {
                continue;
            };
            let error = match (why, stream.answered()) {
                (Cutoff::Shutdown, false) => {
                    "proxy: shut down before the target responded".to_string()
                }
                (Cutoff::Shutdown, true) => format!(
                    "proxy: shut down after {} bytes of the response body",
                    stream.response_body.total()
                ),
                (Cutoff::ClientGone, false) => {
                    "client: the connection closed before the target responded".to_string()
                }
                (Cutoff::ClientGone, true) => format!(
                    "client: the connection closed after {} bytes of the response body",
                    stream.response_body.total()
                ),
                (Cutoff::ClientFrameTooLarge, _) => "client: sent an HTTP/2 frame larger than \
                    the target accepts (FRAME_SIZE_ERROR); the proxy closed the connection"
                    .to_string(),
                (Cutoff::TargetFrameTooLarge, _) => "upstream: the target sent an HTTP/2 frame \
                    larger than the client accepts (FRAME_SIZE_ERROR); the proxy closed the \
                    connection"
                    .to_string(),
            };
            if !stream.request_done {
                stream.request_done = true;
                if !stream.response_done {
                    stream.request_error = Some(error.clone());
                }
            }
            stream.end_response(Some(error));
            self.settle(id);
        }
    }

    /// Hands stream `id` to the observer (a `try_send`, never a wait) if both of its halves
    /// are over.
    fn settle(&mut self, id: u32) {
        let finished = self
            .open
            .get(&id)
            .is_some_and(|s| s.request_done && s.response_done);
        if !finished {
            return;
        }
        let Some(stream) = self.open.remove(&id) else {
            return;
        };
        let duration = stream.duration.unwrap_or_else(|| stream.started.elapsed());
        self.ctx.observer.record(Box::new(RelayRecord {
            request_fields: stream.request_fields,
            request_body: stream.request_body,
            request_error: stream.request_error,
            latency: stream.latency.unwrap_or(duration),
            answer: stream.answer,
            response_body: stream.response_body,
            trailers: stream.trailers,
            made_trailers: stream.made_trailers,
            response_error: stream.response_error,
            started_at: stream.started_at,
            duration,
            redact: self.ctx.redact.clone(),
            grpc: stream.grpc.then(|| self.ctx.grpc.clone()),
            client_reset: stream.client_reset,
        }));
    }
}

/// The name of an HTTP/2 error code (RFC 9113 §7).
pub(super) fn error_code_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("error code {other:#x}"),
    };
    name.to_string()
}
