//! The moto server (PyPI `moto[server]`): the native backend of the `s3` and `sqs` types.
//!
//! One `moto_server` process serves every AWS service, so the `s3` and `sqs` pools share one
//! ([`SharedMoto`]): the first of them to need it starts it, the other uses the running one,
//! and it stops when the last of them stops with it (its pool's idle time, or rigd's
//! shutdown). Buckets and queues stay per environment; the pools name them apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::pool::native::{find_program, free_port, wait_ready, NativeProcess, WorkDir};
use crate::wire::aws::{self, Call, Response};

/// How long a starting server gets to answer HTTP (moto imports a lot of Python).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What to say when `moto_server` is not found.
pub const MISSING: &str = "moto_server not found on PATH (install it: pip install 'moto[server]')";

/// `moto_server` on rigd's `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    find_program("moto_server", &[])
}

/// A running moto server.
pub struct MotoServer {
    process: NativeProcess,
    hostport: String,
    port: u16,
    /// The number in the next [`MotoServer::unique_name`].
    next_name: AtomicU64,
    // Dropped last: removes the work directory once the server has stopped.
    dir: WorkDir,
}

impl MotoServer {
    /// Starts `moto_server` (the program at `program`) on a free loopback port.
    async fn start(program: &Path) -> Result<MotoServer, String> {
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
        let hostport = format!("127.0.0.1:{port}");
        let ready = wait_ready("moto_server", &process, &dir, START_TIMEOUT, || async {
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
        .await;
        if let Err(e) = ready {
            process.stop().await;
            return Err(e);
        }
        Ok(MotoServer {
            process,
            hostport,
            port,
            next_name: AtomicU64::new(1),
            dir,
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
        self.process.alive()
    }

    /// The end of the server's output.
    pub fn log_tail(&self) -> String {
        self.dir.log_tail()
    }
}

/// A running moto server and how many backends use it.
struct Running {
    server: Arc<MotoServer>,
    users: usize,
}

/// The moto servers of this process, by program.
static RUNNING: tokio::sync::Mutex<BTreeMap<PathBuf, Running>> =
    tokio::sync::Mutex::const_new(BTreeMap::new());

/// One backend's use of the moto server it shares with the other AWS types.
pub struct SharedMoto {
    program: PathBuf,
    server: Arc<MotoServer>,
    /// Set once this use has been given back.
    stopped: std::sync::atomic::AtomicBool,
}

impl SharedMoto {
    /// Uses the running server of `program`, starting it if there is none (or it died).
    pub async fn acquire(program: PathBuf) -> Result<SharedMoto, String> {
        let mut running = RUNNING.lock().await;
        let server = match running.get_mut(&program) {
            Some(r) if r.server.alive() => {
                r.users += 1;
                r.server.clone()
            }
            _ => {
                // Users of a dead server see it dead through `alive` and are replaced.
                let server = Arc::new(MotoServer::start(&program).await?);
                running.insert(
                    program.clone(),
                    Running {
                        server: server.clone(),
                        users: 1,
                    },
                );
                server
            }
        };
        Ok(SharedMoto {
            program,
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
            match running.get_mut(&self.program) {
                Some(r) if Arc::ptr_eq(&r.server, &self.server) => {
                    r.users = r.users.saturating_sub(1);
                    (r.users == 0)
                        .then(|| running.remove(&self.program))
                        .flatten()
                }
                // Replaced after dying: this one is nobody else's.
                _ => None,
            }
        };
        if last.is_some() || !self.server.alive() {
            self.server.process.stop().await;
        }
    }
}
