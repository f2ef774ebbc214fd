//! Fuzzes the gRPC message pipeline of `rig_protocols::grpc`: [`FrameDecoder`] and
//! [`decode_body`] (framing, bounded decompression, schema-less decoding).
//!
//! Input: the first byte picks a chunk size (1..=256) and the rest is a body.
//!
//! Properties:
//! - feeding the body in chunks of that size yields exactly the messages, error and
//!   incomplete tail of feeding it whole (framing is independent of DATA frame boundaries);
//! - the messages' payloads and prefixes add up to the bytes consumed;
//! - `decode_body` never panics, never reports more decompressed bytes than its budget, and
//!   every message's JSON serialises.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rig_protocols::grpc::framing::PREFIX_LEN;
use rig_protocols::grpc::{decode_body, DecodeLimits, Direction, FrameDecoder};

const MAX_MESSAGE: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&size, body)) = data.split_first() else {
        return;
    };
    let size = usize::from(size) + 1;

    let mut whole = FrameDecoder::new(MAX_MESSAGE);
    let mut whole_out = Vec::new();
    let whole_result = whole.push(Bytes::copy_from_slice(body), &mut whole_out);

    let mut chunked = FrameDecoder::new(MAX_MESSAGE);
    let mut chunked_out = Vec::new();
    let mut chunked_result = Ok(());
    for chunk in body.chunks(size) {
        chunked_result = chunked.push(Bytes::copy_from_slice(chunk), &mut chunked_out);
        if chunked_result.is_err() {
            break;
        }
    }
    assert_eq!(whole_out, chunked_out, "chunks of {size}");
    assert_eq!(whole_result, chunked_result, "chunks of {size}");
    assert_eq!(whole.incomplete(), chunked.incomplete(), "chunks of {size}");
    let consumed: usize = whole_out.iter().map(|m| m.payload.len() + PREFIX_LEN).sum();
    assert!(consumed <= body.len());
    if whole_result.is_ok() && whole.incomplete().is_none() {
        assert_eq!(consumed, body.len());
    }

    let limits = DecodeLimits {
        max_message: MAX_MESSAGE,
        max_decompressed: 1 << 18,
    };
    let chunks = body.chunks(size).map(Bytes::copy_from_slice);
    let decoded = decode_body(chunks, Some("gzip"), None, Direction::Request, limits);
    assert_eq!(decoded.messages.len(), whole_out.len());
    for message in &decoded.messages {
        if let Some(json) = &message.json {
            serde_json::to_string(json).expect("decoded JSON serialises");
        }
    }
});
