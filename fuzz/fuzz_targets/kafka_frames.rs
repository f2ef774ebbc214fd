//! Fuzzes Kafka frame splitting ([`FrameScanner`]) and the per-frame header parsers the proxy
//! runs on every request and response.
//!
//! Input: one byte giving a chunk size, then the stream. Properties: splitting the stream in
//! chunks of any size yields exactly the frames (and the same error) as splitting it whole;
//! no frame exceeds the limit; header and correlation parsing never panic on any frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rig_protocols::kafka::frame::{split_all, FrameScanner, Piece};
use rig_protocols::kafka::header::{expects_response, parse_request_head, response_correlation_id};

/// A small limit, so the fuzzer reaches the oversize path with short inputs.
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let whole = split_all(stream, MAX);

    let mut scanner = FrameScanner::new(MAX);
    let mut frames = Vec::new();
    let mut current: Option<(usize, Vec<u8>)> = None;
    let mut error = None;
    'chunks: for piece_of_stream in stream.chunks(chunk) {
        let mut input = piece_of_stream;
        loop {
            match scanner.next(&mut input) {
                Ok(Some(Piece::Start { len })) => {
                    assert!(len <= MAX);
                    assert!(current.is_none(), "a frame started inside another");
                    current = Some((len, Vec::new()));
                }
                Ok(Some(Piece::Payload(bytes))) => {
                    let (_, payload) = current.as_mut().expect("payload outside a frame");
                    payload.extend_from_slice(bytes);
                }
                Ok(Some(Piece::End)) => {
                    let (len, payload) = current.take().expect("end outside a frame");
                    assert_eq!(len, payload.len());
                    let _ = response_correlation_id(&payload);
                    if let Ok(head) = parse_request_head(&payload) {
                        let _ = expects_response(&head, &payload);
                        if let Some(offset) = head.body_offset {
                            assert!(offset <= payload.len());
                        }
                    }
                    frames.push(payload);
                }
                Ok(None) => break,
                Err(err) => {
                    let _ = err.to_string();
                    error = Some(err);
                    break 'chunks;
                }
            }
        }
    }
    match (whole, error) {
        (Ok((whole_frames, at_boundary)), None) => {
            assert_eq!(whole_frames, frames);
            assert_eq!(at_boundary, scanner.at_boundary());
        }
        (Err(whole_error), Some(chunked_error)) => assert_eq!(whole_error, chunked_error),
        (whole, chunked) => panic!("whole: {whole:?}, chunked: {chunked:?}"),
    }
});
