//! Pure protocol decoders used by `rig-proxy`: no I/O, every entry point takes bytes and is
//! fuzzable.
//!
//! - [`grpc`]: message framing, decompression, decoding with server-reflection descriptors or
//!   schema-less from the wire format, status names and `grpc-message` decoding;
//! - [`kafka`]: frame splitting, request headers and correlation, broker address rewriting,
//!   topic details and API names.

pub mod grpc;
pub mod kafka;
