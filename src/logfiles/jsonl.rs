//! The machine-readable log: the `log.header` line, then one event per line in `seq` order.
//!
//! Events use the wire JSON of [`Event`] (the same as SSE), without HTML escaping (serde_json
//! never escapes `<`, `>` or `&`), each line ending in `\n`.

use std::borrow::Borrow;
use std::io::{self, Write};

use rig_types::Event;

use super::header::LogHeader;
use crate::events::Replay;

/// Where the events of a JSONL file come from, in `seq` order: a slice, or a
/// [`Replay`] of a live log (which never holds them all in memory).
pub trait EventSource {
    /// Calls `write` with every event, in `seq` order, until it fails.
    fn each(&mut self, write: &mut dyn FnMut(&Event) -> io::Result<()>) -> io::Result<()>;
}

impl<E: Borrow<Event>> EventSource for &[E] {
    fn each(&mut self, write: &mut dyn FnMut(&Event) -> io::Result<()>) -> io::Result<()> {
        self.iter().try_for_each(|e| write(e.borrow()))
    }
}

impl EventSource for Replay {
    fn each(&mut self, write: &mut dyn FnMut(&Event) -> io::Result<()>) -> io::Result<()> {
        while let Some(batch) = self.next_batch() {
            batch.iter().try_for_each(|e| write(e))?;
        }
        Ok(())
    }
}

/// Writes the header line and one line per event to `out`.
///
/// `out` should be buffered; every event is serialised straight into it.
pub fn write_jsonl<W: Write>(
    mut out: W,
    header: &LogHeader,
    mut events: impl EventSource,
) -> io::Result<()> {
    serde_json::to_writer(&mut out, header)?;
    out.write_all(b"\n")?;
    events.each(&mut |e| {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")
    })?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig_types::{EventType, LogStream, Timestamp};

    #[test]
    fn header_then_one_line_per_event_without_html_escaping() {
        let mut log = Event::log("api", LogStream::Stderr, "<b>a & b</b>\n");
        log.seq = 2;
        log.environment = "env".into();
        log.timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        let mut up = Event::new(EventType::EnvironmentUp);
        up.seq = 1;
        up.timestamp = "2024-01-02T03:04:04Z".parse().unwrap();
        let header = LogHeader::for_events(
            "env",
            &[up.clone(), log.clone()],
            &Default::default(),
            "",
            Timestamp::from_unix_nanos(0),
        );
        let mut out = Vec::new();
        write_jsonl(&mut out, &header, &[up, log][..]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.ends_with('\n')));
        assert_eq!(
            lines[0],
            "{\"type\":\"log.header\",\"environment\":\"env\",\"outcome\":\"passed\",\"services\":[\"api\"],\"duration_ms\":1000,\"timestamp\":\"1970-01-01T00:00:00Z\"}\n"
        );
        assert_eq!(
            lines[1],
            "{\"seq\":1,\"type\":\"environment.up\",\"timestamp\":\"2024-01-02T03:04:04Z\"}\n"
        );
        assert_eq!(
            lines[2],
            "{\"seq\":2,\"type\":\"service.log\",\"environment\":\"env\",\"service\":\"api\",\"log\":{\"stream\":\"stderr\",\"data\":\"<b>a & b</b>\\n\"},\"timestamp\":\"2024-01-02T03:04:05Z\"}\n"
        );
    }
}
