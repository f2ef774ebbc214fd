//! Fuzzes [`Timestamp::parse`], the RFC 3339 parser for event timestamps (`time` fields of the
//! event log and of upstream log files).
//!
//! Property: a timestamp that parses, and whose displayed year is within `0..=9999`, formats
//! (RFC3339Nano, [`Timestamp::to_rfc3339`]) as a string that parses back to the same instant
//! and the same UTC offset.
//!
//! The year bound is the only exception, and it is a legitimate one: the parser reads exactly
//! four year digits, while the formatter, like Go's, prints years outside `0..=9999` with more
//! digits or a sign (RFC 3339 cannot express them). Every parsed timestamp has a four-digit
//! local year, so the bound only documents the limit; it excludes nothing the parser accepts.
//!
//! The offset is compared as well as the instant because parsing keeps the offset for display,
//! and the formatter writes it back as `±HH:MM`, or `Z` for a zero offset. `-00:00` and
//! `+00:00` therefore both come back as `Z`, which is the same offset (zero), so they pass.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rig_types::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ts = match Timestamp::parse(text) {
        Ok(ts) => ts,
        Err(e) => {
            // The message quotes the input; building it must not panic.
            let _ = e.to_string();
            return;
        }
    };
    let formatted = ts.to_rfc3339();
    // The displayed (local) year is the leading field of the formatted string.
    let year_in_range = formatted
        .get(..4)
        .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit()))
        && formatted.as_bytes().get(4) == Some(&b'-');
    if !year_in_range {
        return;
    }
    match Timestamp::parse(&formatted) {
        Ok(again) => {
            assert_eq!(
                again.unix_nanos(),
                ts.unix_nanos(),
                "{text:?} formatted as {formatted:?} re-parses to a different instant",
            );
            assert_eq!(
                again.offset_secs(),
                ts.offset_secs(),
                "{text:?} formatted as {formatted:?} re-parses with a different offset",
            );
        }
        Err(e) => panic!("{text:?} formatted as {formatted:?}, which does not parse: {e}"),
    }
});
