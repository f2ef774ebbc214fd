//! Infrastructure services from the SDK, against rigd's native backends and real clients:
//! a PostgreSQL database seeded by a migrations directory and an `init_sql` hook, read by a
//! process service (`psql` through its egress) and by the test; a Redis database used with
//! `redis-cli`; a Temporal namespace used with the `temporal` CLI. All are observed: the
//! connections go through rigd's proxies (Temporal's gRPC calls decoded by reflection).

mod support;

use std::process::Command;

use rig::{ConnectionFilter, Endpoint, GrpcFilter};
use support::builder;

/// `psql` against `endpoint` running `sql`, returning its unaligned output.
fn psql(endpoint: &Endpoint, sql: &str) -> Result<String, rig::BoxError> {
    let attr = |name: &str| endpoint.attr::<String>(name);
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGHOST", attr("PGHOST")?)
        .env("PGPORT", attr("PGPORT")?)
        .env("PGUSER", attr("PGUSER")?)
        .env("PGPASSWORD", attr("PGPASSWORD")?)
        .env("PGDATABASE", attr("PGDATABASE")?)
        .output()?;
    if !out.status.success() {
        return Err(format!("psql failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

#[tokio::test]
async fn postgres_is_seeded_by_migrations_and_sql_hooks() -> Result<(), rig::BoxError> {
    let migrations =
        std::env::temp_dir().join(format!("rig-sdk-migrations-{}", std::process::id()));
    std::fs::create_dir_all(&migrations)?;
    std::fs::write(
        migrations.join("001_schema.sql"),
        "CREATE TABLE orders (id text PRIMARY KEY, total int);",
    )?;
    std::fs::write(
        migrations.join("002_seed.sql"),
        "INSERT INTO orders VALUES ('a', 10);",
    )?;
    // A service that reads the table through its egress `db`, with the variables rigd wires
    // for it (the database's attributes, prefixed with the egress name).
    let reader = rig::process("sh")
        .args([
            "-c",
            "PGHOST=$DB_PGHOST PGPORT=$DB_PGPORT PGUSER=$DB_PGUSER PGPASSWORD=$DB_PGPASSWORD \
             PGDATABASE=$DB_PGDATABASE psql -X -A -t -c 'SELECT sum(total) FROM orders' \
             && exec sleep 600",
        ])
        .no_ingress()
        .egress("db");
    let env = builder("sdk-postgres")
        .service(
            "db",
            rig::postgres()
                .backend("native")
                .init_sql_dir(&migrations)
                .init_sql(["INSERT INTO orders VALUES ('b', 32)"]),
        )
        .service("reader", reader)
        .up()
        .await?;
    std::fs::remove_dir_all(&migrations)?;

    let db = env.endpoint("db")?;
    assert_eq!(psql(&db, "SELECT sum(total) FROM orders")?, "42");
    // The reader ran its query through the proxy on its edge to db, and printed the sum.
    env.wait_for(
        &ConnectionFilter::new().edge("reader", "db").closed(),
        std::time::Duration::from_secs(10),
    )
    .await?;
    env.expect(&ConnectionFilter::new().edge("~test", "db").closed(), 1)
        .await?;
    env.down().await?;
    Ok(())
}

#[tokio::test]
async fn redis_is_isolated_per_environment() -> Result<(), rig::BoxError> {
    let redis_cli = |endpoint: &Endpoint, args: &[&str]| -> Result<String, rig::BoxError> {
        let url: String = endpoint.attr("REDIS_URL")?;
        let out = Command::new("redis-cli")
            .arg("-u")
            .arg(url)
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(
                format!("redis-cli failed: {}", String::from_utf8_lossy(&out.stderr)).into(),
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    };
    let first = builder("sdk-redis-1")
        .service("cache", rig::redis().backend("native"))
        .up()
        .await?;
    let second = builder("sdk-redis-2")
        .service("cache", rig::redis().backend("native"))
        .up()
        .await?;
    redis_cli(&first.endpoint("cache")?, &["SET", "greeting", "hello"])?;
    assert_eq!(
        redis_cli(&first.endpoint("cache")?, &["GET", "greeting"])?,
        "hello"
    );
    assert_eq!(
        redis_cli(&second.endpoint("cache")?, &["GET", "greeting"])?,
        ""
    );
    first
        .expect(&ConnectionFilter::new().to("cache").closed(), 2)
        .await?;
    first.down().await?;
    second.down().await?;
    Ok(())
}

#[tokio::test]
async fn temporal_gives_the_test_a_namespace_of_its_own() -> Result<(), rig::BoxError> {
    let env = builder("sdk-temporal")
        .service("wf", rig::temporal().backend("native"))
        .up()
        .await?;
    let wf = env.endpoint("wf")?;
    let address: String = wf.attr("TEMPORAL_ADDRESS")?;
    let namespace: String = wf.attr("TEMPORAL_NAMESPACE")?;
    let out = Command::new("temporal")
        .args(["workflow", "start", "--type", "Ship", "--task-queue", "sdk"])
        .args(["-w", "order-7", "-n", &namespace, "--address", &address])
        .output()?;
    assert!(
        out.status.success(),
        "temporal workflow start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = GrpcFilter::new()
        .edge("~test", "wf")
        .method("temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution")
        .status("OK");
    let calls = env.expect(&started, 1).await?;
    let request = calls[0].request_body_decoded.as_ref().expect("decoded");
    assert_eq!(request["workflowId"], "order-7");
    assert_eq!(request["namespace"], namespace.as_str());
    env.down().await?;
    Ok(())
}

/// `rig::kafka()` with the default backend runs the native broker (no schema registry asked
/// for), and a real client's requests through it are observed.
#[tokio::test]
async fn kafka_runs_natively_and_its_requests_are_observed() -> Result<(), rig::BoxError> {
    let env = builder("sdk-kafka")
        .service("bus", rig::kafka().topics(["orders"]))
        .up()
        .await?;
    let bus = env.endpoint("bus")?;
    let client =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kafka/client.py");
    let out = Command::new("python3")
        .arg(client)
        .args([bus.host_port.as_str(), "orders", "3"])
        .output()?;
    assert!(
        out.status.success(),
        "the Kafka client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let produced: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(produced["produced"], 3, "{produced}");
    let produce = rig::KafkaFilter::new().edge("~test", "bus").api("Produce");
    env.wait_for(&produce, std::time::Duration::from_secs(30))
        .await?;
    env.down().await?;
    Ok(())
}
