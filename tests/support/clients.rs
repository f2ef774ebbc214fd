//! The real clients the infrastructure tests use (`psql`, `redis-cli`, boto3), pointed at
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

/// Runs a boto3 `script` on the host (python3 with boto3, which comes with moto) and returns
/// what it prints. Each of `endpoints` binds its clients: an `s3` ingress `S3` and `BUCKET`,
/// an `sqs` ingress `SQS` and `QUEUE` (path-style S3, as the SDK's connect helpers).
pub fn boto3(endpoints: &[&rig_types::Endpoint], script: &str) -> String {
    let prelude = r#"
import json, sys, boto3
from botocore.config import Config
def client(kind, a, endpoint):
    return boto3.client(kind, endpoint_url=a[endpoint], region_name=a["AWS_REGION"],
        aws_access_key_id=a["AWS_ACCESS_KEY_ID"], aws_secret_access_key=a["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}))
for a in map(json.loads, sys.argv[1:]):
    if "S3_ENDPOINT" in a:
        S3, BUCKET = client("s3", a, "S3_ENDPOINT"), a["S3_BUCKET"]
    if "SQS_ENDPOINT" in a:
        SQS, QUEUE = client("sqs", a, "SQS_ENDPOINT"), a["SQS_QUEUE_URL"]
"#;
    let attrs = endpoints.iter().map(|e| {
        let attributes = e.attributes.clone().expect("the endpoint has attributes");
        serde_json::Value::Object(attributes.into_iter().collect()).to_string()
    });
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{prelude}\n{script}"))
        .args(attrs)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "boto3 script failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
