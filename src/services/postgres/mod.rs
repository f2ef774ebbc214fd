//! The `postgres` type (pooled): one PostgreSQL server per rigd and installation, a database
//! per environment service.
//!
//! Config: `{"backend": "native" | "container" | "auto", "image": "<container image>"}`. The
//! service's ingresses all get the server's address and the attributes `PGHOST`, `PGPORT`,
//! `PGDATABASE` (`rig_<n>`), `PGUSER` and `PGPASSWORD` (both `postgres`), replacing any in the
//! spec (upstream). Readiness is a PostgreSQL startup handshake. Init hooks:
//! - `sql`: `{"statements": ["..."]}` runs each statement in the service's database, in order;
//!   rig-rs also takes `{"dir": "migrations"}`: every `*.sql` file of the directory (relative
//!   to the spec's `dir`), sorted by name, each run whole (several statements per file are
//!   fine);
//! - `exec`: `{"command": ["psql", "-c", "..."]}` runs a command with the `PG*` variables of
//!   the service's database: on the host for the native backend, inside the shared container
//!   for the container backend (as upstream).
//!
//! Backends (`backend.rs`): native (`initdb` + `postgres` from the machine) or a container of
//! `image` (default upstream's `postgres:16-alpine`); `auto` picks native when the binaries are
//! found.
//!
//! On teardown the database is dropped (its sessions terminated first).

mod backend;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rig_types::LogStream;
use serde::Deserialize;
use serde_json::{json, Value};

pub use backend::PgBackend;

use super::infra::{exec_command, exec_hook, Infra, Pooled};
use super::{HookContext, ServiceError, StepFuture};
use crate::pool::Lease;
use crate::ready::ProbeKind;
use crate::wire::postgres::{PgError, COPY_IN_REFUSED};

/// The `postgres` service type.
pub type Postgres = Pooled<PostgresInfra>;

/// How `postgres` finds, starts and leases its backend.
pub struct PostgresInfra;

impl Infra for PostgresInfra {
    type Backend = PgBackend;
    const NAME: &'static str = "postgres";
    /// Upstream: 2 minutes.
    const IDLE: Duration = Duration::from_secs(120);
    const MISSING: &'static str = backend::MISSING;

    fn find_native() -> Option<PathBuf> {
        backend::find_binaries()
    }

    async fn start_native(bin: PathBuf) -> Result<PgBackend, String> {
        PgBackend::start(bin).await
    }

    const DEFAULT_IMAGE: Option<&'static str> = Some(backend::DEFAULT_IMAGE);

    async fn start_container(image: String) -> Result<PgBackend, String> {
        PgBackend::start_container(image).await
    }

    fn port(backend: &PgBackend) -> u16 {
        backend.port()
    }

    fn attributes(database: &String) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("PGHOST".to_string(), json!("${HOST}")),
            ("PGPORT".to_string(), json!("${PORT}")),
            ("PGDATABASE".to_string(), json!(database)),
            ("PGUSER".to_string(), json!(backend::USER)),
            ("PGPASSWORD".to_string(), json!(backend::PASSWORD)),
        ])
    }

    fn ready_probe() -> Option<ProbeKind> {
        Some(ProbeKind::Postgres)
    }

    const INIT_HOOKS: &'static [&'static str] = &["sql", "exec"];

    fn init_hook(ctx: HookContext, lease: Arc<Lease<PgBackend>>) -> Option<StepFuture> {
        match ctx.hook.hook_type.as_str() {
            "sql" => Some(Box::pin(sql_hook(ctx, lease))),
            "exec" => Some(Box::pin(exec(ctx, lease))),
            _ => None,
        }
    }
}

/// Runs an `exec` hook with the `PG*` variables of the service's database: on the host for a
/// native backend, inside the shared container for a container backend (as upstream).
async fn exec(ctx: HookContext, lease: Arc<Lease<PgBackend>>) -> Result<(), ServiceError> {
    let backend = lease.backend().clone();
    let env = |host: &str, port: u16| {
        [
            ("PGHOST", host.to_string()),
            ("PGPORT", port.to_string()),
            ("PGDATABASE", lease.get().clone()),
            ("PGUSER", backend::USER.to_string()),
            ("PGPASSWORD", backend::PASSWORD.to_string()),
        ]
    };
    match backend.container() {
        None => exec_hook("postgres", &ctx, &env("127.0.0.1", backend.port())).await,
        Some(container) => {
            let command = exec_command("postgres", &ctx)?;
            let env = env("127.0.0.1", backend::CONTAINER_PORT);
            container
                .exec(&command, &env, &ctx.output)
                .await
                .map_err(ServiceError::new)
        }
    }
}

/// Runs a `sql` hook's statements, then its directory's files, in the service's database.
async fn sql_hook(ctx: HookContext, lease: Arc<Lease<PgBackend>>) -> Result<(), ServiceError> {
    let config = SqlHook::parse(ctx.hook.config.as_ref())?;
    let scripts = config.scripts(&ctx.spec_dir)?;
    if scripts.is_empty() {
        return Ok(());
    }
    let mut conn = lease
        .backend()
        .connect(lease.get())
        .await
        .map_err(|e| ServiceError::new(format!("postgres init: connect: {e}")))?;
    drop(lease);
    let mut result = Ok(());
    for script in &scripts {
        if let Err(e) = conn.simple_query(&script.sql).await {
            result = Err(ServiceError::new(format!(
                "postgres init: {}: {e}{}",
                script.what,
                inline_copy_hint(&script.sql, &e)
            )));
            break;
        }
        if let Some(file) = &script.file {
            ctx.output
                .write(LogStream::Stdout, format!("applied {}\n", file.display()));
        }
    }
    conn.close().await;
    result
}

/// Advice for a syntax error in SQL that holds `COPY ... FROM stdin` with its rows inline
/// (pg_dump's plain output): the server parses the rows as SQL before any `COPY` runs, so
/// the error names a data line, not the real problem. Empty for any other error.
fn inline_copy_hint(sql: &str, error: &PgError) -> String {
    const SYNTAX_ERROR: &str = "42601";
    if error.code() == Some(SYNTAX_ERROR) && sql.to_ascii_lowercase().contains("from stdin") {
        format!(
            "; the SQL holds COPY ... FROM stdin with its rows inline, as pg_dump writes \
             it: {COPY_IN_REFUSED}"
        )
    } else {
        String::new()
    }
}

/// The config of a `sql` hook.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlHook {
    /// Statements, each run on its own.
    #[serde(default)]
    statements: Vec<String>,
    /// A directory of `*.sql` files, run in file name order after the statements.
    #[serde(default)]
    dir: Option<String>,
}

/// One string sent to the server, and how to name it in an error.
struct Script {
    sql: String,
    what: String,
    file: Option<PathBuf>,
}

impl SqlHook {
    /// The hook's config; one with neither `statements` nor `dir` is an error rather than a
    /// hook that silently does nothing.
    fn parse(config: Option<&serde_json::Value>) -> Result<SqlHook, ServiceError> {
        const SHAPE: &str =
            r#"{"statements": ["..."], "dir": "<directory of .sql files>"} (either or both)"#;
        let hook: SqlHook = match config {
            None => SqlHook::default(),
            Some(v) => crate::services::config::decode(Some(v), "sql hook config", SHAPE)
                .map_err(|e| ServiceError::new(format!("postgres init: {e}")))?,
        };
        if hook.statements.is_empty() && hook.dir.is_none() {
            return Err(ServiceError::new(format!(
                "postgres init: a sql hook with nothing to run: it needs statements or a dir: \
                 {SHAPE}"
            )));
        }
        Ok(hook)
    }

    fn scripts(&self, spec_dir: &str) -> Result<Vec<Script>, ServiceError> {
        let mut scripts: Vec<Script> = self
            .statements
            .iter()
            .map(|s| Script {
                sql: s.clone(),
                what: format!("statement {s:?}"),
                file: None,
            })
            .collect();
        let Some(dir) = &self.dir else {
            return Ok(scripts);
        };
        let dir = if Path::new(dir).is_relative() && !spec_dir.is_empty() {
            Path::new(spec_dir).join(dir)
        } else {
            PathBuf::from(dir)
        };
        let read_err = |e: std::io::Error| {
            ServiceError::new(format!("postgres init: read {}: {e}", dir.display()))
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(read_err)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
            .collect();
        files.sort();
        for file in files {
            let sql = std::fs::read_to_string(&file).map_err(|e| {
                ServiceError::new(format!("postgres init: read {}: {e}", file.display()))
            })?;
            scripts.push(Script {
                sql,
                what: format!("file {}", file.display()),
                file: Some(file),
            });
        }
        Ok(scripts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sql_hook_that_would_do_nothing_is_an_error() {
        for config in [None, Some(json!({})), Some(json!({"statements": []}))] {
            let err = SqlHook::parse(config.as_ref()).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("postgres init: a sql hook with nothing to run"),
                "{err}"
            );
        }
        assert!(SqlHook::parse(Some(&json!({"statements": ["SELECT 1"]}))).is_ok());
        assert!(SqlHook::parse(Some(&json!({"dir": "migrations"}))).is_ok());
    }

    #[test]
    fn sql_hook_reads_statements_then_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("002_b.sql"), "SELECT 2").unwrap();
        std::fs::write(dir.path().join("001_a.sql"), "SELECT 1; SELECT 11").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not sql").unwrap();
        let config = json!({"statements": ["SELECT 0"], "dir": "."});
        let hook = SqlHook::parse(Some(&config)).unwrap();
        let scripts = hook.scripts(&dir.path().to_string_lossy()).unwrap();
        let sql: Vec<&str> = scripts.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(sql, ["SELECT 0", "SELECT 1; SELECT 11", "SELECT 2"]);
        assert_eq!(scripts[0].what, "statement \"SELECT 0\"");
        assert!(scripts[1].what.ends_with("001_a.sql"));
    }

    #[test]
    fn a_syntax_error_in_sql_with_inline_copy_data_gets_advice() {
        let syntax = PgError::Server(crate::wire::postgres::ServerError {
            severity: "ERROR".into(),
            code: "42601".into(),
            message: "syntax error at or near \"1\"".into(),
        });
        let dump = "COPY public.t (id, name) FROM stdin;\n1\tapple\n\\.\n";
        let hint = inline_copy_hint(dump, &syntax);
        assert!(
            hint.contains("pg_dump") && hint.contains(COPY_IN_REFUSED),
            "{hint}"
        );
        assert_eq!(inline_copy_hint("SELEC 1", &syntax), "");
        assert_eq!(inline_copy_hint(dump, &PgError::CopyFromStdin), "");
    }

    #[test]
    fn sql_hook_errors_say_what_is_wrong() {
        let err = SqlHook::parse(Some(&json!({"statement": "x"}))).unwrap_err();
        assert!(err.message().contains("invalid sql hook config"), "{err}");
        let missing = SqlHook::parse(Some(&json!({"dir": "/nonexistent/rig"}))).unwrap();
        let err = missing.scripts("").err().unwrap();
        assert!(err.message().contains("/nonexistent/rig"), "{err}");
    }
}
