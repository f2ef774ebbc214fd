//! The real database clients the infrastructure tests use (`psql`, `redis-cli`), pointed at
//! a published endpoint through its attributes, as a test using the SDK would.

use std::process::Command;

/// Runs `psql -tA -c sql` against `endpoint`'s attributes (as the SDK's DSN would).
pub fn psql(endpoint: &rig_types::Endpoint, database: Option<&str>, sql: &str) -> String {
    let attrs = endpoint
        .attributes
        .as_ref()
        .expect("postgres publishes attributes");
    let attr = |name: &str| attrs[name].as_str().unwrap_or_default().to_string();
    let (host, port) = endpoint.hostport.split_once(':').expect("host:port");
    let out = Command::new("psql")
        .args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGHOST", host)
        .env("PGPORT", port)
        .env("PGUSER", attr("PGUSER"))
        .env("PGPASSWORD", attr("PGPASSWORD"))
        .env(
            "PGDATABASE",
            database.map_or_else(|| attr("PGDATABASE"), str::to_string),
        )
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql -c {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `redis-cli -u <REDIS_URL of endpoint> args...`.
pub fn redis_cli(endpoint: &rig_types::Endpoint, args: &[&str]) -> String {
    let url = endpoint
        .attributes
        .as_ref()
        .expect("redis publishes attributes")["REDIS_URL"]
        .as_str()
        .expect("REDIS_URL is a string")
        .to_string();
    let out = Command::new("redis-cli")
        .arg("-u")
        .arg(&url)
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The attribute `name` of an endpoint.
pub fn attr(endpoint: &rig_types::Endpoint, name: &str) -> String {
    endpoint.attributes.as_ref().expect("attributes")[name]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
