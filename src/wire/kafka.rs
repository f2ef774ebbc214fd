//! A minimal Kafka client: enough of the protocol to probe a broker (an `ApiVersions`
//! request answered) and to create topics (`CreateTopics`, for the `kafka` type's `schema`
//! hook: brokers such as tansu do not create topics on first use).
//!
//! Requests are encoded and responses decoded with the `kafka-protocol` crate; versions are
//! negotiated with the broker's `ApiVersions` answer.

use std::io;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
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
    /// The broker could not do it now (Kafka calls the error retriable: no controller yet, a
    /// timeout inside the broker); the same request may succeed later.
    #[error("{0}")]
    NotYet(String),
}

/// How long [`create_topics`] keeps trying.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// How long one attempt (connect, negotiate, create) may take.
    pub attempt: Duration,
    /// How long all attempts together may take.
    pub total: Duration,
}

impl Patience {
    /// For a broker that has just passed its readiness probe: 10 s an attempt, 60 s in all.
    pub const DEFAULT: Patience = Patience {
        attempt: Duration::from_secs(10),
        total: Duration::from_secs(60),
    };
}

/// Creates `topics` on `broker`, trying again with a growing pause while the broker cannot be
/// reached, breaks the connection, does not answer within `patience.attempt`, or answers an
/// error Kafka calls retriable (a broker still electing its controller answers
/// `NOT_CONTROLLER`); a refusal ends it at once. Topics that already exist count as created,
/// so an attempt that timed out after the broker created them is harmless to repeat.
pub async fn create_topics(
    broker: &str,
    topics: &[TopicSpec],
    patience: Patience,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + patience.total;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let once = async {
            let mut conn = Connection::connect(broker).await?;
            conn.create_topics(topics, patience.attempt).await
        };
        let error = match tokio::time::timeout(patience.attempt, once).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e @ KafkaError::Refused(_))) => return Err(e),
            Ok(Err(e)) => e,
            Err(_) => KafkaError::NotYet(format!("no answer within {:?}", patience.attempt)),
        };
        let pause = Duration::from_millis(100 << attempt.min(4));
        if Instant::now() + pause >= deadline {
            return Err(KafkaError::NotYet(format!(
                "{error} (attempt {attempt}; gave up after {:?})",
                patience.total
            )));
        }
        tokio::time::sleep(pause).await;
    }
}

/// `code` named as Kafka names it: `NotController (error code 41)`.
fn describe(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => format!("error code {code}"),
        Some(error) => format!("{error:?} (error code {code})"),
    }
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
                    "ApiVersions answered {}",
                    describe(response.error_code)
                )));
            }
            self.versions = Some(response);
        }
        self.versions
            .as_ref()
            .ok_or_else(|| KafkaError::Protocol("no ApiVersions answer".into()))
    }

    /// Creates `topics`, giving the broker `timeout` to do it; topics that already exist are
    /// left as they are. An error names each topic, Kafka's name for the error and the
    /// broker's message; it is [`KafkaError::NotYet`] when every error is retriable.
    pub async fn create_topics(
        &mut self,
        topics: &[TopicSpec],
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        if topics.is_empty() {
            return Ok(());
        }
        let version = self
            .version_for(ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS.min, 4)
            .await?;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
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
        let failed: Vec<_> = response
            .topics
            .iter()
            .filter(|t| t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS)
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let retriable = failed
            .iter()
            .all(|t| ResponseError::try_from_code(t.error_code).is_some_and(|e| e.is_retriable()));
        let failures: Vec<String> = failed
            .iter()
            .map(|t| {
                let mut failure =
                    format!("topic {:?}: {}", t.name.as_str(), describe(t.error_code));
                if let Some(message) = t.error_message.as_ref().filter(|m| !m.is_empty()) {
                    failure.push_str(": ");
                    failure.push_str(message);
                }
                failure
            })
            .collect();
        let message = format!("CreateTopics refused: {}", failures.join("; "));
        Err(if retriable {
            KafkaError::NotYet(message)
        } else {
            KafkaError::Refused(message)
        })
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

    /// A broker that answers ApiVersions with `versions` and the n-th CreateTopics request
    /// with `create_errors[n]` for every topic (the last one from then on), on any number of
    /// connections, recording the topics it was asked to create.
    async fn fake_broker(
        versions: Vec<(ApiKey, i16, i16)>,
        create_errors: Vec<i16>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (versions, create_errors, tx, answered) = (
                    versions.clone(),
                    create_errors.clone(),
                    tx.clone(),
                    answered.clone(),
                );
                tokio::spawn(serve(s, versions, create_errors, tx, answered));
            }
        });
        (addr, rx)
    }

    async fn serve(
        mut s: tokio::net::TcpStream,
        versions: Vec<(ApiKey, i16, i16)>,
        create_errors: Vec<i16>,
        tx: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
        answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        {
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
                        let n = answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let create_error = create_errors[n.min(create_errors.len() - 1)];
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
        }
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
            vec![TOPIC_ALREADY_EXISTS],
        )
        .await;
        let mut conn = Connection::connect(&addr).await.unwrap();
        conn.create_topics(
            &[topic("orders"), topic("payments")],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(seen.recv().await.unwrap(), ["orders", "payments"]);
    }

    /// Quick patience for tests.
    const PATIENCE: Patience = Patience {
        attempt: Duration::from_millis(500),
        total: Duration::from_secs(5),
    };

    #[tokio::test]
    async fn a_refused_topic_is_an_error_naming_it_and_kafkas_name_for_the_error() {
        let (addr, mut seen) = fake_broker(vec![(ApiKey::CreateTopics, 0, 5)], vec![37]).await;
        let err = create_topics(&addr, &[topic("orders")], PATIENCE)
            .await
            .unwrap_err();
        assert!(matches!(err, KafkaError::Refused(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "CreateTopics refused: topic \"orders\": InvalidPartitions (error code 37)"
        );
        seen.recv().await.unwrap();
        assert!(seen.try_recv().is_err(), "a refusal is not tried again");
    }

    #[tokio::test]
    async fn a_retriable_error_is_tried_again_until_the_broker_creates_the_topic() {
        // NOT_CONTROLLER (41) twice, as a broker electing its controller answers, then done.
        let (addr, mut seen) =
            fake_broker(vec![(ApiKey::CreateTopics, 0, 5)], vec![41, 41, 0]).await;
        create_topics(&addr, &[topic("orders")], PATIENCE)
            .await
            .unwrap();
        for _ in 0..3 {
            assert_eq!(seen.recv().await.unwrap(), ["orders"]);
        }
        assert!(seen.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_retriable_error_that_lasts_ends_when_patience_does() {
        let (addr, _seen) = fake_broker(vec![(ApiKey::CreateTopics, 0, 5)], vec![41]).await;
        let patience = Patience {
            attempt: Duration::from_millis(500),
            total: Duration::from_secs(1),
        };
        let err = create_topics(&addr, &[topic("orders")], patience)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "CreateTopics refused: topic \"orders\": NotController (error code 41)"
            ) && text.ends_with("gave up after 1s)"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_broker_that_never_answers_fails_the_attempt_instead_of_hanging() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accepts connections and reads requests, answering none.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let patience = Patience {
            attempt: Duration::from_millis(200),
            total: Duration::from_millis(700),
        };
        let err = create_topics(&addr, &[topic("orders")], patience)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("no answer within 200ms (attempt "),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_broker_without_create_topics_is_refused_clearly() {
        let (addr, _seen) = fake_broker(vec![(ApiKey::ApiVersions, 0, 3)], vec![0]).await;
        let err = create_topics(&addr, &[topic("orders")], PATIENCE)
            .await
            .unwrap_err();
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
