//! One client connection on the raw path: requests are read, forwarded verbatim over an
//! upstream connection taken from the proxy's [idle ones](crate::http::idle_upstreams) (or
//! dialled), and answered with the target's bytes verbatim, one exchange after the other
//! (pipelined requests wait in the buffer, in order). The upstream connection is parked again
//! as soon as the response is done.
//!
//! ```text
//! client ─► cbuf ─► head? ─► [head + body bytes] ─► upstream ─► target
//! client ◄──────────── [interim heads, final head + body bytes] ◄─ ubuf ◄┘
//!             └─ RawRecord: head copies + capture copy ─► Observer (try_send)
//! ```
//!
//! Both buffers are read into directly and forwarded from where the bytes landed. The record
//! copies the heads and the captured body bytes out (the body copy becomes the event's buffer
//! as it is), so nothing holds on to the read buffers. Between requests the connection holds
//! neither buffer nor upstream connection ([`idle`]): it hands the buffers to a per-thread pool
//! ([`buffers`]), waits for readability, and takes a buffer only when there is something to
//! read.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{HeaderMap, StatusCode};
use rig_types::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::flight::{Flight, Stage};
use super::framing::BodyProgress;
use super::parse::{self, Framing, RequestHead, ResponseHead};
use super::record::{Answer, RawRecord};
use crate::http::capture::Capture;
use crate::http::context::Context;
use crate::http::error::{Failure, FailureKind, RawFailure};
use crate::http::h2_wire::PREFACE;
use crate::http::record::MalformedRecord;
use crate::http::upstream::SendError;

mod buffers;
mod idle;

use idle::Idle;

/// Free space ensured before reading a request head.
const HEAD_READ: usize = 8 * 1024;
/// Free space ensured before reading a response, or body bytes: a 64 KiB body and its head
/// arrive in one read and leave in one write (with exactly 64 KiB, the last few hundred bytes
/// would take a second read and write, and a segment of their own on each hop).
const BODY_READ: usize = 64 * 1024 + HEAD_READ;
/// Below this much free space a buffer is grown before the next read.
const MIN_READ: usize = 2 * 1024;
/// Client bytes (pipelined requests) buffered while a response is on its way; beyond it the
/// client is not read until the response is done.
const PIPELINE_LIMIT: usize = 64 * 1024;
/// How long a client still sending a request body that nobody takes (the target answered and
/// closed) may stay silent before the connection is closed.
const LINGER: Duration = Duration::from_secs(5);

/// A connection the raw path gives up at a request boundary: hyper serves it from here,
/// starting with the bytes already read.
pub(crate) struct Fallback {
    pub(crate) stream: TcpStream,
    pub(crate) buffered: BytesMut,
}

/// Serves `client` on the raw path until it closes, the proxy shuts down, or a request needs
/// hyper (then the connection is returned, with what was read of that request).
///
/// On shutdown an idle connection closes at once; an exchange under way gets
/// [`Context::shutdown_grace`] to finish, and is then dropped, closing the connection.
pub(crate) async fn serve(ctx: &Context, client: TcpStream) -> Option<Fallback> {
    let mut conn = Connection {
        client,
        cbuf: BytesMut::new(),
        unsent: 0,
        upstream: None,
        ubuf: BytesMut::new(),
        ranges: Vec::new(),
        #[cfg(test)]
        gauge: idle::Gauge::new(ctx.raw_buffers.clone()),
    };
    let cancelled = ctx.cancel.cancelled();
    tokio::pin!(cancelled);
    let mut first = true;
    loop {
        let head = match conn
            .next_head(cancelled.as_mut(), first, ctx.head_timeout)
            .await
        {
            Wait::Head(head) => head,
            Wait::Fallback if !ctx.cancel.is_cancelled() => {
                return Some(Fallback {
                    stream: conn.client,
                    buffered: conn.cbuf,
                })
            }
            Wait::Fallback | Wait::Closed => return None,
            Wait::HeadTimeout(started_at) => {
                conn.head_timed_out(ctx, started_at).await;
                return None;
            }
        };
        first = false;
        // Boxed: an exchange's state is most of a connection's, and it only exists while a
        // request is under way; idle connections do not carry room for it.
        let keep_alive = {
            let mut exchange = Box::pin(conn.exchange(ctx, head));
            tokio::select! {
                biased;
                keep_alive = &mut exchange => keep_alive,
                _ = cancelled.as_mut() => {
                    tokio::time::timeout(ctx.shutdown_grace, exchange)
                        .await
                        .unwrap_or(false)
                }
            }
        };
        // Still here only when its exchange completed cleanly (else it was given up).
        let upstream = conn.upstream.take();
        if !keep_alive || ctx.cancel.is_cancelled() {
            let _ = conn.client.shutdown().await;
            return None;
        }
        if let Some(upstream) = upstream {
            ctx.upstream.idle.park(upstream);
        }
    }
}

enum Wait {
    Head(RequestHead),
    Fallback,
    Closed,
    /// The head begun at this time did not arrive whole within the head timeout.
    HeadTimeout(Timestamp),
}

/// What happened while waiting on both sides.
enum Event {
    Client(std::io::Result<usize>),
    Upstream(std::io::Result<usize>),
    /// The target can take more of the request body (or the write fails, and says why).
    Writable,
    Timeout,
}

struct Connection {
    client: TcpStream,
    /// Bytes from the client not yet forwarded (no memory while idle).
    cbuf: BytesMut,
    /// How many bytes at the start of `cbuf` are request body taken for the target but not
    /// written to it yet (it was not reading).
    unsent: usize,
    /// The connection to the target, while an exchange is under way.
    upstream: Option<TcpStream>,
    /// Bytes from the target not yet forwarded (no memory while idle).
    ubuf: BytesMut,
    /// Chunk data ranges found by the last walk (reused).
    ranges: Vec<Range<usize>>,

    /// Reports the buffers' capacity while idle to the tests.
    #[cfg(test)]
    gauge: idle::Gauge,
}

/// Ensures room for a read of about `size` bytes.
fn make_room(buf: &mut BytesMut, size: usize) {
    if buf.capacity() - buf.len() < MIN_READ {
        buffers::reserve(buf, size);
    }
}

/// Copies the `ranges` of `wire` (starting at `offset`) into `capture`, so the read buffer
/// they are in can be reused (a full capture only counts them).
fn capture_ranges(capture: &mut Capture, wire: &[u8], offset: usize, ranges: &[Range<usize>]) {
    for range in ranges {
        capture.copy(&wire[offset + range.start..offset + range.end]);
    }
}

/// A response the proxy makes (a failure) as HTTP/1.1 bytes.
fn serialize(status: http::StatusCode, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out
}

/// Why a request body could not be forwarded.
enum BodyFailure {
    /// The client's bytes are not a valid body.
    Client(String),
    /// Writing to the target failed.
    Upstream(std::io::Error),
}

/// How the response head wait ended.
enum HeadOutcome {
    Final(ResponseHead),
    /// The exchange failed; the client is answered with it.
    Failed(Failure),
    /// The client went away (recorded by the flight).
    ClientGone,
}

impl Connection {
    /// Waits for the next request head: parses what is buffered and reads more as needed,
    /// while watching the proxy's cancellation. Once part of a head is here, the rest has
    /// `head_timeout`.
    async fn next_head(
        &mut self,
        mut cancelled: Pin<&mut impl Future<Output = ()>>,
        first: bool,
        head_timeout: Duration,
    ) -> Wait {
        // When the head's first bytes were seen, and when the rest is due.
        let mut begun: Option<(Timestamp, Instant)> = None;
        loop {
            if !self.cbuf.is_empty() {
                let buffered = &self.cbuf[..];
                if first && buffered.len() < PREFACE.len() && PREFACE.starts_with(buffered) {
                    // Maybe the HTTP/2 preface: wait for the rest.
                } else if first && buffered.starts_with(PREFACE) {
                    return Wait::Fallback;
                } else {
                    match parse::request(buffered) {
                        parse::Request::Raw(head) => return Wait::Head(head),
                        parse::Request::Fallback => return Wait::Fallback,
                        parse::Request::Partial => {}
                    }
                }
            }
            let read = if self.cbuf.is_empty() {
                match self.idle_read(cancelled.as_mut()).await {
                    Idle::Cancelled => return Wait::Closed,
                    Idle::Nothing => continue,
                    Idle::Read(read) => read,
                }
            } else {
                // A partial head: read the rest, in time.
                let (started_at, due) =
                    *begun.get_or_insert_with(|| (Timestamp::now(), Instant::now() + head_timeout));
                make_room(&mut self.cbuf, HEAD_READ);
                tokio::select! {
                    biased;
                    _ = cancelled.as_mut() => return Wait::Closed,
                    read = self.client.read_buf(&mut self.cbuf) => read,
                    _ = tokio::time::sleep_until(due) => return Wait::HeadTimeout(started_at),
                }
            };
            if let Ok(0) | Err(_) = read {
                return Wait::Closed;
            }
        }
    }

    /// Answers a client whose request head is overdue `408` and records it; the connection
    /// then closes.
    async fn head_timed_out(&mut self, ctx: &Context, started_at: Timestamp) {
        let error = format!(
            "client: the request head did not arrive within {} s ({} bytes of it came)",
            ctx.head_timeout.as_secs_f64(),
            self.cbuf.len()
        );
        ctx.observer.record(Box::new(MalformedRecord {
            status: 408,
            error,
            started_at,
        }));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let answer = serialize(StatusCode::REQUEST_TIMEOUT, &headers, b"");
        let _ = self.client.write_all(&answer).await;
        let _ = self.client.shutdown().await;
    }

    /// Forwards one exchange; returns whether the connection stays open for the next one.
    async fn exchange(&mut self, ctx: &Context, head: RequestHead) -> bool {
        let started = Instant::now();
        let mut flight = Flight {
            ctx,
            started,
            stage: Stage::Request,
            head_method: head.head_method,
            record: Some(Box::new(RawRecord {
                request_head: Bytes::new(),
                request_body: Capture::new(ctx.capture_limit),
                request_error: None,
                answer: Answer::Nothing,
                response_body: Capture::new(ctx.capture_limit),
                response_error: None,
                started_at: Timestamp::now(),
                latency: Duration::ZERO,
                duration: Duration::ZERO,
                redact: ctx.redact.clone(),
            })),
        };

        // The head and the body bytes already here go out in one write.
        let mut body = BodyProgress::new(head.framing);
        // The record gets its own copy of the head (a few hundred bytes), so that it does not
        // hold on to the read buffer.
        flight.rec().request_head = Bytes::copy_from_slice(&self.cbuf[..head.len]);
        let in_buffer = match body.take(&self.cbuf[head.len..], &mut self.ranges) {
            Ok(n) => n,
            Err(why) => {
                // The data before the broken chunk is what the client sent of the body.
                capture_ranges(
                    &mut flight.rec().request_body,
                    &self.cbuf,
                    head.len,
                    &self.ranges,
                );
                self.cbuf.advance(head.len);
                return self.request_invalid(&mut flight, why).await;
            }
        };
        if let Framing::Length(len) = head.framing {
            flight.rec().request_body.expect(len);
        }
        let wire = self.cbuf.split_to(head.len + in_buffer).freeze();
        let complete = body.is_done();

        let (stream, reused) = match ctx.upstream.idle.take() {
            Some(stream) => (stream, true),
            None => match ctx.upstream.connect_raw().await {
                Ok(stream) => (stream, false),
                Err(error) => {
                    let failure =
                        Failure::from_send(&SendError::Connect(error), &ctx.target, false);
                    return self.fail_upload(&mut flight, &failure, &mut body).await && !head.close;
                }
            },
        };
        self.upstream = Some(stream);
        // A parked connection the target has closed fails the write: the target never read
        // the request, so it goes out again over a fresh connection whatever it is.
        let stale = reused && complete;
        if let Err(error) = self.upstream_mut().write_all(&wire).await {
            match stale.then(|| wire.clone()) {
                Some(wire) if self.reconnect_and_send(ctx, &wire).await.is_ok() => {}
                _ => {
                    let failure = Failure::from_raw(RawFailure::Io(&error), &ctx.target);
                    return self.fail_upload(&mut flight, &failure, &mut body).await && !head.close;
                }
            }
        }
        capture_ranges(
            &mut flight.rec().request_body,
            &wire,
            head.len,
            &self.ranges,
        );
        // A connection closed with no answer may have carried the request to a target that
        // acted on it before closing: only a request safe to repeat is sent again.
        let mut resend = (stale && head.replayable).then(|| wire.clone());

        // The rest of the request body, while watching for interim responses (and a final one
        // that does not wait for the body). The target is read whenever it has something to
        // say, even while it is not taking the body: a target answering as it reads (an echo)
        // would otherwise block on its answer and stop reading, and both would wait for ever.
        let mut early = None;
        while !body.is_done() || self.unsent > 0 {
            let reading = !body.is_done() && self.unsent < BODY_READ;
            if reading {
                make_room(&mut self.cbuf, BODY_READ);
            }
            make_room(&mut self.ubuf, HEAD_READ);
            let event = self.next_event(reading).await;
            match event {
                Event::Client(Ok(0)) => {
                    return self.request_broke_off(
                        &mut flight,
                        "end of file before message length reached",
                    )
                }
                Event::Client(Err(error)) => {
                    let why = error.to_string();
                    return self.request_broke_off(&mut flight, &why);
                }
                Event::Client(Ok(_)) | Event::Writable => {
                    match self.forward_request_body(&mut flight, &mut body) {
                        Ok(()) => {}
                        Err(BodyFailure::Client(why)) => {
                            return self.request_invalid(&mut flight, &why).await
                        }
                        Err(BodyFailure::Upstream(error)) => {
                            let failure = Failure::from_raw(RawFailure::Io(&error), &ctx.target);
                            return self.fail_upload(&mut flight, &failure, &mut body).await
                                && !head.close;
                        }
                    }
                }
                Event::Upstream(Ok(0)) => {
                    let failure = Failure::from_raw(RawFailure::Closed, &ctx.target);
                    return self.fail_upload(&mut flight, &failure, &mut body).await && !head.close;
                }
                Event::Upstream(Err(error)) => {
                    let failure = Failure::from_raw(RawFailure::Io(&error), &ctx.target);
                    return self.fail_upload(&mut flight, &failure, &mut body).await && !head.close;
                }
                Event::Upstream(Ok(_)) => match self.interim(ctx, head.head_method).await {
                    Ok(None) => {}
                    Ok(Some(response)) => {
                        early = Some(response);
                        break;
                    }
                    Err(HeadOutcome::Failed(failure)) => {
                        return self.fail_upload(&mut flight, &failure, &mut body).await
                            && !head.close;
                    }
                    Err(_) => return false,
                },
                Event::Timeout => {}
            }
        }

        let response = match early {
            Some(response) => response,
            None => match self.response_head(ctx, &mut resend, head.head_method).await {
                HeadOutcome::Final(response) => response,
                HeadOutcome::Failed(failure) => {
                    return self.fail(&mut flight, &failure).await && !head.close;
                }
                HeadOutcome::ClientGone => return false,
            },
        };
        let Some(keep_alive) = self.response(ctx, &mut flight, &mut body, response).await else {
            return false;
        };
        let uploaded = (body.is_done() && self.unsent == 0)
            || self.finish_upload(&mut flight, &mut body).await;
        uploaded && keep_alive && !head.close
    }

    /// Waits while an exchange is under way: for the target's next bytes (read into `ubuf`),
    /// for the target to take more of the unsent request body, and for the client's next
    /// bytes (read into `cbuf`) when `reading`.
    async fn next_event(&mut self, reading: bool) -> Event {
        let upstream = self.upstream.as_ref().expect("connected");
        loop {
            return tokio::select! {
                biased;
                ready = upstream.readable() => match ready {
                    Ok(()) => match upstream.try_read_buf(&mut self.ubuf) {
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                        read => Event::Upstream(read),
                    },
                    Err(error) => Event::Upstream(Err(error)),
                },
                _ = upstream.writable(), if self.unsent > 0 => Event::Writable,
                read = self.client.read_buf(&mut self.cbuf), if reading => Event::Client(read),
            };
        }
    }

    /// Takes the request body bytes read into `cbuf` since the last call, capturing them: they
    /// join the `unsent` bytes at the start of `cbuf`.
    fn take_request_body(
        &mut self,
        flight: &mut Flight<'_>,
        body: &mut BodyProgress,
    ) -> Result<(), &'static str> {
        let taken = body.take(&self.cbuf[self.unsent..], &mut self.ranges);
        // On an error too: the data before the broken chunk is what the client sent of it.
        capture_ranges(
            &mut flight.rec().request_body,
            &self.cbuf,
            self.unsent,
            &self.ranges,
        );
        self.unsent += taken?;
        Ok(())
    }

    /// Takes the request body bytes read into `cbuf` since the last call (capturing them) and
    /// writes as much of what is unsent as the target takes now, without waiting for it.
    fn forward_request_body(
        &mut self,
        flight: &mut Flight<'_>,
        body: &mut BodyProgress,
    ) -> Result<(), BodyFailure> {
        self.take_request_body(flight, body)
            .map_err(|why| BodyFailure::Client(why.to_string()))?;
        let upstream = self.upstream.as_ref().expect("connected");
        while self.unsent > 0 {
            match upstream.try_write(&self.cbuf[..self.unsent]) {
                Ok(0) => return Err(BodyFailure::Upstream(std::io::ErrorKind::WriteZero.into())),
                Ok(written) => {
                    self.cbuf.advance(written);
                    self.unsent -= written;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(BodyFailure::Upstream(error)),
            }
        }
        Ok(())
    }

    fn upstream_mut(&mut self) -> &mut TcpStream {
        self.upstream.as_mut().expect("connected")
    }

    /// Opens a new upstream connection (the parked one turned out closed) and sends `wire`,
    /// the whole request, over it.
    async fn reconnect_and_send(&mut self, ctx: &Context, wire: &Bytes) -> std::io::Result<()> {
        self.upstream = None;
        self.ubuf.clear();
        let mut stream = ctx.upstream.connect_raw().await?;
        stream.write_all(wire).await?;
        self.upstream = Some(stream);
        Ok(())
    }

    /// Forwards the interim responses at the start of `ubuf`; returns the final response head
    /// once it is there.
    async fn interim(
        &mut self,
        ctx: &Context,
        head_method: bool,
    ) -> Result<Option<ResponseHead>, HeadOutcome> {
        while !self.ubuf.is_empty() {
            match parse::response(&self.ubuf, head_method) {
                Ok(parse::Response::Partial) => return Ok(None),
                Ok(parse::Response::Final(response)) => return Ok(Some(response)),
                Ok(parse::Response::Interim(len)) => {
                    if self.client.write_all(&self.ubuf[..len]).await.is_err() {
                        return Err(HeadOutcome::ClientGone);
                    }
                    self.ubuf.advance(len);
                }
                Ok(parse::Response::Switching) => {
                    return Err(HeadOutcome::Failed(Failure::new(
                        FailureKind::UpstreamProtocol,
                        format!(
                            "the target {} switched protocols although the client did not ask to",
                            ctx.target
                        ),
                    )))
                }
                Err(why) => {
                    return Err(HeadOutcome::Failed(Failure::from_raw(
                        RawFailure::Invalid(why),
                        &ctx.target,
                    )))
                }
            }
        }
        Ok(None)
    }

    /// Waits for the final response head (forwarding interim ones), within the response
    /// timeout. A parked connection the target closed before answering is replaced once, and
    /// the request (`resend`: sent whole and safe to repeat) sent again.
    async fn response_head(
        &mut self,
        ctx: &Context,
        resend: &mut Option<Bytes>,
        head_method: bool,
    ) -> HeadOutcome {
        let timeout = ctx.upstream.response_timeout();
        let mut timer = timeout.map(|limit| Box::pin(tokio::time::sleep(limit)));
        loop {
            match self.interim(ctx, head_method).await {
                Ok(Some(response)) => return HeadOutcome::Final(response),
                Ok(None) => {}
                Err(outcome) => return outcome,
            }
            if !self.ubuf.is_empty() {
                // Part of an answer arrived: no resending from here on.
                *resend = None;
            }
            make_room(&mut self.ubuf, BODY_READ);
            let pipelined = self.cbuf.len() < PIPELINE_LIMIT;
            let upstream = self.upstream.as_mut().expect("connected");
            let event = tokio::select! {
                biased;
                read = upstream.read_buf(&mut self.ubuf) => Event::Upstream(read),
                read = self.client.read_buf(&mut self.cbuf), if pipelined => Event::Client(read),
                _ = async { timer.as_mut().expect("armed").await }, if timer.is_some() => Event::Timeout,
            };
            match event {
                Event::Upstream(Ok(n)) if n > 0 => {}
                Event::Upstream(read) => {
                    let retry = resend.take();
                    if let Some(wire) = retry.filter(|_| self.ubuf.is_empty()) {
                        if self.reconnect_and_send(ctx, &wire).await.is_ok() {
                            continue;
                        }
                    }
                    self.upstream = None;
                    self.ubuf.clear();
                    let failure = match &read {
                        Err(error) => Failure::from_raw(RawFailure::Io(error), &ctx.target),
                        Ok(_) => Failure::from_raw(RawFailure::Closed, &ctx.target),
                    };
                    return HeadOutcome::Failed(failure);
                }
                Event::Client(Ok(0) | Err(_)) => {
                    self.upstream = None;
                    return HeadOutcome::ClientGone;
                }
                Event::Client(Ok(_)) | Event::Writable => {}
                Event::Timeout => {
                    self.upstream = None;
                    self.ubuf.clear();
                    let limit = timeout.unwrap_or_default();
                    return HeadOutcome::Failed(Failure::from_send(
                        &SendError::Timeout(limit),
                        &ctx.target,
                        false,
                    ));
                }
            }
        }
    }

    /// Forwards the final response, head and body. Returns `Some(keep_alive)` once the client
    /// has a whole answer (the target's, or the proxy's failure response), where `keep_alive`
    /// says whether the response allows another exchange; `None` when the exchange broke off.
    async fn response(
        &mut self,
        ctx: &Context,
        flight: &mut Flight<'_>,
        request: &mut BodyProgress,
        head: ResponseHead,
    ) -> Option<bool> {
        flight.rec().latency = flight.elapsed();
        flight.stage = Stage::Response;
        let mut body = BodyProgress::new(head.framing);
        let in_buffer = match body.take(&self.ubuf[head.len..], &mut self.ranges) {
            Ok(n) => n,
            Err(why) => {
                // Nothing of it was forwarded yet: the target's answer is invalid.
                self.upstream = None;
                self.ubuf.clear();
                let failure = Failure::from_raw(RawFailure::Invalid(why), &ctx.target);
                return self.fail(flight, &failure).await.then_some(true);
            }
        };
        let (forwarded, sent_head) = if head.drop_length {
            // Chunked overrides the length, which must not reach the client (RFC 9112 §6.3).
            let mut out = parse::without_content_length(&self.ubuf[..head.len]);
            let sent_head = Bytes::copy_from_slice(&out);
            out.extend_from_slice(&self.ubuf[head.len..head.len + in_buffer]);
            (self.client.write_all(&out).await, sent_head)
        } else {
            let forwarded = self
                .client
                .write_all(&self.ubuf[..head.len + in_buffer])
                .await;
            (forwarded, Bytes::copy_from_slice(&self.ubuf[..head.len]))
        };
        let record = flight.rec();
        record.answer = Answer::Forwarded(sent_head);
        if let Framing::Length(len) = head.framing {
            record.response_body.expect(len);
        }
        capture_ranges(
            &mut record.response_body,
            &self.ubuf,
            head.len,
            &self.ranges,
        );
        self.ubuf.advance(head.len + in_buffer);
        if forwarded.is_err() {
            self.upstream = None;
            return None;
        }

        while !body.is_done() {
            make_room(&mut self.ubuf, BODY_READ);
            // The request body may still be on its way (a target answering as it reads, like
            // an echo): it keeps being forwarded.
            let uploading = !request.is_done();
            let reading = if uploading {
                self.unsent < BODY_READ
            } else {
                self.cbuf.len() < PIPELINE_LIMIT
            };
            if uploading && reading {
                make_room(&mut self.cbuf, BODY_READ);
            }
            let event = self.next_event(reading).await;
            match event {
                Event::Upstream(Ok(0)) if head.framing == Framing::UntilClose => break,
                Event::Upstream(Ok(0)) => {
                    self.response_broke_off(flight, "end of file before message length reached");
                    return None;
                }
                Event::Upstream(Err(error)) => {
                    let why = error.to_string();
                    self.response_broke_off(flight, &why);
                    return None;
                }
                Event::Upstream(Ok(_)) => {
                    let n = match body.take(&self.ubuf, &mut self.ranges) {
                        Ok(n) => n,
                        Err(why) => {
                            self.response_broke_off(flight, why);
                            return None;
                        }
                    };
                    let forwarded = self.client.write_all(&self.ubuf[..n]).await;
                    capture_ranges(&mut flight.rec().response_body, &self.ubuf, 0, &self.ranges);
                    self.ubuf.advance(n);
                    if forwarded.is_err() {
                        // Recorded by the flight: the client closed the connection.
                        self.upstream = None;
                        return None;
                    }
                }
                Event::Client(Ok(0)) if uploading => {
                    self.request_broke_off(flight, "end of file before message length reached");
                    return None;
                }
                Event::Client(Err(error)) if uploading => {
                    let why = error.to_string();
                    self.request_broke_off(flight, &why);
                    return None;
                }
                Event::Client(Ok(0) | Err(_)) => {
                    self.upstream = None;
                    return None;
                }
                Event::Client(Ok(_)) | Event::Writable if self.unsent > 0 || uploading => {
                    match self.forward_request_body(flight, request) {
                        Ok(()) => {}
                        Err(BodyFailure::Client(why)) => {
                            self.request_invalid(flight, &why).await;
                            return None;
                        }
                        Err(BodyFailure::Upstream(error)) => {
                            let why = error.to_string();
                            self.response_broke_off(flight, &why);
                            return None;
                        }
                    }
                }
                Event::Client(Ok(_)) | Event::Writable | Event::Timeout => {}
            }
        }
        flight.rec().duration = flight.elapsed();
        flight.stage = Stage::Done;
        if head.close || !self.ubuf.is_empty() {
            // Closed by the target, or bytes after the response nobody asked for.
            self.upstream = None;
            self.ubuf.clear();
        }
        Some(!head.close)
    }

    /// The response is out but the client is still sending its request body (a target may
    /// answer before reading all of it, RFC 9112 §9.3): the rest is forwarded to a target that
    /// keeps the connection, or read and dropped when the target has closed ([`drop_upload`]),
    /// so the client neither blocks nor gets a reset before it has read the response. Returns
    /// whether the body ended properly (else the client stopped sending, or went quiet for
    /// [`LINGER`]).
    ///
    /// [`drop_upload`]: Self::drop_upload
    async fn finish_upload(&mut self, flight: &mut Flight<'_>, body: &mut BodyProgress) -> bool {
        while !body.is_done() || self.unsent > 0 {
            if self.upstream.is_none() {
                // Nobody takes it: the rest is read and dropped.
                let capture = &mut flight.rec().request_body;
                return self.drop_upload(Some(capture), body).await;
            }
            let reading = !body.is_done() && self.unsent < BODY_READ;
            if reading {
                make_room(&mut self.cbuf, BODY_READ);
            }
            make_room(&mut self.ubuf, HEAD_READ);
            match self.next_event(reading).await {
                Event::Client(Ok(0) | Err(_)) | Event::Timeout => {
                    self.upstream = None;
                    return false;
                }
                Event::Client(Ok(_)) | Event::Writable => {
                    if self.forward_request_body(flight, body).is_err() {
                        // The target stopped taking it: the rest is dropped.
                        self.upstream = None;
                        self.ubuf.clear();
                    }
                }
                // The target has nothing more to say on this exchange: it closed, or sent
                // bytes nobody asked for; either way it is not used again.
                Event::Upstream(_) => {
                    self.upstream = None;
                    self.ubuf.clear();
                }
            }
        }
        true
    }

    /// Reads the rest of the request body and drops it (with the bytes taken and not sent),
    /// nobody taking it; `capture` counts and keeps what the record shows of it. A socket
    /// closed with unread bytes in it resets the connection, which can destroy the answer
    /// before the client has read it. Returns whether the body ended properly (else it is
    /// not valid, or the client stopped sending, or went quiet for [`LINGER`]).
    async fn drop_upload(
        &mut self,
        mut capture: Option<&mut Capture>,
        body: &mut BodyProgress,
    ) -> bool {
        loop {
            self.cbuf.advance(self.unsent);
            self.unsent = 0;
            if body.is_done() {
                return true;
            }
            make_room(&mut self.cbuf, BODY_READ);
            match tokio::time::timeout(LINGER, self.client.read_buf(&mut self.cbuf)).await {
                Ok(Ok(read)) if read > 0 => {}
                _ => return false,
            }
            let taken = body.take(&self.cbuf, &mut self.ranges);
            if let Some(capture) = capture.as_deref_mut() {
                // On an error too: the data before the broken chunk is what the client sent.
                capture_ranges(capture, &self.cbuf, 0, &self.ranges);
            }
            match taken {
                Ok(n) => self.unsent = n,
                Err(_) => return false,
            }
        }
    }

    /// Records the response body breaking off after its head went out, and ends the
    /// connection (the client cannot be told otherwise).
    fn response_broke_off(&mut self, flight: &mut Flight<'_>, why: &str) -> bool {
        let elapsed = flight.elapsed();
        let record = flight.rec();
        record.duration = elapsed;
        record.response_error = Some(format!(
            "upstream: the response body broke off after {} bytes: error reading a body from \
             connection: {why}",
            record.response_body.total()
        ));
        flight.stage = Stage::Done;
        self.upstream = None;
        self.ubuf.clear();
        false
    }

    /// Records the client's request body breaking off (end of file, or not valid chunked
    /// encoding), and ends the connection.
    fn request_broke_off(&mut self, flight: &mut Flight<'_>, why: &str) -> bool {
        let elapsed = flight.elapsed();
        let record = flight.rec();
        record.request_error = Some(format!(
            "client: the request body broke off after {} bytes: error reading a body from \
             connection: {why}",
            record.request_body.total()
        ));
        record.latency = elapsed;
        record.duration = elapsed;
        flight.stage = Stage::Done;
        self.upstream = None;
        self.ubuf.clear();
        false
    }

    /// Records the client's request body as not valid chunked encoding and ends the
    /// connection (its framing is lost). While the response has not started, the client is
    /// answered first, `502` with `x-rig-proxy-error: client-aborted`, as on the hyper path.
    async fn request_invalid(&mut self, flight: &mut Flight<'_>, why: &str) -> bool {
        let answer = flight.stage == Stage::Request;
        self.request_broke_off(flight, why);
        if answer {
            let summary = "the client's request body is not valid chunked encoding".to_string();
            self.fail(flight, &Failure::new(FailureKind::ClientAborted, summary))
                .await;
        }
        false
    }

    /// Answers the client with `failure` and records it; returns whether the answer went out.
    /// The upstream connection is given up. A `HEAD` request gets the head alone (its
    /// `Content-Length` says how long the body would be, RFC 9110 §9.3.2), so that the
    /// connection stays in step for the next exchange; the record keeps the body, as on the
    /// hyper path.
    async fn fail(&mut self, flight: &mut Flight<'_>, failure: &Failure) -> bool {
        self.upstream = None;
        self.ubuf.clear();
        let (response, headers, body) = failure.response(false);
        let status = response.status();
        let sent: &[u8] = if flight.head_method { b"" } else { &body };
        let wire = serialize(status, &headers, sent);
        flight.failed(failure, headers, status.as_u16(), &body);
        self.client.write_all(&wire).await.is_ok()
    }

    /// [`fail`](Self::fail) while the client may still be sending the request body: once the
    /// answer is out, the rest of the body is read and dropped ([`drop_upload`]; it reached
    /// no target, so the record does not count it), so that the client can send it whole and
    /// read the answer. Returns whether the connection can carry the next request.
    ///
    /// [`drop_upload`]: Self::drop_upload
    async fn fail_upload(
        &mut self,
        flight: &mut Flight<'_>,
        failure: &Failure,
        body: &mut BodyProgress,
    ) -> bool {
        self.fail(flight, failure).await && self.drop_upload(None, body).await
    }
}
