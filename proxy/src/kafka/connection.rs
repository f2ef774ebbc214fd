//! One client connection to one broker: observe it, dial the broker, relay both directions.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::brokers::Brokers;
use super::pending::Pending;
use super::{requests, responses};
use crate::tcp::connection::dial;
use crate::tcp::{ByteCounts, ConnectionRecord};

/// Handles one accepted client connection to `broker`, from `connection.opened` to
/// `connection.closed`; `probe` marks both events as a readiness probe's.
pub(super) async fn handle(mut client: TcpStream, probe: bool, broker: Arc<str>, brokers: Brokers) {
    let started = Instant::now();
    let observer = brokers.observer().clone();
    let cancel = brokers.cancel().clone();
    observer.record(Box::new(ConnectionRecord::opened().with_probe(probe)));

    let dialled = tokio::select! {
        dialled = dial(&broker, brokers.settings().dial_timeout) => dialled,
        () = cancel.cancelled() => Err(format!(
            "dial tcp {broker}: abandoned because the proxy is shutting down"
        )),
    };
    let mut upstream = match dialled {
        Ok(upstream) => upstream,
        Err(error) => {
            drop(client);
            let closed = ConnectionRecord::closed((0, 0), started.elapsed())
                .with_error(error)
                .with_probe(probe);
            observer.record(Box::new(closed));
            return;
        }
    };
    // Kafka clients send small requests and wait for answers: no Nagle delay.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let counts = ByteCounts::default();
    let pending = Pending::default();
    let failure = {
        let (client_read, client_write) = client.split();
        let (broker_read, broker_write) = upstream.split();
        let requests = requests::relay(
            client_read,
            broker_write,
            &pending,
            &counts.bytes_in,
            &brokers,
            &broker,
        );
        let responses = responses::relay(
            broker_read,
            client_write,
            &pending,
            &counts.bytes_out,
            &brokers,
            &broker,
        );
        tokio::select! {
            failure = both(requests, responses) => failure,
            () = cancel.cancelled() => None,
        }
    };
    let mut closed =
        ConnectionRecord::closed(counts.snapshot(), started.elapsed()).with_probe(probe);
    if let Some(failure) = failure {
        closed = closed.with_error(failure);
    }
    observer.record(Box::new(closed));
}

/// Runs both directions until both finish cleanly, or until either fails: a failed side (a
/// reset, a frame that is not Kafka) ends the connection at once. Returns the failure.
async fn both(
    requests: impl std::future::Future<Output = Result<(), String>>,
    responses: impl std::future::Future<Output = Result<(), String>>,
) -> Option<String> {
    tokio::pin!(requests, responses);
    let (mut sent, mut received) = (false, false);
    while !(sent && received) {
        let ended = tokio::select! {
            ended = &mut requests, if !sent => { sent = true; ended }
            ended = &mut responses, if !received => { received = true; ended }
        };
        if let Err(failure) = ended {
            return Some(failure);
        }
    }
    None
}
