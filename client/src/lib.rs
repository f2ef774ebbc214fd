//! The `rig` SDK for Rust tests.
//!
//! It talks to `rigd` over HTTP and Server-Sent Events. For now it re-exports the wire types;
//! `rig::up`, the service builders and the traffic assertions arrive with the SDK work.

pub use rig_types as types;
pub use rig_types::{Endpoint, Event, EventType, Protocol};
