//! Schema-less protobuf decoding: a message's wire format rendered as JSON, for services
//! whose descriptors are unknown (no server reflection).
//!
//! Without a schema the wire format says only field numbers and wire types, so the rendering
//! says exactly that, with a best guess for length-delimited fields:
//!
//! | wire type | JSON |
//! |---|---|
//! | varint | a number (`150`) |
//! | 64-bit | `{"fixed64": n, "double": x}` (`double` left out when not finite) |
//! | 32-bit | `{"fixed32": n, "float": x}` (`float` left out when not finite) |
//! | length-delimited | printable text → a string; else a nested message when the bytes parse as one → an object; else UTF-8 text → a string; else `{"bytes": "<base64>"}`, plus `"varints": [...]` when the bytes (at most 1 KiB of them) also read as packed varints |
//!
//! Keys are field numbers (`"1"`), in order of first appearance; a field seen more than
//! once becomes an array of its values. Nesting deeper than [`MAX_DEPTH`] is rendered as
//! bytes. Every input either decodes or gets a [`WireError`]; nothing panics.

use base64::Engine;
use serde_json::{Map, Number, Value};

/// How deep nested messages are decoded; deeper ones are shown as bytes.
pub const MAX_DEPTH: usize = 32;

/// Why bytes are not a protobuf message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a protobuf message: {reason} at byte {offset}")]
pub struct WireError {
    /// Where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Decodes `bytes` as a protobuf message without a schema (see the module documentation for
/// the JSON shape).
pub fn decode(bytes: &[u8]) -> Result<Value, WireError> {
    decode_message(bytes, 0).map(Value::Object)
}

/// A field's value before rendering.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, reason: &'static str) -> WireError {
        WireError {
            offset: self.pos,
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err(self.error("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(self.error("varint longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.error("field runs past the end of the message"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next field: its number and value.
    fn field(&mut self) -> Result<(u64, Field<'a>), WireError> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(self.error("invalid field number"));
        }
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Field::Fixed64(u64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .map_err(|_| self.error("field runs past the end of the message"))?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            3 | 4 => return Err(self.error("group wire type (unsupported)")),
            _ => return Err(self.error("invalid wire type")),
        };
        Ok((number, value))
    }
}

fn decode_message(bytes: &[u8], depth: usize) -> Result<Map<String, Value>, WireError> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut out = Map::new();
    while reader.pos < bytes.len() {
        let (number, field) = reader.field()?;
        let value = render(field, depth);
        match out.entry(number.to_string()) {
            serde_json::map::Entry::Vacant(slot) => {
                slot.insert(value);
            }
            serde_json::map::Entry::Occupied(mut slot) => match slot.get_mut() {
                Value::Array(values) => values.push(value),
                first => {
                    let first = first.take();
                    *slot.get_mut() = Value::Array(vec![first, value]);
                }
            },
        }
    }
    Ok(out)
}

fn render(field: Field<'_>, depth: usize) -> Value {
    match field {
        Field::Varint(n) => Value::from(n),
        Field::Fixed64(n) => {
            let mut m = Map::new();
            m.insert("fixed64".into(), Value::from(n));
            if let Some(x) = Number::from_f64(f64::from_bits(n)) {
                m.insert("double".into(), Value::Number(x));
            }
            Value::Object(m)
        }
        Field::Fixed32(n) => {
            let mut m = Map::new();
            m.insert("fixed32".into(), Value::from(n));
            if let Some(x) = Number::from_f64(f64::from(f32::from_bits(n))) {
                m.insert("float".into(), Value::Number(x));
            }
            Value::Object(m)
        }
        Field::Bytes(bytes) => render_bytes(bytes, depth),
    }
}

fn render_bytes(bytes: &[u8], depth: usize) -> Value {
    let text = std::str::from_utf8(bytes).ok();
    if let Some(text) = text {
        if !text.chars().any(char::is_control) {
            return Value::String(text.to_string());
        }
    }
    if depth + 1 < MAX_DEPTH {
        if let Ok(message) = decode_message(bytes, depth + 1) {
            return Value::Object(message);
        }
    }
    if let Some(text) = text {
        if !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Value::String(text.to_string());
        }
    }
    let mut m = Map::new();
    m.insert(
        "bytes".into(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
    );
    if let Some(varints) = packed_varints(bytes) {
        m.insert("varints".into(), Value::Array(varints));
    }
    Value::Object(m)
}

/// The longest blob also read as packed varints. Random bytes read as varints about half the
/// time, each a number of up to 20 digits for a few bytes: a large binary field would make an
/// event several times its size (past the 1 MiB line that upstream's CLI reads).
const MAX_PACKED_VARINT_BYTES: usize = 1024;

/// The bytes read as packed varints (a packed repeated integer field), if they do and are at
/// most [`MAX_PACKED_VARINT_BYTES`] long.
fn packed_varints(bytes: &[u8]) -> Option<Vec<Value>> {
    if bytes.len() > MAX_PACKED_VARINT_BYTES {
        return None;
    }
    let mut reader = Reader { bytes, pos: 0 };
    let mut out = Vec::new();
    while reader.pos < bytes.len() {
        out.push(Value::from(reader.varint().ok()?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn len_field(number: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    #[test]
    fn scalars_strings_and_nested_messages() {
        let mut inner = Vec::new();
        len_field(1, b"abc", &mut inner);
        varint(2 << 3, &mut inner);
        varint(300, &mut inner);

        let mut m = Vec::new();
        len_field(1, b"hello world", &mut m);
        varint(2 << 3, &mut m);
        varint(150, &mut m);
        len_field(3, &inner, &mut m);
        varint(4 << 3 | 1, &mut m);
        m.extend_from_slice(&1.5f64.to_le_bytes());
        varint(5 << 3 | 5, &mut m);
        m.extend_from_slice(&2.5f32.to_bits().to_le_bytes());
        // Repeated field 6, then packed varints in field 7.
        varint(6 << 3, &mut m);
        varint(1, &mut m);
        varint(6 << 3, &mut m);
        varint(2, &mut m);
        len_field(7, &[0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05], &mut m);
        len_field(8, b"", &mut m);

        assert_eq!(
            decode(&m).unwrap(),
            json!({
                "1": "hello world",
                "2": 150,
                "3": {"1": "abc", "2": 300},
                "4": {"fixed64": 1.5f64.to_bits(), "double": 1.5},
                "5": {"fixed32": 2.5f32.to_bits(), "float": 2.5},
                "6": [1, 2],
                "7": {"bytes": "A44CnqcF", "varints": [3, 270, 86942]},
                "8": ""
            })
        );
    }

    #[test]
    fn a_nested_message_that_starts_with_a_newline_is_still_a_message() {
        // Field 1 (tag 0x0a is '\n') holding a 40-character string: printable bytes after
        // the tag, but a message, not text.
        let mut inner = Vec::new();
        len_field(1, "x".repeat(40).as_bytes(), &mut inner);
        let mut m = Vec::new();
        len_field(2, &inner, &mut m);
        assert_eq!(decode(&m).unwrap(), json!({"2": {"1": "x".repeat(40)}}));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode(&[]).unwrap(), json!({}));
        for bad in [
            &[0x08][..],         // varint field without its value
            &[0x0a, 0x05, b'a'], // length past the end
            &[0x0b],             // group start
            &[0x0f],             // wire type 7
            &[0x00, 0x01],       // field 0
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ], // 70-bit varint
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // huge length
        ] {
            let err = decode(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("not a protobuf message"),
                "{err}"
            );
        }
    }

    #[test]
    fn deep_nesting_stops_at_the_limit() {
        let mut m = Vec::new();
        varint(1 << 3, &mut m);
        varint(1, &mut m);
        for _ in 0..200 {
            let mut outer = Vec::new();
            len_field(1, &m, &mut outer);
            m = outer;
        }
        let value = decode(&m).unwrap();
        let mut depth = 0;
        let mut cur = &value;
        while let Some(next) = cur.get("1") {
            cur = next;
            depth += 1;
        }
        assert!(depth <= MAX_DEPTH + 1, "{depth}");
        assert!(
            cur.is_string() || cur.get("bytes").is_some() || cur.is_number(),
            "{cur}"
        );
    }

    #[test]
    fn only_small_blobs_are_also_read_as_packed_varints() {
        // Bytes that read as varints (all one-byte values) but are no text or message.
        let small = vec![0x01u8; 16];
        let mut big_message = Vec::new();
        len_field(
            1,
            &vec![0x01u8; MAX_PACKED_VARINT_BYTES + 1],
            &mut big_message,
        );
        let mut small_message = Vec::new();
        len_field(1, &small, &mut small_message);
        let small_decoded =
            serde_json::to_value(decode_message(&small_message, 0).unwrap()).unwrap();
        assert_eq!(
            small_decoded["1"]["varints"].as_array().map(Vec::len),
            Some(16)
        );
        let big = serde_json::to_value(decode_message(&big_message, 0).unwrap()).unwrap();
        assert!(big["1"]["bytes"].is_string(), "{big}");
        assert!(big["1"].get("varints").is_none());
    }
}
