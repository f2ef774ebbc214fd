//! The wire JSON of every builder, and the misuse `up` reports before talking to rigd.

use serde_json::{json, Value};

use super::wire::ServiceParts;
use super::*;
use crate::Error;

fn wire(services: Vec<(&str, Service)>) -> Result<(Value, ServiceParts), Error> {
    let parts = build_services(
        services
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect(),
    )?;
    Ok((serde_json::to_value(&parts.services).unwrap(), parts))
}

fn one(service: Service) -> Value {
    wire(vec![("svc", service)]).unwrap().0["svc"].clone()
}

#[test]
fn process_with_args_egresses_and_ready_path() {
    let svc = process("python3")
        .args(["-m", "http.server", "${PORT}"])
        .egress("db")
        .egress_to("cache", "redis", "default")
        .ready_path("/health")
        .ready_timeout(Duration::from_secs(5))
        .dir("services");
    assert_eq!(
        one(svc),
        json!({
            "type": "process",
            "config": {"command": "python3", "dir": "services"},
            "args": ["-m", "http.server", "${PORT}"],
            "ingresses": {"default": {"protocol": "http", "ready": {"path": "/health", "timeout": "5s"}}},
            "egresses": {"cache": {"service": "redis", "ingress": "default"}, "db": {"service": "db"}}
        })
    );
}

#[test]
fn a_hook_timeout_applies_to_every_hook_of_the_service() {
    let svc = postgres()
        .init_sql(["CREATE TABLE t (id int)"])
        .hook_timeout(Duration::from_secs(600))
        .init(|_| async { Ok(()) });
    let hooks = &one(svc)["hooks"]["init"];
    assert_eq!(hooks[0]["type"], "sql");
    assert_eq!(hooks[0]["timeout"], "10m0s");
    assert_eq!(hooks[1]["type"], "client_func");
    // rigd waits a little longer for a hook the test runs: the SDK reports the overrun.
    assert_eq!(hooks[1]["timeout"], "10m5s");
    // Without it, no timeout is sent: rigd's defaults apply.
    let plain = one(postgres().init_sql(["SELECT 1"]));
    assert!(
        plain["hooks"]["init"][0].get("timeout").is_none(),
        "{plain}"
    );
}

#[test]
fn ingresses_can_be_replaced_and_removed() {
    let svc = process("x")
        .no_ingress()
        .ingress("grpc", Protocol::Grpc)
        .ingress("admin", Protocol::Http);
    assert_eq!(
        one(svc)["ingresses"],
        json!({"admin": {"protocol": "http"}, "grpc": {"protocol": "grpc"}})
    );
    assert!(one(process("worker").no_ingress())
        .get("ingresses")
        .is_none());
}

#[test]
fn hooks_and_funcs_get_descriptive_callback_names_and_handlers() {
    let api = process("api")
        .prestart(|_| async { Ok(()) })
        .init(|_| async { Ok(()) })
        .init(|_| async { Ok(()) });
    let worker = func(|_| async { Ok(()) });
    let (v, parts) = wire(vec![("api", api), ("worker", worker)]).unwrap();
    let hooks = &v["api"]["hooks"];
    let names: Vec<&str> = [&hooks["prestart"][0], &hooks["init"][0], &hooks["init"][1]]
        .iter()
        .map(|h| {
            assert_eq!(h["type"], "client_func");
            h["client_func"]["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "prestart hook 1 of api",
            "init hook 1 of api",
            "init hook 2 of api"
        ]
    );
    assert_eq!(v["worker"]["type"], "client");
    let start = v["worker"]["config"]["start_handler"].as_str().unwrap();
    assert_eq!(start, "start func worker");
    assert_eq!(
        v["worker"]["ingresses"],
        json!({"default": {"protocol": "http"}})
    );

    assert_eq!(parts.handlers.len(), 4);
    assert!(matches!(
        parts.handlers.get(names[0]),
        Some(Handler::Hook { service, phase: Phase::Prestart, .. }) if service == "api"
    ));
    assert!(matches!(
        parts.handlers.get(start),
        Some(Handler::Start { service, .. }) if service == "worker"
    ));
}

#[test]
fn infrastructure_types_have_their_fixed_ingresses() {
    assert_eq!(
        one(postgres()),
        json!({"type": "postgres", "ingresses": {"default": {"protocol": "tcp", "container_port": 5432}}})
    );
    assert_eq!(one(redis())["ingresses"]["default"]["container_port"], 6379);
    assert_eq!(one(s3())["ingresses"]["default"]["container_port"], 9000);
    assert_eq!(one(sqs())["ingresses"]["default"]["container_port"], 9324);
    assert_eq!(
        one(kafka())["ingresses"],
        json!({"default": {"protocol": "kafka", "container_port": 9092}})
    );
    assert_eq!(
        one(kafka().schema_registry())["ingresses"],
        json!({"default": {"protocol": "kafka", "container_port": 9092},
               "schema-registry": {"protocol": "http", "container_port": 8081}})
    );
    assert_eq!(
        one(temporal())["ingresses"],
        json!({"default": {"protocol": "grpc"}, "ui": {"protocol": "http"}})
    );
    assert_eq!(
        one(cargo("../api").bin("api"))["config"],
        json!({"path": "../api", "bin": "api"})
    );
    assert_eq!(
        one(go("./cmd/api"))["config"],
        json!({"module": "./cmd/api"})
    );
    assert_eq!(
        one(container("nginx").env("A", "1"))["config"],
        json!({"image": "nginx", "env": {"A": "1"}})
    );
}

#[test]
fn custom_sends_its_type_and_config() {
    assert_eq!(
        one(custom("process", json!({"command": "./x"})).args(["a"])),
        json!({"type": "process", "config": {"command": "./x"}, "args": ["a"],
               "ingresses": {"default": {"protocol": "http"}}})
    );
    assert!(one(custom("script", ())).get("config").is_none());
    assert_eq!(one(custom("odd", json!([1, 2])))["config"], json!([1, 2]));
}

#[test]
fn misuse_is_reported_with_the_service_name() {
    let err = |s: Service| wire(vec![("svc", s)]).err().unwrap().to_string();
    assert_eq!(
        err(func(|_| async { Ok(()) }).args(["x"])),
        "service \"svc\": arguments are not supported by func services"
    );
    assert!(err(func(|_| async { Ok(()) }).env("A", "1")).contains("through its closure"));
    assert_eq!(
        err(postgres().ready_path("/x")),
        "service \"svc\": .ready_path(\"/x\") needs an HTTP ingress, and this service has none"
    );
    assert!(err(redis().dir("x")).contains(".dir() is only for process services"));
    assert!(err(process("x").bin("api")).contains(".bin() is only for cargo services"));
    assert!(err(redis().schema_registry()).contains("only for kafka services"));
    assert!(err(redis().topics(["t"])).contains(".topics(..) is only for kafka services"));
    assert!(err(redis().exec(["true"])).contains("a container or a postgres service"));
    assert_eq!(
        one(kafka().topics(["orders"]))["hooks"]["init"],
        json!([{"type": "schema", "config": {"topics": ["orders"]}}])
    );
    let dup = wire(vec![("a", process("x")), ("a", process("y"))])
        .err()
        .unwrap();
    assert_eq!(
        dup.to_string(),
        "service \"a\": defined twice; service names must be unique"
    );
}

#[test]
fn env_is_per_service_for_the_types_that_run_a_program() {
    let (services, parts) = wire(vec![
        ("a", process("x").env("MODE", "one")),
        ("b", process("y").env("MODE", "two")),
        ("c", cargo(".").env("MODE", "three")),
        ("d", go("./cmd/d").env("MODE", "four")),
    ])
    .unwrap();
    assert!(parts.env.is_empty(), "nothing leaks into host_env");
    assert_eq!(services["a"]["config"]["env"], json!({"MODE": "one"}));
    assert_eq!(services["b"]["config"]["env"], json!({"MODE": "two"}));
    assert_eq!(services["c"]["config"]["env"], json!({"MODE": "three"}));
    assert_eq!(services["d"]["config"]["env"], json!({"MODE": "four"}));
}

#[test]
fn custom_env_goes_to_host_env_and_conflicts_are_errors() {
    let (_, parts) = wire(vec![
        (
            "a",
            custom("thing", json!({}))
                .env("MODE", "test")
                .env("A_ONLY", "1"),
        ),
        ("b", custom("thing", json!({})).env("MODE", "test")),
    ])
    .unwrap();
    assert_eq!(parts.env["MODE"], "test");
    assert_eq!(parts.env["A_ONLY"], "1");
    let err = wire(vec![
        ("a", custom("thing", json!({})).env("MODE", "one")),
        ("b", custom("thing", json!({})).env("MODE", "two")),
    ])
    .err()
    .unwrap();
    assert!(
        matches!(&err, Error::EnvConflict { variable, first, second }
        if variable == "MODE" && first == "a" && second == "b"),
        "{err}"
    );
}

#[test]
fn server_side_init_hooks_keep_their_order_among_client_hooks() {
    let svc = postgres()
        .backend("native")
        .init_sql(["CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)"])
        .init(|_| async { Ok(()) })
        .exec(["psql", "-c", "SELECT 1"]);
    let (wire, parts) = wire(vec![("db", svc)]).unwrap();
    assert_eq!(wire["db"]["config"], json!({"backend": "native"}));
    assert_eq!(
        wire["db"]["hooks"]["init"],
        json!([
            {"type": "sql", "config": {"statements": ["CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)"]}},
            {"type": "client_func", "client_func": {"name": "init hook 1 of db"}},
            {"type": "exec", "config": {"command": ["psql", "-c", "SELECT 1"]}}
        ])
    );
    assert!(parts.handlers.contains_key("init hook 1 of db"));
}

#[test]
fn a_migrations_directory_is_one_sql_hook_in_file_name_order() {
    let dir = std::env::temp_dir().join(format!("rig-sql-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("002_seed.sql"), "INSERT INTO t VALUES (1);").unwrap();
    std::fs::write(dir.join("001_schema.sql"), "CREATE TABLE t (id int);").unwrap();
    std::fs::write(dir.join("README.md"), "not sql").unwrap();
    let svc = postgres().init_sql_dir(&dir);
    assert_eq!(
        one(svc)["hooks"]["init"],
        json!([{"type": "sql", "config": {"statements": [
            "CREATE TABLE t (id int);", "INSERT INTO t VALUES (1);"
        ]}}])
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(one(postgres().init_sql_dir(&empty)).get("hooks").is_none());
    std::fs::remove_dir_all(&dir).unwrap();

    let err = wire(vec![("db", postgres().init_sql_dir("/no/such/migrations"))])
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("service \"db\": .init_sql_dir(/no/such/migrations): "),
        "{err}"
    );
}

#[test]
fn infrastructure_options_on_other_services_are_reported() {
    let err = wire(vec![(
        "api",
        process("./api").init_sql(["SELECT 1"]).backend("native"),
    )])
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains(".init_sql(..) applies to postgres services, not process"),
        "{err}"
    );
    assert!(
        err.contains(".backend(..) applies to infrastructure services"),
        "{err}"
    );
    let err = wire(vec![("f", func(|_| async { Ok(()) }).exec(["ls"]))])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(".exec(..) runs a command inside a container"),
        "{err}"
    );
    assert_eq!(
        one(redis().image("redis:7").config("maxmemory", "64mb"))["config"],
        json!({"image": "redis:7", "maxmemory": "64mb"})
    );
    for aws in [s3(), sqs()] {
        assert_eq!(
            one(aws.backend("container").image("motoserver/moto:5.2.1"))["config"],
            json!({"backend": "container", "image": "motoserver/moto:5.2.1"})
        );
    }
    assert_eq!(
        one(temporal().version("1.8.0"))["config"],
        json!({"version": "1.8.0"})
    );
    let err = wire(vec![("db", postgres().version("16"))])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(".version(..) applies to temporal services, not postgres"),
        "{err}"
    );
}
