//! gRPC status codes and messages: names as rig shows them, names as upstream rig records
//! them, and the percent-decoding of `grpc-message`.

use std::borrow::Cow;

// grpc-go's spelling (`NotFound`), which is how upstream rig records `grpc_status`.
use rig_types::GRPC_STATUS_NAMES as GO_STATUS_NAMES;

/// Canonical names of the gRPC status codes, indexed by code.
const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The canonical name of a gRPC status code (`14` → `UNAVAILABLE`), `None` past the table.
pub fn status_name(code: u32) -> Option<&'static str> {
    usize::try_from(code)
        .ok()
        .and_then(|i| STATUS_NAMES.get(i))
        .copied()
}

/// The code a gRPC status is written as: a decimal code (`5`), a canonical name
/// (`NOT_FOUND`), grpc-go's name (`NotFound`, as upstream rig records it) or grpc-go's
/// `Code(42)`; names in any case, with or without underscores. `None` for anything else.
pub fn status_code(text: &str) -> Option<u32> {
    let text = text.trim();
    if let Ok(code) = text.parse::<u32>() {
        return Some(code);
    }
    if let Some(code) = text
        .strip_prefix("Code(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return code.parse().ok();
    }
    let squeezed: String = text.chars().filter(|&c| c != '_').collect();
    // `Canceled` (grpc-go) and `CANCELLED` (canonical) differ by more than case.
    let is = |name: &str| squeezed.eq_ignore_ascii_case(&name.replace('_', ""));
    (0..STATUS_NAMES.len())
        .find(|&i| is(STATUS_NAMES[i]) || is(GO_STATUS_NAMES[i]))
        .map(|i| i as u32)
}

/// The `grpc_status` of a `grpc.call.completed` event for a raw `grpc-status` value, exactly
/// as upstream rig records it: a decimal code becomes grpc-go's name (`"5"` → `NotFound`,
/// `"42"` → `Code(42)`); anything that is not a `u32` (empty, negative, text) is kept as is.
pub fn event_status(raw: &str) -> Cow<'_, str> {
    match raw.parse::<u32>() {
        Ok(code) => match usize::try_from(code)
            .ok()
            .and_then(|i| GO_STATUS_NAMES.get(i))
        {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("Code({code})")),
        },
        Err(_) => Cow::Borrowed(raw),
    }
}

/// Decodes a `grpc-message` value: percent-encoded UTF-8 (gRPC's HTTP/2 mapping). A `%` not
/// followed by two hex digits is kept as is, and invalid UTF-8 is replaced by U+FFFD, so any
/// input decodes.
pub fn decode_message(raw: &[u8]) -> String {
    if !raw.contains(&b'%') {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                raw.get(i + 1).and_then(|&b| hex(b)),
                raw.get(i + 2).and_then(|&b| hex(b)),
            ) {
                // Two hex digits always fit in a byte.
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a status message as a `grpc-message` value (gRPC's HTTP/2 mapping): printable
/// ASCII other than `%` stays as is, every other byte of the UTF-8 text becomes `%XX`. The
/// result is always a valid header value, and [`decode_message`] gives the text back.
pub fn encode_message(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_in_every_spelling() {
        for text in [
            "5",
            "NOT_FOUND",
            "NotFound",
            "notfound",
            "not_found",
            " NotFound ",
        ] {
            assert_eq!(status_code(text), Some(5), "{text:?}");
        }
        assert_eq!(status_code("Canceled"), Some(1));
        assert_eq!(status_code("CANCELLED"), Some(1));
        assert_eq!(status_code("OK"), Some(0));
        assert_eq!(status_code("Code(42)"), Some(42));
        for text in ["", "abc", "Code(x)", "-1", "NotFoundd"] {
            assert_eq!(status_code(text), None, "{text:?}");
        }
    }

    #[test]
    fn event_statuses_are_named_as_upstream() {
        assert_eq!(event_status("0"), "OK");
        assert_eq!(event_status("1"), "Canceled");
        assert_eq!(event_status("5"), "NotFound");
        assert_eq!(event_status("16"), "Unauthenticated");
        assert_eq!(event_status("17"), "Code(17)");
        assert_eq!(event_status("4294967295"), "Code(4294967295)");
        assert_eq!(event_status(""), "");
        assert_eq!(event_status("-1"), "-1");
        assert_eq!(event_status("4294967296"), "4294967296");
        assert_eq!(event_status("OK"), "OK");
    }

    #[test]
    fn messages_are_percent_decoded() {
        assert_eq!(decode_message(b"plain"), "plain");
        assert_eq!(decode_message(b"50%25 done%21"), "50% done!");
        assert_eq!(decode_message(b"caf%C3%A9"), "caf\u{e9}");
        assert_eq!(decode_message(b"bad %zz and %4"), "bad %zz and %4");
        assert_eq!(decode_message(b"%ff"), "\u{fffd}");
        assert_eq!(decode_message(b"%"), "%");
    }

    #[test]
    fn messages_are_percent_encoded_and_decode_back() {
        assert_eq!(encode_message("plain text"), "plain text");
        assert_eq!(encode_message("50% done"), "50%25 done");
        assert_eq!(encode_message("caf\u{e9}\nnext"), "caf%C3%A9%0Anext");
        for text in [
            "",
            "a%b",
            "\u{1f600} emoji",
            "tab\there",
            "~ all printable ~",
        ] {
            let encoded = encode_message(text);
            assert!(
                encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)),
                "{encoded}"
            );
            assert_eq!(decode_message(encoded.as_bytes()), text);
        }
    }

    #[test]
    fn codes_have_their_canonical_names() {
        assert_eq!(status_name(0), Some("OK"));
        assert_eq!(status_name(12), Some("UNIMPLEMENTED"));
        assert_eq!(status_name(16), Some("UNAUTHENTICATED"));
        assert_eq!(status_name(17), None);
    }
}
