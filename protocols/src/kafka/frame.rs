//! Splitting a Kafka byte stream into frames (a 4-byte big-endian size, then that many bytes),
//! incrementally: the stream arrives in chunks whose boundaries fall anywhere, and the scanner
//! never needs a whole frame in memory.

/// The largest frame accepted by default: 256 MiB, as upstream rig (and far above Kafka's
/// default `socket.request.max.bytes` of 100 MiB).
pub const MAX_FRAME_SIZE: usize = 256 * 1024 * 1024;

/// A size prefix the scanner refuses: the stream is not Kafka (TLS, say) or is corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// The size prefix as read (an `i32` on the wire).
    pub declared: i32,
    /// The largest size accepted.
    pub max: usize,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.declared < 0 {
            write!(
                f,
                "Kafka frame declares a negative size ({}); the stream is not the Kafka protocol",
                self.declared
            )
        } else {
            write!(
                f,
                "Kafka frame of {} bytes exceeds the {} byte limit; the stream is not the Kafka protocol (TLS?) or is corrupt",
                self.declared, self.max
            )
        }
    }
}

impl std::error::Error for FrameError {}

/// One step through the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A frame starts; `len` payload bytes follow its 4-byte size prefix.
    Start {
        /// The payload length.
        len: usize,
    },
    /// The next payload bytes of the current frame.
    Payload(&'a [u8]),
    /// The current frame is complete.
    End,
}

/// Incremental frame splitter. Feed it chunks with [`FrameScanner::next`]; it yields the
/// [`Piece`]s of the stream in order, remembering a size prefix split across chunks.
#[derive(Clone, Debug)]
pub struct FrameScanner {
    max: usize,
    prefix: [u8; 4],
    have: usize,
    /// Payload bytes still to come in the current frame; `None` between frames.
    remaining: Option<usize>,
}

impl Default for FrameScanner {
    fn default() -> FrameScanner {
        FrameScanner::new(MAX_FRAME_SIZE)
    }
}

impl FrameScanner {
    /// A scanner that refuses frames larger than `max` bytes.
    pub fn new(max: usize) -> FrameScanner {
        FrameScanner {
            max,
            prefix: [0; 4],
            have: 0,
            remaining: None,
        }
    }

    /// The next piece of the stream from `input`, advancing `input` past what it consumed.
    /// `Ok(None)` means `input` is used up (a partial size prefix is remembered). After an
    /// error the stream cannot be framed any further.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<Piece<'a>>, FrameError> {
        match self.remaining {
            Some(0) => {
                self.remaining = None;
                Ok(Some(Piece::End))
            }
            Some(remaining) => {
                if input.is_empty() {
                    return Ok(None);
                }
                let n = remaining.min(input.len());
                let (payload, rest) = input.split_at(n);
                *input = rest;
                self.remaining = Some(remaining - n);
                Ok(Some(Piece::Payload(payload)))
            }
            None => {
                let n = (4 - self.have).min(input.len());
                self.prefix[self.have..self.have + n].copy_from_slice(&input[..n]);
                *input = &input[n..];
                self.have += n;
                if self.have < 4 {
                    return Ok(None);
                }
                self.have = 0;
                let declared = i32::from_be_bytes(self.prefix);
                let len = usize::try_from(declared)
                    .ok()
                    .filter(|len| *len <= self.max)
                    .ok_or(FrameError {
                        declared,
                        max: self.max,
                    })?;
                self.remaining = Some(len);
                Ok(Some(Piece::Start { len }))
            }
        }
    }

    /// Whether the scanner is between frames (no partial prefix, no open frame): a stream
    /// that ends here ended cleanly.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining.is_none()
    }
}

/// Splits `stream` into complete frame payloads, for tests and fuzzing: the payloads, and
/// whether the stream ended at a frame boundary.
pub fn split_all(stream: &[u8], max: usize) -> Result<(Vec<Vec<u8>>, bool), FrameError> {
    let mut scanner = FrameScanner::new(max);
    let mut input = stream;
    let mut frames = Vec::new();
    let mut current = Vec::new();
    while let Some(piece) = scanner.next(&mut input)? {
        match piece {
            Piece::Start { .. } => current.clear(),
            Piece::Payload(bytes) => current.extend_from_slice(bytes),
            Piece::End => frames.push(std::mem::take(&mut current)),
        }
    }
    Ok((frames, scanner.at_boundary()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_split_across_every_chunk_boundary_come_out_whole() {
        let mut stream = frame(b"hello");
        stream.extend(frame(b""));
        stream.extend(frame(b"world!"));
        for cut in 0..=stream.len() {
            let mut scanner = FrameScanner::default();
            let mut frames = Vec::new();
            let mut current = Vec::new();
            for chunk in [&stream[..cut], &stream[cut..]] {
                let mut input = chunk;
                while let Some(piece) = scanner.next(&mut input).unwrap() {
                    match piece {
                        Piece::Start { len } => {
                            current.clear();
                            current.reserve(len);
                        }
                        Piece::Payload(bytes) => current.extend_from_slice(bytes),
                        Piece::End => frames.push(std::mem::take(&mut current)),
                    }
                }
            }
            assert_eq!(frames, [&b"hello"[..], b"", b"world!"], "cut at {cut}");
            assert!(scanner.at_boundary());
        }
    }

    #[test]
    fn oversized_and_negative_sizes_are_refused_with_a_reason() {
        let err = split_all(&[0x16, 0x03, 0x01, 0x02, 0x00], MAX_FRAME_SIZE).unwrap_err();
        assert_eq!(err.declared, 0x1603_0102);
        assert!(err.to_string().contains("TLS"), "{err}");
        let err = split_all(&[0xff, 0xff, 0xff, 0xff], MAX_FRAME_SIZE).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        assert!(split_all(&frame(&[0; 11]), 10).is_err());
        assert!(split_all(&frame(&[0; 10]), 10).is_ok());
    }

    #[test]
    fn a_truncated_stream_is_not_at_a_boundary() {
        let stream = frame(b"abcdef");
        let (frames, clean) = split_all(&stream[..7], MAX_FRAME_SIZE).unwrap();
        assert!(frames.is_empty());
        assert!(!clean);
        let (_, clean) = split_all(&stream[..2], MAX_FRAME_SIZE).unwrap();
        assert!(!clean);
    }
}
