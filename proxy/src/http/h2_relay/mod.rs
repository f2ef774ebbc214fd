//! The h2c frame relay: a connection that starts with the HTTP/2 preface gets its own
//! connection to the target, and the frames pass through verbatim, in both directions. The
//! proxy reads frame headers, decodes header blocks (HPACK, in order: the decoder's table
//! follows the peer's) and keeps slices of `DATA` payloads; it never re-encodes, re-frames
//! or copies what it forwards.
//!
//! ```text
//! client ─► buf ─► complete frames ─► [observe: HEADERS → fields, DATA → capture] ─► target
//! client ◄─ complete frames ◄─ [observe: HEADERS → status, DATA → capture, RST] ◄─ buf ◄┘
//!              └─ Streams: one entry per stream until both halves end ─► RelayRecord ─► Observer
//! ```
//!
//! Settings, flow control, priorities, pings and `GOAWAY` are the two peers' business: they
//! see each other's frames. The proxy steps in only where the hyper path would answer for
//! the target:
//! - the target resets a stream before answering it: the client gets the proxy's `502` (a
//!   gRPC call its `UNAVAILABLE` status) in place of the `RST_STREAM`, as from the hyper path
//!   but without a body (no `DATA` spends flow-control window behind the target's back), and
//!   then `RST_STREAM (NO_ERROR)` if it is still sending the request. `REFUSED_STREAM` is
//!   passed on: it tells the client to retry;
//! - the target resets a gRPC call after its response head: the call ends with trailers
//!   carrying `UNAVAILABLE` and the cause, as from the hyper path. A reset after the whole
//!   response (the target asking the client to stop sending, RFC 9113 §8.1) is passed on;
//! - the target closes the connection (which the relay may find writing to it, as well as
//!   reading: either way it is the target's failure, not the client's): streams not yet
//!   answered get the `502`, gRPC calls under way their `UNAVAILABLE` trailers, the others a
//!   `RST_STREAM (INTERNAL_ERROR)`; then the client gets a `GOAWAY` and the connection
//!   closes. After a `GOAWAY` of the target's own, the streams above its last stream id
//!   (which the client may retry) get nothing, and no second `GOAWAY` follows. The client's
//!   connection closes its sending side first: what the client still sends (the rest of an
//!   upload) is read and dropped until it closes too, so that no reset overtakes the answers;
//! - a peer announces a frame larger than the other accepts (`SETTINGS_MAX_FRAME_SIZE`, read
//!   from the `SETTINGS` frames that pass): the connection closes, as the receiver would
//!   close it, instead of the relay holding up to 16 MiB of a frame it only passes on whole.
//!
//! Connections the relay does not take stay with hyper: when the target cannot be reached
//! (hyper answers each request with the `502`; so the connection attempt is made twice), and
//! whenever a response timeout is set (hyper enforces it per request).

mod fields;
mod hpack;
mod hpack_tables;
mod record;
mod streams;

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use self::fields::{parse_status, Fields, FieldsBuilder};
use self::streams::{error_code_name, Cutoff, Streams};
use super::context::Context;
use super::error::{Failure, FailureKind, RawFailure};
use super::h2_wire::{
    put_fields, put_frame_header, put_headers_frame, put_literal, FrameHead, FLAG_ACK,
    FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY, FRAME_CONTINUATION, FRAME_DATA,
    FRAME_GOAWAY, FRAME_HEADER, FRAME_HEADERS, FRAME_PUSH_PROMISE, FRAME_RST_STREAM,
    FRAME_SETTINGS, PREFACE,
};
use super::raw::Fallback;
use super::socket::{read_draining, write_all};

/// How long a client's connection is held open after the relay, for what the client still
/// sends to be read rather than answered with a reset (see [`close_gently`]).
const LINGER: Duration = Duration::from_secs(2);
/// Free space ensured before a read.
const READ_SIZE: usize = 32 * 1024;
/// Below this much free space a buffer is grown before the next read.
const MIN_READ: usize = 4 * 1024;
/// `REFUSED_STREAM`: the target did not process the stream; the client may retry it.
const REFUSED_STREAM: u32 = 0x7;
/// `NO_ERROR`: after a complete response, asks the client to stop sending the request.
const NO_ERROR: u32 = 0x0;
/// `INTERNAL_ERROR`.
const INTERNAL_ERROR: u32 = 0x2;
/// `SETTINGS_MAX_FRAME_SIZE` until a peer's `SETTINGS` say otherwise (RFC 9113 §6.5.2).
const DEFAULT_MAX_FRAME: usize = 16 * 1024;
/// The identifier of `SETTINGS_MAX_FRAME_SIZE`.
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
/// The most of one header block kept for decoding. Peers refuse far smaller header lists
/// (hyper: 16 KiB by default); this only bounds what a peer that never ends a block costs.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Relays `client`, whose first bytes (`buffered`) are the HTTP/2 preface, to its own
/// connection to the target until either side closes or the proxy shuts down. Returns the
/// connection untouched when the target cannot be reached, for hyper to answer.
pub(crate) async fn serve(
    ctx: &Arc<Context>,
    client: TcpStream,
    buffered: BytesMut,
) -> Option<Fallback> {
    debug_assert!(buffered.starts_with(PREFACE));
    let connected = tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => return None,
        connected = ctx.upstream.connect_raw() => connected,
    };
    let Ok(upstream) = connected else {
        return Some(Fallback {
            stream: client,
            buffered,
        });
    };
    // Best effort, as for the client: a socket that refuses it still works.
    let _ = upstream.set_nodelay(true);
    let streams = Mutex::new(Streams::new(ctx.clone()));
    {
        let relay = relay(&streams, &client, &upstream, buffered);
        tokio::pin!(relay);
        let cutoff = tokio::select! {
            biased;
            cutoff = relay.as_mut() => cutoff,
            _ = ctx.cancel.cancelled() => {
                tokio::time::timeout(ctx.shutdown_grace, relay.as_mut())
                    .await
                    .unwrap_or(Cutoff::Shutdown)
            }
        };
        streams.lock().cut_off(cutoff);
    }
    drop(upstream);
    close_gently(ctx, &client).await;
    None
}

/// Ends the client's connection with its last frames delivered: closes the sending side,
/// then reads (and drops) what the client still sends until it closes too, for at most
/// [`LINGER`], or until the proxy shuts down.
///
/// Closing a socket with unread bytes in it resets the connection, and a client that is
/// still uploading when the target goes away would see the reset before the proxy's
/// answers (a client writing first then never reads them). A client done sending has
/// closed its side already: this returns at once.
async fn close_gently(ctx: &Context, client: &TcpStream) {
    let _ = socket2::SockRef::from(client).shutdown(std::net::Shutdown::Write);
    let drain = async {
        let mut sink = [0u8; 4096];
        loop {
            if client.readable().await.is_err() {
                return;
            }
            match client.try_read(&mut sink) {
                Ok(0) => return,
                Err(error) if error.kind() != io::ErrorKind::WouldBlock => return,
                _ => {}
            }
        }
    };
    tokio::select! {
        _ = ctx.cancel.cancelled() => {}
        _ = tokio::time::timeout(LINGER, drain) => {}
    }
}

/// The largest frame each peer accepts, learnt from the `SETTINGS` frames that pass (a peer
/// may only send larger frames once the other's `SETTINGS` reached it, through the relay).
///
/// The relay passes on whole frames, so it holds a frame until all of it has come. A frame
/// announced larger than its receiver accepts is one the receiver would refuse at once
/// (`FRAME_SIZE_ERROR`, closing the connection); the relay does not wait for up to 16 MiB of
/// it, but closes the connection itself.
struct FrameLimits {
    /// What the client accepts: the limit on the target's frames.
    client: AtomicUsize,
    /// What the target accepts: the limit on the client's frames.
    target: AtomicUsize,
}

/// How one direction of the relay ended.
enum End {
    /// The sending side closed (or failed).
    Closed,
    /// The receiving side could not be written to: for requests, the target's connection
    /// broke. The response side finds it broken too and answers for the target.
    WriteFailed,
    /// The sending side announced a frame larger than the other side accepts.
    FrameTooLarge,
}

/// Both directions, until the target's side is over (after the client stopped sending, the
/// target may still answer what it was asked). Returns why streams still open did not finish.
async fn relay(
    streams: &Mutex<Streams>,
    client: &TcpStream,
    upstream: &TcpStream,
    first: BytesMut,
) -> Cutoff {
    let limits = FrameLimits {
        client: AtomicUsize::new(DEFAULT_MAX_FRAME),
        target: AtomicUsize::new(DEFAULT_MAX_FRAME),
    };
    let client_sent = Notify::new();
    let requests = requests(streams, &limits, &client_sent, client, upstream, first);
    let responses = responses(streams, &limits, &client_sent, upstream, client);
    tokio::pin!(requests, responses);
    tokio::select! {
        end = requests.as_mut() => {
            match end {
                End::FrameTooLarge => return Cutoff::ClientFrameTooLarge,
                End::Closed => {
                    // Streams the target leaves unanswered from here on were given up by the
                    // client.
                    streams.lock().client_closed();
                    let _ = socket2::SockRef::from(upstream).shutdown(std::net::Shutdown::Write);
                }
                // The target's side failed, not the client's: reading from it fails too, and
                // the response side answers the streams left open.
                End::WriteFailed => {}
            }
            responses_cutoff(responses.await)
        }
        end = responses.as_mut() => responses_cutoff(end),
    }
}

/// Why streams still open did not finish, once the target's side is over.
fn responses_cutoff(end: End) -> Cutoff {
    match end {
        End::FrameTooLarge => Cutoff::TargetFrameTooLarge,
        End::Closed | End::WriteFailed => Cutoff::ClientGone,
    }
}

/// Client to target: request heads, bodies and resets. `client_sent` is notified after each
/// batch of the client's frames has been looked at.
async fn requests(
    streams: &Mutex<Streams>,
    limits: &FrameLimits,
    client_sent: &Notify,
    client: &TcpStream,
    upstream: &TcpStream,
    mut buf: BytesMut,
) -> End {
    let mut blocks = BlockReader::default();
    // The preface is forwarded with the first frames, not parsed.
    let mut start = PREFACE.len();
    loop {
        let end = complete_frames(&buf, start);
        if end > 0 {
            let chunk = buf.split_to(end).freeze();
            observe_requests(streams, limits, &mut blocks, &chunk, start);
            client_sent.notify_one();
            start = 0;
            if write_all(upstream, &chunk).await.is_err() {
                return End::WriteFailed;
            }
        }
        if too_large(&buf[start..], &limits.target) {
            return End::FrameTooLarge;
        }
        match read_more(client, &mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(_) => {}
        }
    }
}

/// Target to client: response heads, bodies, trailers and resets, with the proxy's answers
/// put in where the target failed a stream.
async fn responses(
    streams: &Mutex<Streams>,
    limits: &FrameLimits,
    client_sent: &Notify,
    upstream: &TcpStream,
    client: &TcpStream,
) -> End {
    let mut blocks = BlockReader::default();
    let mut buf = BytesMut::new();
    // Whether enough of the target's first bytes came to tell an HTTP/2 frame from an
    // HTTP/1.x answer, and whether they were looked at.
    let mut heard = false;
    let mut checked = false;
    loop {
        if !heard && !buf.is_empty() {
            heard = buf.len() >= HTTP1_START.len() || !HTTP1_START.starts_with(&buf);
        }
        if heard && !checked {
            checked = true;
            if let Some(status_line) = http1_answer(&buf) {
                // The target does not speak h2c: answer for it, as the hyper path does. It
                // may have answered the preface before the client's first request came, and
                // clients such as grpc-go's and grpc-js's send none before the server's
                // `SETTINGS`: the proxy sends them (empty: the defaults), as the target sent
                // no HTTP/2 at all.
                let mut settings = BytesMut::new();
                put_frame_header(&mut settings, 0, FRAME_SETTINGS, 0, 0);
                if write_all(client, &settings).await.is_err() {
                    return End::Closed;
                }
                first_stream(streams, client_sent).await;
                let target = streams.lock().target();
                let failure = Failure::not_http2(&target, &status_line);
                let farewell = target_gone(streams, &blocks, failure);
                let _ = write_all(client, &farewell).await;
                return End::Closed;
            }
        }
        let end = complete_frames(&buf, 0);
        if end > 0 {
            let chunk = buf.split_to(end).freeze();
            let rewritten = observe_responses(streams, limits, &mut blocks, &chunk);
            let out = rewritten.as_deref().unwrap_or(&chunk);
            if write_all(client, out).await.is_err() {
                return End::Closed;
            }
        }
        if too_large(&buf, &limits.client) {
            return End::FrameTooLarge;
        }
        let closed = match read_more(upstream, &mut buf).await {
            Ok(0) => io::ErrorKind::UnexpectedEof.into(),
            Ok(_) => continue,
            Err(error) => error,
        };
        // The target is gone: answer for it and close.
        let target = streams.lock().target();
        // Classified as the raw HTTP/1.1 path classifies a target that went away.
        let gone = match closed.kind() {
            io::ErrorKind::UnexpectedEof => Failure::from_raw(RawFailure::Closed, &target),
            _ => Failure::from_raw(RawFailure::Io(&closed), &target),
        };
        let farewell = target_gone(streams, &blocks, gone);
        let _ = write_all(client, &farewell).await;
        return End::Closed;
    }
}

/// How long a target that does not speak h2c waits for the client's first request, to answer
/// it with the proxy's 502 rather than with the connection's `GOAWAY` alone.
const FIRST_STREAM_WAIT: Duration = Duration::from_secs(1);

/// Returns once the client has opened a stream, or has not within [`FIRST_STREAM_WAIT`].
async fn first_stream(streams: &Mutex<Streams>, client_sent: &Notify) {
    let deadline = tokio::time::Instant::now() + FIRST_STREAM_WAIT;
    while streams.lock().unfinished().is_empty() {
        if tokio::time::timeout_at(deadline, client_sent.notified())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// How an HTTP/1.x response starts.
const HTTP1_START: &[u8] = b"HTTP/1.";

/// The status line (up to its first 80 bytes) when `first` (the first bytes a target sent on
/// an h2c connection) is an HTTP/1.x response rather than an HTTP/2 frame: a target that
/// does not speak h2c answers the preface with `HTTP/1.1 400 Bad Request` or the like.
fn http1_answer(first: &[u8]) -> Option<String> {
    if !first.starts_with(HTTP1_START) {
        return None;
    }
    let line = first
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(first);
    let line = &line[..line.len().min(80)];
    Some(String::from_utf8_lossy(line).into_owned())
}

/// The end of the last complete frame in `buf` (frames starting at `start`), or `start` if
/// none is complete yet.
fn complete_frames(buf: &[u8], start: usize) -> usize {
    let mut end = start;
    while let Some(head) = FrameHead::parse(&buf[end..]) {
        let next = end + FRAME_HEADER + head.len;
        if next > buf.len() {
            break;
        }
        end = next;
    }
    end
}

/// Whether the frame begun at the start of `buf` is announced larger than `limit` allows.
fn too_large(buf: &[u8], limit: &AtomicUsize) -> bool {
    FrameHead::parse(buf).is_some_and(|head| head.len > limit.load(Ordering::Relaxed))
}

/// The `SETTINGS_MAX_FRAME_SIZE` a `SETTINGS` payload sets, if it sets one.
fn max_frame_size(payload: &[u8]) -> Option<usize> {
    // The last one counts, if a frame sets it twice.
    payload
        .chunks_exact(6)
        .rev()
        .find(|setting| u16::from_be_bytes([setting[0], setting[1]]) == SETTINGS_MAX_FRAME_SIZE)
        .map(|setting| {
            u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]) as usize
        })
}

/// Reads more of `stream` into `buf`, making room for a whole frame if one has begun.
async fn read_more(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let frame = FrameHead::parse(buf).map_or(0, |head| FRAME_HEADER + head.len);
    loop {
        stream.readable().await?;
        let spare = buf.capacity() - buf.len();
        if spare < MIN_READ || buf.capacity() < frame {
            buf.reserve(READ_SIZE.max(frame.saturating_sub(buf.len())));
        }
        match read_draining(stream, buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
}

/// Walks the frames of `chunk` from `start` (client to target) and reports them.
fn observe_requests(
    streams: &Mutex<Streams>,
    limits: &FrameLimits,
    blocks: &mut BlockReader,
    chunk: &Bytes,
    start: usize,
) {
    let mut streams = streams.lock();
    for (head, payload) in frames(chunk, start) {
        match head.kind {
            FRAME_SETTINGS if !head.has(FLAG_ACK) => {
                if let Some(size) = max_frame_size(&chunk[payload]) {
                    limits.client.store(size, Ordering::Relaxed);
                }
            }
            FRAME_HEADERS | FRAME_CONTINUATION => {
                if let Some(block) = blocks.feed(head, &chunk[payload.clone()]) {
                    streams.request_headers(block.stream, block.fields, block.grpc, block.end);
                    if let Some(error) = block.error {
                        streams.request_problem(block.stream, error);
                    }
                }
            }
            FRAME_DATA => {
                let Some(data) = data_range(head, chunk, payload) else {
                    continue;
                };
                let end = head.has(FLAG_END_STREAM);
                let kept = streams
                    .wants_request_bytes(head.stream)
                    .then(|| chunk.slice(data.clone()));
                streams.request_data(head.stream, kept.as_ref(), data.len(), end);
            }
            FRAME_RST_STREAM => {
                streams.client_reset(head.stream, error_code(&chunk[payload]));
            }
            _ => {}
        }
    }
}

/// Walks the frames of `chunk` (target to client) and reports them. Returns the bytes to
/// send instead of `chunk` when the proxy answers a stream the target reset.
fn observe_responses(
    streams: &Mutex<Streams>,
    limits: &FrameLimits,
    blocks: &mut BlockReader,
    chunk: &Bytes,
) -> Option<BytesMut> {
    let mut streams = streams.lock();
    let mut rewritten: Option<BytesMut> = None;
    // Bytes of `chunk` up to here are in `rewritten` already (when it exists).
    let mut copied = 0;
    for (head, payload) in frames(chunk, 0) {
        let frame_start = payload.start - FRAME_HEADER;
        if let Some(out) = rewritten.as_mut() {
            out.extend_from_slice(&chunk[copied..frame_start]);
            copied = frame_start;
        }
        match head.kind {
            FRAME_SETTINGS if !head.has(FLAG_ACK) => {
                if let Some(size) = max_frame_size(&chunk[payload.clone()]) {
                    limits.target.store(size, Ordering::Relaxed);
                }
            }
            FRAME_HEADERS | FRAME_PUSH_PROMISE | FRAME_CONTINUATION => {
                // A pushed stream's head is decoded (the table must follow) but not recorded.
                if let Some(block) = blocks.feed(head, &chunk[payload.clone()]) {
                    if block.kind == FRAME_HEADERS {
                        streams.response_headers(
                            block.stream,
                            block.fields,
                            block.status,
                            block.end,
                        );
                    }
                }
            }
            FRAME_DATA => {
                let Some(data) = data_range(head, chunk, payload.clone()) else {
                    continue;
                };
                let end = head.has(FLAG_END_STREAM);
                let kept = streams
                    .wants_response_bytes(head.stream)
                    .then(|| chunk.slice(data.clone()));
                streams.response_data(head.stream, kept.as_ref(), data.len(), end);
            }
            FRAME_GOAWAY => {
                if let Some(last) = chunk[payload.clone()].get(..4) {
                    let last = u32::from_be_bytes([last[0], last[1], last[2], last[3]]);
                    streams.target_goaway(last & 0x7fff_ffff);
                }
            }
            FRAME_RST_STREAM => {
                let id = head.stream;
                if streams.target_reset_after_response(id) {
                    // Passed on as it is: the client has its whole response.
                    continue;
                }
                let code = error_code(&chunk[payload.clone()]);
                let target = streams.target();
                let cause = format!("RST_STREAM with {}", error_code_name(code));
                if streams.awaits_response(id) && code != REFUSED_STREAM {
                    let failure = Failure::relayed(FailureKind::UpstreamReset, &target, cause);
                    let out = rewrite(&mut rewritten, chunk, frame_start);
                    answer(&mut streams, out, id, &failure);
                    copied = payload.end;
                } else if streams.awaits_response(id) {
                    let error =
                        format!("upstream: the target {target} refused the stream: {cause}");
                    streams.fail_response(id, error, None);
                } else {
                    let delivered = streams.response_bytes(id);
                    let kind = FailureKind::UpstreamReset;
                    let failure = Failure::after_body(kind, &target, delivered, cause);
                    if streams.is_grpc(id) {
                        let out = rewrite(&mut rewritten, chunk, frame_start);
                        end_call(&mut streams, out, id, &failure);
                        copied = payload.end;
                    } else {
                        streams.fail_response(id, failure.event_error(), None);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(out) = rewritten.as_mut() {
        out.extend_from_slice(&chunk[copied..]);
    }
    rewritten
}

/// The bytes to send instead of `chunk`, started with its frames before `frame_start` when
/// this is the first frame of the chunk the proxy replaces.
fn rewrite<'a>(
    rewritten: &'a mut Option<BytesMut>,
    chunk: &[u8],
    frame_start: usize,
) -> &'a mut BytesMut {
    rewritten.get_or_insert_with(|| {
        let mut out = BytesMut::with_capacity(chunk.len() + 512);
        out.extend_from_slice(&chunk[..frame_start]);
        out
    })
}

/// The target's connection ended, or is of no use (`gone` says how): every stream still
/// waiting for its response is failed and answered, and the frames to send the client before
/// closing its connection are returned.
fn target_gone(streams: &Mutex<Streams>, blocks: &BlockReader, gone: Failure) -> BytesMut {
    let mut streams = streams.lock();
    if streams.is_client_closed() {
        // The target only followed the client: nothing failed on its side.
        streams.cut_off(Cutoff::ClientGone);
        return BytesMut::new();
    }
    let target = streams.target();
    let mut out = BytesMut::new();
    // In the middle of a header block nothing else may be sent: the client only gets the
    // connection closed.
    let can_answer = blocks.pending.is_none();
    let mut ids = streams.unfinished();
    ids.sort_unstable();
    let goaway = streams.target_goaway_last();
    for id in ids {
        // Above the last stream of the target's `GOAWAY`: not processed, as the client was
        // told (it may retry them); stream 0 and even ids are no client streams to answer.
        if goaway.is_some_and(|last| id > last) || id % 2 == 0 {
            let error = match goaway {
                Some(last) if id > last => format!(
                    "upstream: the target {target} did not process the stream (GOAWAY with \
                     last stream {last}) and closed the connection"
                ),
                _ => gone.event_error(),
            };
            streams.fail_response(id, error, None);
            continue;
        }
        if streams.awaits_response(id) {
            if can_answer {
                answer(&mut streams, &mut out, id, &gone);
            } else {
                streams.fail_response(id, gone.event_error(), None);
            }
        } else {
            let delivered = streams.response_bytes(id);
            let failure = Failure::after_body(gone.kind, &target, delivered, gone.cause.clone());
            if !can_answer {
                streams.fail_response(id, failure.event_error(), None);
            } else if streams.is_grpc(id) {
                end_call(&mut streams, &mut out, id, &failure);
            } else {
                streams.fail_response(id, failure.event_error(), None);
                put_frame_header(&mut out, 4, FRAME_RST_STREAM, 0, id);
                out.extend_from_slice(&INTERNAL_ERROR.to_be_bytes());
            }
        }
    }
    // After the target's own `GOAWAY` another could only repeat or contradict it.
    if can_answer && goaway.is_none() {
        let debug = format!("rig proxy: {}", gone.summary);
        let debug = debug.as_bytes();
        put_frame_header(&mut out, 8 + debug.len(), FRAME_GOAWAY, 0, 0);
        out.extend_from_slice(&streams.last_client_stream().to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(debug);
    }
    out
}

/// Answers stream `id` with the proxy's response for `failure` (appended to `out`) and
/// records it.
///
/// The response is its `HEADERS` alone (the failure kind in the marker header): a `DATA`
/// frame would spend flow-control window the target does not know of (RFC 9113 §5.2), and
/// the client's `WINDOW_UPDATE`s for it would credit the target with window the client never
/// gave. A client still sending the request is then told to stop, with
/// `RST_STREAM (NO_ERROR)` after the complete response (RFC 9113 §8.1).
fn answer(streams: &mut Streams, out: &mut BytesMut, id: u32, failure: &Failure) {
    let (response, mut headers, _) = failure.response(streams.is_grpc(id));
    let status = response.status().as_u16();
    let body = Bytes::new();
    headers.remove(http::header::CONTENT_LENGTH);
    put_response(out, id, status, &headers, &body);
    if streams.awaits_request_end(id) {
        put_frame_header(out, 4, FRAME_RST_STREAM, 0, id);
        out.extend_from_slice(&NO_ERROR.to_be_bytes());
    }
    streams.fail_response(id, failure.event_error(), Some((status, headers, body)));
}

/// Ends gRPC call `id`, whose response broke off after its head, with trailers carrying the
/// failure's status (appended to `out`), as the hyper path does, and records it.
fn end_call(streams: &mut Streams, out: &mut BytesMut, id: u32, failure: &Failure) {
    let trailers = failure.grpc_trailers();
    let mut block = Vec::with_capacity(256);
    put_fields(&mut block, &trailers);
    put_headers_frame(out, id, &block, true);
    streams.fail_with_trailers(id, failure.event_error(), trailers);
}

/// Appends a complete response on stream `id`: `HEADERS`, then the body (if any) as one
/// `DATA` frame.
fn put_response(out: &mut BytesMut, id: u32, status: u16, headers: &HeaderMap, body: &[u8]) {
    let mut block = Vec::with_capacity(256);
    put_literal(&mut block, b":status", status.to_string().as_bytes());
    put_fields(&mut block, headers);
    put_headers_frame(out, id, &block, body.is_empty());
    if !body.is_empty() {
        put_frame_header(out, body.len(), FRAME_DATA, FLAG_END_STREAM, id);
        out.extend_from_slice(body);
    }
}

/// The complete frames of `chunk` from `start`: each header and its payload's range.
fn frames(chunk: &[u8], start: usize) -> impl Iterator<Item = (FrameHead, Range<usize>)> + '_ {
    let mut at = start;
    std::iter::from_fn(move || {
        let head = FrameHead::parse(chunk.get(at..)?)?;
        let payload = at + FRAME_HEADER..at + FRAME_HEADER + head.len;
        if payload.end > chunk.len() {
            return None;
        }
        at = payload.end;
        Some((head, payload))
    })
}

/// The data of a `DATA` frame in `chunk` (its padding left out), or `None` if the padding
/// does not fit (the peer rejects the frame).
fn data_range(head: FrameHead, chunk: &[u8], payload: Range<usize>) -> Option<Range<usize>> {
    if !head.has(FLAG_PADDED) {
        return Some(payload);
    }
    let pad = usize::from(*chunk.get(payload.start)?);
    (payload.len() > pad).then(|| payload.start + 1..payload.end - pad)
}

/// The error code of a `RST_STREAM` payload.
fn error_code(payload: &[u8]) -> u32 {
    payload.get(..4).map_or(0, |code| {
        u32::from_be_bytes([code[0], code[1], code[2], code[3]])
    })
}

/// A header block, decoded.
struct Block {
    kind: u8,
    stream: u32,
    end: bool,
    fields: Fields,
    /// `:status` (responses).
    status: u16,
    /// `content-type: application/grpc...` (requests).
    grpc: bool,
    /// Why the block could not be decoded (whole).
    error: Option<String>,
}

/// A header block spread over `CONTINUATION` frames.
struct Pending {
    kind: u8,
    stream: u32,
    end: bool,
    block: Vec<u8>,
    /// More than [`MAX_HEADER_BLOCK`] came: the rest was passed on but not kept.
    oversized: bool,
}

/// One direction's header blocks: assembled from `HEADERS` (or `PUSH_PROMISE`) and
/// `CONTINUATION` frames and decoded with that direction's HPACK table.
#[derive(Default)]
struct BlockReader {
    hpack: hpack::Decoder,
    pending: Option<Pending>,
    /// Set once a block failed to decode: the table is lost, later blocks are not decoded.
    broken: Option<String>,
}

impl BlockReader {
    /// Takes one `HEADERS`, `PUSH_PROMISE` or `CONTINUATION` frame; returns the block it
    /// completes.
    fn feed(&mut self, head: FrameHead, payload: &[u8]) -> Option<Block> {
        let ends = head.has(FLAG_END_HEADERS);
        if head.kind == FRAME_CONTINUATION {
            let mut pending = self.pending.take()?;
            if pending.block.len() + payload.len() <= MAX_HEADER_BLOCK {
                pending.block.extend_from_slice(payload);
            } else {
                pending.oversized = true;
            }
            if !ends {
                self.pending = Some(pending);
                return None;
            }
            return Some(self.decode(&pending, &pending.block));
        }
        let pending = Pending {
            kind: head.kind,
            stream: head.stream,
            end: head.has(FLAG_END_STREAM),
            block: Vec::new(),
            oversized: false,
        };
        let fragment = fragment(head, payload);
        if !ends {
            self.pending = Some(Pending {
                block: fragment.to_vec(),
                ..pending
            });
            return None;
        }
        // The usual block, whole in one frame: decoded where it lies, not copied.
        Some(self.decode(&pending, fragment))
    }

    /// Decodes `block`, the whole header block `pending` started.
    fn decode(&mut self, pending: &Pending, block: &[u8]) -> Block {
        let mut fields = FieldsBuilder::default();
        let (mut status, mut grpc) = (0, false);
        if pending.oversized && self.broken.is_none() {
            // Part of the block was not decoded, so the table may have missed entries.
            self.broken = Some(format!(
                "proxy: a header block of more than {MAX_HEADER_BLOCK} bytes was not decoded"
            ));
        }
        let error = match &self.broken {
            Some(error) => Some(error.clone()),
            None => {
                let decoded = self.hpack.decode(block, |name, value| {
                    match name {
                        b":status" => status = parse_status(value).unwrap_or(0),
                        b"content-type" => grpc = rig_protocols::grpc::is_grpc_content_type(value),
                        _ => {}
                    }
                    fields.push(name, value);
                });
                decoded.err().map(|error| {
                    let error =
                        format!("proxy: the HPACK header block could not be decoded: {error}");
                    self.broken = Some(error.clone());
                    error
                })
            }
        };
        Block {
            kind: pending.kind,
            stream: pending.stream,
            end: pending.end,
            fields: fields.finish(),
            status,
            grpc,
            error,
        }
    }
}

/// The header block fragment of a `HEADERS` or `PUSH_PROMISE` frame: padding, priority
/// and promised stream id left out. A frame whose padding does not fit gives an empty
/// fragment (the peer rejects the frame anyway).
fn fragment(head: FrameHead, payload: &[u8]) -> &[u8] {
    let mut rest = payload;
    let mut pad = 0;
    if head.has(FLAG_PADDED) {
        let Some((&len, tail)) = rest.split_first() else {
            return &[];
        };
        pad = usize::from(len);
        rest = tail;
    }
    let skip = match head.kind {
        FRAME_HEADERS if head.has(FLAG_PRIORITY) => 5,
        FRAME_PUSH_PROMISE => 4,
        _ => 0,
    };
    if rest.len() < skip + pad {
        return &[];
    }
    &rest[skip..rest.len() - pad]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h2_wire::FLAG_END_HEADERS;

    #[test]
    fn settings_raise_the_frame_limit_a_peer_is_held_to() {
        // HEADER_TABLE_SIZE 4096, then MAX_FRAME_SIZE 1 MiB.
        let payload = [0, 1, 0, 0, 0x10, 0, 0, 5, 0, 0x10, 0, 0];
        assert_eq!(max_frame_size(&payload), Some(1 << 20));
        assert_eq!(max_frame_size(&payload[..6]), None);
        assert_eq!(max_frame_size(&[]), None);

        let limit = AtomicUsize::new(DEFAULT_MAX_FRAME);
        let announced = |len: usize| frame(FRAME_DATA, 0, 1, &vec![0; len]);
        assert!(!too_large(&announced(DEFAULT_MAX_FRAME)[..9], &limit));
        assert!(too_large(&announced(DEFAULT_MAX_FRAME + 1)[..9], &limit));
        assert!(!too_large(&[0, 0xff], &limit), "no whole frame header yet");
        limit.store(1 << 20, Ordering::Relaxed);
        assert!(!too_large(&announced(DEFAULT_MAX_FRAME + 1)[..9], &limit));
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_frame_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out.to_vec()
    }

    #[test]
    fn only_whole_frames_are_forwarded() {
        let mut buf = PREFACE.to_vec();
        assert_eq!(
            complete_frames(&buf, PREFACE.len()),
            PREFACE.len(),
            "the preface alone"
        );
        let first = frame(FRAME_DATA, 0, 1, b"abc");
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&frame(FRAME_DATA, 0, 1, b"defgh")[..7]);
        assert_eq!(
            complete_frames(&buf, PREFACE.len()),
            PREFACE.len() + first.len()
        );
        assert_eq!(complete_frames(&[0, 0], 0), 0, "not even a frame header");
    }

    #[test]
    fn padding_priority_and_promised_ids_are_not_header_block() {
        // HEADERS, padded (2 bytes) with priority: pad length, 5 priority bytes, block, pad.
        let payload = [2, 0, 0, 0, 3, 16, b'h', b'b', 0, 0];
        let head = FrameHead {
            len: payload.len(),
            kind: FRAME_HEADERS,
            flags: FLAG_PADDED | FLAG_PRIORITY | FLAG_END_HEADERS,
            stream: 1,
        };
        assert_eq!(fragment(head, &payload), b"hb");
        let promise = FrameHead {
            kind: FRAME_PUSH_PROMISE,
            flags: FLAG_END_HEADERS,
            ..head
        };
        assert_eq!(fragment(promise, &[0, 0, 0, 2, b'p']), b"p");
        // Padding longer than the frame: no fragment, no panic.
        assert_eq!(fragment(head, &[9, 1, 2]), b"");
        assert_eq!(fragment(head, &[]), b"");
    }

    #[test]
    fn padded_data_is_captured_without_its_padding() {
        let chunk = frame(FRAME_DATA, FLAG_PADDED, 1, &[3, b'x', b'y', 0, 0, 0]);
        let head = FrameHead::parse(&chunk).unwrap();
        let payload = FRAME_HEADER..chunk.len();
        let data = data_range(head, &chunk, payload.clone()).unwrap();
        assert_eq!(&chunk[data], b"xy");
        let bad = frame(FRAME_DATA, FLAG_PADDED, 1, &[7, b'x']);
        assert_eq!(data_range(head, &bad, FRAME_HEADER..bad.len()), None);
        let unpadded = frame(FRAME_DATA, 0, 1, b"xy");
        let head = FrameHead::parse(&unpadded).unwrap();
        let data = data_range(head, &unpadded, FRAME_HEADER..unpadded.len()).unwrap();
        assert_eq!(&unpadded[data], b"xy");
    }

    #[test]
    fn a_header_block_continued_over_frames_is_decoded_whole() {
        let mut block = Vec::new();
        put_literal(&mut block, b":method", b"POST");
        put_literal(&mut block, b":path", b"/split");
        put_literal(&mut block, b"content-type", b"application/grpc+proto");
        let (first, rest) = block.split_at(5);
        let mut reader = BlockReader::default();
        let head = FrameHead {
            len: first.len(),
            kind: FRAME_HEADERS,
            flags: FLAG_END_STREAM,
            stream: 3,
        };
        assert!(reader.feed(head, first).is_none(), "waits for CONTINUATION");
        let continuation = FrameHead {
            len: rest.len(),
            kind: FRAME_CONTINUATION,
            flags: FLAG_END_HEADERS,
            stream: 3,
        };
        let block = reader.feed(continuation, rest).expect("the whole block");
        assert_eq!((block.stream, block.end, block.grpc), (3, true, true));
        assert!(block.error.is_none());
        let parts = block.fields.into_parts();
        assert_eq!(parts.method, Some(http::Method::POST));
        assert_eq!(parts.uri(), "/split");

        // A block that does not decode breaks the reader for good: later blocks say why.
        let broken = FrameHead {
            len: 1,
            kind: FRAME_HEADERS,
            flags: FLAG_END_HEADERS,
            stream: 5,
        };
        let error = reader.feed(broken, &[0x80]).unwrap().error.unwrap();
        assert!(error.contains("could not be decoded"), "{error}");
        let later = reader
            .feed(
                FrameHead {
                    stream: 7,
                    ..broken
                },
                &[0x82],
            )
            .unwrap();
        assert_eq!(later.error, Some(error));
    }

    #[test]
    fn a_header_block_that_never_ends_is_not_kept_whole() {
        let mut reader = BlockReader::default();
        let first = FrameHead {
            len: 1,
            kind: FRAME_HEADERS,
            flags: 0,
            stream: 1,
        };
        assert!(reader.feed(first, &[0x82]).is_none());
        let piece = vec![0x82; 16 * 1024];
        let continuation = FrameHead {
            len: piece.len(),
            kind: FRAME_CONTINUATION,
            flags: 0,
            stream: 1,
        };
        for _ in 0..100 {
            assert!(reader.feed(continuation, &piece).is_none());
        }
        let kept = reader.pending.as_ref().unwrap().block.len();
        assert!(kept <= MAX_HEADER_BLOCK, "{kept} bytes kept");
        let last = FrameHead {
            flags: FLAG_END_HEADERS,
            ..continuation
        };
        let block = reader.feed(last, &piece).unwrap();
        assert!(block.error.unwrap().contains("was not decoded"));
    }
}
