//! Pure protocol decoders used by `rig-proxy`: no I/O, every entry point takes bytes and is
//! fuzzable.
//!
//! - [`grpc`]: message framing, decompression, decoding with server-reflection descriptors or
//!   schema-less from the wire format, status names and `grpc-message` decoding;
//! - [`kafka`]: the API name table.

pub mod grpc;
pub mod kafka;
