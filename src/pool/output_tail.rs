//! The end of a backend server's output, as a failed start quotes it.
//!
//! The last couple of KiB usually say why a server stopped; a Go server's panic is the
//! exception: its reason is the first line of a stack trace that can be longer than that, so a
//! `panic:` (or `fatal error:`) line cut off by the tail leads the quote.

/// How much of the end of a server's output a start error quotes.
const LOG_TAIL: usize = 2048;

/// How much of the end of a server's output is searched for a panic line.
pub(super) const SCAN: usize = 64 * 1024;

/// How much of a panic line is quoted.
const PANIC_LINE_MAX: usize = 512;

/// The end of `output` (at most [`LOG_TAIL`] bytes), led by the last Go panic line before it
/// when the tail does not show one.
pub(super) fn quote_end(output: &str) -> String {
    let output = output.trim();
    let tail = last_bytes(output, LOG_TAIL);
    let before = &output[..output.len() - tail.len()];
    if tail.lines().any(is_panic_line) {
        return tail.to_string();
    }
    match before.lines().rev().find(|line| is_panic_line(line)) {
        Some(line) => format!("{}\n[…]\n{tail}", first_bytes(line, PANIC_LINE_MAX)),
        None => tail.to_string(),
    }
}

/// The first line of a Go panic or fatal runtime error.
fn is_panic_line(line: &str) -> bool {
    line.starts_with("panic: ") || line.starts_with("fatal error: ")
}

/// The end of `text`, at most `max` bytes, starting at a character boundary.
pub(super) fn last_bytes(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The start of `text`, at most `max` bytes, ending at a character boundary.
fn first_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_keeps_the_last_bytes_whole_characters_only() {
        assert_eq!(last_bytes("short", 2048), "short");
        assert_eq!(last_bytes("abcdef", 3), "def");
        // "é" is two bytes: a cut inside it starts after it.
        assert_eq!(last_bytes("aé!", 2), "!");
        assert_eq!(last_bytes("aé!", 3), "é!");
        assert_eq!(first_bytes("aé!", 2), "a");
        assert_eq!(first_bytes("aé!", 3), "aé");
    }

    #[test]
    fn a_short_output_is_quoted_whole() {
        let output = "starting\npanic: boom\n\ngoroutine 1 [running]:\nmain.main()\n";
        assert_eq!(quote_end(output), output.trim());
    }

    #[test]
    fn a_panic_line_cut_off_by_the_tail_leads_the_quote() {
        let frames = "github.com/x/y.F()\n\t/src/y.go:10 +0x1f\n".repeat(200);
        let output = format!(
            "{{\"level\":\"info\"}}\npanic: listen tcp 127.0.0.1:4000: bind: address already in use\n\ngoroutine 1 [running]:\n{frames}"
        );
        let quoted = quote_end(&output);
        assert!(
            quoted.starts_with(
                "panic: listen tcp 127.0.0.1:4000: bind: address already in use\n[…]\n"
            ),
            "{quoted}"
        );
        assert!(quoted.ends_with("/src/y.go:10 +0x1f"), "{quoted}");
        assert!(quoted.len() < LOG_TAIL + 100, "{}", quoted.len());
    }

    #[test]
    fn without_a_panic_only_the_tail_is_quoted() {
        let output = "line of output\n".repeat(500);
        let quoted = quote_end(&output);
        assert_eq!(quoted, last_bytes(output.trim(), LOG_TAIL));
    }
}
