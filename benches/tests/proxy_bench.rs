//! End-to-end check of the proxy benchmark harness: a very short run over the direct path,
//! rig's proxy and the bare splice relay must measure every scenario without errors,
//! account for every exchange in rig's observation counts, print the table and write the JSON
//! report.

use std::process::Command;

use serde_json::Value;

#[test]
fn a_short_run_measures_every_scenario_on_direct_rig_and_the_splice_relay() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_proxy-bench"))
        .args([
            "run",
            "--paths",
            "direct,rig,splice",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
        ])
        .args([
            "--connections",
            "8",
            "--idle",
            "20",
            "--threads",
            "1",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("rig÷haproxy"), "{stdout}");
    assert!(stdout.contains("rig÷splice"), "{stdout}");
    assert!(stdout.contains("HTTP/1.1 64 KiB"), "{stdout}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let scenario = |key: &str| -> Value {
        report["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no scenario {key} in {report}"))["paths"]
            .clone()
    };

    let mut rig_requests = 0;
    for key in ["http1_small", "http1_64k", "h2c_small"] {
        for path in ["direct", "rig", "splice"] {
            let outcome = &scenario(key)[path];
            assert_eq!(outcome["kind"], "http", "{key} via {path}: {outcome}");
            assert!(
                outcome["requests"].as_u64().unwrap() > 0,
                "{key} via {path}"
            );
            assert_eq!(outcome["errors"], 0, "{key} via {path}: {outcome}");
            assert!(outcome["p50_us"].as_f64().unwrap() > 0.0);
        }
        rig_requests += scenario(key)["rig"]["requests"].as_u64().unwrap();
        assert!(scenario(key)["rig"]["proxy_cpu_us_per_req"]
            .as_f64()
            .is_some());
    }
    // The bulk load fails unless the origin counted exactly the bytes sent.
    for path in ["direct", "rig", "splice"] {
        let bulk = &scenario("tcp_bulk")[path];
        assert_eq!(bulk["kind"], "tcp", "{bulk}");
        assert!(bulk["bytes"].as_u64().unwrap() > 0);
    }
    for key in ["idle_http", "idle_tcp"] {
        assert_eq!(scenario(key)["direct"]["kind"], "not_applicable");
        for path in ["rig", "splice"] {
            let memory = &scenario(key)[path];
            assert_eq!(memory["kind"], "memory", "{path}: {memory}");
            assert_eq!(memory["connections"], 20);
        }
    }

    // Every measured exchange through rig was observed or counted as dropped.
    let observed = &report["rig_observation"]["rig"];
    let accounted = observed["events"].as_u64().unwrap() + observed["dropped"].as_u64().unwrap();
    assert!(
        accounted >= rig_requests,
        "{accounted} events for {rig_requests} requests"
    );
}

#[test]
fn a_short_grpc_run_measures_direct_and_rig_and_records_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("grpc.json");
    let output = Command::new(env!("CARGO_BIN_EXE_proxy-bench"))
        .args([
            "grpc",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
            "--rounds",
            "1",
        ])
        .args(["--concurrency", "4", "--connections", "1", "--threads", "1"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("rig ÷ direct: "), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for path in ["direct", "rig"] {
        assert!(
            report[path]["calls_per_sec"].as_f64().unwrap() > 0.0,
            "{report}"
        );
        assert_eq!(report[path]["errors"], 0, "{report}");
    }
    assert!(report["ratio"].as_f64().unwrap() > 0.0, "{report}");
    // Every call through rig was recorded (warmup and checks included), none dropped.
    let events = report["rig_observation"]["events"].as_u64().unwrap();
    assert!(events >= 1, "{report}");
    assert_eq!(report["rig_observation"]["dropped"], 0, "{report}");
}
