//! HTTP/1.1 transport to rigd over loopback TCP, driven by hyper's connection-level client.
//! A connection whose response was read to the end is kept for the next request (one at a
//! time: rigd is local and a client makes few requests at once), so creating an environment
//! and following its events take one connection; an event stream keeps its own. Connections
//! are opened and driven on the SDK's background thread, whichever runtime asked for them:
//! a connection kept after a test's request is reused by the background runtime too (a
//! keepalive, the `DELETE` of a drop), while the test's thread may be blocked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
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
    /// A connection free for the next request.
    idle: Arc<Mutex<Option<Connection>>>,
}

/// An open connection: its request sender and the task driving it.
#[derive(Debug)]
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// Dropping it ends the connection.
    _driver: AbortOnDrop,
}

/// A response whose body is still being received (an SSE stream). Dropping it closes the
/// connection.
#[derive(Debug)]
pub(crate) struct StreamingResponse {
    /// The response status.
    pub(crate) status: StatusCode,
    /// The body, read frame by frame.
    pub(crate) body: Incoming,
    connection: Connection,
}

/// Aborts the task driving a connection when the response that needs it is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to `addr` and starts the task that drives the connection, on the runtime this
/// runs on (which then does the connection's I/O).
async fn open_connection(addr: String) -> Result<Connection, ClientError> {
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    // Small request/response exchanges: do not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ClientError::Http {
            addr: addr.clone(),
            source,
        })?;
    // Connection errors surface through the request and body futures; the driver's own
    // result carries nothing more.
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    Ok(Connection {
        sender,
        _driver: driver,
    })
}

impl Transport {
    /// A transport for `addr` (`host:port`).
    pub(crate) fn new(addr: String) -> Transport {
        Transport {
            addr,
            idle: Arc::default(),
        }
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
            // Read to the end: the connection can carry the next request.
            self.keep(response.connection);
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

    /// Keeps `connection` for the next request, if it can take one.
    fn keep(&self, connection: Connection) {
        if !connection.sender.is_closed() {
            *self.idle.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection);
        }
    }

    /// The idle connection if it is still open, else a new one.
    async fn connection(&self) -> Result<(Connection, bool), ClientError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut connection) = idle {
            // Ready once the previous exchange is wound up; an error once rigd closed it.
            if connection.sender.ready().await.is_ok() {
                return Ok((connection, true));
            }
        }
        let connection = match crate::background::handle() {
            // On the SDK's own thread, so that the connection keeps working while the
            // runtime that asked for it is blocked: a kept connection is reused by whoever
            // asks next, and a drop blocks the test's thread while the background runtime
            // sends the DELETE on it.
            Ok(background) => background
                .spawn(open_connection(self.addr.clone()))
                .await
                .map_err(|e| ClientError::Connect {
                    addr: self.addr.clone(),
                    source: std::io::Error::other(format!(
                        "the SDK's background thread did not open the connection: {e}"
                    )),
                })?,
            Err(_) => open_connection(self.addr.clone()).await,
        }?;
        Ok((connection, false))
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Vec<u8>>,
        headers: &[(HeaderName, String)],
    ) -> Result<StreamingResponse, ClientError> {
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
        let (mut connection, reused) = self.connection().await?;
        let response = match connection.sender.try_send_request(request).await {
            Ok(response) => response,
            // rigd closed the kept connection before the request went out: send it on a new
            // one (it was not sent, so this cannot repeat it).
            Err(mut failed) if reused => match failed.take_message() {
                Some(request) => {
                    let (fresh, _) = self.connection().await?;
                    connection = fresh;
                    connection
                        .sender
                        .send_request(request)
                        .await
                        .map_err(|source| self.http_error(source))?
                }
                None => return Err(self.http_error(failed.into_error())),
            },
            Err(failed) => return Err(self.http_error(failed.into_error())),
        };
        let (parts, body) = response.into_parts();
        Ok(StreamingResponse {
            status: parts.status,
            body,
            connection,
        })
    }

    fn http_error(&self, source: hyper::Error) -> ClientError {
        ClientError::Http {
            addr: self.addr.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A tiny HTTP/1.1 server answering `ok` to every bodiless request; counts connections.
    /// With `close_after_one`, it closes each connection after its first answer (without
    /// saying so, as a server that went away would).
    async fn server(close_after_one: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() || close_after_one {
                                return;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (addr, connections)
    }

    async fn get(transport: &Transport) -> (StatusCode, Bytes) {
        transport
            .request(Method::GET, "/health", None, Duration::from_secs(5))
            .await
            .expect("a response")
    }

    /// Requests one after another share one connection.
    #[tokio::test]
    async fn a_connection_read_to_the_end_carries_the_next_request() {
        let (addr, connections) = server(false).await;
        let transport = Transport::new(addr);
        for _ in 0..3 {
            assert_eq!(get(&transport).await, (StatusCode::OK, Bytes::from("ok")));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    /// A kept connection the server has closed is replaced, and the request still goes out.
    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced() {
        let (addr, connections) = server(true).await;
        let transport = Transport::new(addr);
        for _ in 0..3 {
            assert_eq!(get(&transport).await, (StatusCode::OK, Bytes::from("ok")));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }
}
