//! gRPC, decoded without I/O: message framing, decompression, schema-less and schema-based
//! message decoding, and status names.
//!
//! ```text
//! captured body chunks ─► framing (5-byte prefixes) ─► compression (grpc-encoding, bounded)
//!                                  └─► schema (server reflection descriptors) ─► canonical JSON
//!                                  └─► wire (no descriptors) ─────────────────► field-number JSON
//! ```
//!
//! [`decode::decode_body`] runs the whole pipeline over one direction of a call.

pub mod compression;
pub mod decode;
pub mod framing;
pub mod schema;
mod status;
pub mod wire;

pub use decode::{decode_body, DecodeLimits, DecodedBody, DecodedMessage, Decoding};
pub use framing::{split_messages, FrameDecoder, FramingError, Message};
pub use schema::{Direction, MethodSchema, Schema, SchemaError};
pub use status::{
    decode_message, encode_message, event_status, parse_timeout, reset_status, status_code,
    status_name, status_of_reset,
};

/// Splits a gRPC request path (`/pkg.Service/Method`) into service and method as upstream rig
/// does: the leading `/` is dropped and the rest split at the last `/`; a path without one is
/// all service, with an empty method.
pub fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.rsplit_once('/') {
        Some((service, method)) => (service, method),
        None => (path, ""),
    }
}

/// Whether a request `Content-Type` is gRPC (`application/grpc`, `application/grpc+proto`,
/// `application/grpc;...`). gRPC-Web (`application/grpc-web...`) frames its trailers inside
/// the body and is not: it is recorded as plain HTTP.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    const PREFIX: &[u8] = b"application/grpc";
    value.len() >= PREFIX.len()
        && value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
        && matches!(value.get(PREFIX.len()), None | Some(b'+' | b';' | b' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_at_the_last_slash() {
        assert_eq!(
            split_path("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(split_path("/a/b/c"), ("a/b", "c"));
        assert_eq!(split_path("/nomethod"), ("nomethod", ""));
        assert_eq!(split_path(""), ("", ""));
    }

    #[test]
    fn grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC;charset=utf-8",
        ] {
            assert!(is_grpc_content_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/grpc-web-text+proto",
            "application/json",
            "application/grp",
        ] {
            assert!(!is_grpc_content_type(no.as_bytes()), "{no}");
        }
    }
}
