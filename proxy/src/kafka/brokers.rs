//! One proxy listener per broker: the registry that binds them on first mention, and the
//! accept loop each of them runs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rig_protocols::kafka::rewrite::{Broker, Replacement};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::topic_names::TopicNames;
use super::{connection, KafkaSettings};
use crate::listener::prepare;
use crate::observe::Observer;
use crate::tcp::is_per_connection;

/// How long to pause accepting after a resource error (out of descriptors or memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The proxy's listeners by the broker address they relay to. Cheap to clone.
#[derive(Clone)]
pub(super) struct Brokers(Arc<Inner>);

struct Inner {
    /// Real broker `host:port` → the proxy listener that relays to it.
    listeners: Mutex<HashMap<String, SocketAddr>>,
    observer: Observer,
    topic_names: Arc<TopicNames>,
    settings: KafkaSettings,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Brokers {
    pub(super) fn new(
        observer: Observer,
        settings: KafkaSettings,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Brokers {
        Brokers(Arc::new(Inner {
            listeners: Mutex::new(HashMap::new()),
            observer,
            topic_names: Arc::default(),
            settings,
            cancel,
            tracker,
        }))
    }

    /// Records that `listener` already relays to `broker` (the bootstrap listener).
    pub(super) fn seed(&self, broker: &str, listener: SocketAddr) {
        self.0.listeners.lock().insert(broker.to_owned(), listener);
    }

    pub(super) fn observer(&self) -> &Observer {
        &self.0.observer
    }

    /// The topic names learnt from Metadata responses, for records to name topics with.
    pub(super) fn topic_names(&self) -> &Arc<TopicNames> {
        &self.0.topic_names
    }

    pub(super) fn settings(&self) -> &KafkaSettings {
        &self.0.settings
    }

    pub(super) fn cancel(&self) -> &CancellationToken {
        &self.0.cancel
    }

    /// Where clients should connect to reach `broker`: its proxy listener, bound now (on
    /// loopback, or the [`Advertise`](super::Advertise) address, an ephemeral port) if this
    /// is the first time the broker is named. `None`
    /// when no listener can be had (the proxy is stopping, or binding failed), in which case
    /// the broker's real address is left in the response.
    pub(super) fn replacement(&self, broker: Broker<'_>) -> Option<Replacement> {
        let address = broker_address(broker.host, broker.port);
        let mut listeners = self.0.listeners.lock();
        let local = match listeners.get(&address) {
            Some(local) => *local,
            None => {
                if self.0.cancel.is_cancelled() {
                    return None;
                }
                let ip = self
                    .0
                    .settings
                    .advertise
                    .as_ref()
                    .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.bind);
                let listener = bind(ip).ok()?;
                let local = listener.local_addr().ok()?;
                listeners.insert(address.clone(), local);
                self.0
                    .tracker
                    .spawn(accept_loop(listener, Arc::from(address), self.clone()));
                local
            }
        };
        let host = match &self.0.settings.advertise {
            Some(advertise) => advertise.host.clone(),
            None => advertised_host(local.ip()),
        };
        Some(Replacement {
            host,
            port: i32::from(local.port()),
        })
    }
}

/// `host:port`, with brackets around an IPv6 literal.
fn broker_address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The host clients are told: the listener's address, or loopback for a wildcard bind.
fn advertised_host(ip: IpAddr) -> String {
    if ip.is_unspecified() {
        Ipv4Addr::LOCALHOST.to_string()
    } else {
        ip.to_string()
    }
}

fn bind(ip: IpAddr) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind((ip, 0))?;
    prepare(&listener)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Accepts on `listener` until the proxy stops, relaying each connection to `broker`.
pub(super) async fn accept_loop(listener: TcpListener, broker: Arc<str>, brokers: Brokers) {
    let cancel = brokers.cancel().clone();
    // rigd's TCP readiness probes are recognised by their address pair (see `crate::probes`).
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                let probe = local.is_some_and(|local| crate::probes::is_probe(peer, local));
                brokers.0.tracker.spawn(connection::handle(
                    client,
                    probe,
                    broker.clone(),
                    brokers.clone(),
                ));
            }
            Err(err) if is_per_connection(&err) => {}
            Err(_) => {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_bracket_ipv6_and_advertise_loopback_for_wildcards() {
        assert_eq!(broker_address("kafka-1", 9092), "kafka-1:9092");
        assert_eq!(broker_address("::1", 9092), "[::1]:9092");
        assert_eq!(advertised_host(IpAddr::from([0, 0, 0, 0])), "127.0.0.1");
        assert_eq!(advertised_host(IpAddr::from([127, 0, 0, 2])), "127.0.0.2");
    }
}
