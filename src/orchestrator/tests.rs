//! In-process tests of the orchestrator with real child processes (`sh`, `python3`).
//! The black-box tests of the `rigd` binary live in `tests/`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rig_types::{Environment, Event, EventType};
use serde_json::json;

use super::{Instance, Orchestrator, Settings, TeardownOptions};
use crate::ports::PortAllocator;
use crate::services::Registry;

const WAIT: Duration = Duration::from_secs(30);

fn orchestrator(dir: &std::path::Path) -> Orchestrator {
    orchestrator_with(
        dir,
        Settings {
            stop_grace: Duration::from_secs(2),
            ..Settings::default()
        },
    )
}

fn orchestrator_with(dir: &std::path::Path, settings: Settings) -> Orchestrator {
    Orchestrator::new(
        Arc::new(PortAllocator::new()),
        Arc::new(Registry::builtin()),
        dir.to_path_buf(),
        settings,
    )
}

fn spec(value: serde_json::Value) -> Environment {
    let mut env: Environment = serde_json::from_value(value).unwrap();
    env.host_env = BTreeMap::from([(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_default(),
    )]);
    let errors = crate::spec::validate_environment(&mut env);
    assert!(errors.is_empty(), "{errors:?}");
    env
}

/// A process that serves HTTP on its default ingress.
fn http_service() -> serde_json::Value {
    json!({
        "type": "process",
        "config": {"command": "python3"},
        "args": ["-m", "http.server", "--bind", "127.0.0.1", "${PORT}"],
        "ingresses": {"default": {"protocol": "http"}}
    })
}

fn sh(script: &str) -> serde_json::Value {
    json!({"type": "process", "config": {"command": "sh"}, "args": ["-c", script]})
}

async fn wait_for(instance: &Instance, t: EventType) -> Arc<Event> {
    let wanted = t.clone();
    tokio::time::timeout(
        WAIT,
        instance.log().wait_for(move |e| e.event_type == wanted),
    )
    .await
    .unwrap_or_else(|_| panic!("no {t} within {WAIT:?}: {:#?}", types(instance)))
}

fn types(instance: &Instance) -> Vec<String> {
    instance
        .log()
        .events()
        .iter()
        .map(|e| format!("{} {} {} {:?}", e.event_type, e.service, e.error, e.log))
        .collect()
}

fn service_types(instance: &Instance, service: &str) -> Vec<EventType> {
    instance
        .log()
        .lifecycle_events()
        .iter()
        .filter(|e| e.service == service)
        .map(|e| e.event_type.clone())
        .collect()
}

/// The inode numbers of `dir` and the directories directly inside it.
fn dir_inodes(dir: &std::path::Path) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut inodes = vec![std::fs::metadata(dir).unwrap().ino()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            inodes.push(entry.metadata().unwrap().ino());
        }
    }
    inodes
}

#[tokio::test]
async fn the_next_environment_gets_the_directories_back_empty_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    // Leaves a file and a loose mode behind in its temp dir, then keeps running.
    let messy = sh(
        "echo data > \"$RIG_TEMP_DIR/left\" && chmod 755 \"$RIG_TEMP_DIR\" && \
                    mkdir \"$RIG_TEMP_DIR/sub\" && exec sleep 60",
    );
    let first = orch
        .create(spec(
            json!({"name": "first", "services": {"a": messy, "b": sh("exec sleep 60")}}),
        ))
        .unwrap();
    wait_for(&first, EventType::EnvironmentUp).await;
    let a = first.env_dir().join("a");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !a.join("sub").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "service a never wrote"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let used = dir_inodes(first.env_dir());
    first.teardown(TeardownOptions::default()).await;
    assert!(!first.env_dir().exists(), "env dir removed at teardown");

    let second = orch
        .create(spec(
            json!({"name": "second", "services": {"c": sh("exec sleep 60")}}),
        ))
        .unwrap();
    wait_for(&second, EventType::EnvironmentUp).await;
    let c = second.env_dir().join("c");
    for dir in [second.env_dir(), c.as_path()] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700, "{dir:?} is owner-only");
    }
    assert_eq!(
        std::fs::read_dir(&c).unwrap().count(),
        0,
        "temp dir is empty"
    );
    let reused = dir_inodes(second.env_dir());
    assert!(
        reused.iter().all(|inode| used.contains(inode)),
        "directories are reused: {used:?} then {reused:?}"
    );
    second.teardown(TeardownOptions::default()).await;

    // At shutdown the kept directories go too: nothing is left under the temp base.
    orch.close_dirs();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn single_service_comes_up_and_tears_down_in_order() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let inst = orch
        .create(spec(
            json!({"name": "one", "services": {"api": http_service()}}),
        ))
        .unwrap();
    let up = wait_for(&inst, EventType::EnvironmentUp).await;
    let endpoint = &up.ingresses["api"]["default"];
    assert!(endpoint.hostport.starts_with("127.0.0.1:"));
    assert_eq!(up.env_dir, inst.env_dir().to_string_lossy());
    assert!(inst.env_dir().join("api").is_dir());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(inst.env_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "env dir is owner-only");

    use EventType::*;
    let api: Vec<_> = service_types(&inst, "api")
        .into_iter()
        .filter(|t| *t != HealthCheckFailed)
        .collect();
    assert_eq!(
        api,
        [
            IngressPublished,
            ServiceStarting,
            ServiceHealthy,
            ServiceReady
        ]
    );
    assert_eq!(
        service_types(&inst, "~test"),
        [
            WiringResolved,
            ServiceStarting,
            ServiceHealthy,
            ServiceReady
        ]
    );

    inst.teardown(TeardownOptions::default()).await;
    let events = inst.log().lifecycle_events();
    let after_up: Vec<_> = events
        .iter()
        .skip_while(|e| e.event_type != EnvironmentUp)
        .skip(1)
        .map(|e| (e.event_type.clone(), e.service.clone()))
        .collect();
    assert_eq!(after_up.first().unwrap().0, EnvironmentDestroying);
    assert_eq!(after_up.last().unwrap(), &(EnvironmentDown, String::new()));
    for svc in ["api", "~test"] {
        let tail: Vec<_> = service_types(&inst, svc)
            .into_iter()
            .rev()
            .take(2)
            .collect();
        assert_eq!(tail, [ServiceStopped, ServiceStopping], "{svc}");
    }
    assert!(events.last().unwrap().message.is_empty());
    assert!(!inst.env_dir().exists(), "env dir removed at teardown");
    assert_eq!(orch.ports().allocated(), 0, "ports released");
    // Every event carries the environment name.
    assert!(events.iter().all(|e| e.environment == "one"));
}

#[tokio::test]
async fn dependency_chain_starts_in_order() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let mut app = http_service();
    app["egresses"] = json!({"database": {"service": "db"}});
    let mut db = http_service();
    db["egresses"] = json!({"cache": {"service": "cache"}});
    let inst = orch
        .create(spec(json!({"name": "chain", "services": {
            "app": app, "db": db, "cache": http_service()
        }})))
        .unwrap();
    wait_for(&inst, EventType::EnvironmentUp).await;
    let events = inst.log().lifecycle_events();
    let pos = |t: EventType, s: &str| {
        events
            .iter()
            .position(|e| e.event_type == t && e.service == s)
            .unwrap_or_else(|| panic!("no {t} for {s}"))
    };
    assert!(pos(EventType::ServiceReady, "cache") < pos(EventType::WiringResolved, "db"));
    assert!(pos(EventType::ServiceReady, "db") < pos(EventType::WiringResolved, "app"));
    assert!(pos(EventType::WiringResolved, "app") < pos(EventType::IngressPublished, "app"));
    assert!(pos(EventType::IngressPublished, "app") < pos(EventType::ServiceStarting, "app"));
    assert!(pos(EventType::ServiceReady, "app") < pos(EventType::EnvironmentUp, ""));
    inst.teardown(TeardownOptions::default()).await;
}

#[tokio::test]
async fn a_crash_fails_the_environment_and_stops_the_others() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let mut broken = sh("echo starting; echo intentional failure >&2; exit 1");
    broken["ingresses"] = json!({"default": {"protocol": "http"}});
    let inst = orch
        .create(spec(json!({"name": "crash", "services": {
            "api": http_service(), "broken": broken
        }})))
        .unwrap();
    let down = wait_for(&inst, EventType::EnvironmentDown).await;
    let events = inst.log().lifecycle_events();
    assert!(!events
        .iter()
        .any(|e| e.event_type == EventType::EnvironmentUp));
    let failed = events
        .iter()
        .find(|e| e.event_type == EventType::ServiceFailed)
        .unwrap();
    assert_eq!(
        (failed.service.as_str(), failed.error.as_str()),
        ("broken", "exit status 1")
    );
    let failing = events
        .iter()
        .find(|e| e.event_type == EventType::EnvironmentFailing)
        .unwrap();
    assert_eq!(failing.service, "broken");
    assert_eq!(failing.error, "service \"broken\": exit status 1");
    // environment.failing comes after every service stopped.
    let failing_pos = events
        .iter()
        .position(|e| e.event_type == EventType::EnvironmentFailing);
    for svc in ["api", "broken", "~test"] {
        let stopped = events
            .iter()
            .position(|e| e.event_type == EventType::ServiceStopped && e.service == svc);
        assert!(
            stopped < failing_pos,
            "{svc} stopped before environment.failing"
        );
    }
    assert!(down.message.contains("broken output:"), "{}", down.message);
    assert!(
        down.message.contains("intentional failure"),
        "{}",
        down.message
    );
    assert!(!down.message.contains("service.stopping"));
    // Our change: the directory survives a crash until the environment is deleted.
    assert!(inst.env_dir().exists());
    inst.teardown(TeardownOptions::default()).await;
    assert!(!inst.env_dir().exists());
    let after: Vec<_> = inst.log().lifecycle_events()[events.len()..].to_vec();
    assert!(after.is_empty(), "no events after down: {after:?}");
}

#[tokio::test]
async fn exit_status_zero_is_a_failure_too() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let mut quick = sh("exit 0");
    quick["ingresses"] = json!({"default": {"protocol": "tcp", "ready": {"timeout": "5s"}}});
    let inst = orch
        .create(spec(json!({"name": "zero", "services": {"quick": quick}})))
        .unwrap();
    let down = wait_for(&inst, EventType::EnvironmentDown).await;
    assert!(down.message.contains("exit status 0"), "{}", down.message);
    inst.teardown(TeardownOptions::default()).await;
}

#[tokio::test]
async fn readiness_timeout_reports_the_last_error() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let mut sleeper = sh("exec sleep 3600");
    sleeper["ingresses"] = json!({"default": {"protocol": "http", "ready": {"timeout": "200ms"}}});
    let inst = orch
        .create(spec(
            json!({"name": "slow", "services": {"sleeper": sleeper}}),
        ))
        .unwrap();
    wait_for(&inst, EventType::EnvironmentDown).await;
    let events = inst.log().lifecycle_events();
    assert!(events
        .iter()
        .any(|e| e.event_type == EventType::HealthCheckFailed && e.service == "sleeper"));
    let failed = events
        .iter()
        .find(|e| e.event_type == EventType::ServiceFailed)
        .unwrap();
    assert!(
        failed
            .error
            .starts_with("ingress \"default\": readiness check failed after 200ms (last error: "),
        "{}",
        failed.error
    );
    inst.teardown(TeardownOptions::default()).await;
}

/// A service that fails its readiness check is stopped (SIGINT) by rigd; what it prints as it
/// stops comes after its `service.failed`, so the failure summary shows what it said before.
#[tokio::test]
async fn output_caused_by_stopping_a_service_that_was_not_ready_is_not_its_last_output() {
    let dir = tempdir();
    // A stop grace a loaded machine cannot outlast: a SIGKILL would silence the trap.
    let orch = orchestrator_with(
        dir.path(),
        Settings {
            stop_grace: Duration::from_secs(20),
            ..Settings::default()
        },
    );
    let mut app = sh(
        "trap 'echo interrupted by rigd >&2; exit 1' INT; echo cannot bind: no config >&2; \
         while :; do sleep 0.05; done",
    );
    // Long enough for the shell to have set its trap before rigd gives up on it, even on a
    // loaded machine (a SIGINT before that ends it silently).
    app["ingresses"] = json!({"default": {"protocol": "http", "ready": {"timeout": "2s"}}});
    let inst = orch
        .create(spec(json!({"name": "not-ready", "services": {"app": app}})))
        .unwrap();
    let down = wait_for(&inst, EventType::EnvironmentDown).await;
    let output = inst.log().events();
    let failed = output
        .iter()
        .find(|e| e.event_type == EventType::ServiceFailed)
        .expect("service.failed");
    let interrupted = output
        .iter()
        .find(|e| {
            e.log
                .as_ref()
                .is_some_and(|l| l.data.contains("interrupted by rigd"))
        })
        .unwrap_or_else(|| {
            let logs: Vec<_> = output.iter().filter_map(|e| e.log.as_ref()).collect();
            panic!("no output from the service as it was stopped; its log: {logs:?}")
        });
    assert!(
        interrupted.seq > failed.seq,
        "service.failed is published before rigd stops the service"
    );
    assert!(
        down.message
            .contains("  app output:\n  | cannot bind: no config"),
        "{}",
        down.message
    );
    assert!(
        !down.message.contains("interrupted by rigd"),
        "{}",
        down.message
    );
    inst.teardown(TeardownOptions::default()).await;
}

/// A config of the wrong shape is named as the spec writes it, not by its Rust type.
/// A service that ignores SIGINT and never listens on its ingress, so it fails its readiness
/// check after a second and takes the whole stop grace to die.
fn stubborn_and_never_ready() -> serde_json::Value {
    let mut bad = sh("trap '' INT; while :; do sleep 0.05; done");
    bad["ingresses"] = json!({"default": {"protocol": "tcp", "ready": {"timeout": "1s"}}});
    bad
}

fn position(events: &[Arc<Event>], what: &str, f: impl Fn(&Event) -> bool) -> usize {
    events
        .iter()
        .position(|e| f(e))
        .unwrap_or_else(|| panic!("no {what}: {:#?}", events))
}

/// A readiness failure stops the other services at once, not only after the failed service's
/// own process (which ignores SIGINT) has been killed at the end of its stop grace.
#[tokio::test]
async fn a_readiness_failure_stops_the_others_before_the_failed_service_is_gone() {
    let dir = tempdir();
    let orch = orchestrator_with(
        dir.path(),
        Settings {
            stop_grace: Duration::from_secs(5),
            ..Settings::default()
        },
    );
    let inst = orch
        .create(spec(json!({"name": "not-ready", "services": {
            "bad": stubborn_and_never_ready(), "other": sh("exec sleep 60")
        }})))
        .unwrap();
    wait_for(&inst, EventType::EnvironmentDown).await;
    let events = inst.log().events();
    let other_stopping = position(&events, "service.stopping of other", |e| {
        e.event_type == EventType::ServiceStopping && e.service == "other"
    });
    let bad_killed = position(&events, "the remark that bad was killed", |e| {
        e.service == "bad"
            && e.log
                .as_ref()
                .is_some_and(|l| l.stream.is_rig() && l.data.contains("killed (SIGKILL)"))
    });
    let bad_stopped = position(&events, "service.stopped of bad", |e| {
        e.event_type == EventType::ServiceStopped && e.service == "bad"
    });
    assert!(
        other_stopping < bad_killed && other_stopping < bad_stopped,
        "other is told to stop before bad is killed: {:#?}",
        types(&inst)
    );
    let failing = wait_for(&inst, EventType::EnvironmentFailing).await;
    assert_eq!(failing.service, "bad");
    assert!(
        failing
            .error
            .starts_with("service \"bad\": ingress \"default\": readiness"),
        "{}",
        failing.error
    );
    inst.teardown(TeardownOptions::default()).await;
}

/// A service told to stop just before it would start (here, while it waits for a fork that
/// might hold its ports) is not started.
#[tokio::test]
async fn a_service_told_to_stop_before_it_starts_is_not_started() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    // A fork in flight when the service's ports are closed holds the service back.
    let fork = crate::ports::forking();
    let mut app = sh("touch \"$RIG_TEMP_DIR/ran\"; exec sleep 60");
    app["ingresses"] = json!({"default": {"protocol": "tcp"}});
    let inst = orch
        .create(spec(json!({"name": "too-late", "services": {"app": app}})))
        .unwrap();
    wait_for(&inst, EventType::IngressPublished).await;
    inst.services_token().cancel();
    drop(fork);
    wait_for(&inst, EventType::EnvironmentDown).await;
    let app_events = service_types(&inst, "app");
    assert!(
        !app_events.contains(&EventType::ServiceStarting),
        "{app_events:?}"
    );
    assert!(
        app_events.contains(&EventType::ServiceStopping),
        "{app_events:?}"
    );
    assert!(!inst.env_dir().join("app/ran").exists(), "the process ran");
    inst.teardown(TeardownOptions::default()).await;
}

/// Once a service has failed, no other service runs its init hooks: the client is not called
/// back for an environment that is already failing.
#[tokio::test]
async fn no_init_hook_is_called_after_a_service_failed() {
    let dir = tempdir();
    let orch = orchestrator_with(
        dir.path(),
        Settings {
            stop_grace: Duration::from_secs(5),
            ..Settings::default()
        },
    );
    // Comes up only once the test says so (after bad failed), then asks the client to seed it.
    let mut late = sh("while [ ! -e \"$RIG_ENV_DIR/go\" ]; do sleep 0.05; done; \
         exec python3 -m http.server --bind 127.0.0.1 \"$PORT\"");
    late["ingresses"] = json!({"default": {"protocol": "tcp"}});
    late["hooks"] = json!({"init": [{"type": "client_func", "client_func": {"name": "seed"}}]});
    let inst = orch
        .create(spec(json!({"name": "no-late-hooks", "services": {
            "bad": stubborn_and_never_ready(), "late": late
        }})))
        .unwrap();
    let failed = wait_for(&inst, EventType::ServiceFailed).await;
    assert_eq!(failed.service, "bad");
    std::fs::write(inst.env_dir().join("go"), "").unwrap();
    wait_for(&inst, EventType::EnvironmentDown).await;
    let called: Vec<_> = inst
        .log()
        .lifecycle_events()
        .iter()
        .filter(|e| e.event_type == EventType::CallbackRequest && e.seq > failed.seq)
        .map(|e| e.service.clone())
        .collect();
    assert!(called.is_empty(), "callbacks after bad failed: {called:?}");
    inst.teardown(TeardownOptions::default()).await;
}

#[tokio::test]
async fn a_process_config_that_is_not_an_object_shows_the_expected_shape() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let inst = orch
        .create(spec(json!({"name": "bad-config", "services": {
            "app": {"type": "process", "config": "./server"}
        }})))
        .unwrap();
    wait_for(&inst, EventType::EnvironmentDown).await;
    let events = inst.log().lifecycle_events();
    let failed = events
        .iter()
        .find(|e| e.event_type == EventType::ServiceFailed)
        .expect("service.failed");
    assert!(
        failed.error.starts_with(
            "invalid process config: expected an object like {\"command\": \"./server\", "
        ),
        "{}",
        failed.error
    );
    assert!(failed.error.ends_with(", got a string"), "{}", failed.error);
    inst.teardown(TeardownOptions::default()).await;
}

#[tokio::test]
async fn hooks_and_client_start_are_callbacks_answered_by_the_client() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let mut api = http_service();
    api["hooks"] = json!({
        "prestart": [{"type": "client_func", "client_func": {"name": "seed"}}],
        "init": [{"type": "client_func", "client_func": {"name": "migrate"}}]
    });
    let inst = orch
        .create(spec(json!({"name": "hooks", "services": {
            "api": api,
            "worker": {"type": "client", "config": {"start_handler": "run_worker"}}
        }})))
        .unwrap();
    // Play the client: answer every callback request as it appears.
    let log = inst.log().clone();
    let client = {
        let inst = inst.clone();
        tokio::spawn(async move {
            let mut answered = 0;
            let mut sub = log.subscribe(0, None, tokio_util::sync::CancellationToken::new());
            while let Some(e) = sub.next().await {
                if let Some(cb) = &e.callback {
                    let wiring = cb.wiring.as_ref().unwrap();
                    assert!(!wiring.env_dir.is_empty());
                    let mut resp = Event::for_service(EventType::CallbackResponse, &e.service);
                    resp.result = Some(Box::new(rig_types::CallbackResponse {
                        request_id: cb.request_id.clone(),
                        ..rig_types::CallbackResponse::default()
                    }));
                    inst.emit(resp);
                    answered += 1;
                }
                if e.event_type == EventType::EnvironmentUp {
                    return answered;
                }
            }
            answered
        })
    };
    wait_for(&inst, EventType::EnvironmentUp).await;
    assert_eq!(client.await.unwrap(), 3);
    use EventType::*;
    let api: Vec<_> = service_types(&inst, "api")
        .into_iter()
        .filter(|t| *t != HealthCheckFailed)
        .collect();
    assert_eq!(
        api,
        [
            IngressPublished,
            ServicePrestart,
            CallbackRequest,
            CallbackResponse,
            ServiceStarting,
            ServiceHealthy,
            ServiceInit,
            CallbackRequest,
            CallbackResponse,
            ServiceReady
        ]
    );
    inst.teardown(TeardownOptions::default()).await;
}

#[tokio::test]
async fn a_hook_error_fails_the_service_with_the_client_message() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let mut api = http_service();
    api["hooks"] = json!({"init": [{"type": "client_func", "client_func": {"name": "seed"}}]});
    let inst = orch
        .create(spec(json!({"name": "hookerr", "services": {"api": api}})))
        .unwrap();
    let req = wait_for(&inst, EventType::CallbackRequest).await;
    let mut resp = Event::for_service(EventType::CallbackResponse, "api");
    resp.result = Some(Box::new(rig_types::CallbackResponse {
        request_id: req.callback.as_ref().unwrap().request_id.clone(),
        error: "table exists".into(),
        data: None,
    }));
    inst.emit(resp);
    let down = wait_for(&inst, EventType::EnvironmentDown).await;
    assert!(
        down.message
            .contains("service \"api\": callback \"seed\": error: table exists"),
        "{}",
        down.message
    );
    inst.teardown(TeardownOptions::default()).await;
}

#[tokio::test]
async fn server_side_hooks_are_rejected_in_prestart() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let mut api = http_service();
    api["hooks"] = json!({"prestart": [{"type": "sql", "config": {}}]});
    let err = orch
        .create(spec(json!({"name": "sqlpre", "services": {"api": api}})))
        .err()
        .expect("refused at creation");
    assert_eq!(
        err.to_string(),
        "service \"api\": prestart hook type \"sql\" is not supported: prestart hooks are \
         client_func (server-side hooks run as init hooks)"
    );
}

#[tokio::test]
async fn a_client_service_error_fails_the_environment() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let inst = orch
        .create(spec(
            json!({"name": "clienterr", "services": {"api": http_service()}}),
        ))
        .unwrap();
    wait_for(&inst, EventType::EnvironmentUp).await;
    inst.fail_service("api", "worker panicked");
    let down = wait_for(&inst, EventType::EnvironmentDown).await;
    assert!(
        down.message.contains("service \"api\": worker panicked"),
        "{}",
        down.message
    );
    inst.teardown(TeardownOptions::default()).await;
}

#[tokio::test]
async fn a_process_ignoring_sigint_is_killed_after_the_grace_period() {
    let dir = tempdir();
    let remarks = stop_a_process_ignoring_sigint(&orchestrator(dir.path()), dir.path()).await;
    assert!(remarks.contains("killed (SIGKILL)"), "{remarks}");
}

/// A stop grace longer than the shutdown timeout is waited out, not cut short: the runner
/// that would have sent SIGKILL is not dropped with the process still running.
#[tokio::test]
async fn a_stop_grace_longer_than_the_shutdown_timeout_is_waited_out() {
    let dir = tempdir();
    let orch = orchestrator_with(
        dir.path(),
        Settings {
            stop_grace: Duration::from_secs(1),
            shutdown_timeout: Duration::from_millis(100),
            ..Settings::default()
        },
    );
    let remarks = stop_a_process_ignoring_sigint(&orch, dir.path()).await;
    assert!(
        remarks.contains("did not exit within 1s of SIGINT, so it was killed (SIGKILL)"),
        "{remarks}"
    );
}

/// Runs a shell that ignores SIGINT, tears its environment down, checks that the shell is
/// gone, and returns rigd's remarks on its log.
async fn stop_a_process_ignoring_sigint(orch: &Orchestrator, dir: &std::path::Path) -> String {
    // Args are expanded like Go's os.Expand (`$$` would vanish), so the script is a file.
    let script = dir.join("stubborn.sh");
    std::fs::write(
        &script,
        "trap '' INT\necho $$\nwhile :; do sleep 0.05; done\n",
    )
    .unwrap();
    let service = json!({"type": "process", "config": {"command": "sh"}, "args": [script]});
    let inst = orch
        .create(spec(
            json!({"name": "stubborn", "services": {"s": service}}),
        ))
        .unwrap();
    // The shell's first output is its pid.
    let mut sub = inst
        .log()
        .subscribe(0, None, tokio_util::sync::CancellationToken::new());
    let pid: i32 = loop {
        let e = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        if let Some(log) = e.log.as_ref().filter(|_| e.service == "s") {
            break log
                .data
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("not a pid: {:?}", log.data));
        }
    };
    wait_for(&inst, EventType::EnvironmentUp).await;
    inst.teardown(TeardownOptions::default()).await;
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "process {pid} survived teardown");
    inst.log()
        .events()
        .iter()
        .filter_map(|e| e.log.as_ref())
        .filter(|log| log.stream.is_rig())
        .map(|log| log.data.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn unknown_types_are_refused_up_front() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    let env = spec(json!({"name": "x", "services": {"a": {"type": "script"}}}));
    let err = orch.create(env).err().unwrap();
    assert_eq!(
        err.to_string(),
        "service \"a\": unknown service type: \"script\""
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no env dir left behind"
    );
}

#[tokio::test]
async fn observe_mode_records_the_traffic_on_every_edge() {
    let dir = tempdir();
    let orch = orchestrator(dir.path());
    // A caller that keeps requesting /hello from api through its egress.
    let caller = json!({
        "type": "process",
        "config": {"command": "python3"},
        "args": ["-c", "import os, time, urllib.request\nurl = 'http://%s:%s/hello' % (os.environ['API_HOST'], os.environ['API_PORT'])\nwhile True:\n    try:\n        urllib.request.urlopen(url).read()\n    except Exception as e:\n        print(e, flush=True)\n    time.sleep(0.05)\n"],
        "egresses": {"api": {"service": "api"}}
    });
    let env =
        spec(json!({"name": "observed", "services": {"api": http_service(), "caller": caller}}));
    assert!(env.observe, "observe is on by default");
    let inst = orch.create(env).unwrap();
    let up = wait_for(&inst, EventType::EnvironmentUp).await;

    // The test's endpoint is the ~test proxy, not api itself.
    let api_published = inst
        .log()
        .lifecycle_events()
        .into_iter()
        .find(|e| e.event_type == EventType::IngressPublished && e.service == "api")
        .unwrap();
    let test_endpoint = &up.ingresses["api"]["default"];
    assert_ne!(
        test_endpoint.hostport,
        api_published.endpoint.as_ref().unwrap().hostport
    );

    // Traffic from caller to api, recorded by the proxy on that edge.
    let mut sub = inst.log().subscribe(
        0,
        Some(crate::events::EventFilter::traffic_only()),
        tokio_util::sync::CancellationToken::new(),
    );
    let mut saw_probe = false;
    let request = loop {
        let e = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        let Some(r) = e.request.as_ref() else {
            continue;
        };
        assert!(e.service.is_empty(), "proxy events carry no service");
        saw_probe |= r.probe && r.source == "~test";
        if r.source == "caller" && r.path == "/hello" {
            break r.clone();
        }
    };
    assert_eq!(
        (request.target.as_str(), request.method.as_str()),
        ("api", "GET")
    );
    assert_eq!(
        request.status_code, 404,
        "python's http.server has no /hello"
    );
    assert!(
        saw_probe,
        "readiness probes through the ~test proxy are marked"
    );
    inst.teardown(TeardownOptions::default()).await;
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
