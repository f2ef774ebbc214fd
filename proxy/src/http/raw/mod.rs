//! The raw HTTP/1.1 fast path: the common request (HTTP/1.1, origin form, `Host`, framed by
//! `Content-Length` or chunked, no upgrade, not gRPC, no hop-by-hop header but
//! `Connection: keep-alive|close`) is forwarded byte for byte, and the target's answer comes
//! back byte for byte, with no header map built and no copy made on the data path.
//!
//! ```text
//! accept ─► raw::serve ─┬─ common request ─► forward verbatim, record heads + captures
//!                       └─ anything else (HTTP/2 preface, HTTP/1.0, upgrade, CONNECT, gRPC,
//!                          odd Connection tokens, TE, Proxy-*, NTLM or Negotiate
//!                          authorization, malformed, too large)
//!                              ─► hyper for the rest of the connection, fed the bytes read
//! ```
//!
//! Observation is unchanged in what it records: [`record::RawRecord`] keeps the heads as
//! slices of the read buffers and parses them on the observer task into the same
//! [`HttpRecord`](super::record::HttpRecord) the hyper path builds, so both paths produce the
//! same `request.completed` event. Failures answer and record as the hyper path does (see
//! [`super::error`]).

mod connection;
mod flight;
mod framing;
mod parse;
mod prefixed;
mod record;

pub(crate) use connection::{serve, Fallback};
pub(crate) use parse::{replayable, MAX_RESPONSE_HEADERS};
pub(crate) use prefixed::Prefixed;
pub(crate) use record::Answer;

#[cfg(test)]
mod tests;
