//! Recognising source locations in failure text: `file.ext:line:` (Go's `t.Errorf`,
//! `log.Lshortfile`), `file.ext:line:col:` (Rust, compilers) and Rust panics
//! (`panicked at src/x.rs:10:5:` and the older `panicked at 'msg', src/x.rs:10:5`).

/// A position in a source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLocation<'a> {
    /// The file as written (`orders_test.go`, `src/main.rs`).
    pub file: &'a str,
    /// The line, from 1.
    pub line: u32,
    /// The column, when given.
    pub column: Option<u32>,
}

/// The longest file extension accepted (`.go`, `.rs`, `.py`, `.kt`, `.swift`, ...).
const MAX_EXTENSION: usize = 8;

/// Splits `text` that starts with `file.ext:line:` or `file.ext:line:col:` into the location
/// and the text after the final colon. The file name must contain no whitespace and end in a
/// `.ext` of 1 to 8 letters or digits.
pub fn split_location(text: &str) -> Option<(SourceLocation<'_>, &str)> {
    let colon = text.find(':')?;
    let file = &text[..colon];
    if !is_file_name(file) {
        return None;
    }
    let (line, rest) = leading_number(&text[colon + 1..])?;
    let rest = rest.strip_prefix(':')?;
    let (column, rest) = match leading_number(rest) {
        Some((column, after)) if after.starts_with(':') => (Some(column), &after[1..]),
        _ => (None, rest),
    };
    Some((SourceLocation { file, line, column }, rest))
}

/// A Rust panic in `text`: the location and the panic message.
///
/// Recognises `... panicked at src/x.rs:10:5:\n<message>` (Rust 1.73 and later; the message
/// may also follow on the same line) and `... panicked at '<message>', src/x.rs:10:5`.
pub fn rust_panic(text: &str) -> Option<(SourceLocation<'_>, &str)> {
    const MARKER: &str = "panicked at ";
    let after = &text[text.find(MARKER)? + MARKER.len()..];
    if let Some(quoted) = after.strip_prefix('\'') {
        let end = quoted.rfind("', ")?;
        let message = &quoted[..end];
        let location = quoted[end + 3..].lines().next().unwrap_or("");
        let (file, line, column) = parse_bare_location(location)?;
        return Some((SourceLocation { file, line, column }, message));
    }
    let (location, rest) = split_location(after)?;
    Some((location, rest.trim_start()))
}

/// `file.ext:line[:col]` with nothing after it.
fn parse_bare_location(text: &str) -> Option<(&str, u32, Option<u32>)> {
    let mut parts = text.trim_end().rsplitn(3, ':');
    let last = parts.next()?;
    let middle = parts.next()?;
    match parts.next() {
        Some(file) if is_file_name(file) => {
            Some((file, middle.parse().ok()?, Some(last.parse().ok()?)))
        }
        None if is_file_name(middle) => Some((middle, last.parse().ok()?, None)),
        _ => None,
    }
}

fn is_file_name(file: &str) -> bool {
    if file.is_empty() || file.chars().any(char::is_whitespace) {
        return false;
    }
    match file.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty()
                && !ext.is_empty()
                && ext.len() <= MAX_EXTENSION
                && ext.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// A run of ASCII digits at the start of `text` and what follows; `None` without digits or
/// when the number does not fit.
fn leading_number(text: &str) -> Option<(u32, &str)> {
    let end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    if end == 0 {
        return None;
    }
    Some((text[..end].parse().ok()?, &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(file: &str, line: u32, column: Option<u32>) -> SourceLocation<'_> {
        SourceLocation { file, line, column }
    }

    #[test]
    fn go_and_rust_locations() {
        assert_eq!(
            split_location("order_test.go:42: expected 200, got 500"),
            Some((loc("order_test.go", 42, None), " expected 200, got 500"))
        );
        assert_eq!(
            split_location("tests/orders.rs:42:5: left != right"),
            Some((loc("tests/orders.rs", 42, Some(5)), " left != right"))
        );
        assert_eq!(
            split_location("file.go:1:short"),
            Some((loc("file.go", 1, None), "short"))
        );
        // A number after the line that is not followed by a colon is message text.
        assert_eq!(
            split_location("main.go:12: 34 items"),
            Some((loc("main.go", 12, None), " 34 items"))
        );
    }

    #[test]
    fn text_without_a_location_is_not_split() {
        for text in [
            "expected 200, got 500",
            "error: file.go:12: x",
            "Makefile:12: missing",
            "a.go:x: nope",
            "a.go:12 no colon",
            "my file.go:3: spaces",
            ".go:3: no stem",
            "",
        ] {
            assert_eq!(split_location(text), None, "{text:?}");
        }
    }

    #[test]
    fn rust_panics_new_and_old_format() {
        assert_eq!(
            rust_panic("thread 'main' panicked at src/main.rs:10:5:\nboom\nnote: run with"),
            Some((loc("src/main.rs", 10, Some(5)), "boom\nnote: run with"))
        );
        assert_eq!(
            rust_panic("thread 'orders' panicked at tests/x.rs:3:9: left: 1"),
            Some((loc("tests/x.rs", 3, Some(9)), "left: 1"))
        );
        assert_eq!(
            rust_panic("thread 'main' panicked at 'it's broken', src/lib.rs:7:13\nnote: x"),
            Some((loc("src/lib.rs", 7, Some(13)), "it's broken"))
        );
        assert_eq!(rust_panic("panic: runtime error"), None);
        assert_eq!(rust_panic("panicked at somewhere"), None);
    }
}
