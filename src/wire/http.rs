//! A minimal HTTP/1.1 client for administration requests (moto's S3 and SQS APIs, a Kafka
//! schema registry): one request per connection, the whole response read.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl Response {
    /// True for a 2xx status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends `method path` to `http://<hostport>` with `headers` and `body` (a body without a
/// `Content-Type` header is sent as `application/octet-stream`) and reads the whole response.
/// Errors name the request.
pub async fn send(
    hostport: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, String> {
    let what = format!("{method} http://{hostport}{path}");
    tokio::time::timeout(TIMEOUT, exchange(hostport, method, path, headers, body))
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {}s", TIMEOUT.as_secs())))
        .map_err(|e| format!("{what}: {e}"))
}

async fn exchange(
    hostport: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, hostport);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if !body.is_empty()
        && headers
            .iter()
            .all(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
    {
        builder = builder.header(CONTENT_TYPE, "application/octet-stream");
    }
    let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(hostport)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
    .await;
    driver.abort();
    result
}
