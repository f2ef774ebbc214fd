//! The moto server (PyPI `moto[server]`): the native backend of the `s3` and `sqs` types. One
//! `moto_server` process serves every AWS service; each pool runs its own.

use std::path::PathBuf;
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
    // Dropped last: removes the work directory once the server has stopped.
    _dir: WorkDir,
}

impl MotoServer {
    /// Starts `moto_server` (the program at `program`) on a free loopback port; `kind` names
    /// the work directory (`s3`, `sqs`).
    pub async fn start(kind: &str, program: PathBuf) -> Result<MotoServer, String> {
        let dir =
            WorkDir::create(kind, None).map_err(|e| format!("create the work directory: {e}"))?;
        let port = free_port()?;
        let args = vec![
            "-H".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            port.to_string(),
        ];
        let process = NativeProcess::spawn(&program, &args, &dir, None)?;
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
            _dir: dir,
        })
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
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

    /// Stops the server.
    pub async fn stop(&self) {
        self.process.stop().await;
    }

    /// False once the server has exited.
    pub fn alive(&self) -> bool {
        self.process.alive()
    }
}
