//! The environment spec: decoding, defaulting, validation and the graph transforms.
//!
//! A `POST /environments` body goes through these steps, in this order:
//!
//! 1. [`decode_environment`] parses the JSON into a [`rig_types::Environment`], rejecting
//!    repeated service, ingress and egress names (which a plain map decode would silently
//!    merge) and `null` or non-object hooks. A failure is a 400.
//! 2. [`validate_environment`] applies [`resolve_defaults`] (the only defaulting: an egress
//!    without an ingress picks the target's single ingress or its `default` one) and then
//!    returns every rule violation, in a deterministic order. Any error is a 422.
//! 3. [`insert_test_node`] adds the `~test` node, whose egresses point at every real ingress,
//!    so that the test itself is a participant of the dependency graph.
//! 4. [`transform_observe`] (observe mode only) puts a `proxy` node on every edge, the
//!    `~test` edges included, so that all traffic between participants is recorded.
//!
//! Names containing `~` are reserved for the nodes rigd inserts in steps 3 and 4, which is why
//! validation rejects them in user specs.

mod decode;
mod defaults;
mod transform;
mod validate;

#[cfg(test)]
mod tests;

pub use decode::{
    decode_environment, decode_environment_noting_unknown, unknown_field_warning, DecodeError,
};
pub use defaults::resolve_defaults;
pub use transform::{
    insert_test_node, parse_test_egress, proxy_node_name, transform_observe, ProxyConfig, TEST_NODE,
};
pub use validate::{validate_environment, KNOWN_SERVICE_TYPES};

/// Quotes a string the way Go's `%q` verb does, so messages match upstream's byte for byte
/// for ordinary names: surrounding double quotes, `\"` and `\\` escaped, control characters
/// written as `\n`, `\t`, ... or `\xNN`/`\uNNNN`, every other character kept as is.
pub(crate) fn go_quote(s: &str) -> String {
    use std::fmt::Write as _;

    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
