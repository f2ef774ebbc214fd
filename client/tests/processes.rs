//! Several test processes (as `cargo nextest` runs them: one process per test) share one
//! rigd: the first to need it starts it under the rig dir's lock, the others find it.
//!
//! The parent test runs this test binary three times at once, each running only the ignored
//! `child_brings_up_an_environment`, all pointed at one fresh rig dir, and checks that every
//! child reached the same rigd.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::{http_server, rigd_binary, stop_rigd_of};

/// Where the parent tells a child to use as rig dir and to write its result.
const CHILD_ENV: &str = "RIG_SDK_TEST_CHILD";

#[test]
fn several_test_processes_share_one_rigd() {
    let exe = std::env::current_exe().expect("the test executable");
    // SAFETY: getpid(2) cannot fail and has no preconditions.
    let pid = unsafe { libc::getpid() };
    let dir = std::env::temp_dir().join(format!("rig-sdk-processes-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a fresh rig dir");

    let children: Vec<_> = (0..3)
        .map(|i| {
            let out = dir.join(format!("child-{i}.out"));
            let child = Command::new(&exe)
                .args(["--exact", "child_brings_up_an_environment", "--ignored"])
                .env(CHILD_ENV, format!("{}|{}", dir.display(), out.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a child test process");
            (child, out)
        })
        .collect();

    let mut addrs = Vec::new();
    for (child, out) in children {
        let output = child.wait_with_output().expect("wait for the child");
        assert!(
            output.status.success(),
            "child test process failed: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&out).expect("the child wrote its result");
        let (addr, id) = text.split_once(' ').expect("`addr id`");
        assert!(!id.is_empty());
        addrs.push(addr.to_string());
    }
    assert!(
        addrs.windows(2).all(|w| w[0] == w[1]),
        "every process used the same rigd: {addrs:?}"
    );
    let addr_file = std::fs::read_dir(&dir)
        .expect("the rig dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "addr"))
        .expect("rigd's addr file in the rig dir");
    assert_eq!(
        std::fs::read_to_string(addr_file)
            .expect("addr file")
            .trim(),
        addrs[0]
    );
    // It would otherwise idle for 5 minutes.
    stop_rigd_of(&dir, libc::SIGTERM);
    std::fs::remove_dir_all(&dir).expect("remove the rig dir");
}

/// One "test process" of the test above; does nothing when run on its own.
#[tokio::test]
#[ignore = "run by several_test_processes_share_one_rigd"]
async fn child_brings_up_an_environment() -> Result<(), rig::BoxError> {
    let Ok(setting) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let (dir, out) = setting.split_once('|').expect("`dir|out`");
    let env = rig::Environment::builder("sdk-processes")
        .rigd_binary(rigd_binary())
        .rig_dir(PathBuf::from(dir))
        .observe(false)
        .service("web", http_server("."))
        .up()
        .await?;
    std::fs::write(out, format!("{} {}", env.rigd_addr(), env.id()))?;
    env.down().await?;
    Ok(())
}
