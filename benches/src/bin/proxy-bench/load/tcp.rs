//! TCP bulk load: parallel streams writing as fast as they can into the origin's counting
//! sink; throughput is what the sink counted, over the time until every count came back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::GRACE;
use crate::origin::{TCP_ECHO, TCP_SINK};

/// Size of each write.
const CHUNK: usize = 256 * 1024;

/// What TCP bulk load on one path produced.
#[derive(Clone, Copy, Debug)]
pub struct TcpTally {
    /// Bytes the origin received, over all streams.
    pub bytes: u64,
    /// From the first connection until the last count came back.
    pub elapsed: Duration,
}

impl TcpTally {
    /// Throughput in gigabits per second.
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// Runs `streams` bulk streams through `addr` for `duration`.
pub async fn bulk(addr: SocketAddr, streams: usize, duration: Duration) -> Result<TcpTally> {
    let started = Instant::now();
    let end = started + duration;
    let mut workers = JoinSet::new();
    for _ in 0..streams {
        workers.spawn(stream(addr, end));
    }
    let mut bytes = 0;
    while let Some(done) = workers.join_next().await {
        bytes += done.context("a TCP bulk task failed")??;
    }
    Ok(TcpTally {
        bytes,
        elapsed: started.elapsed(),
    })
}

async fn stream(addr: SocketAddr, end: Instant) -> Result<u64> {
    let give_up = tokio::time::Instant::from_std(end + GRACE);
    let transfer = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.write_all(&[TCP_SINK]).await?;
        let chunk = vec![0x5au8; CHUNK];
        let mut sent = 0u64;
        while Instant::now() < end {
            stream.write_all(&chunk).await.context("sending")?;
            sent += CHUNK as u64;
        }
        stream
            .shutdown()
            .await
            .context("closing the sending side")?;
        let counted = stream
            .read_u64()
            .await
            .context("reading the sink's byte count")?;
        if counted != sent {
            bail!("the origin received {counted} bytes of the {sent} sent through {addr}");
        }
        anyhow::Ok(counted)
    };
    match tokio::time::timeout_at(give_up, transfer).await {
        Ok(result) => result,
        Err(_) => bail!("TCP bulk through {addr} did not finish within {GRACE:?} of the end"),
    }
}

/// Opens a connection to the origin's echo service through `addr` and checks one byte makes
/// the round trip. The returned stream is idle and open.
pub async fn echo_connection(addr: SocketAddr) -> Result<TcpStream> {
    let round_trip = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.write_all(&[TCP_ECHO, b'.']).await?;
        let echoed = stream.read_u8().await.context("reading the echo")?;
        if echoed != b'.' {
            bail!("the echo through {addr} answered {echoed:#x} instead of '.'");
        }
        anyhow::Ok(stream)
    };
    match tokio::time::timeout(GRACE, round_trip).await {
        Ok(result) => result,
        Err(_) => bail!("the TCP echo through {addr} did not answer within {GRACE:?}"),
    }
}
