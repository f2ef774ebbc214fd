//! One client connection to one broker: observe it, dial the broker, relay both directions.
//!
//! Its end is recorded as it happened: a side that closed in the middle of a frame is an
//! error on `connection.closed`, and every request still waiting for its response becomes a
//! `kafka.request.completed` with an error saying none came.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::brokers::Brokers;
use super::pending::Pending;
use super::record::KafkaRecord;
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
            () = cancel.cancelled() => Some(Ending::Shutdown),
        }
    };
    let unanswered = match &failure {
        None => "no response came before the connection closed".to_string(),
        Some(Ending::Failed(failure)) => {
            format!("no response came before the connection closed: {failure}")
        }
        Some(Ending::Shutdown) => {
            "no response came before the proxy closed the connection (shutting down)".to_string()
        }
    };
    for request in pending.drain() {
        observer.record(Box::new(KafkaRecord::failed(
            request,
            0,
            unanswered.clone(),
            broker.clone(),
            brokers.topic_names().clone(),
        )));
    }
    let mut closed =
        ConnectionRecord::closed(counts.snapshot(), started.elapsed()).with_probe(probe);
    if let Some(Ending::Failed(failure)) = failure {
        closed = closed.with_error(failure);
    }
    observer.record(Box::new(closed));
}

/// How one direction of a connection ended: `Ok(None)` cleanly, at a frame boundary;
/// `Ok(Some(why))` at the end of the stream but in the middle of a frame (the other direction
/// carries on); `Err(why)` failed, which ends the connection at once.
pub(super) type Ended = Result<Option<String>, String>;

/// Why a connection ended other than cleanly.
enum Ending {
    /// A side failed or closed in the middle of a frame.
    Failed(String),
    /// The proxy is shutting down.
    Shutdown,
}

/// Where a stream ended in the middle of a frame: `got` bytes of it (size prefix included)
/// arrived, of `total` once its size is known.
pub(super) struct Cut {
    pub(super) got: u64,
    pub(super) total: Option<u64>,
}

impl Cut {
    /// What happened, for the user: `who` (`client`, `broker`) closed the connection in the
    /// middle of a `what` (`request`, `response`).
    pub(super) fn describe(&self, who: &str, what: &str) -> String {
        match self.total {
            Some(total) => format!(
                "{who} closed the connection in the middle of a {what} ({} of {total} bytes)",
                self.got
            ),
            None => format!(
                "{who} closed the connection in the middle of a {what}'s size prefix ({} of 4 bytes)",
                self.got
            ),
        }
    }
}

/// Runs both directions until both end, or until either fails: a failed side (a reset, a
/// frame that is not Kafka) ends the connection at once. Returns the failure, or what was cut
/// in the middle of a frame.
async fn both(
    requests: impl std::future::Future<Output = Ended>,
    responses: impl std::future::Future<Output = Ended>,
) -> Option<Ending> {
    tokio::pin!(requests, responses);
    let (mut sent, mut received) = (false, false);
    let mut cuts: Vec<String> = Vec::new();
    while !(sent && received) {
        let ended = tokio::select! {
            ended = &mut requests, if !sent => { sent = true; ended }
            ended = &mut responses, if !received => { received = true; ended }
        };
        match ended {
            Ok(None) => {}
            Ok(Some(cut)) => cuts.push(cut),
            Err(failure) => {
                cuts.push(failure);
                break;
            }
        }
    }
    (!cuts.is_empty()).then(|| Ending::Failed(cuts.join("; ")))
}
