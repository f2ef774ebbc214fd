//! `rig export --har`: the HAR written from rigd's own logs and from upstream's format is
//! valid HAR 1.2 for a real consumer, `har-validator` (npm, the validator behind the `request`
//! library; installed by `scripts/install-test-deps.sh` into
//! `$RIG_TEST_DEPS/har-validator`, default `~/.cache/rig-test-deps`), and carries decoded gRPC
//! messages (every message of a stream) and `_`-prefixed extensions.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn validator_dir() -> PathBuf {
    let base = std::env::var_os("RIG_TEST_DEPS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rig-test-deps")))
        .expect("HOME or RIG_TEST_DEPS");
    base.join("har-validator")
}

/// Exports `fixture` (a file under tests/fixtures) to a HAR file, validates it with
/// har-validator, and returns it parsed.
fn export(fixture: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let out = dir.path().join("export.har");
    let status = Command::new(env!("CARGO_BIN_EXE_rig"))
        .arg("export")
        .arg(fixtures().join(fixture))
        .arg("--har")
        .arg(&out)
        .args(extra)
        .status()
        .expect("run rig export");
    assert!(status.success());
    validate(&out);
    serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("HAR is JSON")
}

/// Validates `har` with har-validator; panics with its errors.
fn validate(har: &Path) {
    let dir = validator_dir();
    assert!(
        dir.join("node_modules/har-validator").is_dir(),
        "har-validator is not installed in {}: run scripts/install-test-deps.sh",
        dir.display()
    );
    let script = r#"
        const v = require("har-validator");
        const har = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        v.har(har).then(() => console.log("valid"))
          .catch(e => { console.error(JSON.stringify(e.errors || e.message, null, 1)); process.exit(1); });
    "#;
    let out = Command::new("node")
        .current_dir(&dir)
        .args(["-e", script])
        .arg(har)
        .output()
        .expect("run node (install it with scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "har-validator rejected {}:\n{}",
        har.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn upstream_log() -> String {
    "upstream/TestOrderFlow_Go-19ca39c1dce-be7097ab.jsonl".to_string()
}

fn rigd_log(name: &str) -> String {
    let dir = fixtures().join("logs");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with(name))
        .expect("fixture");
    format!("logs/{file}")
}

#[test]
fn har_from_rigd_logs_is_valid_and_leaves_probes_out() {
    let har = export(&rigd_log("TestOrders_failed"), &[]);
    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert_eq!(log["creator"]["name"], "rig");
    let entries = log["entries"].as_array().unwrap();
    // Four exchanges of the test; the readiness probe is left out and TCP has no HAR form.
    let methods: Vec<&str> = entries
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["GET", "POST", "GET", "DELETE"]);
    let post = &entries[1];
    assert_eq!(post["request"]["postData"]["mimeType"], "application/json");
    assert_eq!(
        post["request"]["postData"]["text"],
        r#"{"item":"book","qty":2}"#
    );
    assert_eq!(post["response"]["status"], 201);
    assert_eq!(post["_source"], "~test");
    assert_eq!(post["_target"], "api");
    assert!(post["request"]["url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert_eq!(
        entries[0]["request"]["queryString"][0],
        serde_json::json!({"name": "id", "value": "abc123"})
    );
    let with_probes = export(&rigd_log("TestOrders_failed"), &["--probes"]);
    let entries = with_probes["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0]["_probe"], true);
}

#[test]
fn har_from_upstream_logs_has_decoded_grpc_messages() {
    let har = export(&upstream_log(), &[]);
    let entries = har["log"]["entries"].as_array().unwrap();
    let grpc: Vec<&Value> = entries
        .iter()
        .filter(|e| e["_protocol"] == "gRPC")
        .collect();
    assert_eq!(grpc.len(), 2);
    let ok = grpc[0];
    assert_eq!(ok["request"]["method"], "POST");
    assert_eq!(ok["request"]["httpVersion"], "HTTP/2");
    assert!(ok["request"]["url"]
        .as_str()
        .unwrap()
        .ends_with("/inv.v1.Stock/Reserve"));
    let sent: Value =
        serde_json::from_str(ok["request"]["postData"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(sent, serde_json::json!({"sku": "abc-1"}));
    let got: Value =
        serde_json::from_str(ok["response"]["content"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(got, serde_json::json!({"reserved": 1, "left": 2}));
    assert_eq!(ok["_grpcStatus"], "OK");
    let failed = grpc[1];
    assert_eq!(failed["_grpcStatus"], "NotFound");
    assert_eq!(failed["_grpcMessage"], "sku missing");
    assert_eq!(failed["response"]["statusText"], "NotFound");
    // Every extension key starts with `_`, as HAR 1.2 requires of custom fields.
    for e in entries {
        for key in e.as_object().unwrap().keys() {
            let standard = [
                "startedDateTime",
                "time",
                "request",
                "response",
                "cache",
                "timings",
            ];
            assert!(
                standard.contains(&key.as_str()) || key.starts_with('_'),
                "{key}"
            );
        }
    }
}

#[test]
fn har_from_a_real_mixed_run_has_every_grpc_message() {
    let har = export(&rigd_log("TestCheckout"), &[]);
    let entries = har["log"]["entries"].as_array().unwrap();
    let calls: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["_protocol"].as_str().unwrap(),
                e["request"]["url"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap(),
                e["response"]["statusText"].as_str().unwrap(),
            )
        })
        .collect();
    // HTTP and gRPC of the test, in order; the gRPC health probe is left out, and Kafka and
    // TCP have no HAR form.
    assert_eq!(
        calls,
        [
            ("HTTP", "orders?id=abc123", "OK"),
            ("HTTP", "orders", "Created"),
            ("gRPC", "Unary", "OK"),
            ("gRPC", "ServerStream", "OK"),
            ("gRPC", "Unary", "NotFound"),
        ]
    );
    let text = |v: &Value| -> Value { serde_json::from_str(v.as_str().unwrap()).unwrap() };
    let unary = &entries[2];
    assert_eq!(
        text(&unary["request"]["postData"]["text"])["detail"],
        serde_json::json!({"note": "gift wrap", "weight": "2"})
    );
    assert_eq!(unary["request"]["postData"]["mimeType"], "application/json");
    // A server stream's three replies, as a JSON array.
    let stream = &entries[3];
    let replies = text(&stream["response"]["content"]["text"]);
    let texts: Vec<&str> = replies
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "track order abc123 #0",
            "track order abc123 #1",
            "track order abc123 #2"
        ]
    );
    assert_eq!(stream["_responseMessages"], 3);
    assert!(stream.get("_requestMessages").is_none());
    let failed = &entries[4];
    assert_eq!(failed["_grpcStatus"], "NotFound");
    assert_eq!(failed["_grpcMessage"], "order 42 not found");

    let with_probes = export(&rigd_log("TestCheckout"), &["--probes"]);
    let probe = &with_probes["log"]["entries"][0];
    assert_eq!(probe["_probe"], true);
    assert!(probe["request"]["url"]
        .as_str()
        .unwrap()
        .ends_with("/grpc.health.v1.Health/Check"));
}
