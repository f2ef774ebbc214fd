//! Streaming, chunked and large bodies, and the capture cap.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rig_proxy::http::DEFAULT_CAPTURE_LIMIT;
use tokio::sync::mpsc;

use crate::origin::{Origin, AMPLIFICATION};
use crate::support::{curl, full, http1_client, pattern, send, Proxy, PATIENCE};

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen in time"))
}

#[tokio::test]
async fn chunked_download_streams_frame_by_frame() {
    let mut origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();

    let request = Request::get(proxy.url("/stream"))
        .body(crate::support::empty())
        .unwrap();
    let response = tokio::spawn(client.request(request));
    let frames = within("the /stream request", origin.streams.recv())
        .await
        .unwrap();
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"first "))))
        .await
        .unwrap();
    let response = within("the response head", response)
        .await
        .unwrap()
        .unwrap();
    assert!(response.headers().get(header::CONTENT_LENGTH).is_none());
    let mut body = response.into_body();
    // The second chunk is only produced once the first reached the client: a proxy that
    // buffered the body would never deliver it.
    let first = within("the first chunk", body.frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first ");
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    let second = within("the second chunk", body.frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.into_data().unwrap(), "second");
    drop(frames);
    assert!(within("the end", body.frame()).await.is_none());

    let r = proxy.events.request().await;
    assert_eq!(r.response_size, 12);
    assert_eq!(r.response_body.as_deref(), Some(&b"first second"[..]));
    assert!(!r.response_headers.contains_key("Transfer-Encoding"));
    assert_eq!(r.error, "");
}

#[tokio::test]
async fn chunked_upload_streams_frame_by_frame() {
    let mut origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();

    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    let body = StreamBody::new(futures_util::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    }))
    .boxed();
    let request = Request::post(proxy.url("/upload")).body(body).unwrap();
    let response = tokio::spawn(send_owned(client, request));

    tx.send(Ok(Frame::data(Bytes::from_static(b"part one;"))))
        .await
        .unwrap();
    // The origin sees the first chunk before the second exists.
    let first = within("the first uploaded chunk", origin.uploads.recv()).await;
    assert_eq!(first.unwrap(), "part one;");
    tx.send(Ok(Frame::data(Bytes::from_static(b"part two"))))
        .await
        .unwrap();
    let second = within("the second uploaded chunk", origin.uploads.recv()).await;
    assert_eq!(second.unwrap(), "part two");
    drop(tx);

    let response = within("the upload response", response).await.unwrap();
    assert_eq!(response.body, "received 17 bytes");

    let r = proxy.events.request().await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.request_size, 17);
    assert_eq!(r.request_body.as_deref(), Some(&b"part one;part two"[..]));
    assert_eq!(r.response_body.as_deref(), Some(&b"received 17 bytes"[..]));
    assert!(
        !r.request_headers.contains_key("Transfer-Encoding"),
        "{:?}",
        r.request_headers
    );
}

async fn send_owned(
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        crate::support::ClientBody,
    >,
    request: Request<crate::support::ClientBody>,
) -> crate::support::Collected {
    send(&client, request).await
}

#[tokio::test]
async fn a_target_answering_more_than_it_reads_while_it_reads_does_not_stall_the_upload() {
    // The target streams back eight bytes for every byte of the upload as it arrives, and the
    // client reads the response while it uploads. The proxy must keep reading the response
    // while the upload waits for the target: otherwise the target blocks writing its answer,
    // stops reading, and both sides wait for ever.
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();
    let payload = pattern(8 * 1024 * 1024);

    let request = Request::post(proxy.url("/amplify"))
        .body(full(payload.clone()))
        .unwrap();
    let response = send(&client, request).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.len(), AMPLIFICATION * payload.len());

    let r = proxy.events.request().await;
    assert_eq!(r.request_size, payload.len() as i64);
    assert_eq!(r.response_size, (AMPLIFICATION * payload.len()) as i64);
    assert_eq!(r.error, "");
    assert_eq!(r.http_version, "HTTP/1.1");
}

#[tokio::test]
async fn a_large_body_is_forwarded_whole_and_captured_at_the_cap() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();
    let payload = pattern(1024 * 1024);

    let request = Request::post(proxy.url("/echo"))
        .body(full(payload.clone()))
        .unwrap();
    let response = send(&client, request).await;
    assert_eq!(response.body.len(), payload.len());
    assert!(response.body == payload, "the echoed body is identical");

    let r = proxy.events.request().await;
    assert_eq!(r.request_size, 1024 * 1024);
    assert_eq!(r.response_size, 1024 * 1024);
    assert!(r.request_body_truncated);
    assert!(r.response_body_truncated);
    let kept = &payload[..DEFAULT_CAPTURE_LIMIT];
    assert_eq!(r.request_body.as_deref(), Some(kept));
    assert_eq!(r.response_body.as_deref(), Some(kept));
}

#[tokio::test]
async fn the_cap_is_exact_at_64_kib() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();

    for (size, truncated) in [
        (DEFAULT_CAPTURE_LIMIT, false),
        (DEFAULT_CAPTURE_LIMIT + 1, true),
    ] {
        let payload = pattern(size);
        let request = Request::post(proxy.url("/echo"))
            .body(full(payload.clone()))
            .unwrap();
        assert_eq!(send(&client, request).await.body.len(), size);
        let r = proxy.events.request().await;
        assert_eq!(r.request_size, size as i64);
        assert_eq!(r.request_body_truncated, truncated, "size {size}");
        assert_eq!(r.response_body_truncated, truncated, "size {size}");
        assert_eq!(
            r.request_body.unwrap().len(),
            DEFAULT_CAPTURE_LIMIT,
            "size {size}"
        );
    }
}

#[tokio::test]
async fn curl_chunked_upload_is_dechunked_in_the_record() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;

    let response = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "chunked payload",
        &proxy.url("/echo"),
    ])
    .await;
    assert_eq!(response.body, b"chunked payload");
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));

    let r = proxy.events.request().await;
    assert_eq!(r.request_size, 15);
    assert_eq!(r.request_body.as_deref(), Some(&b"chunked payload"[..]));
    assert_eq!(r.response_body.as_deref(), Some(&b"chunked payload"[..]));
}

#[tokio::test]
async fn http1_trailers_are_forwarded_when_the_client_accepts_them() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    let client = http1_client();

    let request = Request::get(proxy.url("/trailers"))
        .header(header::TE, "trailers")
        .body(crate::support::empty())
        .unwrap();
    let response = send(&client, request).await;
    assert_eq!(response.body, "hello");
    let trailers = response.trailers.expect("trailers reached the client");
    assert_eq!(trailers["x-checksum"], "42");
    assert_eq!(trailers["grpc-status"], "0");

    let r = proxy.events.request().await;
    assert_eq!(r.response_body.as_deref(), Some(&b"hello"[..]));
    assert_eq!(r.response_headers["Trailer"], ["x-checksum, grpc-status"]);
    // The trailers end the body: the exchange is complete, nothing broke off.
    assert_eq!(r.error, "");
    assert_eq!(r.response_size, 5);
}

/// Trailers as HTTP/2 carries them, for the record of what arrived.
pub fn expected_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("42"));
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}
