//! Cancellation: in-flight exchanges get a grace period, then everything closes and `serve`
//! returns; nothing is left unrecorded.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Frame;
use rig_proxy::http::HttpSettings;
use tokio::net::TcpStream;

use crate::origin::Origin;
use crate::support::{empty, http1_client, Proxy, PATIENCE};

/// Waits until the proxy no longer accepts connections.
async fn until_refused(proxy: &Proxy) {
    tokio::time::timeout(PATIENCE, async {
        while TcpStream::connect(proxy.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener closed");
}

#[tokio::test]
async fn an_exchange_in_flight_finishes_within_the_grace_period() {
    let mut origin = Origin::start().await;
    let settings = HttpSettings {
        shutdown_grace: PATIENCE,
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(origin.addr.to_string(), settings).await;
    let client = http1_client();
    let response =
        tokio::spawn(client.request(Request::get(proxy.url("/stream")).body(empty()).unwrap()));
    let frames = tokio::time::timeout(PATIENCE, origin.streams.recv())
        .await
        .unwrap()
        .unwrap();
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"before "))))
        .await
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    proxy.cancel();
    until_refused(&proxy).await;
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"after"))))
        .await
        .unwrap();
    drop(frames);
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .unwrap()
        .expect("the body completed during the grace period");
    assert_eq!(body.to_bytes(), "before after");

    let r = proxy.events.request().await;
    assert_eq!(r.response_body.as_deref(), Some(&b"before after"[..]));
    assert_eq!(r.error, "");
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn past_the_grace_period_exchanges_are_cut_and_recorded() {
    let mut origin = Origin::start().await;
    let settings = HttpSettings {
        shutdown_grace: Duration::from_millis(100),
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(origin.addr.to_string(), settings).await;
    let client = http1_client();
    let response =
        tokio::spawn(client.request(Request::get(proxy.url("/stream")).body(empty()).unwrap()));
    let frames = tokio::time::timeout(PATIENCE, origin.streams.recv())
        .await
        .unwrap()
        .unwrap();
    frames
        .send(Ok(Frame::data(Bytes::from_static(b"never finished"))))
        .await
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let mut events = proxy.take_events();
    proxy
        .stop()
        .await
        .expect("serve returned after the grace period");
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .unwrap();
    assert!(body.is_err(), "the client's response was cut");
    let r = events.request().await;
    assert_eq!(r.status_code, 200);
    assert_eq!(
        r.error,
        "proxy: shut down after 14 bytes of the response body"
    );
    // The target's stream was released.
    tokio::time::timeout(PATIENCE, frames.closed())
        .await
        .unwrap();
}
