//! Finding the end of a chunked body without touching it: [`Chunked`] walks the chunk
//! boundaries of the bytes as they pass, telling where the chunk data lies (for the capture)
//! and where the body ends (the last chunk and the trailers). The bytes are forwarded as they
//! are.

use std::ops::Range;

use super::parse::Framing;

/// Longest chunk-size line (size, extensions) or trailer section accepted.
const MAX_LINE: usize = 16 * 1024;

/// The body is not valid chunked encoding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChunkError(pub(crate) &'static str);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// Reading the hexadecimal chunk size.
    #[default]
    Size,
    /// After the size: whitespace or extensions until CR.
    Extension,
    /// Expecting the LF of the size line.
    SizeLf,
    /// Inside the chunk data.
    Data,
    /// Expecting the CR after the data.
    DataCr,
    /// Expecting the LF after the data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Expecting the LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// The position within a chunked body.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    state: State,
    /// The chunk size being read, then the data bytes left in the chunk.
    remaining: u64,
    digits: u8,
    /// Bytes of the current size line or trailer section.
    line: usize,
}

impl Chunked {
    /// Whether the whole body has passed.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Walks `buf`, the next bytes of the body, up to the end of the body. Returns how many
    /// bytes of `buf` belong to the body; `data` receives the ranges of chunk data among them.
    pub(crate) fn walk(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            if self.state == State::Data {
                let take =
                    (buf.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                data(i..i + take);
                i += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = buf[i];
            i += 1;
            self.state = match (self.state, byte) {
                (State::Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits == 16 {
                        return Err(ChunkError("chunk size is too large"));
                    }
                    self.digits += 1;
                    self.line += 1;
                    self.remaining = self.remaining * 16 + u64::from(hex(b));
                    State::Size
                }
                (State::Size, b';' | b' ' | b'\t') if self.digits > 0 => State::Extension,
                (State::Size | State::Extension, b'\r') if self.digits > 0 => State::SizeLf,
                (State::Extension, b'\n') => return Err(ChunkError("invalid chunk extension")),
                (State::Extension, _) => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(ChunkError("chunk extensions are too long"));
                    }
                    State::Extension
                }
                (State::SizeLf, b'\n') => {
                    self.digits = 0;
                    self.line = 0;
                    if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    }
                }
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size,
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::Trailer, b'\n') => {
                    return Err(ChunkError("invalid trailer line"))
                }
                (State::TrailerStart | State::Trailer, _) => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(ChunkError("trailers are too long"));
                    }
                    State::Trailer
                }
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => State::Done,
                (State::Size | State::SizeLf, _) => {
                    return Err(ChunkError("invalid chunk size line"))
                }
                _ => return Err(ChunkError("invalid chunk end")),
            };
        }
        Ok(i)
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// How a request body is followed: the framing, and how far it got.
pub(crate) struct BodyProgress {
    framing: Framing,
    remaining: u64,
    chunked: Chunked,
}

impl BodyProgress {
    pub(crate) fn new(framing: Framing) -> BodyProgress {
        let remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        BodyProgress {
            framing,
            remaining,
            chunked: Chunked::default(),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        match self.framing {
            Framing::Empty => true,
            Framing::Length(_) => self.remaining == 0,
            Framing::Chunked => self.chunked.is_done(),
            Framing::UntilClose => false,
        }
    }

    /// How many bytes of `buf` belong to the body; chunk data ranges go to `ranges`.
    pub(crate) fn take(
        &mut self,
        buf: &[u8],
        ranges: &mut Vec<Range<usize>>,
    ) -> Result<usize, &'static str> {
        ranges.clear();
        match self.framing {
            Framing::Empty => Ok(0),
            Framing::Length(_) => {
                let n = buf
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.remaining -= n as u64;
                ranges.push(0..n);
                Ok(n)
            }
            Framing::Chunked => self
                .chunked
                .walk(buf, |range| ranges.push(range))
                .map_err(|e| e.0),
            Framing::UntilClose => {
                ranges.push(0..buf.len());
                Ok(buf.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks `input` split at every position in `cuts`; returns the body length and the data.
    fn walk(input: &[u8], cuts: &[usize]) -> Result<(usize, Vec<u8>, bool), ChunkError> {
        let mut chunked = Chunked::default();
        let mut data = Vec::new();
        let mut start = 0;
        let mut consumed = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            let piece = &input[start..end];
            let n = chunked.walk(piece, |r| data.extend_from_slice(&piece[r]))?;
            consumed += n;
            if chunked.is_done() {
                break;
            }
            start = end;
        }
        Ok((consumed, data, chunked.is_done()))
    }

    #[test]
    fn bodies_end_after_the_last_chunk_and_trailers() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1";
        let end = body.len() - b"GET / HTTP/1.1".len();
        for cuts in [vec![], vec![1], vec![3, 4, 9], (1..end).collect::<Vec<_>>()] {
            let (consumed, data, done) = walk(body, &cuts).unwrap();
            assert!(done, "{cuts:?}");
            assert_eq!(consumed, end, "{cuts:?}");
            assert_eq!(data, b"hello world", "{cuts:?}");
        }
        let (consumed, data, done) = walk(b"0\r\n\r\n", &[]).unwrap();
        assert_eq!((consumed, data.len(), done), (5, 0, true));
        let (_, data, done) = walk(b"A\r\n0123456789", &[]).unwrap();
        assert_eq!((data.len(), done), (10, false));
    }

    #[test]
    fn broken_encodings_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloX",
            b"5\nhello",
            b"11111111111111111\r\n",
            b"0\r\nX\n",
        ] {
            assert!(
                walk(bad, &[]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
