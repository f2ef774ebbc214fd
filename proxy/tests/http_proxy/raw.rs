//! The raw HTTP/1.1 fast path against plain sockets: pipelining, interim responses, bodies
//! read until close, and handing a connection to hyper half-way.

use futures_util::{SinkExt, StreamExt};
use http::Request;
use rig_types::{Event, EventType, RequestInfo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::origin::Origin;
use crate::support::{full, http1_client, next_head, read_to_close, send, Proxy, PATIENCE};

/// One response read off a socket.
pub(crate) struct Answer {
    pub status: u16,
    /// The head, header names lower-cased.
    pub head: String,
    pub body: Vec<u8>,
}

/// Reads one response (`Content-Length`, chunked, or until close when `until_close`) from
/// `stream`, keeping what follows it in `buf`.
pub(crate) async fn read_answer(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    until_close: bool,
) -> Answer {
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, buf).await;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end);
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
    };
    let mut body = Vec::new();
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().unwrap();
        while buf.len() < length {
            fill(stream, buf).await;
        }
        body = buf.drain(..length).collect();
    } else if header("transfer-encoding").is_some() {
        loop {
            let line = loop {
                if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                fill(stream, buf).await;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line]).unwrap(), 16).unwrap();
            while buf.len() < line + 2 + size + 2 {
                fill(stream, buf).await;
            }
            body.extend_from_slice(&buf[line + 2..line + 2 + size]);
            buf.drain(..line + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else if until_close {
        tokio::time::timeout(PATIENCE, stream.read_to_end(buf))
            .await
            .unwrap()
            .unwrap();
        body = std::mem::take(buf);
    }
    Answer { status, head, body }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
        .await
        .expect("the proxy answered in time")
        .unwrap();
    assert!(n > 0, "the proxy closed the connection early");
    buf.extend_from_slice(&chunk[..n]);
}

#[tokio::test]
async fn pipelined_requests_are_answered_and_recorded_in_order() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\nfirst\
              GET /headers HTTP/1.1\r\nHost: api\r\nX-N: 2\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nthi\r\n2\r\nrd\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let first = read_answer(&mut client, &mut buf, false).await;
    assert_eq!((first.status, &first.body[..]), (200, &b"first"[..]));
    let second = read_answer(&mut client, &mut buf, false).await;
    assert!(String::from_utf8_lossy(&second.body).contains("x-n: 2\n"));
    let third = read_answer(&mut client, &mut buf, false).await;
    assert_eq!(third.body, b"third");

    let r = proxy.events.request().await;
    assert_eq!(
        (r.method.as_str(), r.request_body.as_deref()),
        ("POST", Some(&b"first"[..]))
    );
    let r = proxy.events.request().await;
    assert_eq!(
        (r.path.as_str(), &r.request_headers["X-N"][..]),
        ("/headers", &["2".to_string()][..])
    );
    let r = proxy.events.request().await;
    assert_eq!(r.request_body.as_deref(), Some(&b"third"[..]));
    assert_eq!(r.request_size, 5, "the decoded chunk data");
    assert_eq!(r.response_body.as_deref(), Some(&b"third"[..]));
    assert_eq!(
        origin.connections(),
        1,
        "one upstream connection for all three"
    );
}

/// A request head that arrives in pieces, on a connection that was idle after a first
/// exchange, is still read whole: the proxy tells Tokio the client socket is drained after a
/// short read, and the rest must wake it again.
#[tokio::test]
async fn a_request_head_arriving_in_pieces_after_an_exchange_is_answered() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    client
        .write_all(b"GET /headers HTTP/1.1\r\nHost: api\r\nX-N: 1\r\n\r\n")
        .await
        .unwrap();
    let first = read_answer(&mut client, &mut buf, false).await;
    assert_eq!(first.status, 200);
    for piece in [
        &b"GET /headers HTTP/1.1\r\nHo"[..],
        b"st: api\r\nX-N",
        b": 2\r\n\r\n",
    ] {
        client.write_all(piece).await.unwrap();
        // Let the proxy read each piece on its own (it must not wait for the rest to do so).
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = tokio::time::timeout(PATIENCE, read_answer(&mut client, &mut buf, false))
        .await
        .expect("the second request answered");
    assert!(String::from_utf8_lossy(&second.body).contains("x-n: 2\n"));
    proxy.events.request().await;
    let r = proxy.events.request().await;
    assert_eq!(&r.request_headers["X-N"][..], &["2".to_string()][..]);
}

/// A target that answers one request with `100 Continue`, reads the 4-byte body, and answers
/// `200` with the body reversed.
async fn continue_target() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            seen.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        let head = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        while seen.len() < head + 4 {
            let n = stream.read(&mut chunk).await.unwrap();
            seen.extend_from_slice(&chunk[..n]);
        }
        let mut body = seen[head..head + 4].to_vec();
        body.reverse();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(&body).await.unwrap();
        let _ = stream.read(&mut chunk).await;
    });
    addr
}

#[tokio::test]
async fn expect_100_continue_gets_the_targets_interim_response() {
    let mut proxy = Proxy::start(continue_target().await).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(
            b"POST /up HTTP/1.1\r\nHost: api\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        fill(&mut client, &mut buf).await;
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    buf.drain(..25);
    client.write_all(b"ping").await.unwrap();
    let answer = read_answer(&mut client, &mut buf, false).await;
    assert_eq!((answer.status, &answer.body[..]), (200, &b"gnip"[..]));

    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 200);
    assert_eq!(r.request_body.as_deref(), Some(&b"ping"[..]));
    assert_eq!(r.response_body.as_deref(), Some(&b"gnip"[..]));
    assert_eq!(r.request_headers["Expect"], ["100-continue"]);
    assert_eq!(r.error, "");
}

#[tokio::test]
async fn a_body_without_length_is_read_until_the_target_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            head.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
            .await
            .unwrap();
        stream.write_all(b"the close").await.unwrap();
    });
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /old HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut client, &mut Vec::new(), true).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body, b"until the close",
        "and then the proxy closed too"
    );

    let r = proxy.events.request().await;
    assert_eq!(r.response_body.as_deref(), Some(&b"until the close"[..]));
    assert_eq!(r.response_size, 15);
    assert_eq!(r.error, "");
    assert_eq!(r.response_headers["Content-Type"], ["text/plain"]);
}

#[tokio::test]
async fn a_websocket_upgrade_after_a_plain_request_goes_to_hyper_on_the_same_connection() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /headers HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_answer(&mut client, &mut buf, false).await.status, 200);
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let switched = read_answer(&mut client, &mut buf, false).await;
    assert_eq!(switched.status, 101, "{}", switched.head);
    assert!(switched
        .head
        .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="));
    assert!(buf.is_empty());

    let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    ws.send(Message::text("over the fallback")).await.unwrap();
    let echo = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::text("over the fallback"));
    drop(ws);

    let plain = proxy.events.request().await;
    assert_eq!((plain.path.as_str(), plain.status_code), ("/headers", 200));
    let upgrade = proxy.events.request().await;
    assert_eq!((upgrade.path.as_str(), upgrade.status_code), ("/ws", 101));
    assert_eq!(upgrade.upgrade, "websocket");
    let closed = proxy.events.closed().await;
    assert_eq!(closed.upgrade, "websocket");
    assert_eq!(
        origin.connections(),
        2,
        "the raw path's and hyper's upstream connections"
    );
}

#[tokio::test]
async fn odd_hop_by_hop_headers_take_the_hyper_path_which_drops_them() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for request in [
        &b"GET /headers HTTP/1.1\r\nHost: api\r\nX-Hop: 1\r\n\r\n"[..],
        b"GET /headers HTTP/1.1\r\nHost: api\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 2\r\n\
          Keep-Alive: timeout=5\r\n\r\n",
        b"GET /headers HTTP/1.1\r\nHost: api\r\nX-Hop: 3\r\n\r\n",
    ] {
        client.write_all(request).await.unwrap();
    }
    let seen: Vec<String> = [
        read_answer(&mut client, &mut buf, false).await,
        read_answer(&mut client, &mut buf, false).await,
        read_answer(&mut client, &mut buf, false).await,
    ]
    .into_iter()
    .map(|answer| String::from_utf8(answer.body).unwrap())
    .collect();
    assert_eq!(seen[0], "host: api\nx-hop: 1\n", "forwarded as sent");
    assert_eq!(
        seen[1], "host: api\n",
        "Connection, what it names and Keep-Alive dropped"
    );
    assert_eq!(
        seen[2], "host: api\nx-hop: 3\n",
        "hyper serves the rest of the connection"
    );
    for expected in [Some("1"), None, Some("3")] {
        let r = proxy.events.request().await;
        assert_eq!(
            r.request_headers.get("X-Hop").map(|v| v[0].as_str()),
            expected
        );
        assert!(!r.request_headers.contains_key("Connection"));
        assert!(!r.request_headers.contains_key("Keep-Alive"));
    }
}

/// The event JSON without what differs from one exchange to the next.
fn comparable(r: RequestInfo) -> Value {
    let mut event = Event::new(EventType::RequestCompleted);
    event.request = Some(Box::new(r));
    let mut json = serde_json::to_value(&event).unwrap();
    let request = json["request"].as_object_mut().unwrap();
    for timing in ["started_at", "latency_ms", "duration_ms"] {
        assert!(request.remove(timing).is_some(), "{timing}");
    }
    request["response_headers"]
        .as_object_mut()
        .unwrap()
        .remove("Date")
        .expect("Date");
    json["request"].take()
}

#[tokio::test]
async fn the_raw_path_and_the_hyper_path_record_the_same_event() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();
    // `Keep-Alive` sends the second request down the hyper path; it is hop-by-hop, so it is
    // neither forwarded nor recorded.
    for keep_alive in [None, Some("timeout=5")] {
        let mut request = Request::post(proxy.url("/echo?q=%2F"))
            .header("content-type", "application/json")
            .header("x-api-key", "secret")
            .header("x-rig-probe", "1")
            .header("accept", "a")
            .header("accept", "b");
        if let Some(value) = keep_alive {
            request = request.header("keep-alive", value);
        }
        let response = send(&client, request.body(full(r#"{"a":1}"#)).unwrap()).await;
        assert_eq!(response.body, r#"{"a":1}"#);
    }
    let raw = proxy.events.request().await;
    let hyper = proxy.events.request().await;
    assert!(raw.probe);
    assert_eq!(raw.request_headers["X-Api-Key"], ["[REDACTED]"]);
    assert_eq!(comparable(raw), comparable(hyper));
}

/// A target that answers one request per connection (keep-alive as far as the proxy can tell)
/// and then closes it; returns the number of connections it accepted so far.
async fn one_shot_target() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&chunk[..read]),
                    }
                }
                let body = format!("connection {n}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_target_that_closed_the_kept_connection_gets_a_new_one() {
    let (target, accepted) = one_shot_target().await;
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for expected in ["connection 1", "connection 2", "connection 3"] {
        client
            .write_all(b"GET /again HTTP/1.1\r\nHost: api\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut client, &mut buf, false).await;
        assert_eq!(answer.body, expected.as_bytes());
        let r = proxy.events.request().await;
        assert_eq!((r.status_code, r.error.as_str()), (200, ""));
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);

    // A pipelined request meets the closed connection before anything can notice: it is sent
    // again over a new one.
    client
        .write_all(b"GET /a HTTP/1.1\r\nHost: api\r\n\r\nGET /b HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .unwrap();
    for expected in ["connection 4", "connection 5"] {
        let answer = read_answer(&mut client, &mut buf, false).await;
        assert_eq!(answer.body, expected.as_bytes());
        let r = proxy.events.request().await;
        assert_eq!((r.status_code, r.error.as_str()), (200, ""));
    }
}

#[tokio::test]
async fn a_failed_exchange_on_the_raw_path_keeps_the_client_connection() {
    let (_dead, target) = crate::support::dead_port().await;
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        client
            .write_all(b"POST /orders HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .unwrap();
        let answer = read_answer(&mut client, &mut buf, false).await;
        assert_eq!(answer.status, 502);
        assert!(
            answer.head.contains("x-rig-proxy-error: connect-refused"),
            "{}",
            answer.head
        );
        let r = proxy.events.request().await;
        assert_eq!(r.status_code, 502);
        assert_eq!(r.request_size, 0, "nothing of the body reached a target");
        assert_eq!(r.response_headers["X-Rig-Proxy-Error"], ["connect-refused"]);
        assert!(r.error.starts_with("upstream: the target "), "{}", r.error);
    }
}

/// A target that answers `GET /warm` and keeps the connection, and closes the connection
/// without answering any other request once it has read it (as a server whose handler
/// crashed). Every request it read goes to the returned channel as `METHOD /path`.
async fn crashing_target() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let answer = read_answer_request(&mut stream, &mut buf).await;
                    let Some(request) = answer else { return };
                    let _ = tx.send(request.clone());
                    if request != "GET /warm" {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if stream.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// The next request `crashing_target` read; fails the test if none comes.
async fn next_request(seen: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(crate::support::PATIENCE, seen.recv())
        .await
        .expect("the target got the request in time")
        .expect("the target runs")
}

/// Reads one request (head and `Content-Length` body) off `stream`; `METHOD /path`, or
/// `None` at end of file.
async fn read_answer_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                let line = head.lines().next().unwrap_or_default().to_string();
                buf.drain(..end + 4 + length);
                let mut parts = line.split(' ');
                let method = parts.next().unwrap_or_default().to_ascii_uppercase();
                return Some(format!("{method} {}", parts.next().unwrap_or_default()));
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn a_request_the_target_may_have_acted_on_is_not_sent_twice() {
    let (target, mut seen) = crashing_target().await;
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    let cases = [
        // (request, times the target gets it)
        ("POST /orders HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\nhi", 1),
        ("DELETE /orders/1 HTTP/1.1\r\nHost: api\r\n\r\n", 1),
        // Safe methods, and requests declared idempotent, are sent again once over a fresh
        // connection (which the target closes as well).
        ("GET /report HTTP/1.1\r\nHost: api\r\n\r\n", 2),
        (
            "POST /payments HTTP/1.1\r\nHost: api\r\nIdempotency-Key: k1\r\nContent-Length: 2\r\n\r\nhi",
            2,
        ),
    ];
    for (request, times) in cases {
        // Parks a kept connection for the next request to reuse.
        client
            .write_all(b"GET /warm HTTP/1.1\r\nHost: api\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_answer(&mut client, &mut buf, false).await.status, 200);
        assert_eq!(proxy.events.request().await.status_code, 200);
        assert_eq!(next_request(&mut seen).await, "GET /warm");

        client.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut client, &mut buf, false).await;
        assert_eq!(answer.status, 502, "{request}");
        let r = proxy.events.request().await;
        assert_eq!(r.status_code, 502);
        assert!(r.error.contains("closed the connection"), "{}", r.error);

        let line = request.split(" HTTP/1.1").next().unwrap();
        for _ in 0..times {
            assert_eq!(next_request(&mut seen).await, line, "{request}");
        }
        assert!(
            seen.try_recv().is_err(),
            "{line} reached the target more than {times} time(s)"
        );
    }
}

#[tokio::test]
async fn on_the_hyper_path_only_bodiless_requests_safe_to_repeat_are_sent_twice() {
    let (target, mut seen) = crashing_target().await;
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    // `Keep-Alive` is hop-by-hop: it sends the connection down the hyper path, which keeps an
    // upstream connection of its own for the client connection.
    let cases = [
        // (request, times the target gets it)
        ("POST /orders", "Content-Length: 2\r\n\r\nhi", 1),
        ("DELETE /orders/1", "\r\n", 1),
        ("GET /report", "\r\n", 2),
        ("HEAD /report", "\r\n", 2),
        (
            "POST /payments",
            "Idempotency-Key: k1\r\nContent-Length: 0\r\n\r\n",
            2,
        ),
        // Its body has streamed to the target: there is nothing left to send again.
        (
            "POST /payments",
            "Idempotency-Key: k2\r\nContent-Length: 2\r\n\r\nhi",
            1,
        ),
    ];
    for (line, rest, times) in cases {
        // Opens the upstream connection the next request reuses.
        client
            .write_all(b"GET /warm HTTP/1.1\r\nHost: api\r\nKeep-Alive: timeout=5\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_answer(&mut client, &mut buf, false).await.status, 200);
        assert_eq!(proxy.events.request().await.status_code, 200);
        assert_eq!(next_request(&mut seen).await, "GET /warm");

        let request = format!("{line} HTTP/1.1\r\nHost: api\r\nKeep-Alive: timeout=5\r\n{rest}");
        client.write_all(request.as_bytes()).await.unwrap();
        let status = if line.starts_with("HEAD") {
            take_head(&mut client, &mut buf).await[9..12].to_string()
        } else {
            read_answer(&mut client, &mut buf, false)
                .await
                .status
                .to_string()
        };
        assert_eq!(status, "502", "{request}");
        let r = proxy.events.request().await;
        assert_eq!(r.status_code, 502);
        assert!(r.error.contains("closed the connection"), "{}", r.error);

        for _ in 0..times {
            assert_eq!(next_request(&mut seen).await, line, "{request}");
        }
        assert!(
            seen.try_recv().is_err(),
            "{line} reached the target more than {times} time(s)"
        );
    }
}

#[tokio::test]
async fn an_invalid_chunked_request_body_is_answered_and_recorded_as_on_the_hyper_path() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    // The same request on the raw path, and on the hyper path (`TE: trailers` takes it there).
    for extra in ["", "TE: trailers\r\nConnection: TE\r\n"] {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: api\r\n{extra}Transfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\nzz\r\n"
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut client).await;
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(
            answer.starts_with("http/1.1 502 bad gateway"),
            "{extra:?}: {answer}"
        );
        assert!(
            answer.contains("x-rig-proxy-error: client-aborted"),
            "{answer}"
        );
        let r = proxy.events.request().await;
        assert_eq!(r.status_code, 502, "{extra:?}");
        assert_eq!(
            r.request_size, 5,
            "{extra:?}: the chunk before the broken one"
        );
        assert!(
            r.error
                .starts_with("client: the request body broke off after 5 bytes"),
            "{extra:?}: {}",
            r.error
        );
    }
}

#[tokio::test]
async fn a_length_beside_chunked_encoding_does_not_reach_the_client() {
    // RFC 9112 §6.3: chunked overrides the length, and an intermediary removes the length.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_answer_request(&mut stream, &mut buf).await.is_some() {
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut proxy = Proxy::start(target).await;
    // The raw path, then the hyper path (`TE: trailers` takes it there).
    for extra in ["", "TE: trailers\r\nConnection: TE\r\n"] {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!("GET /x HTTP/1.1\r\nHost: api\r\n{extra}\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let answer = read_answer(&mut client, &mut buf, false).await;
        assert_eq!(answer.status, 200);
        assert!(
            !answer.head.contains("content-length"),
            "{extra:?}: {}",
            answer.head
        );
        assert_eq!(answer.body, b"hello", "{extra:?}");
        let r = proxy.events.request().await;
        assert_eq!(r.response_size, 5);
        assert!(
            !r.response_headers.contains_key("Content-Length"),
            "{extra:?}"
        );
    }
}

/// A head that stops half-way (slowloris) is answered `408` once the head timeout is over,
/// and recorded; the target never hears of it. A keep-alive connection idle for longer than
/// the timeout between requests is not cut.
#[tokio::test]
async fn a_request_head_that_stops_half_way_is_answered_408_and_recorded() {
    let origin = Origin::start().await;
    let settings = rig_proxy::http::HttpSettings {
        head_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let mut proxy = Proxy::with(origin.addr.to_string(), settings).await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /slowloris HTTP/1.1\r\nHost: api\r\nX-A: ")
        .await
        .unwrap();
    let answer = read_to_close(&mut client).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 408);
    assert_eq!(
        r.error,
        "client: the request head did not arrive within 0.3 s (41 bytes of it came)"
    );
    assert_eq!(origin.connections(), 0);

    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        idle.write_all(b"GET /missing HTTP/1.1\r\nHost: api\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_answer(&mut idle, &mut buf, false).await.status, 404);
        assert_eq!(proxy.events.request().await.status_code, 404);
        // Idle between requests for longer than the head timeout: the condition under test.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
}

/// A target that answers each request as soon as its head is in, before the body: `200` on
/// `/ok`, after which it reads and drops the body and keeps the connection; `401` with
/// `Connection: close` on anything else, after which it shuts its side and drains what
/// comes until the other side closes (a lingering close, as servers do so that unread bytes
/// do not reset the connection under the answer).
async fn early_answer_target() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                while let Some(head) = next_head(&mut stream, &mut seen).await {
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if !head.starts_with("post /ok ") {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\
                                  Connection: close\r\n\r\ndenied",
                            )
                            .await;
                        let _ = stream.shutdown().await;
                        while let Ok(1..) = stream.read(&mut chunk).await {}
                        return;
                    }
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\naccepted")
                        .await
                        .unwrap();
                    let mut left = length;
                    while left > 0 {
                        if seen.is_empty() {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let took = left.min(seen.len());
                        seen.drain(..took);
                        left -= took;
                    }
                }
            });
        }
    });
    addr
}

/// Writes a request with a 4 MiB body (all of it, as a client that only reads once it has
/// sent does), then reads the answer.
async fn upload(client: &mut TcpStream, path: &str, buf: &mut Vec<u8>) -> Answer {
    upload_with(client, path, "", buf).await
}

/// [`upload`] with `extra` header lines.
async fn upload_with(client: &mut TcpStream, path: &str, extra: &str, buf: &mut Vec<u8>) -> Answer {
    const LEN: usize = 4 << 20;
    let head = format!("POST {path} HTTP/1.1\r\nHost: api\r\n{extra}Content-Length: {LEN}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    let body = vec![b'u'; LEN];
    tokio::time::timeout(PATIENCE, client.write_all(&body))
        .await
        .expect("the upload went through in time")
        .expect("the whole body could be sent");
    read_answer(client, buf, false).await
}

#[tokio::test]
async fn a_target_answering_before_the_body_has_come_gets_the_rest_and_keeps_the_connection() {
    let mut proxy = Proxy::start(early_answer_target().await).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let answer = upload(&mut client, "/ok", &mut buf).await;
        assert_eq!((answer.status, &answer.body[..]), (200, &b"accepted"[..]));
        let r = proxy.events.request().await;
        assert_eq!((r.path.as_str(), r.status_code), ("/ok", 200));
        assert_eq!(r.request_size, 4 << 20);
        assert_eq!(r.error, "");
    }
}

#[tokio::test]
async fn a_target_refusing_a_body_and_closing_still_gets_its_answer_to_the_client() {
    let mut proxy = Proxy::start(early_answer_target().await).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    let answer = upload(&mut client, "/private", &mut buf).await;
    assert_eq!((answer.status, &answer.body[..]), (401, &b"denied"[..]));
    // The target closed, and said so: so does the proxy, once the body is in.
    assert_eq!(read_to_close(&mut client).await, b"");
    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/private", 401));
    assert_eq!(r.request_size, 4 << 20);
    assert_eq!(r.error, "");
}

/// A target that answers every request with `answer`, on a kept connection; reports each
/// request head it got.
async fn fixed_answer_target(
    answer: Vec<u8>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (answer, heads) = (answer.clone(), heads.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_answer_request(&mut stream, &mut buf).await {
                    let _ = heads.send(head);
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Heads that curl and Python read (many lines, folded lines, a space before the colon) pass
/// on both paths, as they would directly; so do requests with many header lines.
#[tokio::test]
async fn lenient_and_large_heads_pass_as_clients_take_them() {
    let many: String = (0..150).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let answers = [
        format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 2\r\n\r\nok"),
        "HTTP/1.1 200 OK\r\nX-Fold: first\r\n  second\r\nContent-Length: 2\r\n\r\nok".into(),
        "HTTP/1.1 200 OK\r\nX-Space : v\r\nContent-Length: 2\r\n\r\nok".into(),
    ];
    for (a, answer) in answers.iter().enumerate() {
        let (target, mut heads) = fixed_answer_target(answer.clone().into_bytes()).await;
        let mut proxy = Proxy::start(target).await;
        // The raw path, then the hyper path (`TE: trailers` takes it there), then hyper with
        // more request header lines than its default allows.
        for (e, extra) in ["", "TE: trailers\r\nConnection: TE\r\n", &many]
            .iter()
            .enumerate()
        {
            let mut client = TcpStream::connect(proxy.addr).await.unwrap();
            let request = format!("GET /h HTTP/1.1\r\nHost: api\r\n{extra}\r\n");
            client.write_all(request.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            let got = read_answer(&mut client, &mut buf, false).await;
            let case = format!("answer {a}, request {e}");
            assert_eq!((got.status, &got.body[..]), (200, &b"ok"[..]), "{case}");
            // It reached the target (with 150 extra lines, hyper used to answer 431 itself).
            assert_eq!(heads.recv().await.as_deref(), Some("GET /h"), "{case}");
            let r = proxy.events.request().await;
            assert_eq!((r.path.as_str(), r.status_code), ("/h", 200), "{case}");
            assert_eq!(r.error, "", "{case}");
        }
    }
}

/// An HTTP/1.0 server that keeps the connection (`Connection: keep-alive`) gets the next
/// request on it, as its client would send it.
#[tokio::test]
async fn an_http10_keep_alive_response_keeps_the_client_connection() {
    let answer = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
    let (target, mut heads) = fixed_answer_target(answer.to_vec()).await;
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for path in ["/one", "/two"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: api\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let got = read_answer(&mut client, &mut buf, false).await;
        assert_eq!((got.status, &got.body[..]), (200, &b"ok"[..]), "{path}");
        assert_eq!(heads.recv().await.unwrap(), format!("GET {path}"));
        assert_eq!(proxy.events.request().await.path, path);
    }
}

/// The same on hyper's path (`TE: trailers` takes a request there).
#[tokio::test]
async fn on_the_hyper_path_too_an_early_answer_reaches_an_uploading_client() {
    let mut proxy = Proxy::start(early_answer_target().await).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    let extra = "TE: trailers\r\nConnection: TE\r\n";
    let answer = upload_with(&mut client, "/ok", extra, &mut buf).await;
    assert_eq!((answer.status, &answer.body[..]), (200, &b"accepted"[..]));
    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/ok", 200));
}

/// Reads a response head off `stream` into `buf` and takes it out (the rest stays); the head
/// as text.
async fn take_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, buf).await;
    };
    String::from_utf8(buf.drain(..end).collect()).unwrap()
}

/// The proxy's own answer to a `HEAD` request (the target is down) is its head alone: its
/// `Content-Length` says how long the body would be, and no body follows, so the next
/// response on the connection is read as the response it is.
#[tokio::test]
async fn a_failed_head_request_gets_the_502_head_alone_and_the_next_response_stays_whole() {
    let (_dead, target) = crate::support::dead_port().await;
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"HEAD /x HTTP/1.1\r\nHost: api\r\n\r\nGET /y HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let first = take_head(&mut client, &mut buf).await;
    assert!(first.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{first}");
    let length = first
        .to_ascii_lowercase()
        .lines()
        .find_map(|line| line.strip_prefix("content-length: ").map(str::to_string))
        .expect("the length the body would have");
    assert_ne!(length, "0", "the length of the body a GET would get");

    while buf.len() < 12 {
        fill(&mut client, &mut buf).await;
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 502"),
        "the second response follows the first head: {}",
        String::from_utf8_lossy(&buf)
    );
    let second = read_answer(&mut client, &mut buf, false).await;
    assert_eq!(second.status, 502);
    assert_eq!(second.body.len().to_string(), length);
    assert!(second.body.starts_with(b"rig proxy: "));
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));

    for (method, path) in [("HEAD", "/x"), ("GET", "/y")] {
        let r = proxy.events.request().await;
        assert_eq!((r.method.as_str(), r.path.as_str()), (method, path));
        assert_eq!(r.status_code, 502);
    }
}

/// A client uploading a body the proxy cannot forward (the target is down) sends it whole and
/// reads the whole `502`: the proxy reads the rest of the body and drops it rather than
/// closing a socket with unread bytes in it, which resets the connection (the upload fails,
/// and a client that reads only once it has sent never sees the answer). The connection then
/// serves the next request.
#[tokio::test]
async fn a_client_uploading_to_a_target_that_is_down_reads_the_whole_502() {
    const LEN: usize = 1 << 20;
    let (_dead, target) = crate::support::dead_port().await;
    let mut proxy = Proxy::start(target).await;
    // A small send buffer, so that the body cannot all wait in buffers while the proxy does
    // not read it: the client keeps sending as long as the proxy reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    let client = socket.connect(proxy.addr).await.unwrap();
    let (mut reader, mut writer) = client.into_split();
    let upload = tokio::spawn(async move {
        let head = format!("POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: {LEN}\r\n\r\n");
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&vec![b'u'; LEN]).await?;
        Ok::<_, std::io::Error>(writer)
    });

    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, length) = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end + 4]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .expect("a length")
                .parse()
                .unwrap();
            if received.len() >= end + 4 + length {
                received.drain(..end + 4);
                break (head, length);
            }
        }
        let n = tokio::time::timeout(PATIENCE, reader.read(&mut chunk))
            .await
            .expect("the answer came in time")
            .expect("the answer was read without the connection being reset");
        assert!(n > 0, "the connection closed before the whole answer");
        received.extend_from_slice(&chunk[..n]);
    };
    assert!(head.starts_with("http/1.1 502 bad gateway\r\n"), "{head}");
    assert!(
        head.contains("x-rig-proxy-error: connect-refused"),
        "{head}"
    );
    assert!(received[..length].starts_with(b"rig proxy: "));

    let mut writer = tokio::time::timeout(PATIENCE, upload)
        .await
        .expect("the upload went through in time")
        .unwrap()
        .expect("the whole body could be sent");
    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/upload", 502));
    assert_eq!(r.request_size, 0, "nothing of the body reached a target");

    writer
        .write_all(b"GET /next HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .unwrap();
    let mut client = reader.reunite(writer).unwrap();
    let mut buf = received[length..].to_vec();
    let next = read_answer(&mut client, &mut buf, false).await;
    assert_eq!(next.status, 502);
    assert_eq!(proxy.events.request().await.path, "/next");
}

/// Request targets `http::Uri` does not take (`"`, `{`, `<` are not URI characters, but
/// servers commonly accept them) are forwarded as sent, and recorded as sent.
#[tokio::test]
async fn a_target_with_characters_outside_uris_is_recorded_as_sent() {
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (target, mut heads) = fixed_answer_target(answer.to_vec()).await;
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    for path in [r#"/q?f={"a":1}"#, "/a<b>`c`|d^", "/p/{id}?x=[1]"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: api\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let got = read_answer(&mut client, &mut buf, false).await;
        assert_eq!((got.status, &got.body[..]), (200, &b"ok"[..]), "{path}");
        assert_eq!(heads.recv().await.unwrap(), format!("GET {path}"));
        let r = proxy.events.request().await;
        assert_eq!(r.path, path);
    }
}
