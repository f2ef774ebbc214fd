//! The `redis` type with its native backend, through the real `rigd` binary and the real
//! `redis-cli`: one shared server, a database number per environment, flushed at teardown,
//! and traffic through the observing proxy.

mod support;

use rig_types::EventType;
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::clients::redis_cli;
use support::Rigd;

fn redis() -> Value {
    json!({
        "type": "redis",
        "config": {"backend": "native"},
        "ingresses": {"default": {"protocol": "tcp", "container_port": 6379}}
    })
}

#[tokio::test]
async fn environments_get_isolated_databases_of_one_server_flushed_at_teardown() {
    let rigd = Rigd::start();
    let spec = |name: &str| json!({"name": name, "observe": false, "services": {"cache": redis()}});
    let ((a, up_a), (b, up_b)) = tokio::join!(rigd.up(spec("alpha")), rigd.up(spec("beta")));
    let (ra, rb) = (
        &up_a.ingresses["cache"]["default"],
        &up_b.ingresses["cache"]["default"],
    );
    assert_eq!(ra.hostport, rb.hostport, "one shared server");
    let url_a = ra.attributes.as_ref().unwrap()["REDIS_URL"]
        .as_str()
        .unwrap();
    let url_b = rb.attributes.as_ref().unwrap()["REDIS_URL"]
        .as_str()
        .unwrap();
    assert!(
        url_a.starts_with(&format!("redis://{}/", ra.hostport)),
        "{url_a}"
    );
    assert_ne!(url_a, url_b, "each environment has its own database");

    assert_eq!(redis_cli(ra, &["SET", "owner", "alpha"]), "OK");
    assert_eq!(
        redis_cli(rb, &["GET", "owner"]),
        "",
        "beta sees alpha's key"
    );
    assert_eq!(redis_cli(rb, &["SET", "owner", "beta"]), "OK");
    assert_eq!(redis_cli(ra, &["GET", "owner"]), "alpha");

    rigd.client()
        .delete_environment(&a, &DeleteOptions::default())
        .await
        .unwrap();
    // alpha's database is empty again; beta's keeps its data.
    assert_eq!(redis_cli(ra, &["DBSIZE"]), "0");
    assert_eq!(redis_cli(rb, &["GET", "owner"]), "beta");
    rigd.client()
        .delete_environment(&b, &DeleteOptions::default())
        .await
        .unwrap();
}

/// A client still connected to an environment's database when it is torn down (an app in
/// its stop grace) is disconnected before the flush, so it cannot write into the database
/// the next environment gets; the database is empty afterwards.
#[tokio::test]
async fn clients_of_a_database_are_disconnected_at_teardown_before_the_flush() {
    use rigd::wire::resp::{Connection, Reply};
    let rigd = Rigd::start();
    let (id, up) = rigd
        .up(json!({"name": "redis-late", "observe": false, "services": {"cache": redis()}}))
        .await;
    let endpoint = &up.ingresses["cache"]["default"];
    let url = endpoint.attributes.as_ref().unwrap()["REDIS_URL"]
        .as_str()
        .unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    let mut app = Connection::connect(&endpoint.hostport).await.unwrap();
    for command in [vec!["SELECT", db.as_str()], vec!["SET", "early", "1"]] {
        let args: Vec<&[u8]> = command.iter().map(|a| a.as_bytes()).collect();
        let reply = app.command(&args).await.unwrap();
        assert_eq!(reply, Reply::Simple("OK".into()), "{command:?}");
    }

    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .unwrap();
    let late = app.command(&[b"SET", b"late", b"1"]).await;
    assert!(
        late.is_err(),
        "the client of database {db} is still connected after teardown: {late:?}"
    );
    assert_eq!(redis_cli(endpoint, &["DBSIZE"]), "0");
}

/// An app still in its stop grace when its environment is torn down can use its database
/// until it has stopped, and what it writes then is flushed with the rest: the database is
/// released only once the services reaching it have stopped. (Released at once, the app's
/// first new connection after the flush writes into the database the next environment gets.)
#[tokio::test]
async fn the_database_is_flushed_only_after_the_apps_using_it_have_stopped() {
    let rigd = Rigd::start();
    // On SIGINT the app waits (at most a second) for its database to be flushed, as an app
    // finishing its work would take a while, then writes once more and exits.
    let app = rigd.script(
        "app.sh",
        "url=\"$CACHE_REDIS_URL\"\n\
         redis-cli -u \"$url\" SET marker 1 > /dev/null\n\
         trap 'for i in $(seq 50); do \
                 [ \"$(redis-cli -u \"$url\" EXISTS marker)\" = 0 ] && break; sleep 0.02; \
               done; \
               redis-cli -u \"$url\" SET late 1 > \"$0.late\"; exit 0' INT\n\
         while :; do sleep 0.05; done\n",
    );
    let (id, up) = rigd
        .up(json!({
            "name": "redis-grace",
            "observe": false,
            "services": {
                "cache": redis(),
                "app": {
                    "type": "process",
                    "config": {"command": "sh"},
                    "args": [app.clone()],
                    "egresses": {"cache": {"service": "cache"}}
                }
            }
        }))
        .await;
    let endpoint = &up.ingresses["cache"]["default"];
    let deadline = std::time::Instant::now() + support::WAIT;
    while redis_cli(endpoint, &["EXISTS", "marker"]) != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the app never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let mut events = rigd.events(&id);
    events.until(EventType::EnvironmentUp).await;
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .unwrap();
    let late = std::fs::read_to_string(format!("{app}.late")).unwrap();
    assert_eq!(late.trim(), "OK", "the app's write in its stop grace");
    assert_eq!(
        redis_cli(endpoint, &["DBSIZE"]),
        "0",
        "the database the next environment gets holds the app's late key"
    );
    events.until(EventType::EnvironmentDown).await;
    assert!(
        events.position(EventType::ServiceStopped, "app")
            < events.position(EventType::ServiceStopped, "cache"),
        "{}",
        support::describe(events.seen())
    );
}

#[tokio::test]
async fn a_service_reaches_redis_through_the_observing_proxy() {
    let rigd = Rigd::start();
    let writer = rigd.script(
        "writer.sh",
        "redis-cli -u \"$CACHE_REDIS_URL\" SET seen yes > \"$RIG_TEMP_DIR/out.tmp\"\n\
         mv \"$RIG_TEMP_DIR/out.tmp\" \"$RIG_TEMP_DIR/out.txt\"\n\
         exec sleep 1000\n",
    );
    let (id, up) = rigd
        .up(json!({
            "name": "redis-observed",
            "services": {
                "cache": redis(),
                "writer": {
                    "type": "process",
                    "config": {"command": "sh"},
                    "args": [writer],
                    "egresses": {"cache": {"service": "cache"}}
                }
            }
        }))
        .await;
    let out = std::path::Path::new(&up.env_dir)
        .join("writer")
        .join("out.txt");
    let deadline = std::time::Instant::now() + support::WAIT;
    while !out.exists() {
        assert!(std::time::Instant::now() < deadline, "the writer never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "OK");
    // The test's own edge goes through a proxy too, and the key is there.
    assert_eq!(
        redis_cli(&up.ingresses["cache"]["default"], &["GET", "seen"]),
        "yes"
    );

    let log = rigd.log(&id).await;
    assert!(
        log.iter()
            .any(|e| e.event_type == EventType::ConnectionClosed
                && e.connection.as_ref().is_some_and(|c| c.source == "writer"
                    && c.target == "cache"
                    && c.bytes_in > 0
                    && c.bytes_out > 0)),
        "no connection.closed writer → cache with traffic in {}",
        support::describe(&log)
    );
}

/// More environments at once than Redis's default 16 databases, as a parallel test suite on
/// a many-core machine runs them: each gets a database of its own, the highest usable.
#[tokio::test]
async fn forty_environments_at_once_each_get_a_database() {
    let rigd = Rigd::start();
    let spec = |n: usize| json!({"name": format!("many-{n}"), "observe": false, "services": {"cache": redis()}});
    let ups = futures_util::future::join_all((0..40).map(|n| rigd.up(spec(n)))).await;
    let mut urls: Vec<String> = ups
        .iter()
        .map(|(_, up)| {
            let endpoint = &up.ingresses["cache"]["default"];
            endpoint.attributes.as_ref().unwrap()["REDIS_URL"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 40, "{urls:?}");
    // A database beyond the first 16 is usable.
    let beyond = ups
        .iter()
        .map(|(_, up)| &up.ingresses["cache"]["default"])
        .find(|endpoint| {
            let url = endpoint.attributes.as_ref().unwrap()["REDIS_URL"]
                .as_str()
                .unwrap();
            url.rsplit('/').next().unwrap().parse::<u32>().unwrap() >= 16
        })
        .expect("some environment got a database above 15");
    assert_eq!(redis_cli(beyond, &["SET", "k", "v"]), "OK");
    for (id, _) in &ups {
        rigd.client()
            .delete_environment(id, &DeleteOptions::default())
            .await
            .unwrap();
    }
}

/// When the shared server dies, the next environment gets a new one, and rigd's output says
/// that the old one died and quotes its last output (here, redis' own words on shutting down).
#[tokio::test]
async fn a_dead_server_is_replaced_and_its_last_output_reported() {
    let rigd = Rigd::start();
    let spec = |name: &str| json!({"name": name, "observe": false, "services": {"cache": redis()}});
    let (a, up_a) = rigd.up(spec("alpha")).await;
    let ra = &up_a.ingresses["cache"]["default"];
    // redis-cli reports the connection closing under it; the server is gone either way.
    let _ = redis_cli(ra, &["SHUTDOWN", "NOSAVE"]);
    support::wait_until("the redis server has exited", || {
        std::net::TcpStream::connect(&ra.hostport).is_err()
    });

    let (b, up_b) = rigd.up(spec("beta")).await;
    let rb = &up_b.ingresses["cache"]["default"];
    assert_eq!(
        redis_cli(rb, &["SET", "owner", "beta"]),
        "OK",
        "a new server"
    );
    support::wait_until("rigd reports the dead server", || {
        rigd.output().contains("redis pool: the backend for")
    });
    let output = rigd.output();
    let report = &output[output.find("redis pool: the backend for").unwrap()..];
    assert!(
        report.contains("has died; starting a new one; its last output:")
            && report.contains("ready to exit, bye bye"),
        "{report}"
    );

    for id in [a, b] {
        rigd.client()
            .delete_environment(&id, &DeleteOptions::default())
            .await
            .unwrap();
    }
}
