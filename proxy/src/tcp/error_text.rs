//! Error text for connection events, in the style of Go's `net` errors (`connection refused`,
//! `broken pipe`) so events read the same as upstream's.

use std::io;

/// The error's message without Rust's ` (os error N)` suffix and with a lowercase first letter:
/// `Connection refused (os error 111)` becomes `connection refused`.
pub(crate) fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text.as_str(),
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        // Leave acronyms ("DNS ...") alone; lowercase ordinary sentence starts.
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_like_go() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let os = io::Error::from_raw_os_error(libc_econnrefused());
        assert_eq!(describe(&os), "connection refused");
        assert_eq!(describe(&refused), "connection refused");
    }

    #[test]
    fn custom_messages_keep_acronyms() {
        let err = io::Error::other("DNS lookup failed");
        assert_eq!(describe(&err), "DNS lookup failed");
        let err = io::Error::other("");
        assert_eq!(describe(&err), "");
    }

    fn libc_econnrefused() -> i32 {
        // ECONNREFUSED on Linux and the BSDs/macOS respectively.
        if cfg!(target_os = "linux") {
            111
        } else {
            61
        }
    }
}
