//! The native PostgreSQL backend: `initdb` and `postgres` from the machine, on a private data
//! directory, listening on loopback only, tuned for tests (no fsync).
//!
//! PostgreSQL refuses to run as root; when rigd is root (as in CI) the server runs as the
//! `postgres` user, which owns the work directory.
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

use crate::pool::native::{
    find_program, free_port, run_setup, running_as_root, wait_ready, NativeProcess, RunAs, WorkDir,
};
use crate::pool::Backend;
use crate::wire::postgres::{quote_ident, Connection, Login, PgError};

/// How many databases are kept created ahead of leases.
pub const SPARES: usize = 2;

/// How long a starting server gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

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
    process: NativeProcess,
    port: u16,
    databases: Arc<Databases>,
    // Dropped last: removes the data directory once the server has stopped.
    dir: WorkDir,
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
    /// Initialises a data directory with the binaries in `bin` and starts the server.
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
        run_setup(
            &bin.join("initdb"),
            &[
                "-D".into(),
                data_arg.clone(),
                "-U".into(),
                USER.into(),
                "--auth=trust".into(),
                "--encoding=UTF8".into(),
                "--locale=C".into(),
                "--no-sync".into(),
                "--no-instructions".into(),
            ],
            &dir,
            run_as,
        )
        .await?;
        let port = free_port()?;
        let process = NativeProcess::spawn(
            &bin.join("postgres"),
            &[
                "-D".into(),
                data_arg,
                "-h".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                // No Unix socket: the default directory may not exist or be writable.
                "-k".into(),
                String::new(),
                "-c".into(),
                "max_connections=200".into(),
                "-c".into(),
                "fsync=off".into(),
                "-c".into(),
                "synchronous_commit=off".into(),
                "-c".into(),
                "full_page_writes=off".into(),
            ],
            &dir,
            run_as,
        )?;
        let backend = PgBackend {
            process,
            port,
            databases: Arc::new(Databases {
                hostport: format!("127.0.0.1:{port}"),
                next: AtomicU64::new(1),
                spares: Mutex::new(Vec::new()),
                pending: AtomicUsize::new(0),
            }),
            dir,
        };
        let ready = wait_ready(
            "postgres",
            &backend.process,
            &backend.dir,
            START_TIMEOUT,
            || async {
                let conn = backend
                    .connect("postgres")
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await;
                Ok(())
            },
        )
        .await;
        match ready {
            Ok(()) => {
                backend.databases.replenish();
                Ok(backend)
            }
            Err(e) => {
                backend.process.stop().await;
                Err(e)
            }
        }
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
        self.process.stop().await;
    }

    fn alive(&self) -> bool {
        self.process.alive()
    }
}
