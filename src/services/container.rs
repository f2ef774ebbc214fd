//! The `container` type: runs a Docker image as a service.
//!
//! Config: `{"image": "...", "cmd": [...], "env": {...}}`; each ingress may set
//! `container_port` (the port inside the container; default: the same as the host port, for
//! images that read `$PORT`; two ingresses may name the same one, each published on a host port
//! of its own). The image comes from the artifact phase (local when present,
//! pulled otherwise). The container gets:
//! - ports published on `127.0.0.1:<host port>`;
//! - the service's temp dir at `/rig/temp` and the environment dir at `/rig/env` (both opened
//!   to every user when the image runs as a user other than root, inside rigd's private
//!   `{rig-dir}/tmp`);
//! - the wiring rebuilt for the inside: its ingresses at `0.0.0.0:<container port>`, its
//!   egresses at `host.docker.internal:<port>` (mapped to the host's bridge gateway address on
//!   Linux too, where rigd relays each such port to the loopback address the egress's proxy
//!   or service listens on: [`crate::docker::HostGateway`]), `RIG_WIRING` with the `/rig/...`
//!   directories, then the config `env` on top. Unlike upstream, the
//!   client's `host_env` is not copied in: host paths such as `PATH` break images;
//! - `cmd` and `args` expanded against that environment (`cmd ++ args`; either alone; or the
//!   image's default command).
//!
//! Its output goes to `service.log`; a non-zero exit fails the environment; teardown stops
//! it (SIGTERM, SIGKILL after the grace period) and removes it. Init hooks of type `exec`
//! (`{"command": [...]}`) run inside it, output in the log.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rig_types::Endpoint;
use serde::Deserialize;

use super::{
    AdviceFuture, ArtifactRequest, HookContext, RunContext, RunFuture, ServiceError, ServiceRef,
    ServiceType, StepFuture,
};
use crate::artifacts::docker::DockerImage;
use crate::artifacts::Artifact;
use crate::docker::{self, ContainerSpec, Mount, PortMapping, StopSettings};
use crate::ready::listeners;
use crate::wiring::{build_service_env, expand_templates, unset_names, ServiceEnvInput};

/// The `container` service type.
pub struct Container;

/// Where the service's temp dir appears inside the container.
pub const TEMP_MOUNT: &str = "/rig/temp";
/// Where the environment dir appears inside the container.
pub const ENV_MOUNT: &str = "/rig/env";
/// The host as seen from a container.
pub const DOCKER_HOST_NAME: &str = "host.docker.internal";

/// What to run: the `container` type's config, also built by the types that run an image of
/// their own (the `kafka` type's container backend).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContainerConfig {
    /// The image.
    #[serde(default)]
    pub image: String,
    /// The command (`cmd ++ args`), expanded against the container's environment.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Variables set on top of the wiring (they win).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn decode(config: Option<&serde_json::Value>) -> Result<ContainerConfig, ServiceError> {
    let config: ContainerConfig = super::config::decode(
        config,
        "container config",
        r#"{"image": "nginx:1.27", "cmd": ["arg", ...], "env": {"NAME": "value"}}"#,
    )?;
    if config.image.is_empty() {
        return Err(ServiceError::new(
            "container config needs \"image\": the image to run (e.g. \"nginx:1.27\")",
        ));
    }
    Ok(config)
}

/// The container name of a service: `rig-<instance>-<service>`, with characters Docker does
/// not accept in names replaced by `-`.
pub fn container_name(instance: &str, service: &str) -> String {
    format!("rig-{instance}-{service}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn port_of(hostport: &str) -> Option<u16> {
    hostport.rsplit_once(':')?.1.parse().ok()
}

/// What the container's definition is made from (the parts of [`RunContext`] it needs).
struct Parts<'a> {
    service: &'a str,
    instance_id: &'a str,
    spec: &'a rig_types::Service,
    ingresses: &'a BTreeMap<String, Endpoint>,
    egresses: &'a BTreeMap<String, Endpoint>,
    temp_dir: &'a std::path::Path,
    env_dir: &'a std::path::Path,
}

impl<'a> Parts<'a> {
    fn of(ctx: &'a RunContext) -> Parts<'a> {
        Parts {
            service: &ctx.service,
            instance_id: &ctx.instance_id,
            spec: &ctx.spec,
            ingresses: &ctx.ingresses,
            egresses: &ctx.egresses,
            temp_dir: &ctx.temp_dir,
            env_dir: &ctx.env_dir,
        }
    }
}

/// Ingresses as seen inside the container: `0.0.0.0:<container port or host port>`.
fn inside_ingresses(ctx: &Parts<'_>) -> BTreeMap<String, Endpoint> {
    ctx.ingresses
        .iter()
        .map(|(name, ep)| {
            let port = container_port(ctx, name, ep);
            let mut ep = ep.clone();
            ep.hostport = format!("0.0.0.0:{port}");
            (name.clone(), ep)
        })
        .collect()
}

fn container_port(ctx: &Parts<'_>, ingress: &str, ep: &Endpoint) -> u16 {
    ctx.spec
        .ingresses
        .get(ingress)
        .map(|i| i.container_port)
        .filter(|p| *p != 0)
        .or_else(|| port_of(&ep.hostport))
        .unwrap_or_default()
}

/// The port of a loopback `host:port` (`127.0.0.1` or `localhost`), which a container cannot
/// reach as such.
fn loopback_port(hostport: &str) -> Option<u16> {
    let (host, port) = hostport.rsplit_once(':')?;
    matches!(host, "127.0.0.1" | "localhost")
        .then(|| port.parse().ok())
        .flatten()
}

/// Egresses as seen inside the container: a loopback address becomes
/// `host.docker.internal:<port>`, where `relays` maps a loopback port to the port that relays
/// to it on the host's gateway address (the same port when absent).
fn inside_egresses(
    egresses: &BTreeMap<String, Endpoint>,
    relays: &BTreeMap<u16, u16>,
) -> BTreeMap<String, Endpoint> {
    egresses
        .iter()
        .map(|(name, ep)| {
            let mut ep = ep.clone();
            if let Some(port) = loopback_port(&ep.hostport) {
                let outside = relays.get(&port).copied().unwrap_or(port);
                ep.hostport = format!("{DOCKER_HOST_NAME}:{outside}");
            }
            (name.clone(), ep)
        })
        .collect()
}

/// Opens the relays from the Docker bridge gateway to the loopback ports the container's
/// egresses name (none when no egress is on loopback).
async fn open_host_gateway(
    engine: &bollard::Docker,
    egresses: &BTreeMap<String, Endpoint>,
    container: &str,
) -> Result<Option<docker::HostGateway>, String> {
    let ports: Vec<u16> = egresses
        .values()
        .filter_map(|ep| loopback_port(&ep.hostport))
        .collect();
    if ports.is_empty() {
        return Ok(None);
    }
    let gateway = docker::bridge_gateway(engine).await?;
    let peers = docker::Peers::container(engine, container);
    docker::HostGateway::open(gateway, ports, peers)
        .await
        .map(Some)
}

fn container_spec(
    ctx: &Parts<'_>,
    config: &ContainerConfig,
    relays: &BTreeMap<u16, u16>,
) -> Result<ContainerSpec, String> {
    let ingresses = inside_ingresses(ctx);
    let egresses = inside_egresses(ctx.egresses, relays);
    let no_host_env = BTreeMap::new();
    let mut env = build_service_env(&ServiceEnvInput {
        service: ctx.service,
        ingresses: &ingresses,
        egresses: &egresses,
        temp_dir: TEMP_MOUNT,
        env_dir: ENV_MOUNT,
        host_env: &no_host_env,
    })
    .map_err(|e| format!("build service env: {e}"))?;
    env.extend(config.env.clone());

    let cmd = expand_templates(&config.cmd, &env);
    let args = expand_templates(&ctx.spec.args, &env);
    let cmd: Vec<String> = cmd.into_iter().chain(args).collect();

    let ports = ctx
        .ingresses
        .iter()
        .map(|(name, ep)| {
            let host_port = port_of(&ep.hostport)
                .ok_or_else(|| format!("ingress {name:?}: no port in {:?}", ep.hostport))?;
            Ok(PortMapping {
                container_port: container_port(ctx, name, ep),
                host_port,
            })
        })
        .collect::<Result<_, String>>()?;
    let mut mounts = vec![Mount {
        host: ctx.env_dir.to_path_buf(),
        container: ENV_MOUNT.to_string(),
    }];
    if !ctx.temp_dir.as_os_str().is_empty() {
        mounts.push(Mount {
            host: ctx.temp_dir.to_path_buf(),
            container: TEMP_MOUNT.to_string(),
        });
    }
    Ok(ContainerSpec {
        name: container_name(ctx.instance_id, ctx.service),
        image: config.image.clone(),
        cmd: (!cmd.is_empty()).then_some(cmd),
        env,
        ports,
        mounts,
        instance: ctx.instance_id.to_string(),
        service: ctx.service.to_string(),
    })
}

impl ServiceType for Container {
    fn artifacts(&self, req: &ArtifactRequest<'_>) -> Result<Vec<Artifact>, ServiceError> {
        let config = decode(req.spec.config.as_ref())?;
        Ok(vec![DockerImage::artifact(config.image, req.service)])
    }

    fn run(&self, ctx: RunContext) -> RunFuture {
        Box::pin(async move {
            let config = decode(ctx.spec.config.as_ref())?;
            run_image(ctx, &config).await
        })
    }

    fn published_by_proxy(&self) -> bool {
        true
    }

    fn started(&self, service: &ServiceRef) -> Option<StepFuture> {
        let name = container_name(&service.instance_id, &service.service);
        Some(Box::pin(async move {
            let engine = docker::connect().await.map_err(|e| e.to_string())?;
            // A container that cannot start fails its runner, which ends this wait.
            wait_running(&engine, &name).await;
            Ok(())
        }))
    }

    fn init_hook_types(&self) -> &'static [&'static str] {
        &["exec"]
    }

    /// Where the processes in the container listen, read from the host through
    /// `/proc/<container's pid>/net` (the container's network namespace): an app listening on
    /// the container's own loopback, or on another port than the ingress's container port.
    fn not_ready_advice(
        &self,
        service: &ServiceRef,
        ingress: &str,
        endpoint: &Endpoint,
    ) -> Option<AdviceFuture> {
        let container_port = service
            .spec
            .ingresses
            .get(ingress)
            .map(|i| i.container_port)
            .filter(|p| *p != 0);
        // A container_port is the same every run; without one the port is rigd's pick.
        let fixed = container_port.is_some();
        let port = container_port.or_else(|| endpoint.port())?;
        let port_name = format!("${}", crate::wiring::env::port_variable(ingress));
        let name = container_name(&service.instance_id, &service.service);
        Some(Box::pin(async move {
            let engine = docker::connect().await.ok()?;
            let pid = engine
                .inspect_container(&name, None)
                .await
                .ok()?
                .state?
                .pid
                .and_then(|pid| u32::try_from(pid).ok())
                .filter(|pid| *pid != 0)?;
            let listening = tokio::task::spawn_blocking(move || listeners::in_namespace_of(pid))
                .await
                .ok()?;
            listeners::advice(
                &listening,
                port,
                &port_name,
                fixed,
                Some("the container's own loopback"),
            )
        }))
    }

    fn init_hook(&self, ctx: HookContext) -> Option<StepFuture> {
        if ctx.hook.hook_type != "exec" {
            return None;
        }
        Some(Box::pin(async move {
            let command = exec_command(ctx.hook.config.as_ref()).map_err(ServiceError::new)?;
            let engine = docker::connect().await.map_err(|e| e.to_string())?;
            let name = container_name(&ctx.service.instance_id, &ctx.service.service);
            // Dropped (and so stopped) when the service is told to stop.
            wait_running(&engine, &name).await;
            docker::exec(&engine, &name, &command, &[], &ctx.output)
                .await
                .map_err(ServiceError::new)
        }))
    }
}

/// Runs `config`'s image as the service `ctx` describes (ports, mounts, wiring as the
/// `container` type does) until it exits or the service is told to stop.
pub(crate) async fn run_image(
    ctx: RunContext,
    config: &ContainerConfig,
) -> Result<(), ServiceError> {
    let engine = docker::connect().await.map_err(|e| e.to_string())?;
    // Lives (relays) until the container is gone.
    let name = container_name(&ctx.instance_id, &ctx.service);
    let host_gateway = open_host_gateway(&engine, &ctx.egresses, &name)
        .await
        .map_err(ServiceError::new)?;
    let no_relays = BTreeMap::new();
    let relays = host_gateway.as_ref().map_or(&no_relays, |g| g.ports());
    let spec = container_spec(&Parts::of(&ctx), config, relays).map_err(ServiceError::new)?;
    ctx.output
        .note(unset_names("config.cmd", &config.cmd, &spec.env));
    ctx.output
        .note(unset_names("args", &ctx.spec.args, &spec.env));
    if runs_as_another_user(&engine, &config.image).await {
        ctx.output.note(open_mounts(&ctx.env_dir, &ctx.temp_dir));
    }
    let stop = StopSettings {
        cancel: ctx.cancel.clone(),
        grace: ctx.stop_grace,
        reaper: ctx.reaper.clone(),
    };
    docker::run_container(&engine, &spec, &ctx.output, &stop)
        .await
        .map_err(ServiceError::new)
}

/// True when `image` runs its command as a user other than root (`USER 1001` in its
/// Dockerfile), who cannot write rigd's private directories mounted into it.
async fn runs_as_another_user(engine: &bollard::Docker, image: &str) -> bool {
    let user = engine
        .inspect_image(image)
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.user)
        .unwrap_or_default();
    !is_root_user(&user)
}

/// True when an image's `User` (`""`, `root`, `0`, `1001`, `app:app`, `0:100`) is root.
fn is_root_user(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or_default().trim();
    matches!(name, "" | "0" | "root")
}

/// Makes the environment dir and the service's temp dir (both mounted into the container)
/// writable by every user, for an image that runs as a user other than rigd's. They stay
/// out of other host users' reach because their parent, rigd's `{rig-dir}/tmp`, is private
/// (owner-only); when it is not, they are left as they are and the remark returned says why.
/// Emptied directories are made private again when recycled ([`crate::orchestrator`]).
fn open_mounts(env_dir: &Path, temp_dir: &Path) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let parent = env_dir.parent()?;
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let private = std::fs::metadata(parent)
        .is_ok_and(|m| m.uid() == uid && m.permissions().mode() & 0o077 == 0);
    if !private {
        return Some(format!(
            "{TEMP_MOUNT} and {ENV_MOUNT} are writable by rigd's user only, so the image's \
             user may not write them: rigd opens them to every user only inside a directory \
             that other users cannot enter, and {} is not one (make it owner-only, \
             chmod 700)",
            parent.display()
        ));
    }
    let dirs = [env_dir, temp_dir];
    for dir in dirs.into_iter().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)) {
            return Some(format!(
                "could not let the image's user write {}: {e}",
                dir.display()
            ));
        }
    }
    None
}

fn exec_command(config: Option<&serde_json::Value>) -> Result<Vec<String>, String> {
    #[derive(Default, Deserialize)]
    struct ExecHook {
        #[serde(default)]
        command: Vec<String>,
    }
    let hook: ExecHook = super::config::decode(
        config,
        "exec hook config",
        r#"{"command": ["program", "arg", ...]}"#,
    )
    .map_err(|e| format!("container init: {e}"))?;
    if hook.command.is_empty() {
        return Err("container init: exec hook command is empty".to_string());
    }
    Ok(hook.command)
}

/// Waits until the container exists and runs (its runner creates and starts it meanwhile).
async fn wait_running(engine: &bollard::Docker, name: &str) {
    loop {
        let running = engine
            .inspect_container(name, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false);
        if running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests;
