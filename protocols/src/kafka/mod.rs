//! The Kafka wire protocol as the observing proxy needs it: pure functions over bytes.
//!
//! - [`frame`]: splitting a byte stream into size-prefixed frames, incrementally, chunk by
//!   chunk, with a maximum frame size;
//! - [`header`]: request headers (API key, version, correlation id, client id) parsed with the
//!   `kafka-protocol` crate, the correlation id of a response, and whether a Produce request
//!   expects an answer (`acks=0` does not);
//! - [`rewrite`]: Metadata, FindCoordinator, DescribeCluster, Produce (v10+) and Fetch (v16+,
//!   KIP-951 `node_endpoints`) responses decoded by their real schema version and re-encoded
//!   with every broker address replaced;
//! - [`details`]: topics, partitions and error codes of Produce and Fetch exchanges;
//! - [`api_name`]: the name of every API key.
//!
//! Nothing here does I/O or panics on hostile input; every entry point is fuzzed (`fuzz/`).

pub mod details;
pub mod frame;
pub mod header;
mod names;
pub mod rewrite;

pub use names::api_name;

/// Why a Kafka message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(String);

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>) -> DecodeError {
        DecodeError(message.into())
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Turns a `kafka-protocol` error into a [`DecodeError`] naming what was being decoded.
pub(crate) fn decode_error(what: &str, version: i16, err: impl std::fmt::Display) -> DecodeError {
    DecodeError::new(format!("decoding {what} v{version}: {err}"))
}
