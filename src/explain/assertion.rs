//! Test assertions from `test.note` events.

use serde::Serialize;

use super::location::{rust_panic, split_location, SourceLocation};

/// One `test.note`: the failure message and, when recognised, where it was raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assertion {
    /// The message without its location.
    pub message: String,
    /// The source file (`order_test.go`, `tests/orders.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line in `file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The column in `file`, when given (rig-rs addition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

/// Splits a `test.note` error into location and message.
///
/// Recognised forms (leading whitespace ignored): Go's `file.go:42: message`, any
/// `file.ext:line: message` or `file.ext:line:col: message`, and Rust panics
/// (`thread 't' panicked at tests/x.rs:10:5:\nmessage`, or the pre-1.73
/// `panicked at 'message', tests/x.rs:10:5`). Anything else is kept whole as the message.
pub fn parse_assertion(text: &str) -> Assertion {
    let located = split_location(text.trim_start())
        .map(|(loc, rest)| (loc, rest.trim_start()))
        .or_else(|| rust_panic(text));
    match located {
        Some((SourceLocation { file, line, column }, message)) => Assertion {
            message: message.to_string(),
            file: Some(file.to_string()),
            line: Some(line),
            column,
        },
        None => Assertion {
            message: text.to_string(),
            file: None,
            line: None,
            column: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(file: &str, line: u32, column: Option<u32>, message: &str) -> Assertion {
        Assertion {
            message: message.into(),
            file: Some(file.into()),
            line: Some(line),
            column,
        }
    }

    #[test]
    fn go_notes_like_upstream() {
        assert_eq!(
            parse_assertion("order_test.go:42: expected 200, got 500"),
            located("order_test.go", 42, None, "expected 200, got 500")
        );
        assert_eq!(
            parse_assertion("file.go:1: short"),
            located("file.go", 1, None, "short")
        );
        assert_eq!(
            parse_assertion("    order_test.go:7:   indented"),
            located("order_test.go", 7, None, "indented")
        );
    }

    #[test]
    fn rust_notes_and_panics() {
        assert_eq!(
            parse_assertion("tests/orders.rs:42:5: assertion `left == right` failed"),
            located(
                "tests/orders.rs",
                42,
                Some(5),
                "assertion `left == right` failed"
            )
        );
        assert_eq!(
            parse_assertion(
                "thread 'orders' panicked at tests/orders.rs:42:5:\nassertion failed: ok"
            ),
            located("tests/orders.rs", 42, Some(5), "assertion failed: ok")
        );
        assert_eq!(
            parse_assertion("thread 'main' panicked at 'boom', src/main.rs:3:1"),
            located("src/main.rs", 3, Some(1), "boom")
        );
    }

    #[test]
    fn text_without_location_is_the_message() {
        let a = parse_assertion("expected status complete, got pending");
        assert_eq!(a.message, "expected status complete, got pending");
        assert_eq!((a.file, a.line, a.column), (None, None, None));
        assert_eq!(
            serde_json::to_string(&parse_assertion("x")).unwrap(),
            r#"{"message":"x"}"#
        );
    }
}
