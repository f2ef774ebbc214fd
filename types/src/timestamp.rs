//! Timestamps compatible with Go's `time.Time` JSON encoding.
//!
//! Upstream rig stamps every event with a Go `time.Time`, which JSON-encodes as an RFC 3339
//! string with nanoseconds and trailing zeros trimmed (`time.RFC3339Nano`):
//! `"2023-11-14T22:13:20.123456789Z"`, `"2024-01-02T03:04:05.5+01:00"`. [`Timestamp`] is an
//! instant (seconds and nanoseconds since the Unix epoch) plus the UTC offset it is shown in,
//! and reads and writes exactly that form.
//!
//! Go's zero `time.Time` (`0001-01-01T00:00:00Z`) is [`Timestamp::ZERO`], which is also the
//! [`Default`]. A JSON `null` deserialises to it, as Go's `UnmarshalJSON` leaves the zero time in
//! place for `null`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::GoDuration;

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Seconds from the Unix epoch back to Go's zero time, `0001-01-01T00:00:00Z`.
const GO_ZERO_UNIX_SECS: i64 = -62_135_596_800;

/// Room for the longest possible rendering: a 12-digit signed year (the extremes of `i64`
/// seconds), `-MM-DDTHH:MM:SS` (15), `.nnnnnnnnn` (10) and a `±hhhhhh:mm` offset (10).
const FORMAT_BUF_LEN: usize = 64;

/// An instant with nanosecond precision and the UTC offset it is displayed in; the JSON form of
/// Go's `time.Time`.
///
/// Equality, ordering and hashing consider the instant only: `03:04:05+01:00` equals
/// `02:04:05Z`. The offset only affects how the timestamp is displayed.
#[derive(Clone, Copy, Debug)]
pub struct Timestamp {
    /// Whole seconds since the Unix epoch (UTC).
    secs: i64,
    /// Nanoseconds past `secs`; always below 1e9.
    nanos: u32,
    /// Offset of the displayed local time from UTC, in seconds (east positive).
    offset: i32,
}

impl Timestamp {
    /// Go's zero time, `0001-01-01T00:00:00Z`: what an unset `time.Time` serialises as.
    pub const ZERO: Timestamp = Timestamp {
        secs: GO_ZERO_UNIX_SECS,
        nanos: 0,
        offset: 0,
    };

    /// The current time, in UTC.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Whether this is Go's zero time (the instant `0001-01-01T00:00:00Z`, in any offset).
    pub fn is_zero(&self) -> bool {
        self.secs == GO_ZERO_UNIX_SECS && self.nanos == 0
    }

    /// The instant `nanos` nanoseconds after the Unix epoch (before it when negative), in UTC.
    ///
    /// Saturates at the range of `i64` seconds (hundreds of billions of years either way).
    pub fn from_unix_nanos(nanos: i128) -> Timestamp {
        let secs = nanos.div_euclid(NANOS_PER_SEC);
        let sub = nanos.rem_euclid(NANOS_PER_SEC) as u32;
        match i64::try_from(secs) {
            Ok(secs) => Timestamp {
                secs,
                nanos: sub,
                offset: 0,
            },
            Err(_) if secs < 0 => Timestamp {
                secs: i64::MIN,
                nanos: 0,
                offset: 0,
            },
            Err(_) => Timestamp {
                secs: i64::MAX,
                nanos: 999_999_999,
                offset: 0,
            },
        }
    }

    /// Nanoseconds since the Unix epoch (negative before it).
    pub fn unix_nanos(&self) -> i128 {
        i128::from(self.secs) * NANOS_PER_SEC + i128::from(self.nanos)
    }

    /// Converts a [`SystemTime`]; the result is in UTC.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp::from_unix_nanos(d.as_nanos() as i128),
            Err(e) => Timestamp::from_unix_nanos(-(e.duration().as_nanos() as i128)),
        }
    }

    /// Converts to a [`SystemTime`].
    ///
    /// # Panics
    ///
    /// If the platform's `SystemTime` cannot represent the instant. On Unix `SystemTime` covers
    /// the same range as `Timestamp`, so this never happens there.
    pub fn to_system_time(&self) -> SystemTime {
        let t = if self.secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(self.secs as u64))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(self.secs.unsigned_abs()))
        };
        t.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(self.nanos))))
            .expect("timestamp outside the range of SystemTime")
    }

    /// The same instant, displayed at `offset_secs` seconds east of UTC (e.g. `3600` for
    /// `+01:00`, `-18000` for `-05:00`).
    pub fn with_offset(self, offset_secs: i32) -> Timestamp {
        Timestamp {
            offset: offset_secs,
            ..self
        }
    }

    /// The UTC offset this timestamp is displayed in, in seconds east of UTC.
    pub fn offset_secs(&self) -> i32 {
        self.offset
    }

    /// The signed time from `earlier` to `self` (negative when `earlier` is actually later),
    /// saturating at the range of [`GoDuration`] (about ±292 years).
    pub fn duration_since(&self, earlier: &Timestamp) -> GoDuration {
        let diff = self.unix_nanos() - earlier.unix_nanos();
        let nanos = i64::try_from(diff).unwrap_or(if diff < 0 { i64::MIN } else { i64::MAX });
        GoDuration::from_nanos(nanos)
    }

    /// Formats as Go's `time.RFC3339Nano` (`2006-01-02T15:04:05.999999999Z07:00`): the wall
    /// clock in this timestamp's offset, fractional seconds with trailing zeros trimmed (and
    /// left out when zero), `Z` for UTC.
    pub fn to_rfc3339(&self) -> String {
        let mut buf = [0u8; FORMAT_BUF_LEN];
        self.format(&mut buf).to_owned()
    }

    /// Parses an RFC 3339 timestamp the way Go's `time.Time.UnmarshalJSON` does:
    /// `YYYY-MM-DDTHH:MM:SS`, an optional `.` with fractional-second digits, then `Z` or
    /// `±HH:MM`. The offset is kept for display.
    ///
    /// Like Go, fractional digits beyond the ninth are accepted and truncated, and `T` and `Z`
    /// must be upper case.
    pub fn parse(s: &str) -> Result<Timestamp, TimestampError> {
        parse_rfc3339(s).map_err(|reason| TimestampError::new(s, reason))
    }

    /// The civil date and time in this timestamp's offset.
    fn civil(&self) -> Civil {
        let local = i128::from(self.secs) + i128::from(self.offset);
        // |local| < 2^64 so the day count fits i64 comfortably.
        let days = local.div_euclid(i128::from(SECS_PER_DAY)) as i64;
        let sod = local.rem_euclid(i128::from(SECS_PER_DAY)) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
        }
    }

    /// Writes the RFC3339Nano form into `buf` and returns it. No allocation.
    fn format<'b>(&self, buf: &'b mut [u8; FORMAT_BUF_LEN]) -> &'b str {
        let c = self.civil();
        let mut w = Writer { buf, len: 0 };

        // Year: Go's appendInt(year, 4) — at least four digits, sign for negative years.
        if c.year < 0 {
            w.push(b'-');
        }
        w.uint(c.year.unsigned_abs(), 4);
        w.push(b'-');
        w.uint(u64::from(c.month), 2);
        w.push(b'-');
        w.uint(u64::from(c.day), 2);
        w.push(b'T');
        w.uint(u64::from(c.hour), 2);
        w.push(b':');
        w.uint(u64::from(c.minute), 2);
        w.push(b':');
        w.uint(u64::from(c.second), 2);

        if self.nanos != 0 {
            let mut digits = 9;
            let mut frac = self.nanos;
            while frac % 10 == 0 {
                frac /= 10;
                digits -= 1;
            }
            w.push(b'.');
            w.uint(u64::from(frac), digits);
        }

        if self.offset == 0 {
            w.push(b'Z');
        } else {
            // Go: zone := offset / 60 (truncating), sign from zone, then hh:mm.
            let zone = self.offset / 60;
            w.push(if zone < 0 { b'-' } else { b'+' });
            let zone = zone.unsigned_abs();
            w.uint(u64::from(zone / 60), 2);
            w.push(b':');
            w.uint(u64::from(zone % 60), 2);
        }

        let len = w.len;
        // Only ASCII is written.
        std::str::from_utf8(&buf[..len]).unwrap_or_default()
    }
}

/// A broken-down civil date and time.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// A cursor over a fixed byte buffer.
struct Writer<'b> {
    buf: &'b mut [u8; FORMAT_BUF_LEN],
    len: usize,
}

impl Writer<'_> {
    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Writes `v` in decimal, zero-padded to at least `width` digits.
    fn uint(&mut self, mut v: u64, width: usize) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        while v > 0 || tmp.len() - i < width {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let digits = &tmp[i..];
        self.buf[self.len..self.len + digits.len()].copy_from_slice(digits);
        self.len += digits.len();
    }
}

/// Howard Hinnant's `civil_from_days`: (year, month, day) of the day `z` days after 1970-01-01
/// in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Howard Hinnant's `days_from_civil`: days from 1970-01-01 to the given proleptic Gregorian
/// date (negative before it). `month` is 1..=12 and `day` 1..=31.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses exactly `N` ASCII digits at `s[at..at + N]`.
fn digits(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = s.get(at..at + n)?;
    field.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn parse_rfc3339(s: &str) -> Result<Timestamp, &'static str> {
    const SHAPE: &str = "expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)";
    let b = s.as_bytes();
    if b.len() < "2006-01-02T15:04:05Z".len() {
        return Err(SHAPE);
    }
    let field = |at, n| digits(b, at, n).ok_or(SHAPE);
    let year = field(0, 4)?;
    let month = field(5, 2)?;
    let day = field(8, 2)?;
    let hour = field(11, 2)?;
    let minute = field(14, 2)?;
    let second = field(17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(SHAPE);
    }
    let year = i64::from(year);
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    if hour > 23 {
        return Err("hour out of range");
    }
    if minute > 59 {
        return Err("minute out of range");
    }
    if second > 59 {
        return Err("second out of range");
    }

    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err("expected digits after the decimal point");
        }
        // Like Go, keep the first nine digits and ignore the rest.
        for (i, &c) in rest[1..1 + n].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u32::from(c - b'0');
            }
        }
        for _ in n..9 {
            nanos *= 10;
        }
        rest = &rest[1 + n..];
    }

    let offset: i32 = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (Some(oh), Some(om)) = (digits(rest, 1, 2), digits(rest, 4, 2)) else {
                return Err("invalid UTC offset, expected Z or ±HH:MM");
            };
            if oh > 23 {
                return Err("UTC offset hour out of range");
            }
            if om > 59 {
                return Err("UTC offset minute out of range");
            }
            let off = (oh * 3600 + om * 60) as i32;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        [] => return Err("missing UTC offset, expected Z or ±HH:MM"),
        _ => return Err("invalid UTC offset, expected Z or ±HH:MM"),
    };

    let days = days_from_civil(year, month, day);
    let local = days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second);
    Ok(Timestamp {
        secs: local - i64::from(offset),
        nanos,
        offset,
    })
}

impl Default for Timestamp {
    /// Go's zero time, [`Timestamp::ZERO`].
    fn default() -> Timestamp {
        Timestamp::ZERO
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Timestamp) -> bool {
        self.secs == other.secs && self.nanos == other.nanos
    }
}

impl Eq for Timestamp {}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Timestamp) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    /// Chronological order of the instants; the offset is ignored.
    fn cmp(&self, other: &Timestamp) -> Ordering {
        (self.secs, self.nanos).cmp(&(other.secs, other.nanos))
    }
}

impl Hash for Timestamp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.secs.hash(state);
        self.nanos.hash(state);
    }
}

impl fmt::Display for Timestamp {
    /// Same text as [`Timestamp::to_rfc3339`]; honours width and alignment flags.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; FORMAT_BUF_LEN];
        f.pad(self.format(&mut buf))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Same as [`Timestamp::parse`].
    fn from_str(s: &str) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    /// Serialises as the RFC3339Nano string.
    ///
    /// Like Go's `MarshalJSON`, fails when the year is outside `0..=9999` or the offset is a
    /// day or more, since RFC 3339 cannot express either.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        if !(0..=9999).contains(&self.civil().year) {
            return Err(S::Error::custom(
                "Time.MarshalJSON: year outside of range [0,9999]",
            ));
        }
        if self.offset.unsigned_abs() / 60 / 60 >= 24 {
            return Err(S::Error::custom(
                "Time.MarshalJSON: timezone hour outside of range [0,23]",
            ));
        }
        let mut buf = [0u8; FORMAT_BUF_LEN];
        serializer.serialize_str(self.format(&mut buf))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// Deserialises from an RFC 3339 string; `null` gives [`Timestamp::ZERO`] (as in Go).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        deserializer.deserialize_option(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl<'de> Visitor<'de> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp string such as \"2024-01-02T03:04:05.5Z\"")
    }

    fn visit_none<E: de::Error>(self) -> Result<Timestamp, E> {
        Ok(Timestamp::ZERO)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Timestamp, E> {
        Ok(Timestamp::ZERO)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Timestamp, D::Error> {
        deserializer.deserialize_str(self)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
        Timestamp::parse(v).map_err(E::custom)
    }
}

/// The error returned when a string is not a valid RFC 3339 timestamp.
///
/// Its message names the input and what is wrong with it, e.g.
/// `invalid RFC 3339 timestamp "1900-02-29T00:00:00Z": day out of range`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampError {
    input: String,
    reason: &'static str,
}

impl TimestampError {
    /// Inputs longer than this are shortened in the message.
    const MAX_INPUT: usize = 64;

    fn new(input: &str, reason: &'static str) -> TimestampError {
        let input = if input.len() > Self::MAX_INPUT {
            let mut end = Self::MAX_INPUT;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &input[..end])
        } else {
            input.to_owned()
        };
        TimestampError { input, reason }
    }

    /// What is wrong with the input (e.g. `"day out of range"`).
    pub fn reason(&self) -> &str {
        self.reason
    }
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid RFC 3339 timestamp {:?}: {}",
            self.input, self.reason
        )
    }
}

impl std::error::Error for TimestampError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const NS: i128 = 1_000_000_000;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn formats_known_instants() {
        let cases: &[(i128, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:00.000000001Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
            (
                1_700_000_000 * NS + 123_456_789,
                "2023-11-14T22:13:20.123456789Z",
            ),
            (1_700_000_000 * NS + 100_000_000, "2023-11-14T22:13:20.1Z"),
            (1_700_000_000 * NS + 120_000_000, "2023-11-14T22:13:20.12Z"),
            (
                1_700_000_000 * NS + 123_456_000,
                "2023-11-14T22:13:20.123456Z",
            ),
            (1_700_000_000 * NS + 10, "2023-11-14T22:13:20.00000001Z"),
            (1_700_000_000 * NS, "2023-11-14T22:13:20Z"),
            (951_782_400 * NS, "2000-02-29T00:00:00Z"),
            (1_709_164_800 * NS, "2024-02-29T00:00:00Z"),
            (1_709_251_199 * NS, "2024-02-29T23:59:59Z"),
            (1_709_251_200 * NS, "2024-03-01T00:00:00Z"),
            (-2_208_988_800 * NS, "1900-01-01T00:00:00Z"),
            (
                253_402_300_799 * NS + 999_999_999,
                "9999-12-31T23:59:59.999999999Z",
            ),
            (-62_135_596_800 * NS, "0001-01-01T00:00:00Z"),
            (-62_135_596_801 * NS, "0000-12-31T23:59:59Z"),
            (-62_167_219_200 * NS, "0000-01-01T00:00:00Z"),
            (-62_167_219_201 * NS, "-0001-12-31T23:59:59Z"),
            (253_402_300_800 * NS, "10000-01-01T00:00:00Z"),
        ];
        for &(nanos, want) in cases {
            let t = Timestamp::from_unix_nanos(nanos);
            assert_eq!(t.to_rfc3339(), want, "{nanos}");
            assert_eq!(t.to_string(), want, "{nanos}");
            assert_eq!(t.unix_nanos(), nanos);
        }
    }

    #[test]
    fn parses_and_round_trips_text() {
        // (input, unix seconds, nanos, offset seconds)
        let cases: &[(&str, i64, u32, i32)] = &[
            ("1970-01-01T00:00:00Z", 0, 0, 0),
            (
                "2023-11-14T22:13:20.123456789Z",
                1_700_000_000,
                123_456_789,
                0,
            ),
            ("2023-11-14T22:13:20.1Z", 1_700_000_000, 100_000_000, 0),
            ("2023-11-14T22:13:20.12Z", 1_700_000_000, 120_000_000, 0),
            ("2024-02-29T00:00:00Z", 1_709_164_800, 0, 0),
            ("2000-02-29T00:00:00Z", 951_782_400, 0, 0),
            (
                "2024-01-02T03:04:05.5+01:00",
                1_704_161_045,
                500_000_000,
                3600,
            ),
            ("2024-01-02T03:04:05-05:30", 1_704_184_445, 0, -19_800),
            (
                "2026-02-18T11:03:28.123456+01:00",
                1_771_409_008,
                123_456_000,
                3600,
            ),
            (
                "2024-01-01T00:30:00+23:59",
                1_704_069_000 - 86_340,
                0,
                86_340,
            ),
            ("0001-01-01T00:00:00Z", GO_ZERO_UNIX_SECS, 0, 0),
            (
                "9999-12-31T23:59:59.999999999Z",
                253_402_300_799,
                999_999_999,
                0,
            ),
            ("0000-01-01T00:00:00Z", -62_167_219_200, 0, 0),
        ];
        for &(input, secs, nanos, offset) in cases {
            let t = ts(input);
            assert_eq!(
                (t.secs, t.nanos, t.offset_secs()),
                (secs, nanos, offset),
                "{input}"
            );
            assert_eq!(t.to_rfc3339(), input, "round trip of {input}");
        }
    }

    #[test]
    fn parse_normalises_like_go() {
        let cases: &[(&str, &str)] = &[
            // Trailing zeros are trimmed and a zero fraction dropped.
            ("2024-01-02T03:04:05.500Z", "2024-01-02T03:04:05.5Z"),
            ("2024-01-02T03:04:05.000000000Z", "2024-01-02T03:04:05Z"),
            ("2024-01-02T03:04:05.0Z", "2024-01-02T03:04:05Z"),
            // Digits after the ninth are truncated, as Go does.
            (
                "2024-01-02T03:04:05.1234567891Z",
                "2024-01-02T03:04:05.123456789Z",
            ),
            (
                "2024-01-02T03:04:05.9999999999999Z",
                "2024-01-02T03:04:05.999999999Z",
            ),
            // A zero offset is UTC, shown as Z (Go does the same).
            ("2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05Z"),
            ("2024-01-02T03:04:05-00:00", "2024-01-02T03:04:05Z"),
        ];
        for &(input, want) in cases {
            assert_eq!(ts(input).to_rfc3339(), want, "{input}");
        }
    }

    #[test]
    fn offsets_keep_text_and_compare_by_instant() {
        let local = ts("2024-01-02T03:04:05.5+01:00");
        let utc = ts("2024-01-02T02:04:05.5Z");
        assert_eq!(local, utc);
        assert_eq!(local.cmp(&utc), Ordering::Equal);
        assert_eq!(local.to_rfc3339(), "2024-01-02T03:04:05.5+01:00");
        assert_eq!(utc.to_rfc3339(), "2024-01-02T02:04:05.5Z");
        assert_eq!(local.offset_secs(), 3600);
        assert_eq!(utc.offset_secs(), 0);
        let set: HashSet<Timestamp> = [local, utc].into_iter().collect();
        assert_eq!(set.len(), 1);

        // with_offset changes only the rendering.
        assert_eq!(utc.with_offset(3600).to_rfc3339(), local.to_rfc3339());
        assert_eq!(local.with_offset(0).to_rfc3339(), utc.to_rfc3339());
        let cases: &[(i32, &str)] = &[
            (-5 * 3600, "2024-01-01T21:04:05.5-05:00"),
            (5 * 3600 + 45 * 60, "2024-01-02T07:49:05.5+05:45"),
            (-(3 * 3600 + 30 * 60), "2024-01-01T22:34:05.5-03:30"),
            (14 * 3600, "2024-01-02T16:04:05.5+14:00"),
            // Seconds in an offset are truncated away, as Go's RFC 3339 formatting does.
            (3600 + 59, "2024-01-02T03:04:05.5+01:00"),
            (30, "2024-01-02T02:04:05.5+00:00"),
            (-30, "2024-01-02T02:04:05.5+00:00"),
            (-90, "2024-01-02T02:04:05.5-00:01"),
        ];
        for &(offset, want) in cases {
            let t = utc.with_offset(offset);
            assert_eq!(t, utc);
            // The displayed wall clock includes the whole offset, seconds and all.
            if offset % 60 == 0 {
                assert_eq!(t.to_rfc3339(), want, "offset {offset}");
                assert_eq!(ts(want), utc, "{want}");
            } else {
                assert_eq!(&t.to_rfc3339()[19..], &want[19..], "offset {offset}");
            }
        }
    }

    #[test]
    fn zero_time() {
        assert_eq!(Timestamp::ZERO.to_rfc3339(), "0001-01-01T00:00:00Z");
        assert!(Timestamp::ZERO.is_zero());
        assert!(Timestamp::default().is_zero());
        assert_eq!(Timestamp::default(), Timestamp::ZERO);
        assert!(ts("0001-01-01T00:00:00Z").is_zero());
        assert!(ts("0001-01-01T01:00:00+01:00").is_zero());
        assert!(!ts("0001-01-01T00:00:00.000000001Z").is_zero());
        assert!(!Timestamp::from_unix_nanos(0).is_zero());
        assert!(!Timestamp::now().is_zero());

        let json = serde_json::to_string(&Timestamp::ZERO).unwrap();
        assert_eq!(json, r#""0001-01-01T00:00:00Z""#);
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert!(back.is_zero());
    }

    #[test]
    fn ordering_is_chronological() {
        let mut v = [
            ts("2024-01-02T03:04:05.5+01:00"), // 02:04:05.5Z
            ts("2024-01-02T02:04:05Z"),
            Timestamp::ZERO,
            ts("2024-01-02T02:04:05.000000001Z"),
            ts("2024-01-01T23:00:00-05:00"), // 04:00Z on the 2nd
            Timestamp::from_unix_nanos(-1),
        ];
        v.sort();
        let got: Vec<String> = v.iter().map(|t| t.with_offset(0).to_rfc3339()).collect();
        assert_eq!(
            got,
            [
                "0001-01-01T00:00:00Z",
                "1969-12-31T23:59:59.999999999Z",
                "2024-01-02T02:04:05Z",
                "2024-01-02T02:04:05.000000001Z",
                "2024-01-02T02:04:05.5Z",
                "2024-01-02T04:00:00Z",
            ]
        );
        assert!(ts("2024-01-02T02:04:05Z") < ts("2024-01-02T02:04:05.1Z"));
        assert!(ts("2024-01-02T03:00:00+01:00") < ts("2024-01-02T02:30:00Z"));
    }

    #[test]
    fn duration_since_is_signed() {
        let a = ts("2024-01-02T03:04:05Z");
        let b = ts("2024-01-02T03:05:35.5+00:00");
        assert_eq!(b.duration_since(&a), GoDuration::from_millis(90_500));
        assert_eq!(a.duration_since(&b), GoDuration::from_millis(-90_500));
        assert_eq!(a.duration_since(&a), GoDuration::ZERO);
        assert_eq!(
            ts("2024-01-02T04:04:05+01:00").duration_since(&a),
            GoDuration::ZERO
        );
        // Saturates: the zero time is ~2023 years before now, beyond Go's ±292-year range.
        assert_eq!(a.duration_since(&Timestamp::ZERO).as_nanos(), i64::MAX);
        assert_eq!(Timestamp::ZERO.duration_since(&a).as_nanos(), i64::MIN);
    }

    #[test]
    fn unix_nanos_and_system_time() {
        for nanos in [
            0i128,
            1,
            -1,
            999_999_999,
            -999_999_999,
            -1_000_000_000,
            1_700_000_000 * NS + 123_456_789,
            -62_135_596_800 * NS,
            -62_135_596_800 * NS + 5,
        ] {
            let t = Timestamp::from_unix_nanos(nanos);
            assert_eq!(t.unix_nanos(), nanos);
            assert!(t.nanos < 1_000_000_000);
            assert_eq!(t.offset_secs(), 0);
            let st = t.to_system_time();
            assert_eq!(Timestamp::from_system_time(st), t, "{nanos}");
        }
        assert_eq!(
            Timestamp::from_system_time(UNIX_EPOCH + Duration::new(1_700_000_000, 5)).unix_nanos(),
            1_700_000_000 * NS + 5
        );
        assert_eq!(
            Timestamp::from_system_time(UNIX_EPOCH - Duration::new(1, 5)).unix_nanos(),
            -NS - 5
        );
        // Saturation at the extremes of i64 seconds.
        let max = Timestamp::from_unix_nanos(i128::MAX);
        assert_eq!(max.secs, i64::MAX);
        assert_eq!(max.nanos, 999_999_999);
        let min = Timestamp::from_unix_nanos(i128::MIN);
        assert_eq!(min.secs, i64::MIN);
        // Formatting the extremes does not panic.
        assert!(!max.to_rfc3339().is_empty());
        assert!(!min.with_offset(-86_399).to_rfc3339().is_empty());
        assert!(!max.with_offset(i32::MAX).to_rfc3339().is_empty());
        assert!(!min.with_offset(i32::MIN).to_rfc3339().is_empty());

        let before = SystemTime::now();
        let now = Timestamp::now();
        let after = SystemTime::now();
        assert!(Timestamp::from_system_time(before) <= now);
        assert!(now <= Timestamp::from_system_time(after));
        assert_eq!(now.offset_secs(), 0);
        assert!(now.to_rfc3339().ends_with('Z'));
    }

    #[test]
    fn civil_conversion_round_trips_every_day_of_years_0_to_10000() {
        let start = days_from_civil(0, 1, 1);
        let end = days_from_civil(10_000, 12, 31);
        let (mut y, mut m, mut d) = (0i64, 1u32, 1u32);
        for days in start..=end {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            assert_eq!(days_from_civil(y, m, d), days);
            d += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1, 1, 1) * SECS_PER_DAY, GO_ZERO_UNIX_SECS);
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)"),
            ("garbage", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-01-02", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-01-02T03:04:05", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-01-02 03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-01-02t03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024/01/02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("24-01-02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("+2024-01-02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("-0001-01-02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("12024-01-02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-1-02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-01-02T3:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-01-02T03:04:5Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-0a-02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-01-02T03:04:05", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-00-02T03:04:05Z", "month out of range"),
            ("2024-13-02T03:04:05Z", "month out of range"),
            ("2024-01-00T03:04:05Z", "day out of range"),
            ("2024-01-32T03:04:05Z", "day out of range"),
            ("2024-04-31T03:04:05Z", "day out of range"),
            ("2023-02-29T00:00:00Z", "day out of range"),
            ("1900-02-29T00:00:00Z", "day out of range"),
            ("2100-02-29T00:00:00Z", "day out of range"),
            ("2024-02-30T00:00:00Z", "day out of range"),
            ("2024-01-02T24:00:00Z", "hour out of range"),
            ("2024-01-02T23:60:00Z", "minute out of range"),
            ("2024-01-02T23:59:60Z", "second out of range"),
            (
                "2024-01-02T03:04:05.Z",
                "expected digits after the decimal point",
            ),
            (
                "2024-01-02T03:04:05.",
                "expected digits after the decimal point",
            ),
            ("2024-01-02T03:04:05,5Z", "invalid UTC offset"),
            ("2024-01-02T03:04:05.5", "missing UTC offset"),
            ("2024-01-02T03:04:05z", "invalid UTC offset"),
            ("2024-01-02T03:04:05ZZ", "invalid UTC offset"),
            ("2024-01-02T03:04:05Z ", "invalid UTC offset"),
            (" 2024-01-02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2024-01-02T03:04:05+0100", "invalid UTC offset"),
            ("2024-01-02T03:04:05+01", "invalid UTC offset"),
            ("2024-01-02T03:04:05+1:00", "invalid UTC offset"),
            ("2024-01-02T03:04:05 01:00", "invalid UTC offset"),
            ("2024-01-02T03:04:05+0a:00", "invalid UTC offset"),
            ("2024-01-02T03:04:05+01:00:00", "invalid UTC offset"),
            ("2024-01-02T03:04:05+24:00", "UTC offset hour out of range"),
            (
                "2024-01-02T03:04:05-01:60",
                "UTC offset minute out of range",
            ),
            ("2024-01-02T03:04:05.5.5Z", "invalid UTC offset"),
            ("２０２４-01-02T03:04:05Z", "expected YYYY-MM-DDTHH:MM:SS"),
        ];
        for &(input, reason) in cases {
            let err = Timestamp::parse(input).expect_err(input);
            assert!(
                err.reason().starts_with(reason),
                "{input:?}: got {err}, want {reason}"
            );
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("invalid RFC 3339 timestamp {input:?}: ")),
                "{msg}"
            );
            assert!(input.parse::<Timestamp>().is_err());
        }
        // Long inputs are shortened in the message.
        let long = "x".repeat(1000);
        let msg = Timestamp::parse(&long).unwrap_err().to_string();
        assert!(msg.len() < 150, "{msg}");
        let long = "é".repeat(100);
        assert!(Timestamp::parse(&long).is_err());
    }

    #[test]
    fn serde_round_trip() {
        for s in [
            "2023-11-14T22:13:20.123456789Z",
            "2024-01-02T03:04:05.5+01:00",
            "2026-02-18T11:03:28.123456+01:00",
            "2024-01-02T03:04:05Z",
            "0001-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999-23:59",
        ] {
            let json = format!("\"{s}\"");
            let t: Timestamp = serde_json::from_str(&json).unwrap();
            assert_eq!(t, ts(s));
            assert_eq!(t.offset_secs(), ts(s).offset_secs());
            assert_eq!(serde_json::to_string(&t).unwrap(), json);
        }
    }

    #[test]
    fn serde_null_is_zero_and_errors_are_clear() {
        let t: Timestamp = serde_json::from_str("null").unwrap();
        assert!(t.is_zero());
        let t: Option<Timestamp> = serde_json::from_str("null").unwrap();
        assert_eq!(t, None);
        let t: Option<Timestamp> = serde_json::from_str(r#""1970-01-01T00:00:00Z""#).unwrap();
        assert_eq!(t, Some(Timestamp::from_unix_nanos(0)));

        let cases: &[(&str, &str)] = &[
            (
                r#""1900-02-29T00:00:00Z""#,
                r#"invalid RFC 3339 timestamp "1900-02-29T00:00:00Z": day out of range"#,
            ),
            (
                r#""""#,
                r#"invalid RFC 3339 timestamp "": expected YYYY-MM-DDTHH:MM:SS"#,
            ),
            (
                "0",
                "invalid type: integer `0`, expected an RFC 3339 timestamp string",
            ),
            (
                "1.5",
                "invalid type: floating point `1.5`, expected an RFC 3339",
            ),
            ("{}", "invalid type: map, expected an RFC 3339"),
            ("true", "invalid type: boolean `true`, expected an RFC 3339"),
        ];
        for &(json, want) in cases {
            let err = serde_json::from_str::<Timestamp>(json)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(want),
                "{json}: got {err}, want prefix {want}"
            );
        }
    }

    #[test]
    fn serialize_rejects_unrepresentable_like_go() {
        let cases: &[(Timestamp, &str)] = &[
            (
                Timestamp::from_unix_nanos(-62_167_219_201 * NS),
                "Time.MarshalJSON: year outside of range [0,9999]",
            ),
            (
                Timestamp::from_unix_nanos(253_402_300_800 * NS),
                "Time.MarshalJSON: year outside of range [0,9999]",
            ),
            (
                // Year 9999 in UTC but 10000 in the displayed offset.
                ts("9999-12-31T23:00:00Z").with_offset(3600),
                "Time.MarshalJSON: year outside of range [0,9999]",
            ),
            (
                Timestamp::from_unix_nanos(0).with_offset(24 * 3600),
                "Time.MarshalJSON: timezone hour outside of range [0,23]",
            ),
            (
                Timestamp::from_unix_nanos(0).with_offset(-24 * 3600),
                "Time.MarshalJSON: timezone hour outside of range [0,23]",
            ),
        ];
        for (t, want) in cases {
            let err = serde_json::to_string(t).unwrap_err().to_string();
            assert_eq!(err, *want, "{t:?}");
        }
        assert!(
            serde_json::to_string(&Timestamp::from_unix_nanos(0).with_offset(24 * 3600 - 1))
                .is_ok()
        );
    }

    #[test]
    fn serde_in_struct() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Ev {
            seq: u64,
            #[serde(default)]
            timestamp: Timestamp,
        }
        let e: Ev = serde_json::from_str(r#"{"seq":1}"#).unwrap();
        assert!(e.timestamp.is_zero());
        let e: Ev = serde_json::from_str(r#"{"seq":1,"timestamp":null}"#).unwrap();
        assert!(e.timestamp.is_zero());
        let e: Ev =
            serde_json::from_str(r#"{"seq":7,"timestamp":"2024-01-02T03:04:05.5Z"}"#).unwrap();
        assert_eq!(e.timestamp, ts("2024-01-02T03:04:05.5Z"));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"seq":7,"timestamp":"2024-01-02T03:04:05.5Z"}"#
        );
    }

    #[test]
    fn display_honours_padding() {
        let t = Timestamp::from_unix_nanos(0);
        assert_eq!(format!("[{t:>22}]"), "[  1970-01-01T00:00:00Z]");
        assert_eq!(format!("[{t}]"), "[1970-01-01T00:00:00Z]");
    }

    #[test]
    fn error_is_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(Timestamp::parse("x").unwrap_err());
        assert!(e.to_string().contains("\"x\""));
    }
}
