//! A minimal Kafka client: enough of the protocol to probe a broker (an `ApiVersions`
//! request answered) and to create topics (`CreateTopics`, for the `kafka` type's `schema`
//! hook: brokers such as tansu do not create topics on first use).
//!
//! Requests are encoded and responses decoded with the `kafka-protocol` crate; versions are
//! negotiated with the broker's `ApiVersions` answer.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Responses larger than this are refused.
const MAX_FRAME: usize = 16 << 20;

/// The client id rigd's requests carry (visible in the broker's logs and in observed traffic).
const CLIENT_ID: &str = "rigd";

/// Kafka's error code for "the topic already exists" (not an error when creating topics).
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The connection could not be made, or broke.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The broker answered something that is not a Kafka response to the request.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker refused the request.
    #[error("{0}")]
    Refused(String),
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic name.
    pub name: String,
    /// Its partition count.
    pub partitions: i32,
    /// Its replication factor.
    pub replication_factor: i16,
}

/// An open connection to one broker.
pub struct Connection {
    stream: TcpStream,
    next_correlation: i32,
    /// What the broker supports, once asked.
    versions: Option<ApiVersionsResponse>,
}

impl Connection {
    /// Connects to `hostport`.
    pub async fn connect(hostport: &str) -> Result<Connection, KafkaError> {
        let stream = TcpStream::connect(hostport).await?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            next_correlation: 1,
            versions: None,
        })
    }

    /// Asks the broker which API versions it supports (`ApiVersions` v0, which every broker
    /// answers); an error code in the answer is an error.
    pub async fn api_versions(&mut self) -> Result<&ApiVersionsResponse, KafkaError> {
        if self.versions.is_none() {
            let response: ApiVersionsResponse = self
                .exchange(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
                .await?;
            if response.error_code != 0 {
                return Err(KafkaError::Refused(format!(
                    "ApiVersions answered error code {}",
                    response.error_code
                )));
            }
            self.versions = Some(response);
        }
        self.versions
            .as_ref()
            .ok_or_else(|| KafkaError::Protocol("no ApiVersions answer".into()))
    }

    /// Creates `topics`; topics that already exist are left as they are. Any other refusal
    /// is an error naming the topic and the broker's message.
    pub async fn create_topics(&mut self, topics: &[TopicSpec]) -> Result<(), KafkaError> {
        if topics.is_empty() {
            return Ok(());
        }
        let version = self
            .version_for(ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS.min, 4)
            .await?;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                    })
                    .collect(),
            );
        let response: CreateTopicsResponse = self
            .exchange(ApiKey::CreateTopics, version, &request)
            .await?;
        let failures: Vec<String> = response
            .topics
            .iter()
            .filter(|t| t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS)
            .map(|t| {
                let message = t.error_message.as_ref().map_or("", |m| m.as_str());
                format!(
                    "topic {:?}: error code {} {message}",
                    t.name.as_str(),
                    t.error_code
                )
                .trim_end()
                .to_string()
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(KafkaError::Refused(format!(
                "CreateTopics refused: {}",
                failures.join("; ")
            )))
        }
    }

    /// The highest version of `key` both sides support, at most `ours` and at least `min`.
    async fn version_for(&mut self, key: ApiKey, min: i16, ours: i16) -> Result<i16, KafkaError> {
        let versions = self.api_versions().await?;
        let theirs = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .ok_or_else(|| {
                KafkaError::Refused(format!("the broker does not support {key:?} requests"))
            })?;
        let version = ours.min(theirs.max_version);
        if version < min.max(theirs.min_version) {
            return Err(KafkaError::Refused(format!(
                "no common {key:?} version (broker: {}..{}, rigd: {min}..{ours})",
                theirs.min_version, theirs.max_version
            )));
        }
        Ok(version)
    }

    /// Sends one request and reads its response.
    async fn exchange<Req, Resp>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, KafkaError>
    where
        Req: Encodable,
        Resp: Decodable + HeaderVersion,
    {
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = encode(key, version, correlation_id, request)?;
        self.stream.write_all(&frame).await?;
        let mut body = self.read_frame().await?;
        let header = ResponseHeader::decode(&mut body, Resp::header_version(version))
            .map_err(|e| KafkaError::Protocol(format!("response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(KafkaError::Protocol(format!(
                "response to correlation id {} while {correlation_id} was expected",
                header.correlation_id
            )));
        }
        Resp::decode(&mut body, version)
            .map_err(|e| KafkaError::Protocol(format!("{key:?} v{version} response: {e}")))
    }

    async fn read_frame(&mut self) -> Result<Bytes, KafkaError> {
        let len = self.stream.read_i32().await?;
        let len = usize::try_from(len)
            .ok()
            .filter(|n| *n <= MAX_FRAME)
            .ok_or_else(|| KafkaError::Protocol(format!("response length {len}")))?;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await?;
        Ok(Bytes::from(body))
    }
}

/// A length-prefixed request frame.
fn encode<Req: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Result<BytesMut, KafkaError> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, key.request_header_version(version))
        .and_then(|()| request.encode(&mut body, version))
        .map_err(|e| KafkaError::Protocol(format!("encode {key:?} v{version}: {e}")))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    use tokio::net::TcpListener;

    /// A broker that answers ApiVersions with `versions` and CreateTopics with `results`,
    /// recording the topics it was asked to create.
    async fn fake_broker(
        versions: Vec<(ApiKey, i16, i16)>,
        create_error: i16,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            loop {
                let Ok(len) = s.read_i32().await else { return };
                let mut frame = vec![0u8; len as usize];
                s.read_exact(&mut frame).await.unwrap();
                let mut buf = Bytes::from(frame);
                let key = ApiKey::try_from(i16::from_be_bytes([buf[0], buf[1]])).unwrap();
                let version = i16::from_be_bytes([buf[2], buf[3]]);
                let header =
                    RequestHeader::decode(&mut buf, key.request_header_version(version)).unwrap();
                let mut out = BytesMut::new();
                ResponseHeader::default()
                    .with_correlation_id(header.correlation_id)
                    .encode(&mut out, key.response_header_version(version))
                    .unwrap();
                match key {
                    ApiKey::ApiVersions => ApiVersionsResponse::default()
                        .with_api_keys(
                            versions
                                .iter()
                                .map(|(k, min, max)| {
                                    ApiVersion::default()
                                        .with_api_key(*k as i16)
                                        .with_min_version(*min)
                                        .with_max_version(*max)
                                })
                                .collect(),
                        )
                        .encode(&mut out, version)
                        .unwrap(),
                    ApiKey::CreateTopics => {
                        let req = CreateTopicsRequest::decode(&mut buf, version).unwrap();
                        let names: Vec<String> =
                            req.topics.iter().map(|t| t.name.to_string()).collect();
                        tx.send(names.clone()).unwrap();
                        CreateTopicsResponse::default()
                            .with_topics(
                                names
                                    .into_iter()
                                    .map(|n| {
                                        CreatableTopicResult::default()
                                            .with_name(TopicName(StrBytes::from_string(n)))
                                            .with_error_code(create_error)
                                    })
                                    .collect(),
                            )
                            .encode(&mut out, version)
                            .unwrap()
                    }
                    other => panic!("unexpected {other:?}"),
                }
                s.write_i32(out.len() as i32).await.unwrap();
                s.write_all(&out).await.unwrap();
            }
        });
        (addr, rx)
    }

    fn topic(name: &str) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            partitions: 1,
            replication_factor: 1,
        }
    }

    #[tokio::test]
    async fn creates_topics_with_a_negotiated_version_and_accepts_existing_ones() {
        let (addr, mut seen) = fake_broker(
            vec![(ApiKey::ApiVersions, 0, 3), (ApiKey::CreateTopics, 2, 7)],
            TOPIC_ALREADY_EXISTS,
        )
        .await;
        let mut conn = Connection::connect(&addr).await.unwrap();
        conn.create_topics(&[topic("orders"), topic("payments")])
            .await
            .unwrap();
        assert_eq!(seen.recv().await.unwrap(), ["orders", "payments"]);
    }

    #[tokio::test]
    async fn a_refused_topic_is_an_error_naming_it() {
        let (addr, _seen) = fake_broker(vec![(ApiKey::CreateTopics, 0, 5)], 37).await;
        let mut conn = Connection::connect(&addr).await.unwrap();
        let err = conn.create_topics(&[topic("orders")]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "CreateTopics refused: topic \"orders\": error code 37"
        );
    }

    #[tokio::test]
    async fn a_broker_without_create_topics_is_refused_clearly() {
        let (addr, _seen) = fake_broker(vec![(ApiKey::ApiVersions, 0, 3)], 0).await;
        let mut conn = Connection::connect(&addr).await.unwrap();
        let err = conn.create_topics(&[topic("orders")]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the broker does not support CreateTopics requests"
        );
    }

    #[test]
    fn frames_carry_length_and_key() {
        let frame = encode(ApiKey::ApiVersions, 0, 7, &ApiVersionsRequest::default()).unwrap();
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        assert_eq!(
            i16::from_be_bytes([frame[4], frame[5]]),
            ApiKey::ApiVersions as i16
        );
    }
}
