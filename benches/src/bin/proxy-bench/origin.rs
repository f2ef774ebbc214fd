//! `serve-origin`: the real origin every path ends at.
//!
//! - HTTP (HTTP/1.1 keep-alive and h2c with prior knowledge, hyper): `GET /small` answers
//!   [`SMALL_BODY`], `GET /64k` answers [`LARGE_LEN`] bytes, anything else 404.
//! - TCP: the first byte picks the service: `S` (sink) reads until end of file and then
//!   answers the number of bytes it read after the `S` as a big-endian `u64`; `E` echoes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::LazyLock;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::standalone;

/// The body of `GET /small` (16 bytes, like upstream rig's benchmark).
pub const SMALL_BODY: &[u8] = b"echo: GET /small";
/// The length of the body of `GET /64k`.
pub const LARGE_LEN: usize = 64 * 1024;
/// The first byte of a TCP connection that asks for the counting sink.
pub const TCP_SINK: u8 = b'S';
/// The first byte of a TCP connection that asks for the echo service.
pub const TCP_ECHO: u8 = b'E';

static LARGE_BODY: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(vec![b'x'; LARGE_LEN]));

/// Runs the origin until stdin closes or SIGTERM.
pub fn main(threads: usize) -> Result<()> {
    standalone::runtime(threads)?.block_on(async {
        let http = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the HTTP origin")?;
        let tcp = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the TCP origin")?;
        standalone::announce(&BTreeMap::from([
            ("http", http.local_addr()?),
            ("tcp", tcp.local_addr()?),
        ]))?;
        let stop = standalone::stop_signal();
        tokio::spawn(serve_http(http, stop.clone()));
        tokio::spawn(serve_tcp(tcp, stop.clone()));
        stop.cancelled().await;
        Ok(())
    })
}

async fn serve_http(listener: TcpListener, stop: CancellationToken) {
    let builder = std::sync::Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(respond))
                .await;
        });
    }
}

async fn respond(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match request.uri().path() {
        "/small" => (StatusCode::OK, Bytes::from_static(SMALL_BODY)),
        "/64k" => (StatusCode::OK, LARGE_BODY.clone()),
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

async fn serve_tcp(listener: TcpListener, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        tokio::spawn(async move {
            let _ = tcp_connection(stream).await;
        });
    }
}

async fn tcp_connection(mut stream: TcpStream) -> std::io::Result<()> {
    match stream.read_u8().await? {
        TCP_SINK => {
            let mut buffer = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buffer).await? {
                    0 => break,
                    n => total += n as u64,
                }
            }
            stream.write_u64(total).await?;
            stream.shutdown().await
        }
        TCP_ECHO => {
            let _ = stream.set_nodelay(true);
            let (mut reader, mut writer) = stream.split();
            tokio::io::copy(&mut reader, &mut writer).await?;
            writer.shutdown().await
        }
        _ => Ok(()),
    }
}
