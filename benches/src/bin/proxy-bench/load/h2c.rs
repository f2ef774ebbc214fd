//! h2c load: a few HTTP/2 (prior knowledge) connections carrying many concurrent streams, each
//! stream sending requests back to back.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Empty;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::http1::read_response;
use super::{HttpTally, Window, GRACE};

/// Runs `streams` concurrent request loops spread over `connections` h2c connections to
/// `addr`, each requesting `path` and expecting `expected_len` body bytes.
pub async fn run(
    addr: SocketAddr,
    path: &'static str,
    expected_len: usize,
    connections: usize,
    streams: usize,
    window: Window,
) -> Result<HttpTally> {
    let uri: Uri = format!("http://{addr}{path}")
        .parse()
        .context("building the h2c request URI")?;
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        senders.push(connect(addr).await?);
    }
    let mut workers = JoinSet::new();
    for i in 0..streams {
        let sender = senders[i % senders.len()].clone();
        workers.spawn(worker(sender, uri.clone(), expected_len, window));
    }
    drop(senders);
    let mut tally = HttpTally::new()?;
    while let Some(done) = workers.join_next().await {
        tally.merge(done.context("an h2c load task failed")??)?;
    }
    Ok(tally)
}

async fn worker(
    mut sender: SendRequest<Empty<Bytes>>,
    uri: Uri,
    expected_len: usize,
    window: Window,
) -> Result<HttpTally> {
    let mut tally = HttpTally::new()?;
    let give_up = tokio::time::Instant::from_std(window.end + GRACE);
    loop {
        if sender.ready().await.is_err() {
            tally.failure(|| "the h2c connection closed".to_string());
            break;
        }
        let started = Instant::now();
        if started >= window.end {
            break;
        }
        let request = Request::get(uri.clone())
            .body(Empty::new())
            .context("building a request")?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            read_response(response, expected_len).await
        };
        let outcome = tokio::time::timeout_at(give_up, exchange).await;
        let finished = Instant::now();
        match outcome {
            Ok(Ok(())) => {
                if started >= window.warm_end && finished <= window.end {
                    tally.success(finished - started);
                }
            }
            Ok(Err(error)) => tally.failure(|| error),
            Err(_) => {
                tally.failure(|| format!("no complete response within {GRACE:?} of the end"));
                break;
            }
        }
    }
    Ok(tally)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::time::timeout(GRACE, TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr}: no answer within {GRACE:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .with_context(|| format!("h2c handshake with {addr}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one h2c request on a fresh connection and checks the answer.
pub async fn probe(addr: SocketAddr, path: &'static str, expected_len: usize) -> Result<()> {
    let mut sender = connect(addr).await?;
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Empty::<Bytes>::new())
        .context("building a request")?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        read_response(response, expected_len).await
    };
    match tokio::time::timeout(GRACE, exchange).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => anyhow::bail!("h2c GET {path} via {addr}: {error}"),
        Err(_) => anyhow::bail!("h2c GET {path} via {addr}: no answer within {GRACE:?}"),
    }
}
