//! The `postgres` type with its native backend, through the real `rigd` binary and the real
//! `psql` client: a database per environment on one shared server, `sql` hooks that seed
//! data a service then reads through its egress (and the observing proxy), databases dropped
//! at teardown, and the server stopped with rigd or reaped after `kill -9`.

mod support;

use std::path::Path;

use rig_types::EventType;
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::clients::psql;
use support::{is_alive, Rigd};

/// A native postgres service, with a `sql` init hook running `statements` when there are any.
fn postgres(statements: &[&str]) -> Value {
    let mut service = json!({
        "type": "postgres",
        "config": {"backend": "native"},
        "ingresses": {"default": {"protocol": "tcp", "container_port": 5432}}
    });
    if !statements.is_empty() {
        service["hooks"] = json!({"init": [{"type": "sql", "config": {"statements": statements}}]});
    }
    service
}

/// The `postgres` server processes (postmasters) of rigd `pid`: its children whose data
/// directory is one of its pool's. (A backend the postmaster just forked still shows the
/// postmaster's command line for a moment; it is the postmaster's child, not rigd's.)
fn servers_of(pid: u32) -> Vec<u32> {
    let marker = format!("rig-pg-{pid}-");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            String::from_utf8_lossy(&cmdline).contains(&marker) && ppid == Some(pid) && is_alive(*p)
        })
        .collect()
}

#[tokio::test]
async fn a_sql_hook_seeds_data_that_a_service_reads_through_the_observing_proxy() {
    let rigd = Rigd::start();
    let reader = rigd.script("reader.sh", support::PSQL_ITEMS_READER);
    let (id, up) = rigd
        .up(json!({
            "name": "pg-seed",
            "services": {
                "db": postgres(&[
                    "CREATE TABLE items (id int PRIMARY KEY, name text)",
                    "INSERT INTO items VALUES (1, 'apple'), (2, 'pear')",
                ]),
                "reader": {
                    "type": "process",
                    "config": {"command": "sh"},
                    "args": [reader],
                    "egresses": {"db": {"service": "db"}}
                }
            }
        }))
        .await;
    let items = Path::new(&up.env_dir).join("reader").join("items.txt");
    support::wait_until("the reader's query", || items.exists());
    assert_eq!(
        std::fs::read_to_string(&items).unwrap().trim(),
        "apple\npear"
    );

    // The attributes name this environment's database, the same from the test's side.
    let db = &up.ingresses["db"]["default"];
    let database = db.attributes.as_ref().unwrap()["PGDATABASE"].clone();
    assert!(database.as_str().unwrap().starts_with("rig_"), "{database}");
    assert_eq!(psql(db, None, "SELECT count(*) FROM items"), "2");

    // Observe mode: the reader's session went through the proxy on its edge.
    let log = rigd.log(&id).await;
    let closed = log
        .iter()
        .filter_map(|e| e.connection.as_ref().map(|c| (e.event_type.clone(), c)))
        // Readiness probes through the proxy connect and close without a byte.
        .find(|(t, c)| {
            *t == EventType::ConnectionClosed
                && c.source == "reader"
                && c.target == "db"
                && c.bytes_in > 0
                && c.bytes_out > 0
        });
    assert!(
        closed.is_some(),
        "no connection.closed reader → db with traffic in {}",
        support::describe(&log)
    );
    assert!(
        log.iter()
            .any(|e| e.event_type == EventType::ConnectionOpened
                && e.connection.as_ref().is_some_and(|c| c.source == "reader")),
        "no connection.opened from the reader"
    );
}

#[tokio::test]
async fn two_environments_share_one_server_with_isolated_databases_dropped_at_teardown() {
    let rigd = Rigd::start();
    let spec = |name: &str| {
        json!({
            "name": name,
            "observe": false,
            "services": {"db": postgres(&[
                "CREATE TABLE owner (name text)",
                &format!("INSERT INTO owner VALUES ('{name}')"),
            ])}
        })
    };
    let ((a, up_a), (b, up_b)) = tokio::join!(rigd.up(spec("alpha")), rigd.up(spec("beta")));
    let (db_a, db_b) = (
        &up_a.ingresses["db"]["default"],
        &up_b.ingresses["db"]["default"],
    );
    assert_eq!(db_a.hostport, db_b.hostport, "one shared server");
    assert_eq!(servers_of(rigd.pid()).len(), 1, "one postmaster for both");
    // Room for every environment's sessions, as upstream's container.
    assert_eq!(psql(db_a, None, "SHOW max_connections"), "500");
    assert_eq!(psql(db_a, None, "SELECT name FROM owner"), "alpha");
    assert_eq!(psql(db_b, None, "SELECT name FROM owner"), "beta");
    let name_a = db_a.attributes.as_ref().unwrap()["PGDATABASE"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        name_a,
        db_b.attributes.as_ref().unwrap()["PGDATABASE"]
            .as_str()
            .unwrap()
    );

    rigd.client()
        .delete_environment(&a, &DeleteOptions::default())
        .await
        .unwrap();
    let databases = psql(db_b, Some("postgres"), "SELECT datname FROM pg_database");
    assert!(
        !databases.lines().any(|d| d == name_a),
        "{name_a} survived its environment: {databases}"
    );
    // The other environment is untouched.
    assert_eq!(psql(db_b, None, "SELECT name FROM owner"), "beta");
    rigd.client()
        .delete_environment(&b, &DeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failing_statement_fails_the_service_with_the_statement_in_the_error() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({
            "name": "pg-bad-sql",
            "services": {"db": postgres(&["CREATE TABLE t (id int)", "SELEC 1"])}
        }))
        .await;
    let failed = rigd.events(&id).until(EventType::ServiceFailed).await;
    assert_eq!(failed.service, "db");
    assert!(
        failed
            .error
            .contains("postgres init: statement \"SELEC 1\"")
            && failed.error.contains("syntax error"),
        "{}",
        failed.error
    );
}

/// A `sql` hook cannot feed `COPY ... FROM stdin` (pg_dump's plain output): the hook fails
/// at once, naming the file and saying what to use instead, rather than waiting for data
/// until its timeout. What a `COPY ... TO STDOUT` sends is read and dropped. A pg_dump file
/// with its rows inline fails on a row (the server parses them as SQL) with the same advice.
#[tokio::test]
async fn a_sql_hook_with_copy_from_stdin_fails_at_once_naming_the_file() {
    let rigd = Rigd::start();
    let migrations = rigd.scratch().join("copy-migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    let bare = migrations.join("001_load.sql");
    std::fs::write(&bare, "CREATE TABLE t (id int);\nCOPY t FROM stdin;\n").unwrap();
    let dumps = rigd.scratch().join("copy-dump");
    std::fs::create_dir_all(&dumps).unwrap();
    let dump = dumps.join("001_dump.sql");
    std::fs::write(
        &dump,
        "CREATE TABLE t (id int, name text);\n\
         COPY public.t (id, name) FROM stdin;\n1\tapple\n\\.\n",
    )
    .unwrap();
    let env = |name: &str, dir: &Path| {
        let mut db = postgres(&["COPY (SELECT 1) TO STDOUT"]);
        db["hooks"]["init"][0]["config"]["dir"] = json!(dir.to_str().unwrap());
        json!({"name": name, "observe": false, "services": {"db": db}})
    };
    let advice = "COPY FROM STDIN is not supported in sql hooks";
    for (name, dir, file) in [("pg-copy", &migrations, &bare), ("pg-dump", &dumps, &dump)] {
        let id = rigd.create(env(name, dir)).await;
        // The hook's own timeout is minutes: a minute here only detects a hang.
        let failed = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            rigd.events(&id).until(EventType::ServiceFailed),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: the sql hook hung on COPY FROM stdin"));
        let expected = format!("postgres init: file {}: ", file.display());
        assert!(
            failed.error.starts_with(&expected)
                && failed.error.contains(advice)
                && failed.error.contains("exec hook running psql"),
            "{name}: {}",
            failed.error
        );
    }
}

/// A postgres service whose init hook runs `command` on the host.
fn postgres_exec(command: &[&str]) -> Value {
    json!({
        "type": "postgres",
        "config": {"backend": "native"},
        "ingresses": {"default": {"protocol": "tcp", "container_port": 5432}},
        "hooks": {"init": [{"type": "exec", "config": {"command": command}}]}
    })
}

/// An `exec` hook runs with the client's environment (`host_env`: its `PATH` finds the
/// client's tools, its variables are there), plus the database's `PG*` variables; what the
/// hook starts in the background does not outlive it.
#[tokio::test]
async fn an_exec_hook_runs_with_the_clients_environment_and_leaves_nothing_running() {
    let rigd = Rigd::start();
    let bin = rigd.scratch().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tool = bin.join("seed-tool");
    std::fs::write(
        &tool,
        "#!/bin/sh\necho \"seed-tool: $HOOK_MARK on port $PGPORT\"\nsleep 1000 &\n",
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mark = format!("bg-{}", std::process::id());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let (id, _) = rigd
        .up(json!({
            "name": "pg-exec",
            "host_env": {"PATH": path, "HOOK_MARK": mark},
            "services": {"db": postgres_exec(&["seed-tool"])}
        }))
        .await;
    let log = rigd.log(&id).await;
    let printed = log.iter().any(|e| {
        e.log
            .as_ref()
            .is_some_and(|l| l.data.contains(&format!("seed-tool: {mark} on port ")))
    });
    assert!(
        printed,
        "the hook's line is not in the log: {}",
        support::describe(&log)
    );
    let left = support::processes_with_env(&format!("HOOK_MARK={mark}"));
    assert!(
        left.is_empty(),
        "the hook's background child outlived it: {left:?}"
    );
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .unwrap();
}

/// A hook still running when its environment is torn down goes with it, children included.
/// A server-side hook that runs past its `timeout` fails the service, saying which hook and
/// how to give it longer, and is killed with its children.
#[tokio::test]
async fn an_exec_hook_past_its_timeout_fails_the_service_and_is_killed() {
    let rigd = Rigd::start();
    let mark = format!("slow-{}", std::process::id());
    let mut db = postgres_exec(&["sh", "-c", "sleep 1000; echo never"]);
    db["hooks"]["init"][0]["timeout"] = json!("1s");
    let id = rigd
        .create(json!({
            "name": "pg-exec-timeout",
            "host_env": {"HOOK_MARK": mark},
            "services": {"db": db}
        }))
        .await;
    let mut events = rigd.events(&id);
    events.until(EventType::ServiceInit).await;
    let started = std::time::Instant::now();
    let failed = events.until(EventType::ServiceFailed).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "failed {:?} into a 1s timeout",
        started.elapsed()
    );
    assert_eq!(failed.service, "db");
    assert_eq!(
        failed.error,
        "hooks.init[0] (exec) did not finish within 1s; if it needs longer, give it a \
         \"timeout\" (e.g. \"timeout\": \"10m\")"
    );
    support::wait_until("the hook's processes to end", || {
        support::processes_with_env(&format!("HOOK_MARK={mark}")).is_empty()
    });
}

#[tokio::test]
async fn a_hanging_exec_hook_is_killed_with_its_children_at_teardown() {
    let rigd = Rigd::start();
    let mark = format!("hang-{}", std::process::id());
    let id = rigd
        .create(json!({
            "name": "pg-exec-hang",
            "host_env": {"HOOK_MARK": mark},
            "services": {"db": postgres_exec(&["sh", "-c", "sleep 1000; echo never"])}
        }))
        .await;
    let marked = || support::processes_with_env(&format!("HOOK_MARK={mark}"));
    support::wait_until("the hook's sleep to start", || {
        marked().iter().any(|p| p.cmdline.starts_with("sleep"))
    });
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .unwrap();
    support::wait_until("the hook's processes to end", || marked().is_empty());
}

#[tokio::test]
async fn the_server_stops_with_rigd_and_is_reaped_after_kill_9() {
    // A clean shutdown stops the server.
    let rigd = Rigd::start();
    rigd.up(json!({"name": "pg-stop", "services": {"db": postgres(&[])}}))
        .await;
    let pid = rigd.pid();
    let servers = servers_of(pid);
    assert_eq!(servers.len(), 1, "{servers:?}");
    drop(rigd);
    support::wait_until("the server to stop with rigd", || !is_alive(servers[0]));

    // kill -9 of rigd: the reaper stops it and removes its data directory.
    let rigd = Rigd::start();
    rigd.up(json!({"name": "pg-kill", "services": {"db": postgres(&[])}}))
        .await;
    let pid = rigd.pid();
    let servers = servers_of(pid);
    assert_eq!(servers.len(), 1, "{servers:?}");
    let data_dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("rig-pg-{pid}-")))
        })
        .collect();
    assert_eq!(data_dirs.len(), 1, "{data_dirs:?}");
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    support::wait_until("the server to be reaped", || {
        servers.iter().all(|p| !is_alive(*p)) && !data_dirs[0].exists()
    });
}

/// The `server.log` of rigd `pid`'s (only) native PostgreSQL server.
fn server_log(pid: u32) -> String {
    let dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("rig-pg-{pid}-")))
        })
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    std::fs::read_to_string(dirs[0].join("server.log")).unwrap_or_default()
}

#[tokio::test]
async fn a_later_rigd_on_the_same_rig_dir_copies_the_initdb_template_instead_of_running_initdb() {
    let scratch = tempfile::tempdir().unwrap();
    let rig_dir = scratch.path().join("rig");
    let rig_dir_arg = rig_dir.to_str().unwrap();
    let spec = |name: &str| {
        json!({
            "name": name,
            "observe": false,
            "services": {"db": postgres(&[
                "CREATE TABLE t (who text)",
                &format!("INSERT INTO t VALUES ('{name}')"),
            ])}
        })
    };
    let initdb_banner = "The files belonging to this database system";

    // The first rigd runs initdb and keeps the result as the rig dir's template.
    let first = Rigd::start_with(&["--rig-dir", rig_dir_arg]);
    let (_, first_up) = first.up(spec("first")).await;
    assert_eq!(
        psql(
            &first_up.ingresses["db"]["default"],
            None,
            "SELECT who FROM t"
        ),
        "first"
    );
    assert!(server_log(first.pid()).contains(initdb_banner));
    let templates: Vec<_> = std::fs::read_dir(rig_dir.join("cache/postgres"))
        .expect("a template directory in the cache")
        .flatten()
        .filter(|e| e.path().join("data/PG_VERSION").is_file())
        .collect();
    assert_eq!(templates.len(), 1, "{templates:?}");
    drop(first);

    // The next one copies it: no initdb, and a server that works as well.
    let second = Rigd::start_with(&["--rig-dir", rig_dir_arg]);
    let (_, second_up) = second.up(spec("second")).await;
    assert_eq!(
        psql(
            &second_up.ingresses["db"]["default"],
            None,
            "SELECT who FROM t"
        ),
        "second"
    );
    let log = server_log(second.pid());
    assert!(
        log.contains("copied from the initdb template") && !log.contains(initdb_banner),
        "{log}"
    );
}
