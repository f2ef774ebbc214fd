//! Decoded header fields kept as one buffer on the data path and read back on the observer
//! task: as pseudo-header values and regular fields, or as a method, a URI, a status and a
//! header map.
//!
//! HPACK decoding has to happen in order on the data path (every header block changes the
//! decoder's table), but reading the fields does not: each field is appended to [`Fields`]
//! as `name length, value length, name, value`, and [`Fields::pseudo`], [`Fields::regular`]
//! and [`Fields::into_parts`] read them back as slices of the same memory.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use crate::http::headers::{value_string, HTTP2_SETTINGS};

/// Header fields being collected from a header block.
#[derive(Default)]
pub(super) struct FieldsBuilder {
    buf: BytesMut,
}

impl FieldsBuilder {
    /// Appends one field.
    pub(super) fn push(&mut self, name: &[u8], value: &[u8]) {
        self.buf.reserve(8 + name.len() + value.len());
        self.buf.put_u32(name.len() as u32);
        self.buf.put_u32(value.len() as u32);
        self.buf.put_slice(name);
        self.buf.put_slice(value);
    }

    /// The fields collected.
    pub(super) fn finish(self) -> Fields {
        Fields(self.buf.freeze())
    }
}

/// The fields of one header block, as decoded.
#[derive(Clone, Debug, Default)]
pub(super) struct Fields(Bytes);

/// What a header block says, pseudo-header fields apart.
#[derive(Default)]
pub(super) struct Parts {
    pub(super) method: Option<Method>,
    pub(super) scheme: Option<Bytes>,
    pub(super) authority: Option<Bytes>,
    pub(super) path: Option<Bytes>,
    pub(super) status: Option<u16>,
    /// The regular fields, `HTTP2-Settings` dropped as the hyper path drops it.
    pub(super) headers: HeaderMap,
}

impl Parts {
    /// The request's URI as the hyper path records it: the path (with query) for most
    /// requests, the authority for `CONNECT`.
    pub(super) fn uri(&self) -> Uri {
        let source = if self.method == Some(Method::CONNECT) {
            &self.authority
        } else {
            &self.path
        };
        source
            .as_ref()
            .and_then(|bytes| Uri::from_maybe_shared(bytes.clone()).ok())
            .unwrap_or_default()
    }
}

impl Parts {
    /// The recorded path: the `:path` as sent (the `:authority` for `CONNECT`), as
    /// [`uri`](Self::uri) gives it, also when `http::Uri` would not take it (`"` in the query,
    /// `<`, `>`, `` ` ``, which peers may send though HTTP/2 clients built on `http` cannot).
    pub(super) fn event_path(&self) -> String {
        let connect = self.method == Some(Method::CONNECT);
        let source = if connect { &self.authority } else { &self.path };
        match source {
            Some(bytes) => value_string(bytes),
            None if connect => String::new(),
            None => "/".to_string(),
        }
    }
}

impl Fields {
    /// The fields in order, as decoded: `(name, value)`.
    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = &self.0[..];
        std::iter::from_fn(move || {
            if rest.len() < 8 {
                return None;
            }
            let name_len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
            let value_len = u32::from_be_bytes(rest[4..8].try_into().ok()?) as usize;
            let field = rest.get(8..8 + name_len + value_len)?;
            rest = &rest[8 + name_len + value_len..];
            Some(field.split_at(name_len))
        })
    }

    /// The pseudo-header values; `headers` is left empty.
    pub(super) fn pseudo(&self) -> Parts {
        let mut parts = Parts::default();
        for (name, value) in self.iter().filter(|(name, _)| name.starts_with(b":")) {
            match name {
                b":method" => parts.method = Method::from_bytes(value).ok(),
                b":scheme" => parts.scheme = Some(self.0.slice_ref(value)),
                b":authority" => parts.authority = Some(self.0.slice_ref(value)),
                b":path" => parts.path = Some(self.0.slice_ref(value)),
                b":status" => parts.status = parse_status(value),
                _ => {}
            }
        }
        parts
    }

    /// The regular fields in order, as text names: pseudo-header fields, `HTTP2-Settings`
    /// (dropped as the hyper path drops it) and fields that are not valid HTTP (which the peer
    /// rejects anyway) left out.
    pub(super) fn regular(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter().filter_map(|(name, value)| {
            let name = std::str::from_utf8(name).ok()?;
            is_regular(name, value).then_some((name, value))
        })
    }

    /// Splits the fields into pseudo-header values and a header map of [`Fields::regular`],
    /// plus gRPC's true-binary metadata as base64 (see [`true_binary_as_base64`]).
    pub(super) fn into_parts(self) -> Parts {
        let mut parts = self.pseudo();
        for (name, value) in self.iter() {
            let value = match true_binary_as_base64(name, value) {
                Some(text) => HeaderValue::from_str(&text),
                None if std::str::from_utf8(name).is_ok_and(|name| is_regular(name, value)) => {
                    HeaderValue::from_maybe_shared(self.0.slice_ref(value))
                }
                None => continue,
            };
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), value) {
                parts.headers.append(name, value);
            }
        }
        parts
    }
}

/// A `-bin` field's value sent as gRPC's "true binary" (a NUL, then the raw bytes: what
/// gRPC's C core peers send each other once both have announced it in SETTINGS), as the
/// unpadded base64 gRPC sends otherwise. `None` for any other field.
///
/// Such values are not valid HTTP field values, so [`Fields::regular`] leaves them out.
fn true_binary_as_base64(name: &[u8], value: &[u8]) -> Option<String> {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine;
    let raw = value.strip_prefix(b"\0")?;
    name.ends_with(b"-bin").then(|| STANDARD_NO_PAD.encode(raw))
}

/// Whether a field is one of [`Fields::regular`].
fn is_regular(name: &str, value: &[u8]) -> bool {
    is_field_name(name)
        && !name.eq_ignore_ascii_case(HTTP2_SETTINGS.as_str())
        && is_field_value(value)
}

/// Whether `name` is a valid header name (RFC 9110 token), as [`HeaderName`] accepts them.
fn is_field_name(name: &str) -> bool {
    const SYMBOLS: &[u8] = b"!#$%&'*+-.^_`|~";
    !name.is_empty()
        && name.len() < 1 << 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || SYMBOLS.contains(&b))
}

/// Whether `value` is a valid header value, as [`HeaderValue`] accepts them: visible ASCII,
/// spaces, tabs and obs-text, no control characters.
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// A `:status` value as a number.
pub(super) fn parse_status(value: &[u8]) -> Option<u16> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_back_as_pseudo_headers_and_a_map() {
        let mut builder = FieldsBuilder::default();
        builder.push(b":method", b"POST");
        builder.push(b":scheme", b"http");
        builder.push(b":authority", b"api:80");
        builder.push(b":path", b"/a?b=1");
        builder.push(b"accept", b"x");
        builder.push(b"accept", b"y");
        builder.push(b"http2-settings", b"AAA");
        builder.push(b"bad name", b"z");
        let parts = builder.finish().into_parts();
        assert_eq!(parts.method, Some(Method::POST));
        assert_eq!(parts.uri(), "/a?b=1");
        assert_eq!(parts.authority.as_deref(), Some(&b"api:80"[..]));
        assert_eq!(parts.headers.get_all("accept").iter().count(), 2);
        assert_eq!(parts.headers.len(), 2);

        let mut builder = FieldsBuilder::default();
        builder.push(b":method", b"CONNECT");
        builder.push(b":authority", b"db:5432");
        assert_eq!(builder.finish().into_parts().uri(), "db:5432");

        let mut builder = FieldsBuilder::default();
        builder.push(b"x-id-bin", b"\0\x01\xfe\xff");
        builder.push(b"x-id-bin", b"AQ");
        builder.push(b"x-plain", b"\0\x01");
        let parts = builder.finish().into_parts();
        let values: Vec<_> = parts.headers.get_all("x-id-bin").iter().collect();
        assert_eq!(values, ["Af7/", "AQ"]);
        assert_eq!(parts.headers.len(), 2);

        let mut builder = FieldsBuilder::default();
        builder.push(b":status", b"204");
        assert_eq!(builder.finish().into_parts().status, Some(204));
    }

    #[test]
    fn the_recorded_path_is_the_path_as_sent() {
        let path = |method: &[u8], path: Option<&[u8]>| {
            let mut builder = FieldsBuilder::default();
            builder.push(b":method", method);
            builder.push(b":authority", b"db:5432");
            if let Some(path) = path {
                builder.push(b":path", path);
            }
            builder.finish().pseudo().event_path()
        };
        // `http::Uri` takes none of the first three.
        assert_eq!(path(b"GET", Some(br#"/q?f={"a":1}"#)), r#"/q?f={"a":1}"#);
        assert_eq!(path(b"GET", Some(b"/a<b>`c`")), "/a<b>`c`");
        assert_eq!(path(b"GET", Some(b"/caf\xe9")), "/caf\u{fffd}");
        assert_eq!(path(b"GET", Some(b"/a%20b?x=1")), "/a%20b?x=1");
        assert_eq!(path(b"GET", None), "/");
        assert_eq!(path(b"CONNECT", None), "db:5432");
    }
}
