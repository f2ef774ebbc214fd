//! The Redis backend: `redis-server` from the machine (native) or upstream's image
//! (`redis:7-alpine`) in a container, without persistence. Either way the backend talks to
//! the server through its port on 127.0.0.1 with rigd's own RESP client.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;

use crate::pool::container::{ContainerServer, ServerSpec};
use crate::pool::native::{find_program, free_port, NativeProcess, WorkDir};
use crate::pool::server::Server;
use crate::pool::Backend;
use crate::wire::resp::{Connection, Reply};

/// How long a starting native server gets to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a starting container gets (upstream: 60 s).
const CONTAINER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Upstream's image.
pub const DEFAULT_IMAGE: &str = "redis:7-alpine";

/// The server's port inside the container.
const CONTAINER_PORT: u16 = 6379;

/// How many databases a server has, so how many environments it serves at once. Upstream
/// keeps Redis's default of 16, which a parallel test suite on a many-core machine exceeds;
/// an empty database costs the server almost nothing.
pub const DATABASES: u8 = 128;

/// What to say when `redis-server` is not found.
pub const MISSING: &str =
    "redis-server not found on PATH (install it, e.g. apt-get install redis-server)";

/// `redis-server` on rigd's `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    find_program("redis-server", &[])
}

/// A running Redis server.
pub struct RedisBackend {
    server: Server,
    hostport: String,
    port: u16,
    /// Database numbers not leased, oldest-freed first.
    free: Mutex<VecDeque<u8>>,
}

impl RedisBackend {
    /// Starts `redis-server` (the binary at `program`).
    pub async fn start(program: PathBuf) -> Result<RedisBackend, String> {
        let dir = WorkDir::create("redis", None)
            .map_err(|e| format!("create the work directory: {e}"))?;
        let port = free_port()?;
        let mut args = server_settings();
        args.extend(
            [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "no",
                "--dir",
                &dir.path().to_string_lossy(),
            ]
            .map(str::to_string),
        );
        let process = NativeProcess::spawn(&program, &args, &dir, None)?;
        RedisBackend::ready(Server::Native { process, dir }, port, START_TIMEOUT).await
    }

    /// Runs `image` (`redis-server` without persistence) and waits for the server in it.
    pub async fn start_container(image: String) -> Result<RedisBackend, String> {
        let cmd = std::iter::once("redis-server".to_string())
            .chain(server_settings())
            .collect();
        let container = ContainerServer::start(ServerSpec {
            kind: "redis",
            image,
            cmd,
            env: Default::default(),
            port: CONTAINER_PORT,
            extra_ports: Vec::new(),
        })
        .await?;
        let port = container.host_port();
        RedisBackend::ready(Server::Container(container), port, CONTAINER_START_TIMEOUT).await
    }

    /// Waits until `server` answers `PING` on `port`.
    async fn ready(server: Server, port: u16, timeout: Duration) -> Result<RedisBackend, String> {
        let hostport = format!("127.0.0.1:{port}");
        server
            .wait_ready("redis-server", timeout, || async {
                let mut conn = Connection::connect(&hostport)
                    .await
                    .map_err(|e| e.to_string())?;
                match conn.command(&[b"PING"]).await.map_err(|e| e.to_string())? {
                    Reply::Simple(s) if s == "PONG" => Ok(()),
                    other => Err(format!("PING answered {other:?}")),
                }
            })
            .await?;
        Ok(RedisBackend {
            server,
            hostport,
            port,
            free: Mutex::new((0..DATABASES).collect()),
        })
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Empties database `db` for the next lease: disconnects its clients first (an app
    /// still in its stop grace could otherwise write after the flush), then `FLUSHDB`.
    async fn flush(&self, db: u8) -> Result<(), String> {
        let mut conn = Connection::connect(&self.hostport)
            .await
            .map_err(|e| e.to_string())?;
        let own = match run(&mut conn, &[b"CLIENT", b"ID"]).await? {
            Reply::Integer(id) => id,
            other => return Err(format!("CLIENT ID answered {other:?}")),
        };
        let list = match run(&mut conn, &[b"CLIENT", b"LIST"]).await? {
            Reply::Bulk(Some(text)) => String::from_utf8_lossy(&text).into_owned(),
            other => return Err(format!("CLIENT LIST answered {other:?}")),
        };
        for id in clients_of(&list, db, own) {
            // A client gone meanwhile is not an error (the reply counts those killed).
            run(
                &mut conn,
                &[b"CLIENT", b"KILL", b"ID", id.to_string().as_bytes()],
            )
            .await?;
        }
        run(&mut conn, &[b"SELECT", db.to_string().as_bytes()]).await?;
        run(&mut conn, &[b"FLUSHDB"]).await?;
        Ok(())
    }
}

/// Sends one command; an error reply is an error, with the command's name.
async fn run(conn: &mut Connection, args: &[&[u8]]) -> Result<Reply, String> {
    let name = || {
        args.iter()
            .take(2)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match conn.command(args).await {
        Ok(Reply::Error(e)) => Err(format!("{}: {e}", name())),
        Ok(reply) => Ok(reply),
        Err(e) => Err(format!("{}: {e}", name())),
    }
}

/// The ids of the clients in `list` (a `CLIENT LIST` reply) whose current database is `db`,
/// other than `own`.
fn clients_of(list: &str, db: u8, own: i64) -> Vec<i64> {
    let db = db.to_string();
    list.lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            let id = field("id")?.parse::<i64>().ok()?;
            (field("db")? == db && id != own).then_some(id)
        })
        .collect()
}

impl Backend for RedisBackend {
    /// The database number, 0 to 127.
    type Lease = u8;

    async fn new_lease(&self) -> Result<u8, String> {
        self.free.lock().pop_front().ok_or_else(|| {
            format!(
                "all {DATABASES} redis databases are in use: {DATABASES} environments with \
                     redis services are running (`rig ps` lists them; `rig down` ends them)"
            )
        })
    }

    async fn drop_lease(&self, db: u8) {
        if let Err(e) = self.flush(db).await {
            // Not returned to the free list: the next environment must not see its data.
            eprintln!("rigd: redis pool: flush database {db}: {e}");
            return;
        }
        self.free.lock().push_back(db);
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

/// The settings of every pooled server, native or in a container: no persistence, no
/// protected mode (clients connect from other addresses in a container), [`DATABASES`]
/// databases to lease.
fn server_settings() -> Vec<String> {
    [
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--databases",
        &DATABASES.to_string(),
    ]
    .map(str::to_string)
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_of_a_database_are_picked_from_client_list() {
        let list = "id=3 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=8 name= db=5 cmd=get\n\
                    id=4 addr=127.0.0.1:5001 laddr=127.0.0.1:6379 fd=9 name= db=15 cmd=set\n\
                    id=7 addr=127.0.0.1:5002 laddr=127.0.0.1:6379 fd=10 name= db=5 cmd=client\n\
                    id=9 addr=127.0.0.1:5003 fd=11 name=db=5 db=0 cmd=ping\n";
        assert_eq!(clients_of(list, 5, 7), [3]);
        assert_eq!(clients_of(list, 15, 7), [4]);
        assert_eq!(clients_of(list, 0, 7), [9]);
        assert!(clients_of(list, 1, 7).is_empty());
    }
}
