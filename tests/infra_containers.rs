//! The container backends of `postgres` and `redis`, through the real `rigd` binary, a real
//! Docker engine and the real `psql` and `redis-cli`, with images made locally from the
//! machine's PostgreSQL server and `redis-server` (`support::images`; nothing can be pulled
//! here): a `sql` hook seeds data a service then reads through the observing proxy, `exec`
//! hooks run inside the shared container, environments share one container with isolated
//! databases, and the containers go with rigd, even after `kill -9`.

mod support;

use std::path::Path;
use std::process::Command;

use rig_types::EventType;
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::clients::{attr, psql, redis_cli};
use support::images;
use support::images::{containers_named, published_port};
use support::{traffic_seen, Rigd};

fn postgres(image: &str, hooks: Value) -> Value {
    json!({
        "type": "postgres",
        "config": {"backend": "container", "image": image},
        "ingresses": {"default": {"protocol": "tcp", "container_port": 5432}},
        "hooks": {"init": hooks}
    })
}

fn redis(image: &str) -> Value {
    json!({
        "type": "redis",
        "config": {"backend": "container", "image": image},
        "ingresses": {"default": {"protocol": "tcp", "container_port": 6379}}
    })
}

#[tokio::test]
async fn container_postgres_is_seeded_by_hooks_inside_it_and_read_by_a_service_through_the_proxy() {
    if !images::docker_available() {
        panic!("Docker is not available (scripts/install-test-deps.sh starts it)");
    }
    let image = images::postgres();
    let rigd = Rigd::start();
    let reader = rigd.script("reader.sh", support::PSQL_ITEMS_READER);
    // The exec hook proves where it runs: the entrypoint exists only inside the image, and
    // psql there reaches the server on its container port.
    let inside = "test -x /usr/local/bin/docker-entrypoint.sh && \
                  psql -X -v ON_ERROR_STOP=1 -c \"INSERT INTO items VALUES (3, 'plum')\"";
    let (id, up) = rigd
        .up(json!({
            "name": "pg-container",
            "services": {
                "db": postgres(&image, json!([
                    {"type": "sql", "config": {"statements": [
                        "CREATE TABLE items (id int PRIMARY KEY, name text)",
                        "INSERT INTO items VALUES (1, 'apple'), (2, 'pear')",
                    ]}},
                    {"type": "exec", "config": {"command": ["sh", "-c", inside]}}
                ])),
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
        "apple\npear\nplum"
    );

    // One pool container, named as upstream's, whose published port the environment's
    // database is on (observe mode: the test's endpoint is a proxy in front of it).
    let name = format!("rig-pgpool-{}-", rigd.pid());
    let running = containers_named(&name);
    assert_eq!(running.len(), 1, "{running:?}");
    let db = &up.ingresses["db"]["default"];
    assert!(attr(db, "PGDATABASE").starts_with("rig_"), "{db:?}");
    assert_eq!(attr(db, "PGUSER"), "postgres");
    assert_eq!(psql(db, None, "SELECT count(*) FROM items"), "3");
    let resolved = rigd.client().get_environment(&id).await.unwrap();
    let target = serde_json::to_string(&resolved).unwrap();
    assert!(
        target.contains(&format!("127.0.0.1:{}", published_port(&running[0], 5432))),
        "the environment does not name the container's port: {target}"
    );

    let log = rigd.log(&id).await;
    assert!(
        traffic_seen(&log, "reader", "db"),
        "no connection.closed reader → db with traffic in {}",
        support::describe(&log)
    );
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn container_redis_isolates_environments_sharing_one_container_and_traffic_is_observed() {
    if !images::docker_available() {
        panic!("Docker is not available (scripts/install-test-deps.sh starts it)");
    }
    let image = images::redis();
    let rigd = Rigd::start();
    let writer = rigd.script(
        "writer.sh",
        "redis-cli -u \"$CACHE_REDIS_URL\" SET seen \"$RIG_SERVICE\" > \"$RIG_TEMP_DIR/out.tmp\"\n\
         mv \"$RIG_TEMP_DIR/out.tmp\" \"$RIG_TEMP_DIR/out.txt\"\n\
         exec sleep 1000\n",
    );
    let spec = |name: &str| {
        json!({
            "name": name,
            "services": {
                "cache": redis(&image),
                "writer": {
                    "type": "process",
                    "config": {"command": "sh"},
                    "args": [writer],
                    "egresses": {"cache": {"service": "cache"}}
                }
            }
        })
    };
    let ((a, up_a), (b, up_b)) = tokio::join!(rigd.up(spec("alpha")), rigd.up(spec("beta")));
    for up in [&up_a, &up_b] {
        let out = Path::new(&up.env_dir).join("writer").join("out.txt");
        support::wait_until("the writer's SET", || out.exists());
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "OK");
    }
    let running = containers_named(&format!("rig-redis-{}-", rigd.pid()));
    assert_eq!(running.len(), 1, "one container for both: {running:?}");

    let (ra, rb) = (
        &up_a.ingresses["cache"]["default"],
        &up_b.ingresses["cache"]["default"],
    );
    assert_ne!(
        attr(ra, "REDIS_URL").rsplit('/').next(),
        attr(rb, "REDIS_URL").rsplit('/').next(),
        "each environment has its own database"
    );
    assert_eq!(redis_cli(ra, &["DBSIZE"]), "1");
    assert_eq!(redis_cli(ra, &["SET", "owner", "alpha"]), "OK");
    assert_eq!(
        redis_cli(rb, &["GET", "owner"]),
        "",
        "beta sees alpha's key"
    );
    assert_eq!(redis_cli(ra, &["GET", "owner"]), "alpha");

    for id in [&a, &b] {
        let log = rigd.log(id).await;
        assert!(
            traffic_seen(&log, "writer", "cache"),
            "no connection.closed writer → cache with traffic in {}",
            support::describe(&log)
        );
    }
    rigd.client()
        .delete_environment(&a, &DeleteOptions::default())
        .await
        .unwrap();
    // alpha's database was flushed (asked of the container directly: alpha's proxy is gone);
    // beta's keeps its data.
    let db_a = attr(ra, "REDIS_URL")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &published_port(&running[0], 6379)])
        .args(["-n", &db_a, "DBSIZE"])
        .output()
        .expect("run redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{out:?}");
    assert_eq!(redis_cli(rb, &["DBSIZE"]), "1");
    rigd.client()
        .delete_environment(&b, &DeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn pool_containers_stop_with_rigd_and_are_reaped_after_kill_9() {
    if !images::docker_available() {
        panic!("Docker is not available (scripts/install-test-deps.sh starts it)");
    }
    let image = images::redis();
    let spec = json!({"name": "redis-reaped", "observe": false,
                      "services": {"cache": redis(&image)}});

    images::pool_container_goes_with_rigd(&spec, "rig-redis").await;
}

#[tokio::test]
async fn a_container_backend_whose_image_cannot_be_had_fails_in_the_artifact_phase() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({
            "name": "pg-no-image",
            "services": {"db": postgres("rig-test/no-such-postgres:1", json!([]))}
        }))
        .await;
    let mut events = rigd.events(&id);
    let failed = events.until(EventType::ArtifactFailed).await;
    assert!(
        failed.error.contains("rig-test/no-such-postgres:1"),
        "{}",
        failed.error
    );
}
