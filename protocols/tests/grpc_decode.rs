//! The gRPC decoding pipeline against the real descriptors and prost encodings of the echo
//! fixture service.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message as _;
use rig_grpc_echo::pb::{Detail, EchoReply, EchoRequest, Mood};
use rig_grpc_echo::FILE_DESCRIPTOR_SET;
use rig_protocols::grpc::framing::encode_message;
use rig_protocols::grpc::{decode_body, DecodeLimits, Decoding, Direction, Schema};
use serde_json::json;

fn request() -> EchoRequest {
    EchoRequest {
        text: "hi".into(),
        repeat: 2,
        detail: Some(Detail {
            note: "n".into(),
            weight: 5,
        }),
        numbers: vec![1, -2],
        blob: vec![1, 2],
        mood: Mood::Happy as i32,
        ..EchoRequest::default()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn schema() -> Schema {
    Schema::from_file_descriptor_set(FILE_DESCRIPTOR_SET).unwrap()
}

#[test]
fn messages_decode_to_canonical_json_with_the_schema() {
    let schema = schema();
    assert!(schema.services().any(|s| s == "rig.test.echo.v1.Echo"));
    let method = schema.method("rig.test.echo.v1.Echo", "Unary").unwrap();
    let json = method
        .decode(Direction::Request, &request().encode_to_vec())
        .unwrap();
    assert_eq!(
        json,
        json!({"text": "hi", "repeat": 2, "detail": {"note": "n", "weight": "5"},
               "numbers": ["1", "-2"], "blob": "AQI=", "mood": "MOOD_HAPPY"})
    );
    let reply = EchoReply {
        text: "yo".into(),
        index: 3,
        ..EchoReply::default()
    };
    let json = method
        .decode(Direction::Response, &reply.encode_to_vec())
        .unwrap();
    assert_eq!(json, json!({"text": "yo", "index": 3}));
    assert!(schema.method("rig.test.echo.v1.Echo", "Nope").is_none());
    assert!(schema.method("nope.Service", "Unary").is_none());
    let err = method
        .decode(Direction::Request, &[0x0a, 0x05])
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("not a valid rig.test.echo.v1.EchoRequest"),
        "{err}"
    );
}

#[test]
fn every_message_of_a_body_decodes_across_chunks_and_compression() {
    let schema = schema();
    let method = schema.method("rig.test.echo.v1.Echo", "Bidi").unwrap();
    let first = request().encode_to_vec();
    let second = EchoRequest {
        text: "second".into(),
        ..EchoRequest::default()
    }
    .encode_to_vec();
    let mut body = encode_message(false, &first);
    body.extend(encode_message(true, &gzip(&second)));
    body.extend(encode_message(false, b""));
    // Arbitrary chunk boundaries, as HTTP/2 DATA frames cut them.
    let chunks: Vec<Bytes> = body.chunks(7).map(Bytes::copy_from_slice).collect();

    let decoded = decode_body(
        chunks.clone(),
        Some("gzip"),
        Some(&method),
        Direction::Request,
        DecodeLimits::default(),
    );
    assert_eq!(decoded.error, None);
    assert_eq!(decoded.messages.len(), 3);
    assert_eq!(decoded.messages[0].json.as_ref().unwrap()["text"], "hi");
    assert_eq!(decoded.messages[0].decoding, Some(Decoding::Schema));
    assert!(decoded.messages[1].compressed);
    assert_eq!(decoded.messages[1].json, Some(json!({"text": "second"})));
    assert_eq!(decoded.messages[2].json, Some(json!({})));
    assert_eq!(decoded.messages[2].size, 0);

    // Without the schema the same body decodes from the wire format.
    let raw = decode_body(
        chunks,
        Some("gzip"),
        None,
        Direction::Request,
        DecodeLimits::default(),
    );
    assert_eq!(raw.messages[0].decoding, Some(Decoding::Wire));
    assert_eq!(raw.messages[0].json.as_ref().unwrap()["1"], "hi");
    assert_eq!(raw.messages[0].json.as_ref().unwrap()["2"], 2);
    assert_eq!(
        raw.messages[0].json.as_ref().unwrap()["5"],
        json!({"1": "n", "2": 5})
    );
    assert_eq!(raw.messages[1].json, Some(json!({"1": "second"})));
}

#[test]
fn a_decompression_bomb_is_refused_within_the_budget() {
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let body = encode_message(true, &bomb);
    let limits = DecodeLimits {
        max_message: 1 << 20,
        max_decompressed: 1 << 20,
    };
    let decoded = decode_body(
        [Bytes::from(body)],
        Some("gzip"),
        None,
        Direction::Request,
        limits,
    );
    assert_eq!(decoded.messages.len(), 1);
    assert_eq!(decoded.messages[0].json, None);
    assert_eq!(
        decoded.messages[0].error.as_deref(),
        Some("the message inflates to more than 1048576 bytes")
    );
}

#[test]
fn a_cut_body_keeps_its_complete_messages_and_says_where_it_ends() {
    let mut body = encode_message(false, &request().encode_to_vec());
    body.extend(&encode_message(true, b"\x0a\x03abc")[..6]);
    let decoded = decode_body(
        [Bytes::from(body)],
        None,
        None,
        Direction::Request,
        DecodeLimits::default(),
    );
    assert_eq!(
        decoded.error.as_deref(),
        Some("the body ends 1 bytes into a 5-byte message")
    );
    // The complete message, then the one cut off, by its declared size.
    assert_eq!(decoded.messages.len(), 2);
    assert!(decoded.messages[0].json.is_some());
    let cut = &decoded.messages[1];
    assert_eq!((cut.size, cut.compressed, &cut.json), (5, true, &None));
    assert_eq!(
        cut.error.as_deref(),
        Some("only 1 of its 5 bytes were captured")
    );
}

#[test]
fn a_message_past_the_limit_is_listed_by_size_and_not_decoded() {
    let mut body = encode_message(false, &request().encode_to_vec());
    body.extend(encode_message(false, &[0; 100]));
    let limits = DecodeLimits {
        max_message: 64,
        ..DecodeLimits::default()
    };
    let decoded = decode_body([Bytes::from(body)], None, None, Direction::Request, limits);
    assert_eq!(decoded.messages.len(), 2);
    let big = &decoded.messages[1];
    assert_eq!((big.size, big.compressed, &big.json), (100, false, &None));
    assert_eq!(
        big.error.as_deref(),
        Some("message 1: declares 100 bytes, more than the 64-byte limit")
    );
}

#[test]
fn files_sent_one_by_one_link_in_any_order_and_broken_ones_are_left_out() {
    let pool = prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap();
    let mut files: Vec<Vec<u8>> = pool
        .file_descriptor_protos()
        .map(|f| f.encode_to_vec())
        .collect();
    files.reverse();
    let schema = Schema::from_file_descriptors(&files).unwrap();
    assert!(schema.method("rig.test.echo.v1.Echo", "Unary").is_some());

    // A garbage file next to the good one: the good one is kept.
    files.push(b"\xff\xff garbage".to_vec());
    let schema = Schema::from_file_descriptors(&files).unwrap();
    assert!(schema.method("rig.test.echo.v1.Echo", "Unary").is_some());

    assert!(Schema::from_file_descriptors([b"\xff".to_vec()]).is_err());
    assert!(Schema::from_file_descriptors(Vec::<Vec<u8>>::new()).is_err());
}

/// The files a grpc-js server's reflection (`@grpc/reflection` 0.x over `@grpc/proto-loader`)
/// answers `FileContainingSymbol("px2.Echo")` with, one base64 line each, for this proto:
///
/// ```proto
/// syntax = "proto3";
/// package px2;
/// import "google/protobuf/timestamp.proto";
/// enum Kind { ALPHA = 0; BETA = 1; }
/// message Inner { google.protobuf.Timestamp when = 1; repeated string tags = 2; Kind kind = 3;
///                 map<string, int32> m = 4; }
/// message Msg { string text = 1; int32 n = 2; Inner inner = 3; int64 big = 4; }
/// service Echo { rpc Unary(Msg) returns (Msg); }
/// ```
///
/// protobuf.js names the files after their packages (`px2.proto`, `google_protobuf.proto`)
/// and lists no imports.
const GRPC_JS_REFLECTION: &str = include_str!("fixtures/grpc-js-reflection.b64");

#[test]
fn descriptors_from_grpc_js_reflection_link_although_they_list_no_imports() {
    use base64::Engine as _;
    let files: Vec<Vec<u8>> = GRPC_JS_REFLECTION
        .lines()
        .map(|line| {
            base64::engine::general_purpose::STANDARD
                .decode(line)
                .unwrap()
        })
        .collect();
    assert_eq!(files.len(), 2);
    let schema = Schema::from_file_descriptors(&files).unwrap();
    let method = schema.method("px2.Echo", "Unary").unwrap();
    // The grpc-js server's answer to {text: "hi", n: 3}, as it passed the proxy.
    let reply = [
        0x0a, 0x02, 0x68, 0x69, 0x10, 0x03, 0x1a, 0x15, 0x0a, 0x04, 0x08, 0x05, 0x10, 0x01, 0x12,
        0x01, 0x61, 0x12, 0x01, 0x62, 0x18, 0x01, 0x22, 0x05, 0x0a, 0x01, 0x6b, 0x10, 0x01, 0x20,
        0xf9, 0xbe, 0xb7, 0xb0, 0x88, 0x89, 0x1c,
    ];
    assert_eq!(
        method.decode(Direction::Response, &reply).unwrap(),
        json!({"text": "hi", "n": 3, "big": "123456789012345",
               "inner": {"when": "1970-01-01T00:00:05.000000001Z", "tags": ["a", "b"],
                         "kind": "BETA", "m": {"k": 1}}})
    );
}
