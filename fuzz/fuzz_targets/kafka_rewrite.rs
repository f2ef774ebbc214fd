//! Fuzzes the broker address rewriter (`rewrite_response`) on Metadata, FindCoordinator,
//! DescribeCluster, Produce and Fetch (KIP-951 `node_endpoints`) responses.
//!
//! Input: a selector byte (which API), a 2-byte version, then the response payload.
//! Properties: no panic on any input; a rewritten frame has a correct size prefix, decodes
//! again by the same version, and rewriting it again with the same mapping is a fixed point
//! (the mapping is applied once, and everything else survives re-encoding).

#![no_main]

use libfuzzer_sys::fuzz_target;
use bytes::Bytes;
use rig_protocols::kafka::rewrite::{rewrite_response, Broker, Replacement};

/// Metadata, FindCoordinator, DescribeCluster, Produce, Fetch.
const APIS: [i16; 5] = [3, 10, 60, 0, 1];

fn to_proxy(broker: Broker<'_>) -> Option<Replacement> {
    Some(Replacement {
        host: "127.0.0.1".into(),
        port: 40000 + broker.node_id.rem_euclid(1000),
    })
}

fuzz_target!(|data: &[u8]| {
    let [selector, v0, v1, payload @ ..] = data else {
        return;
    };
    let api_key = APIS[usize::from(*selector) % APIS.len()];
    let version = i16::from_be_bytes([*v0, *v1]);
    let payload = Bytes::copy_from_slice(payload);
    let Ok(Some(frame)) = rewrite_response(api_key, version, payload, &mut to_proxy) else {
        return;
    };
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4);
    let again = rewrite_response(api_key, version, Bytes::copy_from_slice(&frame[4..]), &mut to_proxy)
        .expect("a rewritten response decodes by the same version");
    if let Some(again) = again {
        assert_eq!(again, frame, "rewriting is a fixed point");
    }
});
