//! Plain exchanges: what is forwarded, what is recorded.

use http::{header, Method, Request};
use rig_types::{Event, EventType};
use serde_json::json;

use crate::origin::Origin;
use crate::support::{curl, empty, full, http1_client, send, Proxy};

#[tokio::test]
async fn curl_get_is_forwarded_and_recorded_field_by_field() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&[&proxy.url("/echo?x=1&y=%2F")]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.version, "HTTP/1.1");
    assert_eq!(response.header("x-origin-version"), Some("HTTP/1.1"));
    assert!(response.body.is_empty());

    let r = proxy.events.request().await;
    assert_eq!(r.source, "~test");
    assert_eq!(r.target, "api");
    assert_eq!(r.ingress, "default");
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/echo?x=1&y=%2F");
    assert_eq!(r.status_code, 200);
    assert!(r.latency_ms > 0.0);
    let duration = r.duration_ms.expect("duration_ms");
    assert!(duration >= r.latency_ms, "{duration} < {}", r.latency_ms);
    assert!(r.started_at.is_some_and(|t| !t.is_zero()));
    assert_eq!(r.http_version, "HTTP/1.1");
    assert_eq!(r.request_size, 0);
    assert_eq!(r.response_size, 0);
    assert_eq!(r.request_body, None);
    assert_eq!(r.response_body, None);
    assert!(!r.request_body_truncated && !r.response_body_truncated);
    assert!(!r.probe);
    assert_eq!(r.error, "");
    assert_eq!(r.upgrade, "");
    let user_agent = r.request_headers["User-Agent"][0].clone();
    assert!(user_agent.starts_with("curl/"), "{user_agent}");
    assert_eq!(r.request_headers["Accept"], ["*/*"]);
    assert!(
        !r.request_headers.contains_key("Host"),
        "Host is the authority, not a recorded header"
    );
    assert_eq!(r.response_headers["X-Origin-Version"], ["HTTP/1.1"]);
    assert!(r.response_headers.contains_key("Date"));
    proxy.events.assert_no_more();
}

#[tokio::test]
async fn post_bodies_are_captured_exactly_and_serialised_as_base64() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&[
        "--data-binary",
        r#"{"sku":"abc-1"}"#,
        "-H",
        "Content-Type: application/json",
        &proxy.url("/echo"),
    ])
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"sku":"abc-1"}"#);

    let r = proxy.events.request().await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.request_size, 15);
    assert_eq!(r.response_size, 15);
    assert_eq!(r.request_body.as_deref(), Some(&br#"{"sku":"abc-1"}"#[..]));
    assert_eq!(r.response_body.as_deref(), Some(&br#"{"sku":"abc-1"}"#[..]));
    assert_eq!(r.request_headers["Content-Type"], ["application/json"]);
    assert_eq!(r.request_headers["Content-Length"], ["15"]);

    let mut event = Event::new(EventType::RequestCompleted);
    event.request = Some(Box::new(r));
    let json = serde_json::to_value(&event).unwrap();
    let request = &json["request"];
    assert_eq!(request["request_body"], json!("eyJza3UiOiJhYmMtMSJ9"));
    assert_eq!(request["response_body"], json!("eyJza3UiOiJhYmMtMSJ9"));
    assert_eq!(request["status_code"], json!(200));
    assert_eq!(request["http_version"], json!("HTTP/1.1"));
    for absent in [
        "request_body_truncated",
        "response_body_truncated",
        "probe",
        "error",
        "upgrade",
    ] {
        assert!(request.get(absent).is_none(), "{absent} should be omitted");
    }
}

#[tokio::test]
async fn keep_alive_reuses_one_upstream_connection() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();

    for i in 0..2 {
        let request = Request::post(proxy.url("/echo"))
            .body(full(format!("request {i}")))
            .unwrap();
        let response = send(&client, request).await;
        assert_eq!(response.body, format!("request {i}").as_bytes());
        let r = proxy.events.request().await;
        assert_eq!(
            r.request_body.as_deref(),
            Some(format!("request {i}").as_bytes())
        );
    }
    assert_eq!(
        origin.connections(),
        1,
        "the second request reused the pooled connection"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_host_is_kept() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&[
        "-H",
        "Host: api.example.test:8080",
        "-H",
        "Connection: keep-alive, X-Hop",
        "-H",
        "X-Hop: secret-to-this-hop",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "Proxy-Connection: keep-alive",
        "-H",
        "TE: trailers, deflate",
        "-H",
        "X-End-To-End: yes",
        &proxy.url("/headers"),
    ])
    .await;
    let seen = String::from_utf8(response.body).unwrap();
    let names: Vec<&str> = seen.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        ["accept", "host", "te", "user-agent", "x-end-to-end"],
        "{seen}"
    );
    assert!(seen.contains("host: api.example.test:8080\n"), "{seen}");
    assert!(seen.contains("te: trailers\n"), "{seen}");

    let r = proxy.events.request().await;
    assert!(!r.request_headers.contains_key("X-Hop"));
    assert!(!r.request_headers.contains_key("Connection"));
    assert_eq!(r.request_headers["X-End-To-End"], ["yes"]);
    assert_eq!(r.request_headers["Te"], ["trailers"]);
}

#[tokio::test]
async fn head_and_not_found_pass_through() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();

    let request = Request::builder()
        .method(Method::HEAD)
        .uri(proxy.url("/nothing-here"))
        .body(empty())
        .unwrap();
    let response = send(&client, request).await;
    assert_eq!(response.status, 404);
    assert!(response.body.is_empty());
    assert_eq!(response.headers[header::CONTENT_LENGTH], "9");

    let r = proxy.events.request().await;
    assert_eq!(r.method, "HEAD");
    assert_eq!(r.status_code, 404);
    assert_eq!(r.response_size, 0);
    assert_eq!(r.error, "");
}

#[tokio::test]
async fn cancellation_closes_idle_connections_and_returns() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get("/echo")
        .header(header::HOST, "api")
        .body(empty())
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    proxy.events.request().await;

    proxy.stop().await.unwrap();
    // The idle keep-alive connection was closed by the proxy.
    tokio::time::timeout(crate::support::PATIENCE, connection)
        .await
        .expect("the proxy closed the idle connection")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn expect_100_continue_is_honoured() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&[
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        "after continue",
        &proxy.url("/echo"),
    ])
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"after continue");
    let r = proxy.events.request().await;
    assert_eq!(r.request_headers["Expect"], ["100-continue"]);
    assert_eq!(r.request_body.as_deref(), Some(&b"after continue"[..]));
}

#[tokio::test]
async fn http_1_0_clients_are_answered_in_http_1_0() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&["--http1.0", &proxy.url("/headers")]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.version, "HTTP/1.0");
    assert_eq!(response.header("x-origin-version"), Some("HTTP/1.1"));
    let r = proxy.events.request().await;
    assert_eq!(r.http_version, "HTTP/1.0");
}
