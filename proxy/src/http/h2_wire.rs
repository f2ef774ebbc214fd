//! HTTP/2 wire format pieces shared by the `Upgrade: h2c` splice ([`super::h2c`]) and the h2c
//! frame relay ([`super::h2_relay`]): frame headers (RFC 9113 §4.1) and HPACK literals without
//! indexing (RFC 7541 §6.2.2), which a decoder takes without touching its dynamic table.

use bytes::{BufMut, BytesMut};
use http::HeaderMap;

/// The HTTP/2 connection preface every client starts with.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of an HTTP/2 frame header.
pub(crate) const FRAME_HEADER: usize = 9;
/// The largest frame a peer may send before settings say otherwise (RFC 9113 §4.2).
pub(crate) const MAX_FRAME: usize = 16_384;

pub(crate) const FRAME_DATA: u8 = 0x0;
pub(crate) const FRAME_HEADERS: u8 = 0x1;
pub(crate) const FRAME_RST_STREAM: u8 = 0x3;
pub(crate) const FRAME_SETTINGS: u8 = 0x4;
pub(crate) const FRAME_PUSH_PROMISE: u8 = 0x5;
pub(crate) const FRAME_GOAWAY: u8 = 0x7;
pub(crate) const FRAME_CONTINUATION: u8 = 0x9;

pub(crate) const FLAG_END_STREAM: u8 = 0x1;
pub(crate) const FLAG_ACK: u8 = 0x1;
pub(crate) const FLAG_END_HEADERS: u8 = 0x4;
pub(crate) const FLAG_PADDED: u8 = 0x8;
pub(crate) const FLAG_PRIORITY: u8 = 0x20;

/// The header of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHead {
    /// Payload length.
    pub(crate) len: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    /// Stream identifier (the reserved bit cleared).
    pub(crate) stream: u32,
}

impl FrameHead {
    /// The frame header at the start of `bytes`, if all nine bytes are there.
    pub(crate) fn parse(bytes: &[u8]) -> Option<FrameHead> {
        let head: &[u8; FRAME_HEADER] = bytes.get(..FRAME_HEADER)?.try_into().ok()?;
        Some(FrameHead {
            len: usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]),
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        })
    }

    /// Whether the frame carries `flag`.
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Appends a frame header.
pub(crate) fn put_frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
}

/// Appends a `HEADERS` frame carrying `block` whole (`END_HEADERS`), plus `END_STREAM` if
/// `end_stream`.
pub(crate) fn put_headers_frame(out: &mut BytesMut, stream: u32, block: &[u8], end_stream: bool) {
    let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
    put_frame_header(out, block.len(), FRAME_HEADERS, flags, stream);
    out.extend_from_slice(block);
}

/// Every field of `headers` as a literal.
pub(crate) fn put_fields(block: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        put_literal(block, name.as_str().as_bytes(), value.as_bytes());
    }
}

/// One "literal header field without indexing, new name" (RFC 7541 §6.2.2), no Huffman.
pub(crate) fn put_literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.push(0);
    put_string(block, name);
    put_string(block, value);
}

/// A string literal: its length as a 7-bit-prefix integer (RFC 7541 §5.1), then its bytes.
fn put_string(block: &mut Vec<u8>, text: &[u8]) {
    let mut len = text.len();
    if len < 127 {
        block.push(len as u8);
    } else {
        block.push(127);
        len -= 127;
        while len >= 128 {
            block.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        block.push(len as u8);
    }
    block.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_lengths_use_the_seven_bit_prefix() {
        let mut block = Vec::new();
        put_string(&mut block, &[b'a'; 126]);
        assert_eq!(block[0], 126);
        let mut block = Vec::new();
        put_string(&mut block, &[b'a'; 127]);
        assert_eq!(&block[..2], &[127, 0]);
        let mut block = Vec::new();
        put_string(&mut block, &[b'a'; 1337]);
        // RFC 7541 C.1.2 encodes 1337 with a 5-bit prefix; with 7 bits: 1337 - 127 = 1210.
        assert_eq!(&block[..3], &[127, 58 | 0x80, 9], "1210 = 9 * 128 + 58");
        assert_eq!(block.len(), 3 + 1337);
    }

    #[test]
    fn frame_headers_follow_rfc_9113() {
        // Decoding by a real HTTP/2 stack is covered by the curl tests.
        let mut out = BytesMut::new();
        put_frame_header(&mut out, 0x01_02_03, FRAME_HEADERS, 0x5, 1);
        assert_eq!(&out[..], &[1, 2, 3, 1, 5, 0, 0, 0, 1]);
        let head = FrameHead::parse(&[1, 2, 3, 1, 5, 0x80, 0, 0, 1, 0xff]).unwrap();
        assert_eq!(
            head,
            FrameHead {
                len: 0x01_02_03,
                kind: FRAME_HEADERS,
                flags: 5,
                stream: 1
            },
            "the reserved bit is not part of the stream id"
        );
        assert!(FrameHead::parse(&[0; 8]).is_none());
    }
}
