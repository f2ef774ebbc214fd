//! Output snapshots of the `rig` commands that read log files, run as the real binary over the
//! fixtures in `tests/fixtures/` (see its README): rigd's own logs (HTTP, gRPC, Kafka and TCP
//! traffic, probes, a passed, two failed and a crashed run) and upstream rig's format (gRPC,
//! Kafka; no header).
//!
//! Each case's stdout, stderr and exit status are compared with
//! `tests/fixtures/snapshots/<case>.txt`; `RIG_BLESS=1` rewrites them. Paths of the temporary
//! log directory are shown as `$LOGS`. Times are shown in UTC (`TZ=UTC`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which fixture directory a case reads.
#[derive(Clone, Copy)]
enum Dir {
    /// `tests/fixtures/logs`: written by rigd.
    Rigd,
    /// `tests/fixtures/upstream`: upstream's format, hand-written on purpose: these cases test
    /// compatibility with upstream's files (see the fixtures README); rigd's own gRPC and
    /// Kafka traffic is in `Rigd` (`TestCheckout`).
    Upstream,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A private copy of a fixture directory (commands must not depend on the checkout's path,
/// and `prune` must not touch the originals).
fn logs_dir(which: Dir, tag: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("rig-cli-logs-{tag}-"))
        .tempdir()
        .expect("temp dir");
    let from = fixtures().join(match which {
        Dir::Rigd => "logs",
        Dir::Upstream => "upstream",
    });
    for entry in std::fs::read_dir(&from).expect("fixtures") {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Runs `rig args` over `dir`; returns the transcript.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rig"));
    cmd.args(args)
        .env("RIG_LOGS", dir)
        .env("RIG_DIR", dir.join("no-rig-dir"))
        .env("TZ", "UTC")
        .env_remove("NO_COLOR")
        .env_remove("RIG_SERVER_ADDR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run rig");
    let dir_text = dir.display().to_string();
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&dir_text, "$LOGS");
    let mut text = format!("$ rig {}\n{}", args.join(" "), clean(&out.stdout));
    let stderr = clean(&out.stderr);
    if !stderr.is_empty() {
        text.push_str("--- stderr\n");
        text.push_str(&stderr);
    }
    text.push_str(&format!("--- exit {}\n", out.status.code().unwrap_or(-1)));
    text
}

/// Compares (or with `RIG_BLESS=1` writes) the snapshot `name`.
fn check(name: &str, actual: &str) -> Result<(), String> {
    let path = fixtures().join("snapshots").join(format!("{name}.txt"));
    if std::env::var_os("RIG_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "snapshot {name} differs (RIG_BLESS=1 to accept)\n--- expected\n{expected}--- actual\n{actual}"
    ))
}

fn cases(which: Dir, tag: &str, cases: &[(&str, &[&str])]) {
    let dir = logs_dir(which, tag);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, args)| check(name, &run(dir.path(), args, &[])).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn ls_lists_newest_first_and_filters() {
    cases(
        Dir::Rigd,
        "ls",
        &[
            ("ls", &["ls"]),
            ("ls_failed", &["ls", "--failed"]),
            ("ls_passed_quiet", &["ls", "--passed", "-q"]),
            ("ls_limit_attached", &["ls", "-q", "-n1"]),
            ("ls_pattern_slash", &["ls", "testorders/FAILED"]),
            ("ls_json", &["ls", "--json", "crash"]),
            ("ls_no_match", &["ls", "TestOrderz"]),
            ("ls_no_match_close", &["ls", "testorders/faild"]),
            ("ls_no_match_far", &["ls", "payments"]),
            ("ls_no_match_filter", &["ls", "passed", "--failed"]),
            ("ls_no_match_json", &["ls", "--json", "chekout"]),
            ("ls_failed_and_passed", &["ls", "--failed", "--passed"]),
        ],
    );
}

#[test]
fn traffic_tables_filters_and_details_over_rigd_logs() {
    cases(
        Dir::Rigd,
        "traffic",
        &[
            ("traffic_passed", &["traffic", "passed"]),
            ("traffic_probes", &["traffic", "failed", "--probes"]),
            (
                "traffic_status_5xx",
                &["traffic", "failed", "--status", "5xx"],
            ),
            (
                "traffic_status_list",
                &["traffic", "failed", "--status", "404,500"],
            ),
            (
                "traffic_edge_ascii",
                &["traffic", "failed", "--edge", "api->store"],
            ),
            (
                "traffic_edge_source",
                &["traffic", "failed", "--edge", "~test→"],
            ),
            (
                "traffic_edge_either",
                &["traffic", "failed", "--edge", "STORE"],
            ),
            (
                "traffic_edge_unknown",
                &["traffic", "failed", "--edge", "api->stor"],
            ),
            (
                "traffic_method_path",
                &["traffic", "failed", "--method", "get", "--path", "/orders"],
            ),
            (
                "traffic_grep_body",
                &["traffic", "failed", "--grep", "completed_at"],
            ),
            ("traffic_tcp", &["traffic", "failed", "--tcp"]),
            (
                "traffic_since",
                &["traffic", "failed", "--since", "1.39s", "--probes"],
            ),
            (
                "traffic_detail_post",
                &["traffic", "failed", "--detail", "3,5"],
            ),
            ("traffic_detail_probe", &["traffic", "failed", "-d", "p1"]),
            (
                "traffic_detail_missing",
                &["traffic", "failed", "--detail", "99"],
            ),
            (
                "traffic_no_match",
                &["traffic", "failed", "--status", "418"],
            ),
            ("traffic_bad_slow", &["traffic", "failed", "--slow", "fast"]),
            (
                "traffic_bad_status",
                &["traffic", "failed", "--status", "5xx,abc"],
            ),
            (
                "traffic_json",
                &["traffic", "failed", "--status", "404", "--json"],
            ),
            (
                "traffic_color",
                &["traffic", "failed", "--status", "5xx", "--color", "always"],
            ),
        ],
    );
}

#[test]
fn logs_rows_and_filters() {
    cases(
        Dir::Rigd,
        "logs",
        &[
            ("logs_failed", &["logs", "TestOrders/failed"]),
            ("logs_stderr", &["logs", "failed", "--stderr"]),
            ("logs_stdout", &["logs", "failed", "--stdout"]),
            ("logs_service", &["logs", "failed", "--service", "STORE"]),
            ("logs_notes_only", &["logs", "failed", "--service", "test"]),
            ("logs_grep", &["logs", "failed", "--grep", "order|store"]),
            ("logs_bad_grep", &["logs", "failed", "--grep", "("]),
            ("logs_crash_json", &["logs", "crash", "--json"]),
        ],
    );
}

#[test]
fn explain_and_summary_over_rigd_logs() {
    cases(
        Dir::Rigd,
        "explain",
        &[
            ("explain_failed_json", &["explain", "failed"]),
            ("explain_failed_pretty", &["explain", "-p", "failed"]),
            ("explain_crash_pretty", &["explain", "-p", "crash"]),
            ("explain_passed_pretty", &["explain", "--pretty", "passed"]),
            ("explain_no_match", &["explain", "TestOrderz"]),
            ("summary_pretty", &["summary", "-p"]),
            (
                "summary_failed_verbose",
                &["summary", "-p", "-v", "--failed"],
            ),
            ("summary_json", &["summary", "orders"]),
        ],
    );
}

/// `TestCheckout`: HTTP, gRPC (unary, server streaming, NotFound, the health probe), Kafka
/// (producer and consumer, topics) and TCP from one real run.
#[test]
fn mixed_traffic_from_a_real_run() {
    cases(
        Dir::Rigd,
        "checkout",
        &[
            ("checkout_traffic", &["traffic", "checkout"]),
            (
                "checkout_traffic_grpc_probes",
                &["traffic", "checkout", "--grpc", "--probes"],
            ),
            (
                "checkout_traffic_kafka_topic",
                &["traffic", "checkout", "--kafka", "--path", "orders"],
            ),
            (
                "checkout_traffic_status_name",
                &["traffic", "checkout", "--status", "notfound"],
            ),
            (
                "checkout_traffic_grep_stream",
                &["traffic", "checkout", "--grep", "abc123 #2"],
            ),
            (
                "checkout_detail_grpc",
                &["traffic", "checkout", "--detail", "4-6"],
            ),
            (
                "checkout_detail_kafka",
                &["traffic", "checkout", "--detail", "9,12,28"],
            ),
            ("checkout_explain", &["explain", "checkout"]),
            ("checkout_explain_pretty", &["explain", "-p", "checkout"]),
            ("checkout_summary", &["summary", "-p", "-v", "checkout"]),
            ("checkout_logs", &["logs", "checkout"]),
        ],
    );
}

#[test]
fn upstream_logs_open_unchanged() {
    cases(
        Dir::Upstream,
        "upstream",
        &[
            ("upstream_ls", &["ls"]),
            ("upstream_traffic", &["traffic", "TestOrderFlow/Go"]),
            (
                "upstream_traffic_grpc_kafka",
                &["traffic", "orderflow_go", "--grpc", "--kafka"],
            ),
            (
                "upstream_traffic_status_name",
                &["traffic", "orderflow_go", "--status", "notfound"],
            ),
            (
                "upstream_detail_grpc",
                &["traffic", "orderflow_go", "--detail", "2,6"],
            ),
            (
                "upstream_detail_tcp_kafka",
                &["traffic", "orderflow_go", "--detail", "3-4", "-d", "7"],
            ),
            ("upstream_mixed_headerless", &["traffic", "mixed_traffic"]),
            (
                "upstream_mixed_slow",
                &["traffic", "mixed_traffic", "--slow", "5ms"],
            ),
            (
                "upstream_mixed_detail_http",
                &["traffic", "mixed_traffic", "--detail", "1"],
            ),
            ("upstream_logs", &["logs", "orderflow"]),
            ("upstream_explain", &["explain", "orderflow"]),
            ("upstream_explain_pretty", &["explain", "-p", "orderflow"]),
            ("upstream_summary", &["summary", "-p"]),
        ],
    );
}

#[test]
fn no_color_turns_auto_colour_off_and_always_wins() {
    let dir = logs_dir(Dir::Rigd, "color");
    // Not a terminal: auto is plain; `always` colours even with NO_COLOR set.
    let auto = run(dir.path(), &["ls"], &[("NO_COLOR", "1")]);
    assert!(!auto.contains('\x1b'), "{auto}");
    let always = run(
        dir.path(),
        &["ls", "--color", "always"],
        &[("NO_COLOR", "1")],
    );
    assert!(always.contains("\x1b[31mfailed\x1b[0m"), "{always}");
}

#[test]
fn errors_say_what_to_do_next() {
    let dir = logs_dir(Dir::Rigd, "errors");
    let out = run(dir.path(), &["traffic", "TestOrdrs"], &[]);
    assert!(out.contains("did you mean:"), "{out}");
    assert!(out.contains("TestOrders/failed"), "{out}");
    assert!(out.contains("`rig ls` lists every log file"), "{out}");
    assert!(out.ends_with("--- exit 1\n"), "{out}");
    let out = run(dir.path(), &["ls", "--bogus"], &[]);
    assert!(
        out.contains("unknown option --bogus (see `rig ls --help`)"),
        "{out}"
    );
    assert!(out.ends_with("--- exit 2\n"), "{out}");
    let out = run(dir.path(), &["trafic"], &[]);
    assert!(out.contains("did you mean traffic?"), "{out}");
}

#[test]
fn most_recent_is_by_timestamp_not_name() {
    // Two runs of one test: the one written later wins even though its id sorts first.
    let dir = tempfile::tempdir().unwrap();
    let line = |ts: &str, note: &str| {
        format!(
            "{{\"type\":\"log.header\",\"environment\":\"T\",\"outcome\":\"failed\",\"duration_ms\":1,\"timestamp\":\"{ts}\"}}\n\
             {{\"seq\":1,\"type\":\"test.note\",\"environment\":\"T\",\"error\":\"{note}\",\"timestamp\":\"{ts}\"}}\n"
        )
    };
    std::fs::write(
        dir.path().join("T-aaaa-1.jsonl"),
        line("2026-01-02T00:00:00Z", "newer"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("T-ffff-1.jsonl"),
        line("2026-01-01T00:00:00Z", "older"),
    )
    .unwrap();
    let out = run(dir.path(), &["logs", "T"], &[]);
    assert!(out.contains("✗ newer"), "{out}");
    let out = run(dir.path(), &["ls", "-q", "-n", "1"], &[]);
    assert!(out.contains("T-aaaa-1.jsonl"), "{out}");
}

#[test]
fn prune_accepts_days_and_removes_only_old_logs() {
    let dir = logs_dir(Dir::Rigd, "prune");
    let old = dir.path().join("TestOld-1-1.jsonl");
    std::fs::write(&old, "{}\n").unwrap();
    std::fs::write(old.with_extension("log"), "x\n").unwrap();
    let ten_days = std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86_400);
    for p in [old.clone(), old.with_extension("log")] {
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(ten_days)
            .unwrap();
    }
    let dry = run(dir.path(), &["prune", "-l", "-n", "--max-age", "7d"], &[]);
    assert!(
        dry.contains("would remove logs/TestOld-1-1.jsonl (10d ago, 3B)"),
        "{dry}"
    );
    assert!(
        dry.contains("would remove logs/TestOld-1-1.log (2B)"),
        "{dry}"
    );
    assert!(
        dry.contains("would prune 1 entry (would free ~5B)"),
        "{dry}"
    );
    assert!(old.exists());
    let real = run(dir.path(), &["prune", "--logs", "-m7d"], &[]);
    assert!(real.contains("pruned 1 entry (freed ~5B)"), "{real}");
    assert!(!old.exists() && !old.with_extension("log").exists());
    // The fixtures (written today) are kept.
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        std::fs::read_dir(fixtures().join("logs")).unwrap().count()
    );
    let bad = run(dir.path(), &["prune", "--max-age", "7 days"], &[]);
    assert!(bad.contains("invalid --max-age"), "{bad}");
    assert!(bad.ends_with("--- exit 2\n"), "{bad}");
}

/// `rig prune --cache` leaves alone what rigd is building: an entry whose lock is held
/// (whatever its age) and a fresh entry without `.last-used` yet (its first build runs). It
/// removes old entries with their lock files, and the lock files of entries that are gone,
/// but never a lock file someone holds.
#[test]
fn prune_keeps_cache_entries_in_use_and_removes_unheld_lock_files() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::Builder::new()
        .prefix("rig-cli-prune-cache-")
        .tempdir()
        .expect("temp dir");
    let cargo = dir.path().join("rig/cache/cargo");
    let ten_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86_400);
    let entry = |hash: &str, last_used: Option<std::time::SystemTime>, dir_age| {
        let path = cargo.join(hash);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("binary"), "bin").unwrap();
        std::fs::write(cargo.join(format!("{hash}.lock")), "").unwrap();
        if let Some(t) = last_used {
            let marker = std::fs::File::create(path.join(".last-used")).unwrap();
            marker.set_modified(t).unwrap();
        }
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(dir_age)
            .unwrap();
        path
    };
    let building = entry("building", Some(ten_days_ago), ten_days_ago);
    let first_build = entry("first-build", None, std::time::SystemTime::now());
    let old = entry("old", Some(ten_days_ago), ten_days_ago);
    let abandoned = entry("abandoned", None, ten_days_ago);
    // Lock files of entries that are gone: one no one holds, one held.
    std::fs::write(cargo.join("gone.lock"), "").unwrap();
    std::fs::write(cargo.join("gone-held.lock"), "").unwrap();
    // Held as rigd holds them (flock(2) from this process).
    let hold = |name: &str| {
        let lock = std::fs::File::open(cargo.join(name)).unwrap();
        // SAFETY: flock(2) on a file descriptor this test owns.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0, "take the lock of {name}");
        lock
    };
    let locks = [hold("building.lock"), hold("gone-held.lock")];

    let out = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(["prune", "--cache", "--max-age", "1d"])
        .env("RIG_DIR", dir.path().join("rig"))
        .output()
        .expect("run rig prune");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("pruned 2 entries"), "{text}");
    assert!(building.join("binary").is_file(), "an entry in use is kept");
    assert!(
        first_build.is_dir(),
        "a fresh entry without .last-used is kept"
    );
    assert!(!old.exists() && !abandoned.exists(), "old entries go");
    for hash in ["building", "first-build", "gone-held"] {
        assert!(
            cargo.join(format!("{hash}.lock")).is_file(),
            "{hash}.lock is kept"
        );
    }
    for hash in ["old", "abandoned", "gone"] {
        assert!(
            !cargo.join(format!("{hash}.lock")).exists(),
            "{hash}.lock is removed"
        );
    }
    drop(locks);
}

/// rigd's files have upstream's shapes, so upstream's `rig` reads them: the header's keys in
/// upstream's order, events that start with `seq` and `type` and end with `timestamp`,
/// traffic events without a top-level `service`, bodies in padded standard base64, and
/// RFC 3339 timestamps with nanoseconds at most.
#[test]
fn rigd_logs_have_upstream_shapes() {
    let dir = fixtures().join("logs");
    let mut traffic = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(lines.next().unwrap()).unwrap();
        let keys: Vec<&str> = header.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "type",
                "environment",
                "outcome",
                "services",
                "duration_ms",
                "timestamp"
            ],
            "{}",
            path.display()
        );
        assert_eq!(header["type"], "log.header");
        assert!(["passed", "failed", "crashed"].contains(&header["outcome"].as_str().unwrap()));
        assert!(header["duration_ms"].is_number());
        for (n, line) in lines.enumerate() {
            let event: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).unwrap();
            let keys: Vec<&str> = event.keys().map(String::as_str).collect();
            assert_eq!(&keys[..2], ["seq", "type"], "line {}: {line}", n + 2);
            assert_eq!(keys.last(), Some(&"timestamp"), "line {}: {line}", n + 2);
            assert_eq!(event["seq"].as_u64(), Some(n as u64 + 1), "seq order");
            let ts = event["timestamp"].as_str().unwrap();
            assert!(rig_types::Timestamp::parse(ts).is_ok(), "{ts}");
            for payload in ["request", "connection", "grpc_call", "kafka_request"] {
                let Some(p) = event.get(payload) else {
                    continue;
                };
                traffic += 1;
                assert!(
                    !event.contains_key("service"),
                    "traffic has no service: {line}"
                );
                for key in ["source", "target", "ingress"] {
                    assert!(p[key].is_string(), "{payload}.{key}: {line}");
                }
                for body in ["request_body", "response_body"] {
                    if let Some(b) = p.get(body).and_then(|b| b.as_str()) {
                        assert_eq!(b.len() % 4, 0, "padded base64: {b}");
                        assert!(rig_types::base64::decode(b).is_ok(), "base64: {b}");
                    }
                }
            }
        }
    }
    assert!(traffic > 10, "the fixtures carry traffic");
}

/// A log cut while being written, inside a multi-byte character, still opens: its last line
/// is skipped with a warning, as a cut at any other byte is.
#[test]
fn a_log_cut_inside_a_character_still_opens() {
    let dir = logs_dir(Dir::Rigd, "cut-utf8");
    let source = dir.path().join("TestCheckout-1a2183cad88-8ad125a8.jsonl");
    let mut bytes = std::fs::read(&source).expect("the fixture");
    bytes.extend_from_slice(
        br#"{"seq":99999,"type":"service.log","service":"api","log":{"stream":"stdout","data":"caf"#,
    );
    bytes.push("é".as_bytes()[0]);
    let cut = dir.path().join("cut-1-2.jsonl");
    std::fs::write(&cut, bytes).unwrap();
    let path = cut.to_str().unwrap();
    for args in [["traffic", path], ["logs", path], ["explain", path]] {
        let text = run(dir.path(), &args, &[("NO_COLOR", "1")]);
        assert!(text.ends_with("--- exit 0\n"), "{text}");
        assert!(
            text.contains("the last line") && text.contains("is cut off mid-event"),
            "{text}"
        );
    }
}

/// A log of one run of `environment`, written at `ts`, whose one test note is `note`.
fn one_note_log(environment: &str, ts: &str, note: &str) -> String {
    let name = serde_json::to_string(environment).unwrap();
    format!(
        "{{\"type\":\"log.header\",\"environment\":{name},\"outcome\":\"failed\",\"duration_ms\":1,\"timestamp\":\"{ts}\"}}\n\
         {{\"seq\":1,\"type\":\"test.note\",\"environment\":{name},\"error\":\"{note}\",\"timestamp\":\"{ts}\"}}\n"
    )
}

/// Name patterns: the whole name wins over names that merely contain it (`api`, not the newer
/// `rapid`), then a prefix, then a part of the file name; a part shared by several
/// environments is an error listing them; the file read is named on stderr unless the
/// argument named the log exactly.
#[test]
fn names_match_whole_first_and_ambiguity_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for (env, ts) in [
        ("api", "2026-01-01T00:00:00Z"),
        ("capital", "2026-01-02T00:00:00Z"),
        ("rapid", "2026-01-03T00:00:00Z"),
    ] {
        let log = one_note_log(env, ts, &format!("{env} run"));
        std::fs::write(dir.path().join(format!("{env}-1-1.jsonl")), log).unwrap();
    }
    let out = run(dir.path(), &["logs", "api"], &[]);
    assert!(out.contains("✗ api run"), "{out}");
    assert!(!out.contains("rig: reading"), "{out}");
    let out = run(dir.path(), &["logs", "rap"], &[]);
    assert!(out.contains("✗ rapid run"), "{out}");
    assert!(
        out.contains(
            "rig: reading $LOGS/rapid-1-1.jsonl (the log of rapid, whose name starts with \"rap\")"
        ),
        "{out}"
    );
    let out = run(dir.path(), &["logs", "pi"], &[]);
    assert!(
        out.contains("\"pi\" matches the logs of 3 environments:\n  api\n  capital\n  rapid\n"),
        "{out}"
    );
    assert!(out.contains("a glob such as \"*pi*\""), "{out}");
    assert!(out.ends_with("--- exit 1\n"), "{out}");
    let out = run(dir.path(), &["logs", "*pi*"], &[]);
    assert!(out.contains("✗ rapid run"), "{out}");
    assert!(
        out.contains("(the most recent of 3 logs matching \"*pi*\")"),
        "{out}"
    );
}

/// Environment names longer than the 200 bytes a log's file name keeps are found by their
/// whole name, even when another environment's name starts with the same 200 bytes.
#[test]
fn long_environment_names_are_found_by_their_whole_name() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("TestLong/{}", "x".repeat(250));
    // As rigd names the files: separators to `_`, cut at 200 bytes, then the id.
    let file = |env: &str, id: &str| {
        let cut: String = env.replace('/', "_").chars().take(200).collect();
        dir.path().join(format!("{cut}-{id}.jsonl"))
    };
    let (mine, other) = (format!("{long}/mine"), format!("{long}/other"));
    std::fs::write(
        file(&mine, "1-1"),
        one_note_log(&mine, "2026-01-01T00:00:00Z", "mine"),
    )
    .unwrap();
    std::fs::write(
        file(&other, "2-2"),
        one_note_log(&other, "2026-01-02T00:00:00Z", "other"),
    )
    .unwrap();
    for (command, read) in [("logs", "✗ mine"), ("explain", "\"message\": \"mine\"")] {
        let out = run(dir.path(), &[command, &mine], &[]);
        assert!(out.contains(read), "{out}");
        assert!(!out.contains("other"), "{out}");
        assert!(out.ends_with("--- exit 0\n"), "{out}");
    }
}

/// The peak resident memory, in bytes, of `rig args` over the logs in `dir`.
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its peak memory"
)]
fn peak_rss_of_rig(dir: &Path, args: &[&str]) -> u64 {
    let child = Command::new(env!("CARGO_BIN_EXE_rig"))
        .args(args)
        .env("RIG_LOGS", dir)
        .env("RIG_DIR", dir.join("no-rig-dir"))
        .env_remove("RIG_SERVER_ADDR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run rig");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data, filled in by wait4 for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "rig {args:?}: {status}"
    );
    // Linux reports kilobytes.
    usage.ru_maxrss as u64 * 1024
}

/// A log far larger than what the commands need of it (a service that wrote 60 MB; 60 MB of
/// exchanges with large bodies) is read as a stream: the command's peak memory stays well
/// below the log's size (reading it whole took about two and a half times its size).
#[test]
fn a_large_log_is_read_without_holding_it_whole() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("TestChatty-1-1.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let ts = "2026-01-01T00:00:00Z";
    writeln!(
        out,
        "{{\"type\":\"log.header\",\"environment\":\"TestChatty\",\"outcome\":\"failed\",\"services\":[\"api\"],\"duration_ms\":1,\"timestamp\":\"{ts}\"}}"
    )
    .unwrap();
    let mut seq = 0;
    while out.get_ref().metadata().unwrap().len() < 60 << 20 {
        for _ in 0..1000 {
            seq += 1;
            let stream = if seq % 3 == 0 { "stderr" } else { "stdout" };
            writeln!(
                out,
                "{{\"seq\":{seq},\"type\":\"service.log\",\"environment\":\"TestChatty\",\"service\":\"api\",\"log\":{{\"stream\":\"{stream}\",\"data\":\"line {seq} of chatty output, padding padding padding padding padding padding\\n\"}},\"timestamp\":\"{ts}\"}}"
            )
            .unwrap();
        }
        out.flush().unwrap();
    }
    writeln!(
        out,
        "{{\"seq\":{},\"type\":\"test.note\",\"environment\":\"TestChatty\",\"error\":\"boom\",\"timestamp\":\"{ts}\"}}",
        seq + 1
    )
    .unwrap();
    out.flush().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let har = dir.path().join("out.har");
    write_bulky_traffic_log(&dir.path().join("TestBulky-1-1.jsonl"), size);
    // A third of the size, in exchanges without bodies: the rows themselves are what counts.
    let many = dir.path().join("TestMany-1-1.jsonl");
    write_many_exchanges_log(&many, size / 3);
    let many_size = std::fs::metadata(&many).unwrap().len();
    for (args, log_size) in [
        (&["explain", "TestChatty"][..], size),
        (
            &["export", "TestChatty", "--har", har.to_str().unwrap()],
            size,
        ),
        (&["logs", "TestChatty"], size),
        // The table keeps a row per exchange, without the bodies only --detail shows.
        (&["traffic", "TestBulky"], size),
        // JSON and the table print every exchange, each read again from the file.
        (&["traffic", "TestBulky", "--json"], size),
        (&["traffic", "TestMany", "--json"], many_size),
        (&["traffic", "TestMany"], many_size),
        // The analysis keeps the exchanges that failed, and none of these did.
        (&["explain", "TestMany"], many_size),
    ] {
        // A child's peak includes the test process's own at the time it was spawned (Linux
        // keeps the larger across exec), which a panicking test running in parallel inflates
        // with its backtrace: what `rig --version` peaks at, spawned the same way, is the
        // floor.
        let floor = peak_rss_of_rig(dir.path(), &["--version"]);
        let peak = peak_rss_of_rig(dir.path(), args);
        assert!(
            peak < floor + log_size / 3,
            "rig {args:?}: peak RSS {peak} bytes for a {log_size}-byte log (rig --version: {floor})"
        );
    }
}

/// A log of at least `size` bytes of small HTTP exchanges, with the headers and bodies of a
/// typical service call, as rigd writes them.
fn write_many_exchanges_log(path: &Path, size: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let ts = "2026-01-01T00:00:00Z";
    writeln!(
        out,
        "{{\"type\":\"log.header\",\"environment\":\"TestMany\",\"outcome\":\"passed\",\"services\":[\"api\"],\"duration_ms\":1,\"timestamp\":\"{ts}\"}}"
    )
    .unwrap();
    let mut seq = 0;
    while out.get_ref().metadata().unwrap().len() < size {
        for _ in 0..1000 {
            seq += 1;
            writeln!(
                out,
                "{{\"seq\":{seq},\"type\":\"request.completed\",\"environment\":\"TestMany\",\"request\":{{\"source\":\"~test\",\"target\":\"api\",\"ingress\":\"default\",\"method\":\"POST\",\"path\":\"/orders?n={seq}\",\"status_code\":201,\"latency_ms\":1.7,\"request_size\":15,\"response_size\":10,\"request_headers\":{{\"Accept\":[\"*/*\"],\"Accept-Encoding\":[\"gzip\"],\"Content-Length\":[\"15\"],\"Content-Type\":[\"application/json\"],\"Host\":[\"127.0.0.1:40123\"],\"Traceparent\":[\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"],\"User-Agent\":[\"Go-http-client/1.1\"],\"X-Request-Id\":[\"7f4d2c1e-9a8b-4c3d-8e2f-1a2b3c4d5e6f\"]}},\"request_body\":\"eyJza3UiOiJhYmMtMSJ9\",\"response_headers\":{{\"Cache-Control\":[\"no-store\"],\"Content-Length\":[\"10\"],\"Content-Type\":[\"application/json\"],\"Date\":[\"Thu, 01 Jan 2026 00:00:00 GMT\"],\"Server\":[\"api/1.4.2\"]}},\"response_body\":\"eyJpZCI6NDJ9Cg==\"}},\"timestamp\":\"{ts}\"}}"
            )
            .unwrap();
        }
        out.flush().unwrap();
    }
}

/// A log of at least `size` bytes of HTTP exchanges with 64 KiB bodies each way (base64, as
/// rigd writes them).
fn write_bulky_traffic_log(path: &Path, size: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let ts = "2026-01-01T00:00:00Z";
    writeln!(
        out,
        "{{\"type\":\"log.header\",\"environment\":\"TestBulky\",\"outcome\":\"passed\",\"services\":[\"api\"],\"duration_ms\":1,\"timestamp\":\"{ts}\"}}"
    )
    .unwrap();
    // 48 KiB of bytes is 64 KiB of base64.
    let body = "QUJD".repeat(16 * 1024);
    let mut seq = 0;
    while out.get_ref().metadata().unwrap().len() < size {
        for _ in 0..50 {
            seq += 1;
            writeln!(
                out,
                "{{\"seq\":{seq},\"type\":\"request.completed\",\"environment\":\"TestBulky\",\"request\":{{\"source\":\"~test\",\"target\":\"api\",\"ingress\":\"default\",\"method\":\"POST\",\"path\":\"/items/{seq}\",\"status_code\":200,\"latency_ms\":1.0,\"request_size\":49152,\"response_size\":49152,\"request_body\":\"{body}\",\"response_body\":\"{body}\"}},\"timestamp\":\"{ts}\"}}"
            )
            .unwrap();
        }
        out.flush().unwrap();
    }
}

/// `rig logs` prints each row as it reads it, and reads a pipe as well as a file: over a log
/// still being written into a named pipe, the first row is out before the log ends (rows used
/// to come only at the end, so `rig logs | head` read the whole log first, and a pipe such as
/// `<(zcat run.jsonl.gz)` was not taken as a log at all).
#[test]
fn logs_prints_each_row_as_it_reads_it_from_a_pipe() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("live.jsonl");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rig"))
        .arg("logs")
        .arg(&fifo)
        .env("RIG_LOGS", dir.path())
        .env("RIG_DIR", dir.path().join("no-rig-dir"))
        .env_remove("RIG_SERVER_ADDR")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run rig");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    // Opening the writing end waits for rig to open the reading end.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let ts = "2026-01-01T00:00:00Z";
    let line = |seq: u32, text: &str| {
        format!(
            "{{\"seq\":{seq},\"type\":\"service.log\",\"environment\":\"Live\",\"service\":\"api\",\"log\":{{\"stream\":\"stdout\",\"data\":\"{text}\\n\"}},\"timestamp\":\"{ts}\"}}\n"
        )
    };
    write!(
        writer,
        "{{\"type\":\"log.header\",\"environment\":\"Live\",\"outcome\":\"passed\",\"services\":[\"api\",\"payments\"],\"duration_ms\":1,\"timestamp\":\"{ts}\"}}\n{}",
        line(1, "first row")
    )
    .unwrap();
    writer.flush().unwrap();
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("no row printed while the log was still being written");
    // The service column is as wide as the header's longest service from the first row on.
    assert_eq!(first, "0.000s  api       first row");
    write!(writer, "{}", line(2, "second row")).unwrap();
    drop(writer);
    let second = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the second row");
    assert_eq!(second, "0.000s  api       second row");
    assert!(child.wait().unwrap().success());
}

/// `rig traffic` over a pipe, which cannot be read twice, prints what it prints over the file
/// (a file's exchanges are read again from it for each pass over the rows).
#[test]
fn traffic_reads_a_pipe_as_it_reads_the_file() {
    use std::io::Write;
    let dir = logs_dir(Dir::Rigd, "traffic-pipe");
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("failed"))
        .expect("the failed run's log");
    let text = std::fs::read(&file).unwrap();
    let rig = |source: &str, extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rig"))
            .arg("traffic")
            .arg(source)
            .args(extra)
            .env("RIG_LOGS", dir.path())
            .env("RIG_DIR", dir.path().join("no-rig-dir"))
            .env("TZ", "UTC")
            .env_remove("RIG_SERVER_ADDR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run rig");
        let mut stdin = child.stdin.take().unwrap();
        let text = text.clone();
        let writer = std::thread::spawn(move || {
            // Fed only to the one reading standard input; the other closes it unread.
            let _ = stdin.write_all(&text);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success(), "rig traffic {source} {extra:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let path = file.to_str().unwrap();
    for extra in [
        &["--probes"][..],
        &["--json"],
        &["--detail", "3,p1"],
        &["--grep", "completed_at"],
    ] {
        let from_file = rig(path, extra);
        assert!(from_file.lines().count() >= 2, "{extra:?}: {from_file}");
        assert_eq!(rig("/dev/stdin", extra), from_file, "{extra:?}");
    }
}
