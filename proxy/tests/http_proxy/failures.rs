//! Failed exchanges: each ends in a marked answer (or a clean abort) and an event saying
//! which side failed and why. Nothing hangs.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Frame;
use rig_proxy::http::{serve, HttpSettings, ServeError};
use rig_proxy::Observer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::origin::Origin;
use crate::support::{curl, dead_port, edge, empty, http1_client, read_to_close, Proxy, PATIENCE};

#[tokio::test]
async fn a_target_that_is_down_gets_a_marked_502_and_an_event() {
    let (_dead, target) = dead_port().await;
    let mut proxy = Proxy::start(target).await;

    let response = curl(&[&proxy.url("/orders")]).await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.header("x-rig-proxy-error"),
        Some("connect-refused")
    );
    let text = String::from_utf8(response.body).unwrap();
    assert_eq!(
        text,
        format!(
            "rig proxy: the target {target} refused the connection (is the service listening?)\n"
        )
    );

    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 502);
    assert_eq!(r.path, "/orders");
    assert!(
        r.error.starts_with(&format!(
            "upstream: the target {target} refused the connection"
        )),
        "{}",
        r.error
    );
    assert!(r.error.contains("refused (os error"), "{}", r.error);
    assert_eq!(r.response_headers["X-Rig-Proxy-Error"], ["connect-refused"]);
    assert_eq!(r.response_body.as_deref(), Some(text.as_bytes()));
}

#[tokio::test]
async fn a_target_that_never_answers_times_out_with_a_502() {
    let origin = Origin::start().await;
    let settings = HttpSettings {
        response_timeout: Some(Duration::from_millis(300)),
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(origin.addr.to_string(), settings).await;

    let response = curl(&[&proxy.url("/slow")]).await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.header("x-rig-proxy-error"),
        Some("upstream-timeout")
    );

    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 502);
    assert_eq!(
        r.error,
        format!(
            "upstream: the target {} sent no response headers within 300ms",
            origin.addr
        )
    );
    assert!(r.latency_ms >= 300.0, "{}", r.latency_ms);
}

/// A target that reads one request head and then closes (or resets) the connection.
async fn hang_up_target(reset: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            if reset {
                stream.set_zero_linger().unwrap();
            }
            drop(stream);
        }
    });
    addr
}

#[tokio::test]
async fn a_target_that_hangs_up_before_answering_gets_a_502() {
    let target = hang_up_target(false).await;
    let mut proxy = Proxy::start(target).await;

    let response = curl(&[&proxy.url("/x")]).await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.header("x-rig-proxy-error"),
        Some("upstream-closed")
    );
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

#[tokio::test]
async fn a_target_that_resets_the_connection_gets_a_502() {
    let target = hang_up_target(true).await;
    let mut proxy = Proxy::start(target).await;

    let response = curl(&[&proxy.url("/x")]).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.header("x-rig-proxy-error"), Some("upstream-reset"));
    let r = proxy.events.request().await;
    assert!(
        r.error.starts_with(&format!(
            "upstream: the target {target} reset the connection"
        )),
        "{}",
        r.error
    );
}

#[tokio::test]
async fn a_target_that_breaks_off_its_body_is_recorded_with_the_partial_body() {
    let mut origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();

    let response =
        tokio::spawn(client.request(Request::get(proxy.url("/stream")).body(empty()).unwrap()));
    let frames = tokio::time::timeout(PATIENCE, origin.streams.recv())
        .await
        .unwrap()
        .unwrap();
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"partial"))))
        .await
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = tokio::time::timeout(PATIENCE, body.frame()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "partial");
    frames
        .send(Err(std::io::Error::other("the origin gives up")))
        .await
        .unwrap();
    let rest = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .unwrap();
    assert!(rest.is_err(), "the client sees the body break off");

    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 200);
    assert_eq!(r.response_body.as_deref(), Some(&b"partial"[..]));
    assert!(
        r.error
            .starts_with("upstream: the response body broke off after 7 bytes"),
        "{}",
        r.error
    );
}

#[tokio::test]
async fn a_client_leaving_mid_upload_is_recorded_and_wedges_nothing() {
    let mut origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    client.write_all(&[b'x'; 1000]).await.unwrap();
    let mut received = 0;
    while received < 1000 {
        let frame = tokio::time::timeout(PATIENCE, origin.uploads.recv())
            .await
            .unwrap();
        received += frame.unwrap().len();
    }
    drop(client);

    let r = proxy.events.request().await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.request_size, 1000);
    assert!(!r.request_body_truncated);
    assert_eq!(r.request_body.unwrap(), [b'x'; 1000]);
    assert_eq!(
        r.error,
        "client: the request body broke off after 1000 bytes: error reading a body from \
         connection: end of file before message length reached"
    );

    // The proxy still serves.
    assert_eq!(curl(&[&proxy.url("/echo")]).await.status, 200);
    assert_eq!(proxy.events.request().await.status_code, 200);
}

#[tokio::test]
async fn a_client_leaving_mid_download_is_recorded() {
    let mut origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /stream HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .unwrap();
    let frames = tokio::time::timeout(PATIENCE, origin.streams.recv())
        .await
        .unwrap()
        .unwrap();
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.windows(5).any(|w| w == b"first") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(PATIENCE, client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the proxy closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(client);

    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 200);
    assert_eq!(r.response_body.as_deref(), Some(&b"first"[..]));
    assert_eq!(
        r.error,
        "client: the connection closed after 5 bytes of the response body"
    );
    // The target's stream was released with the client's connection.
    tokio::time::timeout(PATIENCE, frames.closed())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_malformed_request_gets_400_from_hyper_and_an_event() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /x HTTP/1.1\r\nHost: api\r\nthis is not a header\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut client).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400 Bad Request"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let r = proxy.events.request().await;
    assert_eq!(r.status_code, 400);
    assert_eq!(r.method, "");
    assert_eq!(
        r.error,
        "client: malformed request, rejected with 400: invalid HTTP header parsed"
    );
    assert_eq!(origin.connections(), 0, "nothing reached the target");
}

#[tokio::test]
async fn a_request_target_too_long_to_record_gets_414_and_an_event_however_it_arrives() {
    // Longer than `http::Uri` takes: the event could not say what was asked. Both paths leave
    // it to hyper, whether the head comes in one read or in several.
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let request = format!("GET /{} HTTP/1.1\r\nHost: api\r\n\r\n", "a".repeat(70_000));
    for pieces in [1, 9] {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        for piece in request.as_bytes().chunks(request.len().div_ceil(pieces)) {
            client.write_all(piece).await.unwrap();
        }
        let answer = read_to_close(&mut client).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 414 URI Too Long"),
            "{pieces} pieces: {}",
            String::from_utf8_lossy(&answer)
        );
        let r = proxy.events.request().await;
        assert_eq!(r.status_code, 414);
        assert!(
            r.error.starts_with("client: malformed request"),
            "{}",
            r.error
        );
    }
    assert_eq!(origin.connections(), 0, "nothing reached the target");
}

#[tokio::test]
async fn an_invalid_target_is_refused_before_serving() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (observer, _task) = Observer::spawn(edge(), std::sync::Arc::new(|_| {}), 8);
    let result = serve(
        listener,
        "no-port".to_string(),
        observer,
        HttpSettings::default(),
        CancellationToken::new(),
    )
    .await;
    let error = result.unwrap_err();
    assert!(matches!(error, ServeError::InvalidTarget { .. }));
    assert_eq!(
        error.to_string(),
        "invalid proxy target `no-port`: the port is missing (expected `host:port`, e.g. `127.0.0.1:8080`)"
    );
}

#[tokio::test]
async fn a_client_leaving_while_the_target_thinks_is_recorded() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .unwrap();
    // Wait until the request reached the origin, then leave.
    while origin.connections() == 0 {
        tokio::task::yield_now().await;
    }
    drop(client);

    let r = proxy.events.request().await;
    assert_eq!(r.path, "/slow");
    assert_eq!(r.status_code, 0, "the client got no response");
    assert_eq!(
        r.error,
        "client: the connection closed before the target responded"
    );
}

/// A client that shuts its sending side right after its request (`nc -N`) is read as gone, as
/// Go's and nginx's proxies read it. On the hyper path, hyper then drops the call before the
/// proxy polls it; it is recorded all the same.
#[tokio::test]
async fn a_request_left_by_a_client_that_shut_its_side_is_recorded_on_both_paths() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    // The raw path, then the hyper path (`TE: trailers` takes it there).
    for extra in ["", "TE: trailers\r\nConnection: TE\r\n"] {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!("GET /slow HTTP/1.1\r\nHost: api\r\n{extra}\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(read_to_close(&mut client).await, b"", "{extra:?}");

        let r = proxy.events.request().await;
        assert_eq!((r.path.as_str(), r.status_code), ("/slow", 0), "{extra:?}");
        assert_eq!(
            r.error, "client: the connection closed before the target responded",
            "{extra:?}"
        );
    }
}
