//! Environments through the SDK against the real rigd: process and in-test services wired
//! together, endpoints, hooks, `.env`, and every way an environment ends.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rig::transport::client::RigdClient;
use rig::Protocol;
use support::{builder, gateway, get, http_server, serve};
use tokio::sync::oneshot;

/// Two processes and a func: the func gets its wiring and serves HTTP, a process calls it
/// through its egress, a prestart hook seeds a file a process serves, an init hook calls
/// the func once it is healthy, and `.env` reaches the process.
#[tokio::test]
async fn processes_and_a_func_are_wired_hooked_and_reachable() -> Result<(), rig::BoxError> {
    let (wiring_tx, wiring_rx) = oneshot::channel();
    let seeded = Arc::new(Mutex::new(Vec::<String>::new()));
    let init_calls = Arc::new(AtomicUsize::new(0));

    let api = {
        let seeded = seeded.clone();
        rig::func(move |wiring| async move {
            let _ = wiring_tx.send(wiring.clone());
            wiring.log("api starting");
            {
                use std::io::Write;
                // Writers: a line written in pieces is one line; a partial line is sent
                // when the writer is dropped.
                let mut err = wiring.stderr();
                write!(err, "warming ")?;
                writeln!(err, "caches")?;
                write!(wiring.stdout(), "no newline")?;
            }
            serve(&wiring, move |_method, path| match path {
                "/price" => (200, "42".into()),
                p if p.starts_with("/seed/") => {
                    seeded.lock().unwrap().push(p[6..].to_string());
                    (201, "seeded".into())
                }
                _ => (200, "api".into()),
            })
            .await
        })
    };
    let api = {
        let init_calls = init_calls.clone();
        api.init(move |wiring| async move {
            init_calls.fetch_add(1, Ordering::SeqCst);
            // Runs once the api is healthy: its own ingress answers.
            let url = format!("{}/seed/widget", wiring.ingress()?.url());
            let response = get(&url).await?;
            if response.status != 201 {
                return Err(format!("seeding answered {}", response.status).into());
            }
            Ok(())
        })
    };
    let files = http_server("${RIG_TEMP_DIR}").prestart(|wiring| async move {
        // Runs before the server starts, in the directory it will serve.
        std::fs::write(wiring.temp_dir().join("seed.txt"), "seeded before start")?;
        Ok(())
    });
    let gateway = gateway().env("GREETING", "hello from the test");

    let env = builder("sdk-wiring")
        .observe(false)
        .services([("api", api), ("files", files), ("gateway", gateway)])
        .up()
        .await?;

    assert_eq!(
        env.services().collect::<Vec<_>>(),
        ["api", "files", "gateway"]
    );
    assert!(env.env_dir().is_dir(), "{}", env.env_dir().display());

    // The func's wiring: its ingress is where the test reaches it (no proxy without observe).
    let wiring = wiring_rx.await.expect("the func was started");
    assert_eq!(wiring.service(), "api");
    let api_endpoint = env.endpoint("api")?;
    assert_eq!(wiring.ingress()?.host_port, api_endpoint.host_port);
    assert_eq!(api_endpoint.protocol, Protocol::Http);
    assert_eq!(api_endpoint.host(), "127.0.0.1");
    assert!(wiring.temp_dir().starts_with(env.env_dir()));
    assert_eq!(
        env.endpoint_at("api", "default")?.host_port,
        api_endpoint.host_port
    );
    assert_eq!(
        env.url("api")?,
        format!("http://{}", api_endpoint.host_port)
    );

    // The init hook ran exactly once, against the running func.
    assert_eq!(init_calls.load(Ordering::SeqCst), 1);
    assert_eq!(*seeded.lock().unwrap(), ["widget"]);

    // The prestart hook's file is served by the process.
    let seed = get(&format!("{}/seed.txt", env.url("files")?)).await?;
    assert_eq!(
        (seed.status, seed.body.as_str()),
        (200, "seeded before start")
    );

    // The gateway process calls the func through its egress, and sees the .env variable.
    let via = get(&format!("{}/price", env.url("gateway")?)).await?;
    assert_eq!((via.status, via.body.as_str()), (200, "via gateway: 42"));
    let greeting = get(&format!("{}/env/GREETING", env.url("gateway")?)).await?;
    assert_eq!(greeting.body, "hello from the test");

    // Without observation there is no traffic to check, and the check says so at once.
    let err = env
        .expect_requests(&rig::RequestFilter::new().to("api"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, rig::Error::NotObserving { .. }), "{err}");
    // Nor does a look at what was recorded pass as "nothing happened".
    let err = env
        .requests(&rig::RequestFilter::new().to("api"))
        .unwrap_err();
    assert!(matches!(err, rig::Error::NotObserving { .. }), "{err}");
    assert!(
        err.to_string().ends_with(
            "was built with .observe(false), so its traffic is not recorded: remove \
             .observe(false) to check traffic"
        ),
        "{err}"
    );

    // Lookups that fail say what exists.
    let err = env.endpoint("nope").unwrap_err().to_string();
    assert_eq!(
        err,
        "service \"nope\" not found in environment \"sdk-wiring\" (services: api, files, gateway)"
    );
    let err = env.endpoint_at("api", "admin").unwrap_err().to_string();
    assert_eq!(
        err,
        "ingress \"admin\" not found on service \"api\" (ingresses: default)"
    );

    let id = env.id().to_string();
    let env_dir = env.env_dir().to_path_buf();
    let client = RigdClient::new(env.rigd_addr())?;
    let report = env.down().await?;

    // Everything is gone: rigd no longer knows the environment, its directory is removed,
    // and the event log was written.
    assert_eq!(report.id, id);
    assert!(!report.preserved);
    let err = client.get_environment(&id).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!env_dir.exists(), "{} still exists", env_dir.display());
    let log = report.log_file.expect("rigd wrote the event log");
    let text = std::fs::read_to_string(&log)?;
    let line = text
        .lines()
        .find(|l| l.contains("api starting"))
        .unwrap_or_else(|| panic!("the func's log line is not in {}", log.display()));
    let event: serde_json::Value = serde_json::from_str(line)?;
    assert_eq!(event["type"], "service.log", "{line}");
    assert_eq!(event["service"], "api", "{line}");
    assert_eq!(event["log"]["stream"], "stdout", "{line}");
    let stream_of = |text: &str| -> Option<serde_json::Value> {
        let line = std::fs::read_to_string(&log)
            .ok()?
            .lines()
            .find(|l| l.contains(text))?
            .to_string();
        let event: serde_json::Value = serde_json::from_str(&line).ok()?;
        Some(event["log"]["stream"].clone())
    };
    assert_eq!(stream_of("warming caches"), Some("stderr".into()));
    assert_eq!(stream_of("no newline"), Some("stdout".into()));
    Ok(())
}

/// Dropping an environment without `down()` tears it down before the drop returns, inside
/// `#[tokio::test]`'s current-thread runtime.
#[tokio::test]
async fn drop_without_down_tears_the_environment_down() -> Result<(), rig::BoxError> {
    let env = builder("sdk-drop")
        .observe(false)
        .service("web", http_server("."))
        .up()
        .await?;
    let id = env.id().to_string();
    let env_dir = env.env_dir().to_path_buf();
    let client = RigdClient::new(env.rigd_addr())?;
    client.get_environment(&id).await?;

    drop(env);

    let err = client.get_environment(&id).await.unwrap_err();
    assert!(err.is_not_found(), "still there after drop: {err}");
    assert!(!env_dir.exists());
    Ok(())
}

/// A drop right after the test's own call to rigd (a note here; a traffic count or `check`
/// alike) tears down at once: the connection that call left open is driven by the SDK's
/// thread, not by the test's runtime, which the drop blocks.
#[tokio::test]
async fn a_drop_after_a_note_tears_the_environment_down_at_once() -> Result<(), rig::BoxError> {
    let env = builder("sdk-note-drop")
        .observe(false)
        .service("web", http_server("."))
        .up()
        .await?;
    let id = env.id().to_string();
    let client = RigdClient::new(env.rigd_addr())?;
    env.note("the web service was checked").await?;

    drop(env);

    let err = client.get_environment(&id).await.unwrap_err();
    assert!(err.is_not_found(), "still there after drop: {err}");
    Ok(())
}

/// A drop while the test panics marks the run as failed in rigd's log, and records why: the
/// panic's message and place are a `test.note`, so `rig explain` says more than `FAILED`.
#[tokio::test]
async fn a_panicking_test_tears_down_with_reason_test_failed() -> Result<(), rig::BoxError> {
    let (id_tx, id_rx) = oneshot::channel();
    let panic_line = line!() + 9;
    let test = tokio::spawn(async move {
        let env = builder("sdk-panic")
            .observe(false)
            .service("web", http_server("."))
            .up()
            .await
            .expect("the environment comes up");
        let _ = id_tx.send((env.id().to_string(), env.rigd_addr().to_string()));
        panic!("the test's own assertion failed");
    });
    let panicked = test.await.unwrap_err();
    assert!(panicked.is_panic());
    let (id, addr) = id_rx.await.expect("the environment came up");

    let err = RigdClient::new(&addr)?
        .get_environment(&id)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let (header, notes) = log_header_and_notes(&id)?;
    assert_eq!(header["outcome"], "failed", "{header}");
    assert_eq!(
        notes,
        [format!(
            "environments.rs:{panic_line}: panicked: the test's own assertion failed"
        )],
        "the panic is the run's one note"
    );
    Ok(())
}

/// A failed `assert` that ends the test is recorded once: its panic repeats the note the
/// assertion posted, so the drop does not post it again.
#[tokio::test]
async fn a_failed_assert_that_ends_the_test_is_noted_once() -> Result<(), rig::BoxError> {
    let (id_tx, id_rx) = oneshot::channel();
    let assert_line = line!() + 11;
    let test = tokio::spawn(async move {
        let env = builder("sdk-assert-panic")
            .service("web", http_server("."))
            .up()
            .await
            .expect("the environment comes up");
        let _ = id_tx.send(env.id().to_string());
        get(&env.url("web").expect("web speaks HTTP"))
            .await
            .expect("web answers");
        env.assert_requests(&rig::RequestFilter::new().to("web"), 0)
            .await;
    });
    assert!(test.await.unwrap_err().is_panic());
    let id = id_rx.await.expect("the environment came up");

    let (header, notes) = log_header_and_notes(&id)?;
    assert_eq!(header["outcome"], "failed", "{header}");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(&format!(
            "environments.rs:{assert_line}: expected exactly 0 requests to web, saw 1"
        )),
        "{notes:?}"
    );
    Ok(())
}

/// The header and the `test.note` texts of the event log rigd wrote for environment `id`.
fn log_header_and_notes(id: &str) -> Result<(serde_json::Value, Vec<String>), rig::BoxError> {
    let logs = support::rig_dir().join("logs");
    let log = std::fs::read_dir(&logs)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl") && p.to_string_lossy().contains(id))
        .expect("rigd wrote the log at teardown");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let header = events.first().cloned().expect("a JSON header");
    let notes = events
        .iter()
        .filter(|e| e["type"] == "test.note")
        .filter_map(|e| e["error"].as_str().map(str::to_string))
        .collect();
    Ok((header, notes))
}

/// Many environments at once, sharing one rigd.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_environments_come_up_concurrently() -> Result<(), rig::BoxError> {
    let ups = (0..16).map(|i| {
        builder(&format!("sdk-parallel-{i}"))
            .observe(false)
            .service(
                "echo",
                rig::func(move |wiring| async move {
                    serve(&wiring, move |_, _| (200, format!("echo {i}"))).await
                }),
            )
            .up()
    });
    let envs: Vec<rig::Environment> = futures_util::future::join_all(ups)
        .await
        .into_iter()
        .collect::<rig::Result<_>>()?;
    let rigds: std::collections::BTreeSet<&str> = envs.iter().map(|e| e.rigd_addr()).collect();
    assert_eq!(rigds.len(), 1, "one shared rigd: {rigds:?}");
    for (i, env) in envs.iter().enumerate() {
        let response = get(&env.url("echo")?).await?;
        assert_eq!(response.body, format!("echo {i}"));
    }
    for env in envs {
        env.down().await?;
    }
    Ok(())
}

/// The TTL is renewed while the environment is in use.
#[tokio::test]
async fn keepalive_outlives_a_short_ttl() -> Result<(), rig::BoxError> {
    let ttl = Duration::from_secs(2);
    let env = builder("sdk-ttl")
        .observe(false)
        .ttl(ttl)
        .service("web", http_server("."))
        .up()
        .await?;
    let client = RigdClient::new(env.rigd_addr())?;
    // Time passing is what is under test: without keepalives rigd removes the environment
    // one TTL after it was created.
    tokio::time::sleep(ttl * 3).await;
    client.get_environment(env.id()).await?;
    env.down().await?;
    Ok(())
}

/// `keep_for` (the builder form of `RIG_TTL`) leaves the environment running after `down()`
/// until its TTL runs out without a client.
#[tokio::test]
async fn keep_for_leaves_the_environment_to_its_ttl() -> Result<(), rig::BoxError> {
    let env = builder("sdk-keep-for")
        .observe(false)
        .keep_for(Duration::from_secs(2))
        .service("web", http_server("."))
        .up()
        .await?;
    let (id, url) = (env.id().to_string(), env.url("web")?);
    let client = RigdClient::new(env.rigd_addr())?;
    let report = env.down().await?;
    assert_eq!(report.kept_for, Some(Duration::from_secs(2)));
    assert_eq!(report.log_file, None, "nothing was torn down");
    // Still there, and still serving.
    client.get_environment(&id).await?;
    assert_eq!(get(&url).await?.status, 200);
    // Gone once the TTL passes without keepalives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client.get_environment(&id).await {
            Err(e) if e.is_not_found() => break,
            _ if tokio::time::Instant::now() > deadline => {
                panic!("environment {id} outlived its 2 s TTL by 30 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Ok(())
}

/// `check` records a test's own error as a failure (rigd cannot see what the test returns),
/// and passes a success through without a note.
#[tokio::test]
async fn check_marks_the_run_failed_on_an_error_only() -> Result<(), rig::BoxError> {
    for (name, result) in [
        ("sdk-check-ok", Ok(7)),
        ("sdk-check-err", Err("total was 0")),
    ] {
        let env = builder(name)
            .observe(false)
            .service("web", http_server("."))
            .up()
            .await?;
        let (checked_at, checked) = (line!(), env.check(result));
        assert_eq!(checked.await, result);
        let report = env.down().await?;
        let text = std::fs::read_to_string(report.log_file.expect("rigd wrote the event log"))?;
        let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or("{}"))?;
        let note = text.lines().find(|l| l.contains("\"test.note\""));
        match result {
            Ok(_) => {
                assert_eq!(header["outcome"], "passed", "{header}");
                assert_eq!(note, None);
            }
            Err(_) => {
                assert_eq!(header["outcome"], "failed", "{header}");
                let note: serde_json::Value = serde_json::from_str(note.expect("a note"))?;
                assert_eq!(
                    note["error"],
                    format!("environments.rs:{checked_at}: total was 0")
                );
            }
        }
    }
    Ok(())
}

/// `note` records a failure note: the run's outcome is failed and the note is in the log.
#[tokio::test]
async fn a_note_marks_the_run_failed() -> Result<(), rig::BoxError> {
    let env = builder("sdk-note")
        .observe(false)
        .service("web", http_server("."))
        .up()
        .await?;
    // The note carries the caller's file:line.
    let (noted_at, note) = (line!(), env.note("total was 0, expected 42"));
    note.await?;
    let report = env.down().await?;
    let log = report.log_file.expect("rigd wrote the event log");
    let text = std::fs::read_to_string(&log)?;
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or("{}"))?;
    assert_eq!(header["outcome"], "failed", "{header}");
    let note = text
        .lines()
        .find(|l| l.contains("\"test.note\""))
        .expect("the note is in the log");
    let note: serde_json::Value = serde_json::from_str(note)?;
    assert_eq!(
        note["error"],
        format!("environments.rs:{noted_at}: total was 0, expected 42")
    );
    Ok(())
}

/// `rig::cargo(path)` has rigd build the package in that directory and run its binary, with
/// the service's own `.env`.
#[tokio::test]
async fn a_cargo_package_is_built_and_run_with_its_own_env() -> Result<(), rig::BoxError> {
    // SAFETY: getpid(2) cannot fail and has no preconditions.
    let pid = unsafe { libc::getpid() };
    let package = std::env::temp_dir().join(format!("rig-sdk-cargo-{pid}"));
    let _ = std::fs::remove_dir_all(&package);
    std::fs::create_dir_all(package.join("src"))?;
    std::fs::write(
        package.join("Cargo.toml"),
        "[package]\nname = \"greeter\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [[bin]]\nname = \"greeter\"\npath = \"src/main.rs\"\n\n\
         [[bin]]\nname = \"other\"\npath = \"src/other.rs\"\n\n[workspace]\n",
    )?;
    std::fs::write(
        package.join("src/main.rs"),
        r#"use std::io::Write;
fn main() {
    let mode = std::env::var("MODE").unwrap_or_default();
    let port = std::env::var("GREETING_PORT").expect("GREETING_PORT");
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind");
    for stream in listener.incoming().flatten() {
        let _ = (&stream).write_all(mode.as_bytes());
    }
}
"#,
    )?;
    std::fs::write(package.join("src/other.rs"), "fn main() {}\n")?;

    let env = builder("sdk-cargo")
        .observe(false)
        .service(
            "greeter",
            rig::cargo(package.to_string_lossy())
                .bin("greeter")
                .env("MODE", "from-the-sdk")
                .no_ingress()
                .ingress("greeting", Protocol::Tcp),
        )
        .up()
        .await?;
    // Its only ingress is its endpoint, and url() names that ingress when it is not HTTP.
    let err = env.url("greeter").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ingress \"greeting\" of \"greeter\" speaks tcp, not HTTP"),
        "{err}"
    );
    let endpoint = env.endpoint("greeter")?;
    let mut stream = tokio::net::TcpStream::connect(&endpoint.host_port).await?;
    let mut greeting = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut greeting).await?;
    assert_eq!(greeting, "from-the-sdk");
    env.down().await?;
    let _ = std::fs::remove_dir_all(&package);
    Ok(())
}
