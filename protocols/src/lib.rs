//! Pure protocol decoders used by `rig-proxy`: no I/O, every entry point takes bytes and is
//! fuzzable.
//!
//! Today this holds the Kafka API name table and the gRPC status names. gRPC framing and reflection-based decoding, Kafka
//! frame parsing and address rewriting, and protocol sniffing arrive with the gRPC/Kafka
//! observation work.

pub mod grpc;
pub mod kafka;
