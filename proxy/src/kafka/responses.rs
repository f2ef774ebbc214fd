//! Broker → client: responses are forwarded chunk by chunk as they are read. Only two things
//! are ever held back: the first eight bytes of a frame (its size and correlation id) until
//! they are all there, to look up the request it answers; and whole responses that can name
//! brokers (Metadata, FindCoordinator, DescribeCluster, and the Produce v10+ and Fetch v16+
//! responses that may carry KIP-951 `node_endpoints`), which are rewritten to advertise the
//! proxy's listeners before they are forwarded.
//!
//! An exchange is recorded once its response is written to the client. Whatever way the relay
//! ends (the broker closing in the middle of a response, a failed read or write, the
//! connection torn down because the other direction failed or the proxy shuts down), the
//! exchanges it had taken from `pending` are still recorded, with an error saying why their
//! responses did not reach the client whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rig_protocols::kafka::details::has_topics;
use rig_protocols::kafka::frame::FrameError;
use rig_protocols::kafka::rewrite::{names_brokers, rewrite_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};

use super::brokers::Brokers;
use super::connection::{Cut, Ended};
use super::pending::{Pending, Request};
use super::record::{KafkaRecord, METADATA};
use super::requests::CHUNK;
use super::DETAIL_CAP;
use crate::tcp::error_text::describe;

/// Where the relay is in the response stream.
#[derive(Default)]
enum State {
    /// Between frames: the next bytes are a size prefix.
    #[default]
    Between,
    /// Forwarding a frame as it comes, keeping its first bytes if they have details.
    Passing {
        request: Option<Request>,
        len: usize,
        remaining: usize,
        keep: bool,
        kept: Vec<u8>,
    },
    /// Collecting a frame that names brokers, to rewrite it once complete.
    Collecting {
        request: Request,
        remaining: usize,
        frame: Vec<u8>,
    },
}

impl State {
    /// The request whose response is being read, if any, and how much of that response came.
    fn take_request(&mut self) -> Option<(Request, Cut)> {
        let cut = self.cut(&[])?;
        match std::mem::take(self) {
            State::Between => None,
            State::Passing { request, .. } => request.map(|request| (request, cut)),
            State::Collecting { request, .. } => Some((request, cut)),
        }
    }

    /// Where the stream is cut if it ends here, with `held` bytes not yet consumed; `None` at
    /// a frame boundary.
    fn cut(&self, held: &[u8]) -> Option<Cut> {
        match self {
            State::Between if held.is_empty() => None,
            State::Between => {
                // The first bytes of the next frame: a size (a valid one: an invalid size
                // fails the relay) and part of its correlation id.
                let total = match held {
                    [a, b, c, d, ..] => Some(4 + u64::from(u32::from_be_bytes([*a, *b, *c, *d]))),
                    _ => None,
                };
                Some(Cut {
                    got: held.len() as u64,
                    total,
                })
            }
            State::Passing { len, remaining, .. } => Some(Cut {
                got: 4 + (len - remaining) as u64,
                total: Some(4 + *len as u64),
            }),
            State::Collecting {
                remaining, frame, ..
            } => Some(Cut {
                got: 4 + frame.len() as u64,
                total: Some(4 + (frame.len() + remaining) as u64),
            }),
        }
    }
}

/// Why the exchanges of a relay dropped before it ended are recorded as failed.
const TORN_DOWN: &str = "the connection closed before the response reached the client";

/// The client side of the relay, what it has written, and the exchanges not yet recorded.
struct Out<'a, 'b> {
    to: &'a mut WriteHalf<'b>,
    written: &'a AtomicU64,
    brokers: &'a Brokers,
    broker: &'a Arc<str>,
    /// Where the relay is in the response stream, with the request being answered.
    state: State,
    /// Exchanges whose responses were read whole: recorded once written to the client.
    unwritten: Vec<KafkaRecord>,
}

impl Out<'_, '_> {
    /// Writes `bytes` to the client; see [`Out::write_parts`].
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.write_parts(&[bytes]).await
    }

    /// Writes `parts` to the client, in order. On success, records the exchanges whose
    /// responses they end; on failure, records every exchange left, with the error.
    async fn write_parts(&mut self, parts: &[&[u8]]) -> Result<(), String> {
        for bytes in parts.iter().filter(|bytes| !bytes.is_empty()) {
            if let Err(e) = self.to.write_all(bytes).await {
                let error = format!("writing to the client: {}", describe(&e));
                self.abandon(&error);
                return Err(error);
            }
            self.written
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        for record in self.unwritten.drain(..) {
            self.brokers.observer().record(Box::new(record));
        }
        Ok(())
    }

    /// At the end of the stream, writes what was held back of a response cut short to the
    /// client as it came: the part of a frame being collected (under its declared size), and
    /// the `held` first bytes of a frame.
    async fn write_held(&mut self, held: &[u8]) -> std::io::Result<()> {
        if let State::Collecting {
            frame, remaining, ..
        } = &self.state
        {
            let len = frame.len() + remaining;
            self.to.write_all(&(len as u32).to_be_bytes()).await?;
            self.to.write_all(frame).await?;
            self.written
                .fetch_add(4 + frame.len() as u64, Ordering::Relaxed);
        }
        self.to.write_all(held).await?;
        self.written.fetch_add(held.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// An exchange whose response is read whole, recorded with the next successful write.
    fn read_whole(&mut self, record: KafkaRecord) {
        self.unwritten.push(record);
    }

    /// Records every exchange left (responses read but not written, and the one being read)
    /// as failed with `error`.
    fn abandon(&mut self, error: &str) {
        let observer = self.brokers.observer();
        for record in self.unwritten.drain(..) {
            observer.record(Box::new(record.with_error(error.to_string())));
        }
        if let Some((request, cut)) = self.state.take_request() {
            observer.record(Box::new(KafkaRecord::failed(
                request,
                cut.got,
                error.to_string(),
                self.broker.clone(),
                self.brokers.topic_names().clone(),
            )));
        }
    }
}

impl Drop for Out<'_, '_> {
    /// The relay dropped before it ended (the other direction failed, or the proxy shuts
    /// down): its exchanges are recorded all the same.
    fn drop(&mut self) {
        self.abandon(TORN_DOWN);
    }
}

/// Relays responses from `from` to `to` until the broker stops sending, matching them with
/// `pending` requests and counting written bytes in `written`. Half-closes `to` at the end.
/// Returns why it stopped early, or the response the broker stopped in the middle of.
pub(super) async fn relay(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    pending: &Pending,
    written: &AtomicU64,
    brokers: &Brokers,
    broker: &Arc<str>,
) -> Ended {
    let max_frame = brokers.settings().max_frame;
    let mut out = Out {
        to: &mut to,
        written,
        brokers,
        broker,
        state: State::Between,
        unwritten: Vec::new(),
    };
    let mut buf = BytesMut::with_capacity(CHUNK);
    let result = loop {
        if buf.capacity() - buf.len() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        let n = match from.read_buf(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => {
                let error = format!("reading from the broker: {}", describe(&e));
                out.abandon(&error);
                break Err(error);
            }
        };
        debug_assert!(n <= buf.len());
        let mut pos = 0;
        let mut flushed = 0;
        let mut failure = None;
        loop {
            match std::mem::take(&mut out.state) {
                State::Between => {
                    let avail = &buf[pos..];
                    if avail.len() < 4 {
                        break;
                    }
                    let declared = i32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
                    let Some(len) = usize::try_from(declared)
                        .ok()
                        .filter(|len| *len <= max_frame)
                    else {
                        failure = Some(
                            FrameError {
                                declared,
                                max: max_frame,
                            }
                            .to_string(),
                        );
                        break;
                    };
                    let request = if len >= 4 {
                        if avail.len() < 8 {
                            break;
                        }
                        pending.take(i32::from_be_bytes([avail[4], avail[5], avail[6], avail[7]]))
                    } else {
                        None
                    };
                    match request {
                        Some(request) if names_brokers(request.api_key, request.api_version) => {
                            let before = flushed..pos;
                            pos += 4;
                            flushed = pos;
                            out.state = State::Collecting {
                                request,
                                remaining: len,
                                frame: Vec::with_capacity(len.min(1 << 20)),
                            };
                            out.write(&buf[before]).await?;
                        }
                        request => {
                            pos += 4;
                            // Only whole responses decode: a larger one is not copied.
                            let keep = len <= DETAIL_CAP
                                && request.as_ref().is_some_and(|r| has_topics(r.api_key));
                            let kept = if keep {
                                Vec::with_capacity(len)
                            } else {
                                Vec::new()
                            };
                            out.state = State::Passing {
                                request,
                                len,
                                remaining: len,
                                keep,
                                kept,
                            };
                        }
                    }
                }
                State::Passing {
                    request,
                    len,
                    remaining,
                    keep,
                    mut kept,
                } => {
                    let take = remaining.min(buf.len() - pos);
                    if keep {
                        let room = DETAIL_CAP.saturating_sub(kept.len()).min(take);
                        kept.extend_from_slice(&buf[pos..pos + room]);
                    }
                    pos += take;
                    let remaining = remaining - take;
                    if remaining > 0 {
                        out.state = State::Passing {
                            request,
                            len,
                            remaining,
                            keep,
                            kept,
                        };
                        break;
                    }
                    if let Some(request) = request {
                        let latency = request.read_at.elapsed();
                        let complete = kept.len() == len;
                        out.read_whole(KafkaRecord::answered(
                            request,
                            latency,
                            4 + len as u64,
                            Bytes::from(kept),
                            complete,
                            broker.clone(),
                            brokers.topic_names().clone(),
                        ));
                    }
                }
                State::Collecting {
                    request,
                    remaining,
                    mut frame,
                } => {
                    let take = remaining.min(buf.len() - pos);
                    frame.extend_from_slice(&buf[pos..pos + take]);
                    pos += take;
                    flushed = pos;
                    let remaining = remaining - take;
                    if remaining > 0 {
                        out.state = State::Collecting {
                            request,
                            remaining,
                            frame,
                        };
                        break;
                    }
                    let latency = request.read_at.elapsed();
                    let frame = Bytes::from(frame);
                    let rewritten = rewrite_response(
                        request.api_key,
                        request.api_version,
                        frame.clone(),
                        &mut |b| brokers.replacement(b),
                    );
                    let size = 4 + frame.len() as u64;
                    // A Produce or Fetch keeps its details (topics, partitions, errors), a
                    // Metadata response its topic names; the frame is whole already.
                    let keep = request.api_key == METADATA
                        || (has_topics(request.api_key) && frame.len() <= DETAIL_CAP);
                    let kept = if keep { frame.clone() } else { Bytes::new() };
                    let complete = keep;
                    let record = KafkaRecord::answered(
                        request,
                        latency,
                        size,
                        kept,
                        complete,
                        broker.clone(),
                        brokers.topic_names().clone(),
                    );
                    match rewritten {
                        Ok(Some(new_frame)) => {
                            out.read_whole(record.rewritten());
                            out.write(&new_frame).await?;
                        }
                        // Not decodable or nothing to replace: the original goes through.
                        Ok(None) | Err(_) => {
                            out.read_whole(record);
                            let size = (frame.len() as u32).to_be_bytes();
                            out.write_parts(&[&size, &frame]).await?;
                        }
                    }
                }
            }
        }
        out.write(&buf[flushed..pos]).await?;
        buf.advance(pos);
        if let Some(failure) = failure {
            break Err(format!("from the broker: {failure}"));
        }
    };
    let ended = match result {
        Err(failure) => Err(failure),
        // The broker closed in the middle of a response: the exchange is recorded as cut
        // short, and what was held back of it goes to the client as it came (failing to write
        // it changes nothing: the response is incomplete anyway).
        Ok(()) => match out.state.cut(&buf) {
            None => Ok(None),
            Some(cut) => {
                let cut = cut.describe("broker", "response");
                let _ = out.write_held(&buf).await;
                out.abandon(&cut);
                Ok(Some(cut))
            }
        },
    };
    let _ = out.to.shutdown().await;
    ended
}
