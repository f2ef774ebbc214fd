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

/// Joins consecutive lines of the same stream.
fn runs(lines: Vec<(LogStream, String)>) -> Vec<(LogStream, String)> {
    let mut out: Vec<(LogStream, String)> = Vec::new();
    for (stream, text) in lines {
        match out.last_mut() {
            Some((last, data)) if *last == stream => data.push_str(&text),
            _ => out.push((stream, text)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
