//! Decoded header fields kept as one buffer on the data path and turned into a method, a URI,
//! a status and a header map on the observer task.
//!
//! HPACK decoding has to happen in order on the data path (every header block changes the
//! decoder's table), but building header maps does not: each field is appended to [`Fields`]
//! as `name length, value length, name, value`, and [`Fields::into_parts`] reads them back
//! as slices of the same memory.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use crate::http::headers::strip_http2_hop_by_hop;

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

impl Fields {
    /// Splits the fields into pseudo-header values and a header map. Fields that are not
    /// valid HTTP (which the peer rejects anyway) are left out.
    pub(super) fn into_parts(self) -> Parts {
        let mut parts = Parts::default();
        let mut rest = self.0;
        while rest.len() >= 8 {
            let name_len = rest.get_u32() as usize;
            let value_len = rest.get_u32() as usize;
            if rest.len() < name_len + value_len {
                break;
            }
            let name = rest.split_to(name_len);
            let value = rest.split_to(value_len);
            match &name[..] {
                b":method" => parts.method = Method::from_bytes(&value).ok(),
                b":scheme" => parts.scheme = Some(value),
                b":authority" => parts.authority = Some(value),
                b":path" => parts.path = Some(value),
                b":status" => parts.status = parse_status(&value),
                _ => {
                    if let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(&name),
                        HeaderValue::from_maybe_shared(value),
                    ) {
                        parts.headers.append(name, value);
                    }
                }
            }
        }
        strip_http2_hop_by_hop(&mut parts.headers);
        parts
    }
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
        builder.push(b":status", b"204");
        assert_eq!(builder.finish().into_parts().status, Some(204));
    }
}
