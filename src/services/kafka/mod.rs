//! The `kafka` type: one Kafka broker per environment service (not pooled, as upstream).
//!
//! Config: `{"backend": "native" | "container" | "auto", "image": "<container image>",
//! "cmd": [...]}`.
//! - **native** runs [tansu](https://tansu.io) (`tansu broker`, in-memory storage) found on
//!   rigd's `PATH`, listening on the service's `kafka` ingress and advertising that address;
//!   its output goes to the service's log. tansu has no schema registry, so a spec with a
//!   `schema-registry` ingress cannot run natively.
//! - **container** runs upstream's image (`redpandadata/redpanda:v24.3.1`) with upstream's
//!   command, plus the advertised address rig-rs adds (`--advertise-kafka-addr`), so clients
//!   outside the container can follow the broker's metadata. `cmd` replaces that command for
//!   other images; `${KAFKA_ADVERTISED_ADDRESS}` in it is the broker's host address. The
//!   `kafka` ingress listens on container port 9092 and `schema-registry` on 8081 unless the
//!   spec says otherwise.
//! - **auto** (the default) is native when tansu is found and no schema registry is asked
//!   for, else container.
//!
//! Endpoints are the allocated local ports with the spec's attributes (upstream publishes no
//! Kafka attributes: the endpoint's address is the bootstrap address). Readiness of the
//! `kafka` ingress is an answered `ApiVersions` request. The init hook `schema` creates topics
//! (`"topics"`) and registers a schema with the schema registry (`"subject"`, as upstream);
//! see [`schema`].

mod native;
pub mod schema;

use std::collections::BTreeMap;
use std::sync::Arc;

use rig_types::{Endpoint, Protocol, Service};
use serde::Deserialize;

use super::container::{run_image, ContainerConfig};
use super::infra::BackendChoice;
use super::{
    ArtifactRequest, HookContext, RunContext, RunFuture, ServiceError, ServiceType, StepFuture,
};
use crate::artifacts::docker::DockerImage;
use crate::artifacts::Artifact;
use crate::ready::ProbeKind;

/// Upstream's image.
pub const DEFAULT_IMAGE: &str = "redpandadata/redpanda:v24.3.1";

/// The ingress name of the schema registry (upstream's SDK).
pub const SCHEMA_REGISTRY: &str = "schema-registry";

/// The broker's port inside the container (upstream).
const CONTAINER_KAFKA_PORT: u16 = 9092;

/// The schema registry's port inside the container (upstream).
const CONTAINER_REGISTRY_PORT: u16 = 8081;

/// The variable a container command names the broker's host address with.
pub const ADVERTISED_VAR: &str = "KAFKA_ADVERTISED_ADDRESS";

/// The `kafka` service type.
pub struct Kafka;

/// The `kafka` config.
#[derive(Clone, Debug, Default, Deserialize)]
struct KafkaConfig {
    #[serde(default)]
    backend: BackendChoice,
    /// The container image (container backend).
    #[serde(default)]
    image: String,
    /// The container command, replacing redpanda's (container backend).
    #[serde(default)]
    cmd: Option<Vec<String>>,
}

/// The keys a `kafka` config takes.
pub(crate) fn config_fields() -> &'static [&'static str] {
    crate::services::config::struct_fields::<KafkaConfig>()
}

impl KafkaConfig {
    fn of(spec: &Service) -> Result<KafkaConfig, ServiceError> {
        match &spec.config {
            None => Ok(KafkaConfig::default()),
            Some(value) => crate::services::config::decode(
                Some(value),
                "kafka config",
                r#"{"backend": "native" | "container" | "auto", "image": "<container image>", "cmd": ["<container command>", ...]}"#,
            ),
        }
    }

    fn image(&self) -> &str {
        if self.image.is_empty() {
            DEFAULT_IMAGE
        } else {
            &self.image
        }
    }
}

/// Which backend runs a `kafka` service.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Backend {
    /// tansu, at this path.
    Native(std::path::PathBuf),
    /// A container of this image.
    Container,
}

/// Chooses the backend: `native_found` is tansu's path when found.
fn choose(
    choice: BackendChoice,
    native_found: Option<std::path::PathBuf>,
    spec: &Service,
) -> Result<Backend, ServiceError> {
    let wants_registry = spec.ingresses.contains_key(SCHEMA_REGISTRY);
    match (choice, native_found) {
        (BackendChoice::Container, _) => Ok(Backend::Container),
        (BackendChoice::Native, _) if wants_registry => Err(ServiceError::new(format!(
            "kafka: the native backend (tansu) has no schema registry: remove the \
             {SCHEMA_REGISTRY:?} ingress or use \"backend\": \"container\""
        ))),
        (BackendChoice::Native, None) => Err(ServiceError::new(format!(
            "kafka: native backend: {}",
            native::MISSING
        ))),
        (BackendChoice::Auto, Some(_)) if wants_registry => Ok(Backend::Container),
        (BackendChoice::Native | BackendChoice::Auto, Some(path)) => Ok(Backend::Native(path)),
        (BackendChoice::Auto, None) => Ok(Backend::Container),
    }
}

fn backend_of(spec: &Service) -> Result<(KafkaConfig, Backend), ServiceError> {
    let config = KafkaConfig::of(spec)?;
    let backend = choose(config.backend, native::find_binary(), spec)?;
    Ok((config, backend))
}

/// The ingress the broker listens on: `default` when it speaks Kafka, else the first `kafka`
/// ingress, else `default`.
pub fn kafka_ingress(spec: &Service) -> &str {
    let is_kafka = |name: &str| {
        spec.ingresses
            .get(name)
            .is_some_and(|i| i.protocol == Protocol::Kafka)
    };
    if is_kafka("default") {
        return "default";
    }
    spec.ingresses
        .iter()
        .find(|(_, i)| i.protocol == Protocol::Kafka)
        .map_or("default", |(name, _)| name.as_str())
}

fn broker_address(
    ctx_ingresses: &BTreeMap<String, Endpoint>,
    spec: &Service,
) -> Result<String, ServiceError> {
    let name = kafka_ingress(spec);
    ctx_ingresses
        .get(name)
        .map(|ep| ep.hostport.clone())
        .ok_or_else(|| {
            ServiceError::new(format!(
                "kafka: no ingress {name:?} for the broker (give the service an ingress with \
                 \"protocol\": \"kafka\")"
            ))
        })
}

impl ServiceType for Kafka {
    fn artifacts(&self, req: &ArtifactRequest<'_>) -> Result<Vec<Artifact>, ServiceError> {
        let (config, backend) = backend_of(req.spec)?;
        if backend != Backend::Container {
            return Ok(Vec::new());
        }
        Ok(vec![DockerImage::artifact(config.image(), req.service)])
    }

    fn run(&self, ctx: RunContext) -> RunFuture {
        Box::pin(async move {
            let (config, backend) = backend_of(&ctx.spec)?;
            let broker = broker_address(&ctx.ingresses, &ctx.spec)?;
            match backend {
                Backend::Native(tansu) => native::run(ctx, &tansu, &broker).await,
                Backend::Container => run_container(ctx, &config, &broker).await,
            }
        })
    }

    fn ready_probe(&self, _ingress: &str, endpoint: &Endpoint) -> Option<ProbeKind> {
        (endpoint.protocol == Protocol::Kafka).then_some(ProbeKind::Kafka)
    }

    fn init_hook_types(&self) -> &'static [&'static str] {
        &["schema"]
    }

    fn init_hook(&self, ctx: HookContext) -> Option<StepFuture> {
        (ctx.hook.hook_type == "schema").then(|| -> StepFuture { Box::pin(schema::run(ctx)) })
    }
}

/// Runs the broker's image: upstream's redpanda command (or the config's `cmd`), the
/// advertised address in `KAFKA_ADVERTISED_ADDRESS`, container ports 9092 and 8081.
async fn run_container(
    mut ctx: RunContext,
    config: &KafkaConfig,
    broker: &str,
) -> Result<(), ServiceError> {
    let mut spec = Service::clone(&ctx.spec);
    let kafka = kafka_ingress(&spec).to_string();
    for (name, ingress) in spec.ingresses.iter_mut() {
        if ingress.container_port != 0 {
            continue;
        }
        if *name == kafka {
            ingress.container_port = CONTAINER_KAFKA_PORT;
        } else if name == SCHEMA_REGISTRY {
            ingress.container_port = CONTAINER_REGISTRY_PORT;
        }
    }
    let kafka_port = spec.ingresses.get(&kafka).map_or(0, |i| i.container_port);
    let registry_port = spec
        .ingresses
        .get(SCHEMA_REGISTRY)
        .map(|i| i.container_port);
    ctx.spec = Arc::new(spec);
    let cmd = config
        .cmd
        .clone()
        .unwrap_or_else(|| redpanda_command(kafka_port, registry_port));
    let image = ContainerConfig {
        image: config.image().to_string(),
        cmd,
        env: BTreeMap::from([(ADVERTISED_VAR.to_string(), broker.to_string())]),
    };
    run_image(ctx, &image).await
}

/// Upstream's redpanda command, advertising the broker's host address.
fn redpanda_command(kafka_port: u16, registry_port: Option<u16>) -> Vec<String> {
    let mut cmd: Vec<String> = [
        "redpanda",
        "start",
        "--mode",
        "dev-container",
        "--smp",
        "1",
        "--memory",
        "256M",
        "--overprovisioned",
        "--kafka-addr",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cmd.push(format!("0.0.0.0:{kafka_port}"));
    cmd.push("--advertise-kafka-addr".to_string());
    cmd.push(format!("${{{ADVERTISED_VAR}}}"));
    if let Some(port) = registry_port {
        cmd.push("--schema-registry-addr".to_string());
        cmd.push(format!("0.0.0.0:{port}"));
    }
    cmd
}

#[cfg(test)]
mod tests;
