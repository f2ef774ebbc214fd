//! Helpers shared by the `cli_*` integration tests: a private rig dir and the real `rigd`
//! binary started for it through the CLI's own auto-start (override mode, `RIG_BINARY` =
//! `CARGO_BIN_EXE_rigd`).

#![allow(dead_code)] // Each test binary uses its own subset.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rigd::cli::autostart::{Autostart, RunningServer};

/// A private directory (holding the rig dir `rig/`) and the rigds started for it; stops
/// them and removes the directory on drop.
pub struct RigDir {
    /// The test's directory.
    pub path: PathBuf,
    pids: Vec<u32>,
}

impl RigDir {
    /// A fresh, empty directory named for the test.
    pub fn new(name: &str) -> RigDir {
        let path = std::env::temp_dir().join(format!("rig-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        RigDir {
            path,
            pids: Vec::new(),
        }
    }

    /// The rig dir (`RIG_DIR`).
    pub fn rig_dir(&self) -> PathBuf {
        self.path.join("rig")
    }

    /// The auto-start configuration for this rig dir and the real rigd binary.
    pub fn autostart(&self) -> Autostart {
        let rig_dir = self.rig_dir();
        let env = move |key: &str| -> Option<OsString> {
            match key {
                "RIG_BINARY" => Some(env!("CARGO_BIN_EXE_rigd").into()),
                "RIG_DIR" => Some(rig_dir.clone().into()),
                _ => None,
            }
        };
        let cwd = std::env::current_dir().expect("cwd");
        Autostart::resolve(&env, None, Some(&cwd), None).expect("resolve the auto-start config")
    }

    /// Finds or starts rigd, remembering a started one for cleanup.
    pub async fn ensure(&mut self) -> RunningServer {
        let server = self.autostart().ensure().await.expect("start rigd");
        self.track(&server);
        server
    }

    /// Remembers a rigd started by `server` for cleanup.
    pub fn track(&mut self, server: &RunningServer) {
        self.pids.extend(server.spawned_pid);
    }

    /// Writes `text` to `<dir>/<sub>/spec.json` and returns the path.
    pub fn spec_file(&self, sub: &str, text: &str) -> PathBuf {
        let dir = self.path.join(sub);
        std::fs::create_dir_all(&dir).expect("spec dir");
        let path = dir.join("spec.json");
        std::fs::write(&path, text).expect("write spec");
        path
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

/// SIGTERM, then SIGKILL if the process has not exited within 15 s; reaps it (rigds started
/// by a test are its children).
pub fn stop(pid: u32) {
    let pid = pid as libc::pid_t;
    // SAFETY: plain syscalls on a pid this test spawned and has not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, libc::WNOHANG) == 0 {
            if Instant::now() >= deadline {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Live (non-zombie) processes whose command line has `--rig-dir <dir>`.
#[cfg(target_os = "linux")]
pub fn rigds_serving(dir: &Path) -> Vec<u32> {
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
