//! Service output: stdout and stderr become `service.log` events, whole lines where the
//! program wrote them within [`PARTIAL_LINE_WAIT`] of each other.

use std::sync::Arc;
use std::time::Duration;

use rig_types::{Event, LogStream};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::events::EventLog;

/// How long output that does not end with a newline waits for the rest of its line before it
/// is published as it is.
pub const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(50);

/// A line longer than this is published in pieces of about this size.
pub const MAX_PARTIAL_LINE: usize = 64 * 1024;

/// Publishes a service's output into its environment's event log.
#[derive(Clone)]
pub struct OutputSink {
    log: Arc<EventLog>,
    environment: Arc<str>,
    service: Arc<str>,
}

impl OutputSink {
    /// A sink for `service` of the environment named `environment`.
    pub fn new(log: Arc<EventLog>, environment: &str, service: &str) -> OutputSink {
        OutputSink {
            log,
            environment: environment.into(),
            service: service.into(),
        }
    }

    /// Publishes one chunk of output as a `service.log` event.
    pub fn write(&self, stream: LogStream, data: impl Into<String>) {
        let mut event = Event::log(&*self.service, stream, data);
        event.environment = self.environment.to_string();
        self.log.publish(event);
    }

    /// Publishes rigd's own remarks about the service (not its output) as `service.log`
    /// lines on the stream `rig`, one event per line.
    pub fn note(&self, lines: impl IntoIterator<Item = String>) {
        for line in lines {
            self.write(LogStream::rig(), line + "\n");
        }
    }

    /// A sink for the traffic events of an observing proxy: they go into the same event log,
    /// stamped with the environment name and without a service (as upstream).
    pub fn traffic_sink(&self) -> std::sync::Arc<dyn rig_proxy::TrafficSink> {
        let log = self.log.clone();
        let environment = self.environment.clone();
        std::sync::Arc::new(move |mut event: Event| {
            event.environment = environment.to_string();
            log.publish(event);
        })
    }

    /// Where an observing proxy registers its observation barrier (see
    /// [`EventLog::settle_traffic`]).
    pub fn traffic_barriers(&self) -> rig_proxy::ObservationBarriers {
        self.log.traffic_barriers().clone()
    }

    /// Reads `reader` to its end, publishing its output as it arrives, a line at a time or
    /// more: what follows the last newline read waits for the rest of its line, for at most
    /// [`PARTIAL_LINE_WAIT`] (a prompt or a progress bar still shows at once), or until it
    /// reaches [`MAX_PARTIAL_LINE`]. Programs writing a line in several writes (Python's
    /// tracebacks on unbuffered stderr write a caret at a time) thus give whole lines. A UTF-8
    /// sequence cut by a read boundary is carried into the next event, and invalid bytes are
    /// replaced with U+FFFD.
    pub async fn pump(self, reader: impl AsyncRead + Unpin, stream: LogStream) {
        self.pump_with(reader, stream, |_| {}).await
    }

    /// Like [`OutputSink::pump`], also handing every chunk read to `seen` (to keep a build's
    /// output for its error message).
    pub async fn pump_with(
        self,
        mut reader: impl AsyncRead + Unpin,
        stream: LogStream,
        mut seen: impl FnMut(&[u8]),
    ) {
        let mut buf = vec![0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            // A partial line (with at least one whole character) waits a little for its end.
            let whole = utf8_prefix_len(&pending);
            let read = if whole == 0 {
                reader.read(&mut buf).await
            } else {
                // `read` is cancel-safe: a read given up on has taken nothing.
                match tokio::time::timeout(PARTIAL_LINE_WAIT, reader.read(&mut buf)).await {
                    Ok(read) => read,
                    Err(_) => {
                        self.publish(&stream, &mut pending, whole);
                        continue;
                    }
                }
            };
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            seen(&buf[..n]);
            pending.extend_from_slice(&buf[..n]);
            let cut = match pending.iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None if pending.len() >= MAX_PARTIAL_LINE => utf8_prefix_len(&pending),
                None => 0,
            };
            self.publish(&stream, &mut pending, cut);
        }
        let all = pending.len();
        self.publish(&stream, &mut pending, all);
    }

    /// Publishes the first `cut` bytes of `pending` (if any) and removes them.
    fn publish(&self, stream: &LogStream, pending: &mut Vec<u8>, cut: usize) {
        if cut == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&pending[..cut]).into_owned();
        pending.drain(..cut);
        self.write(stream.clone(), text);
    }
}

/// The length of the longest prefix of `bytes` that does not end inside an incomplete UTF-8
/// sequence (invalid bytes count as complete: they are replaced on conversion). Only the last
/// three bytes can hold the start of a sequence cut short, so only they are looked at: an
/// invalid byte earlier does not hide a character cut at the end.
fn utf8_prefix_len(bytes: &[u8]) -> usize {
    let tail = bytes.len().saturating_sub(3);
    // The last byte that is not a continuation byte (10xxxxxx): where a cut sequence starts.
    let Some(start) = bytes[tail..].iter().rposition(|&b| b & 0xC0 != 0x80) else {
        return bytes.len();
    };
    let start = tail + start;
    match std::str::from_utf8(&bytes[start..]) {
        Err(e) if e.error_len().is_none() => start + e.valid_up_to(),
        _ => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig_types::EventType;

    #[test]
    fn utf8_prefix_stops_before_a_cut_sequence() {
        let s = "aé".as_bytes(); // 'é' is two bytes
        assert_eq!(utf8_prefix_len(s), 3);
        assert_eq!(utf8_prefix_len(&s[..2]), 1);
        assert_eq!(utf8_prefix_len(b"a\xff"), 2);
        assert_eq!(utf8_prefix_len(b""), 0);
        assert_eq!(utf8_prefix_len("€".as_bytes()), 3);
        assert_eq!(utf8_prefix_len(&"a€".as_bytes()[..3]), 1);
        assert_eq!(utf8_prefix_len(&"a😀".as_bytes()[..4]), 1);
    }

    /// An invalid byte earlier in the output does not hide a character cut at the end.
    #[test]
    fn utf8_prefix_stops_before_a_cut_sequence_after_an_invalid_byte() {
        let mut bytes = b"\xff ok ".to_vec();
        bytes.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(utf8_prefix_len(&bytes), bytes.len() - 1);
        // A lone continuation byte or an invalid lead at the end is complete (replaced).
        assert_eq!(utf8_prefix_len(b"\xff ok \x80"), 6);
        assert_eq!(utf8_prefix_len(b"ok \xff"), 4);
    }

    #[tokio::test]
    async fn pump_publishes_chunks_and_rejoins_split_characters() {
        let log = Arc::new(EventLog::new());
        let sink = OutputSink::new(log.clone(), "env", "api");
        let (mut w, r) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let bytes = "héllo\n".as_bytes();
            w.write_all(&bytes[..2]).await.unwrap();
            w.flush().await.unwrap();
            tokio::task::yield_now().await;
            w.write_all(&bytes[2..]).await.unwrap();
        });
        sink.pump(r, LogStream::Stderr).await;
        writer.await.unwrap();
        let events = log.events();
        let text: String = events
            .iter()
            .map(|e| {
                assert_eq!(e.event_type, EventType::ServiceLog);
                assert_eq!(e.service, "api");
                assert_eq!(e.environment, "env");
                let entry = e.log.as_ref().unwrap();
                assert_eq!(entry.stream, LogStream::Stderr);
                assert!(!entry.data.contains('\u{FFFD}'));
                entry.data.clone()
            })
            .collect();
        assert_eq!(text, "héllo\n");
    }

    /// The `service.log` texts of `log`, in order.
    fn texts(log: &EventLog) -> Vec<String> {
        log.events()
            .iter()
            .map(|e| e.log.as_ref().expect("a log entry").data.clone())
            .collect()
    }

    /// Pumps what `write` writes (with `sleep`s between writes, on paused time) into a fresh
    /// log and returns the texts published.
    async fn pumped<F>(write: impl FnOnce(tokio::io::DuplexStream) -> F) -> Vec<String>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let log = Arc::new(EventLog::new());
        let sink = OutputSink::new(log.clone(), "env", "api");
        let (w, r) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(write(w));
        sink.pump(r, LogStream::Stderr).await;
        writer.await.unwrap();
        texts(&log)
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_written_in_pieces_is_one_event() {
        use tokio::io::AsyncWriteExt;
        let texts = pumped(|mut w| async move {
            // As Python prints a traceback's caret line to unbuffered stderr.
            for piece in ["    ", "^", "^", "^", "\nnext", " line\n", "tail"] {
                w.write_all(piece.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert_eq!(texts, ["    ^^^\n", "next line\n", "tail"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_line_is_published_when_nothing_follows_for_a_while() {
        use tokio::io::AsyncWriteExt;
        let texts = pumped(|mut w| async move {
            w.write_all(b"continue? ").await.unwrap();
            tokio::time::sleep(PARTIAL_LINE_WAIT * 4).await;
            w.write_all(b"yes\n").await.unwrap();
        })
        .await;
        assert_eq!(texts, ["continue? ", "yes\n"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_longer_than_the_limit_is_published_in_pieces() {
        use tokio::io::AsyncWriteExt;
        let line = "é".repeat(MAX_PARTIAL_LINE) + "\n";
        let sent = line.clone();
        let texts = pumped(|mut w| async move {
            w.write_all(sent.as_bytes()).await.unwrap();
        })
        .await;
        assert!(texts.len() > 1, "one event of {} bytes", line.len());
        assert!(texts.iter().all(|t| t.len() <= MAX_PARTIAL_LINE + 8192));
        assert_eq!(texts.concat(), line, "pieces cut inside a character");
    }
}
