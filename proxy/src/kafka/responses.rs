//! Broker → client: responses are forwarded chunk by chunk as they are read. Only two things
//! are ever held back: the first eight bytes of a frame (its size and correlation id) until
//! they are all there, to look up the request it answers; and whole responses that can name
//! brokers (Metadata, FindCoordinator, DescribeCluster, and the Produce v10+ and Fetch v16+
//! responses that may carry KIP-951 `node_endpoints`), which are rewritten to advertise the
//! proxy's listeners before they are forwarded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rig_protocols::kafka::details::has_topics;
use rig_protocols::kafka::frame::FrameError;
use rig_protocols::kafka::rewrite::{names_brokers, rewrite_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};

use super::brokers::Brokers;
use super::pending::{Pending, Request};
use super::record::{KafkaRecord, METADATA};
use super::requests::CHUNK;
use super::DETAIL_CAP;
use crate::tcp::error_text::describe;

/// Where the relay is in the response stream.
enum State {
    /// Between frames: the next bytes are a size prefix.
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

/// The client side of the relay and what it has written.
struct Out<'a, 'b> {
    to: &'a mut WriteHalf<'b>,
    written: &'a AtomicU64,
}

impl Out<'_, '_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.to
            .write_all(bytes)
            .await
            .map_err(|e| format!("writing to the client: {}", describe(&e)))?;
        self.written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Relays responses from `from` to `to` until the broker stops sending, matching them with
/// `pending` requests and counting written bytes in `written`. Half-closes `to` at the end.
/// Returns why it stopped early, if it did.
pub(super) async fn relay(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    pending: &Pending,
    written: &AtomicU64,
    brokers: &Brokers,
    broker: &Arc<str>,
) -> Result<(), String> {
    let max_frame = brokers.settings().max_frame;
    let mut out = Out {
        to: &mut to,
        written,
    };
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut state = State::Between;
    let result = loop {
        if buf.capacity() - buf.len() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        let n = match from.read_buf(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(format!("reading from the broker: {}", describe(&e))),
        };
        debug_assert!(n <= buf.len());
        let mut pos = 0;
        let mut flushed = 0;
        let mut failure = None;
        loop {
            match std::mem::replace(&mut state, State::Between) {
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
                            out.write(&buf[flushed..pos]).await?;
                            pos += 4;
                            flushed = pos;
                            state = State::Collecting {
                                request,
                                remaining: len,
                                frame: Vec::with_capacity(len.min(1 << 20)),
                            };
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
                            state = State::Passing {
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
                        state = State::Passing {
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
                        brokers.observer().record(Box::new(KafkaRecord::answered(
                            request,
                            latency,
                            4 + len as u64,
                            Bytes::from(kept),
                            complete,
                            broker.clone(),
                            brokers.topic_names().clone(),
                        )));
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
                        state = State::Collecting {
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
                    let mut record = KafkaRecord::answered(
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
                            out.write(&new_frame).await?;
                            record = record.rewritten();
                        }
                        // Not decodable or nothing to replace: the original goes through.
                        Ok(None) | Err(_) => {
                            out.write(&(frame.len() as u32).to_be_bytes()).await?;
                            out.write(&frame).await?;
                        }
                    }
                    brokers.observer().record(Box::new(record));
                }
            }
        }
        out.write(&buf[flushed..pos]).await?;
        buf.advance(pos);
        if let Some(failure) = failure {
            break Err(format!("from the broker: {failure}"));
        }
    };
    // Whatever the broker sent that was held back goes to the client as it was.
    if result.is_ok() {
        if let State::Collecting {
            frame, remaining, ..
        } = &state
        {
            let len = frame.len() + remaining;
            out.write(&(len as u32).to_be_bytes()).await?;
            out.write(frame).await?;
        }
        out.write(&buf).await?;
    }
    let _ = out.to.shutdown().await;
    result
}
