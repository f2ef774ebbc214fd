//! Request and response headers: enough to name a request, match its response and know
//! whether a response will come at all.

use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use super::{decode_error, DecodeError};

/// How many leading payload bytes of a request the proxy keeps to parse its header: the fixed
/// eight bytes, a client id of any sensible length, header tagged fields and the start of a
/// Produce body (its `acks`).
pub const HEADER_PREFIX: usize = 1024;

/// The header of a request frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The API key (`0` Produce, `3` Metadata, ...).
    pub api_key: i16,
    /// The API version.
    pub api_version: i16,
    /// The id the response will carry.
    pub correlation_id: i32,
    /// The client id, when the header could be decoded in full (`None` for unknown API keys,
    /// a null client id or a header longer than the bytes given).
    pub client_id: Option<String>,
    /// Where the request body starts in the payload, when the header was decoded in full.
    pub body_offset: Option<usize>,
}

/// Parses the header at the start of a request payload (the frame without its size prefix).
/// `payload` may be a prefix of the payload (see [`HEADER_PREFIX`]): the fixed fields need
/// eight bytes, the client id and tagged fields are decoded with `kafka-protocol` by the
/// header version the API key and version call for, when they are all there.
pub fn parse_request_head(payload: &[u8]) -> Result<RequestHead, DecodeError> {
    let fixed = payload.get(..8).ok_or_else(|| {
        DecodeError::new(format!(
            "Kafka request of {} bytes is shorter than the 8-byte header (api key, version, correlation id)",
            payload.len()
        ))
    })?;
    let api_key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let api_version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let correlation_id = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let mut head = RequestHead {
        api_key,
        api_version,
        correlation_id,
        client_id: None,
        body_offset: None,
    };
    if let Ok(key) = ApiKey::try_from(api_key) {
        let header_version = key.request_header_version(api_version);
        let mut rest = payload;
        if let Ok(decoded) = RequestHeader::decode(&mut rest, header_version) {
            head.client_id = decoded.client_id.map(|id| id.as_str().to_owned());
            head.body_offset = Some(payload.len() - rest.len());
        }
    }
    Ok(head)
}

/// The correlation id of a response payload (its first four bytes), if it has one.
pub fn response_correlation_id(payload: &[u8]) -> Option<i32> {
    let id = payload.get(..4)?;
    Some(i32::from_be_bytes([id[0], id[1], id[2], id[3]]))
}

/// Whether the broker answers this request. Only a Produce request with `acks=0` gets no
/// response; the proxy must not wait for one (it would never come, and waiting would leak).
/// `payload` is the request payload or a prefix of it holding the header and the start of
/// the body.
pub fn expects_response(head: &RequestHead, payload: &[u8]) -> bool {
    if head.api_key != ApiKey::Produce as i16 {
        return true;
    }
    !matches!(produce_acks(head, payload), Ok(0))
}

/// The `acks` of a Produce request: `transactional_id` (v3+; compact from v9) then `acks`.
pub fn produce_acks(head: &RequestHead, payload: &[u8]) -> Result<i16, DecodeError> {
    let offset = head.body_offset.ok_or_else(|| {
        DecodeError::new("Produce request header could not be decoded, so its acks are unknown")
    })?;
    let mut body = payload
        .get(offset..)
        .ok_or_else(|| DecodeError::new("Produce request body offset past the bytes given"))?;
    let version = head.api_version;
    if version >= 9 {
        // Compact nullable string: unsigned varint of length + 1 (0 = null).
        let len_plus_one = read_uvarint(&mut body)
            .map_err(|e| decode_error("Produce transactional_id", version, e))?;
        let len = usize::try_from(len_plus_one.saturating_sub(1)).unwrap_or(usize::MAX);
        body = body
            .get(len..)
            .ok_or_else(|| decode_error("Produce transactional_id", version, "truncated"))?;
    } else if version >= 3 {
        let len = read_i16(&mut body)
            .map_err(|e| decode_error("Produce transactional_id", version, e))?;
        let len = usize::try_from(len).unwrap_or(0);
        body = body
            .get(len..)
            .ok_or_else(|| decode_error("Produce transactional_id", version, "truncated"))?;
    }
    read_i16(&mut body).map_err(|e| decode_error("Produce acks", version, e))
}

fn read_i16(buf: &mut &[u8]) -> Result<i16, &'static str> {
    let bytes = buf.get(..2).ok_or("truncated")?;
    let value = i16::from_be_bytes([bytes[0], bytes[1]]);
    *buf = &buf[2..];
    Ok(value)
}

fn read_uvarint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err("bad or truncated varint")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ProduceRequest, TransactionalId};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn request(key: ApiKey, version: i16, client_id: Option<&str>, body: &[u8]) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_owned())));
        let mut out = BytesMut::new();
        header
            .encode(&mut out, key.request_header_version(version))
            .unwrap();
        out.extend_from_slice(body);
        out.to_vec()
    }

    #[test]
    fn classic_and_flexible_headers_give_client_id_and_body_offset() {
        for (key, version) in [
            (ApiKey::Metadata, 4),
            (ApiKey::Metadata, 12),
            (ApiKey::ApiVersions, 3),
        ] {
            let payload = request(key, version, Some("rdkafka"), b"BODY");
            let head = parse_request_head(&payload).unwrap();
            assert_eq!(head.api_key, key as i16);
            assert_eq!(head.api_version, version);
            assert_eq!(head.correlation_id, 42);
            assert_eq!(head.client_id.as_deref(), Some("rdkafka"));
            assert_eq!(&payload[head.body_offset.unwrap()..], b"BODY");
        }
    }

    #[test]
    fn unknown_keys_and_cut_headers_still_give_the_fixed_fields() {
        let mut payload = vec![0x7f, 0x00, 0x00, 0x01, 0, 0, 0, 9];
        payload.extend_from_slice(b"anything");
        let head = parse_request_head(&payload).unwrap();
        assert_eq!(
            (head.api_key, head.api_version, head.correlation_id),
            (0x7f00, 1, 9)
        );
        assert_eq!(head.client_id, None);
        let cut = request(ApiKey::Fetch, 11, Some("a-long-client-id"), b"");
        let head = parse_request_head(&cut[..12]).unwrap();
        assert_eq!((head.api_key, head.correlation_id), (1, 42));
        assert_eq!(head.body_offset, None);
        assert!(parse_request_head(&cut[..7]).is_err());
    }

    fn produce(version: i16, acks: i16, txn: Option<&str>) -> Vec<u8> {
        let body = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.into()))));
        let mut out = BytesMut::new();
        body.encode(&mut out, version).unwrap();
        request(ApiKey::Produce, version, Some("p"), &out)
    }

    #[test]
    fn acks_zero_produce_expects_no_response_in_every_version() {
        for version in 3..=11 {
            for (acks, txn) in [(0, None), (1, Some("txn-1")), (-1, None)] {
                let payload = produce(version, acks, txn);
                let head = parse_request_head(&payload).unwrap();
                assert_eq!(produce_acks(&head, &payload), Ok(acks), "v{version}");
                assert_eq!(expects_response(&head, &payload), acks != 0);
            }
        }
        let metadata = request(ApiKey::Metadata, 9, None, &[]);
        assert!(expects_response(
            &parse_request_head(&metadata).unwrap(),
            &metadata
        ));
    }

    #[test]
    fn response_correlation_is_the_first_four_bytes() {
        assert_eq!(response_correlation_id(&[0, 0, 1, 2, 9]), Some(258));
        assert_eq!(response_correlation_id(&[0, 0, 1]), None);
    }
}
