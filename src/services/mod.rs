//! Service types: how rigd publishes, starts and stops each kind of service.
//!
//! A type implements [`ServiceType`]; the [`Registry`] maps type names to implementations.
//! rigd registers its built-in types with [`Registry::builtin`]; an embedding program can add
//! its own with [`Registry::register`] (that is what the spec's `custom` type is for).

mod builds;
mod client;
pub(crate) mod config;
pub use config::config_warnings;
mod container;
pub mod infra;
pub mod kafka;
mod moto;
mod output;
pub mod postgres;
pub(crate) mod process;
mod proxy;
pub mod redis;
pub mod s3;
pub mod sqs;
pub mod temporal;
mod test_node;

pub use builds::{Cargo, Go};
pub use client::Client;
pub use container::Container;
pub use kafka::Kafka;
pub use output::OutputSink;
pub use postgres::Postgres;
pub use process::Process;
pub use proxy::Proxy;
pub use redis::Redis;
pub use s3::S3;
pub use sqs::Sqs;
pub use temporal::Temporal;
pub use test_node::TestNode;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rig_types::{Endpoint, HookSpec, IngressSpec, Service};
use tokio_util::sync::CancellationToken;

use crate::artifacts::{Artifact, Outputs};
use crate::orchestrator::CallbackDispatcher;

/// A boxed future returned by [`ServiceType::run`].
pub type RunFuture = Pin<Box<dyn Future<Output = Result<(), ServiceError>> + Send>>;

/// A boxed future returned by [`ServiceType::prepare`] and [`ServiceType::init_hook`].
pub type StepFuture = Pin<Box<dyn Future<Output = Result<(), ServiceError>> + Send>>;

/// A boxed future returned by [`ServiceType::not_ready_advice`].
pub type AdviceFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// A boxed future returned by [`ServiceType::release`].
pub type ReleaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An error from a service type, reported as the `error` of `service.failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError(String);

impl ServiceError {
    /// An error with the given message.
    pub fn new(message: impl Into<String>) -> ServiceError {
        ServiceError(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServiceError {}

impl From<String> for ServiceError {
    fn from(s: String) -> ServiceError {
        ServiceError(s)
    }
}

impl From<&str> for ServiceError {
    fn from(s: &str) -> ServiceError {
        ServiceError(s.to_string())
    }
}

/// What a type needs to publish a service's endpoints.
pub struct PublishContext<'a> {
    /// The service name.
    pub service: &'a str,
    /// The environment instance id.
    pub instance_id: &'a str,
    /// The service spec.
    pub spec: &'a Service,
    /// Ingress name → allocated port.
    pub ports: BTreeMap<String, u16>,
    /// Ingress name → the allocated port's listener (bound on 127.0.0.1). A type that serves
    /// the port itself (a proxy) keeps it with [`PublishContext::keep_listener`]; the others
    /// are closed before the service starts, so the service can bind the port.
    pub listeners: BTreeMap<String, std::net::TcpListener>,
    /// Listeners kept by the type; handed to [`ServiceType::run`] in [`RunContext::listeners`].
    pub kept: BTreeMap<String, std::net::TcpListener>,
    /// The service's egresses, endpoints unresolved.
    pub egresses: &'a BTreeMap<String, Endpoint>,
}

impl PublishContext<'_> {
    /// The port allocated to `ingress`.
    pub fn port(&self, ingress: &str) -> Result<u16, ServiceError> {
        self.ports
            .get(ingress)
            .copied()
            .ok_or_else(|| ServiceError::new(format!("no port allocated for ingress {ingress:?}")))
    }

    /// Keeps the listener of `ingress` open for the runner instead of closing it.
    pub fn keep_listener(&mut self, ingress: &str) -> Result<(), ServiceError> {
        let listener = self
            .listeners
            .remove(ingress)
            .ok_or_else(|| ServiceError::new(format!("no listener for ingress {ingress:?}")))?;
        self.kept.insert(ingress.to_string(), listener);
        Ok(())
    }
}

/// What a type needs to list the artifacts a service needs (at `POST /environments`).
pub struct ArtifactRequest<'a> {
    /// The service name.
    pub service: &'a str,
    /// The service spec.
    pub spec: &'a Service,
    /// The spec's `dir`: the client's working directory.
    pub spec_dir: &'a str,
    /// The client's environment (`host_env`).
    pub host_env: &'a BTreeMap<String, String>,
    /// The artifact cache root (`{rig-dir}/cache`).
    pub cache_root: &'a Path,
}

/// Everything a running service gets.
pub struct RunContext {
    /// The service name.
    pub service: String,
    /// The environment instance id.
    pub instance_id: String,
    /// The service spec.
    pub spec: Arc<Service>,
    /// The spec's `dir`: the client's working directory.
    pub spec_dir: String,
    /// Published ingresses (unresolved).
    pub ingresses: BTreeMap<String, Endpoint>,
    /// Resolved egress endpoints (unresolved templates).
    pub egresses: BTreeMap<String, Endpoint>,
    /// The service environment (section "wiring").
    pub env: BTreeMap<String, String>,
    /// The service's own temporary directory, empty for injected nodes.
    pub temp_dir: PathBuf,
    /// The environment directory.
    pub env_dir: PathBuf,
    /// Where stdout and stderr chunks go (`service.log` events).
    pub output: OutputSink,
    /// Asks the client to run a registered function.
    pub callbacks: CallbackDispatcher,
    /// Fires when the service must stop.
    pub cancel: CancellationToken,
    /// Grace period between SIGINT and SIGKILL.
    pub stop_grace: Duration,
    /// Listeners kept by `publish` (proxies), by ingress.
    pub listeners: BTreeMap<String, std::net::TcpListener>,
    /// Kills the service's processes if rigd dies (absent in in-process tests).
    pub reaper: Option<Arc<crate::reaper::Reaper>>,
    /// The environment's resolved artifacts, by artifact key.
    pub artifacts: Arc<Outputs>,
}

/// Identifies one service of one environment, for [`ServiceType::prepare`] and
/// [`ServiceType::release`].
#[derive(Clone)]
pub struct ServiceRef {
    /// The service name.
    pub service: String,
    /// The environment instance id.
    pub instance_id: String,
    /// The service spec.
    pub spec: Arc<Service>,
}

impl ServiceRef {
    /// `<instance id>:<service>`: unique per service of a rigd, the key under which a type
    /// keeps what it acquired for the service.
    pub fn key(&self) -> String {
        service_key(&self.instance_id, &self.service)
    }
}

/// `<instance id>:<service>` (see [`ServiceRef::key`]).
pub fn service_key(instance_id: &str, service: &str) -> String {
    format!("{instance_id}:{service}")
}

/// What a server-side init hook (`sql`, `exec`, ...) gets.
pub struct HookContext {
    /// The service, its instance and spec.
    pub service: ServiceRef,
    /// The hook.
    pub hook: HookSpec,
    /// The spec's `dir`: the client's working directory, against which relative paths in the
    /// hook's config resolve.
    pub spec_dir: String,
    /// The service's published ingresses (unresolved templates).
    pub ingresses: BTreeMap<String, Endpoint>,
    /// The service's resolved egresses (unresolved templates).
    pub egresses: BTreeMap<String, Endpoint>,
    /// The service's output: what the hook prints goes into the log as `service.log`.
    pub output: OutputSink,
    /// The client's environment (`host_env`): the base of a host command's environment.
    pub host_env: BTreeMap<String, String>,
    /// Tracks the process groups of host commands, if rigd runs with a reaper.
    pub reaper: Option<Arc<crate::reaper::Reaper>>,
}

/// A kind of service.
///
/// The lifecycle calls, in order: [`prepare`](ServiceType::prepare) (acquire shared
/// resources, such as a lease on a pooled backend), [`publish`](ServiceType::publish),
/// [`run`](ServiceType::run) alongside the readiness checks
/// ([`ready_probe`](ServiceType::ready_probe)) and init hooks
/// ([`init_hook`](ServiceType::init_hook)), and finally, whatever happened,
/// [`release`](ServiceType::release).
pub trait ServiceType: Send + Sync + 'static {
    /// Acquires what the service needs before its endpoints can be published (a pooled
    /// backend's lease: the first environment pays the backend's start here). The default
    /// needs nothing. Whatever it acquires is given back by [`ServiceType::release`].
    fn prepare(&self, service: &ServiceRef) -> StepFuture {
        let _ = service;
        Box::pin(async { Ok(()) })
    }

    /// Gives back what [`ServiceType::prepare`] acquired for `service`. Called once the
    /// service has stopped, or failed, or was cancelled at any step (even before or during
    /// `prepare`), so it must cope with nothing having been acquired.
    fn release(&self, service: &ServiceRef) -> ReleaseFuture {
        let _ = service;
        Box::pin(async {})
    }

    /// Whether, when the environment stops, [`ServiceType::release`] waits until the
    /// services that reach this one (through their egresses, directly or by way of other
    /// services such as proxies) have stopped. True for types whose release wipes what
    /// clients see (a pooled database dropped, a Redis database flushed): an app still in
    /// its stop grace would otherwise lose its connections, or write into a database
    /// already handed back.
    fn release_after_dependents(&self) -> bool {
        false
    }

    /// The endpoints of the service's ingresses. The default publishes
    /// `127.0.0.1:<allocated port>` with the spec's protocol and attributes unchanged.
    fn publish(
        &self,
        ctx: &mut PublishContext<'_>,
    ) -> Result<BTreeMap<String, Endpoint>, ServiceError> {
        publish_local(ctx)
    }

    /// The artifacts the service needs before it starts (built or fetched by the artifact
    /// phase). Called when the environment is created; an error refuses the environment.
    fn artifacts(&self, _req: &ArtifactRequest<'_>) -> Result<Vec<Artifact>, ServiceError> {
        Ok(Vec::new())
    }

    /// Runs the service until it exits or `ctx.cancel` fires. Returning `Ok` before
    /// cancellation still fails the environment (`runner exited early`): services are
    /// expected to run until told to stop.
    fn run(&self, ctx: RunContext) -> RunFuture;

    /// The readiness probe of `ingress`, replacing the one chosen from the ingress's protocol
    /// and `ready.type` (upstream's custom ready check: PostgreSQL's startup handshake rather
    /// than a TCP connect). The default (`None`) keeps the protocol's probe.
    fn ready_probe(&self, ingress: &str, endpoint: &Endpoint) -> Option<crate::ready::ProbeKind> {
        let _ = (ingress, endpoint);
        None
    }

    /// Whether a TCP readiness probe of this type's ingresses may be answered by the kernel
    /// saying a socket listening there accepts connections (see `ready::listen_watch`)
    /// instead of by a connection. The default is yes; an observing proxy says no, so the
    /// probes through it still show in its traffic, marked as probes.
    fn tcp_ready_without_dial(&self) -> bool {
        true
    }

    /// Whether this type's ingresses are published by a port publisher that accepts
    /// connections before the service listens (Docker's `docker-proxy`): their TCP readiness
    /// is then a connection that stays open ([`ProbeKind::TcpHeld`](crate::ready::ProbeKind)),
    /// never the kernel's word that the port listens.
    fn published_by_proxy(&self) -> bool {
        false
    }

    /// Waits until the service has really started, before its readiness is looked at: a
    /// container created and running, say. `None` (the default) when the runner starting is
    /// enough. An error fails the service.
    fn started(&self, service: &ServiceRef) -> Option<StepFuture> {
        let _ = service;
        None
    }

    /// Why `ingress` (published at `endpoint`) may not have become ready, from a look at the
    /// service itself (the ports it really listens on), added to the readiness failure.
    /// `None` (the default) when the type cannot tell; the future gives `None` when it finds
    /// nothing to say.
    fn not_ready_advice(
        &self,
        service: &ServiceRef,
        ingress: &str,
        endpoint: &Endpoint,
    ) -> Option<AdviceFuture> {
        let _ = (service, ingress, endpoint);
        None
    }

    /// Runs a server-side init hook (a hook whose type is not `client_func`), or returns
    /// `None` when this type has no hook of that type (the lifecycle then reports
    /// `unsupported hook type`).
    fn init_hook(&self, ctx: HookContext) -> Option<StepFuture> {
        let _ = ctx;
        None
    }

    /// The server-side init hook types [`ServiceType::init_hook`] runs (every type also
    /// takes `client_func` hooks, which the client runs). A spec asking for another is
    /// refused when the environment is created.
    fn init_hook_types(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Whether `spec`'s hooks are ones its type (which runs the server-side init hooks
/// `init_types`) can run: `client_func` hooks anywhere, naming the function the client
/// registered, the others only among the init hooks. The error says what to use instead.
pub fn check_hooks(spec: &Service, init_types: &[&str]) -> Result<(), String> {
    let type_name = &spec.service_type;
    let Some(hooks) = &spec.hooks else {
        return Ok(());
    };
    for (phase, list) in [("prestart", &hooks.prestart), ("init", &hooks.init)] {
        for (i, hook) in list.iter().enumerate() {
            if hook.hook_type != "client_func" {
                continue;
            }
            match &hook.client_func {
                None => {
                    return Err(format!(
                        "hooks.{phase}[{i}]: a client_func hook needs \"client_func\": \
                         {{\"name\": \"<the function the SDK registered>\"}}"
                    ))
                }
                Some(func) if func.name.is_empty() => {
                    return Err(format!(
                        "hooks.{phase}[{i}]: client_func.name is empty; name the function the \
                         SDK registered"
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let takes = if init_types.is_empty() {
        format!("{type_name} services take only client_func hooks")
    } else {
        format!(
            "{type_name} init hooks are client_func or {}",
            init_types.join(", ")
        )
    };
    for hook in &hooks.prestart {
        if hook.hook_type != "client_func" {
            return Err(format!(
                "prestart hook type {:?} is not supported: prestart hooks are client_func \
                 (server-side hooks run as init hooks)",
                hook.hook_type
            ));
        }
    }
    for hook in &hooks.init {
        if hook.hook_type != "client_func" && !init_types.contains(&hook.hook_type.as_str()) {
            return Err(format!(
                "init hook type {:?} is not supported: {takes}",
                hook.hook_type
            ));
        }
    }
    Ok(())
}

/// Publishes `127.0.0.1:<port>` for every ingress with the spec's protocol and attributes.
pub fn publish_local(ctx: &PublishContext<'_>) -> Result<BTreeMap<String, Endpoint>, ServiceError> {
    local_endpoints(&ctx.spec.ingresses, |name| ctx.port(name))
}

fn local_endpoints(
    ingresses: &BTreeMap<String, IngressSpec>,
    mut port: impl FnMut(&str) -> Result<u16, ServiceError>,
) -> Result<BTreeMap<String, Endpoint>, ServiceError> {
    ingresses
        .iter()
        .map(|(name, ingress)| {
            Ok((
                name.clone(),
                Endpoint {
                    hostport: format!("127.0.0.1:{}", port(name)?),
                    protocol: ingress.protocol.clone(),
                    attributes: ingress.attributes.clone(),
                },
            ))
        })
        .collect()
}

/// The pooled infrastructure types of this process. Their backends are shared by every
/// environment (and every [`Registry::builtin`]) of a rigd, and stopped by [`Pools::close`] at
/// shutdown.
pub struct Pools {
    /// The `postgres` type and its pool.
    pub postgres: Postgres,
    /// The `redis` type and its pool.
    pub redis: Redis,
    /// The `s3` type and its pool.
    pub s3: S3,
    /// The `sqs` type and its pool.
    pub sqs: Sqs,
    /// The `temporal` type and its pool.
    pub temporal: Temporal,
}

impl Pools {
    /// This process's pools.
    pub fn shared() -> &'static Pools {
        static SHARED: std::sync::OnceLock<Pools> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Pools {
            postgres: Postgres::default(),
            redis: Redis::default(),
            s3: S3::default(),
            sqs: Sqs::default(),
            temporal: Temporal::default(),
        })
    }

    /// Stops every pooled backend (rigd shutdown); later leases fail.
    pub async fn close(&self) {
        tokio::join!(
            self.postgres.pool().close(),
            self.redis.pool().close(),
            self.s3.pool().close(),
            self.sqs.pool().close(),
            self.temporal.pool().close()
        );
    }
}

/// Service type name → implementation.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<String, Arc<dyn ServiceType>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The built-in types: `process`, `cargo`, `go`, `container`, `client`, `test`, `proxy`,
    /// `kafka` (a broker per service), and the pooled infrastructure types `postgres`,
    /// `redis`, `s3`, `sqs` and `temporal`, which share this process's [`Pools`].
    pub fn builtin() -> Registry {
        let mut r = Registry::new();
        r.register("process", Process);
        r.register("cargo", Cargo);
        r.register("go", Go);
        r.register("container", Container);
        r.register("client", Client);
        r.register("test", TestNode);
        r.register("proxy", Proxy);
        r.register("kafka", Kafka);
        let pools = Pools::shared();
        r.register("postgres", pools.postgres.clone());
        r.register("redis", pools.redis.clone());
        r.register("s3", pools.s3.clone());
        r.register("sqs", pools.sqs.clone());
        r.register("temporal", pools.temporal.clone());
        r
    }

    /// Registers (or replaces) a type.
    pub fn register(&mut self, name: impl Into<String>, service_type: impl ServiceType) {
        self.types.insert(name.into(), Arc::new(service_type));
    }

    /// Looks a type up.
    pub fn get(&self, name: &str) -> Result<Arc<dyn ServiceType>, ServiceError> {
        self.types
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::new(format!("unknown service type: {name:?}")))
    }

    /// True when `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig_types::Protocol;
    use serde_json::json;

    fn ingress(protocol: Protocol) -> IngressSpec {
        IngressSpec {
            protocol,
            ..IngressSpec::default()
        }
    }

    #[test]
    fn local_endpoints_map_ports_and_keep_attributes() {
        let mut ingresses = BTreeMap::new();
        ingresses.insert("default".to_string(), ingress(Protocol::Http));
        let mut admin = ingress(Protocol::Tcp);
        admin.attributes = Some(BTreeMap::from([(
            "URL".to_string(),
            json!("http://${HOSTPORT}"),
        )]));
        ingresses.insert("admin".to_string(), admin);
        let eps =
            local_endpoints(&ingresses, |n| Ok(if n == "default" { 8080 } else { 9090 })).unwrap();
        assert_eq!(eps["default"].hostport, "127.0.0.1:8080");
        assert_eq!(eps["default"].protocol, Protocol::Http);
        assert_eq!(eps["admin"].hostport, "127.0.0.1:9090");
        assert_eq!(
            eps["admin"].attributes.as_ref().unwrap()["URL"],
            json!("http://${HOSTPORT}")
        );
    }

    #[test]
    fn missing_port_is_an_error() {
        let mut ingresses = BTreeMap::new();
        ingresses.insert("default".to_string(), ingress(Protocol::Http));
        let spec = Service {
            ingresses,
            ..Service::default()
        };
        let egresses = BTreeMap::new();
        let ctx = PublishContext {
            service: "api",
            instance_id: "i",
            spec: &spec,
            ports: BTreeMap::new(),
            listeners: BTreeMap::new(),
            kept: BTreeMap::new(),
            egresses: &egresses,
        };
        assert_eq!(
            publish_local(&ctx).unwrap_err().message(),
            "no port allocated for ingress \"default\""
        );
    }

    #[test]
    fn registry_rejects_unknown_and_returns_registered() {
        let r = Registry::builtin();
        assert!(r.get("process").is_ok());
        assert!(r.contains("client") && r.contains("test"));
        assert_eq!(
            r.get("quantum").err().unwrap().message(),
            "unknown service type: \"quantum\""
        );
    }
}
