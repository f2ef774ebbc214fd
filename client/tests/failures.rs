//! How failures reach the test: in-test services and hooks that fail, specs rigd rejects,
//! service types it does not run.

mod support;

use std::time::Duration;

use rig::Error;
use support::{builder, http_server};

/// Long enough that a failure reported only by a readiness timeout would show up as a
/// startup timeout instead of a start failure.
const SLOW_READINESS: Duration = Duration::from_secs(120);

async fn start_failure(service: rig::Service) -> (String, Error) {
    let err = builder("sdk-failure")
        .observe(false)
        .startup_timeout(Duration::from_secs(60))
        .service("broken", service.ready_timeout(SLOW_READINESS))
        .up()
        .await
        .expect_err("the environment must fail to start");
    (err.to_string(), err)
}

#[tokio::test]
async fn a_func_that_returns_an_error_fails_the_environment_at_once() {
    let (text, err) = start_failure(rig::func(|wiring| async move {
        wiring.log_error("connecting to the database");
        Err("database unreachable".into())
    }))
    .await;
    assert!(matches!(err, Error::StartFailed { .. }), "{text}");
    assert!(text.contains("database unreachable"), "{text}");
    assert!(
        text.contains("connecting to the database"),
        "the service's output is in the summary: {text}"
    );
    // It went to the log as standard error.
    let Error::StartFailed {
        log_file: Some(log),
        ..
    } = &err
    else {
        panic!("rigd wrote no log: {text}");
    };
    let log = std::fs::read_to_string(log).expect("the log file");
    let line = log
        .lines()
        .find(|l| l.contains("connecting to the database"))
        .expect("the output line is in the log");
    let event: serde_json::Value = serde_json::from_str(line).expect("a JSON event");
    assert_eq!(event["log"]["stream"], "stderr", "{line}");
}

#[tokio::test]
async fn a_func_that_panics_fails_the_environment_at_once() {
    let (text, err) = start_failure(rig::func(|_| async move {
        if std::hint::black_box(true) {
            panic!("kaboom in the func");
        }
        Ok(())
    }))
    .await;
    assert!(matches!(err, Error::StartFailed { .. }), "{text}");
    assert!(text.contains("panicked: kaboom in the func"), "{text}");
}

#[tokio::test]
async fn a_failing_hook_fails_the_environment_with_its_error() {
    let (text, err) = start_failure(
        http_server(".").init(|_| async move { Err("migration 7 failed: column exists".into()) }),
    )
    .await;
    assert!(matches!(err, Error::StartFailed { .. }), "{text}");
    assert!(text.contains("migration 7 failed: column exists"), "{text}");
}

/// Brings up `web`, unobserved, under a callback timeout of `callback_timeout`.
async fn up_with_hooks(
    name: &str,
    callback_timeout: Duration,
    web: rig::Service,
) -> rig::Result<rig::Environment> {
    builder(name)
        .observe(false)
        .callback_timeout(callback_timeout)
        .service("web", web)
        .up()
        .await
}

#[tokio::test]
async fn a_hook_that_outlives_the_callback_timeout_is_failed_by_the_sdk() {
    let web = http_server(".").prestart(|_| async move {
        std::future::pending::<()>().await;
        Ok(())
    });
    let err = up_with_hooks("sdk-slow-hook", Duration::from_millis(200), web)
        .await
        .expect_err("the hook never finishes");
    let text = err.to_string();
    assert!(
        text.contains("prestart hook did not finish within the callback timeout (0.2s)"),
        "{text}"
    );
}

/// A service's own hook timeout replaces the callback timeout in the SDK too, both ways.
#[tokio::test]
async fn a_hook_timeout_replaces_the_callback_timeout() {
    let web = http_server(".")
        .hook_timeout(Duration::from_millis(200))
        .init(|_| async move {
            std::future::pending::<()>().await;
            Ok(())
        });
    let err = up_with_hooks("sdk-hook-timeout", Duration::from_secs(60), web)
        .await
        .expect_err("the hook never finishes");
    let text = err.to_string();
    assert!(
        text.contains("init hook did not finish within its hook timeout (0.2s)"),
        "{text}"
    );

    // A hook that takes longer than the callback timeout, but not its own.
    let web = http_server(".")
        .hook_timeout(Duration::from_secs(60))
        .init(|_| async move {
            // The work the hook does: it outlasts the callback timeout.
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok(())
        });
    let env = up_with_hooks("sdk-long-hook", Duration::from_millis(100), web)
        .await
        .expect("the hook's own timeout applies");
    env.down().await.expect("down");
}

#[tokio::test]
async fn a_service_type_rigd_does_not_run_is_a_clear_error() {
    let err = builder("sdk-unsupported")
        .service("legacy", rig::custom("script", serde_json::json!({})))
        .up()
        .await
        .expect_err("rigd has no script driver");
    assert!(
        matches!(&err, Error::UnsupportedServiceType { service, service_type, .. }
            if service == "legacy" && service_type == "script"),
        "{err}"
    );
    assert!(err.to_string().contains("does not support yet"), "{err}");
}

#[tokio::test]
async fn a_spec_rigd_rejects_lists_every_problem() {
    let err = builder("sdk-invalid")
        .service("api", http_server(".").egress("nowhere"))
        .up()
        .await
        .expect_err("the egress target does not exist");
    let Error::Validation { errors, .. } = &err else {
        panic!("expected a validation error, got {err}");
    };
    assert!(errors.iter().any(|e| e.contains("nowhere")), "{errors:?}");
}

#[tokio::test]
async fn builder_misuse_is_reported_before_rigd_is_asked() {
    let err = builder("sdk-misuse")
        .service("api", rig::postgres().args(["-x"]))
        .up()
        .await
        .expect_err("postgres takes no args");
    assert_eq!(
        err.to_string(),
        "service \"api\": arguments are not supported by postgres services"
    );
    // A binary that is not there is named with what the test wrote.
    let err = rig::Environment::builder("sdk-misuse")
        .rigd_binary("/nonexistent/rigd")
        .service("api", http_server("."))
        .up()
        .await
        .expect_err("no such binary");
    assert_eq!(
        err.to_string(),
        "cannot find or start rigd: rigd_binary(..): /nonexistent/rigd: file not found"
    );
}

/// A startup timeout says what was not ready (rigd's summary at teardown), even when it is
/// shorter than rigd's stall reports, and the run is logged as failed.
#[tokio::test]
async fn a_startup_timeout_says_what_was_not_ready() {
    let err = builder("sdk-startup-timeout")
        .observe(false)
        .startup_timeout(Duration::from_secs(2))
        .service(
            "deaf",
            rig::process("sleep")
                .args(["1000"])
                .ingress("default", rig::Protocol::Http)
                .ready_timeout(SLOW_READINESS),
        )
        .up()
        .await
        .expect_err("nothing listens on deaf's port");
    let text = err.to_string();
    let Error::StartupTimeout {
        log_file: Some(log),
        ..
    } = &err
    else {
        panic!("not a startup timeout with a log: {text}");
    };
    assert!(
        text.contains("rig: torn down before it was up:\nrig:   deaf: starting (")
            && text.contains("failed readiness check"),
        "{text}"
    );
    let log = std::fs::read_to_string(log).expect("the log file");
    let header: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("a header")).expect("JSON");
    assert_eq!(header["outcome"], "failed", "{header}");
}

/// A func that returns `Ok(())` has stopped serving, as a process that exits has: the
/// environment fails at once, saying so, rather than after the readiness timeout.
#[tokio::test]
async fn a_func_that_returns_early_fails_the_environment_at_once() {
    let (text, err) = start_failure(rig::func(|_| async move { Ok(()) })).await;
    assert!(matches!(err, Error::StartFailed { .. }), "{text}");
    assert!(
        text.contains("the function returned Ok(()) while the environment was running"),
        "{text}"
    );
}

/// A count checked after rigd died says rigd cannot be reached, not "saw 0".
#[tokio::test]
async fn a_count_after_rigd_died_says_rigd_is_gone() {
    let dir = tempfile_dir("rigd-dies");
    let env = rig::Environment::builder("sdk-rigd-dies")
        .rigd_binary(support::rigd_binary())
        .rig_dir(dir.clone())
        .service("web", http_server("."))
        .up()
        .await
        .expect("the environment comes up");
    support::stop_rigd_of(&dir, libc::SIGKILL);
    let err = env
        .expect_within(
            &rig::RequestFilter::new().to("web"),
            1,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("cannot connect to rigd at "), "{text}");
    drop(env);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory for a test's own rigd.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rig-sdk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a fresh rig dir");
    dir
}
