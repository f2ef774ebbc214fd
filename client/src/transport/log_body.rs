//! `GET /environments/{id}/log` read as it arrives: the body (one JSON array of every event,
//! spilled ones included) can be far larger than any whole-response limit, so it is decoded
//! from the stream on a blocking thread and never held as bytes.

use std::io::Read;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use rig_types::Event;
use tokio::sync::mpsc;

use super::client::ClientError;
use super::http::StreamingResponse;

/// Frames in flight between the connection and the decoder.
const FRAMES_IN_FLIGHT: usize = 8;

/// Decodes the event array of `response`, failing when no data arrives for `idle`.
pub(crate) async fn read_events(
    mut response: StreamingResponse,
    what: String,
    addr: String,
    idle: Duration,
) -> Result<Vec<Event>, ClientError> {
    let (tx, rx) = mpsc::channel::<Bytes>(FRAMES_IN_FLIGHT);
    let decoder = tokio::task::spawn_blocking(move || {
        let frames = FrameReader {
            frames: rx,
            current: Bytes::new(),
        };
        serde_json::from_reader::<_, Vec<Event>>(std::io::BufReader::new(frames))
    });
    let received = loop {
        match tokio::time::timeout(idle, response.body.frame()).await {
            Err(_) => {
                break Err(ClientError::Timeout {
                    addr,
                    what: format!("{what} (no data for {}s)", idle.as_secs()),
                    after: idle,
                })
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => break Err(ClientError::Http { addr, source: e }),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    // The decoder stopped early: its error says why.
                    if tx.send(data).await.is_err() {
                        break Ok(());
                    }
                }
            }
        }
    };
    drop(tx);
    let decoded = decoder.await.map_err(|e| ClientError::Protocol {
        what: what.clone(),
        detail: format!("decoding stopped: {e}"),
    })?;
    received?;
    decoded.map_err(|e| ClientError::Protocol {
        what,
        detail: format!("invalid JSON: {e}"),
    })
}

/// The body's frames as a blocking reader: ends when the sender is dropped.
struct FrameReader {
    frames: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.frames.blocking_recv() {
                Some(frame) => self.current = frame,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
