//! The `proxy` type: the observing proxy rigd inserts on every edge in observe mode.
//!
//! It publishes one `default` ingress on its allocated port — with the target's protocol and a
//! copy of the target's attributes, whose templates then resolve against the proxy's address —
//! keeps that port's listener open for its whole life, and relays to the target's address,
//! recording the edge's traffic into the event log (or, on a container's Kafka edge in an
//! environment that does not observe, recording nothing).

use std::collections::BTreeMap;
use std::sync::Arc;

use rig_proxy::kafka::Advertise;
use rig_proxy::{Edge, Mode, RunOptions};
use rig_types::Endpoint;

use super::{PublishContext, RunContext, RunFuture, ServiceError, ServiceType};
use crate::spec::ProxyConfig;

/// The `proxy` service type.
pub struct Proxy;

impl ServiceType for Proxy {
    /// Probes through a proxy are dialled, so they show in its traffic (marked as probes).
    fn tcp_ready_without_dial(&self) -> bool {
        false
    }

    fn publish(
        &self,
        ctx: &mut PublishContext<'_>,
    ) -> Result<BTreeMap<String, Endpoint>, ServiceError> {
        let target = ctx
            .egresses
            .get("target")
            .ok_or("proxy: no resolved egress \"target\"")?;
        let port = ctx.port("default")?;
        ctx.keep_listener("default")?;
        Ok(BTreeMap::from([(
            "default".to_string(),
            Endpoint {
                hostport: format!("127.0.0.1:{port}"),
                protocol: target.protocol.clone(),
                attributes: target.attributes.clone(),
            },
        )]))
    }

    fn run(&self, mut ctx: RunContext) -> RunFuture {
        Box::pin(async move {
            let config: ProxyConfig = ctx
                .spec
                .config
                .clone()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| ServiceError::new(format!("invalid proxy config: {e}")))?
                .unwrap_or_default();
            let target = ctx
                .egresses
                .get("target")
                .ok_or("proxy: no resolved egress \"target\"")?;
            let listener = ctx
                .listeners
                .remove("default")
                .ok_or("proxy: no listener for ingress \"default\"")?;
            let edge = Edge {
                source: config.source,
                target: config.target_svc,
                ingress: config.ingress,
            };
            let mode = Mode::for_protocol(&target.protocol);
            let options = RunOptions {
                kafka_advertise: if mode == Mode::Kafka && config.source_in_container {
                    Some(container_side().await?)
                } else {
                    None
                },
                barriers: ctx.output.traffic_barriers(),
            };
            rig_proxy::run(
                listener,
                target.hostport.clone(),
                mode,
                edge,
                if config.unobserved {
                    Arc::new(|_event| {}) as Arc<dyn rig_proxy::TrafficSink>
                } else {
                    ctx.output.traffic_sink()
                },
                ctx.cancel.clone(),
                options,
            )
            .await
            .map_err(|e| ServiceError::new(e.to_string()))
        })
    }
}

/// Where a Kafka proxy serving a container binds its per-broker listeners and what it
/// advertises for them: the Docker bridge gateway, which the container reaches as
/// `host.docker.internal`, as it reaches the proxy itself (`crate::docker::HostGateway`).
async fn container_side() -> Result<Advertise, ServiceError> {
    let engine = crate::docker::connect()
        .await
        .map_err(|e| ServiceError::new(format!("proxy for a container: {e}")))?;
    let bind = crate::docker::bridge_gateway(&engine)
        .await
        .map_err(|e| ServiceError::new(format!("proxy for a container: {e}")))?;
    Ok(Advertise {
        bind,
        host: super::container::DOCKER_HOST_NAME.to_string(),
    })
}
