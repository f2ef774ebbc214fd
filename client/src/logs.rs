//! Output of in-test services: lines written through [`Wiring::log`](crate::Wiring::log)
//! become `service.log` events in the environment's log, with the right stream.
//!
//! Writing never blocks and never drops a line: lines go into an unbounded queue that a task
//! on the SDK's background runtime drains, sending everything queued as one `POST` per run of
//! lines from the same stream. [`LogSink::flush`] waits until everything written before it
//! was sent, so a failing service's last words reach the log before its failure.

use rig_types::LogStream;
use serde_json::json;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::transport::client::RigdClient;

enum LogMsg {
    Line(LogStream, String),
    Flush(oneshot::Sender<()>),
}

/// Sends one service's output to rigd.
#[derive(Clone)]
pub(crate) struct LogSink {
    tx: mpsc::UnboundedSender<LogMsg>,
}

impl LogSink {
    /// A sink for `service` of environment `id`; its pump runs on `background`.
    pub(crate) fn start(
        background: &Handle,
        client: RigdClient,
        id: String,
        service: String,
    ) -> LogSink {
        let (tx, rx) = mpsc::unbounded_channel();
        background.spawn(pump(rx, client, id, service));
        LogSink { tx }
    }

    /// Queues `text` as one chunk of output (a newline is added when it has none).
    pub(crate) fn write(&self, stream: LogStream, text: &str) {
        let mut line = text.to_string();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        // The pump only stops when every sink is gone, so this cannot fail while we exist.
        let _ = self.tx.send(LogMsg::Line(stream, line));
    }

    /// Waits until everything written so far has been sent (or failed to send).
    pub(crate) async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(LogMsg::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

async fn pump(
    mut rx: mpsc::UnboundedReceiver<LogMsg>,
    client: RigdClient,
    id: String,
    service: String,
) {
    while let Some(first) = rx.recv().await {
        let mut lines = Vec::new();
        let mut acks = Vec::new();
        let mut take = |msg| match msg {
            LogMsg::Line(stream, text) => lines.push((stream, text)),
            LogMsg::Flush(ack) => acks.push(ack),
        };
        take(first);
        while let Ok(msg) = rx.try_recv() {
            take(msg);
        }
        for (stream, data) in runs(lines) {
            let event = json!({
                "type": "service.log",
                "service": service,
                "stream": stream.as_str(),
                "log_data": data,
            });
            // Best effort: the environment may be gone; output must never fail a service.
            let _ = client.post_event(&id, &event).await;
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// The most output one `service.log` event carries: rigd refuses client events over 4 MiB,
/// and readers of the event stream take lines of limited length.
const MAX_EVENT_TEXT: usize = 256 * 1024;

/// Joins consecutive lines of the same stream, into pieces of at most [`MAX_EVENT_TEXT`]
/// bytes (a longer line is cut, at a character boundary).
fn runs(lines: Vec<(LogStream, String)>) -> Vec<(LogStream, String)> {
    let mut out: Vec<(LogStream, String)> = Vec::new();
    for (stream, text) in lines {
        // The piece before, of the same stream, takes the line if it has room for all of it.
        if let Some((last, data)) = out.last_mut() {
            if *last == stream && data.len() + text.len() <= MAX_EVENT_TEXT {
                data.push_str(&text);
                continue;
            }
        }
        // Otherwise the line starts a piece of its own, cut at the cap.
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let cut = floor_char_boundary(rest, MAX_EVENT_TEXT);
            out.push((stream.clone(), rest[..cut].to_string()));
            rest = &rest[cut..];
        }
    }
    out
}

/// The largest character boundary of `text` at most `at` (`at` is far more than one
/// character's four bytes, so a piece is never empty).
fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_sent_in_pieces_rigd_and_stream_readers_take() {
        // Lines join up to the cap; a line that would cross it starts a piece of its own.
        let line = format!("{}\n", "a".repeat(100 * 1024));
        let got = runs(vec![(LogStream::Stdout, line.clone()); 3]);
        assert_eq!(
            got,
            vec![
                (LogStream::Stdout, line.repeat(2)),
                (LogStream::Stdout, line.clone()),
            ]
        );
        // A line longer than the cap is cut, at a character boundary.
        let long = format!("a{}", "é".repeat(MAX_EVENT_TEXT / 2));
        let got = runs(vec![(LogStream::Stderr, long.clone())]);
        let sizes: Vec<usize> = got.iter().map(|(_, piece)| piece.len()).collect();
        assert_eq!(sizes, [MAX_EVENT_TEXT - 1, 2]);
        let joined: String = got.into_iter().map(|(_, piece)| piece).collect();
        assert_eq!(joined, long);
    }

    #[test]
    fn consecutive_lines_of_a_stream_are_joined() {
        let got = runs(vec![
            (LogStream::Stdout, "a\n".into()),
            (LogStream::Stdout, "b\n".into()),
            (LogStream::Stderr, "c\n".into()),
            (LogStream::Stdout, "d\n".into()),
        ]);
        assert_eq!(
            got,
            vec![
                (LogStream::Stdout, "a\nb\n".to_string()),
                (LogStream::Stderr, "c\n".to_string()),
                (LogStream::Stdout, "d\n".to_string()),
            ]
        );
    }
}
