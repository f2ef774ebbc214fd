//! Resolution rules, and the spawn path with small real executables (shell scripts) standing
//! in for a rigd that fails to start. The happy path against the real rigd binary is in
//! `tests/cli_autostart.rs`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("rig-autostart-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |key| map.get(key).cloned()
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn rig_dir_is_rig_dir_then_home_then_temp() {
    let cwd = Path::new("/work/here");
    let resolve = |pairs: &[(&str, &str)]| {
        Autostart::resolve(&env_of(pairs), None, Some(cwd), None)
            .unwrap()
            .rig_dir()
            .to_path_buf()
    };
    assert_eq!(
        resolve(&[("RIG_DIR", "/r"), ("HOME", "/h")]),
        PathBuf::from("/r")
    );
    assert_eq!(
        resolve(&[("RIG_DIR", "rel")]),
        PathBuf::from("/work/here/rel")
    );
    assert_eq!(
        resolve(&[("RIG_DIR", ""), ("HOME", "/h")]),
        PathBuf::from("/h/.rig")
    );
    assert_eq!(resolve(&[]), std::env::temp_dir().join("rig"));
}

#[test]
fn server_flag_beats_rig_server_addr_beats_rig_binary() {
    let env = env_of(&[
        ("RIG_SERVER_ADDR", "127.0.0.1:2"),
        ("RIG_BINARY", "/does/not/exist"),
    ]);
    let a = Autostart::resolve(&env, None, None, Some("127.0.0.1:1")).unwrap();
    assert_eq!(
        a.mode(),
        &Mode::Fixed {
            addr: "127.0.0.1:1".into(),
            source: AddrSource::Flag
        }
    );
    let a = Autostart::resolve(&env, None, None, None).unwrap();
    assert_eq!(
        a.mode(),
        &Mode::Fixed {
            addr: "127.0.0.1:2".into(),
            source: AddrSource::Env
        }
    );
}

#[test]
fn missing_rig_binary_is_an_error_at_once() {
    let env = env_of(&[("RIG_BINARY", "/does/not/exist/rigd")]);
    let err = Autostart::resolve(&env, None, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "RIG_BINARY: /does/not/exist/rigd: file not found"
    );
}

#[test]
fn override_mode_uses_unversioned_files_and_an_absolute_binary() {
    let tmp = TempDir::new("override");
    script(&tmp.0.join("my-rigd"), "exit 0");
    let env = env_of(&[("RIG_BINARY", "my-rigd"), ("RIG_DIR", "/r")]);
    let a = Autostart::resolve(&env, None, Some(&tmp.0), None).unwrap();
    assert_eq!(
        a.mode(),
        &Mode::Override {
            binary: tmp.0.join("my-rigd")
        }
    );
    assert_eq!(
        a.files(),
        ServerFiles {
            addr: "/r/rigd.addr".into(),
            lock: "/r/rigd.lock".into(),
            log: "/r/rigd.log".into(),
        }
    );
}

#[test]
fn managed_mode_prefers_rigd_next_to_rig_then_path_and_versions_files() {
    let tmp = TempDir::new("managed");
    let bin = tmp.0.join("bin");
    let path_dir = tmp.0.join("path");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&path_dir).unwrap();
    script(&path_dir.join("rigd"), "exit 0");
    let path_var = path_dir.display().to_string();
    let env = env_of(&[("RIG_DIR", "/r"), ("PATH", &path_var)]);
    let rig = bin.join("rig");

    // Nothing next to rig: PATH.
    let a = Autostart::resolve(&env, Some(&rig), None, None).unwrap();
    assert_eq!(
        a.mode(),
        &Mode::Managed {
            binary: Some(path_dir.join("rigd")),
            searched: vec![bin.join("rigd")],
        }
    );
    // A non-executable file next to rig does not count.
    std::fs::write(bin.join("rigd"), "not a program").unwrap();
    let a = Autostart::resolve(&env, Some(&rig), None, None).unwrap();
    assert!(
        matches!(a.mode(), Mode::Managed { binary: Some(b), .. } if b == &path_dir.join("rigd"))
    );
    // An executable next to rig wins.
    script(&bin.join("rigd"), "exit 0");
    let a = Autostart::resolve(&env, Some(&rig), None, None).unwrap();
    assert!(matches!(a.mode(), Mode::Managed { binary: Some(b), .. } if b == &bin.join("rigd")));

    let files = a.files();
    assert_eq!(
        files.addr,
        PathBuf::from(format!("/r/rigd-v{VERSION}.addr"))
    );
    assert_eq!(
        files.lock,
        PathBuf::from(format!("/r/rigd-v{VERSION}.lock"))
    );
    assert_eq!(files.log, PathBuf::from("/r/rigd.log"));
}

#[tokio::test]
async fn no_binary_anywhere_names_the_places_searched_and_releases_the_lock() {
    let tmp = TempDir::new("nobinary");
    let rig_dir = tmp.0.join("rig");
    let rig_dir_var = rig_dir.display().to_string();
    let env = env_of(&[("RIG_DIR", &rig_dir_var), ("PATH", "/nonexistent")]);
    let rig = tmp.0.join("bin").join("rig");
    let a = Autostart::resolve(&env, Some(&rig), None, None).unwrap();
    let err = a.ensure().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AutostartError::NoBinary { .. }), "{text}");
    assert!(
        text.contains(&tmp.0.join("bin").join("rigd").display().to_string()),
        "{text}"
    );
    assert!(text.contains("RIG_BINARY"), "{text}");
    assert!(rig_dir.is_dir(), "the rig dir is created");
    assert!(!a.files().lock.exists(), "the lock file is removed");
}

#[tokio::test]
async fn a_given_address_that_does_not_answer_is_an_error() {
    // Bind then drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let a = Autostart::resolve(&env_of(&[]), None, None, Some(&addr)).unwrap();
    let err = a.ensure().await.unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "no healthy rigd at {addr} (from --server): cannot connect"
        )),
        "{err}"
    );
}

/// A stand-in rigd that answers every request with `/health`'s body for `api`.
async fn health_server(api: u32) -> String {
    health_server_after(api, std::time::Duration::ZERO).await
}

/// [`health_server`] taking `delay` to answer (a rigd on a loaded machine).
async fn health_server_after(api: u32, delay: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let body = format!(r#"{{"status":"ok","version":"9.0.0","api":{api}}}"#);
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).await;
            tokio::time::sleep(delay).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    addr
}

/// Managed mode on a fresh rig dir with no rigd binary anywhere (so it can only use a rigd
/// already running): the temporary directory, the rig dir and the autostart.
fn managed_without_binary(name: &str) -> (TempDir, PathBuf, Autostart) {
    let tmp = TempDir::new(name);
    let rig_dir = tmp.0.join("rig");
    std::fs::create_dir_all(&rig_dir).unwrap();
    let rig_dir_var = rig_dir.display().to_string();
    let env = env_of(&[("RIG_DIR", &rig_dir_var), ("PATH", "/nonexistent")]);
    let rig = tmp.0.join("bin").join("rig");
    let a = Autostart::resolve(&env, Some(&rig), None, None).unwrap();
    assert!(matches!(a.mode(), Mode::Managed { .. }));
    (tmp, rig_dir, a)
}

/// Managed mode uses a rigd started by hand on the rig dir (`rigd.addr`) rather than start a
/// second one beside it, as long as it speaks the same API.
#[tokio::test]
async fn managed_mode_uses_the_rigd_already_serving_the_rig_dir() {
    let (_tmp, rig_dir, a) = managed_without_binary("handstarted");

    let addr = health_server(rig_types::API_VERSION).await;
    std::fs::write(rig_dir.join("rigd.addr"), &addr).unwrap();
    let found = a.ensure().await.expect("the running rigd");
    assert_eq!(found.addr, addr);
    assert_eq!(found.spawned_pid, None);

    // One that speaks another API version is passed over, not refused.
    let other = health_server(rig_types::API_VERSION + 1).await;
    std::fs::write(rig_dir.join("rigd.addr"), &other).unwrap();
    let err = a.ensure().await.unwrap_err();
    assert!(matches!(err, AutostartError::NoBinary { .. }), "{err}");
}

/// A rigd that answers `/health` later than usual (a loaded machine) is still used: a second
/// rigd is not started beside it.
#[tokio::test]
async fn a_slow_rigd_is_waited_for_not_replaced() {
    let (_tmp, rig_dir, a) = managed_without_binary("slowrigd");
    let slow = crate::transport::client::HEALTH_TIMEOUT + std::time::Duration::from_millis(500);
    let addr = health_server_after(rig_types::API_VERSION, slow).await;
    std::fs::write(rig_dir.join("rigd.addr"), &addr).unwrap();
    let found = a.ensure().await.expect("the slow rigd");
    assert_eq!(found.addr, addr);
    assert_eq!(found.spawned_pid, None);
}

/// A rigd of a future release (its API version cannot be produced by this build, so a tiny
/// stand-in answers `/health` the way such a rigd would) is refused with what to do.
#[tokio::test]
async fn a_rigd_speaking_another_api_version_is_refused() {
    let addr = health_server(rig_types::API_VERSION + 1).await;
    let a = Autostart::resolve(&env_of(&[]), None, None, Some(&addr)).unwrap();
    let err = a.ensure().await.unwrap_err();
    assert!(matches!(err, AutostartError::Incompatible { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "rigd 9.0.0 speaks API v{}, this client speaks v{} (rigd at {addr}): use a rig and rigd of the same release",
            rig_types::API_VERSION + 1,
            rig_types::API_VERSION
        )),
        "{err}"
    );
}

/// A "rigd" that records how it was started, then fails the way a broken rigd would.
#[tokio::test]
async fn a_rigd_that_exits_is_reported_with_its_arguments_cwd_and_log() {
    let tmp = TempDir::new("exits");
    let rig_dir = tmp.0.join("rig");
    let bin = tmp.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    script(
        &bin.join("rigd"),
        r#"echo "args: $*"; echo "cwd: $(pwd)"; echo "rigd: listen: address in use" >&2; exit 3"#,
    );
    let rig_dir_var = rig_dir.display().to_string();
    let env = env_of(&[("RIG_DIR", &rig_dir_var)]);
    let a = Autostart::resolve(&env, Some(&bin.join("rig")), None, None).unwrap();
    let files = a.files();
    // A stale addr file from a dead rigd.
    std::fs::create_dir_all(&rig_dir).unwrap();
    std::fs::write(&files.addr, "127.0.0.1:1").unwrap();

    let err = a.ensure().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AutostartError::Exited { .. }), "{text}");
    assert!(
        text.starts_with("rigd exited (exit status: 3) before becoming healthy"),
        "{text}"
    );
    assert!(
        text.contains(&format!("(log: {})", files.log.display())),
        "{text}"
    );
    let want_args = format!(
        "\n  | args: --idle 5m --rig-dir {} --addr-file {}",
        rig_dir.display(),
        files.addr.display()
    );
    assert!(text.contains(&want_args), "{text}");
    assert!(
        text.contains(&format!("\n  | cwd: {}", rig_dir.display())),
        "{text}"
    );
    assert!(
        text.contains("\n  | rigd: listen: address in use"),
        "{text}"
    );
    assert!(
        !files.addr.exists(),
        "the stale addr file is removed before spawning"
    );
    assert!(!files.lock.exists(), "the lock is released");
}

/// `RIG_BINARY` uses the rigd a managed start left serving the rig dir rather than start a
/// second one beside it.
#[tokio::test]
async fn override_mode_uses_the_managed_rigd_already_serving_the_rig_dir() {
    let tmp = TempDir::new("override-reuse");
    let rig_dir = tmp.0.join("rig");
    std::fs::create_dir_all(&rig_dir).unwrap();
    let binary = tmp.0.join("fake-rigd");
    script(&binary, "exit 1");
    let rig_dir_var = rig_dir.display().to_string();
    let binary_var = binary.display().to_string();
    let env = env_of(&[("RIG_DIR", &rig_dir_var), ("RIG_BINARY", &binary_var)]);
    let a = Autostart::resolve(&env, None, None, None).unwrap();
    let addr = health_server(rig_types::API_VERSION).await;
    std::fs::write(rig_dir.join(format!("rigd-v{VERSION}.addr")), &addr).unwrap();
    let found = a.ensure().await.expect("the managed rigd");
    assert_eq!(found.addr, addr);
    assert_eq!(found.spawned_pid, None);
}

#[tokio::test]
async fn override_mode_does_not_pass_an_addr_file() {
    let tmp = TempDir::new("override-args");
    let rig_dir = tmp.0.join("rig");
    let binary = tmp.0.join("fake-rigd");
    script(&binary, r#"echo "args: $*"; exit 1"#);
    let rig_dir_var = rig_dir.display().to_string();
    let binary_var = binary.display().to_string();
    let env = env_of(&[("RIG_DIR", &rig_dir_var), ("RIG_BINARY", &binary_var)]);
    let a = Autostart::resolve(&env, None, None, None).unwrap();
    let text = a.ensure().await.unwrap_err().to_string();
    assert!(
        text.ends_with(&format!(
            "\n  | args: --idle 5m --rig-dir {}",
            rig_dir.display()
        )),
        "{text}"
    );
}

#[test]
fn log_tail_shows_only_what_this_start_wrote() {
    let tmp = TempDir::new("tail");
    let log = tmp.0.join("rigd.log");
    std::fs::write(&log, "old run\n").unwrap();
    let start = std::fs::metadata(&log).unwrap().len();
    let mut lines: String = (1..=20).map(|i| format!("line {i}\n")).collect();
    lines.insert_str(0, "old run\n");
    std::fs::write(&log, lines).unwrap();
    let tail = log_tail(&log, start);
    assert!(!tail.contains("old run"));
    assert!(tail.starts_with("\n  | line 6\n"), "{tail}");
    assert!(tail.ends_with("\n  | line 20"), "{tail}");
}

#[test]
fn a_test_executable_finds_rigd_in_its_cargo_profile_directory() {
    let tmp = TempDir::new("cargo-target");
    let profile = tmp.0.join("target").join("debug");
    let deps = profile.join("deps");
    std::fs::create_dir_all(&deps).unwrap();
    let env = env_of(&[("RIG_DIR", "/r"), ("PATH", "/nonexistent")]);
    let test_exe = deps.join("sdk-0123abcd");

    let a = Autostart::resolve(&env, Some(&test_exe), None, None).unwrap();
    assert_eq!(
        a.mode(),
        &Mode::Managed {
            binary: None,
            searched: vec![deps.join("rigd"), profile.join("rigd")],
        }
    );
    script(&profile.join("rigd"), "exit 0");
    let a = Autostart::resolve(&env, Some(&test_exe), None, None).unwrap();
    assert!(
        matches!(a.mode(), Mode::Managed { binary: Some(b), .. } if b == &profile.join("rigd")),
        "{:?}",
        a.mode()
    );
}

#[test]
fn a_fixed_address_from_the_sdk_names_its_source() {
    let a = Autostart::fixed("127.0.0.1:9", AddrSource::Sdk);
    assert_eq!(
        a.mode(),
        &Mode::Fixed {
            addr: "127.0.0.1:9".into(),
            source: AddrSource::Sdk
        }
    );
}
