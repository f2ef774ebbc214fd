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
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
use crate::wire::postgres::{quote_ident, quote_literal, Connection, Login, PgError};

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
    /// The server's `server_version_num` (150004 for 15.4), read when it is ready.
    version: AtomicU32,
}

/// The first `server_version_num` whose `DROP DATABASE` takes `WITH (FORCE)`.
const FORCE_DROP_SINCE: u32 = 130_000;

/// The statements that drop database `name` and end its sessions on a server of version
/// `version` (`server_version_num`), each to be sent on its own (`DROP DATABASE` cannot run
/// in the implicit transaction of a multi-statement string). From 13 on, `WITH (FORCE)` does
/// it all; before, new sessions are refused, the open ones terminated, then the database is
/// dropped (the server waits a few seconds for terminated sessions to go).
fn drop_statements(version: u32, name: &str) -> Vec<String> {
    let ident = quote_ident(name);
    if version >= FORCE_DROP_SINCE {
        return vec![format!("DROP DATABASE IF EXISTS {ident} WITH (FORCE)")];
    }
    vec![
        format!("ALTER DATABASE {ident} ALLOW_CONNECTIONS false"),
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {} \
             AND pid <> pg_backend_pid()",
            quote_literal(name)
        ),
        format!("DROP DATABASE IF EXISTS {ident}"),
    ]
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
        self.admin_all(&[sql.to_string()]).await
    }

    /// Runs `statements` one after the other on one session; the first error stops them.
    async fn admin_all(&self, statements: &[String]) -> Result<(), String> {
        let mut conn = self.connect("postgres").await.map_err(|e| e.to_string())?;
        let mut result = Ok(());
        for sql in statements {
            if let Err(e) = conn.simple_query(sql).await {
                result = Err(e.to_string());
                break;
            }
        }
        conn.close().await;
        result
    }

    /// Reads the server's `server_version_num`.
    async fn read_version(&self) -> Result<u32, String> {
        let mut conn = self.connect("postgres").await.map_err(|e| e.to_string())?;
        let rows = conn.simple_query("SHOW server_version_num").await;
        conn.close().await;
        let rows = rows.map_err(|e| e.to_string())?;
        let text = rows.first().and_then(|r| r.first().cloned().flatten());
        text.as_deref()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| format!("server_version_num is not a number: {text:?}"))
    }

    /// Drops database `name`, ending its sessions first.
    async fn drop_database(&self, name: &str) -> Result<(), String> {
        let version = self.version.load(Ordering::Relaxed);
        self.admin_all(&drop_statements(version, name)).await
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
                version: AtomicU32::new(FORCE_DROP_SINCE),
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
        match backend.databases.read_version().await {
            Ok(version) => backend.databases.version.store(version, Ordering::Relaxed),
            Err(e) => {
                backend.server.stop().await;
                return Err(format!("postgres: read the server's version: {e}"));
            }
        }
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
        if let Err(e) = self.databases.drop_database(&name).await {
            eprintln!("rigd: postgres pool: drop database {name}: {e}");
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
    fn databases_are_dropped_with_force_from_13_and_by_terminating_sessions_before() {
        assert_eq!(
            drop_statements(150_004, "rig_1"),
            ["DROP DATABASE IF EXISTS \"rig_1\" WITH (FORCE)"]
        );
        assert_eq!(drop_statements(130_000, "rig_1").len(), 1);
        let old = drop_statements(120_017, "rig_1");
        assert_eq!(
            old,
            [
                "ALTER DATABASE \"rig_1\" ALLOW_CONNECTIONS false",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \
                 'rig_1' AND pid <> pg_backend_pid()",
                "DROP DATABASE IF EXISTS \"rig_1\"",
            ]
        );
        assert!(old.iter().all(|s| !s.contains("FORCE")));
    }

    /// The statements for servers before 13 also run on the machine's (newer) server: a
    /// database with a session still open is dropped and the session ended.
    #[tokio::test]
    async fn the_drop_for_old_servers_ends_sessions_and_drops_the_database() {
        let Some(bin) = find_binaries() else {
            panic!("{MISSING}");
        };
        let backend = PgBackend::start(bin).await.unwrap();
        let version = backend.databases.version.load(Ordering::Relaxed);
        assert!(version >= FORCE_DROP_SINCE, "read {version}");
        backend.databases.version.store(120_000, Ordering::Relaxed);
        let name = backend.new_lease().await.unwrap();
        let mut session = backend.connect(&name).await.unwrap();
        session.simple_query("SELECT 1").await.unwrap();
        backend.drop_lease(name.clone()).await;
        assert!(
            session.simple_query("SELECT 1").await.is_err(),
            "the session outlived its database"
        );
        let mut admin = backend.connect("postgres").await.unwrap();
        let left = admin
            .simple_query(&format!(
                "SELECT datname FROM pg_database WHERE datname = {}",
                quote_literal(&name)
            ))
            .await
            .unwrap();
        admin.close().await;
        backend.stop().await;
        assert!(left.is_empty(), "{name} was not dropped");
    }
}
