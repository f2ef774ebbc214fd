//! Talking to rigd: the HTTP client, the Server-Sent Events stream and the auto-start
//! protocol. Shared by the SDK and the `rig` CLI (which re-exports these modules as
//! `rigd::cli::{client, event_stream, sse, autostart, lockfile}`).
//!
//! - [`client`]: [`RigdClient`](client::RigdClient), one method per API route, and
//!   [`ClientError`](client::ClientError);
//! - [`event_stream`]: [`EventStream`](event_stream::EventStream), an environment's events in
//!   order across reconnections (`Last-Event-ID`);
//! - [`sse`]: the incremental `text/event-stream` parser under it;
//! - [`autostart`]: finding a running rigd or starting one (addr file, lock file, spawn);
//! - [`lockfile`]: the `flock(2)` that serialises starting rigd across processes.
//!
//! Requests go over plain HTTP/1.1 on loopback, one connection per request; bodies are JSON
//! with `Content-Type: application/json`, and no `Origin` header is ever sent (rigd rejects
//! cross-site requests).

pub mod autostart;
pub mod client;
pub mod event_stream;
mod http;
pub mod lockfile;
mod log_body;
pub mod sse;
