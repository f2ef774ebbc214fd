//! Fuzzes [`GoDuration::parse`], the parser for Go duration strings in specs (`"30s"`,
//! `"1m30s"`, `"1.5µs"`).
//!
//! Property: every duration that parses prints (Go's `Duration.String()` form) as a string that
//! parses back to the same number of nanoseconds. This holds without exception: the printed
//! form is exact (whole hours and minutes, then seconds or a sub-second unit with up to nine
//! fractional digits), and the parser accepts the full `i64` range, `i64::MIN`
//! (`-2562047h47m16.854775808s`) included.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rig_types::GoDuration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match GoDuration::parse(text) {
        Ok(d) => {
            let printed = d.to_string();
            match GoDuration::parse(&printed) {
                Ok(again) => assert_eq!(
                    again,
                    d,
                    "{text:?} parsed to {} ns, printed as {printed:?}, which parses to {} ns",
                    d.as_nanos(),
                    again.as_nanos(),
                ),
                Err(e) => panic!(
                    "{text:?} parsed to {} ns, printed as {printed:?}, which does not parse: {e}",
                    d.as_nanos(),
                ),
            }
        }
        Err(e) => {
            // The message quotes the input; building it must not panic.
            let _ = e.to_string();
        }
    }
});
