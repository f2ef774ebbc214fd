//! Service output: stdout and stderr chunks become `service.log` events.

use std::sync::Arc;

use rig_types::{Event, LogStream};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::events::EventLog;

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

    /// Reads `reader` to its end, publishing every chunk as it arrives. Chunks are not split
    /// into lines; a UTF-8 sequence cut by a read boundary is carried into the next chunk, and
    /// invalid bytes are replaced with U+FFFD.
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
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            seen(&buf[..n]);
            carry.extend_from_slice(&buf[..n]);
            let cut = utf8_prefix_len(&carry);
            if cut == 0 {
                continue;
            }
            let rest = carry.split_off(cut);
            let chunk = std::mem::replace(&mut carry, rest);
            self.write(stream.clone(), String::from_utf8_lossy(&chunk).into_owned());
        }
        if !carry.is_empty() {
            self.write(stream, String::from_utf8_lossy(&carry).into_owned());
        }
    }
}

/// The length of the longest prefix of `bytes` that does not end inside an incomplete UTF-8
/// sequence (invalid bytes count as complete: they are replaced on conversion).
fn utf8_prefix_len(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
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
}
