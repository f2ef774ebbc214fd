//! What the infrastructure types (`postgres`, `redis`, `s3`, `sqs`) share: the choice of
//! backend, the leases they hold per service, and the [`Pooled`] service type built from an
//! [`Infra`] description (how to find and start the backend, what a lease publishes).
//!
//! Each type takes `"backend": "native" | "container" | "auto"` in its config. `native` runs
//! the server from binaries found on the machine; `container` runs upstream's image (or the
//! config's `"image"`) with the Docker engine, for the types that have one (`postgres`,
//! `redis`, `s3`, `sqs`, `temporal`); `auto`, the default, picks native when the binaries are found, else the
//! container. The image is made present in the artifact phase (`docker:<image>`). Each
//! backend kind and image is a pool key of its own: native and container backends never mix.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;

use std::process::Stdio;

use rig_types::LogStream;

use super::process::OutputReaders;

use rig_types::Endpoint;

use super::{
    service_key, ArtifactRequest, HookContext, PublishContext, ReleaseFuture, RunContext,
    RunFuture, ServiceError, ServiceRef, ServiceType, StepFuture,
};
use crate::artifacts::docker::DockerImage;
use crate::artifacts::Artifact;
use crate::pool::{Backend, Lease, Pool};
use crate::ready::ProbeKind;

/// Describes one pooled infrastructure type; [`Pooled`] turns it into a [`ServiceType`].
pub trait Infra: Send + Sync + 'static {
    /// The backend a pool of this type runs.
    type Backend: Backend;

    /// The type name (`postgres`).
    const NAME: &'static str;

    /// How long an unused backend keeps running.
    const IDLE: Duration;

    /// What to say when the native binaries are missing, and how to install them.
    const MISSING: &'static str;

    /// The native binary (or directory of binaries) to run, if found on this machine.
    fn find_native() -> Option<PathBuf>;

    /// Starts a native backend from what [`Infra::find_native`] found.
    fn start_native(found: PathBuf) -> impl Future<Output = Result<Self::Backend, String>> + Send;

    /// Upstream's image, the default of the container backend; `None` when the type has no
    /// container backend or derives its image from the config ([`Infra::default_image`]).
    const DEFAULT_IMAGE: Option<&'static str> = None;

    /// The container backend's image when the config names none: [`Infra::DEFAULT_IMAGE`]
    /// unless the type derives it from the config (Temporal's follows `version`).
    fn default_image(config: &CommonConfig) -> Option<String> {
        let _ = config;
        Self::DEFAULT_IMAGE.map(str::to_string)
    }

    /// Starts a container backend from `image` (present locally: the artifact phase made
    /// sure). Only called for types with a container backend.
    fn start_container(
        image: String,
    ) -> impl Future<Output = Result<Self::Backend, String>> + Send {
        async move {
            Err(format!(
                "{}: no container backend (asked to run {image})",
                Self::NAME
            ))
        }
    }

    /// The backend's port on 127.0.0.1.
    fn port(backend: &Self::Backend) -> u16;

    /// The attributes every ingress of a service holding `lease` publishes (they replace the
    /// spec's, as upstream).
    fn attributes(lease: &<Self::Backend as Backend>::Lease)
        -> BTreeMap<String, serde_json::Value>;

    /// The port of the backend that ingress `ingress` reaches (default: [`Infra::port`]
    /// for every ingress; Temporal serves its UI on a port of its own).
    fn ingress_port(backend: &Self::Backend, ingress: &str) -> u16 {
        let _ = ingress;
        Self::port(backend)
    }

    /// Whether ingress `ingress` publishes the lease's attributes (default: every ingress;
    /// upstream gives Temporal's only to `default`).
    fn has_attributes(ingress: &str) -> bool {
        let _ = ingress;
        true
    }

    /// The readiness probe, replacing the protocol's (`None`: the protocol's).
    fn ready_probe() -> Option<ProbeKind> {
        None
    }

    /// Runs a server-side init hook with the service's lease, or `None` for a hook type the
    /// type does not have.
    fn init_hook(ctx: HookContext, lease: Arc<Lease<Self::Backend>>) -> Option<StepFuture> {
        let _ = (ctx, lease);
        None
    }

    /// The hook types [`Infra::init_hook`] runs (see [`ServiceType::init_hook_types`]).
    const INIT_HOOKS: &'static [&'static str] = &[];
}

/// A pooled infrastructure service type: acquires a lease on the shared backend in
/// `prepare` (starting the backend for the first environment), publishes the backend's
/// address with the lease's attributes, idles while running, and releases the lease at the
/// end.
pub struct Pooled<K: Infra> {
    pool: Pool<K::Backend>,
    leases: Arc<Leases<K::Backend>>,
}

impl<K: Infra> Clone for Pooled<K> {
    fn clone(&self) -> Self {
        Pooled {
            pool: self.pool.clone(),
            leases: self.leases.clone(),
        }
    }
}

impl<K: Infra> Default for Pooled<K> {
    fn default() -> Self {
        Pooled {
            pool: Pool::new(K::NAME, K::IDLE),
            leases: Arc::new(Leases::default()),
        }
    }
}

impl<K: Infra> Pooled<K> {
    /// The pool (rigd closes it at shutdown).
    pub fn pool(&self) -> &Pool<K::Backend> {
        &self.pool
    }
}

impl<K: Infra> ServiceType for Pooled<K> {
    fn artifacts(&self, req: &ArtifactRequest<'_>) -> Result<Vec<Artifact>, ServiceError> {
        // A config or backend error is reported when the service starts (`prepare`), as a
        // failure of that service.
        let Ok(config) = CommonConfig::from_config(K::NAME, req.spec.config.as_ref()) else {
            return Ok(Vec::new());
        };
        let Ok(Chosen::Container(image)) = choose::<K>(&config) else {
            return Ok(Vec::new());
        };
        // `auto` picks the container only when the native binaries are missing.
        let why = match config.backend {
            BackendChoice::Auto => format!(
                "\"backend\" \"auto\" chose the container image because the native backend \
                 is missing: {}",
                K::MISSING
            ),
            _ => String::new(),
        };
        Ok(vec![DockerImage::artifact_because(image, req.service, why)])
    }

    fn prepare(&self, service: &ServiceRef) -> StepFuture {
        let this = self.clone();
        let service = service.clone();
        Box::pin(async move {
            let config = CommonConfig::of(K::NAME, &service)?;
            let lease = match choose::<K>(&config)? {
                Chosen::Native(found) => {
                    let key = format!("native:{}", found.display());
                    this.pool
                        .acquire(&key, move || K::start_native(found))
                        .await
                }
                Chosen::Container(image) => {
                    let key = format!("container:{image}");
                    this.pool
                        .acquire(&key, move || K::start_container(image))
                        .await
                }
            }
            .map_err(|e| ServiceError::new(format!("{}: {e}", K::NAME)))?;
            this.leases.insert(&service, lease);
            Ok(())
        })
    }

    fn release(&self, service: &ServiceRef) -> ReleaseFuture {
        let leases = self.leases.clone();
        let service = service.clone();
        Box::pin(async move { leases.release(&service).await })
    }

    fn release_after_dependents(&self) -> bool {
        true
    }

    fn publish(
        &self,
        ctx: &mut PublishContext<'_>,
    ) -> Result<BTreeMap<String, Endpoint>, ServiceError> {
        let lease = self
            .leases
            .get(K::NAME, &service_key(ctx.instance_id, ctx.service))?;
        let attributes = K::attributes(lease.get());
        Ok(ctx
            .spec
            .ingresses
            .iter()
            .map(|(name, ingress)| {
                let port = K::ingress_port(lease.backend(), name);
                (
                    name.clone(),
                    Endpoint {
                        hostport: format!("127.0.0.1:{port}"),
                        protocol: ingress.protocol.clone(),
                        attributes: K::has_attributes(name).then(|| attributes.clone()),
                    },
                )
            })
            .collect())
    }

    fn run(&self, ctx: RunContext) -> RunFuture {
        let leases = self.leases.clone();
        Box::pin(async move {
            let key = service_key(&ctx.instance_id, &ctx.service);
            let lease = leases.get(K::NAME, &key)?;
            run_leased(K::NAME, lease, ctx).await
        })
    }

    fn ready_probe(&self, _ingress: &str, _endpoint: &Endpoint) -> Option<ProbeKind> {
        K::ready_probe()
    }

    fn init_hook(&self, ctx: HookContext) -> Option<StepFuture> {
        match self.leases.get(K::NAME, &ctx.service.key()) {
            Ok(lease) => K::init_hook(ctx, lease),
            Err(e) => Some(Box::pin(async move { Err(e) })),
        }
    }

    fn init_hook_types(&self) -> &'static [&'static str] {
        K::INIT_HOOKS
    }
}

/// Which kind of backend runs an infrastructure service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A process started from binaries on the machine.
    Native,
    /// Upstream's container image.
    Container,
    /// Native when the binaries are found, else container.
    #[default]
    Auto,
}

/// The backend a service runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// Native, from what [`Infra::find_native`] found.
    Native(PathBuf),
    /// A container of this image.
    Container(String),
}

/// Chooses the backend of a `K` service with `config`, looking for the native binaries.
pub fn choose<K: Infra>(config: &CommonConfig) -> Result<Chosen, ServiceError> {
    let image = K::default_image(config).map(|default| {
        config
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or(default)
    });
    config
        .backend
        .resolve(K::NAME, K::find_native(), image, K::MISSING)
}

impl BackendChoice {
    /// Resolves the choice for a type whose native binaries were `found` (or not) and whose
    /// container backend runs `image` (`None`: the type has none); `missing` says what is
    /// missing and how to install it.
    pub fn resolve(
        self,
        type_name: &str,
        found: Option<PathBuf>,
        image: Option<String>,
        missing: &str,
    ) -> Result<Chosen, ServiceError> {
        match (self, found, image) {
            (BackendChoice::Native | BackendChoice::Auto, Some(found), _) => {
                Ok(Chosen::Native(found))
            }
            (BackendChoice::Container | BackendChoice::Auto, _, Some(image)) => {
                Ok(Chosen::Container(image))
            }
            (BackendChoice::Native, None, _) => Err(ServiceError::new(format!(
                "{type_name}: native backend: {missing}"
            ))),
            (BackendChoice::Container, _, None) => Err(ServiceError::new(format!(
                "{type_name}: there is no container backend for {type_name} in this rigd; use \
                 \"backend\": \"native\" (or leave \"backend\" out)"
            ))),
            (BackendChoice::Auto, None, None) => Err(ServiceError::new(format!(
                "{type_name}: no native backend ({missing}) and no container backend for \
                 {type_name} in this rigd"
            ))),
        }
    }
}

/// The config fields every infrastructure type reads; anything else is left to the type.
#[derive(Debug, Default, Deserialize)]
pub struct CommonConfig {
    /// The backend.
    #[serde(default)]
    pub backend: BackendChoice,
    /// The container backend's image, instead of upstream's.
    #[serde(default)]
    pub image: Option<String>,
    /// The version to run, for the types that have one (`temporal`: the CLI's).
    #[serde(default)]
    pub version: Option<String>,
}

impl CommonConfig {
    /// Reads the common fields of `service`'s config (absent config: defaults). An invalid
    /// `backend` value is an error that lists the valid ones.
    pub fn of(type_name: &str, service: &ServiceRef) -> Result<CommonConfig, ServiceError> {
        CommonConfig::from_config(type_name, service.spec.config.as_ref())
    }

    /// Reads the common fields of a service config (see [`CommonConfig::of`]).
    pub fn from_config(
        type_name: &str,
        config: Option<&serde_json::Value>,
    ) -> Result<CommonConfig, ServiceError> {
        match config {
            None => Ok(CommonConfig::default()),
            Some(value) => super::config::decode(
                Some(value),
                &format!("{type_name} config"),
                if type_name == "temporal" {
                    r#"{"backend": "native" | "container" | "auto", "image": "...", "version": "..."}"#
                } else {
                    r#"{"backend": "native" | "container" | "auto", "image": "..."}"#
                },
            ),
        }
    }
}

/// The leases a type holds, by service (`<instance id>:<service>`).
pub struct Leases<B: Backend> {
    by_service: Mutex<HashMap<String, Arc<Lease<B>>>>,
}

impl<B: Backend> Default for Leases<B> {
    fn default() -> Self {
        Leases {
            by_service: Mutex::new(HashMap::new()),
        }
    }
}

impl<B: Backend> Leases<B> {
    /// Keeps `lease` for `service`.
    pub fn insert(&self, service: &ServiceRef, lease: Lease<B>) {
        self.by_service
            .lock()
            .insert(service.key(), Arc::new(lease));
    }

    /// The lease of the service with key `key` ([`ServiceRef::key`]).
    pub fn get(&self, type_name: &str, key: &str) -> Result<Arc<Lease<B>>, ServiceError> {
        self.by_service
            .lock()
            .get(key)
            .cloned()
            .ok_or_else(|| ServiceError::new(format!("{type_name}: no lease for {key}")))
    }

    /// Releases the lease of `service`, if it holds one.
    pub async fn release(&self, service: &ServiceRef) {
        let lease = self.by_service.lock().remove(&service.key());
        if let Some(lease) = lease {
            // Hooks or the runner may still hold a clone for a moment; the last one releases.
            match Arc::try_unwrap(lease) {
                Ok(lease) => lease.release().await,
                Err(shared) => drop(shared),
            }
        }
    }
}

/// The command of an `exec` init hook: `{"command": ["program", "arg", ...]}`.
pub fn exec_command(type_name: &str, ctx: &HookContext) -> Result<Vec<String>, ServiceError> {
    #[derive(Default, Deserialize)]
    struct ExecHook {
        #[serde(default)]
        command: Vec<String>,
    }
    let config: ExecHook = super::config::decode(
        ctx.hook.config.as_ref(),
        "exec hook config",
        r#"{"command": ["program", "arg", ...]}"#,
    )
    .map_err(|e| ServiceError::new(format!("{type_name} init: {e}")))?;
    if config.command.is_empty() {
        return Err(ServiceError::new(format!(
            "{type_name} init: exec hook command is empty"
        )));
    }
    Ok(config.command)
}

/// Runs an `exec` init hook: `{"command": ["program", "arg", ...]}` on the host, with the
/// client's environment (`host_env`; rigd's own when the client sent none) plus `env`, in the
/// spec's `dir`, its output going to the service's log. A non-zero exit fails the hook:
/// `exec [<cmd...>]: exit code N`.
///
/// The hook runs in a process group of its own, which is killed when the hook ends, however
/// it ends (its command exits, or the environment is torn down while it runs): nothing a
/// hook starts outlives it, as nothing a service starts outlives the service.
pub async fn exec_hook(
    type_name: &str,
    ctx: &HookContext,
    env: &[(&str, String)],
) -> Result<(), ServiceError> {
    let command = exec_command(type_name, ctx)?;
    let Some((program, args)) = command.split_first() else {
        return Err(ServiceError::new(format!(
            "{type_name} init: exec hook command is empty"
        )));
    };
    let mut cmd = tokio::process::Command::new(program);
    if !ctx.host_env.is_empty() {
        cmd.env_clear().envs(&ctx.host_env);
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if !ctx.spec_dir.is_empty() {
        cmd.current_dir(&ctx.spec_dir);
    }
    let spawned_after = crate::reaper::boot_ticks_now();
    let mut child = {
        let _fork = crate::ports::forking();
        cmd.spawn()
            .map_err(|e| ServiceError::new(format!("exec {command:?}: start {program}: {e}")))?
    };
    let group = child
        .id()
        .map(|pid| HookGroup::track(pid as i32, spawned_after, ctx.reaper.clone()));
    let mut readers = OutputReaders::default();
    if let Some(out) = child.stdout.take() {
        readers.spawn(ctx.output.clone().pump(out, LogStream::Stdout));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(ctx.output.clone().pump(err, LogStream::Stderr));
    }
    let status = child
        .wait()
        .await
        .map_err(|e| ServiceError::new(format!("exec {command:?}: {e}")))?;
    // What the hook left running goes now, so its output pipes close too.
    drop(group);
    // A reader still reading then (a process that left the group holds the pipe) is aborted.
    readers
        .drain(tokio::time::Instant::now() + super::process::OUTPUT_DRAIN)
        .await;
    if status.success() {
        return Ok(());
    }
    let code = status
        .code()
        .map_or_else(|| status.to_string(), |c| c.to_string());
    Err(ServiceError::new(format!(
        "exec {command:?}: exit code {code}"
    )))
}

/// The process group of a running `exec` hook, tracked by the reaper (if any) while it lives
/// and killed when dropped.
struct HookGroup {
    pgid: i32,
    reaper: Option<Arc<crate::reaper::Reaper>>,
}

impl HookGroup {
    fn track(pgid: i32, spawned_after: u64, reaper: Option<Arc<crate::reaper::Reaper>>) -> Self {
        if let Some(reaper) = &reaper {
            reaper.track_group_since(pgid, spawned_after);
        }
        HookGroup { pgid, reaper }
    }
}

impl Drop for HookGroup {
    fn drop(&mut self) {
        super::process::signal_group(self.pgid, libc::SIGKILL);
        if let Some(reaper) = &self.reaper {
            reaper.untrack_group(self.pgid);
        }
    }
}

/// The runner of a pooled service: idles until told to stop; fails if the shared backend
/// dies meanwhile.
pub async fn run_leased<B: Backend>(
    type_name: &'static str,
    lease: Arc<Lease<B>>,
    ctx: RunContext,
) -> Result<(), ServiceError> {
    let backend = lease.backend().clone();
    drop(lease);
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if !backend.alive() {
                    return Err(ServiceError::new(format!(
                        "{type_name}: the shared {type_name} backend exited"
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_choice_resolves_with_clear_errors() {
        let bin = || Some(PathBuf::from("/usr/bin/redis-server"));
        let image = || Some("redis:7-alpine".to_string());
        let native = Chosen::Native(PathBuf::from("/usr/bin/redis-server"));
        let container = Chosen::Container("redis:7-alpine".to_string());
        let missing = "redis-server not found";
        let resolve =
            |choice: BackendChoice, found, image| choice.resolve("redis", found, image, missing);
        assert_eq!(
            resolve(BackendChoice::Auto, bin(), image()),
            Ok(native.clone())
        );
        assert_eq!(resolve(BackendChoice::Native, bin(), image()), Ok(native));
        assert_eq!(
            resolve(BackendChoice::Container, bin(), image()),
            Ok(container.clone())
        );
        // auto falls back to the container when the binaries are missing.
        assert_eq!(resolve(BackendChoice::Auto, None, image()), Ok(container));
        let err = resolve(BackendChoice::Native, None, image()).unwrap_err();
        assert_eq!(
            err.message(),
            "redis: native backend: redis-server not found"
        );
        let err = resolve(BackendChoice::Container, bin(), None).unwrap_err();
        assert!(err.message().contains("no container backend"), "{err}");
        let err = resolve(BackendChoice::Auto, None, None).unwrap_err();
        assert!(
            err.message().contains(missing) && err.message().contains("no container backend"),
            "{err}"
        );
    }

    #[test]
    fn config_parses_backend_and_rejects_unknown_values() {
        let service = |config| ServiceRef {
            service: "db".into(),
            instance_id: "i".into(),
            spec: Arc::new(rig_types::Service {
                config,
                ..rig_types::Service::default()
            }),
        };
        let c = CommonConfig::of("postgres", &service(None)).unwrap();
        assert_eq!(c.backend, BackendChoice::Auto);
        let c = CommonConfig::of(
            "postgres",
            &service(Some(serde_json::json!({"backend": "native", "image": "x"}))),
        )
        .unwrap();
        assert_eq!(c.backend, BackendChoice::Native);
        assert_eq!(c.image.as_deref(), Some("x"));
        let err = CommonConfig::of(
            "postgres",
            &service(Some(serde_json::json!({"backend": "docker"}))),
        )
        .unwrap_err();
        assert!(
            err.message().starts_with("invalid postgres config: "),
            "{err}"
        );
    }
}
