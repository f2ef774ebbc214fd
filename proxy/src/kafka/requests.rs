//! Client → broker: frames are tracked as they pass and every chunk is forwarded as soon as it
//! is read. A request is queued as pending (or, when it gets no response, reported) before
//! its last byte is forwarded, so its response always finds it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rig_protocols::kafka::details::has_topics;
use rig_protocols::kafka::frame::{FrameScanner, Piece};
use rig_protocols::kafka::header::{expects_response, parse_request_head, HEADER_PREFIX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::brokers::Brokers;
use super::connection::{Cut, Ended};
use super::pending::{Pending, Request};
use super::record::KafkaRecord;
use super::DETAIL_CAP;
use crate::tcp::error_text::describe;

/// Size of the read buffer of each direction.
pub(super) const CHUNK: usize = 64 * 1024;

/// What the proxy keeps of the request being read.
struct Current {
    /// 4 + payload length.
    size: u64,
    len: usize,
    kept: Vec<u8>,
}

impl Current {
    fn new(len: usize) -> Current {
        Current {
            size: 4 + len as u64,
            len,
            kept: Vec::with_capacity(len.min(HEADER_PREFIX)),
        }
    }

    /// Keeps the header prefix of every request, and the whole of a Produce or Fetch request
    /// of at most [`DETAIL_CAP`] bytes (for its topics). Only whole requests decode, so a
    /// larger one is not copied at all.
    fn keep(&mut self, bytes: &[u8]) {
        let detailed = self.len <= DETAIL_CAP
            && self.kept.len() >= 2
            && has_topics(i16::from_be_bytes([self.kept[0], self.kept[1]]));
        let limit = if detailed { DETAIL_CAP } else { HEADER_PREFIX };
        let take = limit.saturating_sub(self.kept.len()).min(bytes.len());
        if detailed {
            // Grow once to the whole request, rather than doubling (and copying) up to it.
            self.kept.reserve_exact(self.len - self.kept.len());
        }
        self.kept.extend_from_slice(&bytes[..take]);
        let rest = &bytes[take..];
        // The API key may have become known with these bytes: a Produce or Fetch keeps going.
        if !detailed && !rest.is_empty() && self.kept.len() >= 2 && self.len <= DETAIL_CAP {
            let key = i16::from_be_bytes([self.kept[0], self.kept[1]]);
            if has_topics(key) {
                self.keep(rest);
            }
        }
    }

    /// The finished request, or `None` for a frame too short to have a header (forwarded
    /// untracked, as upstream does).
    fn finish(self) -> Option<(Request, bool)> {
        let fixed = self.kept.get(..8)?;
        let api_key = i16::from_be_bytes([fixed[0], fixed[1]]);
        let api_version = i16::from_be_bytes([fixed[2], fixed[3]]);
        let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        // Only a Produce can go unanswered; only then is the header decoded here.
        let answered = api_key != 0
            || parse_request_head(&self.kept)
                .map_or(true, |head| expects_response(&head, &self.kept));
        let complete = self.kept.len() == self.len;
        Some((
            Request {
                api_key,
                api_version,
                correlation_id,
                read_at: Instant::now(),
                size: self.size,
                kept: self.kept,
                complete,
            },
            answered,
        ))
    }
}

/// Relays requests from `from` to `to` (the connection to `broker`, one of `brokers`) until
/// the client stops sending, counting forwarded bytes in `forwarded`. Half-closes `to` at the
/// end. Returns why it stopped early, or the request the client stopped in the middle of.
pub(super) async fn relay(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    pending: &Pending,
    forwarded: &AtomicU64,
    brokers: &Brokers,
    broker: &Arc<str>,
) -> Ended {
    let mut buf = vec![0u8; CHUNK];
    let mut scanner = FrameScanner::new(brokers.settings().max_frame);
    let mut current: Option<Current> = None;
    // Requests that get no response (Produce with acks=0) in this chunk: recorded once they
    // have been written to the broker, or with the error that kept them from it.
    let mut unanswered: Vec<Request> = Vec::new();
    // Bytes read from the client, and where in them the frame being read starts.
    let (mut read, mut frame_start) = (0u64, 0u64);
    loop {
        let n = from
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading from the client: {}", describe(&e)))?;
        if n == 0 {
            break;
        }
        let mut input = &buf[..n];
        // Where the last whole frame in this chunk ended: on a framing error, nothing of the
        // offending frame is forwarded.
        let mut boundary = 0;
        let framing = loop {
            match scanner.next(&mut input) {
                Ok(Some(Piece::Start { len })) => current = Some(Current::new(len)),
                Ok(Some(Piece::Payload(bytes))) => {
                    if let Some(current) = &mut current {
                        current.keep(bytes);
                    }
                }
                Ok(Some(Piece::End)) => {
                    boundary = n - input.len();
                    frame_start = read + boundary as u64;
                    if let Some((request, answered)) = current.take().and_then(Current::finish) {
                        if answered {
                            pending.push(request);
                        } else {
                            unanswered.push(request);
                        }
                    }
                }
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        let end = if framing.is_ok() { n } else { boundary };
        let written = to
            .write_all(&buf[..end])
            .await
            .map_err(|e| format!("writing to the broker: {}", describe(&e)));
        for request in unanswered.drain(..) {
            let names = brokers.topic_names().clone();
            let record = KafkaRecord::unanswered(request, broker.clone(), names);
            brokers.observer().record(Box::new(match &written {
                Ok(()) => record,
                Err(err) => record.with_error(err.clone()),
            }));
        }
        written?;
        forwarded.fetch_add(end as u64, Ordering::Relaxed);
        read += n as u64;
        if let Err(err) = framing {
            let _ = to.shutdown().await;
            return Err(format!("from the client: {err}"));
        }
    }
    let _ = to.shutdown().await;
    // The broker got the partial request too (it was relayed as it came); it never completes.
    let cut = (!scanner.at_boundary()).then(|| {
        Cut {
            got: read - frame_start,
            total: current.as_ref().map(|current| current.size),
        }
        .describe("client", "request")
    });
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_and_fetch_keep_their_body_others_only_the_header_prefix() {
        let mut produce = Current::new(DETAIL_CAP);
        let mut payload = vec![0u8; DETAIL_CAP];
        payload[1] = 0; // api key 0
        produce.keep(&payload[..10]);
        produce.keep(&payload[10..]);
        assert_eq!(produce.kept.len(), DETAIL_CAP);

        // Too large to decode whole: only the header prefix is copied.
        let mut large = Current::new(DETAIL_CAP + 1);
        large.keep(&vec![0u8; DETAIL_CAP + 1]);
        assert_eq!(large.kept.len(), HEADER_PREFIX);

        let mut metadata = Current::new(5000);
        let mut payload = vec![0u8; 5000];
        payload[1] = 3;
        metadata.keep(&payload);
        assert_eq!(metadata.kept.len(), HEADER_PREFIX);

        assert!(Current::new(7).finish().is_none());
    }
}
