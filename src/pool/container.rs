//! Container backends: a database server run from an image by the Docker engine, for the
//! `"backend": "container"` choice of an infrastructure type (upstream's only backend).
//!
//! The container is named after rigd's pid and the image (`rig-pgpool-<pid>-postgres-16-alpine`,
//! as upstream; an older one of that name is removed first), carries the owner labels of every
//! rigd container and is in the reaper's record, so it goes with rigd even after `kill -9`
//! (the reaper removes it, or failing that the next rigd's sweep). Its port is published on
//! `127.0.0.1` at a port the engine picks; readiness, leases and hooks all go through that
//! port with the protocol's own client, exactly as for a native backend.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bollard::query_parameters::{LogsOptionsBuilder, StopContainerOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

use crate::docker::{self, ContainerSpec, PortMapping};
use crate::services::OutputSink;

use super::native::STOP_GRACE;
use super::output_tail::{last_bytes, quote_end, SCAN};

/// How many lines of the container's output a start error looks at.
const LOG_TAIL_LINES: &str = "400";

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

/// `rig-<kind>-<rigd pid>-<image>` with the characters Docker refuses in names replaced by `-`
/// (`rig-pgpool-1234-postgres-16-alpine`).
pub fn container_name(kind: &str, image: &str) -> String {
    let image: String = image
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("rig-{kind}-{}-{image}", std::process::id())
}

impl ContainerServer {
    /// Creates and starts the container and reads back its published port. The server in it
    /// may not accept connections yet: wait with [`super::server::Server::wait_ready`].
    pub async fn start(spec: ServerSpec) -> Result<ContainerServer, String> {
        let engine = docker::connect().await.map_err(|e| e.to_string())?;
        let name = container_name(spec.kind, &spec.image);
        // A leftover of an earlier rigd that had this pid.
        docker::force_remove(&engine, &name).await;
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
    /// it in the reaper's record.
    pub async fn stop(&self) {
        let options = StopContainerOptionsBuilder::default()
            .t(STOP_GRACE.as_secs() as i32)
            .build();
        // Removed right after anyway; a failed stop only costs the grace period.
        let _ = self.docker.stop_container(&self.id, Some(options)).await;
        docker::force_remove(&self.docker, &self.id).await;
        self.running.store(false, Ordering::SeqCst);
        if let Some(reaper) = crate::reaper::installed() {
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
    fn names_carry_the_kind_pid_and_image() {
        assert_eq!(
            container_name("pgpool", "postgres:16-alpine"),
            format!("rig-pgpool-{}-postgres-16-alpine", std::process::id())
        );
        assert_eq!(
            container_name("redis", "registry.local:5000/redis:7"),
            format!(
                "rig-redis-{}-registry-local-5000-redis-7",
                std::process::id()
            )
        );
    }
}
