//! The PostgreSQL backend, native or in a container.
//!
//! Native: `initdb` and `postgres` from the machine, on a private data directory, listening on
//! loopback only, tuned for tests (no fsync). PostgreSQL refuses to run as root; when rigd is
//! root (as in CI) the server runs as the `postgres` user, which owns the work directory.
//!
//! Container: upstream's image (`postgres:16-alpine`) and settings (`POSTGRES_USER`,
//! `POSTGRES_PASSWORD` and `POSTGRES_DB` all `postgres`, `-c max_connections=500`), plus
//! the same no-fsync settings, and `POSTGRES_HOST_AUTH_METHOD=password` so that the
//! password is checked in a form rigd's client speaks (the image's default, SCRAM, is not).
//!
//! Either way the backend talks to the server through its port on 127.0.0.1 with rigd's own
//! PostgreSQL client.
//!
//! `CREATE DATABASE` copies the template and takes around half a second, so the backend keeps
//! [`SPARES`] fresh databases created ahead of time: a lease takes one (a few milliseconds)
//! and a replacement is created in the background. A spare is exactly what `CREATE DATABASE`
//! would give the lease, so isolation is unchanged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::template::Template;
use crate::pool::container::{ContainerServer, ServerSpec};
use crate::pool::native::{
    find_program, free_port, running_as_root, NativeProcess, RunAs, WorkDir,
};
use crate::pool::server::Server;
use crate::pool::Backend;
use crate::wire::postgres::{quote_ident, Connection, Login, PgError};

/// How many databases are kept created ahead of leases.
pub const SPARES: usize = 2;

/// How long a starting native server gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a starting container gets (upstream: 120 s; the image runs `initdb` first).
const CONTAINER_START_TIMEOUT: Duration = Duration::from_secs(120);

/// Upstream's image.
pub const DEFAULT_IMAGE: &str = "postgres:16-alpine";

/// The server's port inside the container.
pub const CONTAINER_PORT: u16 = 5432;

/// Settings for a server whose data nobody needs after the test: no waiting for the disk.
const NO_SYNC: [&str; 3] = [
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

/// How many sessions the server takes, for every environment together (upstream's container
/// setting; each environment's services and pools open their own).
const MAX_CONNECTIONS: &str = "max_connections=500";

/// Where Debian and Ubuntu install the server binaries.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The superuser and its password (upstream's values; authentication is `trust` on loopback,
/// so the password is accepted but not needed).
pub const USER: &str = "postgres";
/// The superuser's password.
pub const PASSWORD: &str = "postgres";

/// The directory holding `initdb` and `postgres`: `postgres` on `PATH` (symlinks followed, so
/// `initdb` comes from the same installation), else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_binaries() -> Option<PathBuf> {
    let from_path = find_program("postgres", &[])
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|dir| dir.join("initdb").is_file());
    from_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_ROOT)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                (bin.join("postgres").is_file() && bin.join("initdb").is_file())
                    .then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

/// What to say when no binaries are found.
pub const MISSING: &str = "initdb and postgres not found on PATH or in /usr/lib/postgresql/*/bin \
                           (install the PostgreSQL server, e.g. apt-get install postgresql)";

/// A running PostgreSQL server.
pub struct PgBackend {
    server: Server,
    /// The server's port on 127.0.0.1.
    port: u16,
    databases: Arc<Databases>,
}

/// Creates and drops the per-lease databases, and keeps the spares.
struct Databases {
    /// `127.0.0.1:<port>`.
    hostport: String,
    next: AtomicU64,
    /// Databases created ahead of time, oldest first.
    spares: Mutex<Vec<String>>,
    /// Spares being created.
    pending: AtomicUsize,
}

impl Databases {
    async fn connect(&self, database: &str) -> Result<Connection, PgError> {
        Connection::connect(
            &self.hostport,
            Login {
                user: USER,
                password: PASSWORD,
                database,
            },
        )
        .await
    }

    async fn admin(&self, sql: &str) -> Result<(), String> {
        let mut conn = self.connect("postgres").await.map_err(|e| e.to_string())?;
        let result = conn.simple_query(sql).await.map_err(|e| e.to_string());
        conn.close().await;
        result.map(drop)
    }

    async fn create(&self) -> Result<String, String> {
        let name = format!("rig_{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.admin(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .map_err(|e| format!("create database {name}: {e}"))?;
        Ok(name)
    }

    /// Starts creating spares in the background until there are [`SPARES`] of them.
    fn replenish(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        loop {
            let have = self.spares.lock().len() + self.pending.load(Ordering::SeqCst);
            if have >= SPARES {
                return;
            }
            self.pending.fetch_add(1, Ordering::SeqCst);
            let this = self.clone();
            runtime.spawn(async move {
                // A failure leaves one spare fewer; the next lease creates its own database.
                if let Ok(name) = this.create().await {
                    this.spares.lock().push(name);
                }
                this.pending.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

impl PgBackend {
    /// Initialises a data directory with the binaries in `bin` (a copy of the cached
    /// template, see [`super::template`]) and starts the server.
    pub async fn start(bin: PathBuf) -> Result<PgBackend, String> {
        let run_as = if running_as_root() {
            Some(RunAs::user(USER).ok_or_else(|| {
                "PostgreSQL refuses to run as root and there is no \"postgres\" user to run it \
                 as: create one (useradd --system postgres) or run rigd as an unprivileged user"
                    .to_string()
            })?)
        } else {
            None
        };
        let dir =
            WorkDir::create("pg", run_as).map_err(|e| format!("create the data directory: {e}"))?;
        let data = dir.path().join("data");
        let data_arg = data.to_string_lossy().into_owned();
        let initdb_args: Vec<String> = [
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Template {
            bin: &bin,
            initdb_args: &initdb_args,
            run_as,
        }
        .init(&dir, &data)
        .await?;
        let port = free_port()?;
        let mut args: Vec<String> = [
            "-D",
            &data_arg,
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            // No Unix socket: the default directory may not exist or be writable.
            "-k",
            "",
            "-c",
            MAX_CONNECTIONS,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for setting in NO_SYNC {
            args.extend(["-c".to_string(), setting.to_string()]);
        }
        let process = NativeProcess::spawn(&bin.join("postgres"), &args, &dir, run_as)?;
        PgBackend::ready(Server::Native { process, dir }, port, START_TIMEOUT).await
    }

    /// Runs `image` (upstream's settings) and waits for the server in it.
    pub async fn start_container(image: String) -> Result<PgBackend, String> {
        let mut cmd = vec!["-c".to_string(), MAX_CONNECTIONS.to_string()];
        for setting in NO_SYNC {
            cmd.extend(["-c".to_string(), setting.to_string()]);
        }
        let env = [
            ("POSTGRES_USER", USER),
            ("POSTGRES_PASSWORD", PASSWORD),
            ("POSTGRES_DB", "postgres"),
            ("POSTGRES_HOST_AUTH_METHOD", "password"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let container = ContainerServer::start(ServerSpec {
            kind: "pgpool",
            image,
            cmd,
            env,
            port: CONTAINER_PORT,
            extra_ports: Vec::new(),
        })
        .await?;
        let port = container.host_port();
        PgBackend::ready(Server::Container(container), port, CONTAINER_START_TIMEOUT).await
    }

    /// Waits until `server` accepts connections on `port`, then starts making spares.
    async fn ready(server: Server, port: u16, timeout: Duration) -> Result<PgBackend, String> {
        let backend = PgBackend {
            server,
            port,
            databases: Arc::new(Databases {
                hostport: format!("127.0.0.1:{port}"),
                next: AtomicU64::new(1),
                spares: Mutex::new(Vec::new()),
                pending: AtomicUsize::new(0),
            }),
        };
        backend
            .server
            .wait_ready("postgres", timeout, || async {
                let conn = backend
                    .connect("postgres")
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await;
                Ok(())
            })
            .await?;
        backend.databases.replenish();
        Ok(backend)
    }

    /// The container, for a container backend (`exec` hooks run in it).
    pub fn container(&self) -> Option<&ContainerServer> {
        self.server.container()
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connects as the superuser to `database`.
    pub async fn connect(&self, database: &str) -> Result<Connection, PgError> {
        self.databases.connect(database).await
    }
}

impl Backend for PgBackend {
    /// The database name, `rig_<n>`.
    type Lease = String;

    async fn new_lease(&self) -> Result<String, String> {
        let spare = {
            let mut spares = self.databases.spares.lock();
            (!spares.is_empty()).then(|| spares.remove(0))
        };
        let name = match spare {
            Some(name) => name,
            None => self.databases.create().await?,
        };
        self.databases.replenish();
        Ok(name)
    }

    async fn drop_lease(&self, name: String) {
        // WITH (FORCE) terminates the sessions still connected to it (PostgreSQL 13+).
        if let Err(e) = self
            .databases
            .admin(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&name)
            ))
            .await
        {
            eprintln!("rigd: postgres pool: drop database {name}: {e}");
        }
    }

    async fn stop(&self) {
        self.server.stop().await;
    }

    fn alive(&self) -> bool {
        self.server.alive()
    }
}
