//! gRPC status codes and messages: names as rig shows them, names as upstream rig records
//! them, and the percent-decoding of `grpc-message`.

use std::borrow::Cow;
use std::time::Duration;

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

/// The status a gRPC client gives a call it ended with an HTTP/2 `RST_STREAM` of error
/// `code`, by gRPC's HTTP/2 mapping (`PROTOCOL-HTTP2.md`, "Errors"): `CANCEL` is
/// `CANCELLED` (1), `REFUSED_STREAM` `UNAVAILABLE` (14), `ENHANCE_YOUR_CALM`
/// `RESOURCE_EXHAUSTED` (8), `INADEQUATE_SECURITY` `PERMISSION_DENIED` (7), anything else
/// `INTERNAL` (13).
///
/// A client also ends a call with `CANCEL` when its deadline passes, and reports
/// `DEADLINE_EXCEEDED` (4): [`reset_status`] tells the two apart.
pub fn status_of_reset(code: u32) -> u32 {
    match code {
        0x7 => 14,
        0x8 => 1,
        0xb => 8,
        0xc => 7,
        _ => 13,
    }
}

/// The status of a call its client reset with error `code` after `elapsed` (from the
/// request's arrival), the request's `grpc-timeout` being `timeout`: `DEADLINE_EXCEEDED` for
/// a `CANCEL` once the deadline has passed, [`status_of_reset`] otherwise.
///
/// `grpc-timeout` is the time the client had left when it sent the request, so the deadline
/// passes about `timeout` after the request's arrival. The client's clock starts earlier,
/// though: before it sends the request, which on a loaded machine (a CI runner building
/// while tests run) can wait tens of milliseconds for the CPU before it reaches the proxy.
/// The slack covers that and the request's and the reset's different trips to the proxy:
/// 10% of the timeout, at least 50 ms, but at most half the timeout, so that a call given
/// up early is still `CANCELLED`.
pub fn reset_status(code: u32, timeout: Option<Duration>, elapsed: Duration) -> u32 {
    let slack = |timeout: Duration| {
        (timeout / 10)
            .max(Duration::from_millis(50))
            .min(timeout / 2)
    };
    match timeout {
        Some(timeout) if code == 0x8 && elapsed + slack(timeout) >= timeout => 4,
        _ => status_of_reset(code),
    }
}

/// A `grpc-timeout` value (`TimeoutValue TimeoutUnit`: at most 8 digits, then one of `H M S
/// m u n`) as a duration; `None` when it is not one.
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
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
    fn grpc_timeouts_are_read_in_every_unit() {
        let ms = Duration::from_millis;
        assert_eq!(parse_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_timeout(b"4S"), Some(Duration::from_secs(4)));
        assert_eq!(parse_timeout(b"250m"), Some(ms(250)));
        assert_eq!(
            parse_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_timeout(b"7n"), Some(Duration::from_nanos(7)));
        for bad in [
            &b""[..],
            b"m",
            b"5",
            b"5x",
            b"123456789m",
            b"-5m",
            b"5 m",
            b"\xffm",
        ] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn resets_are_named_as_the_client_names_them() {
        let ms = Duration::from_millis;
        const CANCEL: u32 = 0x8;
        assert_eq!(reset_status(CANCEL, None, ms(5000)), 1);
        assert_eq!(reset_status(CANCEL, Some(ms(300)), ms(200)), 1);
        // At the deadline (less the slack for the two trips) and after it.
        assert_eq!(reset_status(CANCEL, Some(ms(300)), ms(299)), 4);
        assert_eq!(reset_status(CANCEL, Some(ms(300)), ms(450)), 4);
        assert_eq!(reset_status(CANCEL, Some(ms(300)), ms(250)), 4);
        assert_eq!(reset_status(CANCEL, Some(ms(300)), ms(249)), 1);
        assert_eq!(reset_status(CANCEL, Some(ms(10_000)), ms(9_000)), 4);
        assert_eq!(reset_status(CANCEL, Some(ms(10_000)), ms(8_999)), 1);
        // Short deadlines: half of it at most.
        assert_eq!(reset_status(CANCEL, Some(ms(40)), ms(20)), 4);
        assert_eq!(reset_status(CANCEL, Some(ms(40)), ms(19)), 1);
        // Other codes keep gRPC's mapping, deadline or not.
        assert_eq!(reset_status(0x7, Some(ms(1)), ms(5)), 14);
        assert_eq!(reset_status(0xb, None, ms(5)), 8);
        assert_eq!(reset_status(0xc, None, ms(5)), 7);
        assert_eq!(reset_status(0x0, None, ms(5)), 13);
        assert_eq!(reset_status(0x2, None, ms(5)), 13);
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
