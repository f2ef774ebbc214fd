//! The `rig` CLI's rigd auto-start, end to end against the real `rigd` binary built by cargo
//! (`RIG_BINARY` = `CARGO_BIN_EXE_rigd`, override mode) in a private `RIG_DIR`.
//!
//! Checks: the first call spawns rigd and the addr file appears; `/health` answers; rigd runs
//! in its own session with the rig dir as cwd; a second call reuses it (same address, no
//! second process); concurrent first calls start exactly one rigd between them; a rig dir that
//! cannot be made is the one error rigd reports.

mod cli_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cli_support::RigDir;
use rigd::cli::autostart::Mode;
use rigd::cli::client::RigdClient;

/// `GET /health` by hand: the status line and body, as any HTTP client would see them.
fn raw_health(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to rigd");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[tokio::test]
async fn first_call_spawns_rigd_and_the_second_reuses_it() {
    let mut dir = RigDir::new("reuse");
    let autostart = dir.autostart();
    assert!(matches!(autostart.mode(), Mode::Override { .. }));
    let files = autostart.files();
    assert_eq!(files.addr, dir.rig_dir().join("rigd.addr"));

    let first = autostart.ensure().await.expect("first ensure starts rigd");
    dir.track(&first);
    let pid = first.spawned_pid.expect("the first call spawns rigd");
    let written = std::fs::read_to_string(&files.addr).expect("rigd wrote the addr file");
    assert_eq!(written.trim(), first.addr);
    assert!(
        !files.lock.exists(),
        "the lock file is removed after starting"
    );
    assert!(files.log.exists(), "rigd's output goes to rigd.log");

    let response = raw_health(&first.addr);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#"{"status":"ok","version":"#),
        "{response}"
    );
    RigdClient::new(&first.addr)
        .expect("address")
        .health()
        .await
        .expect("/health through the client");

    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // Fields after the command: state, ppid, pgrp, session.
        assert_eq!(
            fields.get(3),
            Some(&pid.to_string().as_str()),
            "rigd leads its own session"
        );
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd");
        assert_eq!(
            cwd,
            std::fs::canonicalize(dir.rig_dir()).expect("canonical")
        );
    }

    let second = autostart.ensure().await.expect("second ensure");
    dir.track(&second);
    assert_eq!(
        second.addr, first.addr,
        "the second call finds the same rigd"
    );
    assert_eq!(second.spawned_pid, None, "the second call starts nothing");
    #[cfg(target_os = "linux")]
    assert_eq!(
        cli_support::rigds_serving(&dir.rig_dir()),
        vec![pid],
        "exactly one rigd for this rig dir"
    );
}

#[tokio::test]
async fn concurrent_first_calls_start_one_rigd() {
    let mut dir = RigDir::new("race");
    let (a, b) = (dir.autostart(), dir.autostart());
    let (ra, rb) = tokio::join!(a.ensure(), b.ensure());
    let (ra, rb) = (ra.expect("first caller"), rb.expect("second caller"));
    dir.track(&ra);
    dir.track(&rb);
    assert_eq!(ra.addr, rb.addr);
    assert_eq!(
        u8::from(ra.spawned_pid.is_some()) + u8::from(rb.spawned_pid.is_some()),
        1,
        "one caller starts rigd, the other waits on the lock and reuses it: {ra:?} {rb:?}"
    );
    #[cfg(target_os = "linux")]
    assert_eq!(cli_support::rigds_serving(&dir.rig_dir()).len(), 1);
}

/// A rig dir that cannot be made stops rigd with that error alone: nothing before it blames
/// the reaper, whose records would live there.
#[test]
fn an_unusable_rig_dir_is_rigd_s_only_error() {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    let rig_dir = file.path().join("rig");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rigd"))
        .arg("--rig-dir")
        .arg(&rig_dir)
        .output()
        .expect("run rigd");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "rigd: create directory {}: Not a directory (os error 20)\n",
            rig_dir.display()
        )
    );
}
