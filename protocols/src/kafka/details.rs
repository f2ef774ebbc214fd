//! Topics, partitions and error codes of the exchanges that carry data: Produce and Fetch.
//!
//! These are additive details for `kafka.request.completed`. They are decoded off the data
//! path from bytes the proxy kept of each frame, so only whole messages decode: a Produce
//! request full of records or a large Fetch response is skipped, while the small side of each
//! exchange (the Produce response, the Fetch request) always fits.
//!
//! Fetch from version 13 on (and Produce from 13) names topics by id only; the names come
//! from Metadata responses ([`metadata_topic_ids`]), which carry both from version 10 on.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataResponse, ProduceRequest, ProduceResponse,
    ResponseHeader,
};
use kafka_protocol::protocol::Decodable;

use super::{decode_error, DecodeError};

/// A topic an exchange touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topic {
    /// The topic name (the topic id when the version names topics by id only).
    pub name: String,
    /// The topic id, when the version names topics by id only (`name` is then its text).
    pub id: Option<uuid::Uuid>,
    /// The partitions, in message order.
    pub partitions: Vec<Partition>,
}

/// A partition an exchange touched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    /// The partition index.
    pub partition: i32,
    /// The partition's error code in the response (`0`: none; requests carry none).
    pub error_code: i16,
}

/// Whether this API's exchanges have topic details worth keeping bytes for.
pub fn has_topics(api_key: i16) -> bool {
    api_key == ApiKey::Produce as i16 || api_key == ApiKey::Fetch as i16
}

/// The topics of a whole request `body` (the payload after the request header).
pub fn request_topics(api_key: i16, version: i16, body: &[u8]) -> Result<Vec<Topic>, DecodeError> {
    let mut buf = Bytes::copy_from_slice(body);
    if api_key == ApiKey::Produce as i16 {
        let request = ProduceRequest::decode(&mut buf, version)
            .map_err(|e| decode_error("Produce request", version, e))?;
        Ok(request
            .topic_data
            .iter()
            .map(|t| Topic {
                name: topic_name(&t.name.0, &t.topic_id),
                id: by_id(&t.name.0, &t.topic_id),
                partitions: t
                    .partition_data
                    .iter()
                    .map(|p| Partition {
                        partition: p.index,
                        error_code: 0,
                    })
                    .collect(),
            })
            .collect())
    } else if api_key == ApiKey::Fetch as i16 {
        let request = FetchRequest::decode(&mut buf, version)
            .map_err(|e| decode_error("Fetch request", version, e))?;
        Ok(request
            .topics
            .iter()
            .map(|t| Topic {
                name: topic_name(&t.topic.0, &t.topic_id),
                id: by_id(&t.topic.0, &t.topic_id),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| Partition {
                        partition: p.partition,
                        error_code: 0,
                    })
                    .collect(),
            })
            .collect())
    } else {
        Ok(Vec::new())
    }
}

/// The topics and per-partition error codes of a whole response `payload` (header included),
/// and the response's top-level error code (Fetch has one; `0` otherwise).
pub fn response_topics(
    api_key: i16,
    version: i16,
    payload: &[u8],
) -> Result<(i16, Vec<Topic>), DecodeError> {
    let Ok(key) = ApiKey::try_from(api_key) else {
        return Ok((0, Vec::new()));
    };
    let mut buf = Bytes::copy_from_slice(payload);
    let header_version = key.response_header_version(version);
    ResponseHeader::decode(&mut buf, header_version)
        .map_err(|e| decode_error("response header", header_version, e))?;
    match key {
        ApiKey::Produce => {
            let response = ProduceResponse::decode(&mut buf, version)
                .map_err(|e| decode_error("Produce response", version, e))?;
            let topics = response
                .responses
                .iter()
                .map(|t| Topic {
                    name: topic_name(&t.name.0, &t.topic_id),
                    id: by_id(&t.name.0, &t.topic_id),
                    partitions: t
                        .partition_responses
                        .iter()
                        .map(|p| Partition {
                            partition: p.index,
                            error_code: p.error_code,
                        })
                        .collect(),
                })
                .collect();
            Ok((0, topics))
        }
        ApiKey::Fetch => {
            let response = FetchResponse::decode(&mut buf, version)
                .map_err(|e| decode_error("Fetch response", version, e))?;
            let topics = response
                .responses
                .iter()
                .map(|t| Topic {
                    name: topic_name(&t.topic.0, &t.topic_id),
                    id: by_id(&t.topic.0, &t.topic_id),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| Partition {
                            partition: p.partition_index,
                            error_code: p.error_code,
                        })
                        .collect(),
                })
                .collect();
            Ok((response.error_code, topics))
        }
        _ => Ok((0, Vec::new())),
    }
}

fn topic_name(name: &kafka_protocol::protocol::StrBytes, id: &uuid::Uuid) -> String {
    match by_id(name, id) {
        Some(id) => id.to_string(),
        None => name.as_str().to_owned(),
    }
}

/// The topic's id, when it is named by id only.
fn by_id(name: &kafka_protocol::protocol::StrBytes, id: &uuid::Uuid) -> Option<uuid::Uuid> {
    (name.is_empty() && !id.is_nil()).then_some(*id)
}

/// The topic ids and names of a whole Metadata response `payload` (header included): none
/// before version 10, which has no ids, nor for topics without an id or a name.
pub fn metadata_topic_ids(
    version: i16,
    payload: &[u8],
) -> Result<Vec<(uuid::Uuid, String)>, DecodeError> {
    if version < 10 {
        return Ok(Vec::new());
    }
    let mut buf = Bytes::copy_from_slice(payload);
    let header_version = ApiKey::Metadata.response_header_version(version);
    ResponseHeader::decode(&mut buf, header_version)
        .map_err(|e| decode_error("response header", header_version, e))?;
    let response = MetadataResponse::decode(&mut buf, version)
        .map_err(|e| decode_error("Metadata response", version, e))?;
    Ok(response
        .topics
        .into_iter()
        .filter_map(|t| {
            let name = t.name?;
            (!t.topic_id.is_nil() && !name.0.is_empty()).then(|| (t.topic_id, name.0.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn name(text: &str) -> TopicName {
        TopicName(StrBytes::from_string(text.to_owned()))
    }

    #[test]
    fn produce_response_gives_partitions_and_error_codes() {
        let version = 7;
        let response =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_name(name("orders"))
                .with_partition_responses(vec![
                    PartitionProduceResponse::default().with_index(0),
                    PartitionProduceResponse::default()
                        .with_index(2)
                        .with_error_code(6),
                ])]);
        let mut payload = BytesMut::new();
        ResponseHeader::default().encode(&mut payload, 0).unwrap();
        response.encode(&mut payload, version).unwrap();
        let (error, topics) = response_topics(0, version, &payload).unwrap();
        assert_eq!(error, 0);
        assert_eq!(
            topics,
            [Topic {
                name: "orders".into(),
                id: None,
                partitions: vec![
                    Partition {
                        partition: 0,
                        error_code: 0
                    },
                    Partition {
                        partition: 2,
                        error_code: 6
                    }
                ]
            }]
        );
        assert!(response_topics(0, version, &payload[..payload.len() - 3]).is_err());
    }

    #[test]
    fn fetch_request_gives_topics_and_partitions() {
        let version = 11;
        let request = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic(name("orders"))
            .with_partitions(vec![FetchPartition::default().with_partition(1)])]);
        let mut body = BytesMut::new();
        request.encode(&mut body, version).unwrap();
        let topics = request_topics(1, version, &body).unwrap();
        assert_eq!(topics[0].name, "orders");
        assert_eq!(
            topics[0].partitions,
            [Partition {
                partition: 1,
                error_code: 0
            }]
        );
        assert_eq!(request_topics(3, 1, &body), Ok(Vec::new()));
    }

    #[test]
    fn topics_named_by_id_say_so_and_metadata_gives_their_names() {
        let id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let request = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default().with_partition(0)])]);
        let mut body = BytesMut::new();
        request.encode(&mut body, 13).unwrap();
        let topics = request_topics(1, 13, &body).unwrap();
        assert_eq!(topics[0].id, Some(id));
        assert_eq!(topics[0].name, id.to_string());

        use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
        let metadata = MetadataResponse::default().with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(name("orders")))
                .with_topic_id(id),
            // No id (an error for an unknown topic, say): nothing to learn.
            MetadataResponseTopic::default().with_name(Some(name("ghost"))),
        ]);
        for version in [10, 12] {
            let mut payload = BytesMut::new();
            let header = ApiKey::Metadata.response_header_version(version);
            ResponseHeader::default()
                .encode(&mut payload, header)
                .unwrap();
            metadata.encode(&mut payload, version).unwrap();
            let pairs = metadata_topic_ids(version, &payload).unwrap();
            assert_eq!(pairs, [(id, "orders".to_string())], "v{version}");
            assert!(metadata_topic_ids(version, &payload[..payload.len() - 2]).is_err());
        }
        assert_eq!(metadata_topic_ids(9, b"garbage"), Ok(Vec::new()));
    }
}
