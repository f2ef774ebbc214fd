//! How a connection's end is recorded: a side closing in the middle of a frame, requests
//! still waiting for their responses, responses that cannot be written to the client.

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rig_types::{ConnectionInfo, Event, EventType, KafkaRequestInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::{
    read_frame, request, response, scripted_broker, start, stop, wait_for, Running, GUARD,
};

fn versions_request(correlation_id: i32) -> Vec<u8> {
    request(
        ApiKey::ApiVersions,
        3,
        correlation_id,
        &ApiVersionsRequest::default(),
    )
}

fn versions_response(correlation_id: i32) -> Vec<u8> {
    let body = ApiVersionsResponse::default().with_throttle_time_ms(7);
    response(ApiKey::ApiVersions, 3, correlation_id, &body)
}

/// The events once `closed` connections have closed: the `kafka.request.completed` ones and
/// the `connection.closed` ones, in order.
async fn ended(proxy: &Running, closed: usize) -> (Vec<KafkaRequestInfo>, Vec<ConnectionInfo>) {
    let is_closed = |e: &Event| e.event_type == EventType::ConnectionClosed;
    let events = wait_for(&proxy.sink, |events| {
        events.iter().filter(|e| is_closed(e)).count() == closed
    })
    .await;
    let kafka = events
        .iter()
        .filter_map(|e| e.kafka_request.as_deref().cloned())
        .collect();
    let connections = events
        .iter()
        .filter(|e| is_closed(e))
        .filter_map(|e| e.connection.as_deref().cloned())
        .collect();
    (kafka, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_closing_in_the_middle_of_a_response_is_an_error() {
    let reply = versions_response(1);
    let cut = 10;
    assert!(reply.len() > cut);
    let script = reply.clone();
    let broker_addr = scripted_broker(move |mut stream| async move {
        read_frame(&mut stream).await;
        stream.write_all(&script[..cut]).await.unwrap();
        // Dropped: the broker closes in the middle of its response.
    })
    .await;
    let proxy = start(broker_addr.to_string()).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let sent = versions_request(1);
    client.write_all(&sent).await.unwrap();
    let mut received = Vec::new();
    client.read_to_end(&mut received).await.unwrap();
    assert_eq!(received, reply[..cut], "what came is relayed as it came");
    drop(client);

    let (kafka, closed) = ended(&proxy, 1).await;
    let error = format!(
        "broker closed the connection in the middle of a response ({cut} of {} bytes)",
        reply.len()
    );
    assert_eq!(kafka.len(), 1);
    assert_eq!(kafka[0].api_name, "ApiVersions");
    assert_eq!(kafka[0].correlation_id, 1);
    assert_eq!(kafka[0].request_size as usize, sent.len());
    assert_eq!(kafka[0].response_size as usize, cut);
    assert!(!kafka[0].no_response);
    assert_eq!(kafka[0].broker, broker_addr.to_string());
    assert_eq!(kafka[0].error, error);
    assert_eq!(closed[0].error, error);
    assert_eq!(closed[0].bytes_in as usize, sent.len());
    assert_eq!(closed[0].bytes_out as usize, cut);
    stop(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closing_in_the_middle_of_a_request_is_an_error() {
    let sent = request(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    // In the middle of the size prefix, then of the payload.
    let cuts = [2, 10];
    let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = broker.local_addr().unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for _ in cuts {
            let (mut stream, _) = broker.accept().await.unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.unwrap();
            seen_tx.send(got).unwrap();
        }
    });
    let proxy = start(broker_addr.to_string()).await;
    for (n, cut) in cuts.into_iter().enumerate() {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        client.write_all(&sent[..cut]).await.unwrap();
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            seen.recv().await.unwrap(),
            sent[..cut],
            "relayed as it came"
        );

        let (kafka, closed) = ended(&proxy, n + 1).await;
        assert!(kafka.is_empty(), "a partial request is not an exchange");
        assert_eq!(closed[n].bytes_in as usize, cut);
        assert_eq!(closed[n].bytes_out, 0);
        let error = if cut < 4 {
            format!("client closed the connection in the middle of a request's size prefix ({cut} of 4 bytes)")
        } else {
            format!(
                "client closed the connection in the middle of a request ({cut} of {} bytes)",
                sent.len()
            )
        };
        assert_eq!(closed[n].error, error);
    }
    stop(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_response_when_the_connection_closes_are_recorded() {
    let reply = versions_response(1);
    let script = reply.clone();
    let broker_addr = scripted_broker(move |mut stream| async move {
        read_frame(&mut stream).await;
        read_frame(&mut stream).await;
        // Answers the first and closes, cleanly, between frames.
        stream.write_all(&script).await.unwrap();
    })
    .await;
    let proxy = start(broker_addr.to_string()).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let second = request(ApiKey::Metadata, 12, 2, &MetadataRequest::default());
    client
        .write_all(&[versions_request(1), second.clone()].concat())
        .await
        .unwrap();
    let mut received = Vec::new();
    client.read_to_end(&mut received).await.unwrap();
    assert_eq!(received, reply);
    drop(client);

    let (kafka, closed) = ended(&proxy, 1).await;
    assert_eq!(kafka.len(), 2);
    assert_eq!((kafka[0].correlation_id, kafka[0].error.as_str()), (1, ""));
    assert_eq!(kafka[0].response_size as usize, reply.len());
    let unanswered = &kafka[1];
    assert_eq!(unanswered.api_name, "Metadata");
    assert_eq!(unanswered.correlation_id, 2);
    assert_eq!(unanswered.client_id, "scripted");
    assert_eq!(unanswered.request_size as usize, second.len());
    assert_eq!(unanswered.response_size, 0);
    assert!(!unanswered.no_response, "a response was due");
    assert!(!unanswered.rewritten);
    assert_eq!(
        unanswered.error,
        "no response came before the connection closed"
    );
    assert_eq!(closed[0].error, "", "both sides ended between frames");
    stop(proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_in_flight_when_the_proxy_shuts_down_are_recorded() {
    let reply = versions_response(1);
    let cut = 10;
    let script = reply.clone();
    let broker_addr = scripted_broker(move |mut stream| async move {
        read_frame(&mut stream).await;
        read_frame(&mut stream).await;
        stream.write_all(&script[..cut]).await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    })
    .await;
    let proxy = start(broker_addr.to_string()).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(&[versions_request(1), versions_request(2)].concat())
        .await
        .unwrap();
    // The first response is half through the proxy.
    let mut half = vec![0u8; cut];
    client.read_exact(&mut half).await.unwrap();
    assert_eq!(half, reply[..cut]);
    proxy.cancel.cancel();

    let (kafka, closed) = ended(&proxy, 1).await;
    assert_eq!(kafka.len(), 2);
    assert_eq!(kafka[0].correlation_id, 1);
    assert_eq!(kafka[0].response_size as usize, cut);
    assert_eq!(
        kafka[0].error,
        "the connection closed before the response reached the client"
    );
    assert_eq!(kafka[1].correlation_id, 2);
    assert_eq!(kafka[1].response_size, 0);
    assert_eq!(
        kafka[1].error,
        "no response came before the proxy closed the connection (shutting down)"
    );
    assert_eq!(
        closed[0].error, "",
        "a shutdown is not the connection's failure"
    );
    tokio::time::timeout(GUARD, proxy.task)
        .await
        .unwrap()
        .unwrap();
}

/// Sends `sent` through the proxy from a client that then goes away (a reset, after its end of
/// the stream reached the broker), and has the broker answer `reply` only then: writing the
/// response to the client fails. Returns the exchange's record and the `connection.closed`.
async fn answer_a_client_gone(sent: Vec<u8>, reply: Vec<u8>) -> (KafkaRequestInfo, ConnectionInfo) {
    let (relayed_tx, relayed) = oneshot::channel();
    let (gone_tx, gone) = oneshot::channel();
    let broker_addr = scripted_broker(move |mut stream| async move {
        read_frame(&mut stream).await;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        relayed_tx.send(()).unwrap();
        gone.await.unwrap();
        // Fails once the proxy gives up on the connection.
        let _ = stream.write_all(&reply).await;
    })
    .await;
    let proxy = start(broker_addr.to_string()).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(&sent).await.unwrap();
    client.shutdown().await.unwrap();
    relayed.await.unwrap();
    client.set_zero_linger().unwrap();
    drop(client);
    gone_tx.send(()).unwrap();

    let (kafka, closed) = ended(&proxy, 1).await;
    assert_eq!(kafka.len(), 1, "{kafka:?}");
    assert_eq!(closed[0].bytes_in as usize, sent.len());
    stop(proxy).await;
    (kafka[0].clone(), closed[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_relayed_as_it_comes_that_cannot_reach_the_client_is_recorded() {
    // A large response, forwarded chunk by chunk.
    let len = 8 << 20;
    let mut reply = vec![0u8; 4 + len];
    reply[..4].copy_from_slice(&(len as u32).to_be_bytes());
    reply[4..8].copy_from_slice(&1i32.to_be_bytes());
    let (kafka, closed) = answer_a_client_gone(versions_request(1), reply.clone()).await;
    assert_eq!(kafka.api_name, "ApiVersions");
    assert_eq!(kafka.correlation_id, 1);
    assert!(
        kafka.error.starts_with("writing to the client: "),
        "{}",
        kafka.error
    );
    assert!(kafka.response_size >= 8 && (kafka.response_size as usize) < reply.len());
    assert_eq!(closed.error, kafka.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_response_that_cannot_reach_the_client_is_recorded() {
    // A Metadata response (collected whole, then rewritten) large enough to take several
    // writes.
    let topics = (0..30_000)
        .map(|n| {
            MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(
                format!("topic-{n:05}"),
            ))))
        })
        .collect();
    let metadata = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("broker-1.internal"))
            .with_port(9092)])
        .with_topics(topics);
    let reply = response(ApiKey::Metadata, 12, 1, &metadata);
    assert!(reply.len() > 1 << 20);
    let sent = request(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    let (kafka, closed) = answer_a_client_gone(sent, reply.clone()).await;
    assert_eq!(kafka.api_name, "Metadata");
    assert_eq!(kafka.correlation_id, 1);
    assert_eq!(kafka.response_size as usize, reply.len());
    assert!(kafka.rewritten);
    assert!(
        kafka.error.starts_with("writing to the client: "),
        "{}",
        kafka.error
    );
    assert_eq!(closed.error, kafka.error);
}
