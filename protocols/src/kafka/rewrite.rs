//! Rewriting the broker addresses in responses, so clients connect through the proxy.
//!
//! Five responses can name brokers: Metadata (the broker list), FindCoordinator (the group or
//! transaction coordinator, one or, from v4, several), DescribeCluster, and, since KIP-951,
//! Produce (v10+) and Fetch (v16+), whose `node_endpoints` tagged field tells the client where
//! a partition's new leader is. Each is decoded with `kafka-protocol` by its real schema version
//! (upstream rig hand-parsed Metadata and got v1–v2 wrong), every broker's host and port is
//! passed through a mapping, and the response is re-encoded by the same version, only when an
//! address was replaced. Anything that does not decode cleanly, including trailing bytes the
//! schema does not account for, is an error: the caller forwards the original.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{decode_error, DecodeError};

/// A broker named in a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broker<'a> {
    /// The broker's node id (for FindCoordinator before v4, the coordinator's).
    pub node_id: i32,
    /// The advertised host.
    pub host: &'a str,
    /// The advertised port.
    pub port: i32,
}

/// Where a client should connect instead of a broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    /// The host to advertise.
    pub host: String,
    /// The port to advertise.
    pub port: i32,
}

/// The first Produce response version that may carry KIP-951 `node_endpoints`.
const PRODUCE_NODE_ENDPOINTS: i16 = 10;
/// The first Fetch response version that may carry KIP-951 `node_endpoints`.
const FETCH_NODE_ENDPOINTS: i16 = 16;

/// Whether responses to this API key and version can name brokers (and so are rewritten).
pub fn names_brokers(api_key: i16, api_version: i16) -> bool {
    match ApiKey::try_from(api_key) {
        Ok(ApiKey::Metadata | ApiKey::FindCoordinator | ApiKey::DescribeCluster) => true,
        Ok(ApiKey::Produce) => api_version >= PRODUCE_NODE_ENDPOINTS,
        Ok(ApiKey::Fetch) => api_version >= FETCH_NODE_ENDPOINTS,
        _ => false,
    }
}

/// Rewrites a response `payload` (the frame without its size prefix) to API `api_key` version
/// `api_version`, replacing every broker for which `map` returns a [`Replacement`]. Entries
/// without an address (an error response's empty host or negative port) are left alone.
///
/// Returns the new frame, size prefix included, or `None` when nothing was replaced (the
/// caller forwards the original bytes). Record batches in Fetch responses are sliced out of
/// `payload`, never copied, unless the response is re-encoded.
pub fn rewrite_response(
    api_key: i16,
    api_version: i16,
    payload: Bytes,
    map: &mut dyn FnMut(Broker<'_>) -> Option<Replacement>,
) -> Result<Option<Vec<u8>>, DecodeError> {
    let key = ApiKey::try_from(api_key)
        .map_err(|()| DecodeError::new(format!("unknown API key {api_key}")))?;
    let header_version = key.response_header_version(api_version);
    let size = payload.len();
    let mut buf = payload;
    let header = ResponseHeader::decode(&mut buf, header_version)
        .map_err(|e| decode_error("response header", header_version, e))?;
    let response = Response {
        header,
        header_version,
        version: api_version,
        size,
    };
    match key {
        ApiKey::Metadata => {
            response.rewrite(&mut buf, "Metadata", |body: &mut MetadataResponse| {
                replace_all(
                    body.brokers
                        .iter_mut()
                        .map(|b| (b.node_id.0, &mut b.host, &mut b.port)),
                    map,
                )
            })
        }
        ApiKey::FindCoordinator => response.rewrite(
            &mut buf,
            "FindCoordinator",
            |body: &mut FindCoordinatorResponse| {
                // Before v4 the coordinator is the body's own fields; from v4, a list.
                let single =
                    (api_version < 4).then_some((body.node_id.0, &mut body.host, &mut body.port));
                let listed = body
                    .coordinators
                    .iter_mut()
                    .map(|c| (c.node_id.0, &mut c.host, &mut c.port));
                replace_all(single.into_iter().chain(listed), map)
            },
        ),
        ApiKey::DescribeCluster => response.rewrite(
            &mut buf,
            "DescribeCluster",
            |body: &mut DescribeClusterResponse| {
                replace_all(
                    body.brokers
                        .iter_mut()
                        .map(|b| (b.broker_id.0, &mut b.host, &mut b.port)),
                    map,
                )
            },
        ),
        ApiKey::Produce if api_version >= PRODUCE_NODE_ENDPOINTS => {
            response.rewrite(&mut buf, "Produce", |body: &mut ProduceResponse| {
                replace_all(
                    body.node_endpoints
                        .iter_mut()
                        .map(|e| (e.node_id.0, &mut e.host, &mut e.port)),
                    map,
                )
            })
        }
        ApiKey::Fetch if api_version >= FETCH_NODE_ENDPOINTS => {
            response.rewrite(&mut buf, "Fetch", |body: &mut FetchResponse| {
                replace_all(
                    body.node_endpoints
                        .iter_mut()
                        .map(|e| (e.node_id.0, &mut e.host, &mut e.port)),
                    map,
                )
            })
        }
        _ => Err(DecodeError::new(format!(
            "{} v{api_version} responses name no brokers",
            super::api_name(api_key)
        ))),
    }
}

/// A response whose header is decoded and whose body is next in the buffer.
struct Response {
    header: ResponseHeader,
    header_version: i16,
    version: i16,
    /// The payload size, for sizing the rewritten frame.
    size: usize,
}

impl Response {
    /// Decodes the body as a `T` (`what` names it in errors), lets `edit` replace addresses,
    /// and re-encodes the whole frame if it did.
    fn rewrite<T: Decodable + Encodable + PartialEq>(
        self,
        buf: &mut Bytes,
        what: &str,
        edit: impl FnOnce(&mut T) -> bool,
    ) -> Result<Option<Vec<u8>>, DecodeError> {
        let what = format!("{what} response");
        let mut body = decode::<T>(buf, &what, self.version)?;
        if !edit(&mut body) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(4 + self.size + 64);
        out.extend_from_slice(&[0; 4]);
        self.header
            .encode(&mut out, self.header_version)
            .map_err(|e| decode_error("response header", self.header_version, e))?;
        let body_at = out.len();
        body.encode(&mut out, self.version)
            .map_err(|e| DecodeError::new(format!("encoding {what} v{}: {e}", self.version)))?;
        // kafka-protocol decodes some values it cannot encode back faithfully (found by
        // fuzzing: a tagged field whose tag overflows i32 does not decode again; unknown
        // tagged fields can come back as other fields). Forward the original rather than a
        // frame the client could not read or that says something else. This also makes the
        // rewrite a fixed point: rewriting the rewritten frame gives it back unchanged. Only
        // responses that name brokers get here, rarely.
        let again = decode::<T>(
            &mut Bytes::copy_from_slice(&out[body_at..]),
            &format!("re-encoded {what}"),
            self.version,
        )?;
        if again != body {
            return Err(DecodeError::new(format!(
                "re-encoded {what} v{} does not decode to the same message",
                self.version
            )));
        }
        let len = u32::try_from(out.len() - 4)
            .map_err(|_| DecodeError::new("rewritten response does not fit a Kafka frame"))?;
        out[..4].copy_from_slice(&len.to_be_bytes());
        Ok(Some(out))
    }
}

/// Decodes a whole message body: trailing bytes mean the schema version was not the one the
/// bytes were written with, and re-encoding would lose them.
fn decode<T: Decodable>(buf: &mut Bytes, what: &str, version: i16) -> Result<T, DecodeError> {
    let body = T::decode(buf, version).map_err(|e| decode_error(what, version, e))?;
    if !buf.is_empty() {
        return Err(decode_error(
            what,
            version,
            format!("{} bytes left over after the message", buf.len()),
        ));
    }
    Ok(body)
}

/// Passes every `(node id, host, port)` entry through `map`; whether any was replaced.
fn replace_all<'e>(
    entries: impl Iterator<Item = (i32, &'e mut StrBytes, &'e mut i32)>,
    map: &mut dyn FnMut(Broker<'_>) -> Option<Replacement>,
) -> bool {
    let mut changed = false;
    for (node_id, host, port) in entries {
        changed |= replace(node_id, host, port, map);
    }
    changed
}

fn replace(
    node_id: i32,
    host: &mut StrBytes,
    port: &mut i32,
    map: &mut dyn FnMut(Broker<'_>) -> Option<Replacement>,
) -> bool {
    if host.is_empty() || *port < 0 {
        return false;
    }
    let broker = Broker {
        node_id,
        host: host.as_str(),
        port: *port,
    };
    match map(broker) {
        Some(replacement) => {
            *host = StrBytes::from_string(replacement.host);
            *port = replacement.port;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::Message;

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_owned())
    }

    fn payload<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(7)
            .encode(&mut out, key.response_header_version(version))
            .unwrap();
        body.encode(&mut out, version).unwrap();
        out.freeze()
    }

    /// Maps broker port `p` to `20000 + p` on 127.0.0.1, recording what it saw.
    fn mapper(
        seen: &mut Vec<(i32, String, i32)>,
    ) -> impl FnMut(Broker<'_>) -> Option<Replacement> + '_ {
        |b: Broker<'_>| {
            seen.push((b.node_id, b.host.to_owned(), b.port));
            Some(Replacement {
                host: "127.0.0.1".into(),
                port: 20000 + b.port,
            })
        }
    }

    fn unframe(frame: &[u8]) -> Bytes {
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        Bytes::copy_from_slice(&frame[4..])
    }

    #[test]
    fn metadata_brokers_are_replaced_in_every_version_and_the_rest_survives() {
        for version in MetadataResponse::VERSIONS.min..=MetadataResponse::VERSIONS.max {
            let body = MetadataResponse::default()
                .with_brokers(vec![
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(s("kafka-1.internal"))
                        .with_port(9092)
                        .with_rack(if version >= 1 {
                            Some(s("rack-a"))
                        } else {
                            None
                        }),
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(2))
                        .with_host(s("kafka-2.internal"))
                        .with_port(9093),
                ])
                .with_topics(vec![
                    MetadataResponseTopic::default().with_name(Some(TopicName(s("orders"))))
                ]);
            let original = payload(ApiKey::Metadata, version, &body);
            let mut seen = Vec::new();
            let frame = rewrite_response(3, version, original, &mut mapper(&mut seen))
                .unwrap()
                .unwrap();
            assert_eq!(
                seen,
                [
                    (1, "kafka-1.internal".into(), 9092),
                    (2, "kafka-2.internal".into(), 9093)
                ],
                "v{version}"
            );
            let mut rewritten = unframe(&frame);
            let header_version = ApiKey::Metadata.response_header_version(version);
            let header = ResponseHeader::decode(&mut rewritten, header_version).unwrap();
            assert_eq!(header.correlation_id, 7);
            let decoded = MetadataResponse::decode(&mut rewritten, version).unwrap();
            assert_eq!(decoded.brokers[0].host.as_str(), "127.0.0.1");
            assert_eq!(decoded.brokers[0].port, 29092);
            assert_eq!(decoded.brokers[1].port, 29093);
            assert_eq!(decoded.brokers[0].rack, body.brokers[0].rack);
            assert_eq!(decoded.topics, body.topics, "v{version}");
        }
    }

    #[test]
    fn metadata_v1_without_throttle_field_is_parsed_by_its_real_schema() {
        // Upstream rig read a throttle_time_ms that v1 does not have and misparsed this.
        let body =
            MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(5))
                .with_host(s("b5"))
                .with_port(1234)]);
        let original = payload(ApiKey::Metadata, 1, &body);
        let mut seen = Vec::new();
        rewrite_response(3, 1, original, &mut mapper(&mut seen))
            .unwrap()
            .unwrap();
        assert_eq!(seen, [(5, "b5".into(), 1234)]);
    }

    #[test]
    fn find_coordinator_single_and_batched_forms_are_replaced() {
        for version in FindCoordinatorResponse::VERSIONS.min..=FindCoordinatorResponse::VERSIONS.max
        {
            let body = if version < 4 {
                FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(3))
                    .with_host(s("coord"))
                    .with_port(9094)
            } else {
                FindCoordinatorResponse::default().with_coordinators(vec![
                    Coordinator::default()
                        .with_key(s("group-a"))
                        .with_node_id(BrokerId(3))
                        .with_host(s("coord"))
                        .with_port(9094),
                    // A failed lookup has no address and is left alone.
                    Coordinator::default()
                        .with_key(s("group-b"))
                        .with_node_id(BrokerId(-1))
                        .with_host(s(""))
                        .with_port(-1)
                        .with_error_code(15),
                ])
            };
            let original = payload(ApiKey::FindCoordinator, version, &body);
            let mut seen = Vec::new();
            let frame = rewrite_response(10, version, original, &mut mapper(&mut seen))
                .unwrap()
                .unwrap();
            assert_eq!(seen, [(3, "coord".into(), 9094)], "v{version}");
            let mut rewritten = unframe(&frame);
            ResponseHeader::decode(
                &mut rewritten,
                ApiKey::FindCoordinator.response_header_version(version),
            )
            .unwrap();
            let decoded = FindCoordinatorResponse::decode(&mut rewritten, version).unwrap();
            if version < 4 {
                assert_eq!((decoded.host.as_str(), decoded.port), ("127.0.0.1", 29094));
            } else {
                assert_eq!(decoded.coordinators[0].port, 29094);
                assert_eq!(decoded.coordinators[1], body.coordinators[1]);
            }
        }
    }

    #[test]
    fn describe_cluster_brokers_are_replaced() {
        for version in DescribeClusterResponse::VERSIONS.min..=DescribeClusterResponse::VERSIONS.max
        {
            let body = DescribeClusterResponse::default()
                .with_cluster_id(s("cluster"))
                .with_brokers(vec![DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(1))
                    .with_host(s("b1"))
                    .with_port(9092)]);
            let original = payload(ApiKey::DescribeCluster, version, &body);
            let mut seen = Vec::new();
            rewrite_response(60, version, original, &mut mapper(&mut seen))
                .unwrap()
                .unwrap();
            assert_eq!(seen, [(1, "b1".into(), 9092)]);
        }
    }

    #[test]
    fn nothing_mapped_means_no_rewrite_and_garbage_is_an_error() {
        let body = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_host(s("b"))
                .with_port(1)]);
        let original = payload(ApiKey::Metadata, 12, &body);
        assert_eq!(
            rewrite_response(3, 12, original.clone(), &mut |_| None),
            Ok(None)
        );
        let trailing = Bytes::from([original.as_ref(), &[0]].concat());
        let err = rewrite_response(3, 12, trailing, &mut |_| None).unwrap_err();
        assert!(err.to_string().contains("left over"), "{err}");
        assert!(rewrite_response(3, 12, original.slice(..9), &mut |_| None).is_err());
        assert!(rewrite_response(3, 99, original.clone(), &mut |_| None).is_err());
        assert!(rewrite_response(0, 9, original, &mut |_| None).is_err());
    }

    #[test]
    fn hostile_array_counts_are_refused_before_anything_is_allocated() {
        // Metadata v0: correlation id, then a broker count of i32::MAX and nothing else.
        let classic = [0, 0, 0, 7, 0x7f, 0xff, 0xff, 0xff];
        let classic = Bytes::copy_from_slice(&classic);
        let err = rewrite_response(3, 0, classic, &mut |_| None).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        // Metadata v12: correlation id, no header tags, throttle, compact count u32::MAX - 1.
        let compact = [0, 0, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        let compact = Bytes::copy_from_slice(&compact);
        assert!(rewrite_response(3, 12, compact, &mut |_| None).is_err());
    }

    #[test]
    fn produce_node_endpoints_are_replaced_from_v10() {
        use kafka_protocol::messages::produce_response::{
            NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
        };
        assert!(!names_brokers(0, 9));
        for version in 10..=ProduceResponse::VERSIONS.max {
            assert!(names_brokers(0, version));
            let topics = vec![TopicProduceResponse::default()
                .with_name(TopicName(s("orders")))
                .with_partition_responses(vec![PartitionProduceResponse::default()
                    .with_index(0)
                    .with_error_code(6)])];
            // A leader change with no endpoints to announce: nothing to rewrite.
            let plain = ProduceResponse::default().with_responses(topics.clone());
            let original = payload(ApiKey::Produce, version, &plain);
            assert_eq!(
                rewrite_response(0, version, original, &mut mapper(&mut Vec::new())),
                Ok(None)
            );

            let body = plain.with_node_endpoints(vec![NodeEndpoint::default()
                .with_node_id(BrokerId(2))
                .with_host(s("kafka-2.internal"))
                .with_port(9093)
                .with_rack(Some(s("rack-b")))]);
            let original = payload(ApiKey::Produce, version, &body);
            let mut seen = Vec::new();
            let frame = rewrite_response(0, version, original, &mut mapper(&mut seen))
                .unwrap()
                .unwrap();
            assert_eq!(seen, [(2, "kafka-2.internal".into(), 9093)], "v{version}");
            let mut rewritten = unframe(&frame);
            let header_version = ApiKey::Produce.response_header_version(version);
            let header = ResponseHeader::decode(&mut rewritten, header_version).unwrap();
            assert_eq!(header.correlation_id, 7);
            let decoded = ProduceResponse::decode(&mut rewritten, version).unwrap();
            let endpoint = &decoded.node_endpoints[0];
            assert_eq!(
                (endpoint.host.as_str(), endpoint.port),
                ("127.0.0.1", 29093)
            );
            assert_eq!(endpoint.node_id, BrokerId(2));
            assert_eq!(endpoint.rack, Some(s("rack-b")));
            // (v13 names topics by id: the name is not encoded.)
            assert_eq!(
                decoded.responses[0].partition_responses, topics[0].partition_responses,
                "v{version}"
            );
        }
    }

    #[test]
    fn fetch_node_endpoints_are_replaced_from_v16_and_records_survive() {
        use kafka_protocol::messages::fetch_response::{
            FetchableTopicResponse, NodeEndpoint, PartitionData,
        };
        assert!(!names_brokers(1, 15));
        let records = Bytes::from_static(b"opaque record batch bytes");
        for version in 16..=FetchResponse::VERSIONS.max {
            assert!(names_brokers(1, version));
            let body = FetchResponse::default()
                .with_responses(vec![FetchableTopicResponse::default().with_partitions(
                    vec![
                        PartitionData::default()
                            .with_partition_index(0)
                            .with_records(Some(records.clone())),
                        PartitionData::default()
                            .with_partition_index(1)
                            .with_error_code(6),
                    ],
                )])
                .with_node_endpoints(vec![
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(1))
                        .with_host(s("kafka-1.internal"))
                        .with_port(9092),
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(3))
                        .with_host(s("kafka-3.internal"))
                        .with_port(9094),
                ]);
            let original = payload(ApiKey::Fetch, version, &body);
            let mut seen = Vec::new();
            let frame = rewrite_response(1, version, original, &mut mapper(&mut seen))
                .unwrap()
                .unwrap();
            assert_eq!(
                seen,
                [
                    (1, "kafka-1.internal".into(), 9092),
                    (3, "kafka-3.internal".into(), 9094)
                ],
                "v{version}"
            );
            let mut rewritten = unframe(&frame);
            ResponseHeader::decode(
                &mut rewritten,
                ApiKey::Fetch.response_header_version(version),
            )
            .unwrap();
            let decoded = FetchResponse::decode(&mut rewritten, version).unwrap();
            let ports: Vec<_> = decoded.node_endpoints.iter().map(|e| e.port).collect();
            assert_eq!(ports, [29092, 29094]);
            assert_eq!(decoded.node_endpoints[0].host.as_str(), "127.0.0.1");
            assert_eq!(decoded.responses, body.responses, "v{version}");
        }
        // Before KIP-951 a Fetch response names no brokers and is never decoded.
        let old = payload(ApiKey::Fetch, 15, &FetchResponse::default());
        assert!(rewrite_response(1, 15, old, &mut |_| None).is_err());
    }

    /// The mapping the `kafka_rewrite` fuzz target applies.
    fn fuzz_mapping(b: Broker<'_>) -> Option<Replacement> {
        Some(Replacement {
            host: "127.0.0.1".into(),
            port: 40000 + b.node_id.rem_euclid(1000),
        })
    }

    /// Found by the `kafka_rewrite` fuzz target: a FindCoordinator v6 response with a tagged
    /// field whose tag overflows i32 decodes, but does not survive re-encoding.
    #[test]
    fn a_response_that_would_not_survive_re_encoding_is_left_alone() {
        let input = include_bytes!(
            "../../../fuzz/artifacts-found/kafka_rewrite/findcoordinator-v6-rewrite-does-not-decode"
        );
        let payload = Bytes::copy_from_slice(&input[3..]);
        let err = rewrite_response(10, 6, payload, &mut fuzz_mapping).unwrap_err();
        assert!(err.to_string().contains("re-encoded"), "{err}");
    }

    /// Found by the `kafka_rewrite` fuzz target: a FindCoordinator v6 response whose unknown
    /// tagged fields do not survive re-encoding as they were. Forwarding it unchanged keeps
    /// the rewrite a fixed point.
    #[test]
    fn a_response_that_changes_when_re_encoded_is_left_alone() {
        let input =
            include_bytes!("../../../fuzz/artifacts-found/kafka_rewrite/rewrite-not-a-fixed-point");
        let payload = Bytes::copy_from_slice(&input[3..]);
        let err = rewrite_response(10, 6, payload, &mut fuzz_mapping).unwrap_err();
        assert!(err.to_string().contains("same message"), "{err}");
    }
}
