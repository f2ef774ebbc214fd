//! gRPC length-prefixed message framing, decoded incrementally.
//!
//! A gRPC body is a sequence of messages, each a 5-byte prefix (a compressed flag byte, then
//! the payload length as a big-endian `u32`) followed by the payload. HTTP/2 DATA frames cut
//! this sequence anywhere, so [`FrameDecoder`] accepts chunks of any size and yields whole
//! messages. A message that lies inside one chunk is a slice of it (a reference count, not a
//! copy); only messages split across chunks are assembled into a new buffer.

use bytes::{Buf, Bytes, BytesMut};

/// Length of the prefix before every message.
pub const PREFIX_LEN: usize = 5;

/// One length-prefixed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The compressed flag: the payload is compressed with the stream's `grpc-encoding`.
    pub compressed: bool,
    /// The payload, without the prefix.
    pub payload: Bytes,
}

/// Why a body is not a valid gRPC message sequence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The flag byte is neither 0 nor 1.
    #[error("message {index}: invalid compressed flag {flag} (gRPC allows only 0 and 1)")]
    InvalidFlag {
        /// Position of the message in the stream, from 0.
        index: usize,
        /// The flag byte.
        flag: u8,
    },
    /// The declared length exceeds the decoder's limit.
    #[error("message {index}: declares {len} bytes, more than the {limit}-byte limit")]
    TooLong {
        /// Position of the message in the stream, from 0.
        index: usize,
        /// The declared length.
        len: u32,
        /// The decoder's limit.
        limit: usize,
        /// Whether the message is flagged compressed.
        compressed: bool,
    },
}

/// What is left over when a stream ends in the middle of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incomplete {
    /// Fewer than five prefix bytes arrived.
    Prefix {
        /// Prefix bytes seen.
        have: usize,
    },
    /// The prefix arrived but not the whole payload.
    Payload {
        /// Payload bytes seen.
        have: usize,
        /// Payload bytes declared.
        declared: usize,
        /// Whether the message is flagged compressed.
        compressed: bool,
    },
}

enum State {
    /// Collecting the prefix.
    Prefix {
        bytes: [u8; PREFIX_LEN],
        have: usize,
    },
    /// Collecting a payload that started in an earlier chunk.
    Payload {
        compressed: bool,
        declared: usize,
        data: BytesMut,
    },
    /// A framing error was reported; everything after it is ignored.
    Failed,
}

/// Splits a stream of chunks into gRPC messages.
pub struct FrameDecoder {
    state: State,
    max_message: usize,
    index: usize,
}

impl FrameDecoder {
    /// A decoder that refuses messages declaring more than `max_message` payload bytes (gRPC
    /// servers default to 4 MiB). Nothing is allocated up front for a declared length, so a
    /// lying prefix costs only the bytes that really arrive.
    pub fn new(max_message: usize) -> FrameDecoder {
        FrameDecoder {
            state: State::Prefix {
                bytes: [0; PREFIX_LEN],
                have: 0,
            },
            max_message,
            index: 0,
        }
    }

    /// Messages completed so far.
    pub fn messages_seen(&self) -> usize {
        self.index
    }

    /// Feeds the next chunk, appending every message it completes to `out`. After an error
    /// the decoder ignores further input (the framing is lost).
    pub fn push(&mut self, mut chunk: Bytes, out: &mut Vec<Message>) -> Result<(), FramingError> {
        while !chunk.is_empty() {
            // Fast path: a whole message inside the chunk is sliced out of it.
            if matches!(self.state, State::Prefix { have: 0, .. }) && chunk.len() >= PREFIX_LEN {
                let (compressed, declared) = self.fail_on(parse_prefix(
                    &chunk[..PREFIX_LEN],
                    self.index,
                    self.max_message,
                ))?;
                if chunk.len() - PREFIX_LEN >= declared {
                    chunk.advance(PREFIX_LEN);
                    let payload = chunk.split_to(declared);
                    self.emit(compressed, payload, out);
                    continue;
                }
            }
            match &mut self.state {
                State::Failed => return Ok(()),
                State::Prefix { bytes, have } => {
                    let take = (PREFIX_LEN - *have).min(chunk.len());
                    bytes[*have..*have + take].copy_from_slice(&chunk[..take]);
                    *have += take;
                    chunk.advance(take);
                    if *have == PREFIX_LEN {
                        let prefix = *bytes;
                        let (compressed, declared) =
                            self.fail_on(parse_prefix(&prefix, self.index, self.max_message))?;
                        if declared == 0 {
                            self.emit(compressed, Bytes::new(), out);
                        } else if chunk.len() >= declared {
                            let payload = chunk.split_to(declared);
                            self.emit(compressed, payload, out);
                        } else {
                            self.state = State::Payload {
                                compressed,
                                declared,
                                data: BytesMut::new(),
                            };
                        }
                    }
                }
                State::Payload {
                    compressed,
                    declared,
                    data,
                } => {
                    let take = (*declared - data.len()).min(chunk.len());
                    data.extend_from_slice(&chunk[..take]);
                    chunk.advance(take);
                    if data.len() == *declared {
                        let compressed = *compressed;
                        let payload = std::mem::take(data).freeze();
                        self.emit(compressed, payload, out);
                    }
                }
            }
        }
        Ok(())
    }

    /// What the stream ended in the middle of, if it did not end on a message boundary.
    pub fn incomplete(&self) -> Option<Incomplete> {
        match &self.state {
            State::Prefix { have: 0, .. } | State::Failed => None,
            State::Prefix { have, .. } => Some(Incomplete::Prefix { have: *have }),
            State::Payload {
                compressed,
                declared,
                data,
            } => Some(Incomplete::Payload {
                have: data.len(),
                declared: *declared,
                compressed: *compressed,
            }),
        }
    }

    /// Passes `result` through, stopping the decoder if it is an error.
    fn fail_on<T>(&mut self, result: Result<T, FramingError>) -> Result<T, FramingError> {
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn emit(&mut self, compressed: bool, payload: Bytes, out: &mut Vec<Message>) {
        out.push(Message {
            compressed,
            payload,
        });
        self.index += 1;
        self.state = State::Prefix {
            bytes: [0; PREFIX_LEN],
            have: 0,
        };
    }
}

/// The compressed flag and payload length of a prefix, checked against the limit.
fn parse_prefix(
    prefix: &[u8],
    index: usize,
    max_message: usize,
) -> Result<(bool, usize), FramingError> {
    let flag = prefix[0];
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    if flag > 1 {
        return Err(FramingError::InvalidFlag { index, flag });
    }
    match usize::try_from(len) {
        Ok(declared) if declared <= max_message => Ok((flag == 1, declared)),
        _ => Err(FramingError::TooLong {
            index,
            len,
            limit: max_message,
            compressed: flag == 1,
        }),
    }
}

/// The messages of a whole body at once: every complete message, then the framing error or
/// the incomplete tail, if any.
pub fn split_messages(
    body: Bytes,
    max_message: usize,
) -> (Vec<Message>, Result<Option<Incomplete>, FramingError>) {
    let mut decoder = FrameDecoder::new(max_message);
    let mut out = Vec::new();
    let result = decoder.push(body, &mut out).map(|()| decoder.incomplete());
    (out, result)
}

/// Encodes one message with its prefix (for tests, fixtures and fuzzing).
///
/// # Panics
///
/// If `payload` is longer than `u32::MAX` bytes, which gRPC cannot frame.
pub fn encode_message(compressed: bool, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a gRPC message is at most u32::MAX bytes");
    let mut out = Vec::with_capacity(PREFIX_LEN + payload.len());
    out.push(u8::from(compressed));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn stream() -> Vec<u8> {
        let mut body = encode_message(false, b"hello");
        body.extend(encode_message(true, b"\x1f\x8b zipped"));
        body.extend(encode_message(false, b""));
        body.extend(encode_message(false, &[7u8; 300]));
        body
    }

    fn expected() -> Vec<Message> {
        vec![
            Message {
                compressed: false,
                payload: Bytes::from_static(b"hello"),
            },
            Message {
                compressed: true,
                payload: Bytes::from_static(b"\x1f\x8b zipped"),
            },
            Message {
                compressed: false,
                payload: Bytes::new(),
            },
            Message {
                compressed: false,
                payload: Bytes::from(vec![7u8; 300]),
            },
        ]
    }

    #[test]
    fn a_whole_body_splits_into_its_messages() {
        let (messages, rest) = split_messages(Bytes::from(stream()), LIMIT);
        assert_eq!(messages, expected());
        assert_eq!(rest, Ok(None));
    }

    #[test]
    fn every_chunking_gives_the_same_messages() {
        let body = stream();
        for size in 1..=body.len() {
            let mut decoder = FrameDecoder::new(LIMIT);
            let mut out = Vec::new();
            for chunk in body.chunks(size) {
                decoder
                    .push(Bytes::copy_from_slice(chunk), &mut out)
                    .unwrap();
            }
            assert_eq!(out, expected(), "chunks of {size}");
            assert_eq!(decoder.incomplete(), None);
            assert_eq!(decoder.messages_seen(), 4);
        }
    }

    #[test]
    fn messages_inside_a_chunk_are_slices_of_it() {
        let body = Bytes::from(stream());
        let (messages, _) = split_messages(body.clone(), LIMIT);
        let offset = messages[0].payload.as_ptr() as usize - body.as_ptr() as usize;
        assert_eq!(offset, PREFIX_LEN);
    }

    #[test]
    fn a_cut_stream_reports_what_is_missing() {
        let body = stream();
        let (messages, rest) = split_messages(Bytes::copy_from_slice(&body[..3]), LIMIT);
        assert!(messages.is_empty());
        assert_eq!(rest, Ok(Some(Incomplete::Prefix { have: 3 })));
        let (messages, rest) = split_messages(Bytes::copy_from_slice(&body[..8]), LIMIT);
        assert!(messages.is_empty());
        assert_eq!(
            rest,
            Ok(Some(Incomplete::Payload {
                have: 3,
                declared: 5,
                compressed: false
            }))
        );
    }

    #[test]
    fn bad_flags_and_oversized_lengths_stop_the_decoder() {
        let mut body = encode_message(false, b"ok");
        body.extend([2, 0, 0, 0, 1, 0]);
        let (messages, rest) = split_messages(Bytes::from(body), LIMIT);
        assert_eq!(messages.len(), 1);
        assert_eq!(rest, Err(FramingError::InvalidFlag { index: 1, flag: 2 }));

        let (messages, rest) = split_messages(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]), 16);
        assert!(messages.is_empty());
        let err = rest.unwrap_err();
        assert_eq!(
            err.to_string(),
            "message 0: declares 4294967295 bytes, more than the 16-byte limit"
        );

        // Once failed, further input is ignored.
        let mut decoder = FrameDecoder::new(16);
        let mut out = Vec::new();
        assert!(decoder.push(Bytes::from_static(&[9]), &mut out).is_ok());
        assert!(decoder
            .push(Bytes::from_static(&[0, 0, 0, 0]), &mut out)
            .is_err());
        assert!(decoder
            .push(Bytes::from(encode_message(false, b"x")), &mut out)
            .is_ok());
        assert!(out.is_empty());
        assert_eq!(decoder.incomplete(), None);
    }
}
