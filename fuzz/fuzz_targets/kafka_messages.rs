//! Fuzzes the decoders the proxy's observer runs on kept request and response bytes: request
//! headers, `acks` of Produce requests, and the topic details of Produce and Fetch.
//!
//! Input: a selector byte (which API's details to decode), a 2-byte version, then the bytes.
//! Property: no panic, and no absurd allocation, on any input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rig_protocols::kafka::details::{request_topics, response_topics};
use rig_protocols::kafka::header::{parse_request_head, produce_acks};

fuzz_target!(|data: &[u8]| {
    if let Ok(head) = parse_request_head(data) {
        let _ = produce_acks(&head, data);
        if let Some(body) = head.body_offset.and_then(|offset| data.get(offset..)) {
            let _ = request_topics(head.api_key, head.api_version, body);
        }
    }
    let [selector, v0, v1, rest @ ..] = data else {
        return;
    };
    // Produce (0) or Fetch (1), any version.
    let api_key = i16::from(selector & 1);
    let version = i16::from_be_bytes([*v0, *v1]);
    let _ = request_topics(api_key, version, rest);
    let _ = response_topics(api_key, version, rest);
});
