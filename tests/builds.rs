//! The artifact phase through the real `rigd` binary: `cargo` and `go` services built from
//! source in a temporary directory, cached across environments, compile errors reported as
//! `artifact.failed`, a path dependency's edit rebuilding the package, two rigd processes
//! sharing a rig dir building a binary once, and a build killed by DELETE.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rig_types::EventType::{self, *};
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::{processes_with_env, Events, Rigd};

/// A program that greets every TCP connection on `127.0.0.1:$PORT` with `greeting`.
fn rust_greeter(greeting: &str) -> String {
    rust_server(&format!("b\"{greeting}\\n\""))
}

/// A program that writes `reply` (a Rust expression of type `&[u8]`) to every TCP
/// connection on `127.0.0.1:$PORT`.
fn rust_server(reply: &str) -> String {
    format!(
        r#"use std::io::Write;
fn main() {{
    let port = std::env::var("PORT").expect("PORT");
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{{port}}")).expect("bind");
    for stream in listener.incoming() {{
        if let Ok(mut stream) = stream {{
            let _ = stream.write_all({reply});
        }}
    }}
}}
"#
    )
}

fn go_greeter(greeting: &str) -> String {
    format!(
        r#"package main

import (
	"net"
	"os"
)

func main() {{
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {{
		panic(err)
	}}
	for {{
		c, err := l.Accept()
		if err != nil {{
			continue
		}}
		c.Write([]byte("{greeting}\n"))
		c.Close()
	}}
}}
"#
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the directory");
    std::fs::write(path, text).expect("write the file");
}

/// A Cargo package `name` with `main` as its `src/main.rs` (and `build.rs` when given), in a
/// directory of its own under `root`.
fn cargo_package(root: &Path, name: &str, main: &str, build_rs: Option<&str>) -> PathBuf {
    let dir = root.join(name);
    let mut manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"
    );
    if build_rs.is_some() {
        manifest = manifest.replace("edition", "build = \"build.rs\"\nedition");
        write(&dir.join("build.rs"), build_rs.unwrap_or_default());
    }
    write(&dir.join("Cargo.toml"), &manifest);
    write(&dir.join("src/main.rs"), main);
    dir
}

fn go_module(root: &Path, name: &str, main: &str) -> PathBuf {
    let dir = root.join(name);
    write(
        &dir.join("go.mod"),
        &format!("module example.com/{name}\n\ngo 1.19\n"),
    );
    write(&dir.join("main.go"), main);
    dir
}

/// A spec with one built service `api` (a TCP ingress), with `dir` as the spec dir.
fn spec(name: &str, dir: &Path, service: Value) -> Value {
    json!({
        "name": name,
        "dir": dir.to_string_lossy(),
        "services": {"api": service},
    })
}

fn cargo_service(path: &str) -> Value {
    json!({"type": "cargo", "config": {"path": path},
           "ingresses": {"default": {"protocol": "tcp"}}})
}

fn go_service(module: &str) -> Value {
    json!({"type": "go", "config": {"module": module},
           "ingresses": {"default": {"protocol": "tcp"}}})
}

/// Reads the greeting of the service `api` once the environment is up.
async fn greeting(events: &mut Events) -> String {
    let up = events.until(EnvironmentUp).await;
    greeting_of(&up, "api").await
}

/// Reads the greeting of `service`, whose ingresses `up` (`environment.up`) lists.
async fn greeting_of(up: &rig_types::Event, service: &str) -> String {
    let hostport = &up.ingresses[service]["default"].hostport;
    let mut stream = tokio::net::TcpStream::connect(hostport)
        .await
        .unwrap_or_else(|e| panic!("connect to api at {hostport}: {e}"));
    let mut text = String::new();
    tokio::time::timeout(
        support::WAIT,
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text),
    )
    .await
    .expect("the greeting within the deadline")
    .expect("read the greeting");
    text
}

fn artifact_events(events: &Events) -> Vec<EventType> {
    events
        .seen()
        .iter()
        .map(|e| e.event_type.clone())
        .filter(|t| {
            matches!(
                t,
                ArtifactStarted | ArtifactCompleted | ArtifactCached | ArtifactFailed
            )
        })
        .collect()
}

/// Brings up `spec` twice in `rigd`: the first environment builds, the second finds the
/// binary cached and starts without building. Both serve `expected`.
async fn built_once_then_cached(rigd: &Rigd, first: Value, second: Value, expected: &str) {
    let id = rigd.create(first).await;
    let mut events = rigd.events(&id);
    assert_eq!(greeting(&mut events).await, format!("{expected}\n"));
    assert_eq!(
        artifact_events(&events),
        [ArtifactStarted, ArtifactCompleted]
    );
    let started = events.position(ArtifactStarted, "");
    assert!(
        started < events.position(ServiceStarting, "api"),
        "built before it starts"
    );

    let id2 = rigd.create(second).await;
    let mut events2 = rigd.events(&id2);
    assert_eq!(greeting(&mut events2).await, format!("{expected}\n"));
    assert_eq!(artifact_events(&events2), [ArtifactCached]);
    let cached = &events2.seen()[events2.position(ArtifactCached, "")];
    assert_eq!(cached.artifact, events.seen()[started].artifact);
}

#[tokio::test]
async fn a_cargo_package_is_built_once_and_cached_across_environments() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    cargo_package(&root, "greeter", &rust_greeter("built by cargo"), None);
    built_once_then_cached(
        &rigd,
        spec("cargo-one", &root, cargo_service("greeter")),
        spec("cargo-two", &root, cargo_service("./greeter")),
        "built by cargo",
    )
    .await;
    let cached = std::fs::read_dir(rigd.rig_dir().join("cache/cargo"))
        .expect("the cargo cache exists")
        .flatten()
        .any(|e| e.path().join("binary").is_file());
    assert!(cached, "the binary is in the rig dir's cache");
    // Cargo's incremental target directory is marked used too, so `rig prune` keeps it.
    let targets: Vec<_> = std::fs::read_dir(rigd.rig_dir().join("cache/cargo-target"))
        .expect("cargo's target directories are in the cache")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir()) // not its lock file
        .collect();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert!(targets[0].join(".last-used").is_file(), "{targets:?}");
}

#[tokio::test]
async fn an_edited_cargo_package_is_rebuilt() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    let dir = cargo_package(&root, "greeter", &rust_greeter("first"), None);
    let id = rigd
        .create(spec("v1", &root, cargo_service("greeter")))
        .await;
    let mut events = rigd.events(&id);
    assert_eq!(greeting(&mut events).await, "first\n");

    write(&dir.join("src/main.rs"), &rust_greeter("second"));
    let id2 = rigd
        .create(spec("v2", &root, cargo_service("greeter")))
        .await;
    let mut events2 = rigd.events(&id2);
    assert_eq!(greeting(&mut events2).await, "second\n");
    assert_eq!(
        artifact_events(&events2),
        [ArtifactStarted, ArtifactCompleted]
    );
}

/// Runs `git args` in `dir`, which must succeed (with an identity, and local submodules
/// allowed).
fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(["-c", "protocol.file.allow=always", "-C"])
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// Brings up `spec` as a new environment: the greeting of `api` and the artifact events.
async fn greeting_and_artifacts(rigd: &Rigd, spec: Value) -> (String, Vec<EventType>) {
    let id = rigd.create(spec).await;
    let mut events = rigd.events(&id);
    let text = greeting(&mut events).await;
    (text, artifact_events(&events))
}

/// A package in a git repository that `include_str!`s a generated, git-ignored file
/// (`dist/greeting.txt`): not among the package's listed sources, yet editing it rebuilds
/// the binary (the cached entry records every file the compiler read, from cargo's
/// dep-info).
#[tokio::test]
async fn an_edited_git_ignored_file_the_build_reads_rebuilds_it() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    let reply = "include_str!(\"../dist/greeting.txt\").as_bytes()";
    let dir = cargo_package(&root, "web", &rust_server(reply), None);
    write(&dir.join(".gitignore"), "/dist/\n");
    write(&dir.join("dist/greeting.txt"), "generated once\n");
    git(&dir, &["init", "-q", "."]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-qm", "web"]);
    let built = vec![ArtifactStarted, ArtifactCompleted];
    let up = |name: &str| greeting_and_artifacts(&rigd, spec(name, &root, cargo_service("web")));
    assert_eq!(
        up("first").await,
        ("generated once\n".into(), built.clone())
    );
    assert_eq!(
        up("same").await,
        ("generated once\n".into(), vec![ArtifactCached])
    );

    write(&dir.join("dist/greeting.txt"), "generated again\n");
    assert_eq!(
        up("regenerated").await,
        ("generated again\n".into(), built),
        "rebuilt, not the stale cached binary"
    );
    assert_eq!(
        up("again").await,
        ("generated again\n".into(), vec![ArtifactCached])
    );
}

#[tokio::test]
async fn an_edited_path_dependency_outside_the_package_rebuilds_it() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    let dir = cargo_package(
        &root,
        "app",
        &rust_server("format!(\"{}\\n\", shared::GREETING).as_bytes()"),
        None,
    );
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
    write(
        &manifest,
        &format!("{text}\n[dependencies]\nshared = {{ path = \"../shared-lib\" }}\n"),
    );
    let shared = |greeting: &str| {
        write(
            &root.join("shared-lib/Cargo.toml"),
            "[package]\nname = \"shared\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        );
        write(
            &root.join("shared-lib/src/lib.rs"),
            &format!("pub const GREETING: &str = \"{greeting}\";\n"),
        );
    };
    shared("from the shared lib");
    let id = rigd.create(spec("v1", &root, cargo_service("app"))).await;
    let mut events = rigd.events(&id);
    assert_eq!(greeting(&mut events).await, "from the shared lib\n");

    shared("from the edited shared lib");
    let id2 = rigd.create(spec("v2", &root, cargo_service("app"))).await;
    let mut events2 = rigd.events(&id2);
    assert_eq!(greeting(&mut events2).await, "from the edited shared lib\n");
    assert_eq!(
        artifact_events(&events2),
        [ArtifactStarted, ArtifactCompleted],
        "rebuilt, not cached"
    );
}

#[tokio::test]
async fn two_rigds_sharing_a_rig_dir_build_a_binary_once() {
    let first = Rigd::start();
    let rig_dir = first.rig_dir();
    let second = Rigd::start_with(&["--rig-dir", &rig_dir.to_string_lossy()]);
    let root = first.scratch();
    // The build script holds the build until the test opens the gate, so the second rigd
    // surely asks for the artifact while the first one is building it.
    let gate = root.join("gate");
    let build_rs = format!(
        "fn main() {{\n\
         println!(\"cargo:rerun-if-changed=build.rs\");\n\
         while !std::path::Path::new({gate:?}).exists() {{\n\
         std::thread::sleep(std::time::Duration::from_millis(20));\n\
         }}\n}}\n"
    );
    let dir = cargo_package(&root, "gated", &rust_greeter("built once"), Some(&build_rs));
    // With its Cargo.lock from the start, so the first build does not change the key.
    let locked = std::process::Command::new("cargo")
        .args(["generate-lockfile", "--offline", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .status()
        .expect("run cargo generate-lockfile");
    assert!(locked.success());

    let id1 = first
        .create(spec("one", &root, cargo_service("gated")))
        .await;
    let mut events1 = first.events(&id1);
    events1.until(ArtifactStarted).await;

    let id2 = second
        .create(spec("two", &root, cargo_service("gated")))
        .await;
    let mut events2 = second.events_with_logs(&id2);
    let waiting = events2
        .until_matching("the wait for the first rigd's build", |e| {
            e.event_type == ServiceLog
                && e.log
                    .as_ref()
                    .is_some_and(|l| l.data.contains("waiting for another environment or rigd"))
        })
        .await;
    assert_eq!(waiting.service, "api");
    std::fs::write(&gate, "open").expect("open the gate");

    assert_eq!(greeting(&mut events1).await, "built once\n");
    assert_eq!(greeting(&mut events2).await, "built once\n");
    assert_eq!(
        artifact_events(&events1),
        [ArtifactStarted, ArtifactCompleted],
        "the first rigd builds"
    );
    assert_eq!(
        artifact_events(&events2),
        [ArtifactCached],
        "the second waits for that build and uses it"
    );
    // The output comes in chunks as the build writes it: join them before searching.
    let compiled = |log: &[rig_types::Event]| {
        log.iter()
            .filter(|e| e.event_type == ServiceLog)
            .filter_map(|e| e.log.as_ref().map(|l| l.data.as_str()))
            .collect::<String>()
            .contains("Compiling gated")
    };
    assert!(compiled(&first.log(&id1).await), "the build's output");
    assert!(!compiled(&second.log(&id2).await), "no second build");
}

/// The environment fails in the artifact phase with `artifact.failed` carrying `needle`, and
/// no service starts.
async fn fails_to_build(rigd: &Rigd, spec: Value, needle: &str) -> String {
    let id = rigd.create(spec).await;
    let mut events = rigd.events(&id);
    let failed = events.until(ArtifactFailed).await;
    assert!(
        failed.error.contains(needle),
        "artifact.failed should carry {needle:?}: {}",
        failed.error
    );
    let failing = events.until(EnvironmentFailing).await;
    assert!(failing.error.contains(needle), "{}", failing.error);
    assert!(failing.service.is_empty());
    let down = events.until(EnvironmentDown).await;
    assert!(
        down.message.contains(needle),
        "the summary says why: {}",
        down.message
    );
    assert!(
        !events.saw(ServiceStarting),
        "no service starts after a failed build"
    );
    // The compiler's output is also in the service's log.
    let log = rigd.log(&id).await;
    assert!(
        log.iter()
            .any(|e| e.event_type == ServiceLog && e.service == "api"),
        "build output is in api's log"
    );
    failed.error
}

#[tokio::test]
async fn a_rust_compile_error_is_reported_as_artifact_failed() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    cargo_package(&root, "broken", "fn main() { let _ = nope; }\n", None);
    let err = fails_to_build(
        &rigd,
        spec("broken", &root, cargo_service("broken")),
        "cannot find value `nope`",
    )
    .await;
    assert!(err.starts_with("cargo build "), "{err}");
}

#[tokio::test]
async fn a_go_module_is_built_once_and_cached_across_environments() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    go_module(&root, "greeter", &go_greeter("built by go"));
    built_once_then_cached(
        &rigd,
        spec("go-one", &root, go_service("./greeter")),
        spec("go-two", &root, go_service("greeter")),
        "built by go",
    )
    .await;
}

/// A Go module whose main package `cmd/api` serves a greeting made by a package elsewhere in
/// the module (`internal/greet`) from an embedded file (`greeting.txt`) and a constant.
fn go_module_with_inner_package(root: &Path, prefix: &str, embedded: &str) -> PathBuf {
    let dir = root.join("mono");
    write(&dir.join("go.mod"), "module example.com/mono\n\ngo 1.19\n");
    write(
        &dir.join("internal/greet/greet.go"),
        &format!(
            "package greet\n\nimport _ \"embed\"\n\n//go:embed greeting.txt\nvar text string\n\n\
             func Greeting() string {{ return \"{prefix} \" + text }}\n"
        ),
    );
    write(&dir.join("internal/greet/greeting.txt"), embedded);
    let main = go_greeter("GREETING").replace(
        "c.Write([]byte(\"GREETING\\n\"))",
        "c.Write([]byte(greet.Greeting() + \"\\n\"))",
    );
    let main = main.replace(
        "import (\n",
        "import (\n\t\"example.com/mono/internal/greet\"\n",
    );
    write(&dir.join("cmd/api/main.go"), &main);
    dir
}

/// Brings up `./mono/cmd/api` as environment `name`: its greeting and artifact events.
async fn mono_greeting(rigd: &Rigd, root: &Path, name: &str) -> (String, Vec<EventType>) {
    let id = rigd
        .create(spec(name, root, go_service("./mono/cmd/api")))
        .await;
    let mut events = rigd.events(&id);
    let text = greeting(&mut events).await;
    (text, artifact_events(&events))
}

/// The build reads more than the main package's directory: a package elsewhere in its module
/// and a file it embeds. Editing either rebuilds the binary (upstream's cache key, the
/// package directory's Go files, kept the old one).
#[tokio::test]
async fn a_go_build_is_redone_when_another_package_or_an_embedded_file_changes() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    go_module_with_inner_package(&root, "v1", "hello");
    assert_eq!(
        mono_greeting(&rigd, &root, "first").await,
        (
            "v1 hello\n".into(),
            vec![ArtifactStarted, ArtifactCompleted]
        )
    );
    assert_eq!(
        mono_greeting(&rigd, &root, "same").await,
        ("v1 hello\n".into(), vec![ArtifactCached])
    );

    go_module_with_inner_package(&root, "v2", "hello");
    assert_eq!(
        mono_greeting(&rigd, &root, "package").await,
        (
            "v2 hello\n".into(),
            vec![ArtifactStarted, ArtifactCompleted]
        )
    );

    go_module_with_inner_package(&root, "v2", "bonjour");
    assert_eq!(
        mono_greeting(&rigd, &root, "embedded").await,
        (
            "v2 bonjour\n".into(),
            vec![ArtifactStarted, ArtifactCompleted]
        )
    );
}

/// A Go main package that greets with `main.greeting`, which `-ldflags=-X` can set.
fn go_module_with_flaggable_greeting(root: &Path) -> PathBuf {
    let main = go_greeter("GREETING")
        .replace(
            "c.Write([]byte(\"GREETING\\n\"))",
            "c.Write([]byte(greeting + \"\\n\"))",
        )
        .replace("func main() {", "var greeting = \"plain\"\n\nfunc main() {");
    go_module(root, "flags", &main)
}

/// `go env -w GOFLAGS=...` writes the GOENV file, not the environment: the build changes
/// all the same, and so does the cache key.
#[tokio::test]
async fn a_go_env_file_setting_rebuilds_the_binary() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    go_module_with_flaggable_greeting(&root);
    let go_env = root.join("go-env");
    let with_go_env = |name: &str| {
        let mut spec = spec(name, &root, go_service("./flags"));
        spec["host_env"] = json!({"PATH": std::env::var("PATH").unwrap_or_default(),
                                  "HOME": std::env::var("HOME").unwrap_or_default(),
                                  "GOENV": go_env.to_string_lossy()});
        spec
    };
    let built = vec![ArtifactStarted, ArtifactCompleted];
    let up = |name: &str| greeting_and_artifacts(&rigd, with_go_env(name));
    assert_eq!(up("plain").await, ("plain\n".into(), built.clone()));
    let out = std::process::Command::new("go")
        .args(["env", "-w", "GOFLAGS=-ldflags=-X=main.greeting=flagged"])
        .env("GOENV", &go_env)
        .output()
        .expect("run go env -w");
    assert!(out.status.success(), "go env -w: {out:?}");
    assert_eq!(
        up("flagged").await,
        ("flagged\n".into(), built),
        "rebuilt with the GOENV file's GOFLAGS"
    );
    assert_eq!(
        up("again").await,
        ("flagged\n".into(), vec![ArtifactCached])
    );
}

/// With a `vendor/` directory Go builds the vendored copy of a dependency: editing it
/// rebuilds the binary (the dependency's version alone did not change).
#[tokio::test]
async fn an_edited_vendored_go_package_rebuilds_the_binary() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    let main = go_greeter("GREETING")
        .replace(
            "c.Write([]byte(\"GREETING\\n\"))",
            "c.Write([]byte(dep.Greeting + \"\\n\"))",
        )
        .replace("import (\n", "import (\n\t\"example.com/dep\"\n");
    let dir = go_module(&root, "vendored", &main);
    write(
        &dir.join("go.mod"),
        "module example.com/vendored\n\ngo 1.19\n\nrequire example.com/dep v1.0.0\n",
    );
    write(
        &dir.join("vendor/modules.txt"),
        "# example.com/dep v1.0.0\n## explicit\nexample.com/dep\n",
    );
    let dep = |greeting: &str| {
        write(
            &dir.join("vendor/example.com/dep/dep.go"),
            &format!("package dep\n\nconst Greeting = \"{greeting}\"\n"),
        );
    };
    dep("vendored v1");
    let built = vec![ArtifactStarted, ArtifactCompleted];
    let up =
        |name: &str| greeting_and_artifacts(&rigd, spec(name, &root, go_service("./vendored")));
    assert_eq!(up("v1").await, ("vendored v1\n".into(), built.clone()));
    dep("vendored v2");
    assert_eq!(
        up("v2").await,
        ("vendored v2\n".into(), built),
        "rebuilt from the edited vendored package"
    );
}

#[tokio::test]
async fn a_go_compile_error_is_reported_as_artifact_failed() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    go_module(
        &root,
        "broken",
        "package main\n\nfunc main() {\n\tnope()\n}\n",
    );
    let err = fails_to_build(
        &rigd,
        spec("broken", &root, go_service("./broken")),
        "undefined: nope",
    )
    .await;
    assert!(err.starts_with("go build "), "{err}");
}

#[tokio::test]
async fn a_remote_go_module_is_fetched_not_joined_to_the_spec_dir() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    // Nothing can be downloaded here: the fetch fails, and the error names the module as a
    // module (upstream turned it into a path under the spec dir).
    let mut spec = spec(
        "remote",
        &root,
        go_service("example.invalid/greeter@v1.0.0"),
    );
    spec["host_env"] = json!({"PATH": std::env::var("PATH").unwrap_or_default(),
                              "GOPROXY": "off", "GOFLAGS": "-mod=mod"});
    let err = fails_to_build(&rigd, spec, "go install example.invalid/greeter@v1.0.0").await;
    assert!(!err.contains(&*root.to_string_lossy()), "{err}");
}

#[tokio::test]
async fn delete_during_a_build_kills_the_build() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    // A build script that never finishes on its own.
    cargo_package(
        &root,
        "slow",
        "fn main() {}\n",
        Some("fn main() { std::thread::sleep(std::time::Duration::from_secs(600)); }\n"),
    );
    let id = rigd
        .create(spec("slow", &root, cargo_service("slow")))
        .await;
    let mut events = rigd.events(&id);
    events.until(ArtifactStarted).await;
    let marker = format!(
        "CARGO_TARGET_DIR={}",
        rigd.rig_dir().join("cache").display()
    );
    let deadline = Instant::now() + support::WAIT;
    while processes_with_env(&marker).is_empty() {
        assert!(Instant::now() < deadline, "the build never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE during the build");
    events.until(EnvironmentDown).await;
    assert!(
        !events.saw(ArtifactFailed),
        "a cancelled build is not a failure"
    );
    assert!(!events.saw(EnvironmentFailing));
    let left = processes_with_env(&marker);
    assert!(left.is_empty(), "build processes left: {left:#?}");
}

/// A file saved while its package builds: the binary of that build may hold the old code or
/// the new, so it serves its own environment only. The next environment builds the edited
/// sources itself instead of being handed the binary as theirs (upstream filed it under the
/// edited sources' key, where every later environment ran the old code).
#[tokio::test]
async fn a_build_that_started_before_an_edit_is_not_cached_as_the_edit() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    let dir = cargo_package(&root, "edited", &rust_greeter("before the edit"), None);
    // The linker waits for the test's gate: the compiler has read main.rs by then.
    let (linking, gate) = (root.join("linking"), root.join("gate"));
    let linker = rigd.script(
        "linker.sh",
        &format!(
            "#!/bin/sh\ntouch {linking:?}\nwhile [ ! -e {gate:?} ]; do sleep 0.02; done\n\
             exec cc \"$@\"\n"
        ),
    );
    make_executable(Path::new(&linker));
    let gated = |name: &str| {
        let mut spec = spec(name, &root, cargo_service("edited"));
        spec["host_env"] = json!({"PATH": std::env::var("PATH").unwrap_or_default(),
                                  "RUSTFLAGS": format!("-Clinker={linker}")});
        spec
    };

    let id = rigd.create(gated("during")).await;
    let mut events = rigd.events_with_logs(&id);
    support::wait_until("the build reaching the linker", || linking.exists());
    write(&dir.join("src/main.rs"), &rust_greeter("after the edit"));
    std::fs::write(&gate, "open").expect("open the gate");
    assert_eq!(greeting(&mut events).await, "before the edit\n");

    let id2 = rigd.create(gated("after")).await;
    let mut events2 = rigd.events(&id2);
    assert_eq!(greeting(&mut events2).await, "after the edit\n");
    assert_eq!(
        artifact_events(&events2),
        [ArtifactStarted, ArtifactCompleted],
        "the edited sources are built, not taken from the build that raced the edit"
    );

    let id3 = rigd.create(gated("again")).await;
    let mut events3 = rigd.events(&id3);
    assert_eq!(greeting(&mut events3).await, "after the edit\n");
    assert_eq!(artifact_events(&events3), [ArtifactCached]);
    let remarks = events.rig_remarks();
    assert!(
        remarks
            .iter()
            .any(|(_, line)| line.contains("changed while they were being built")),
        "the service log says why the binary is not cached: {remarks:?}"
    );
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("make the script executable");
}

/// Two builds of one package with different features share its target directory: each
/// service runs its own variant, never the other's (cargo replaces `target/release/<bin>`
/// with each build, and the binary used to be copied from there after cargo exited, while
/// the other build could be replacing it). A fresh cache key each round, cargo's own
/// fingerprints unchanged: both builds are quick, and they overlap.
#[tokio::test]
async fn builds_of_one_package_with_different_features_each_get_their_variant() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    let dir = cargo_package(
        &root,
        "variants",
        &rust_server(r#"if cfg!(feature = "x") { &b"x\n"[..] } else { &b"plain\n"[..] }"#),
        None,
    );
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
    write(&manifest, &format!("{text}\n[features]\nx = []\n"));
    let service = |features: Value| {
        json!({"type": "cargo", "config": {"path": "variants", "features": features},
               "ingresses": {"default": {"protocol": "tcp"}}})
    };
    for round in 0..5 {
        write(&dir.join("README"), &format!("round {round}\n"));
        let id = rigd
            .create(json!({
                "name": format!("variants-{round}"),
                "dir": root.to_string_lossy(),
                "services": {"plain": service(json!([])), "fancy": service(json!(["x"]))},
            }))
            .await;
        let up = rigd.events(&id).until(EnvironmentUp).await;
        assert_eq!(
            (
                greeting_of(&up, "plain").await,
                greeting_of(&up, "fancy").await
            ),
            ("plain\n".to_string(), "x\n".to_string()),
            "round {round}"
        );
        rigd.client()
            .delete_environment(&id, &DeleteOptions::default())
            .await
            .expect("delete the environment");
    }
}

/// `[env]` in a `.cargo/config.toml` above the package is part of what the build reads: an
/// edit there rebuilds the binary (the cache key used to miss every cargo config file).
#[tokio::test]
async fn an_edited_cargo_config_rebuilds_the_package() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    cargo_package(
        &root.join("ws"),
        "svc",
        &rust_server("format!(\"{}\\n\", env!(\"GREETING\")).as_bytes()"),
        None,
    );
    let config = root.join("ws/.cargo/config.toml");
    write(&config, "[env]\nGREETING = \"a\"\n");
    let id = rigd.create(spec("a", &root, cargo_service("ws/svc"))).await;
    assert_eq!(greeting(&mut rigd.events(&id)).await, "a\n");

    write(&config, "[env]\nGREETING = \"b\"\n");
    let id2 = rigd.create(spec("b", &root, cargo_service("ws/svc"))).await;
    let mut events2 = rigd.events(&id2);
    assert_eq!(greeting(&mut events2).await, "b\n");
    assert_eq!(
        artifact_events(&events2),
        [ArtifactStarted, ArtifactCompleted]
    );
}

/// `cargo metadata`, run for the cache key, can take long (it downloads what the package
/// needs): the service log says what rigd is doing, and DELETE kills it with the environment
/// (it used to run on, out of reach, even after rigd exited).
#[tokio::test]
async fn delete_while_the_cache_key_waits_on_cargo_metadata_kills_it() {
    let rigd = Rigd::start();
    let root = rigd.scratch();
    // A registry that accepts connections and never answers.
    let registry = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the registry");
    let port = registry.local_addr().expect("its address").port();
    let _registry = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = registry.accept().await {
            held.push(conn);
        }
    });
    let dir = cargo_package(&root, "needs", "fn main() {}\n", None);
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
    write(
        &manifest,
        &format!("{text}\n[dependencies]\nnot-in-any-cache-xyz = \"1\"\n"),
    );
    write(
        &dir.join(".cargo/config.toml"),
        &format!(
            "[source.crates-io]\nreplace-with = \"silent\"\n\
             [source.silent]\nregistry = \"sparse+http://127.0.0.1:{port}/\"\n"
        ),
    );
    let mut spec = spec("resolving", &root, cargo_service("needs"));
    // A Cargo home of its own: the machine's would stay locked while cargo waits.
    spec["host_env"] = json!({"PATH": std::env::var("PATH").unwrap_or_default(),
                              "CARGO_HOME": root.join("cargo-home").to_string_lossy()});
    let id = rigd.create(spec).await;
    let mut events = rigd.events_with_logs(&id);
    events
        .until_matching("the note that the dependencies are being resolved", |e| {
            e.log
                .as_ref()
                .is_some_and(|l| l.data.contains("resolving the dependencies of cargo:"))
        })
        .await;
    let metadata = || support::children_with_cmdline(rigd.pid(), "metadata");
    assert!(!metadata().is_empty(), "cargo metadata runs");

    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE while the cache key is computed");
    events.until(EnvironmentDown).await;
    assert!(!events.saw(ArtifactFailed), "cancelled, not failed");
    // Killed at once: cargo itself would wait 30 s for the registry.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metadata().is_empty() {
        assert!(
            Instant::now() < deadline,
            "cargo metadata outlived its environment: {:#?}",
            metadata()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
