//! Fuzzes schema-less protobuf decoding, [`rig_protocols::grpc::wire::decode`], and decoding
//! with a real schema (the echo fixture's descriptors) through [`MethodSchema::decode`].
//!
//! Properties: neither panics on any input; a successful decoding is deterministic and
//! serialises as JSON; the schema-less rendering never nests deeper than
//! [`wire::MAX_DEPTH`] objects (plus the leaf objects of fixed-width and bytes fields).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rig_protocols::grpc::{wire, Direction, MethodSchema, Schema};
use serde_json::Value;

fn method() -> &'static MethodSchema {
    static METHOD: OnceLock<MethodSchema> = OnceLock::new();
    METHOD.get_or_init(|| {
        Schema::from_file_descriptor_set(include_bytes!("../../fixtures/grpc-echo/proto/echo.desc"))
            .expect("the fixture's descriptors link")
            .method("rig.test.echo.v1.Echo", "Unary")
            .expect("the fixture has Echo/Unary")
    })
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    match wire::decode(data) {
        Ok(json) => {
            assert_eq!(wire::decode(data).ok(), Some(json.clone()), "deterministic");
            serde_json::to_string(&json).expect("serialises");
            assert!(depth(&json) <= wire::MAX_DEPTH + 2, "depth {}", depth(&json));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for direction in [Direction::Request, Direction::Response] {
        match method().decode(direction, data) {
            Ok(json) => {
                serde_json::to_string(&json).expect("serialises");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
