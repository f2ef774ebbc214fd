//! One client connection: observe it, dial the target, relay, report.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{self, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::error_text::describe;
use super::record::{ByteCounts, ConnectionRecord};
use super::relay::relay;
use super::TcpSettings;
use crate::observe::Observer;

/// Handles one accepted client connection from `connection.opened` to `connection.closed`;
/// `probe` marks both events as a readiness probe's.
pub(super) async fn handle(
    client: TcpStream,
    probe: bool,
    target: Arc<str>,
    observer: Observer,
    settings: TcpSettings,
    cancel: CancellationToken,
) {
    let started = Instant::now();
    observer.record(Box::new(ConnectionRecord::opened().with_probe(probe)));

    let dialled = tokio::select! {
        dialled = dial(&target, settings.dial_timeout) => dialled,
        () = cancel.cancelled() => Err(format!(
            "dial tcp {target}: abandoned because the proxy is shutting down"
        )),
    };
    let upstream = match dialled {
        Ok(upstream) => upstream,
        Err(error) => {
            // The client sees the connection close (EOF), as with upstream rig.
            drop(client);
            let closed = ConnectionRecord::closed((0, 0), started.elapsed())
                .with_error(error)
                .with_probe(probe);
            observer.record(Box::new(closed));
            return;
        }
    };

    let counts = ByteCounts::default();
    let failure = relay_until_done(
        client, upstream, &counts, &observer, settings, &cancel, started,
    )
    .await;
    let mut closed =
        ConnectionRecord::closed(counts.snapshot(), started.elapsed()).with_probe(probe);
    if let Some(failure) = failure {
        closed = closed.with_error(failure);
    }
    observer.record(Box::new(closed));
}

/// Connects to `target`, with Go-style error text (`dial tcp 127.0.0.1:9: connection refused`).
/// A zero `timeout` waits as long as the operating system does.
pub(crate) async fn dial(target: &str, timeout: Duration) -> Result<TcpStream, String> {
    let connect = TcpStream::connect(target);
    let connected = if timeout.is_zero() {
        connect.await
    } else {
        match time::timeout(timeout, connect).await {
            Ok(connected) => connected,
            Err(_) => return Err(format!("dial tcp {target}: i/o timeout after {timeout:?}")),
        }
    };
    let stream = connected.map_err(|err| format!("dial tcp {target}: {}", describe(&err)))?;
    crate::pacing::unpace(&stream);
    Ok(stream)
}

/// Relays until both directions finish or the proxy shuts down, reporting progress on the way.
/// Both sockets are closed when this returns. Returns the relay's first failure.
async fn relay_until_done(
    mut client: TcpStream,
    mut upstream: TcpStream,
    counts: &ByteCounts,
    observer: &Observer,
    settings: TcpSettings,
    cancel: &CancellationToken,
    started: Instant,
) -> Option<String> {
    // Be as transparent as a direct connection: no Nagle delay added to small writes (Go's
    // net package, which upstream rig relays with, sets TCP_NODELAY too). Failure only costs
    // latency.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let mut progress = progress_ticker(settings.progress_interval);
    let mut reported = (0, 0);
    let relay = relay(&mut client, &mut upstream, counts, settings.zero_copy);
    tokio::pin!(relay);
    loop {
        tokio::select! {
            failure = &mut relay => return failure,
            // Live connections are closed (both sockets dropped on return) and still reported.
            () = cancel.cancelled() => return None,
            () = tick(&mut progress) => {
                let now = counts.snapshot();
                // An idle connection (a pooled database connection, say) reports nothing new.
                if now != reported {
                    reported = now;
                    observer.record(Box::new(ConnectionRecord::progress(now, started.elapsed())));
                }
            }
        }
    }
}

/// The progress ticker, whose first tick is one interval from now; `None` when disabled.
fn progress_ticker(interval: Duration) -> Option<Interval> {
    if interval.is_zero() {
        return None;
    }
    let mut ticker = time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Some(ticker)
}

/// Waits for the next progress tick; never completes when progress reports are disabled.
async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}
