//! Rendering JSON values the way Go's `fmt.Sprintf("%v", v)` renders what `encoding/json`
//! decoded into an `any`, so attribute environment variables match upstream's text.
//!
//! `encoding/json` decodes every JSON number into a `float64`, and `%v` prints a float64 with
//! `strconv.FormatFloat(f, 'g', -1, 64)`: the shortest digits that round-trip, in exponent
//! form when the decimal exponent is below -4 or at least 6 (`5432`, `0.5`, `100000`, but
//! `1e+06`, `1.23456789e+08`, `1e-05`). The other kinds print as:
//!
//! | JSON | `%v` |
//! |---|---|
//! | `"text"` | `text` |
//! | `true` / `false` | `true` / `false` |
//! | `null` | `<nil>` |
//! | `["a", 1]` | `[a 1]` |
//! | `{"k": "v", "a": 1}` | `map[a:1 k:v]` (keys sorted, as Go prints maps) |

use serde_json::Value;

/// Renders `value` like Go's `%v` of the same JSON decoded by `encoding/json`.
pub fn go_format_value(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) => out.push_str(&go_format_float(f)),
            // Unreachable without serde_json's `arbitrary_precision`; keep the JSON text.
            None => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push_str("map[");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(out, v);
            }
            out.push(']');
        }
    }
}

/// Formats `f` like Go's `strconv.FormatFloat(f, 'g', -1, 64)` (which `%v` uses).
pub fn go_format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, like Go's shortest mode:
    // `1e6`, `-1.5e-7`, `0e0`.
    let sci = format!("{f:e}");
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let exp: i32 = exponent.parse().unwrap_or(0);

    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    // Go: with shortest formatting the %e/%f decision uses precision 6.
    if !(-4..6).contains(&exp) {
        write_exponent_form(&mut out, &digits, exp);
    } else {
        write_fixed_form(&mut out, &digits, exp + 1);
    }
    out
}

/// Go's `fmtE` with all digits: `d.ddde±XX`, exponent at least two digits.
fn write_exponent_form(out: &mut String, digits: &[u8], exp: i32) {
    let (first, rest) = digits.split_first().unwrap_or((&b'0', &[]));
    out.push(char::from(*first));
    if !rest.is_empty() {
        out.push('.');
        out.extend(rest.iter().map(|&d| char::from(d)));
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let abs = exp.unsigned_abs();
    if abs < 10 {
        out.push('0');
    }
    out.push_str(&abs.to_string());
}

/// Go's `fmtF` with `max(nd - dp, 0)` decimals, `dp` being the position of the decimal point
/// relative to the start of `digits`.
fn write_fixed_form(out: &mut String, digits: &[u8], dp: i32) {
    let nd = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let digit_at = |i: i32| -> char {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .map_or('0', |&d| char::from(d))
    };
    if dp > 0 {
        for i in 0..dp {
            out.push(digit_at(i));
        }
    } else {
        out.push('0');
    }
    let decimals = (nd - dp).max(0);
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals {
            out.push(digit_at(dp + i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_match_go_shortest_g() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (5432.0, "5432"),
            (54321.0, "54321"),
            (0.5, "0.5"),
            (100.0, "100"),
            (120.0, "120"),
            (100000.0, "100000"),
            (999999.0, "999999"),
            (1000000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (123456789.0, "1.23456789e+08"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (1.5e300, "1.5e+300"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001, "1e-05"),
            (0.000012345, "1.2345e-05"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (1.25, "1.25"),
            (-2.5, "-2.5"),
            (123456.789, "123456.789"),
            (0.1 + 0.2, "0.30000000000000004"),
            (100.25, "100.25"),
            (f64::MAX, "1.7976931348623157e+308"),
            (9007199254740993.0, "9.007199254740992e+15"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for &(f, want) in cases {
            assert_eq!(go_format_float(f), want, "formatting {f:?}");
        }
    }

    #[test]
    fn json_numbers_are_floats() {
        assert_eq!(go_format_value(&json!(5432)), "5432");
        assert_eq!(go_format_value(&json!(0.5)), "0.5");
        assert_eq!(go_format_value(&json!(1000000)), "1e+06");
        assert_eq!(go_format_value(&json!(-7)), "-7");
        assert_eq!(go_format_value(&json!(1.0)), "1");
        assert_eq!(
            go_format_value(&json!(12345678901234567890u64)),
            "1.2345678901234567e+19"
        );
        let parsed: Value = serde_json::from_str("1e6").unwrap();
        assert_eq!(go_format_value(&parsed), "1e+06");
    }

    #[test]
    fn scalars() {
        assert_eq!(go_format_value(&json!("a b")), "a b");
        assert_eq!(go_format_value(&json!("")), "");
        assert_eq!(go_format_value(&json!(true)), "true");
        assert_eq!(go_format_value(&json!(false)), "false");
        assert_eq!(go_format_value(&Value::Null), "<nil>");
    }

    #[test]
    fn arrays_and_objects() {
        assert_eq!(go_format_value(&json!(["a", "b"])), "[a b]");
        assert_eq!(go_format_value(&json!([])), "[]");
        assert_eq!(
            go_format_value(&json!([1, null, true, "x y"])),
            "[1 <nil> true x y]"
        );
        assert_eq!(go_format_value(&json!({})), "map[]");
        // Keys sorted whatever the insertion order (serde_json preserves order here).
        let obj: Value = serde_json::from_str(r#"{"k":"v","a":1,"B":[2000000]}"#).unwrap();
        assert_eq!(go_format_value(&obj), "map[B:[2e+06] a:1 k:v]");
        assert_eq!(
            go_format_value(&json!([{"x": {"y": null}}, [[]]])),
            "[map[x:map[y:<nil>]] [[]]]"
        );
    }
}
