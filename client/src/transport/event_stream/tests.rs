//! The event stream against a scripted HTTP peer on a real loopback socket: each test plays
//! the server side of one or more connections byte for byte.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const SSE_OK: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";

fn frame(seq: u64, event_type: &str) -> String {
    format!(
        "id: {seq}\nevent: {event_type}\ndata: {{\"seq\":{seq},\"type\":\"{event_type}\",\"service\":\"api\"}}\n\n"
    )
}

/// Reads one request head and returns it lower-cased.
async fn read_request(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read request");
        assert_eq!(n, 1, "client closed before sending a full request");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

async fn listener() -> (TcpListener, Transport) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, Transport::new(addr))
}

async fn collect(stream: &mut EventStream) -> (Vec<u64>, Option<ClientError>) {
    let mut seqs = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => seqs.push(e.seq),
            Err(e) if e.is_recoverable() => continue,
            Err(e) => return (seqs, Some(e)),
        }
    }
    (seqs, None)
}

#[tokio::test]
async fn resumes_with_last_event_id_after_a_drop_without_repeats() {
    let (listener, transport) = listener().await;
    let server = tokio::spawn(async move {
        let (mut c1, _) = listener.accept().await.unwrap();
        let first = read_request(&mut c1).await;
        let body = format!(
            "{SSE_OK}{}: keepalive\n\n{}",
            frame(1, "service.starting"),
            frame(2, "service.ready")
        );
        c1.write_all(body.as_bytes()).await.unwrap();
        drop(c1);

        let (mut c2, _) = listener.accept().await.unwrap();
        let second = read_request(&mut c2).await;
        // A replay that overlaps what the client has seen must not be delivered twice.
        let body = format!(
            "{SSE_OK}{}{}",
            frame(2, "service.ready"),
            frame(4, "environment.down")
        );
        c2.write_all(body.as_bytes()).await.unwrap();
        (first, second)
    });

    let mut stream = EventStream::new(transport, "env-1".into(), None).with_logs(true);
    let (seqs, err) = collect(&mut stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(seqs, vec![1, 2, 4]);
    assert_eq!(stream.last_event_id(), Some(4));

    let (first, second) = server.await.unwrap();
    assert!(
        first.starts_with("get /environments/env-1/events?logs=true http/1.1"),
        "{first}"
    );
    assert!(!first.contains("last-event-id"), "{first}");
    assert!(second.contains("last-event-id: 2\r\n"), "{second}");
}

#[tokio::test]
async fn starting_point_is_sent_on_the_first_request() {
    let (listener, transport) = listener().await;
    let server = tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        let head = read_request(&mut c).await;
        let body = format!("{SSE_OK}{}", frame(8, "environment.down"));
        c.write_all(body.as_bytes()).await.unwrap();
        head
    });
    let mut stream = EventStream::new(transport, "e".into(), Some(7));
    assert_eq!(collect(&mut stream).await.0, vec![8]);
    let head = server.await.unwrap();
    assert!(
        head.starts_with("get /environments/e/events http/1.1"),
        "{head}"
    );
    assert!(head.contains("last-event-id: 7\r\n"), "{head}");
}

#[tokio::test]
async fn a_404_on_reconnection_means_the_environment_is_gone() {
    let (listener, transport) = listener().await;
    tokio::spawn(async move {
        let (mut c1, _) = listener.accept().await.unwrap();
        read_request(&mut c1).await;
        let body = format!("{SSE_OK}{}", frame(1, "service.ready"));
        c1.write_all(body.as_bytes()).await.unwrap();
        drop(c1);
        let (mut c2, _) = listener.accept().await.unwrap();
        read_request(&mut c2).await;
        let body = "{\"error\":\"environment not found\"}\n";
        let resp = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        c2.write_all(resp.as_bytes()).await.unwrap();
    });
    let mut stream = EventStream::new(transport, "gone".into(), None);
    let (seqs, err) = collect(&mut stream).await;
    assert_eq!(seqs, vec![1]);
    assert!(
        matches!(err, Some(ClientError::EnvironmentGone { ref id }) if id == "gone"),
        "{err:?}"
    );
    assert!(
        stream.next().await.is_none(),
        "the stream is finished after a fatal error"
    );
}

#[tokio::test]
async fn a_404_on_the_first_request_is_an_api_error() {
    let (listener, transport) = listener().await;
    tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        read_request(&mut c).await;
        let body = "{\"error\":\"environment not found\"}";
        let resp = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(resp.as_bytes()).await.unwrap();
    });
    let mut stream = EventStream::new(transport, "nope".into(), None);
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "rigd returned HTTP 404: environment not found"
    );
}

#[tokio::test]
async fn malformed_events_are_reported_and_the_stream_goes_on() {
    let (listener, transport) = listener().await;
    tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        read_request(&mut c).await;
        let body = format!(
            "{SSE_OK}id: 1\ndata: {{not json\n\n{}",
            frame(2, "environment.down")
        );
        c.write_all(body.as_bytes()).await.unwrap();
    });
    let mut stream = EventStream::new(transport, "e".into(), None);
    let first = stream.next().await.unwrap().unwrap_err();
    assert!(first.is_recoverable(), "{first}");
    assert!(
        first.to_string().starts_with("skipping malformed event 1:"),
        "{first}"
    );
    assert_eq!(stream.next().await.unwrap().unwrap().seq, 2);
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn gives_up_when_rigd_stays_unreachable() {
    let (listener, transport) = listener().await;
    tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        read_request(&mut c).await;
        let body = format!("{SSE_OK}{}", frame(1, "service.ready"));
        c.write_all(body.as_bytes()).await.unwrap();
        // Dropping the listener too: every reconnection is refused.
    });
    let mut stream = EventStream::new(transport, "e".into(), None)
        .with_timeouts(Duration::from_secs(60), Duration::from_millis(300));
    let (seqs, err) = collect(&mut stream).await;
    assert_eq!(seqs, vec![1]);
    let err = err.expect("an error after the reconnection window");
    assert!(matches!(err, ClientError::StreamLost { .. }), "{err}");
    assert!(err.to_string().contains("could not reconnect"), "{err}");
}

#[tokio::test]
async fn a_silent_connection_is_replaced() {
    let (listener, transport) = listener().await;
    let server = tokio::spawn(async move {
        let (mut c1, _) = listener.accept().await.unwrap();
        read_request(&mut c1).await;
        let body = format!("{SSE_OK}{}", frame(1, "service.ready"));
        c1.write_all(body.as_bytes()).await.unwrap();
        // Keep c1 open and silent; the client must give up on it and reconnect.
        let (mut c2, _) = listener.accept().await.unwrap();
        let head = read_request(&mut c2).await;
        let body = format!("{SSE_OK}{}", frame(2, "environment.down"));
        c2.write_all(body.as_bytes()).await.unwrap();
        drop(c1);
        head
    });
    let mut stream = EventStream::new(transport, "e".into(), None)
        .with_timeouts(Duration::from_millis(200), Duration::from_secs(10));
    let (seqs, err) = collect(&mut stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(seqs, vec![1, 2]);
    assert!(server.await.unwrap().contains("last-event-id: 1\r\n"));
}

#[tokio::test]
async fn last_event_id_counts_only_events_returned() {
    let (listener, transport) = listener().await;
    let server = tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        read_request(&mut c).await;
        // Three events in one write: all parsed at once, returned one by one.
        let body = format!(
            "{SSE_OK}{}{}{}",
            frame(5, "service.starting"),
            frame(7, "service.ready"),
            frame(9, "environment.down")
        );
        c.write_all(body.as_bytes()).await.unwrap();
    });
    let mut stream = EventStream::new(transport, "env-1".into(), None);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.seq, 5);
    assert_eq!(
        stream.last_event_id(),
        Some(5),
        "resuming from here must not skip 7 and 9"
    );
    let (rest, err) = collect(&mut stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(rest, vec![7, 9]);
    assert_eq!(stream.last_event_id(), Some(9));
    server.await.unwrap();
}
