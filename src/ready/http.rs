//! The HTTP probe: `GET http://<hostport><path>` over HTTP/1.1; any status below 500 is ready.

use std::time::Duration;

use ::http::header::{HOST, USER_AGENT};
use ::http::{Method, Request};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::error::ProbeError;
use super::probe::{drive, PROBE_HEADER, PROBE_USER_AGENT};
use super::tcp;

/// How long the whole exchange may take: connect, send, and receive the response head.
pub(super) const HTTP_TIMEOUT: Duration = Duration::from_millis(200);

/// Probes `http://{hostport}{path}`. `path` must start with `/` (see
/// [`ProbeKind::for_ingress`](super::ProbeKind::for_ingress)).
pub(super) async fn probe(hostport: &str, path: &str) -> Result<(), ProbeError> {
    let action = || format!("GET http://{hostport}{path}");
    let status = match tokio::time::timeout(HTTP_TIMEOUT, status(hostport, path, &action)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(ProbeError::TimedOut {
                action: action(),
                after: HTTP_TIMEOUT,
            })
        }
    };
    if status < 500 {
        Ok(())
    } else {
        Err(ProbeError::HttpStatus { status })
    }
}

/// Sends the probe request and returns the response status. The body is never read: the
/// connection is closed as soon as the head arrives.
async fn status(
    hostport: &str,
    path: &str,
    action: &impl Fn() -> String,
) -> Result<u16, ProbeError> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, hostport)
        .header(USER_AGENT, PROBE_USER_AGENT)
        .header(PROBE_HEADER, "1")
        .body(Empty::<Bytes>::new())
        .map_err(|source| ProbeError::InvalidRequest {
            action: action(),
            source,
        })?;
    let stream = tcp::connect(hostport).await?;
    let exchange_error = |source| ProbeError::Exchange {
        action: action(),
        source,
    };
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(exchange_error)?;
    let call = async {
        let response = sender.send_request(request).await.map_err(exchange_error)?;
        Ok(response.status().as_u16())
    };
    drive(conn, call, action).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    /// A one-connection HTTP/1.1 server: reads one request head, sends it back through the
    /// returned channel and answers with `status` (or never answers when `status` is `None`).
    async fn serve_once(status: Option<u16>) -> (String, oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (head_tx, head_rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed before sending a full request head");
                head.extend_from_slice(&buf[..n]);
            }
            let _ = head_tx.send(String::from_utf8(head).unwrap());
            match status {
                Some(code) => {
                    let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok");
                    conn.write_all(reply.as_bytes()).await.unwrap();
                    // Hold the connection until the client closes it.
                    let _ = conn.read(&mut buf).await;
                }
                None => {
                    let _ = conn.read(&mut buf).await;
                }
            }
        });
        (addr, head_rx)
    }

    /// Upstream `TestHTTPCheck_Success`, plus the request the probe sends.
    #[tokio::test]
    async fn ok_status_is_ready_and_request_is_marked() {
        let (addr, head) = serve_once(Some(200)).await;
        probe(&addr, "/health?deep=1").await.unwrap();
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get /health?deep=1 http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nhost: {addr}\r\n")), "{head}");
        assert!(head.contains("\r\nuser-agent: rigd-probe\r\n"), "{head}");
        assert!(head.contains("\r\nx-rig-probe: 1\r\n"), "{head}");
    }

    #[tokio::test]
    async fn client_errors_count_as_ready() {
        for code in [404, 401, 499] {
            let (addr, _head) = serve_once(Some(code)).await;
            probe(&addr, "/").await.unwrap();
        }
    }

    /// Upstream `TestHTTPCheck_ServerError`.
    #[tokio::test]
    async fn server_errors_are_not_ready() {
        for code in [500, 503] {
            let (addr, _head) = serve_once(Some(code)).await;
            let err = probe(&addr, "/").await.unwrap_err();
            assert_eq!(err.to_string(), format!("HTTP {code}"));
        }
    }

    #[tokio::test]
    async fn silent_server_times_out_after_200ms() {
        let (addr, head) = serve_once(None).await;
        let started = std::time::Instant::now();
        let err = probe(&addr, "/").await.unwrap_err();
        assert!(started.elapsed() >= HTTP_TIMEOUT);
        assert_eq!(
            err.to_string(),
            format!("GET http://{addr}/: timed out after 200ms")
        );
        // The request did reach the server: the timeout covers the response wait.
        assert!(head.await.unwrap().starts_with("GET / HTTP/1.1"));
    }

    #[tokio::test]
    async fn server_closing_immediately_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            drop(conn);
        });
        let err = probe(&addr, "/").await.unwrap_err();
        assert!(matches!(err, ProbeError::Exchange { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with(&format!("GET http://{addr}/: ")), "{text}");
    }

    #[tokio::test]
    async fn refused_connection_is_a_dial_error() {
        let err = probe("127.0.0.1:1", "/").await.unwrap_err();
        assert_eq!(err.to_string(), "dial tcp 127.0.0.1:1: connection refused");
    }

    #[tokio::test]
    async fn invalid_path_is_reported_without_connecting() {
        let err = probe("127.0.0.1:1", "/has space").await.unwrap_err();
        assert!(matches!(err, ProbeError::InvalidRequest { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("GET http://127.0.0.1:1/has space: invalid probe request"),
            "{text}"
        );
    }
}
