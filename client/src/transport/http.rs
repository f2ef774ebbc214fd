//! HTTP/1.1 transport to rigd: one loopback TCP connection per request, driven by hyper's
//! connection-level client. rigd is local and the CLI makes few requests, so there is no pool.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::client::ClientError;

/// Largest non-streaming response body read (error bodies and JSON documents are small; an
/// event log is not read through this path).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Sends requests to one rigd address.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    addr: String,
}

/// A response whose body is still being received (an SSE stream). Dropping it closes the
/// connection.
#[derive(Debug)]
pub(crate) struct StreamingResponse {
    /// The response status.
    pub(crate) status: StatusCode,
    /// The body, read frame by frame.
    pub(crate) body: Incoming,
    _connection: AbortOnDrop,
}

/// Aborts the task driving a connection when the response that needs it is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Transport {
    /// A transport for `addr` (`host:port`).
    pub(crate) fn new(addr: String) -> Transport {
        Transport { addr }
    }

    /// The `host:port` requests go to.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a request and reads the whole response body, all within `timeout`.
    pub(crate) async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let what = format!("{method} {path_and_query}");
        let exchange = async {
            let response = self.send(method, path_and_query, json_body, &[]).await?;
            let status = response.status;
            let body = http_body_util::Limited::new(response.body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| ClientError::Protocol {
                    what: what.clone(),
                    detail: format!("reading the response body: {e}"),
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: self.addr.clone(),
                what: what.clone(),
                after: timeout,
            })?
    }

    /// Sends a request and returns once the response headers arrived (within `timeout`),
    /// leaving the body to be streamed.
    pub(crate) async fn open(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(HeaderName, String)],
        timeout: Duration,
    ) -> Result<StreamingResponse, ClientError> {
        let what = format!("{method} {path_and_query}");
        tokio::time::timeout(timeout, self.send(method, path_and_query, None, headers))
            .await
            .map_err(|_| ClientError::Timeout {
                addr: self.addr.clone(),
                what,
                after: timeout,
            })?
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
        headers: &[(HeaderName, String)],
    ) -> Result<StreamingResponse, ClientError> {
        let stream =
            TcpStream::connect(&self.addr)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: self.addr.clone(),
                    source,
                })?;
        // Small request/response exchanges: do not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| self.http_error(source))?;
        // Connection errors surface through the request and body futures; the driver's own
        // result carries nothing more.
        let driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));

        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, &self.addr)
            .header(ACCEPT, "application/json, text/event-stream");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let body = match json_body {
            Some(bytes) => {
                builder =
                    builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|e| ClientError::Protocol {
            what: format!("building a request for {path_and_query}"),
            detail: e.to_string(),
        })?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|source| self.http_error(source))?;
        let (parts, body) = response.into_parts();
        Ok(StreamingResponse {
            status: parts.status,
            body,
            _connection: driver,
        })
    }

    fn http_error(&self, source: hyper::Error) -> ClientError {
        ClientError::Http {
            addr: self.addr.clone(),
            source,
        }
    }
}
