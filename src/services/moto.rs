//! The moto server (PyPI `moto[server]`): the backend of the `s3` and `sqs` types, native
//! (`moto_server` from the machine) or in a container (upstream moto's image,
//! [`DEFAULT_IMAGE`]).
//!
//! One moto server serves every AWS service, so the `s3` and `sqs` pools share one per
//! backend ([`SharedMoto`], keyed by [`MotoSource`]: the program or the image): the first of
//! them to need it starts it, the other uses the running one, and it stops when the last of
//! them stops with it (its pool's idle time, or rigd's shutdown). Buckets and queues stay per
//! environment; the pools name them apart. Either way rigd talks to the server through its
//! port on 127.0.0.1 (the container's published port).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::pool::container::{ContainerServer, ServerSpec};
use crate::pool::native::{find_program, free_port, NativeProcess, WorkDir};
use crate::pool::server::Server;
use crate::wire::aws::{self, Call, Response};

/// How long a starting server gets to answer HTTP (moto imports a lot of Python).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Upstream moto's official image, the container backend's default. Its entrypoint is
/// `moto_server -H 0.0.0.0`, which listens on `MOTO_PORT` (5000).
pub const DEFAULT_IMAGE: &str = "motoserver/moto:5.2.1";

/// The server's port inside the container (set through `MOTO_PORT`).
const CONTAINER_PORT: u16 = 5000;

/// What to say when `moto_server` is not found.
pub const MISSING: &str = "moto_server not found on PATH (install it: pip install 'moto[server]')";

/// `moto_server` on rigd's `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    find_program("moto_server", &[])
}

/// A running moto server.
pub struct MotoServer {
    server: Server,
    hostport: String,
    port: u16,
    /// The number in the next [`MotoServer::unique_name`].
    next_name: AtomicU64,
}

/// Where a moto server comes from; the servers are shared by it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MotoSource {
    /// `moto_server` at this path on the machine (native).
    Program(PathBuf),
    /// A container of this image (present locally: the artifact phase made sure).
    Image(String),
}

impl MotoServer {
    /// Starts the server `source` names.
    async fn start(source: &MotoSource) -> Result<MotoServer, String> {
        match source {
            MotoSource::Program(program) => MotoServer::start_native(program).await,
            MotoSource::Image(image) => MotoServer::start_container(image.clone()).await,
        }
    }

    /// Starts `moto_server` (the program at `program`) on a free loopback port.
    async fn start_native(program: &Path) -> Result<MotoServer, String> {
        let dir =
            WorkDir::create("moto", None).map_err(|e| format!("create the work directory: {e}"))?;
        let port = free_port()?;
        let args = vec![
            "-H".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            port.to_string(),
        ];
        let process = NativeProcess::spawn(program, &args, &dir, None)?;
        MotoServer::ready(Server::Native { process, dir }, port).await
    }

    /// Runs `image` with its own command (`moto_server -H 0.0.0.0` in upstream's), listening
    /// on [`CONTAINER_PORT`] (`MOTO_PORT`), and waits for the server through the published
    /// port.
    async fn start_container(image: String) -> Result<MotoServer, String> {
        let container = ContainerServer::start(ServerSpec {
            kind: "moto",
            image,
            cmd: Vec::new(),
            env: BTreeMap::from([("MOTO_PORT".to_string(), CONTAINER_PORT.to_string())]),
            port: CONTAINER_PORT,
            extra_ports: Vec::new(),
        })
        .await?;
        let port = container.host_port();
        MotoServer::ready(Server::Container(container), port).await
    }

    /// Waits until `server` answers HTTP on `port` of 127.0.0.1 (`GET /moto-api/` below 500).
    async fn ready(server: Server, port: u16) -> Result<MotoServer, String> {
        let hostport = format!("127.0.0.1:{port}");
        server
            .wait_ready("moto_server", START_TIMEOUT, || async {
                let response = aws::send(
                    &hostport,
                    Call {
                        method: Method::GET,
                        path: "/moto-api/",
                        service: "s3",
                        access_key: "rig",
                        headers: &[],
                        body: Bytes::new(),
                    },
                )
                .await?;
                if response.status < 500 {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", response.status))
                }
            })
            .await?;
        Ok(MotoServer {
            server,
            hostport,
            port,
            next_name: AtomicU64::new(1),
        })
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A bucket or queue name (`rig-<n>`) this server has not handed out before. The count
    /// lives with the server, not with a pool's backend: the `s3` or `sqs` backend may stop
    /// and a new one start while the server lives on for the other type, and creating a
    /// bucket or queue that exists reuses it, leftovers and all.
    pub fn unique_name(&self) -> String {
        format!("rig-{}", self.next_name.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a request for `service`, as `access_key`.
    pub async fn call(
        &self,
        service: &str,
        access_key: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, String> {
        aws::send(
            &self.hostport,
            Call {
                method,
                path,
                service,
                access_key,
                headers,
                body,
            },
        )
        .await
    }

    /// False once the server has exited.
    pub fn alive(&self) -> bool {
        self.server.alive()
    }

    /// The end of the server's output.
    pub async fn log_tail(&self) -> String {
        self.server.log_tail().await
    }
}

/// A running moto server and how many backends use it.
struct Running {
    server: Arc<MotoServer>,
    users: usize,
}

/// The moto servers of this process, by source.
static RUNNING: tokio::sync::Mutex<BTreeMap<MotoSource, Running>> =
    tokio::sync::Mutex::const_new(BTreeMap::new());

/// One backend's use of the moto server it shares with the other AWS types.
pub struct SharedMoto {
    source: MotoSource,
    server: Arc<MotoServer>,
    /// Set once this use has been given back.
    stopped: std::sync::atomic::AtomicBool,
}

impl SharedMoto {
    /// Uses the running server of `source`, starting it if there is none (or it died).
    pub async fn acquire(source: MotoSource) -> Result<SharedMoto, String> {
        let mut running = RUNNING.lock().await;
        let server = match running.get_mut(&source) {
            Some(r) if r.server.alive() => {
                r.users += 1;
                r.server.clone()
            }
            _ => {
                // Users of a dead server see it dead through `alive` and are replaced.
                let server = Arc::new(MotoServer::start(&source).await?);
                running.insert(
                    source.clone(),
                    Running {
                        server: server.clone(),
                        users: 1,
                    },
                );
                server
            }
        };
        Ok(SharedMoto {
            source,
            server,
            stopped: Default::default(),
        })
    }

    /// The server.
    pub fn server(&self) -> &MotoServer {
        &self.server
    }

    /// Gives this use back; the last user stops the server.
    pub async fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let last = {
            let mut running = RUNNING.lock().await;
            match running.get_mut(&self.source) {
                Some(r) if Arc::ptr_eq(&r.server, &self.server) => {
                    r.users = r.users.saturating_sub(1);
                    (r.users == 0)
                        .then(|| running.remove(&self.source))
                        .flatten()
                }
                // Replaced after dying: this one is nobody else's.
                _ => None,
            }
        };
        if last.is_some() || !self.server.alive() {
            self.server.server.stop().await;
        }
    }
}
