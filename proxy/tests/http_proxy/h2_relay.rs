//! The h2c relay (connections that start with the HTTP/2 preface): frames passed to a
//! connection of the client's own, and what is recorded and answered when either side breaks
//! off. Targets that misbehave are real HTTP/2 servers (the `h2` crate) told how to fail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use rig_proxy::http::{HttpSettings, ERROR_HEADER};
use tokio::sync::{mpsc, Notify};

use crate::origin::Origin;
use crate::support::{empty, full, http2_client, pattern, read_to_close, send, Proxy, PATIENCE};

#[tokio::test]
async fn each_h2c_connection_gets_its_own_connection_to_the_target() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    for connection in 0..2 {
        // A new client, so a new connection to the proxy.
        let client = http2_client();
        let requests = (0..5).map(|i| {
            let request = Request::post(proxy.url(&format!("/echo?c={connection}&i={i}")))
                .body(full(format!("{connection}-{i}")))
                .unwrap();
            let client = client.clone();
            async move { send(&client, request).await }
        });
        for (i, response) in futures_util::future::join_all(requests)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(response.body, format!("{connection}-{i}").as_bytes());
        }
    }
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = proxy.events.request().await;
        assert_eq!(r.http_version, "HTTP/2");
        assert_eq!(r.status_code, 200);
        assert_eq!(r.error, "");
        let body = String::from_utf8(r.request_body.clone().unwrap()).unwrap();
        assert_eq!(r.response_body.as_deref(), Some(body.as_bytes()));
        assert_eq!(r.path, format!("/echo?c={}&i={}", &body[..1], &body[2..]));
        seen.push(body);
    }
    seen.sort();
    assert_eq!(seen.len(), 10);
    seen.dedup();
    assert_eq!(seen.len(), 10, "every stream recorded once");
    assert_eq!(origin.connections(), 2);
    proxy.events.assert_no_more();
}

#[tokio::test]
async fn a_mebibyte_passes_both_ways_with_flow_control_and_is_captured_to_the_limit() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http2_client();
    let body = pattern(1 << 20);
    let request = Request::post(proxy.url("/echo"))
        .body(full(body.clone()))
        .unwrap();
    let response = send(&client, request).await;
    assert_eq!(response.status, 200);
    assert!(response.body == body, "the echo came back whole");

    let r = proxy.events.request().await;
    assert_eq!((r.request_size, r.response_size), (1 << 20, 1 << 20));
    assert_eq!(r.request_body.as_deref(), Some(&body[..64 * 1024]));
    assert_eq!(r.response_body.as_deref(), Some(&body[..64 * 1024]));
    assert!(r.request_body_truncated && r.response_body_truncated);
}

/// hyper's client indexes repeated fields in its HPACK table: later requests carry them as
/// table references, which only a decoder that followed every earlier block can read.
#[tokio::test]
async fn fields_sent_as_hpack_table_references_are_recorded_on_every_request() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http2_client();
    for i in 0..20 {
        let request = Request::get(proxy.url(&format!("/headers?i={i}")))
            .header("x-same", "the same every time")
            .header("x-counter", i.to_string())
            .header("authorization", "Bearer secret")
            .body(empty())
            .unwrap();
        let response = send(&client, request).await;
        let seen = String::from_utf8(response.body.to_vec()).unwrap();
        assert!(seen.contains(&format!("x-counter: {i}\n")), "{seen}");
    }
    for i in 0..20 {
        let r = proxy.events.request().await;
        assert_eq!(r.path, format!("/headers?i={i}"));
        assert_eq!(r.method, "GET");
        assert_eq!(r.request_headers["X-Same"], ["the same every time"]);
        assert_eq!(r.request_headers["X-Counter"], [i.to_string()]);
        assert_eq!(r.request_headers["Authorization"], ["[REDACTED]"]);
        assert_eq!(
            r.response_headers["Content-Length"][0],
            r.response_size.to_string()
        );
    }
}

#[tokio::test]
async fn a_stream_the_target_resets_before_answering_gets_the_proxys_502() {
    let (target, _requests, _go) = failing_target(Failure::ResetBeforeAnswer).await;
    let mut proxy = Proxy::start(target).await;
    let client = http2_client();
    let response = send(
        &client,
        Request::get(proxy.url("/reset")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers[ERROR_HEADER], "upstream-reset");
    // No body: its DATA would spend flow-control window behind the target's back.
    assert!(response.body.is_empty());
    assert!(!response.headers.contains_key("content-length"));

    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/reset", 502));
    assert!(r.error.starts_with("upstream: "), "{}", r.error);
    assert!(
        r.error.contains("RST_STREAM with INTERNAL_ERROR"),
        "{}",
        r.error
    );
    assert_eq!(r.response_body.as_deref(), None);
    assert_eq!(r.response_size, 0);

    // The connection is still good for the next stream.
    let again = send(
        &client,
        Request::get(proxy.url("/again")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::BAD_GATEWAY);
    assert_eq!(proxy.events.request().await.path, "/again");
}

#[tokio::test]
async fn a_target_closing_before_answering_gets_the_client_a_502() {
    let (target, _requests, _go) = failing_target(Failure::CloseBeforeAnswer).await;
    let mut proxy = Proxy::start(target).await;
    let client = http2_client();
    let response = send(
        &client,
        Request::get(proxy.url("/gone")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers[ERROR_HEADER], "upstream-closed");

    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 502);
    assert!(
        r.error.starts_with(&format!(
            "upstream: the target {target} closed the connection before responding"
        )),
        "{}",
        r.error
    );
}

/// A target that only speaks HTTP/1.1 answers the h2c preface in HTTP/1.1 (`400`, as Node's
/// `http` server does). The client is answered for it as on hyper's path, with a 502 saying
/// so, rather than having its connection closed as if the target had sent an oversized frame.
#[tokio::test]
async fn a_target_answering_the_preface_in_http1_gets_the_client_a_502_saying_so() {
    let target = crate::http2::http1_only_target().await;
    let mut proxy = Proxy::start(target).await;
    let client = http2_client();
    let response = send(
        &client,
        Request::post(proxy.url("/up")).body(full("hello")).unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers[ERROR_HEADER], "upstream-protocol");

    let r = proxy.events.request().await;
    assert_eq!(r.http_version, "HTTP/2");
    assert_eq!(r.status_code, 502);
    assert_eq!(
        r.error,
        format!(
            "upstream: the target {target} did not answer in HTTP/2 (the client spoke HTTP/2, \
             so the proxy used h2c; does the target support h2c?): it answered \
             \"HTTP/1.1 400 Bad Request\""
        )
    );
    proxy.events.assert_no_more();
}

/// A client that sends its first request only once the server's `SETTINGS` came (as grpc-go
/// and grpc-js do) still gets its request answered with the 502 when the target only speaks
/// HTTP/1.1: the proxy sends the `SETTINGS` the target never will.
#[tokio::test]
async fn a_client_waiting_for_settings_gets_the_502_from_a_target_that_only_speaks_http1() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = crate::http2::http1_only_target().await;
    let mut proxy = Proxy::start(target).await;
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // The preface and an empty SETTINGS frame; then nothing until the server's SETTINGS.
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut read = Vec::new();
    let first = tokio::time::timeout(PATIENCE, async {
        while read.len() < 9 {
            let mut chunk = [0u8; 1024];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed before any frame");
            read.extend_from_slice(&chunk[..n]);
        }
        read[..9].to_vec()
    })
    .await
    .expect("a frame in time");
    assert_eq!(first[3], 0x4, "the first frame is SETTINGS: {first:?}");
    assert_eq!(&first[5..9], &[0, 0, 0, 0], "on stream 0");

    // GET / on stream 1 (HPACK: :method GET, :scheme http, :path / from the static table,
    // :authority as a literal), ending the stream.
    let authority = proxy.addr.to_string();
    let mut block = vec![0x82, 0x86, 0x84, 0x01, authority.len() as u8];
    block.extend_from_slice(authority.as_bytes());
    let mut headers = vec![0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1];
    headers.extend_from_slice(&block);
    socket.write_all(&headers).await.unwrap();
    let answered = read_to_close(&mut socket).await;
    read.extend_from_slice(&answered);
    assert!(
        read.windows(3).any(|w| w == b"502"),
        "the client's stream is answered with the 502"
    );

    let r = proxy.events.request().await;
    assert_eq!(r.http_version, "HTTP/2");
    assert_eq!(r.status_code, 502);
    assert!(
        r.error
            .ends_with("it answered \"HTTP/1.1 400 Bad Request\""),
        "{}",
        r.error
    );
    proxy.events.assert_no_more();
}

#[tokio::test]
async fn a_target_closing_mid_response_breaks_the_stream_and_is_recorded() {
    let (target, _requests, go) = failing_target(Failure::CloseMidResponse).await;
    let mut proxy = Proxy::start(target).await;
    let client = http2_client();
    let response = tokio::time::timeout(
        PATIENCE,
        client.request(Request::get(proxy.url("/half")).body(empty()).unwrap()),
    )
    .await
    .expect("response headers in time")
    .expect("response headers");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(PATIENCE, body.frame())
        .await
        .expect("the first bytes in time")
        .expect("a frame")
        .expect("data");
    assert_eq!(first.into_data().unwrap(), "first half");
    go.notify_one();
    let rest = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("the body ended, not hung");
    assert!(rest.is_err(), "the client sees the stream broken off");

    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 200);
    assert_eq!(r.response_body.as_deref(), Some(&b"first half"[..]));
    // Closed or reset: a socket closed with unread bytes in it resets the connection.
    assert!(
        r.error
            .starts_with(&format!("upstream: the target {target} ")),
        "{}",
        r.error
    );
    assert!(
        r.error.contains(" after 10 bytes of the response body"),
        "{}",
        r.error
    );
}

#[tokio::test]
async fn a_stream_the_client_cancels_is_recorded() {
    let (target, mut requests, _go) = failing_target(Failure::NeverAnswer).await;
    let mut proxy = Proxy::start(target).await;
    let client = http2_client();
    let url = proxy.url("/wait");
    let call = tokio::spawn(async move {
        let _ = client
            .request(Request::get(url).body(empty()).unwrap())
            .await;
    });
    let path = tokio::time::timeout(PATIENCE, requests.recv())
        .await
        .expect("the request reached the target");
    assert_eq!(path.as_deref(), Some("/wait"));
    // Dropping the response future makes hyper reset the stream (CANCEL).
    call.abort();

    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/wait", 0));
    assert_eq!(r.error, "client: reset the stream (CANCEL)");
}

#[tokio::test]
async fn a_stream_still_waiting_at_shutdown_is_recorded_after_the_grace_period() {
    let (target, mut requests, _go) = failing_target(Failure::NeverAnswer).await;
    let settings = HttpSettings {
        shutdown_grace: Duration::from_millis(100),
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(target.to_string(), settings).await;
    let client = http2_client();
    let url = proxy.url("/held");
    let call = tokio::spawn(async move {
        client
            .request(Request::get(url).body(empty()).unwrap())
            .await
    });
    let path = tokio::time::timeout(PATIENCE, requests.recv())
        .await
        .expect("the request reached the target");
    assert_eq!(path.as_deref(), Some("/held"));

    let mut events = proxy.take_events();
    proxy.stop().await.unwrap();
    let r = events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/held", 0));
    assert_eq!(r.error, "proxy: shut down before the target responded");
    let answer = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the client is not left hanging")
        .unwrap();
    assert!(answer.is_err(), "the connection closed under the request");
}

/// HPACK's static-table index of `:method: GET` and `:method: POST`.
pub(crate) const GET: u8 = 0x82;
pub(crate) const POST: u8 = 0x83;
/// The `END_STREAM` flag of a `HEADERS` frame.
const END_STREAM: u8 = 0x1;

/// The first bytes of an h2c connection written by hand: the preface, empty `SETTINGS`, and
/// one request head on `stream` (`method` and `http` from HPACK's static table, `:path` as a
/// literal), with `END_HEADERS` and `flags`.
pub(crate) fn connection_start(method: u8, path: &str, stream: u8, flags: u8) -> Vec<u8> {
    // `:path` as a literal without indexing (name index 4).
    let mut block = vec![method, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    wire.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x4 | flags, 0, 0, 0, stream]);
    wire.extend_from_slice(&block);
    wire
}

/// A client that stops sending with a stream unanswered gave it up: the target closing after
/// it is not the target's failure.
#[tokio::test]
async fn a_stream_left_by_a_client_that_closed_is_blamed_on_the_client() {
    use tokio::io::AsyncWriteExt;

    let (target, mut requests, _go) = failing_target(Failure::NeverAnswer).await;
    let mut proxy = Proxy::start(target).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let wire = connection_start(GET, "/half-closed", 1, END_STREAM);
    client.write_all(&wire).await.unwrap();
    let seen = tokio::time::timeout(PATIENCE, requests.recv())
        .await
        .expect("the request reached the target");
    assert_eq!(seen.as_deref(), Some("/half-closed"));
    client.shutdown().await.unwrap();

    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/half-closed", 0));
    assert_eq!(
        r.error,
        "client: the connection closed before the target responded"
    );
}

/// A frame announced larger than the target accepts (16 KiB: it sent no larger
/// `SETTINGS_MAX_FRAME_SIZE`) would be refused by the target at once; the relay does not hold
/// the connection open waiting for 16 MiB of it, but closes it and records why.
#[tokio::test]
async fn a_frame_larger_than_the_target_accepts_closes_the_connection() {
    use tokio::io::AsyncWriteExt;

    let (target, mut requests, _go) = failing_target(Failure::NeverAnswer).await;
    let mut proxy = Proxy::start(target).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let wire = connection_start(POST, "/upload", 1, 0);
    client.write_all(&wire).await.unwrap();
    let seen = tokio::time::timeout(PATIENCE, requests.recv())
        .await
        .expect("the request reached the target");
    assert_eq!(seen.as_deref(), Some("/upload"));
    // A DATA frame announcing 16 MiB - 1, of which a little comes.
    let mut data = vec![0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1];
    data.extend_from_slice(&[0x5a; 1000]);
    client.write_all(&data).await.unwrap();

    read_to_close(&mut client).await;
    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), ("/upload", 0));
    assert_eq!(
        r.error,
        "client: sent an HTTP/2 frame larger than the target accepts (FRAME_SIZE_ERROR); the \
         proxy closed the connection"
    );
}

/// A target that refuses the connection with a `GOAWAY` (here: the client opened an even
/// stream, a protocol error) has told the client which streams it did not process; the relay
/// adds no answer on those streams and no `GOAWAY` of its own that would contradict it.
#[tokio::test]
async fn after_the_targets_goaway_the_relay_sends_nothing_that_contradicts_it() {
    use tokio::io::AsyncWriteExt;

    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    for stream in [0u8, 2] {
        let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let wire = connection_start(GET, "/echo", stream, END_STREAM);
        client.write_all(&wire).await.unwrap();
        let answer = read_to_close(&mut client).await;

        let mut goaways = 0;
        let mut at = 0;
        while at + 9 <= answer.len() {
            let len = usize::from(answer[at]) << 16
                | usize::from(answer[at + 1]) << 8
                | usize::from(answer[at + 2]);
            let (kind, id) = (answer[at + 3], answer[at + 8]);
            assert!(
                !matches!(kind, 0x0 | 0x1 | 0x3),
                "stream {stream}: a DATA, HEADERS or RST_STREAM frame on stream {id}"
            );
            if kind == 0x7 {
                goaways += 1;
                assert_eq!(&answer[at + 9..at + 13], &[0, 0, 0, 0], "last stream 0");
            }
            at += 9 + len;
        }
        assert_eq!(goaways, 1, "stream {stream}: only the target's GOAWAY");
        let r = proxy.events.request().await;
        assert_eq!((r.path.as_str(), r.status_code), ("/echo", 0));
        assert!(r.error.starts_with("upstream: the target "), "{}", r.error);
    }
}

/// How a [`failing_target`] fails every request.
#[derive(Clone, Copy)]
enum Failure {
    /// `RST_STREAM (INTERNAL_ERROR)` instead of a response.
    ResetBeforeAnswer,
    /// Closes the connection instead of responding.
    CloseBeforeAnswer,
    /// Sends the response head and 10 bytes, then closes the connection.
    CloseMidResponse,
    /// Holds the request without answering.
    NeverAnswer,
}

/// An h2c target failing every request as `how` says; reports each request's path. A
/// `CloseMidResponse` target closes when the returned `Notify` is notified.
async fn failing_target(
    how: Failure,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>, Arc<Notify>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (paths, requests) = mpsc::unbounded_channel();
    let go = Arc::new(Notify::new());
    let notify = go.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let paths = paths.clone();
            let go = go.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                let mut held = Vec::new();
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let _ = paths.send(request.uri().path().to_string());
                    match how {
                        Failure::ResetBeforeAnswer => {
                            respond.send_reset(h2::Reason::INTERNAL_ERROR)
                        }
                        Failure::CloseBeforeAnswer => return,
                        Failure::CloseMidResponse => {
                            let head = http::Response::builder().body(()).unwrap();
                            let mut body = respond.send_response(head, false).unwrap();
                            body.send_data(Bytes::from_static(b"first half"), false)
                                .unwrap();
                            // Keep the connection going (the frames go out as it is
                            // polled) until the client has them, then drop it.
                            tokio::select! {
                                _ = async { while connection.accept().await.is_some() {} } => {}
                                _ = go.notified() => {}
                            }
                            return;
                        }
                        Failure::NeverAnswer => held.push(respond),
                    }
                }
            });
        }
    });
    (addr, requests, notify)
}

/// RFC 9113 §8.1: a server may answer before the request has ended, then reset the stream
/// with `NO_ERROR` to stop the upload. The call succeeded: the client gets the target's
/// trailers, and the record no error.
#[tokio::test]
async fn a_reset_with_no_error_after_a_complete_response_leaves_the_call_ok() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    // The reset goes out once the client has read the response (h2's client reports a reset
    // that overtakes the response it has not read yet as an error).
    let (read, reset) = tokio::sync::oneshot::channel::<()>();
    let reset = Arc::new(tokio::sync::Mutex::new(Some(reset)));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let reset = reset.clone();
            tokio::spawn(async move {
                let mut connection = h2::server::handshake(socket).await.unwrap();
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let grpc = http::Response::builder().header("content-type", "application/grpc");
                    if request.uri().path() != "/pkg.Svc/Call" {
                        // Server reflection, which the proxy asks for: not offered.
                        let head = grpc.header("grpc-status", "12").body(()).unwrap();
                        let _ = respond.send_response(head, true);
                        continue;
                    }
                    let mut body = respond
                        .send_response(grpc.body(()).unwrap(), false)
                        .unwrap();
                    // An empty message, then the status, while the request is still open.
                    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)
                        .unwrap();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    body.send_trailers(trailers).unwrap();
                    let Some(reset) = reset.lock().await.take() else {
                        return;
                    };
                    tokio::select! {
                        _ = async { while connection.accept().await.is_some() {} } => return,
                        _ = reset => body.send_reset(h2::Reason::NO_ERROR),
                    }
                }
            });
        }
    });
    let mut proxy = Proxy::start(target).await;

    let socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(socket).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = Request::post(proxy.url("/pkg.Svc/Call"))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let (response, mut upload) = client.send_request(request, false).unwrap();
    upload
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap();
    let mut body = response.into_body();
    let mut received = Vec::new();
    while let Some(data) = body.data().await {
        received.extend_from_slice(&data.unwrap());
    }
    assert_eq!(received, [0, 0, 0, 0, 0]);
    let trailers = body
        .trailers()
        .await
        .unwrap()
        .expect("the target's trailers");
    assert_eq!(trailers["grpc-status"], "0", "{trailers:?}");
    read.send(()).unwrap();
    let event = proxy.events.next().await;
    let call = event.grpc_call.expect("a gRPC call");
    assert_eq!(call.grpc_status, "OK", "{call:?}");
    assert_eq!(call.error, "", "{call:?}");
    assert_eq!(call.response_size, 5);
}

/// A `HEAD` stream the target resets gets the proxy's `502` as a head alone (`END_STREAM` on
/// its `HEADERS`): a body on it would be a protocol error to the client.
#[tokio::test]
async fn a_head_stream_the_target_resets_gets_the_502_head_alone() {
    let (target, _requests, _go) = failing_target(Failure::ResetBeforeAnswer).await;
    let mut proxy = Proxy::start(target).await;
    let client = http2_client();
    let response = send(
        &client,
        Request::head(proxy.url("/reset")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers[ERROR_HEADER], "upstream-reset");
    assert!(response.body.is_empty(), "{:?}", response.body);
    let r = proxy.events.request().await;
    assert_eq!((r.method.as_str(), r.status_code), ("HEAD", 502));
}

/// A `:path` `http::Uri` does not take (a `"` in the query, `<` in the path: an HTTP/2 peer
/// such as the `h2` crate refuses it, yet it can be sent) is recorded as it was sent.
#[tokio::test]
async fn a_path_outside_uris_is_recorded_as_sent() {
    use tokio::io::AsyncWriteExt;

    let (target, _requests, _go) = failing_target(Failure::NeverAnswer).await;
    let mut proxy = Proxy::start(target).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let path = r#"/a<b>?f={"a":1}"#;
    let wire = connection_start(GET, path, 1, END_STREAM);
    client.write_all(&wire).await.unwrap();
    // The target refuses the path (`RST_STREAM`): the client gets the proxy's 502.
    let r = proxy.events.request().await;
    assert_eq!((r.path.as_str(), r.status_code), (path, 502));
}
