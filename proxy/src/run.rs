//! Starting a proxy: one call that picks the relay for the mode and wires the observer.

use std::sync::Arc;

use rig_types::Protocol;
use tokio_util::sync::CancellationToken;

use crate::listener::prepare;
use crate::observe::{Edge, ObservationBarriers, Observer, TrafficSink, DEFAULT_CAPACITY};
use crate::{http, kafka, tcp, GrpcSettings, Mode};

/// Why a proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listener could not be handed to the runtime.
    #[error("proxy listener: {0}")]
    Listener(#[source] std::io::Error),
    /// The HTTP proxy refused its configuration.
    #[error(transparent)]
    Http(#[from] http::ServeError),
}

impl Mode {
    /// The mode for a target ingress's protocol.
    pub fn for_protocol(protocol: &Protocol) -> Mode {
        match protocol {
            Protocol::Http => Mode::Http,
            Protocol::Grpc => Mode::Grpc,
            Protocol::Kafka => Mode::Kafka,
            Protocol::Tcp | Protocol::Unknown(_) => Mode::Tcp,
        }
    }
}

/// What a proxy needs to know about where its client is, beyond the mode, and who may wait on
/// its observations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// For a `kafka` proxy whose client is not on this host's loopback (a container): where
    /// to bind the per-broker listeners and what to advertise for them.
    pub kafka_advertise: Option<kafka::Advertise>,
    /// Where the proxy registers its [`ObservationBarrier`](crate::observe::ObservationBarrier)
    /// once started, so the owner can wait for what it has observed to reach the sink.
    pub barriers: ObservationBarriers,
}

/// Runs a proxy on `listener` (kept open for the proxy's whole life) forwarding to `target`
/// (`host:port`) until `cancel` fires, delivering the edge's traffic events to `sink`;
/// `options` say where the client is when not on loopback. Returns once every connection has
/// ended and every observation has reached the sink.
pub async fn run(
    listener: std::net::TcpListener,
    target: String,
    mode: Mode,
    edge: Edge,
    sink: Arc<dyn TrafficSink>,
    cancel: CancellationToken,
    options: RunOptions,
) -> Result<(), ProxyError> {
    listener
        .set_nonblocking(true)
        .map_err(ProxyError::Listener)?;
    prepare(&listener).map_err(ProxyError::Listener)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ProxyError::Listener)?;
    let (observer, delivered) = Observer::spawn(edge, sink, DEFAULT_CAPACITY);
    options.barriers.register(observer.barrier());
    let served = match mode {
        Mode::Http | Mode::Grpc => http::serve(
            listener,
            target,
            observer,
            http::HttpSettings {
                // A `grpc` edge will carry gRPC: fetch its descriptors before the first call.
                grpc: GrpcSettings {
                    prefetch: mode == Mode::Grpc,
                    ..GrpcSettings::default()
                },
                ..http::HttpSettings::default()
            },
            cancel,
        )
        .await
        .map_err(ProxyError::from),
        Mode::Kafka => {
            kafka::serve(
                listener,
                target,
                observer,
                kafka::KafkaSettings {
                    advertise: options.kafka_advertise,
                    ..kafka::KafkaSettings::default()
                },
                cancel,
            )
            .await;
            Ok(())
        }
        Mode::Tcp => {
            tcp::serve(
                listener,
                target,
                observer,
                tcp::TcpSettings::default(),
                cancel,
            )
            .await;
            Ok(())
        }
    };
    // The observer is gone with the relay; wait until its last events are delivered.
    let _ = delivered.await;
    served
}
