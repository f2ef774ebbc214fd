//! HTTP/1.1 keep-alive load: one task per connection, each sending requests back to back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{HttpTally, Window, GRACE};

/// How long a TCP connection to the path may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before retrying a connection that failed, so a dead path is not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// A keep-alive HTTP/1.1 connection's request handle.
pub type Sender = SendRequest<Empty<Bytes>>;

/// Runs `connections` keep-alive connections against `addr`, each requesting `path` back to
/// back for the whole window and expecting `expected_len` body bytes per response.
pub async fn run(
    addr: SocketAddr,
    path: &'static str,
    expected_len: usize,
    connections: usize,
    window: Window,
) -> Result<HttpTally> {
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        workers.spawn(worker(addr, path, expected_len, window));
    }
    let mut tally = HttpTally::new()?;
    while let Some(done) = workers.join_next().await {
        tally.merge(done.context("an HTTP/1.1 load task failed")??)?;
    }
    Ok(tally)
}

async fn worker(
    addr: SocketAddr,
    path: &'static str,
    expected_len: usize,
    window: Window,
) -> Result<HttpTally> {
    let mut tally = HttpTally::new()?;
    let uri = Uri::from_static(path);
    let give_up = tokio::time::Instant::from_std(window.end + GRACE);
    'connection: while Instant::now() < window.end {
        let mut sender = match connect(addr).await {
            Ok(sender) => sender,
            Err(error) => {
                tally.failure(|| format!("{error:#}"));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        loop {
            if sender.ready().await.is_err() {
                // The server closed the keep-alive connection between requests.
                tally.reconnects += 1;
                continue 'connection;
            }
            let started = Instant::now();
            if started >= window.end {
                break 'connection;
            }
            let request = get(uri.clone())?;
            let outcome =
                tokio::time::timeout_at(give_up, exchange(&mut sender, request, expected_len))
                    .await;
            let finished = Instant::now();
            match outcome {
                Ok(Ok(())) => {
                    if started >= window.warm_end && finished <= window.end {
                        tally.success(finished - started);
                    }
                }
                Ok(Err(error)) => {
                    tally.failure(|| error);
                    continue 'connection;
                }
                Err(_) => {
                    tally.failure(|| format!("no complete response within {GRACE:?} of the end"));
                    break 'connection;
                }
            }
        }
    }
    Ok(tally)
}

/// A `GET` for `uri` with the `Host` a client of a loopback service would send.
pub fn get(uri: Uri) -> Result<Request<Empty<Bytes>>> {
    Request::get(uri)
        .header(header::HOST, "127.0.0.1")
        .body(Empty::new())
        .context("building a request")
}

/// Opens a keep-alive HTTP/1.1 connection to `addr`; its driver runs on its own task and
/// ends when the returned sender is dropped.
pub async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr}: no answer within {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP/1.1 handshake with {addr}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `request` and reads the whole response, which must be a 2xx with `expected_len`
/// body bytes.
pub async fn exchange(
    sender: &mut Sender,
    request: Request<Empty<Bytes>>,
    expected_len: usize,
) -> Result<(), String> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    read_response(response, expected_len).await
}

/// Reads a response body frame by frame (no copying) and checks status and length.
pub async fn read_response(
    response: http::Response<hyper::body::Incoming>,
    expected_len: usize,
) -> Result<(), String> {
    let status = response.status();
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            received += data.len();
        }
    }
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    if received != expected_len {
        return Err(format!("body of {received} bytes, expected {expected_len}"));
    }
    Ok(())
}

/// Sends one request on a fresh connection and checks the answer: is this path working?
pub async fn probe(addr: SocketAddr, path: &'static str, expected_len: usize) -> Result<()> {
    let mut sender = connect(addr).await?;
    let request = get(Uri::from_static(path))?;
    match tokio::time::timeout(GRACE, exchange(&mut sender, request, expected_len)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => bail!("GET {path} via {addr}: {error}"),
        Err(_) => bail!("GET {path} via {addr}: no answer within {GRACE:?}"),
    }
}
