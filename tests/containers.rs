//! The `container` type through the real `rigd` binary and a real Docker engine, with images
//! made locally from host binaries (`support::images`): a container reached by a process
//! through its egress, a container reaching a process on the host through its egress (observed
//! or not), `exec` hooks, crashes, DELETE, images missing or present, an engine
//! that does not answer, and containers left by a killed rigd.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rig_types::EventType::*;
use rig_types::{Event, EventType};
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::images::{busybox, containers_labelled};
use support::{reaper_of, Events, Rigd};

/// How long cleanup after a killed rigd may take.
const CLEANUP: Duration = Duration::from_secs(30);

/// A busybox container serving `/rig/temp` over HTTP on port 8080 inside, after writing
/// `index.html` there (so the page also proves the temp dir mount).
fn web_container(image: &str) -> Value {
    json!({
        "type": "container",
        "config": {
            "image": image,
            "cmd": ["sh", "-c",
                    "echo hello from the container > /rig/temp/index.html && echo web started && exec httpd -f -p 8080 -h /rig/temp"],
        },
        "ingresses": {"default": {"protocol": "http", "container_port": 8080}},
    })
}

fn output_of(log: &[Event], service: &str) -> String {
    log.iter()
        .filter(|e| e.event_type == ServiceLog && e.service == service)
        .filter_map(|e| e.log.as_ref().map(|l| l.data.clone()))
        .collect()
}

/// Waits until `pred` holds for `service`'s output (from the log, polled with a deadline).
async fn wait_for_output(rigd: &Rigd, id: &str, service: &str, needle: &str) -> String {
    let deadline = Instant::now() + support::WAIT;
    loop {
        let text = output_of(&rigd.log(id).await, service);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never printed {needle:?}; it printed {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn container_exists(name_or_id: &str) -> bool {
    Command::new("docker")
        .args(["container", "inspect", name_or_id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn artifact_types(events: &Events) -> Vec<EventType> {
    events
        .seen()
        .iter()
        .filter(|e| e.event_type.to_string().starts_with("artifact."))
        .map(|e| e.event_type.clone())
        .collect()
}

#[tokio::test]
async fn a_container_serves_a_process_through_its_egress_runs_exec_hooks_and_goes_on_delete() {
    let image = busybox();
    let rigd = Rigd::start();
    let mut web = web_container(&image);
    // A second view of the same port inside, as raw TCP: it gets a host port of its own.
    web["ingresses"]["raw"] = json!({"protocol": "tcp", "container_port": 8080});
    web["hooks"] = json!({"init": [{"type": "exec", "config": {"command":
        ["sh", "-c", "echo hook ran in $(cat /rig/temp/index.html | wc -c) bytes; ls /rig/env"]}}]});
    let id = rigd
        .create(json!({"name": "containers", "services": {
            "web": web,
            "client": {
                "type": "process",
                "config": {"command": "sh"},
                "args": ["-c", "curl -sS http://${WEB_HOST}:${WEB_PORT}/index.html && exec sleep 1000"],
                "egresses": {"web": {"service": "web"}},
            },
        }}))
        .await;
    let mut events = rigd.events(&id);
    let up = events.until(EnvironmentUp).await;

    // The image is local: used without contacting a registry.
    assert_eq!(artifact_types(&events), [ArtifactCached]);
    let cached = &events.seen()[events.position(ArtifactCached, "")];
    assert_eq!(cached.artifact, format!("docker:{image}"));

    // The process reached the container through its egress.
    wait_for_output(&rigd, &id, "client", "hello from the container").await;
    // The test reaches it too (through its proxy).
    let url = format!(
        "http://{}/index.html",
        up.ingresses["web"]["default"].hostport
    );
    let raw_url = format!("http://{}/index.html", up.ingresses["web"]["raw"].hostport);
    for url in [url, raw_url] {
        let page = Command::new("curl")
            .args(["-sS", &url])
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&page.stdout),
            "hello from the container\n",
            "{url}"
        );
    }

    // Its output and the exec hook's are in its log; the hook saw both mounts.
    let web_log = wait_for_output(&rigd, &id, "web", "web started").await;
    assert!(web_log.contains("hook ran in 25 bytes"), "{web_log:?}");
    assert!(
        web_log.contains("web"),
        "/rig/env lists the service dirs: {web_log:?}"
    );
    assert!(events.position(ServiceInit, "web") < events.position(ServiceReady, "web"));

    // It is labelled with its environment and service.
    let ours = containers_labelled("dev.rig-rs.environment", &id);
    assert_eq!(ours.len(), 1, "{ours:?}");
    let name = format!("rig-{id}-web");
    assert!(container_exists(&name));

    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
    assert!(!container_exists(&name), "DELETE removes the container");
    assert!(containers_labelled("dev.rig-rs.environment", &id).is_empty());
}

/// An environment where the container `caller` fetches a page from the host process `api`
/// through its egress, prints it, and keeps running.
fn container_calling_the_host(image: &str, observe: bool) -> Value {
    json!({"name": "egress", "observe": observe, "services": {
        "api": {
            "type": "process",
            "config": {"command": "sh"},
            "args": ["-c", "echo hello from the host > ${RIG_TEMP_DIR}/index.html && \
                            exec python3 -m http.server --bind 127.0.0.1 -d ${RIG_TEMP_DIR} ${PORT}"],
            "ingresses": {"default": {"protocol": "http"}},
        },
        "caller": {
            "type": "container",
            "config": {
                "image": image,
                "cmd": ["sh", "-c",
                        "echo calling ${API_HOST}; wget -q -O - http://${API_HOST}:${API_PORT}/index.html && exec sleep 1000"],
            },
            "egresses": {"api": {"service": "api"}},
        },
    }})
}

/// Runs [`container_calling_the_host`] until the container printed the host's page, and
/// returns the environment's events so far.
async fn container_reaches_the_host(observe: bool) -> Vec<Event> {
    let image = busybox();
    let rigd = Rigd::start();
    let id = rigd
        .create(container_calling_the_host(&image, observe))
        .await;
    let mut events = rigd.events(&id);
    events.until(EnvironmentUp).await;
    let out = wait_for_output(&rigd, &id, "caller", "hello from the host").await;
    assert!(
        out.contains("calling host.docker.internal"),
        "the container's wiring names the host: {out:?}"
    );
    let log = rigd.log(&id).await;
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
    log
}

#[tokio::test]
async fn a_container_reaches_a_host_process_through_its_observed_egress() {
    let log = container_reaches_the_host(true).await;
    let request = log
        .iter()
        .filter(|e| e.event_type == RequestCompleted)
        .filter_map(|e| e.request.as_deref())
        .find(|r| r.source == "caller" && r.path == "/index.html")
        .unwrap_or_else(|| {
            panic!(
                "no request from the container on its edge:\n{}",
                support::describe(&log)
            )
        });
    assert_eq!(request.target, "api");
    assert_eq!(request.status_code, 200);
}

#[tokio::test]
async fn a_container_reaches_a_host_process_through_its_unobserved_egress() {
    let log = container_reaches_the_host(false).await;
    assert!(
        !log.iter().any(|e| e.event_type == RequestCompleted),
        "no proxy, no traffic events"
    );
}

/// Every container on the bridge can reach the gateway address, but a container's relays
/// to the host serve that container only: another one gets its connection closed.
#[tokio::test]
async fn another_container_cannot_use_a_containers_relay_to_the_host() {
    let image = busybox();
    let rigd = Rigd::start();
    let mut spec = container_calling_the_host(&image, false);
    spec["services"]["caller"]["config"]["cmd"] = json!([
        "sh",
        "-c",
        "echo relay ${API_HOST}:${API_PORT}; \
         wget -q -O - http://${API_HOST}:${API_PORT}/index.html && exec sleep 1000"
    ]);
    let id = rigd.create(spec).await;
    rigd.events(&id).until(EnvironmentUp).await;
    let out = wait_for_output(&rigd, &id, "caller", "hello from the host").await;
    let relay = out
        .lines()
        .find_map(|l| l.strip_prefix("relay "))
        .expect("the caller printed its relay")
        .trim()
        .to_string();

    // (nc, not wget: this static busybox's wget crashes in a plain `docker run`.)
    let (host, port) = relay.rsplit_once(':').expect("host:port");
    let foreign = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--add-host",
            "host.docker.internal:host-gateway",
        ])
        .args([image.as_str(), "sh", "-c"])
        .arg(format!(
            r"printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc {host} {port}; echo nc done"
        ))
        .stdin(Stdio::null())
        .output()
        .expect("run docker");
    let got = String::from_utf8_lossy(&foreign.stdout);
    assert!(
        got.contains("nc done") && !got.contains("hello from the host"),
        "another container was served through the relay: {got:?} {}",
        String::from_utf8_lossy(&foreign.stderr)
    );
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

#[tokio::test]
async fn a_crashing_container_fails_the_environment() {
    let image = busybox();
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "crash", "services": {
            // An ingress that never answers HTTP: the service cannot become ready first.
            "job": {"type": "container",
                    "config": {"image": image, "cmd": ["sh", "-c", "echo going down >&2; exit 3"]},
                    "ingresses": {"default": {"protocol": "http", "container_port": 8080}}},
        }}))
        .await;
    let mut events = rigd.events(&id);
    let failed = events.until(ServiceFailed).await;
    assert_eq!(failed.service, "job");
    assert_eq!(failed.error, "container exited with code 3");
    let failing = events.until(EnvironmentFailing).await;
    assert_eq!(
        failing.error,
        "service \"job\": container exited with code 3"
    );
    events.until(EnvironmentDown).await;
    assert!(!events.saw(EnvironmentUp));
    let log = rigd.log(&id).await;
    assert!(
        log.iter().any(|e| e.service == "job"
            && e.log.as_ref().is_some_and(
                |l| l.data.contains("going down") && l.stream == rig_types::LogStream::Stderr
            )),
        "the container's stderr is in the log"
    );
    assert!(
        !container_exists(&format!("rig-{id}-job")),
        "a crashed container is removed"
    );
}

/// A container is not ready before it runs: one whose command cannot start fails its
/// environment before `environment.up`, though it has no ingress to probe.
#[tokio::test]
async fn a_container_that_cannot_start_is_never_ready() {
    let image = busybox();
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "nostart", "services": {
            "worker": {"type": "container", "config": {"image": image, "cmd": ["/no/such/binary"]}},
        }}))
        .await;
    let mut events = rigd.events(&id);
    let failed = events.until(ServiceFailed).await;
    assert!(failed.error.contains("/no/such/binary"), "{failed:?}");
    events.until(EnvironmentDown).await;
    let worker_ready = events
        .seen()
        .iter()
        .any(|e| e.event_type == ServiceReady && e.service == "worker");
    assert!(!worker_ready, "ready before it ran: {:?}", events.seen());
    assert!(!events.saw(EnvironmentUp));
}

/// A container whose command finishes (exit 0) while its environment runs fails it, and
/// the error says why that is a failure.
#[tokio::test]
async fn a_container_that_exits_0_says_services_must_keep_running() {
    let image = busybox();
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "oneshot", "services": {
            "job": {"type": "container", "config": {"image": image, "cmd": ["sh", "-c", "echo done"]}},
        }}))
        .await;
    let failed = rigd.events(&id).until(ServiceFailed).await;
    assert_eq!(
        failed.error,
        "container exited with code 0 before the environment was torn down (services must \
         keep running)"
    );
}

/// Docker's port publisher accepts connections on a container's published port as soon as
/// the container runs; a TCP ingress is ready only once the service in it listens.
#[tokio::test]
async fn a_container_tcp_ingress_is_ready_only_once_the_service_listens() {
    let image = busybox();
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "slowlisten", "services": {
            "slow": {"type": "container",
                     "config": {"image": image, "cmd": ["sh", "-c",
                        "sleep 1; echo listening now; exec httpd -f -p 8080"]},
                     "ingresses": {"default": {"protocol": "tcp", "container_port": 8080}}},
        }}))
        .await;
    let mut events = rigd.events(&id);
    events.until(EnvironmentUp).await;
    let log = rigd.log(&id).await;
    let said = log
        .iter()
        .position(|e| {
            e.log
                .as_ref()
                .is_some_and(|l| l.data.contains("listening now"))
        })
        .expect("the container said it listens");
    let healthy = log
        .iter()
        .position(|e| e.event_type == ServiceHealthy && e.service == "slow")
        .expect("service.healthy");
    assert!(
        said < healthy,
        "healthy before the service listened: {log:#?}"
    );
}

/// An app in a container that listens on the container's own loopback cannot be reached
/// through the published port; the readiness failure says so and what to do.
#[tokio::test]
async fn an_app_listening_on_the_containers_loopback_is_told_to_listen_on_all_addresses() {
    let image = busybox();
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "loopback", "services": {
            "web": {"type": "container",
                    "config": {"image": image, "cmd": ["httpd", "-f", "-p", "127.0.0.1:8080"]},
                    "ingresses": {"default": {"protocol": "tcp", "container_port": 8080,
                                              "ready": {"timeout": "2s"}}}},
        }}))
        .await;
    let failed = rigd.events(&id).until(ServiceFailed).await;
    assert!(
        failed.error.ends_with(
            "; it listens on 127.0.0.1:8080 only, the container's own loopback, which the \
             published port cannot reach: make it listen on all addresses (0.0.0.0)"
        ),
        "{}",
        failed.error
    );
}

#[tokio::test]
async fn a_missing_image_that_cannot_be_pulled_is_artifact_failed() {
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "nopull", "services": {
            "app": {"type": "container", "config": {"image": "rig-test/never-built:v1"}},
        }}))
        .await;
    let mut events = rigd.events(&id);
    let failed = events.until(ArtifactFailed).await;
    assert_eq!(failed.artifact, "docker:rig-test/never-built:v1");
    assert!(
        failed
            .error
            .starts_with("docker pull rig-test/never-built:v1: "),
        "{}",
        failed.error
    );
    events.until(EnvironmentDown).await;
    assert!(!events.saw(ServiceStarting));
}

/// A registry that stops answering (here: one that accepts connections and never says a
/// word) fails the pull once the engine has reported no progress for the stall limit, naming
/// the image, and without trying again (which would only wait as long again).
#[tokio::test]
async fn a_pull_that_makes_no_progress_fails_naming_the_image() {
    let registry = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake registry");
    let port = registry.local_addr().unwrap().port();
    // Holds every connection open without answering, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in registry.incoming().flatten() {
            held.push(stream);
        }
    });
    let rigd = Rigd::start_with_env(&[], &[("RIG_DOCKER_PULL_STALL", "5s")]);
    let image = format!("127.0.0.1:{port}/stalled:v1");
    let started = Instant::now();
    let id = rigd
        .create(json!({"name": "stalled-pull", "services": {
            "app": {"type": "container", "config": {"image": image}},
        }}))
        .await;
    let failed = rigd.events(&id).until(ArtifactFailed).await;
    let took = started.elapsed();
    assert!(
        failed
            .error
            .starts_with(&format!("docker pull {image}: no progress for 5s")),
        "{}",
        failed.error
    );
    // Three tries would take 5 s each, and 1 s + 2 s between them.
    assert!(took < Duration::from_secs(14), "tried again: took {took:?}");
}

#[tokio::test]
async fn an_unreachable_engine_asks_whether_docker_is_running() {
    let rigd = Rigd::start_with_env(&[], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let id = rigd
        .create(json!({"name": "nodocker", "services": {
            "app": {"type": "container", "config": {"image": "anything:1"}},
        }}))
        .await;
    let mut events = rigd.events(&id);
    let failed = events.until(ArtifactFailed).await;
    assert!(
        failed.error.contains("is Docker running?"),
        "{}",
        failed.error
    );
}

/// `DOCKER_HOST` names the engine rigd uses, as for the `docker` CLI (it used to fall back to
/// the local socket silently for anything but `unix://`), and an engine it cannot reach is
/// named in the error.
#[tokio::test]
async fn docker_host_names_the_engine_and_an_unreachable_one_is_named() {
    let image = busybox();
    let rigd = Rigd::start_with_env(&[], &[("DOCKER_HOST", "tcp://127.0.0.1:1")]);
    let id = rigd
        .create(json!({"name": "tcp-engine", "services": {
            "app": {"type": "container", "config": {"image": image, "cmd": ["sleep", "1000"]}},
        }}))
        .await;
    let mut events = rigd.events(&id);
    let failed = events.until(ArtifactFailed).await;
    assert!(
        failed.error.contains("DOCKER_HOST=tcp://127.0.0.1:1")
            && failed.error.contains("is Docker running?"),
        "{}",
        failed.error
    );
}

/// An engine on another machine cannot run rigd's containers (published ports, bind mounts,
/// relays all assume this machine): it is refused before any connection, saying why.
#[tokio::test]
async fn a_remote_docker_host_is_refused_saying_why() {
    // TEST-NET-1: no machine answers there, and rigd must not even try.
    let rigd = Rigd::start_with_env(&[], &[("DOCKER_HOST", "tcp://192.0.2.1:2376")]);
    let id = rigd
        .create(json!({"name": "remote-engine", "services": {
            "app": {"type": "container", "config": {"image": "anything:1"}},
        }}))
        .await;
    let failed = rigd.events(&id).until(ArtifactFailed).await;
    assert!(
        failed
            .error
            .contains("DOCKER_HOST=tcp://192.0.2.1:2376 is not on this machine")
            && failed.error.contains("needs a local engine"),
        "{}",
        failed.error
    );
}

/// Starts an environment with a long-running container and returns (id, container id).
async fn running_container(rigd: &Rigd) -> (String, String) {
    let image = busybox();
    let id = rigd
        .create(json!({"name": "leftover", "services": {
            "sleeper": {"type": "container", "config": {"image": image, "cmd": ["sleep", "1000"]}},
        }}))
        .await;
    rigd.events(&id).until(EnvironmentUp).await;
    // A service without ingresses is ready at once, possibly before its container exists.
    let deadline = Instant::now() + support::WAIT;
    loop {
        let ids = containers_labelled("dev.rig-rs.environment", &id);
        if let [one] = ids.as_slice() {
            return (id, one.clone());
        }
        assert!(ids.is_empty(), "one container per service: {ids:?}");
        assert!(Instant::now() < deadline, "the container was never created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill9(pid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(
        unsafe { libc::kill(pid as i32, libc::SIGKILL) },
        0,
        "kill -9 {pid}"
    );
}

fn wait_gone(container: &str) {
    let deadline = Instant::now() + CLEANUP;
    while container_exists(container) {
        assert!(
            Instant::now() < deadline,
            "container {container} still exists after {CLEANUP:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn kill_9_of_rigd_leaves_no_container_behind() {
    let rigd = Rigd::start();
    let (_, container) = running_container(&rigd).await;
    kill9(rigd.pid());
    // Its reaper removes the container.
    wait_gone(&container);
}

#[tokio::test]
async fn the_next_rigd_removes_containers_of_a_killed_rigd_and_reaper() {
    let rigd = Rigd::start();
    let (_, container) = running_container(&rigd).await;
    kill9(reaper_of(rigd.pid()));
    kill9(rigd.pid());
    assert!(container_exists(&container), "nothing else removes it");

    let addr_file = rigd.scratch().join("second.addr");
    let mut second = Command::new(env!("CARGO_BIN_EXE_rigd"))
        .args(["--addr", "127.0.0.1:0", "--idle", "0", "--rig-dir"])
        .arg(rigd.rig_dir())
        .arg("--addr-file")
        .arg(&addr_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a second rigd");
    wait_gone(&container);
    let _ = second.kill();
    let _ = second.wait();
}

/// A container the engine had to kill, or that answered SIGTERM with a failure, is remarked on
/// in its log (stream `rig`) as the environment is torn down; one that exits 128 + SIGTERM is
/// not.
#[tokio::test]
async fn an_unclean_container_stop_is_remarked_on_in_the_service_log() {
    let image = busybox();
    let rigd = Rigd::start_with(&["--stop-grace", "1s"]);
    let container = |script: &str| json!({"type": "container", "config": {"image": image, "cmd": ["sh", "-c", script]}});
    // Each has set its trap once it has printed `started`.
    let remarks = rigd
        .remarks_at_teardown(
            json!({"name": "stops", "services": {
                "polite": container("trap 'exit 143' TERM; echo started; sleep 3600 & wait"),
                "grumpy": container("trap 'exit 3' TERM; echo started; sleep 3600 & wait"),
                // PID 1 does not die of a signal it does not handle.
                "stubborn": container("echo started; exec sleep 3600"),
            }}),
            &["polite", "grumpy", "stubborn"],
        )
        .await;
    assert_eq!(
        remarks,
        [
            (
                "grumpy".to_string(),
                "exited with code 3 when told to stop (SIGTERM)\n".to_string()
            ),
            (
                "stubborn".to_string(),
                "did not stop within 1s of SIGTERM, so the engine killed it (SIGKILL); have its \
                 program exit on SIGTERM (as PID 1, a program only dies of a signal it \
                 handles), or give rigd a longer --stop-grace\n"
                    .to_string()
            ),
        ]
    );
}

/// `<boot id>:<pid namespace inode>` of this process, which rigd (started by this test, in
/// the same namespace) puts in its containers' `dev.rig-rs.rigd-namespace` label.
fn this_namespace() -> String {
    use std::os::unix::fs::MetadataExt;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let pid_ns = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    format!("{}:{pid_ns}", boot.trim())
}

/// Creates (without starting) a container of `image` with rig's owner labels; returns its id.
fn labelled_container(image: &str, rig_dir: &std::path::Path, labels: &[(&str, &str)]) -> String {
    let rig_dir = std::fs::canonicalize(rig_dir).unwrap();
    let mut cmd = Command::new("docker");
    cmd.args(["create", "--label"])
        .arg(format!("dev.rig-rs.rig-dir={}", rig_dir.display()));
    for (key, value) in labels {
        cmd.args(["--label", &format!("dev.rig-rs.{key}={value}")]);
    }
    let out = cmd.args([image, "sleep", "1000"]).output().unwrap();
    assert!(
        out.status.success(),
        "docker create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Removes the containers it holds when dropped (the test failed, or left them on purpose).
struct RemoveContainers(Vec<String>);

impl Drop for RemoveContainers {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Engines are shared (CI jobs in containers mounting the host's socket, all with the rig dir
/// `/root/.rig`): a rigd's startup sweep removes containers of gone rigds of its own boot and
/// pid namespace, and those of older rigds (no namespace label) as before, but never one of
/// another namespace, whose pid means nothing here, nor one of a live rigd.
#[tokio::test]
async fn the_startup_sweep_removes_only_containers_of_gone_rigds_of_its_own_namespace() {
    let image = busybox();
    let rigd = Rigd::start();
    let rig_dir = rigd.rig_dir();
    let here = this_namespace();
    let (boot, _) = here.rsplit_once(':').unwrap();
    let foreign = format!("{boot}:1");
    // No process has this pid: its owner is gone, wherever it ran.
    let gone = format!("{}:1", u32::MAX - 5);
    let live = {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", rigd.pid())).unwrap();
        let start = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19);
        format!("{}:{}", rigd.pid(), start.unwrap())
    };
    let ours_gone = labelled_container(
        &image,
        &rig_dir,
        &[("rigd", &gone), ("rigd-namespace", &here)],
    );
    let older_gone = labelled_container(&image, &rig_dir, &[("rigd", &gone)]);
    let foreign_gone = labelled_container(
        &image,
        &rig_dir,
        &[("rigd", &gone), ("rigd-namespace", &foreign)],
    );
    let ours_live = labelled_container(
        &image,
        &rig_dir,
        &[("rigd", &live), ("rigd-namespace", &here)],
    );
    let _cleanup = RemoveContainers(vec![
        ours_gone.clone(),
        older_gone.clone(),
        foreign_gone.clone(),
        ours_live.clone(),
    ]);

    let output = rigd.scratch().join("second.output");
    let mut second = Command::new(env!("CARGO_BIN_EXE_rigd"))
        .args(["--addr", "127.0.0.1:0", "--idle", "0", "--rig-dir"])
        .arg(&rig_dir)
        .arg("--addr-file")
        .arg(rigd.scratch().join("second.addr"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&output).unwrap())
        .spawn()
        .expect("start a second rigd");
    // It says so once its sweep is over.
    let said = |text: &str| {
        std::fs::read_to_string(&output)
            .unwrap_or_default()
            .contains(text)
    };
    let deadline = Instant::now() + CLEANUP;
    while !said("left by rigds that did not shut down") {
        assert!(
            Instant::now() < deadline,
            "the second rigd never reported its sweep: {:?}",
            std::fs::read_to_string(&output)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = second.kill();
    let _ = second.wait();

    assert!(
        !container_exists(&ours_gone),
        "a gone rigd of this namespace"
    );
    assert!(
        !container_exists(&older_gone),
        "an older rigd's, by its pid"
    );
    assert!(
        container_exists(&foreign_gone),
        "another namespace's container was removed"
    );
    assert!(container_exists(&ours_live), "a live rigd's was removed");
    assert!(
        said("removed 2 container(s)"),
        "{:?}",
        std::fs::read_to_string(&output)
    );
}

/// DELETEs environment `id`, keeping its directory (`preserve`) to look at afterwards.
async fn delete_keeping_files(rigd: &Rigd, id: &str) {
    rigd.client()
        .delete_environment(
            id,
            &DeleteOptions {
                preserve: true,
                ..DeleteOptions::default()
            },
        )
        .await
        .expect("DELETE");
}

/// A shell command writing, as the container's root, a tree into its temp dir and one into
/// the environment dir (`/rig/env/<name>`), then printing `written`.
fn write_as_root(name: &str) -> String {
    format!(
        "mkdir -p /rig/temp/sub/deep /rig/env/{name} && echo x > /rig/temp/sub/deep/file && \
         echo x > /rig/env/{name}/file && echo written"
    )
}

/// `(uid, gid)` of `path` and of everything under it that is not `(want_uid, want_gid)`.
fn owned_otherwise(path: &std::path::Path, want: (u32, u32)) -> Vec<(String, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut wrong = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if (meta.uid(), meta.gid()) != want {
            wrong.push((path.display().to_string(), meta.uid(), meta.gid()));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    wrong
}

/// With a rootful engine and rigd as a normal user, files a container writes as root into
/// `/rig/temp` and `/rig/env` would be rigd's to remove and not removable by it: before the
/// container goes, they are given to rigd's user (here a uid and gid rigd is told to use, as
/// the tests run as root), from inside a container still running at teardown, and through a
/// helper container for one that exited on its own.
#[tokio::test]
async fn what_a_container_writes_in_its_mounts_is_given_to_rigds_user() {
    let image = busybox();
    let owner = (4321, 8765);
    let rigd = Rigd::start_with_env(&[], &[("RIG_CONTAINER_FILES_OWNER", "4321:8765")]);
    let container = |script: String| json!({"type": "container", "config": {"image": image, "cmd": ["sh", "-c", script]}});

    // Running at teardown.
    let id = rigd
        .create(json!({"name": "owners", "services": {
            "runner": container(format!(
                "{}; trap 'exit 143' TERM; sleep 1000 & wait",
                write_as_root("runner-shared")
            )),
        }}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    events.until(EnvironmentUp).await;
    events.until_printed("runner", "written\n").await;
    delete_keeping_files(&rigd, &id).await;
    events.until(EnvironmentDown).await;
    let env_dir = rigd.rig_dir().join("tmp").join(&id);
    for written in [env_dir.join("runner/sub"), env_dir.join("runner-shared")] {
        assert!(written.exists(), "{}", written.display());
        assert_eq!(
            owned_otherwise(&written, owner),
            [],
            "{events:?}",
            events = events.rig_remarks()
        );
    }

    // Exited on its own (and failed its environment).
    let id = rigd
        .create(json!({"name": "owners-crash", "services": {
            "crasher": container(format!("{}; exit 3", write_as_root("crasher-shared"))),
        }}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    events.until(EnvironmentDown).await;
    let env_dir = rigd.rig_dir().join("tmp").join(&id);
    for written in [env_dir.join("crasher/sub"), env_dir.join("crasher-shared")] {
        assert!(written.exists(), "{}", written.display());
        assert_eq!(
            owned_otherwise(&written, owner),
            [],
            "{:?}",
            events.rig_remarks()
        );
    }
    assert_eq!(
        containers_labelled("dev.rig-rs.environment", &id),
        Vec::<String>::new(),
        "the helper container is removed"
    );
}

/// What a container writes while it handles its stop signal, after its files were handed
/// back from inside it, is handed back too, once it has stopped.
#[tokio::test]
async fn what_a_container_writes_as_it_stops_is_given_to_rigds_user() {
    let image = busybox();
    let owner = (4321, 8765);
    let rigd = Rigd::start_with_env(&[], &[("RIG_CONTAINER_FILES_OWNER", "4321:8765")]);
    let script = "trap 'mkdir -p /rig/temp/late && echo x > /rig/temp/late/file; exit 143' TERM; \
                  echo waiting; sleep 1000 & wait";
    let id = rigd
        .create(json!({"name": "late-writer", "services": {
            "writer": {"type": "container", "config": {"image": image, "cmd": ["sh", "-c", script]}},
        }}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    events.until(EnvironmentUp).await;
    events.until_printed("writer", "waiting\n").await;
    delete_keeping_files(&rigd, &id).await;
    events.until(EnvironmentDown).await;
    let late = rigd.rig_dir().join("tmp").join(&id).join("writer/late");
    assert!(late.join("file").exists(), "{}", late.display());
    assert_eq!(
        owned_otherwise(&late, owner),
        [],
        "{:?}",
        events.rig_remarks()
    );
}

/// A busybox image whose `chown` takes two minutes, as on a huge tree or a slow filesystem.
fn slow_chown_image() -> String {
    support::images::busybox_with(
        "slow-chown",
        &[(
            "/bin/chown",
            "#!/bin/sh\nsleep 120\nexec /bin/busybox chown \"$@\"\n",
        )],
        &[],
    )
}

/// Waits (up to [`CLEANUP`]) until no container of environment `id` is left, running or not.
fn wait_no_container_of(id: &str) {
    let deadline = Instant::now() + CLEANUP;
    loop {
        let left = containers_labelled("dev.rig-rs.environment", id);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containers of environment {id} still exist {CLEANUP:?} after it went: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Handing a container's files back can take long (a `chown -R` of a huge tree): that neither
/// keeps a stopped container alive after its environment is destroyed, nor leaves behind the
/// helper container of one that exited by itself; the log says the hand-back did not finish.
#[tokio::test]
async fn a_slow_hand_back_of_files_leaves_no_container_behind() {
    let image = slow_chown_image();
    let rigd = Rigd::start_with_env(
        &["--stop-grace", "1s"],
        &[("RIG_CONTAINER_FILES_OWNER", "4321:8765")],
    );
    let container = |script: &str| json!({"type": "container", "config": {"image": image, "cmd": ["sh", "-c", script]}});

    // Exits by itself: handed back through a helper container.
    let crashed = rigd
        .create(json!({"name": "slow-crash", "services": {
            "crasher": container("echo x > /rig/temp/file; exit 3"),
        }}))
        .await;
    // Stopped by DELETE: handed back from inside it.
    let deleted = rigd
        .create(json!({"name": "slow-stop", "services": {
            "sleeper": container("echo x > /rig/temp/file; trap 'exit 143' TERM; echo started; sleep 1000 & wait"),
        }}))
        .await;
    let mut events = rigd.events_with_logs(&deleted);
    events.until(EnvironmentUp).await;
    events.until_printed("sleeper", "started\n").await;
    rigd.client()
        .delete_environment(&deleted, &DeleteOptions::default())
        .await
        .expect("DELETE");
    events.until(EnvironmentDown).await;
    wait_no_container_of(&deleted);
    let remarks = events.rig_remarks();
    assert!(
        remarks
            .iter()
            .any(|(service, text)| service == "sleeper" && text.contains("did not finish within")),
        "{remarks:?}"
    );

    let mut events = rigd.events_with_logs(&crashed);
    events.until(EnvironmentDown).await;
    wait_no_container_of(&crashed);
}

/// A container that prints a lot and crashes has all of its output in the log, its last line
/// included, before its failure is reported, and none after its environment is down.
#[tokio::test]
async fn a_chatty_crashing_container_has_all_its_output_logged_before_it_fails() {
    let image = busybox();
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "chatty", "services": {
            "chatty": {"type": "container", "config": {"image": image, "cmd": ["sh", "-c",
                "/bin/busybox yes line | /bin/busybox head -n 100000; echo LAST-LINE; exit 3"]}},
        }}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    events.until(EnvironmentDown).await;
    let seen = events.seen();
    let last_line = seen
        .iter()
        .position(|e| {
            e.event_type == ServiceLog
                && e.log.as_ref().is_some_and(|l| l.data.contains("LAST-LINE"))
        })
        .unwrap_or_else(|| panic!("LAST-LINE is not in the log: {:?}", events.rig_remarks()));
    let failed = events.position(ServiceFailed, "chatty");
    assert!(last_line < failed, "LAST-LINE came after service.failed");
    let log = rigd.log(&id).await;
    let down = log
        .iter()
        .position(|e| e.event_type == EnvironmentDown)
        .expect("environment.down in the log");
    assert!(
        !log[down..].iter().any(|e| e.event_type == ServiceLog),
        "output after environment.down"
    );
}

/// An image that runs as a user other than root (`USER 1001`) can write its temp dir and the
/// environment dir.
#[tokio::test]
async fn an_image_with_a_non_root_user_writes_its_mounted_directories() {
    let image = support::images::busybox_with("user-1001", &[], &["USER 1001"]);
    let rigd = Rigd::start();
    let id = rigd
        .create(json!({"name": "non-root", "services": {
            "app": {"type": "container", "config": {"image": image, "cmd": ["sh", "-c",
                "mkdir /rig/temp/sub && echo x > /rig/temp/sub/file && echo y > /rig/env/shared \
                 && echo written || echo failed; exec sleep 1000"]}},
        }}))
        .await;
    let mut events = rigd.events_with_logs(&id);
    let said = events
        .until_matching("written or failed", |e| {
            e.service == "app"
                && e.log
                    .as_ref()
                    .is_some_and(|l| l.data == "written\n" || l.data == "failed\n")
        })
        .await;
    assert_eq!(
        said.log.unwrap().data,
        "written\n",
        "{}",
        support::describe(events.seen())
    );
    let env_dir = rigd.rig_dir().join("tmp").join(&id);
    assert!(env_dir.join("app/sub/file").exists());
    assert!(env_dir.join("shared").exists());
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}
