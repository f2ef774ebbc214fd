//! The Kafka relay: every `kafka` edge.
//!
//! ```text
//!  client ─► proxy listener ─► broker          (one listener per broker node)
//!            requests:  framed as they pass, header parsed, forwarded chunk by chunk
//!            responses: forwarded chunk by chunk, matched to requests by correlation id;
//!                       Metadata / FindCoordinator / DescribeCluster, and Produce v10+ /
//!                       Fetch v16+ (KIP-951 node endpoints) buffered, rewritten so every
//!                       broker they name is a proxy listener, then forwarded
//! ```
//!
//! Bytes are relayed as they arrive: a frame is never held back except the few bytes of a
//! response's size and correlation id (to know whether it must be rewritten) and the responses
//! that name brokers. Every request yields one `kafka.request.completed` when its response has
//! been read (or, for a Produce with `acks=0`, which gets no response, when it was relayed);
//! connections yield `connection.opened` and `connection.closed` as on `tcp` edges. A request
//! whose response never came, came cut short or could not be written to the client is still
//! recorded when the connection ends, with an `error`; a side that closed in the middle of a
//! frame is an `error` on `connection.closed`.
//!
//! Upstream rig pointed every broker at the one proxy port, so clusters of several brokers
//! collapsed onto the bootstrap broker. Here the first response naming a broker binds a
//! loopback listener for it (once per broker address, for the proxy's life) that relays to
//! that broker, and the response advertises that listener: every client connection, to every
//! broker, goes through the proxy. A client in a container cannot reach the host's loopback:
//! with [`Advertise`] the listeners are bound on the Docker bridge gateway instead and
//! advertised as `host.docker.internal`, the bootstrap broker's included.

mod brokers;
mod connection;
mod pending;
mod record;
mod requests;
mod responses;
#[cfg(test)]
mod tests;
mod topic_names;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observe::Observer;
use brokers::Brokers;

pub use record::KafkaRecord;

/// The largest Produce or Fetch request or response whose bytes are kept for its topic
/// details (a larger message is relayed all the same, without them, and without a copy).
const DETAIL_CAP: usize = 64 * 1024;

/// Where the per-broker listeners are bound and what address responses advertise for them,
/// when the client does not share the proxy's loopback (a container reaching the host through
/// the Docker bridge gateway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertise {
    /// The address every per-broker listener binds (an ephemeral port on it).
    pub bind: IpAddr,
    /// The host name or address responses give clients for those listeners.
    pub host: String,
}

/// Tuning of a Kafka proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// How long to wait for a broker to accept a connection (upstream: 5 s). Zero waits as
    /// long as the operating system does.
    pub dial_timeout: Duration,
    /// The largest frame relayed; a larger size prefix ends the connection (the stream is not
    /// Kafka, e.g. TLS).
    pub max_frame: usize,
    /// Per-broker listeners off loopback, for a client elsewhere; `None` binds them on
    /// loopback and advertises `127.0.0.1`. With it, the bootstrap broker gets a listener of
    /// its own there too, since the client cannot reach the proxy's loopback listener.
    pub advertise: Option<Advertise>,
}

impl Default for KafkaSettings {
    fn default() -> KafkaSettings {
        KafkaSettings {
            dial_timeout: Duration::from_secs(5),
            max_frame: rig_protocols::kafka::frame::MAX_FRAME_SIZE,
            advertise: None,
        }
    }
}

/// Relays Kafka connections accepted on `listener` to the bootstrap broker `target`
/// (`host:port`), and connections to the other brokers through listeners opened as responses
/// name them, reporting every request and connection through `observer`.
///
/// Runs until `cancel` fires; then every listener stops, live connections are closed (each
/// still reports `connection.closed`), and it returns once all of them have finished.
pub async fn serve(
    listener: TcpListener,
    target: String,
    observer: Observer,
    settings: KafkaSettings,
    cancel: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let advertised = settings.advertise.is_some();
    let brokers = Brokers::new(observer, settings, cancel.clone(), tracker.clone());
    if let (false, Ok(local)) = (advertised, listener.local_addr()) {
        brokers.seed(&target, local);
    }
    brokers::accept_loop(listener, Arc::from(target), brokers).await;
    tracker.close();
    tracker.wait().await;
}
