//! The "error fingerprint" of a failed response: the text to look for in the target
//! service's stderr to find the log line that explains the failure.

use serde_json::Value;

use super::location::{rust_panic, split_location};

/// Fingerprints shorter than this (in characters) match too much to mean anything.
const MIN_FINGERPRINT_CHARS: usize = 4;

/// The fingerprint of a response body (upstream `extractErrorFingerprint`, generalised):
///
/// 1. a JSON object body gives its `error` string (upstream), else its `error.message` string,
///    else its `message` string (common in Rust and Node services); a JSON object with none of
///    these falls through to rule 2;
/// 2. any other body gives its first non-empty line, trimmed (for a Rust panic, the first
///    line of the panic message).
///
/// A leading source location (`file.go:12:`, `src/x.rs:10:5:`) or Rust panic prefix
/// (`thread 'x' panicked at src/x.rs:10:5:`) is removed, since stderr often words the
/// location differently. The result is `""` (no fingerprint) when empty or shorter than four
/// characters.
pub fn error_fingerprint(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let text = match json_error_text(body) {
        Some(text) => text,
        None => {
            // A Rust panic's message is on the line after its header.
            let text = rust_panic(body).map_or(body, |(_, message)| message);
            first_line(text).to_string()
        }
    };
    let text = strip_location(text.trim());
    if text.chars().count() < MIN_FINGERPRINT_CHARS {
        String::new()
    } else {
        text.to_string()
    }
}

/// The error text of a JSON object body: `Some("")` for `{"error":""}` (no fingerprint, as
/// upstream), `None` when the body is not such an object.
fn json_error_text(body: &str) -> Option<String> {
    if !body.starts_with('{') {
        return None;
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    match map.get("error") {
        Some(Value::String(s)) => return Some(s.clone()),
        Some(Value::Object(inner)) => {
            if let Some(Value::String(s)) = inner.get("message") {
                return Some(s.clone());
            }
        }
        _ => {}
    }
    match map.get("message") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

fn strip_location(text: &str) -> &str {
    if let Some((_, message)) = rust_panic(text) {
        return first_line(message);
    }
    match split_location(text) {
        Some((_, rest)) => rest.trim(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_cases() {
        assert_eq!(
            error_fingerprint(r#"{"error":"something went wrong"}"#),
            "something went wrong"
        );
        assert_eq!(
            error_fingerprint(r#"  {"code":42,"error":"column \"x\" does not exist","id":1}  "#),
            "column \"x\" does not exist"
        );
        assert_eq!(
            error_fingerprint("plain failure text"),
            "plain failure text"
        );
        assert_eq!(error_fingerprint(r#"{"error":""}"#), "");
        assert_eq!(error_fingerprint(""), "");
        assert_eq!(error_fingerprint("first line\nsecond line"), "first line");
    }

    #[test]
    fn generalised_cases() {
        assert_eq!(
            error_fingerprint(r#"{"error":{"code":5,"message":"order not found"}}"#),
            "order not found"
        );
        assert_eq!(
            error_fingerprint(r#"{"message":"invalid payload"}"#),
            "invalid payload"
        );
        // A JSON object without error text falls back to its first line.
        assert_eq!(error_fingerprint(r#"{"ok":false}"#), r#"{"ok":false}"#);
        assert_eq!(error_fingerprint("\n\n  late line  \n"), "late line");
        assert_eq!(
            error_fingerprint("handler.go:42: pq: relation missing"),
            "pq: relation missing"
        );
        assert_eq!(
            error_fingerprint("thread 'tokio' panicked at src/db.rs:10:5:\npool exhausted"),
            "pool exhausted"
        );
        // Too short to identify anything.
        assert_eq!(error_fingerprint("no"), "");
        assert_eq!(error_fingerprint(r#"{"error":"bad"}"#), "");
    }
}
