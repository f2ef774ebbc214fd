//! The Kafka relay against a scripted broker: responses cut at every byte, rewriting, framing
//! errors, and (in `ends`) how a connection's end is recorded.

mod ends;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rig_types::{Event, EventType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{serve, Advertise, KafkaSettings};
use crate::observe::{Edge, Observer, TrafficSink};

const GUARD: Duration = Duration::from_secs(30);

struct Collect(watch::Sender<Vec<Event>>);

impl TrafficSink for Collect {
    fn emit(&self, event: Event) {
        self.0.send_modify(|events| events.push(event));
    }
}

async fn wait_for(sink: &Collect, condition: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let mut rx = sink.0.subscribe();
    let events = tokio::time::timeout(GUARD, rx.wait_for(|events| condition(events)))
        .await
        .expect("the expected events in time")
        .unwrap()
        .clone();
    events
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn request<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("scripted")))
        .encode(&mut out, key.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    framed(&out)
}

fn response<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, key.response_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    framed(&out)
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut payload).await.unwrap();
    payload
}

struct Running {
    addr: std::net::SocketAddr,
    sink: Arc<Collect>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(target: String) -> Running {
    start_with(target, KafkaSettings::default()).await
}

async fn start_with(target: String, settings: KafkaSettings) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = Arc::new(Collect(watch::Sender::new(Vec::new())));
    let (observer, _delivered) = Observer::spawn(
        Edge {
            source: "~test".into(),
            target: "kafka".into(),
            ingress: "default".into(),
        },
        sink.clone(),
        1024,
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve(listener, target, observer, settings, cancel.clone()));
    Running {
        addr,
        sink,
        cancel,
        task,
    }
}

/// Stops the proxy and waits for it to finish.
async fn stop(proxy: Running) {
    proxy.cancel.cancel();
    tokio::time::timeout(GUARD, proxy.task)
        .await
        .unwrap()
        .unwrap();
}

/// A broker on a loopback port that accepts one connection and runs `script` on it.
async fn scripted_broker<F, Fut>(script: F) -> std::net::SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = broker.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = broker.accept().await.unwrap();
        script(stream).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_dribbled_byte_by_byte_are_matched_and_rewritten() {
    let metadata =
        MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(7))
            .with_host(StrBytes::from_static_str("broker-7.internal"))
            .with_port(9092)]);
    let versions = ApiVersionsResponse::default().with_error_code(0);
    let replies = [
        response(ApiKey::ApiVersions, 3, 1, &versions),
        response(ApiKey::Metadata, 12, 2, &metadata),
    ]
    .concat();
    let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = broker.local_addr().unwrap();
    let script = replies.clone();
    tokio::spawn(async move {
        let (mut stream, _) = broker.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        read_frame(&mut stream).await;
        read_frame(&mut stream).await;
        for byte in script {
            stream.write_all(&[byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });

    let proxy = start(broker_addr.to_string()).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let requests = [
        request(
            ApiKey::ApiVersions,
            3,
            1,
            &kafka_protocol::messages::ApiVersionsRequest::default(),
        ),
        request(ApiKey::Metadata, 12, 2, &MetadataRequest::default()),
    ]
    .concat();
    // The requests cut mid-header, too.
    client.write_all(&requests[..6]).await.unwrap();
    client.write_all(&requests[6..]).await.unwrap();

    let first = read_frame(&mut client).await;
    assert_eq!(
        framed(&first),
        replies[..framed(&first).len()],
        "ApiVersions passes untouched"
    );
    let second = read_frame(&mut client).await;
    let mut second = Bytes::from(second);
    let header = ResponseHeader::decode(&mut second, 1).unwrap();
    assert_eq!(header.correlation_id, 2);
    let rewritten = MetadataResponse::decode(&mut second, 12).unwrap();
    let advertised = &rewritten.brokers[0];
    assert_eq!(advertised.node_id, BrokerId(7));
    assert_eq!(advertised.host.as_str(), "127.0.0.1");
    assert_ne!(advertised.port, 9092);
    assert_ne!(advertised.port, i32::from(proxy.addr.port()));

    let events = wait_for(&proxy.sink, |events| {
        events
            .iter()
            .filter(|e| e.event_type == EventType::KafkaRequestCompleted)
            .count()
            == 2
    })
    .await;
    let kafka: Vec<_> = events
        .iter()
        .filter_map(|e| e.kafka_request.as_deref())
        .collect();
    assert_eq!(
        kafka
            .iter()
            .map(|k| (k.api_name.as_str(), k.correlation_id))
            .collect::<Vec<_>>(),
        [("ApiVersions", 1), ("Metadata", 2)]
    );
    assert_eq!(
        kafka[1].response_size as usize,
        replies.len() - framed(&first).len()
    );
    assert!(kafka[1].rewritten);
    assert_eq!(kafka[0].client_id, "scripted");
    assert_eq!(kafka[0].broker, broker_addr.to_string());

    // The advertised listener relays to the broker it stands for (here: nothing listens there,
    // so the dial fails and says where it went).
    let mut direct = TcpStream::connect(("127.0.0.1", advertised.port as u16))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = direct.read_to_end(&mut rest).await;
    let events = wait_for(&proxy.sink, |events| {
        events.iter().any(|e| {
            e.connection
                .as_ref()
                .is_some_and(|c| c.error.contains("broker-7.internal:9092"))
        })
    })
    .await;
    assert!(!events.is_empty());
    drop(client);
    stop(proxy).await;
}

/// A client in a container cannot reach the proxy's loopback: with an advertise address,
/// every broker a response names, the bootstrap broker included, gets a listener bound there
/// and is advertised by the given host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_advertise_address_every_broker_is_a_listener_there() {
    let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = broker.local_addr().unwrap();
    let metadata = MetadataResponse::default().with_brokers(vec![
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_string(broker_addr.ip().to_string()))
            .with_port(i32::from(broker_addr.port())),
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(2))
            .with_host(StrBytes::from_static_str("broker-2.internal"))
            .with_port(9093),
    ]);
    let versions = ApiVersionsResponse::default().with_error_code(0);
    let (metadata_reply, versions_reply) = (
        response(ApiKey::Metadata, 12, 1, &metadata),
        response(ApiKey::ApiVersions, 3, 2, &versions),
    );
    let replies = [metadata_reply, versions_reply.clone()];
    tokio::spawn(async move {
        // First the bootstrap connection asks for metadata, then a connection through the
        // advertised listener of broker 1 asks for API versions.
        for reply in replies {
            let (mut stream, _) = broker.accept().await.unwrap();
            read_frame(&mut stream).await;
            stream.write_all(&reply).await.unwrap();
            tokio::spawn(async move {
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            });
        }
    });
    // Another loopback address stands for the Docker bridge gateway.
    let elsewhere: std::net::IpAddr = [127, 0, 0, 2].into();
    let settings = KafkaSettings {
        advertise: Some(Advertise {
            bind: elsewhere,
            host: "host.docker.internal".into(),
        }),
        ..KafkaSettings::default()
    };
    let proxy = start_with(broker_addr.to_string(), settings).await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(&request(
            ApiKey::Metadata,
            12,
            1,
            &MetadataRequest::default(),
        ))
        .await
        .unwrap();
    let mut reply = Bytes::from(read_frame(&mut client).await);
    ResponseHeader::decode(&mut reply, 1).unwrap();
    let rewritten = MetadataResponse::decode(&mut reply, 12).unwrap();
    let advertised: Vec<_> = rewritten
        .brokers
        .iter()
        .map(|b| (b.host.as_str(), b.port))
        .collect();
    assert_eq!(advertised.len(), 2);
    assert!(
        advertised
            .iter()
            .all(|(host, _)| *host == "host.docker.internal"),
        "{advertised:?}"
    );
    let bootstrap_port = advertised[0].1;
    assert_ne!(bootstrap_port, i32::from(proxy.addr.port()));
    assert_ne!(bootstrap_port, advertised[1].1);
    // Nothing listens for it on loopback; the advertised address relays to the broker.
    let loopback = TcpStream::connect(("127.0.0.1", bootstrap_port as u16)).await;
    assert!(loopback.is_err(), "the listener is bound on loopback");
    let mut through = TcpStream::connect((elsewhere, bootstrap_port as u16))
        .await
        .unwrap();
    through
        .write_all(&request(
            ApiKey::ApiVersions,
            3,
            2,
            &kafka_protocol::messages::ApiVersionsRequest::default(),
        ))
        .await
        .unwrap();
    assert_eq!(framed(&read_frame(&mut through).await), versions_reply);

    drop((client, through));
    stop(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_not_kafka_ends_with_a_reason() {
    let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = broker.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = broker.accept().await.unwrap();
        let mut seen = Vec::new();
        let _ = stream.read_to_end(&mut seen).await;
        assert!(seen.is_empty(), "nothing of the bad frame is forwarded");
    });
    let proxy = start(broker_addr.to_string()).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    // A TLS ClientHello record header.
    client
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest).await;
    let events = wait_for(&proxy.sink, |events| {
        events
            .iter()
            .any(|e| e.event_type == EventType::ConnectionClosed)
    })
    .await;
    let closed = events
        .iter()
        .find_map(|e| {
            e.connection
                .as_ref()
                .filter(|_| e.event_type == EventType::ConnectionClosed)
        })
        .unwrap();
    assert!(
        closed.error.contains("not the Kafka protocol"),
        "{}",
        closed.error
    );
    assert_eq!(closed.bytes_in, 0);
    stop(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_node_endpoints_of_a_new_leader_are_rewritten_to_a_proxy_listener() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::produce_response::{
        NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};

    let topic = || TopicName(StrBytes::from_static_str("orders"));
    // KIP-951: "not the leader (6); the leader is now node 4, at broker-4.internal:9095".
    let produced = ProduceResponse::default()
        .with_responses(vec![TopicProduceResponse::default()
            .with_name(topic())
            .with_partition_responses(vec![PartitionProduceResponse::default()
                .with_index(2)
                .with_error_code(6)])])
        .with_node_endpoints(vec![NodeEndpoint::default()
            .with_node_id(BrokerId(4))
            .with_host(StrBytes::from_static_str("broker-4.internal"))
            .with_port(9095)]);
    let reply = response(ApiKey::Produce, 11, 5, &produced);
    let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = broker.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = broker.accept().await.unwrap();
        read_frame(&mut stream).await;
        stream.write_all(&reply).await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });

    let proxy = start(broker_addr.to_string()).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let produce =
        ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(
                    vec![PartitionProduceData::default().with_index(2)],
                )]);
    client
        .write_all(&request(ApiKey::Produce, 11, 5, &produce))
        .await
        .unwrap();
    let mut answer = Bytes::from(read_frame(&mut client).await);
    let header_version = ApiKey::Produce.response_header_version(11);
    assert_eq!(
        ResponseHeader::decode(&mut answer, header_version)
            .unwrap()
            .correlation_id,
        5
    );
    let rewritten = ProduceResponse::decode(&mut answer, 11).unwrap();
    assert_eq!(rewritten.responses, produced.responses);
    let endpoint = &rewritten.node_endpoints[0];
    assert_eq!(endpoint.node_id, BrokerId(4));
    assert_eq!(endpoint.host.as_str(), "127.0.0.1");
    assert_ne!(endpoint.port, 9095);
    assert_ne!(endpoint.port, i32::from(proxy.addr.port()));

    let events = wait_for(&proxy.sink, |events| {
        events
            .iter()
            .any(|e| e.event_type == EventType::KafkaRequestCompleted)
    })
    .await;
    let kafka = events
        .iter()
        .find_map(|e| e.kafka_request.as_deref())
        .unwrap();
    assert_eq!(kafka.api_name, "Produce");
    assert!(kafka.rewritten);
    // The response's details survive the buffering: the partition's error is recorded.
    let partitions = &kafka.topics[0].partitions;
    assert_eq!(kafka.topics[0].topic, "orders");
    assert_eq!((partitions[0].partition, partitions[0].error_code), (2, 6));
    drop(client);
    stop(proxy).await;
}
