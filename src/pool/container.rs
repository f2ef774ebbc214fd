//! Container backends: a database server run from an image by the Docker engine, for the
//! `"backend": "container"` choice of an infrastructure type (upstream's only backend).
//!
//! The container is named after rigd's pid, its boot and pid namespace and the image
//! (`rig-pgpool-<pid>-<namespace hash>-postgres-16-alpine`; upstream has no namespace part,
//! which lets two rigds with one pid in two containers sharing an engine collide). A
//! leftover of that name (a gone rigd of this namespace that had this pid) is removed first;
//! any other container of that name (a live rigd's, a foreign one) is left alone and the new
//! container takes a numbered name instead. It carries the owner labels of every rigd
//! container and is in the reaper's record, so it goes with rigd even after `kill -9` (the
//! reaper removes it, or failing that the next rigd's sweep). Its port is published on
//! `127.0.0.1` at a port the engine picks; readiness, leases and hooks all go through that
//! port with the protocol's own client, exactly as for a native backend.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::docker::{self, ContainerSpec, Occupant, PortMapping};
use crate::services::OutputSink;

use super::native::STOP_GRACE;
use super::output_tail::{last_bytes, quote_end, SCAN};

/// How many lines of the container's output a start error looks at.
const LOG_TAIL_LINES: &str = "400";

/// How many names ([`container_name`], then `-2`, `-3`...) a new container tries before
/// giving up because live containers hold them all.
const NAME_ATTEMPTS: usize = 8;

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct ServerSpec {
    /// The backend kind, part of the name (`pgpool`, `redis`).
    pub kind: &'static str,
    /// The image (present locally: the artifact phase made sure).
    pub image: String,
    /// The command (arguments to the image's entrypoint); empty for the image's default.
    pub cmd: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// The port the server listens on inside the container.
    pub port: u16,
    /// Further ports to publish (e.g. a web UI's); see [`ContainerServer::published`].
    pub extra_ports: Vec<u16>,
}

/// A running backend container.
pub struct ContainerServer {
    docker: Docker,
    id: String,
    name: String,
    host_port: u16,
    /// `(container port, host port)` of [`ServerSpec::extra_ports`].
    extra_ports: Vec<(u16, u16)>,
    /// False once the container has stopped (on its own or by [`ContainerServer::stop`]).
    running: Arc<AtomicBool>,
}

/// `rig-<kind>-<rigd pid>-<namespace>-<image>` with the characters Docker refuses in names
/// replaced by `-` (`rig-pgpool-1234-e5edc914-postgres-16-alpine`), where `<namespace>` is a
/// short hash of rigd's boot and pid namespace ([`docker::this_namespace`]; left out when
/// unknown), so that rigds with the same pid in different containers sharing one engine get
/// different names.
pub fn container_name(kind: &str, image: &str) -> String {
    name_in(kind, image, std::process::id(), docker::this_namespace())
}

/// [`container_name`] for rigd `pid` in `namespace`.
fn name_in(kind: &str, image: &str, pid: u32, namespace: Option<&str>) -> String {
    let image: String = image
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    match namespace {
        Some(namespace) => {
            let hash = Sha256::digest(namespace.as_bytes());
            let short: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
            format!("rig-{kind}-{pid}-{short}-{image}")
        }
        None => format!("rig-{kind}-{pid}-{image}"),
    }
}

/// A name for a new container: [`container_name`], or `<it>-2`, `<it>-3`... when a container
/// that is not a leftover holds it (this rigd's previous backend of that image still
/// stopping, or another rigd's). A leftover of a gone rigd of this namespace holding it is
/// removed; nothing else ever is.
async fn free_name(engine: &Docker, kind: &str, image: &str) -> Result<String, String> {
    let base = container_name(kind, image);
    for attempt in 1..=NAME_ATTEMPTS {
        let name = if attempt == 1 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        match docker::occupant(engine, &name).await {
            Occupant::Free => return Ok(name),
            Occupant::Leftover => {
                docker::force_remove(engine, &name).await;
                return Ok(name);
            }
            Occupant::Live => {}
        }
    }
    Err(format!(
        "containers {base} to {base}-{NAME_ATTEMPTS} all exist and belong to running rigds          (or to no rigd): remove those that are not in use (`docker rm -f <name>`)"
    ))
}

impl ContainerServer {
    /// Creates and starts the container and reads back its published port. The server in it
    /// may not accept connections yet: wait with [`super::server::Server::wait_ready`].
    pub async fn start(spec: ServerSpec) -> Result<ContainerServer, String> {
        let engine = docker::connect().await.map_err(|e| e.to_string())?;
        let name = free_name(&engine, spec.kind, &spec.image).await?;
        let id = docker::create(
            &engine,
            &ContainerSpec {
                name: name.clone(),
                image: spec.image.clone(),
                cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
                env: spec.env.clone(),
                ports: std::iter::once(spec.port)
                    .chain(spec.extra_ports.iter().copied())
                    .map(|container_port| PortMapping {
                        container_port,
                        host_port: 0,
                    })
                    .collect(),
                mounts: Vec::new(),
                instance: "pool".to_string(),
                service: spec.kind.to_string(),
            },
        )
        .await?;
        if let Some(reaper) = crate::reaper::installed() {
            reaper.track_container(&id);
        }
        let server = ContainerServer {
            docker: engine,
            id,
            name,
            host_port: 0,
            extra_ports: Vec::new(),
            running: Arc::new(AtomicBool::new(true)),
        };
        match server.run(spec.port, &spec.extra_ports).await {
            Ok((host_port, extra_ports)) => Ok(ContainerServer {
                host_port,
                extra_ports,
                ..server
            }),
            Err(e) => {
                let tail = server.log_tail().await;
                server.stop().await;
                Err(if tail.is_empty() {
                    e
                } else {
                    format!("{e}; its output ends with:\n{tail}")
                })
            }
        }
    }

    /// Starts the created container, watches for its end, returns its host ports: `port`'s,
    /// and `(container port, host port)` of `extra`.
    async fn run(&self, port: u16, extra: &[u16]) -> Result<(u16, Vec<(u16, u16)>), String> {
        self.docker
            .start_container(&self.id, None)
            .await
            .map_err(|e| format!("start container {}: {e}", self.name))?;
        let docker = self.docker.clone();
        let id = self.id.clone();
        let running = self.running.clone();
        tokio::spawn(async move {
            let options = bollard::query_parameters::WaitContainerOptionsBuilder::default()
                .condition("not-running")
                .build();
            // Any outcome (exit, error, engine gone) means the server is no longer usable.
            let _ = docker.wait_container(&id, Some(options)).next().await;
            running.store(false, Ordering::SeqCst);
        });
        let host_port = |port| async move {
            docker::host_port(&self.docker, &self.id, port)
                .await
                .map_err(|e| format!("container {}: {e}", self.name))
        };
        let mut extra_ports = Vec::with_capacity(extra.len());
        for &port in extra {
            extra_ports.push((port, host_port(port).await?));
        }
        Ok((host_port(port).await?, extra_ports))
    }

    /// The server's port on 127.0.0.1 of the host.
    pub fn host_port(&self) -> u16 {
        self.host_port
    }

    /// The host port of `container_port`, one of [`ServerSpec::extra_ports`].
    pub fn published(&self, container_port: u16) -> Option<u16> {
        self.extra_ports
            .iter()
            .find(|(inside, _)| *inside == container_port)
            .map(|(_, host)| *host)
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// False once the container has stopped.
    pub fn alive(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Stops the container (SIGTERM, SIGKILL after the grace period), removes it and forgets
    /// it in the reaper's record once it is gone.
    pub async fn stop(&self) {
        // Removed right after anyway; a failed stop only costs the grace period.
        docker::stop(&self.docker, &self.id, STOP_GRACE).await;
        let gone = docker::remove(&self.docker, &self.id).await.gone();
        self.running.store(false, Ordering::SeqCst);
        // One the engine could not remove stays in the record: the reaper removes it when
        // rigd exits.
        if let (true, Some(reaper)) = (gone, crate::reaper::installed()) {
            reaper.untrack_container(&self.id);
        }
    }

    /// Runs `cmd` inside the container with `env` added, its output into `output`.
    pub async fn exec(
        &self,
        cmd: &[String],
        env: &[(&str, String)],
        output: &OutputSink,
    ) -> Result<(), String> {
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        docker::exec(&self.docker, &self.id, cmd, &env, output).await
    }

    /// Runs `cmd` inside the container and returns its output (stdout and stderr as they
    /// came); a failure quotes it.
    pub async fn exec_output(&self, cmd: &[String]) -> Result<String, String> {
        docker::exec_output(&self.docker, &self.id, cmd).await
    }

    /// The end of the container's output, for error messages (see [`quote_end`]).
    pub async fn log_tail(&self) -> String {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(LOG_TAIL_LINES)
            .build();
        let mut logs = self.docker.logs(&self.id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        quote_end(last_bytes(&text, SCAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_kind_pid_namespace_and_image() {
        let here = Some("1bc27f7a-719a-4631-b7fe-983d4d61e8ce:4026531836");
        assert_eq!(
            name_in("pgpool", "postgres:16-alpine", 1234, here),
            "rig-pgpool-1234-e5edc914-postgres-16-alpine"
        );
        assert_eq!(
            name_in("redis", "registry.local:5000/redis:7", 1234, None),
            "rig-redis-1234-registry-local-5000-redis-7"
        );
        // The same pid in another pid namespace of the boot, or on another host.
        let names: std::collections::BTreeSet<String> = [
            here,
            Some("1bc27f7a-719a-4631-b7fe-983d4d61e8ce:4026532301"),
            Some("0f8e0f2c-2d3b-4c1e-9a57-3f1d3f0b6a11:4026531836"),
        ]
        .into_iter()
        .map(|ns| name_in("pgpool", "postgres:16-alpine", 1234, ns))
        .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(container_name("pgpool", "postgres:16-alpine")
            .starts_with(&format!("rig-pgpool-{}-", std::process::id())));
    }
}
