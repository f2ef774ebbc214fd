//! Idle connections for the memory measurement: opened through a path, proven to reach the
//! origin with one exchange each, then held open doing nothing.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use http::Uri;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{http1, tcp, GRACE};
use crate::origin::SMALL_BODY;

/// How many connections are opened at once.
const BATCH: usize = 50;

/// Idle connections; dropping this closes them.
pub enum Held {
    /// Keep-alive HTTP/1.1 connections that each completed one `GET /small`.
    Http(Vec<http1::Sender>),
    /// TCP connections to the origin's echo service that each echoed one byte.
    Tcp(Vec<TcpStream>),
}

impl Held {
    /// How many connections are held.
    pub fn len(&self) -> usize {
        match self {
            Held::Http(senders) => senders.len(),
            Held::Tcp(streams) => streams.len(),
        }
    }
}

/// Opens `count` keep-alive HTTP/1.1 connections through `addr`, each after one `GET /small`.
pub async fn http(addr: SocketAddr, count: usize) -> Result<Held> {
    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        let mut batch = JoinSet::new();
        for _ in 0..BATCH.min(count - held.len()) {
            batch.spawn(async move {
                let mut sender = http1::connect(addr).await?;
                let request = http1::get(Uri::from_static("/small"))?;
                match tokio::time::timeout(
                    GRACE,
                    http1::exchange(&mut sender, request, SMALL_BODY.len()),
                )
                .await
                {
                    Ok(Ok(())) => Ok(sender),
                    Ok(Err(error)) => anyhow::bail!("GET /small via {addr}: {error}"),
                    Err(_) => anyhow::bail!("GET /small via {addr}: no answer within {GRACE:?}"),
                }
            });
        }
        while let Some(done) = batch.join_next().await {
            held.push(done.context("an idle-connection task failed")??);
        }
    }
    Ok(Held::Http(held))
}

/// Opens `count` TCP connections through `addr` to the origin's echo service, each after one
/// echoed byte.
pub async fn tcp(addr: SocketAddr, count: usize) -> Result<Held> {
    let mut held = Vec::with_capacity(count);
    while held.len() < count {
        let mut batch = JoinSet::new();
        for _ in 0..BATCH.min(count - held.len()) {
            batch.spawn(tcp::echo_connection(addr));
        }
        while let Some(done) = batch.join_next().await {
            held.push(done.context("an idle-connection task failed")??);
        }
    }
    Ok(Held::Tcp(held))
}
