//! Standard base64 (RFC 4648 §4: alphabet `A–Z a–z 0–9 + /`, `=` padding), as Go's
//! `base64.StdEncoding`, which Go's `encoding/json` uses for `[]byte` fields such as captured
//! request and response bodies.
//!
//! - [`encode`] / [`decode`] convert between bytes and text. Decoding is strict about the
//!   alphabet, the length and the padding, and, like Go, skips `\r` and `\n` anywhere in the
//!   input. Also like Go's `StdEncoding` (which is not `.Strict()`), unused low bits in the last
//!   quantum need not be zero.
//! - [`opt`] plugs into serde for `Option<Vec<u8>>` fields:
//!   `#[serde(with = "crate::base64::opt", default, skip_serializing_if = "Option::is_none")]`.
//! - [`serialize`] / [`deserialize`] do the same for plain `Vec<u8>` fields:
//!   `#[serde(with = "crate::base64")]`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserializer, Serializer};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Marks bytes outside the alphabet in [`DECODE`].
const INVALID: u8 = 0xff;

/// Maps an input byte to its 6-bit value, or [`INVALID`].
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The length of the encoding of `n` bytes.
fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Encodes `bytes` as standard padded base64 (`"foobar"` → `"Zm9vYmFy"`).
pub fn encode(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// The name under which serde_json's serializers take a string as JSON text to write as it
/// is: `RawValue`'s own `Serialize` is a struct of this name with one field of this name.
/// serde_json keeps the name private; the tests check that JSON output and `to_value` still
/// see a plain string.
const RAW_JSON: &str = "$serde_json::private::RawValue";

/// Serialises `bytes` as a base64 string.
///
/// Encoding is SIMD (AVX2, SSE4.1 or NEON, picked at run time), and for JSON the quoted text
/// goes out as raw JSON: base64 never needs escaping, and serde_json would otherwise check
/// every character of it (as a string), or parse it again (`RawValue::from_string`), each
/// about as slow as encoding it. A captured 64 KiB body is 87 KiB of text in every event that
/// carries it.
fn serialize_encoded<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    let mut quoted = String::with_capacity(encoded_len(bytes.len()) + 2);
    quoted.push('"');
    base64_simd::STANDARD.encode_append(bytes, &mut quoted);
    quoted.push('"');
    let mut raw = serializer.serialize_struct(RAW_JSON, 1)?;
    raw.serialize_field(RAW_JSON, &quoted)?;
    raw.end()
}

/// Decodes standard padded base64, as Go's `base64.StdEncoding.DecodeString`.
///
/// `\r` and `\n` are skipped wherever they appear. Anything else outside the alphabet, a
/// missing or misplaced `=`, data after the padding, or a length that is not a whole number of
/// 4-character groups is an error.
pub fn decode(s: &str) -> Result<Vec<u8>, Base64Error> {
    let src = s.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut quad = [0u8; 4];
    let mut n = 0;
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        match c {
            b'\r' | b'\n' => {}
            b'=' => return finish_padded(src, i, &quad[..n], out),
            _ => {
                let v = DECODE[usize::from(c)];
                if v == INVALID {
                    return Err(Base64Error::new(i, ErrorKind::InvalidByte(c)));
                }
                quad[n] = v;
                n += 1;
                if n == 4 {
                    let x = u32::from(quad[0]) << 18
                        | u32::from(quad[1]) << 12
                        | u32::from(quad[2]) << 6
                        | u32::from(quad[3]);
                    out.extend_from_slice(&[(x >> 16) as u8, (x >> 8) as u8, x as u8]);
                    n = 0;
                }
            }
        }
        i += 1;
    }
    if n != 0 {
        return Err(Base64Error::new(src.len(), ErrorKind::Truncated));
    }
    Ok(out)
}

/// Handles the final quantum once a `=` is seen at `src[at]`, with `partial` the 6-bit values
/// already read in that quantum.
fn finish_padded(
    src: &[u8],
    at: usize,
    partial: &[u8],
    mut out: Vec<u8>,
) -> Result<Vec<u8>, Base64Error> {
    let skip_newlines = |mut i: usize| {
        while i < src.len() && (src[i] == b'\r' || src[i] == b'\n') {
            i += 1;
        }
        i
    };
    let end = match partial.len() {
        // "xx==": a second '=' must follow.
        2 => {
            let j = skip_newlines(at + 1);
            if j >= src.len() {
                return Err(Base64Error::new(j, ErrorKind::Truncated));
            }
            if src[j] != b'=' {
                return Err(Base64Error::new(j, ErrorKind::BadPadding));
            }
            let x = u32::from(partial[0]) << 18 | u32::from(partial[1]) << 12;
            out.push((x >> 16) as u8);
            skip_newlines(j + 1)
        }
        // "xxx=".
        3 => {
            let x = u32::from(partial[0]) << 18
                | u32::from(partial[1]) << 12
                | u32::from(partial[2]) << 6;
            out.extend_from_slice(&[(x >> 16) as u8, (x >> 8) as u8]);
            skip_newlines(at + 1)
        }
        // '=' cannot start a quantum or follow a single character.
        _ => return Err(Base64Error::new(at, ErrorKind::BadPadding)),
    };
    if end < src.len() {
        return Err(Base64Error::new(end, ErrorKind::AfterPadding));
    }
    Ok(out)
}

/// Why decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorKind {
    /// A byte outside the alphabet (and not `=`, `\r` or `\n`).
    InvalidByte(u8),
    /// The input ended part-way through a 4-character group.
    Truncated,
    /// A `=` where padding cannot be, or a missing second `=`.
    BadPadding,
    /// Something other than `\r`/`\n` after the padding.
    AfterPadding,
}

/// The error returned by [`decode`] for input that is not valid standard base64.
///
/// Displays as Go's `illegal base64 data at input byte N`, followed by the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Base64Error {
    offset: usize,
    kind: ErrorKind,
}

impl Base64Error {
    fn new(offset: usize, kind: ErrorKind) -> Base64Error {
        Base64Error { offset, kind }
    }

    /// The byte offset in the input where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "illegal base64 data at input byte {}: ", self.offset)?;
        match self.kind {
            ErrorKind::InvalidByte(b) if b.is_ascii_graphic() || b == b' ' => {
                write!(f, "invalid character {:?}", char::from(b))
            }
            ErrorKind::InvalidByte(b) => write!(f, "invalid byte 0x{b:02x}"),
            ErrorKind::Truncated => f.write_str("input length is not a multiple of 4"),
            ErrorKind::BadPadding => f.write_str("incorrect padding"),
            ErrorKind::AfterPadding => f.write_str("data after padding"),
        }
    }
}

impl std::error::Error for Base64Error {}

/// Serialises bytes as a base64 string; use as `#[serde(serialize_with = "crate::base64::serialize")]`
/// or `#[serde(with = "crate::base64")]` on a `Vec<u8>` field.
pub fn serialize<T, S>(bytes: &T, serializer: S) -> Result<S::Ok, S::Error>
where
    T: AsRef<[u8]> + ?Sized,
    S: Serializer,
{
    serialize_encoded(bytes.as_ref(), serializer)
}

/// Deserialises a base64 string into bytes; JSON `null` gives an empty vector (Go's nil
/// slice). Use as `#[serde(with = "crate::base64")]` on a `Vec<u8>` field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    Ok(deserializer
        .deserialize_option(OptionVisitor)?
        .unwrap_or_default())
}

/// Visits a base64 string.
struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        decode(v).map_err(E::custom)
    }
}

/// Visits a base64 string or `null`.
struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<Vec<u8>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Vec<u8>>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Vec<u8>>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<Vec<u8>>, D::Error> {
        d.deserialize_str(BytesVisitor).map(Some)
    }
}

/// Serde adapter for `Option<Vec<u8>>` fields holding Go `[]byte` values.
///
/// ```text
/// #[serde(with = "crate::base64::opt", default, skip_serializing_if = "Option::is_none")]
/// pub request_body: Option<Vec<u8>>,
/// ```
///
/// `Some(bytes)` serialises as a base64 string (`Some(vec![])` as `""`) and `None` as `null`
/// (normally skipped). A base64 string deserialises to `Some(bytes)` and `null` to `None`.
pub mod opt {
    use serde::{Deserializer, Serializer};

    use super::{serialize_encoded, OptionVisitor};

    /// Serialises `Some(bytes)` as a base64 string and `None` as `null`.
    pub fn serialize<T, S>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: AsRef<[u8]>,
        S: Serializer,
    {
        match value {
            Some(bytes) => serialize_encoded(bytes.as_ref(), serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Deserialises a base64 string to `Some(bytes)` and `null` to `None`; anything else,
    /// including malformed base64, is an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        deserializer.deserialize_option(OptionVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[test]
    fn rfc4648_vectors() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for &(plain, encoded) in cases {
            assert_eq!(encode(plain.as_bytes()), encoded, "encode {plain:?}");
            assert_eq!(
                decode(encoded).unwrap(),
                plain.as_bytes(),
                "decode {encoded:?}"
            );
        }
    }

    #[test]
    fn more_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x00", "AA=="),
            (b"\x00\x00", "AAA="),
            (b"\x00\x00\x00", "AAAA"),
            (b"\xff", "/w=="),
            (b"\xff\xff", "//8="),
            (b"\xff\xff\xff", "////"),
            (b"\xfb\xff", "+/8="),
            (b"{\"sku\":\"abc-1\"}", "eyJza3UiOiJhYmMtMSJ9"),
            (b"{\"id\":42}\n", "eyJpZCI6NDJ9Cg=="),
            (b"\x00\x00\x00\x00\x07\x0a\x05abc-1", "AAAAAAcKBWFiYy0x"),
        ];
        for &(plain, encoded) in cases {
            assert_eq!(encode(plain), encoded, "encode {plain:?}");
            assert_eq!(decode(encoded).unwrap(), plain, "decode {encoded:?}");
        }
    }

    #[test]
    fn all_byte_values_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        let enc = encode(&all);
        assert_eq!(enc.len(), 344);
        assert_eq!(decode(&enc).unwrap(), all);
        // Every length and alignment, and every byte value in every position of a quantum.
        for len in 0..=all.len() {
            for start in [0, 1, 2] {
                let data: Vec<u8> = all.iter().cycle().skip(start).take(len).copied().collect();
                let enc = encode(&data);
                assert_eq!(enc.len(), encoded_len(len));
                assert_eq!(decode(&enc).unwrap(), data, "len {len} start {start}");
            }
        }
    }

    /// Base64 one character at a time, straight from RFC 4648.
    fn reference(bytes: &[u8]) -> String {
        let mut out = String::new();
        for group in bytes.chunks(3) {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= group.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn large_inputs_match_the_reference_and_serialise_as_json_strings() {
        #[derive(Serialize)]
        struct Body<'a>(#[serde(serialize_with = "serialize")] &'a [u8]);

        for len in (0..=100).chain([767, 768, 769, 1535, 1536, 1537, 64 * 1024, 64 * 1024 + 1]) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 256) as u8).collect();
            let enc = encode(&data);
            assert_eq!(enc.len(), encoded_len(len));
            assert_eq!(enc, reference(&data), "len {len}");
            assert_eq!(decode(&enc).unwrap(), data, "len {len}");
            let json = serde_json::to_string(&Body(&data)).unwrap();
            assert_eq!(json, format!("\"{enc}\""), "len {len}");
            let value = serde_json::to_value(Body(&data)).unwrap();
            assert_eq!(value, serde_json::Value::String(enc), "len {len}");
        }
    }

    #[test]
    fn decode_skips_cr_and_lf_like_go() {
        let cases: &[(&str, &[u8])] = &[
            ("Zm9v\nYmFy", b"foobar"),
            ("Zm9v\r\nYmFy\r\n", b"foobar"),
            ("\n\nZm9vYmFy", b"foobar"),
            ("Z\rm\n9\r\nv", b"foo"),
            ("Zg=\n=", b"f"),
            ("Zg==\n", b"f"),
            ("Zm8=\r\n", b"fo"),
            ("\r\n", b""),
            ("\n", b""),
        ];
        for &(input, want) in cases {
            assert_eq!(decode(input).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn decode_accepts_nonzero_trailing_bits_like_go_std_encoding() {
        // Go's StdEncoding (not .Strict()) ignores the unused low bits of the last quantum.
        assert_eq!(decode("Zh==").unwrap(), b"f");
        assert_eq!(decode("Zm9=").unwrap(), b"fo");
    }

    #[test]
    fn decode_rejects_invalid_input() {
        let cases: &[(&str, usize, &str)] = &[
            // Bad characters.
            ("Zm9v!", 4, "invalid character '!'"),
            ("Zm 9v", 2, "invalid character ' '"),
            ("Zm9v\t", 4, "invalid byte 0x09"),
            ("Zm-v", 2, "invalid character '-'"),
            ("Zm_v", 2, "invalid character '_'"),
            ("Zm9vé", 4, "invalid byte 0xc3"),
            ("\0", 0, "invalid byte 0x00"),
            // Bad length.
            ("Z", 1, "input length is not a multiple of 4"),
            ("Zm", 2, "input length is not a multiple of 4"),
            ("Zm9", 3, "input length is not a multiple of 4"),
            ("Zm9vY", 5, "input length is not a multiple of 4"),
            ("Zm9v\nY\n", 7, "input length is not a multiple of 4"),
            // Bad padding.
            ("=", 0, "incorrect padding"),
            ("==", 0, "incorrect padding"),
            ("====", 0, "incorrect padding"),
            ("Z===", 1, "incorrect padding"),
            ("Zg=", 3, "input length is not a multiple of 4"),
            ("Zg=\n", 4, "input length is not a multiple of 4"),
            ("Zg=a", 3, "incorrect padding"),
            ("Zm9v=", 4, "incorrect padding"),
            ("Zm9vYmFy=", 8, "incorrect padding"),
            // Data after padding.
            ("Zg===", 4, "data after padding"),
            ("Zm8==", 4, "data after padding"),
            ("Zg==Zg==", 4, "data after padding"),
            ("Zm8=Zm8=", 4, "data after padding"),
            ("Zg==\nA", 5, "data after padding"),
            ("Zg== ", 4, "data after padding"),
        ];
        for &(input, offset, reason) in cases {
            let err = decode(input).expect_err(input);
            assert_eq!(err.offset(), offset, "{input:?}: {err}");
            assert_eq!(
                err.to_string(),
                format!("illegal base64 data at input byte {offset}: {reason}"),
                "{input:?}"
            );
        }
        let e: Box<dyn std::error::Error> = Box::new(decode("!").unwrap_err());
        assert!(e
            .to_string()
            .starts_with("illegal base64 data at input byte 0"));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    struct Request {
        #[serde(default)]
        method: String,
        #[serde(
            with = "crate::base64::opt",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        body: Option<Vec<u8>>,
    }

    #[test]
    fn opt_serde() {
        let cases: &[(Option<&[u8]>, &str)] = &[
            (None, r#"{"method":"GET"}"#),
            (Some(b""), r#"{"method":"GET","body":""}"#),
            (
                Some(b"{\"id\":42}\n"),
                r#"{"method":"GET","body":"eyJpZCI6NDJ9Cg=="}"#,
            ),
            (
                Some(&[0, 255, 1, 254]),
                r#"{"method":"GET","body":"AP8B/g=="}"#,
            ),
        ];
        for &(body, json) in cases {
            let r = Request {
                method: "GET".into(),
                body: body.map(<[u8]>::to_vec),
            };
            assert_eq!(serde_json::to_string(&r).unwrap(), json);
            assert_eq!(serde_json::from_str::<Request>(json).unwrap(), r, "{json}");
        }
        let r: Request = serde_json::from_str(r#"{"method":"GET","body":null}"#).unwrap();
        assert_eq!(r.body, None);
        let r: Request = serde_json::from_str(r#"{"body":"Zm9v\nYmFy"}"#).unwrap();
        assert_eq!(r.body.as_deref(), Some(&b"foobar"[..]));
        // Escaped JSON strings are unescaped before decoding.
        let r: Request = serde_json::from_str(r#"{"body":"\/w=="}"#).unwrap();
        assert_eq!(r.body.as_deref(), Some(&b"\xff"[..]));
    }

    #[test]
    fn opt_serde_errors() {
        let cases: &[(&str, &str)] = &[
            (r#"{"body":"Zm9v!"}"#, "illegal base64 data at input byte 4"),
            (r#"{"body":"Zg="}"#, "illegal base64 data at input byte 3"),
            (
                r#"{"body":42}"#,
                "invalid type: integer `42`, expected a base64 string",
            ),
            (
                r#"{"body":[1,2]}"#,
                "invalid type: sequence, expected a base64 string",
            ),
            (
                r#"{"body":true}"#,
                "invalid type: boolean `true`, expected a base64 string",
            ),
        ];
        for &(json, want) in cases {
            let err = serde_json::from_str::<Request>(json)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(want),
                "{json}: got {err}, want prefix {want}"
            );
        }
    }

    #[test]
    fn opt_serialize_explicit_none_is_null() {
        #[derive(Serialize)]
        struct Always {
            #[serde(with = "crate::base64::opt")]
            body: Option<Vec<u8>>,
        }
        let json = serde_json::to_string(&Always { body: None }).unwrap();
        assert_eq!(json, r#"{"body":null}"#);
    }

    #[test]
    fn plain_vec_serde() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Frame {
            #[serde(with = "crate::base64")]
            data: Vec<u8>,
        }
        let f = Frame {
            data: b"foobar".to_vec(),
        };
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"data":"Zm9vYmFy"}"#);
        assert_eq!(serde_json::from_str::<Frame>(&json).unwrap(), f);
        let f: Frame = serde_json::from_str(r#"{"data":null}"#).unwrap();
        assert!(f.data.is_empty());
        assert!(serde_json::from_str::<Frame>(r#"{"data":"!!!!"}"#).is_err());
    }
}
