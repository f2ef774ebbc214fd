//! An incremental Server-Sent Events parser (the WHATWG `text/event-stream` rules).
//!
//! Bytes arrive in arbitrary chunks; [`SseParser::feed`] returns every frame completed by a
//! chunk. Handled: lines ending in LF, CRLF or CR (a CRLF split across two chunks included),
//! a leading byte-order mark, comment lines (`: keepalive`), multi-line `data:`, `id:`
//! (which persists across frames, as the `Last-Event-ID` to resume from), `retry:`, and
//! fields without a colon. A frame with no data is not dispatched. A line longer than the
//! parser's limit is an error rather than unbounded memory.

use std::time::Duration;

/// The default longest line accepted (16 MiB): events carry capped bodies, so a longer line
/// means a broken stream.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    /// The last event id in effect when the frame was dispatched (`id:` of this frame or of an
    /// earlier one).
    pub id: Option<String>,
    /// The `event:` name, empty when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// The stream broke the parser's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SSE line longer than {limit} bytes; the stream is corrupt")]
pub struct SseError {
    /// The limit that was exceeded.
    pub limit: usize,
}

/// Incremental parser state for one connection.
#[derive(Debug, Clone)]
pub struct SseParser {
    buf: Vec<u8>,
    /// The previous chunk ended in CR: an LF at the start of the next one belongs to it.
    skip_lf: bool,
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<Duration>,
    max_line: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    /// A parser with the default line limit.
    pub fn new() -> SseParser {
        SseParser::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A parser that rejects lines longer than `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> SseParser {
        SseParser {
            buf: Vec::new(),
            skip_lf: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            last_id: None,
            retry: None,
            max_line,
        }
    }

    /// The last `id:` seen, the value to send as `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection delay requested with `retry:`, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Consumes a chunk and returns the frames it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseFrame>, SseError> {
        let mut frames = Vec::new();
        let mut chunk = chunk;
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        let mut start = 0;
        let mut i = 0;
        while i < chunk.len() {
            match chunk[i] {
                b'\n' => {
                    self.take_line(&chunk[start..i], &mut frames)?;
                    start = i + 1;
                }
                b'\r' => {
                    self.take_line(&chunk[start..i], &mut frames)?;
                    if i + 1 < chunk.len() {
                        if chunk[i + 1] == b'\n' {
                            i += 1;
                        }
                    } else {
                        self.skip_lf = true;
                    }
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        let rest = &chunk[start..];
        if self.buf.len() + rest.len() > self.max_line {
            return Err(SseError {
                limit: self.max_line,
            });
        }
        self.buf.extend_from_slice(rest);
        Ok(frames)
    }

    /// Completes a line whose tail is `tail` (anything buffered from earlier chunks comes
    /// first) and processes it.
    fn take_line(&mut self, tail: &[u8], frames: &mut Vec<SseFrame>) -> Result<(), SseError> {
        if self.buf.len() + tail.len() > self.max_line {
            return Err(SseError {
                limit: self.max_line,
            });
        }
        let owned;
        let line: &[u8] = if self.buf.is_empty() {
            tail
        } else {
            self.buf.extend_from_slice(tail);
            owned = std::mem::take(&mut self.buf);
            &owned
        };
        let mut line = String::from_utf8_lossy(line);
        if self.at_start {
            self.at_start = false;
            if let Some(stripped) = line.strip_prefix('\u{feff}') {
                line = stripped.to_string().into();
            }
        }
        self.process_line(&line, frames);
        Ok(())
    }

    fn process_line(&mut self, line: &str, frames: &mut Vec<SseFrame>) {
        if line.is_empty() {
            self.dispatch(frames);
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, frames: &mut Vec<SseFrame>) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        frames.push(SseFrame {
            id: self.last_id.clone(),
            event,
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: Option<&str>, event: &str, data: &str) -> SseFrame {
        SseFrame {
            id: id.map(Into::into),
            event: event.into(),
            data: data.into(),
        }
    }

    fn feed_all(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<SseFrame> {
        chunks
            .iter()
            .flat_map(|c| parser.feed(c).unwrap())
            .collect()
    }

    const STREAM: &[u8] = b"id: 1\nevent: service.ready\ndata: {\"seq\":1}\n\n\
                            : keepalive\n\n\
                            id: 3\nevent: environment.up\ndata: {\"seq\":3}\n\n";

    #[test]
    fn parses_rigd_frames_and_ignores_heartbeats() {
        let mut p = SseParser::new();
        let frames = p.feed(STREAM).unwrap();
        assert_eq!(
            frames,
            vec![
                frame(Some("1"), "service.ready", r#"{"seq":1}"#),
                frame(Some("3"), "environment.up", r#"{"seq":3}"#),
            ]
        );
        assert_eq!(p.last_event_id(), Some("3"));
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let whole = SseParser::new().feed(STREAM).unwrap();
        for split in 0..=STREAM.len() {
            let mut p = SseParser::new();
            let got = feed_all(&mut p, &[&STREAM[..split], &STREAM[split..]]);
            assert_eq!(got, whole, "split at {split}");
        }
        // One byte at a time.
        let mut p = SseParser::new();
        let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(feed_all(&mut p, &chunks), whole);
    }

    #[test]
    fn crlf_and_cr_line_endings_including_crlf_split_across_chunks() {
        let crlf = b"id: 7\r\ndata: a\r\n\r\n";
        let mut p = SseParser::new();
        assert_eq!(p.feed(crlf).unwrap(), vec![frame(Some("7"), "", "a")]);

        let mut p = SseParser::new();
        let got = feed_all(&mut p, &[b"data: a\r", b"\ndata: b\r", b"\r", b"\n"]);
        // A CR and the LF starting the next chunk are one line break; the CR after "b" ends
        // its line, the next CR is the blank line that dispatches, and the final LF belongs
        // to that CR.
        assert_eq!(got, vec![frame(None, "", "a\nb")]);

        let mut p = SseParser::new();
        assert_eq!(p.feed(b"data: x\r\rdata: y\r\r").unwrap().len(), 2);
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let mut p = SseParser::new();
        let frames = p
            .feed(b"event: e\ndata: line one\ndata:line two\ndata\n\n")
            .unwrap();
        assert_eq!(frames, vec![frame(None, "e", "line one\nline two\n")]);
    }

    #[test]
    fn frames_without_data_are_not_dispatched_but_id_persists() {
        let mut p = SseParser::new();
        let frames = p
            .feed(b"id: 5\nevent: nothing\n\ndata: x\n\nid\ndata: y\n\n")
            .unwrap();
        assert_eq!(
            frames,
            vec![frame(Some("5"), "", "x"), frame(Some(""), "", "y")]
        );
    }

    #[test]
    fn comments_retry_unknown_fields_and_bom() {
        let mut p = SseParser::new();
        let frames = p
            .feed(b"\xef\xbb\xbfretry: 2500\n:comment\nfoo: bar\nretry: x\ndata: d\n\n")
            .unwrap();
        assert_eq!(frames, vec![frame(None, "", "d")]);
        assert_eq!(p.retry(), Some(Duration::from_millis(2500)));
    }

    #[test]
    fn ids_containing_nul_are_ignored() {
        let mut p = SseParser::new();
        let frames = p.feed(b"id: 1\n\nid: 2\0\ndata: x\n\n").unwrap();
        assert_eq!(frames, vec![frame(Some("1"), "", "x")]);
    }

    #[test]
    fn incomplete_frame_is_held_until_the_blank_line() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: {\"a\":").unwrap().is_empty());
        assert!(p.feed(b"1}\n").unwrap().is_empty());
        assert_eq!(p.feed(b"\n").unwrap(), vec![frame(None, "", r#"{"a":1}"#)]);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut p = SseParser::with_max_line(8);
        assert!(p.feed(b"data: 12").is_ok());
        assert_eq!(p.feed(b"3").unwrap_err(), SseError { limit: 8 });
        let mut p = SseParser::with_max_line(8);
        assert!(p.feed(b"data: 123456789\n").is_err());
    }
}
