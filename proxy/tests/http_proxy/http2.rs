//! HTTP/2 without TLS (h2c), with prior knowledge and by `Upgrade: h2c`, end to end.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Version};
use rig_proxy::http::HttpSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::bodies::expected_trailers;
use crate::origin::Origin;
use crate::support::{
    curl, curl_output, empty, full, http2_client, next_head, read_head, send, Proxy, PATIENCE,
};

#[tokio::test]
async fn curl_with_prior_knowledge_speaks_h2c_end_to_end() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        "over h2",
        &proxy.url("/echo?v=2"),
    ])
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.version, "HTTP/2");
    assert_eq!(response.body, b"over h2");
    assert_eq!(response.header("x-origin-version"), Some("HTTP/2.0"));

    let r = proxy.events.request().await;
    assert_eq!(r.http_version, "HTTP/2");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/echo?v=2");
    assert_eq!(r.status_code, 200);
    assert_eq!(r.request_body.as_deref(), Some(&b"over h2"[..]));
    assert_eq!(r.response_body.as_deref(), Some(&b"over h2"[..]));
    assert!(r.request_headers["User-Agent"][0].starts_with("curl/"));
}

#[tokio::test]
async fn the_authority_reaches_the_origin_unchanged() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http2_client();

    let request = Request::get(proxy.url("/headers"))
        .version(Version::HTTP_2)
        .body(empty())
        .unwrap();
    let response = send(&client, request).await;
    let seen = String::from_utf8(response.body.to_vec()).unwrap();
    assert!(
        seen.contains(&format!(":authority: {}\n", proxy.addr)),
        "{seen}"
    );
    proxy.events.request().await;
}

#[tokio::test]
async fn trailers_are_forwarded_over_h2() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http2_client();

    let request = Request::post(proxy.url("/trailers"))
        // Not `application/grpc`: a gRPC call would be recorded as `grpc.call.completed`.
        .header("content-type", "application/octet-stream")
        .header("te", "trailers")
        .body(full("ping"))
        .unwrap();
    let response = send(&client, request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "hello");
    assert_eq!(response.trailers.expect("trailers"), expected_trailers());

    let r = proxy.events.request().await;
    assert_eq!(r.http_version, "HTTP/2");
    assert_eq!(r.request_body.as_deref(), Some(&b"ping"[..]));
    assert_eq!(r.response_body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(r.request_headers["Te"], ["trailers"]);
    assert_eq!(r.error, "");
}

#[tokio::test]
async fn h2_streams_share_one_upstream_connection() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http2_client();

    let requests = (0..10).map(|i| {
        let client = client.clone();
        let url = proxy.url(&format!("/echo?i={i}"));
        async move {
            let request = Request::post(url).body(full(format!("{i}"))).unwrap();
            send(&client, request).await
        }
    });
    let responses = futures_util::future::join_all(requests).await;
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.body, format!("{i}").as_bytes());
    }
    let mut paths = Vec::new();
    for _ in 0..10 {
        paths.push(proxy.events.request().await.path);
    }
    paths.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("/echo?i={i}")).collect();
    expected.sort();
    assert_eq!(paths, expected);
    assert_eq!(origin.connections(), 1, "streams are multiplexed upstream");
}

/// Requests that arrive by `Upgrade: h2c` are served by hyper and go over the proxy's one
/// shared h2c connection to the target, which is retired when unused.
#[tokio::test]
async fn an_unused_upstream_h2c_connection_is_closed_and_reopened_when_needed() {
    let (target, mut closed) = h2_target().await;
    let settings = HttpSettings {
        pool_idle_timeout: Duration::from_millis(50),
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(target.to_string(), settings).await;

    let first = curl(&["--http2", &proxy.url("/a")]).await;
    assert_eq!((first.status, &first.body[..]), (200, &b"ok"[..]));
    assert_eq!(first.version, "HTTP/2", "upgraded");
    // First the proxy's question whether the target speaks h2c (no request), then the
    // connection that carried the upgraded request.
    for carried in [0, 1] {
        let opened = tokio::time::timeout(PATIENCE, closed.recv())
            .await
            .expect("the idle upstream connection was not closed");
        assert_eq!(opened, Some(carried));
    }

    let second = curl(&["--http2", &proxy.url("/b")]).await;
    assert_eq!((second.status, &second.body[..]), (200, &b"ok"[..]));
    for path in ["/a", "/b"] {
        let event = proxy.events.request().await;
        assert_eq!((event.path.as_str(), event.status_code), (path, 200));
    }
}

/// A raw h2c target that answers every request `200 ok` and reports, when a connection ends,
/// how many requests it carried.
async fn h2_target() -> (SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                let mut served = 0;
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    served += 1;
                    let head = http::Response::builder().body(()).unwrap();
                    let mut body = respond.send_response(head, false).unwrap();
                    let _ = body.send_data(bytes::Bytes::from_static(b"ok"), true);
                }
                let _ = closed.send(served);
            });
        }
    });
    (addr, closed)
}

#[tokio::test]
async fn curl_http2_upgrades_a_cleartext_connection_to_h2c() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&["--http2", &proxy.url("/headers?via=upgrade")]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.version, "HTTP/2", "answered on stream 1");
    assert_eq!(response.header("x-origin-version"), Some("HTTP/2.0"));
    let seen = String::from_utf8(response.body).unwrap();
    assert!(
        seen.contains(&format!(":authority: {}\n", proxy.addr)),
        "{seen}"
    );
    assert!(!seen.contains("upgrade"), "{seen}");
    assert!(!seen.contains("http2-settings"), "{seen}");

    let r = proxy.events.request().await;
    assert_eq!(r.http_version, "HTTP/2");
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/headers?via=upgrade");
    assert_eq!(r.status_code, 200);
    assert_eq!(r.upgrade, "");
    assert_eq!(r.error, "");
    assert!(r.request_headers["User-Agent"][0].starts_with("curl/"));
    assert!(!r.request_headers.contains_key("Upgrade"));
    assert!(!r.request_headers.contains_key("Http2-Settings"));
    proxy.events.assert_no_more();
}

#[tokio::test]
async fn an_upgraded_connection_carries_the_following_requests_as_h2_streams() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    // curl reuses the connection for the second URL: stream 3 after the upgrade's stream 1.
    let output = curl_output(&[
        "--http2",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{response_code} %{num_connects}\n",
        &proxy.url("/echo?n=1"),
        &proxy.url("/echo?n=2"),
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&output), "2 200 1\n2 200 0\n");

    for n in 1..=2 {
        let r = proxy.events.request().await;
        assert_eq!(r.http_version, "HTTP/2");
        assert_eq!(r.path, format!("/echo?n={n}"));
        assert_eq!(r.status_code, 200);
    }
    proxy.events.assert_no_more();
}

#[tokio::test]
async fn an_h2c_upgrade_with_a_body_is_answered_in_http1() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    // What `curl --http2` sends, with a body.
    let response = curl(&[
        "-H",
        "Connection: Upgrade, HTTP2-Settings",
        "-H",
        "Upgrade: h2c",
        "-H",
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
        "--data-binary",
        "in http/1.1",
        &proxy.url("/echo"),
    ])
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.version, "HTTP/1.1");
    assert_eq!(response.body, b"in http/1.1");
    assert_eq!(response.header("x-origin-version"), Some("HTTP/1.1"));

    let r = proxy.events.request().await;
    assert_eq!(r.http_version, "HTTP/1.1");
    assert_eq!(r.method, "POST");
    assert_eq!(r.request_body.as_deref(), Some(&b"in http/1.1"[..]));
    assert_eq!(r.upgrade, "");
    assert!(!r.request_headers.contains_key("Upgrade"));
}

/// Asks for `Upgrade: h2c` on a new connection and reads the `101` head.
async fn switched_to_h2c(proxy: &Proxy) -> TcpStream {
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let request = "GET /echo?x=1 HTTP/1.1\r\nHost: api\r\n\
        Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
        HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    client.write_all(request.as_bytes()).await.unwrap();
    let head = String::from_utf8(read_head(&mut client).await).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    client
}

/// A client switched to HTTP/2 that closes, or speaks HTTP/1.1 on, leaves its request
/// unsent: it is recorded with the `101` it got and why it went no further.
#[tokio::test]
async fn an_h2c_upgrade_not_followed_by_the_preface_is_recorded() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let cases: [(&[u8], &str); 2] = [
        (
            b"",
            "client: the connection closed before the HTTP/2 connection preface that the h2c \
             upgrade calls for",
        ),
        (
            b"GET /again HTTP/1.1\r\nHost: api\r\n\r\n",
            "client: no HTTP/2 connection preface after the h2c upgrade",
        ),
    ];
    for (after, error) in cases {
        let mut client = switched_to_h2c(&proxy).await;
        client.write_all(after).await.unwrap();
        client.shutdown().await.unwrap();
        let r = proxy.events.request().await;
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/echo?x=1"));
        assert_eq!((r.status_code, r.upgrade.as_str()), (101, "h2c"));
        assert_eq!(r.http_version, "HTTP/1.1");
        assert_eq!(r.error, error);
        assert!(!r.request_headers.contains_key("Upgrade"));
    }
    assert_eq!(
        origin.connections(),
        1,
        "only the proxy's question whether the target speaks h2c reached it"
    );
}

/// A client that says nothing after the `101` is disconnected once the preface is overdue.
/// (Real time: the proxy's connections run on its worker threads, which a paused clock in
/// the test does not reach.)
#[tokio::test]
async fn an_h2c_upgrade_waits_for_the_preface_for_ten_seconds() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let waiting = std::time::Instant::now();
    let mut client = switched_to_h2c(&proxy).await;
    let r = proxy.events.request().await;
    assert!(
        waiting.elapsed() >= Duration::from_secs(10),
        "gave up early"
    );
    assert_eq!(
        r.error,
        "client: no HTTP/2 connection preface within 10 s of the h2c upgrade"
    );
    assert_eq!(r.status_code, 101);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(
        rest.is_empty(),
        "the connection is closed with nothing more"
    );
}

/// A client switched to HTTP/2 that has not sent its preface when the proxy shuts down: its
/// request is recorded, with the shutdown as the reason it went no further.
#[tokio::test]
async fn an_h2c_upgrade_cut_off_by_shutdown_is_recorded() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let mut client = switched_to_h2c(&proxy).await;
    let mut events = proxy.take_events();
    proxy.stop().await.unwrap();

    let r = events.request().await;
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/echo?x=1"));
    assert_eq!((r.status_code, r.upgrade.as_str()), (101, "h2c"));
    assert_eq!(
        r.error,
        "proxy: shut down before the HTTP/2 connection preface"
    );
    events.assert_no_more();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(
        rest.is_empty(),
        "the connection is closed with nothing more"
    );
}

/// An HTTP/1.1-only server (as Python's `http.server`): `200 ok` to every request, `400` to
/// anything that is not HTTP/1.x, such as the HTTP/2 preface.
pub(crate) async fn http1_only_target() -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(head) = next_head(&mut stream, &mut seen).await {
                    let answer: &[u8] = if head.starts_with(b"PRI ") {
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    };
                    if stream.write_all(answer).await.is_err() || head.starts_with(b"PRI ") {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A target that only speaks HTTP/1.1 ignores `Upgrade: h2c`; so does the proxy in front of
/// it, rather than switching the client to HTTP/2 and failing every request.
#[tokio::test]
async fn an_upgrade_to_h2c_is_declined_for_a_target_that_only_speaks_http1() {
    let mut proxy = Proxy::start(http1_only_target().await).await;
    for path in ["/first", "/second"] {
        let response = curl(&["--http2", &proxy.url(path)]).await;
        assert_eq!((response.status, &response.body[..]), (200, &b"ok"[..]));
        assert_eq!(response.version, "HTTP/1.1");
        let r = proxy.events.request().await;
        assert_eq!((r.path.as_str(), r.status_code), (path, 200));
        assert_eq!(r.http_version, "HTTP/1.1");
        assert_eq!(r.error, "");
    }
}

/// On hyper's HTTP/2 path (taken when a response timeout is set), a gRPC call its client
/// gives up at its deadline is recorded as the client saw it, `DeadlineExceeded`, as the
/// relay records it from the `RST_STREAM (CANCEL)` (hyper does not say how a stream ended).
#[tokio::test]
async fn a_grpc_call_given_up_at_its_deadline_is_deadline_exceeded_on_hypers_path() {
    let origin = Origin::start().await;
    let settings = HttpSettings {
        response_timeout: Some(Duration::from_secs(60)),
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(origin.addr.to_string(), settings).await;

    let socket = TcpStream::connect(proxy.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(socket).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // The origin never answers `/slow`.
    let request = Request::post(proxy.url("/slow"))
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "300m")
        .body(())
        .unwrap();
    let (response, mut upload) = client.send_request(request, false).unwrap();
    upload
        .send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    // What a gRPC client does at its deadline: give up the call (`RST_STREAM (CANCEL)`).
    let answered = tokio::time::timeout(Duration::from_millis(300), response).await;
    assert!(answered.is_err(), "the origin answered: {answered:?}");
    drop(upload);

    let event = proxy.events.next().await;
    let call = event.grpc_call.expect("a gRPC call");
    assert_eq!(call.grpc_status, "DeadlineExceeded", "{call:?}");
    assert_eq!(
        call.error,
        "client: the connection closed before the target responded"
    );
}
