//! The `rig` CLI's rigd auto-start, end to end against the real `rigd` binary built by cargo
//! (`RIG_BINARY` = `CARGO_BIN_EXE_rigd`, override mode) in a private `RIG_DIR`.
//!
//! Checks: the first call spawns rigd and the addr file appears; `/health` answers; rigd runs
//! in its own session with the rig dir as cwd; a second call reuses it (same address, no
//! second process); concurrent first calls start exactly one rigd between them.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rigd::cli::autostart::{Autostart, Mode, RunningServer};
use rigd::cli::client::RigdClient;

/// A private rig dir; kills the rigds it started and removes itself on drop.
struct RigDir {
    path: PathBuf,
    pids: Vec<u32>,
}

impl RigDir {
    fn new(name: &str) -> RigDir {
        let path = std::env::temp_dir().join(format!("rig-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        RigDir {
            path,
            pids: Vec::new(),
        }
    }

    fn autostart(&self) -> Autostart {
        let dir = self.path.clone();
        let env = move |key: &str| -> Option<OsString> {
            match key {
                "RIG_BINARY" => Some(env!("CARGO_BIN_EXE_rigd").into()),
                "RIG_DIR" => Some(dir.clone().into()),
                _ => None,
            }
        };
        let cwd = std::env::current_dir().expect("cwd");
        Autostart::resolve(&env, None, Some(&cwd), None).expect("resolve")
    }

    fn track(&mut self, server: &RunningServer) {
        self.pids.extend(server.spawned_pid);
    }
}

impl Drop for RigDir {
    fn drop(&mut self) {
        for &pid in &self.pids {
            stop(pid);
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// SIGTERM, then SIGKILL if rigd has not exited within 10 s; reaps it (it is our child).
fn stop(pid: u32) {
    let pid = pid as libc::pid_t;
    // SAFETY: plain syscalls on a pid this test spawned and has not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut status = 0;
            if libc::waitpid(pid, &mut status, libc::WNOHANG) != 0 {
                return;
            }
            if Instant::now() >= deadline {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

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

/// Live processes whose command line has `--rig-dir <dir>`.
#[cfg(target_os = "linux")]
fn rigds_serving(dir: &Path) -> Vec<u32> {
    let want = dir.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let serves = args
            .windows(2)
            .any(|w| w[0] == b"--rig-dir" && w[1] == want);
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if serves && !zombie {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn first_call_spawns_rigd_and_the_second_reuses_it() {
    let mut dir = RigDir::new("reuse");
    let autostart = dir.autostart();
    assert!(matches!(autostart.mode(), Mode::Override { .. }));
    let files = autostart.files();
    assert_eq!(files.addr, dir.path.join("rigd.addr"));

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
    assert!(response.contains(r#"{"status":"ok"}"#), "{response}");
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
            std::fs::canonicalize(&dir.path).expect("canonical dir")
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
        rigds_serving(&dir.path),
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
    assert_eq!(rigds_serving(&dir.path).len(), 1);
}
