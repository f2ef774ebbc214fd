//! Go-compatible durations.
//!
//! [`GoDuration`] is a signed count of nanoseconds, exactly like Go's `time.Duration`. Its text
//! form is the one Go uses everywhere in upstream rig's JSON (`"30s"`, `"1m30s"`, `"1.5µs"`):
//!
//! - [`GoDuration::parse`] (and [`FromStr`]) accept exactly what Go's `time.ParseDuration`
//!   accepts, produce the same value bit for bit (including Go's floating-point rounding of
//!   fractions) and fail with the same error messages;
//! - [`Display`](fmt::Display) prints exactly what Go's `Duration.String()` prints.
//!
//! In JSON a duration is a string; the zero duration serialises as `""` (which deserialises back
//! to zero), matching how upstream rig encodes its optional durations.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// `1 << 63`: the magnitude of `i64::MIN`, the largest magnitude Go's parser accepts.
const MAGNITUDE_LIMIT: u64 = 1 << 63;

/// A signed duration in nanoseconds, compatible with Go's `time.Duration`.
///
/// Ordering, equality and hashing are those of the nanosecond count. The [`Default`] is
/// [`GoDuration::ZERO`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(i64);

impl GoDuration {
    /// The zero duration (`"0s"` when displayed, `""` in JSON).
    pub const ZERO: GoDuration = GoDuration(0);

    /// A duration of `nanos` nanoseconds (may be negative).
    pub const fn from_nanos(nanos: i64) -> GoDuration {
        GoDuration(nanos)
    }

    /// The duration in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// A duration of `secs` seconds, saturating at the bounds of `i64` nanoseconds
    /// (about ±292 years).
    pub const fn from_secs(secs: i64) -> GoDuration {
        GoDuration(secs.saturating_mul(SECOND as i64))
    }

    /// A duration of `millis` milliseconds, saturating at the bounds of `i64` nanoseconds.
    pub const fn from_millis(millis: i64) -> GoDuration {
        GoDuration(millis.saturating_mul(MILLISECOND as i64))
    }

    /// Converts a [`std::time::Duration`], saturating at `i64::MAX` nanoseconds.
    pub fn from_std(d: std::time::Duration) -> GoDuration {
        GoDuration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Converts to a [`std::time::Duration`]; `None` when the duration is negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.0)
            .ok()
            .map(std::time::Duration::from_nanos)
    }

    /// Whether this is the zero duration.
    ///
    /// Takes `&self` so it can be used as `#[serde(skip_serializing_if = "GoDuration::is_zero")]`.
    pub const fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// Parses a duration string exactly like Go's `time.ParseDuration`.
    ///
    /// A duration string is an optionally signed sequence of decimal numbers, each with an
    /// optional fraction and a unit suffix, such as `"300ms"`, `"-1.5h"` or `"2h45m"`. Valid
    /// units are `ns`, `us` (or `µs` U+00B5, or `μs` U+03BC), `ms`, `s`, `m` and `h`. The bare
    /// string `"0"` (optionally signed) is zero; the empty string is an error.
    ///
    /// Errors carry Go's exact messages, e.g. `time: unknown unit "d" in duration "1d"`.
    pub fn parse(s: &str) -> Result<GoDuration, ParseDurationError> {
        parse_go_duration(s)
    }

    /// Writes Go's `Duration.String()` form into the tail of `buf` and returns it.
    ///
    /// The longest output is `-2562047h47m16.854775808s` (25 bytes).
    fn format(self, buf: &mut [u8; 32]) -> &str {
        let mut w = buf.len();
        let neg = self.0 < 0;
        // Go: u := uint64(d); if neg { u = -u } — unsigned_abs handles i64::MIN.
        let mut u = self.0.unsigned_abs();

        if u < SECOND {
            // Smaller than a second: use a smaller unit, like "1.2ms".
            let prec;
            w -= 1;
            buf[w] = b's';
            w -= 1;
            if u == 0 {
                buf[w] = b'0';
                return as_str(&buf[w..]);
            } else if u < MICROSECOND {
                prec = 0;
                buf[w] = b'n';
            } else if u < MILLISECOND {
                prec = 3;
                // U+00B5 'µ' micro sign == 0xC2 0xB5.
                w -= 1;
                buf[w..w + 2].copy_from_slice("µ".as_bytes());
            } else {
                prec = 6;
                buf[w] = b'm';
            }
            let (nw, nv) = fmt_frac(&mut buf[..w], u, prec);
            w = fmt_int(&mut buf[..nw], nv);
        } else {
            w -= 1;
            buf[w] = b's';
            let (nw, nv) = fmt_frac(&mut buf[..w], u, 9);
            u = nv;
            // u is now whole seconds.
            w = fmt_int(&mut buf[..nw], u % 60);
            u /= 60;
            // u is now whole minutes.
            if u > 0 {
                w -= 1;
                buf[w] = b'm';
                w = fmt_int(&mut buf[..w], u % 60);
                u /= 60;
                // u is now whole hours; stop there, as days vary in length.
                if u > 0 {
                    w -= 1;
                    buf[w] = b'h';
                    w = fmt_int(&mut buf[..w], u);
                }
            }
        }

        if neg {
            w -= 1;
            buf[w] = b'-';
        }
        as_str(&buf[w..])
    }
}

/// The formatter only writes ASCII and the UTF-8 encoding of `µ`, so this never fails.
fn as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Go's `fmtFrac`: formats the fraction of `v / 10^prec` (e.g. `.12345`) into the tail of `buf`,
/// omitting trailing zeros, and the decimal point too when the fraction is zero. Returns the
/// index where the output begins and `v / 10^prec`.
fn fmt_frac(buf: &mut [u8], mut v: u64, prec: usize) -> (usize, u64) {
    let mut w = buf.len();
    let mut print = false;
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        print = print || digit != 0;
        if print {
            w -= 1;
            buf[w] = digit + b'0';
        }
        v /= 10;
    }
    if print {
        w -= 1;
        buf[w] = b'.';
    }
    (w, v)
}

/// Go's `fmtInt`: formats `v` into the tail of `buf` and returns the index where it begins.
fn fmt_int(buf: &mut [u8], mut v: u64) -> usize {
    let mut w = buf.len();
    if v == 0 {
        w -= 1;
        buf[w] = b'0';
    } else {
        while v > 0 {
            w -= 1;
            buf[w] = (v % 10) as u8 + b'0';
            v /= 10;
        }
    }
    w
}

impl fmt::Display for GoDuration {
    /// Formats like Go's `Duration.String()`: `"1h2m3.5s"`, `"1.5µs"`, `"0s"`.
    ///
    /// Honours width and alignment flags (`{:>8}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        f.pad(self.format(&mut buf))
    }
}

impl FromStr for GoDuration {
    type Err = ParseDurationError;

    /// Same as [`GoDuration::parse`].
    fn from_str(s: &str) -> Result<GoDuration, ParseDurationError> {
        GoDuration::parse(s)
    }
}

impl Serialize for GoDuration {
    /// Serialises as the Go duration string, or `""` for zero.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_zero() {
            serializer.serialize_str("")
        } else {
            let mut buf = [0u8; 32];
            serializer.serialize_str(self.format(&mut buf))
        }
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    /// Deserialises from a Go duration string; `""` is zero. Any non-string is an error.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GoDuration, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Go duration string such as \"1m30s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
        if v.is_empty() {
            return Ok(GoDuration::ZERO);
        }
        GoDuration::parse(v).map_err(E::custom)
    }
}

/// The error returned when a duration string cannot be parsed.
///
/// Its [`Display`](fmt::Display) is exactly the message Go's `time.ParseDuration` gives for
/// the same input, for example `time: invalid duration "abc"`,
/// `time: missing unit in duration "1"` or `time: unknown unit "d" in duration "1d"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDurationError {
    message: String,
}

impl ParseDurationError {
    fn invalid(orig: &str) -> ParseDurationError {
        let mut message = String::from("time: invalid duration ");
        go_quote_into(&mut message, orig);
        ParseDurationError { message }
    }

    fn missing_unit(orig: &str) -> ParseDurationError {
        let mut message = String::from("time: missing unit in duration ");
        go_quote_into(&mut message, orig);
        ParseDurationError { message }
    }

    fn unknown_unit(unit: &str, orig: &str) -> ParseDurationError {
        let mut message = String::from("time: unknown unit ");
        go_quote_into(&mut message, unit);
        message.push_str(" in duration ");
        go_quote_into(&mut message, orig);
        ParseDurationError { message }
    }
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseDurationError {}

/// Go's `time.quote`: wraps `s` in double quotes, backslash-escapes `"` and `\`, and writes
/// every byte of a non-ASCII or control (< 0x20) character as `\xNN` (lowercase hex).
fn go_quote_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if !c.is_ascii() || c < ' ' {
            let mut utf8 = [0u8; 4];
            for &b in c.encode_utf8(&mut utf8).as_bytes() {
                out.push('\\');
                out.push('x');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
}

/// Go's `leadingInt`: consumes the leading `[0-9]*`. `None` on overflow (> 1<<63).
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if !c.is_ascii_digit() {
            break;
        }
        if x > MAGNITUDE_LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > MAGNITUDE_LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// Go's `leadingFraction`: consumes the leading `[0-9]*` of a fraction. On overflow it stops
/// accumulating precision (but keeps consuming digits). Returns `(digits, scale, rest)` where
/// the fraction's value is `digits / scale`.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut x: u64 = 0;
    let mut scale: f64 = 1.0;
    let mut overflow = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if !c.is_ascii_digit() {
            break;
        }
        i += 1;
        if overflow {
            continue;
        }
        if x > (MAGNITUDE_LIMIT - 1) / 10 {
            // It's possible for overflow to give a positive number, so take care.
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > MAGNITUDE_LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[i..])
}

/// Go's `unitMap`.
fn unit_nanos(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => NANOSECOND,
        // "µs" is U+00B5 (micro sign), "μs" is U+03BC (Greek small letter mu).
        b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => MICROSECOND,
        b"ms" => MILLISECOND,
        b"s" => SECOND,
        b"m" => MINUTE,
        b"h" => HOUR,
        _ => return None,
    })
}

/// A transcription of Go 1.22's `time.ParseDuration`.
fn parse_go_duration(orig: &str) -> Result<GoDuration, ParseDurationError> {
    // [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+
    let mut s = orig.as_bytes();
    let mut d: u64 = 0;
    let mut neg = false;

    // Consume [-+]?
    if let Some(&c) = s.first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            s = &s[1..];
        }
    }
    // Special case: if all that is left is "0", this is zero.
    if s == b"0" {
        return Ok(GoDuration::ZERO);
    }
    if s.is_empty() {
        return Err(ParseDurationError::invalid(orig));
    }
    while let Some(&first) = s.first() {
        // The next character must be [0-9.]
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(ParseDurationError::invalid(orig));
        }
        // Consume [0-9]*
        let pl = s.len();
        let (mut v, rest) = leading_int(s).ok_or_else(|| ParseDurationError::invalid(orig))?;
        s = rest;
        let pre = pl != s.len(); // whether we consumed anything before a period

        // Consume (\.[0-9]*)?
        let mut f: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let pl = s.len();
            let (ff, fscale, rest) = leading_fraction(s);
            f = ff;
            scale = fscale;
            s = rest;
            post = pl != s.len();
        }
        if !pre && !post {
            // No digits (e.g. ".s" or "-.s").
            return Err(ParseDurationError::invalid(orig));
        }

        // Consume unit: everything up to the next '.' or digit.
        let i = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if i == 0 {
            return Err(ParseDurationError::missing_unit(orig));
        }
        let (u, rest) = s.split_at(i);
        s = rest;
        let Some(unit) = unit_nanos(u) else {
            // The unit ends at an ASCII byte or at the end, so it is valid UTF-8.
            let u = std::str::from_utf8(u).unwrap_or_default();
            return Err(ParseDurationError::unknown_unit(u, orig));
        };
        if v > MAGNITUDE_LIMIT / unit {
            // overflow
            return Err(ParseDurationError::invalid(orig));
        }
        v *= unit;
        if f > 0 {
            // float64 is needed to be nanosecond accurate for fractions of hours.
            // v >= 0 && (f*unit/scale) <= 3.6e+12 (ns/h, h is the largest unit).
            // Float-to-integer `as` truncates toward zero like Go's conversion.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > MAGNITUDE_LIMIT {
                // overflow
                return Err(ParseDurationError::invalid(orig));
            }
        }
        // Go adds in uint64 and may wrap when both d and v are exactly 1<<63; mirror that.
        d = d.wrapping_add(v);
        if d > MAGNITUDE_LIMIT {
            return Err(ParseDurationError::invalid(orig));
        }
    }
    if neg {
        // Go: -Duration(d); 1<<63 becomes i64::MIN.
        return Ok(GoDuration((d as i64).wrapping_neg()));
    }
    if d > i64::MAX as u64 {
        return Err(ParseDurationError::invalid(orig));
    }
    Ok(GoDuration(d as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    #[test]
    fn parse_valid_matches_go() {
        // Mostly Go's own parseDurationTests (time/time_test.go), plus the brief's cases.
        let cases: &[(&str, i64)] = &[
            // simple
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            // sign
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            // decimal
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            ("1.s", S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("0.0s", 0),
            ("0s", 0),
            ("-0s", 0),
            ("00s", 0),
            ("1.5h", H + 30 * M),
            ("1h2m3.5s", H + 2 * M + 3 * S + 500 * MS),
            ("0.1s", 100 * MS),
            ("-1.5h", -(H + 30 * M)),
            // different units
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12µs", 12 * US),        // U+00B5
            ("12\u{00b5}s", 12 * US), // U+00B5 spelled out
            ("12μs", 12 * US),        // U+03BC
            ("12\u{03bc}s", 12 * US), // U+03BC spelled out
            ("5µs", 5 * US),
            ("5μs", 5 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            // composite durations
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("1h1h", 2 * H),
            // large value
            ("52763797000ns", 52_763_797_000 * NS),
            // more than 9 digits after decimal point, see https://golang.org/issue/6617
            ("0.3333333333333333333h", 20 * M),
            // 9007199254740993 = 1<<53+1 cannot be stored precisely in a float64
            ("9007199254740993ns", (1 << 53) + 1),
            // fractional precision
            ("0.000000001s", 1),
            ("0.0000000009s", 0),
            ("1.0000000001s", S),
            ("1.999999999s", 2 * S - 1),
            ("0.5ns", 0),
            ("1.9ns", 1),
            ("0.001us", 1),
            ("1.5us", 1500),
            // largest duration that can be represented by int64 in nanoseconds
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            // huge string; Go issue 15011.
            ("0.100000000000000000000h", 6 * M),
            // This value tests the first overflow check in leadingFraction.
            (
                "0.830103483285477580700h",
                49 * M + 48 * S + 372_539_827 * NS,
            ),
            // Go adds segments in uint64: (1<<63) + (1<<63) wraps to 0 and is accepted.
            ("9223372036854775808ns9223372036854775808ns", 0),
        ];
        for &(input, want) in cases {
            match GoDuration::parse(input) {
                Ok(got) => assert_eq!(got.as_nanos(), want, "parse({input:?})"),
                Err(e) => panic!("parse({input:?}) failed: {e}"),
            }
            let via_from_str: GoDuration = input.parse().unwrap();
            assert_eq!(via_from_str.as_nanos(), want, "from_str({input:?})");
        }
    }

    #[test]
    fn parse_errors_match_go() {
        let cases: &[(&str, &str)] = &[
            ("", r#"time: invalid duration """#),
            ("3", r#"time: missing unit in duration "3""#),
            ("1", r#"time: missing unit in duration "1""#),
            ("00", r#"time: missing unit in duration "00""#),
            ("-1", r#"time: missing unit in duration "-1""#),
            ("1.5", r#"time: missing unit in duration "1.5""#),
            ("1s2", r#"time: missing unit in duration "1s2""#),
            ("1s.", r#"time: invalid duration "1s.""#),
            ("-", r#"time: invalid duration "-""#),
            ("+", r#"time: invalid duration "+""#),
            ("s", r#"time: invalid duration "s""#),
            (".", r#"time: invalid duration ".""#),
            ("-.", r#"time: invalid duration "-.""#),
            (".s", r#"time: invalid duration ".s""#),
            ("-.s", r#"time: invalid duration "-.s""#),
            ("+.s", r#"time: invalid duration "+.s""#),
            ("abc", r#"time: invalid duration "abc""#),
            ("--5s", r#"time: invalid duration "--5s""#),
            ("+-5s", r#"time: invalid duration "+-5s""#),
            (" 5s", r#"time: invalid duration " 5s""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            ("1e3s", r#"time: unknown unit "e" in duration "1e3s""#),
            ("3.6e12", r#"time: unknown unit "e" in duration "3.6e12""#),
            ("1S", r#"time: unknown unit "S" in duration "1S""#),
            ("1 s", r#"time: unknown unit " s" in duration "1 s""#),
            ("5s ", r#"time: unknown unit "s " in duration "5s ""#),
            ("1sec", r#"time: unknown unit "sec" in duration "1sec""#),
            ("1hms", r#"time: unknown unit "hms" in duration "1hms""#),
            ("1Ms", r#"time: unknown unit "Ms" in duration "1Ms""#),
            (
                "1µ",
                r#"time: unknown unit "\xc2\xb5" in duration "1\xc2\xb5""#,
            ),
            ("1\"s", r#"time: unknown unit "\"s" in duration "1\"s""#),
            ("1\\s", r#"time: unknown unit "\\s" in duration "1\\s""#),
            ("1\ts", r#"time: unknown unit "\x09s" in duration "1\x09s""#),
            (
                "1s\u{7f}",
                r#"time: unknown unit "s\u{7f}" in duration "1s\u{7f}""#,
            ),
            ("\u{FFFD}", r#"time: invalid duration "\xef\xbf\xbd""#),
            (
                "\u{FFFD} hello \u{FFFD} world",
                r#"time: invalid duration "\xef\xbf\xbd hello \xef\xbf\xbd world""#,
            ),
            ("é", r#"time: invalid duration "\xc3\xa9""#),
            // overflow
            (
                "9223372036854775810ns",
                r#"time: invalid duration "9223372036854775810ns""#,
            ),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
            ),
            (
                "-9223372036854775809ns",
                r#"time: invalid duration "-9223372036854775809ns""#,
            ),
            (
                "9223372036854776us",
                r#"time: invalid duration "9223372036854776us""#,
            ),
            ("3000000h", r#"time: invalid duration "3000000h""#),
            (
                "9223372036854775.808us",
                r#"time: invalid duration "9223372036854775.808us""#,
            ),
            (
                "9223372036854ms775us808ns",
                r#"time: invalid duration "9223372036854ms775us808ns""#,
            ),
            (
                "99999999999999999999s",
                r#"time: invalid duration "99999999999999999999s""#,
            ),
            ("2562048h", r#"time: invalid duration "2562048h""#),
            ("-2562048h", r#"time: invalid duration "-2562048h""#),
            (
                "2562047h47m16.854775808s",
                r#"time: invalid duration "2562047h47m16.854775808s""#,
            ),
            // overflow is checked before the unit is validated only for the integer part
            (
                "99999999999999999999d",
                r#"time: invalid duration "99999999999999999999d""#,
            ),
        ];
        for &(input, want) in cases {
            let want = want.replace("\\u{7f}", "\u{7f}");
            match GoDuration::parse(input) {
                Ok(d) => panic!("parse({input:?}) = {d:?}, want error {want}"),
                Err(e) => assert_eq!(e.to_string(), want, "parse({input:?})"),
            }
            assert!(input.parse::<GoDuration>().is_err());
        }
    }

    #[test]
    fn display_matches_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_000, "1µs"),
            (1_100, "1.1µs"),
            (1_500, "1.5µs"),
            (2_200 * US, "2.2ms"),
            (200 * MS, "200ms"),
            (1_234_567, "1.234567ms"),
            (999_999_999, "999.999999ms"),
            (S, "1s"),
            (1_500 * MS, "1.5s"),
            (3_300 * MS, "3.3s"),
            (59 * S, "59s"),
            (M, "1m0s"),
            (90 * S, "1m30s"),
            (4 * M + 5 * S, "4m5s"),
            (4 * M + 5_001 * MS, "4m5.001s"),
            (5 * H + 6 * M + 7_001 * MS, "5h6m7.001s"),
            (8 * M + 1, "8m0.000000001s"),
            (H, "1h0m0s"),
            (2 * H, "2h0m0s"),
            (H + 30 * M, "1h30m0s"),
            (-1, "-1ns"),
            (-1_500, "-1.5µs"),
            (-90 * S, "-1m30s"),
            (-2 * H, "-2h0m0s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MIN + 1, "-2562047h47m16.854775807s"),
        ];
        for &(nanos, want) in cases {
            let d = GoDuration::from_nanos(nanos);
            assert_eq!(d.to_string(), want, "Display({nanos})");
            // Go's String() output always parses back to the same value.
            assert_eq!(GoDuration::parse(want).unwrap(), d, "parse({want:?})");
        }
    }

    #[test]
    fn display_honours_padding() {
        assert_eq!(format!("[{:>6}]", GoDuration::from_secs(1)), "[    1s]");
        assert_eq!(format!("[{:<6}]", GoDuration::from_secs(1)), "[1s    ]");
    }

    #[test]
    fn constructors_and_conversions() {
        assert_eq!(GoDuration::ZERO.as_nanos(), 0);
        assert_eq!(GoDuration::default(), GoDuration::ZERO);
        assert!(GoDuration::ZERO.is_zero());
        assert!(!GoDuration::from_nanos(-1).is_zero());
        assert_eq!(GoDuration::from_secs(30).as_nanos(), 30 * S);
        assert_eq!(GoDuration::from_secs(-2).as_nanos(), -2 * S);
        assert_eq!(GoDuration::from_secs(i64::MAX).as_nanos(), i64::MAX);
        assert_eq!(GoDuration::from_secs(i64::MIN).as_nanos(), i64::MIN);
        assert_eq!(GoDuration::from_millis(200).as_nanos(), 200 * MS);
        assert_eq!(GoDuration::from_millis(i64::MAX).as_nanos(), i64::MAX);
        assert_eq!(GoDuration::from_millis(i64::MIN).as_nanos(), i64::MIN);

        use std::time::Duration;
        assert_eq!(
            GoDuration::from_std(Duration::from_millis(1500)),
            GoDuration::from_millis(1500)
        );
        assert_eq!(
            GoDuration::from_std(Duration::from_secs(u64::MAX)).as_nanos(),
            i64::MAX
        );
        assert_eq!(
            GoDuration::from_std(Duration::from_nanos(i64::MAX as u64)).as_nanos(),
            i64::MAX
        );
        assert_eq!(
            GoDuration::from_millis(1500).to_std(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(GoDuration::ZERO.to_std(), Some(Duration::ZERO));
        assert_eq!(GoDuration::from_nanos(-1).to_std(), None);
        assert_eq!(GoDuration::from_nanos(i64::MIN).to_std(), None);
        assert_eq!(
            GoDuration::from_nanos(i64::MAX).to_std(),
            Some(Duration::from_nanos(i64::MAX as u64))
        );
    }

    #[test]
    fn ordering_is_by_nanoseconds() {
        let mut v = vec![
            GoDuration::from_secs(1),
            GoDuration::from_nanos(-5),
            GoDuration::ZERO,
            GoDuration::from_millis(999),
        ];
        v.sort();
        assert_eq!(
            v,
            vec![
                GoDuration::from_nanos(-5),
                GoDuration::ZERO,
                GoDuration::from_millis(999),
                GoDuration::from_secs(1),
            ]
        );
    }

    #[test]
    fn serde_round_trip() {
        let cases: &[(i64, &str)] = &[
            (0, r#""""#),
            (30 * S, r#""30s""#),
            (90 * S, r#""1m30s""#),
            (200 * MS, r#""200ms""#),
            (1_500, r#""1.5µs""#),
            (-90 * S, r#""-1m30s""#),
            (i64::MAX, r#""2562047h47m16.854775807s""#),
            (i64::MIN, r#""-2562047h47m16.854775808s""#),
        ];
        for &(nanos, json) in cases {
            let d = GoDuration::from_nanos(nanos);
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                json,
                "serialize {nanos}"
            );
            let back: GoDuration = serde_json::from_str(json).unwrap();
            assert_eq!(back, d, "deserialize {json}");
        }
    }

    #[test]
    fn serde_accepts_any_go_duration_string() {
        let cases: &[(&str, i64)] = &[
            (r#""0""#, 0),
            (r#""0s""#, 0),
            (r#""1h""#, H),
            (r#""+1.5m""#, 90 * S),
            (r#""5\u00b5s""#, 5 * US),
            (r#""5\u03bcs""#, 5 * US),
        ];
        for &(json, want) in cases {
            let d: GoDuration = serde_json::from_str(json).unwrap();
            assert_eq!(d.as_nanos(), want, "{json}");
        }
    }

    #[test]
    fn serde_rejects_bad_input() {
        let cases: &[(&str, &str)] = &[
            (r#""1d""#, r#"time: unknown unit "d" in duration "1d""#),
            (r#""abc""#, r#"time: invalid duration "abc""#),
            (r#""5""#, r#"time: missing unit in duration "5""#),
            (
                "5",
                "invalid type: integer `5`, expected a Go duration string",
            ),
            (
                "1.5",
                "invalid type: floating point `1.5`, expected a Go duration string",
            ),
            ("null", "invalid type: null, expected a Go duration string"),
            (
                "true",
                "invalid type: boolean `true`, expected a Go duration string",
            ),
            (
                "[]",
                "invalid type: sequence, expected a Go duration string",
            ),
        ];
        for &(json, want) in cases {
            let err = serde_json::from_str::<GoDuration>(json).unwrap_err();
            assert!(
                err.to_string().starts_with(want),
                "{json}: got {err}, want prefix {want}"
            );
        }
    }

    #[test]
    fn serde_in_struct_with_skip_if_zero() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Ready {
            #[serde(default, skip_serializing_if = "GoDuration::is_zero")]
            interval: GoDuration,
        }
        let r = Ready {
            interval: GoDuration::ZERO,
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), "{}");
        assert_eq!(serde_json::from_str::<Ready>("{}").unwrap(), r);
        let r = Ready {
            interval: GoDuration::from_millis(200),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"interval":"200ms"}"#);
        assert_eq!(serde_json::from_str::<Ready>(&json).unwrap(), r);
    }

    #[test]
    fn error_is_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(GoDuration::parse("x").unwrap_err());
        assert_eq!(e.to_string(), r#"time: invalid duration "x""#);
    }

    #[test]
    fn format_then_parse_round_trips_over_a_sweep() {
        // A spread of magnitudes, both signs, including every power of ten and its neighbours.
        let mut n: i64 = 1;
        for _ in 0..19 {
            for v in [n - 1, n, n + 1, n * 3 / 2, n.saturating_mul(7)] {
                for d in [GoDuration::from_nanos(v), GoDuration::from_nanos(-v)] {
                    assert_eq!(GoDuration::parse(&d.to_string()).unwrap(), d, "{d:?}");
                }
            }
            n = n.saturating_mul(10);
        }
    }
}
