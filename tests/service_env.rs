//! What a child process of the real `rigd` receives: its environment (wiring variables,
//! attribute templates, `RIG_*`, `RIG_WIRING`, `host_env`) and its expanded arguments.

mod support;

use std::collections::BTreeMap;

use rig_types::EventType::EnvironmentUp;
use rigd::cli::client::DeleteOptions;
use serde_json::{json, Value};
use support::{http_service, Rigd, RIGD_ONLY_VAR};

/// Reads a file written by `env`: one `NAME=value` per line.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reads a file a service wrote into its temp dir; it is written before the service
/// listens, so once the environment is up it is complete.
fn read_written(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the service wrote no {}: {e}", path.display()))
}

#[tokio::test]
async fn a_child_gets_exactly_host_env_plus_the_wiring() {
    let rigd = Rigd::start();
    // Dumps its environment, then serves both ingresses.
    let script = rigd.script(
        "dump-env.sh",
        "env > \"$RIG_TEMP_DIR/env.txt\"\n\
         python3 -m http.server --bind 127.0.0.1 \"$ADMIN_PORT\" &\n\
         exec python3 -m http.server --bind 127.0.0.1 \"$PORT\"\n",
    );
    let mut db = http_service();
    db["ingresses"]["default"]["attributes"] = json!({
        "PGHOST": "${HOST}", "PGPORT": "${PORT}", "PGDATABASE": "orders"
    });
    let id = rigd
        .create(json!({
            "name": "wiring",
            // Without proxies, so the addresses in environment.up are the services' own.
            "observe": false,
            "host_env": {
                "PATH": std::env::var("PATH").unwrap_or_default(),
                "RIG_IT_PASSED": "from the client",
                "HOST": "original-host"
            },
            "services": {
                "db": db,
                "api": {
                    "type": "process",
                    "config": {"command": "sh"},
                    "args": [script],
                    "ingresses": {
                        "default": {"protocol": "http", "attributes": {
                            "PGHOST": "${HOST}",
                            "SELF_URL": "http://${HOSTPORT}/v1",
                            "MAX_ROWS": 1000000
                        }},
                        "admin": {"protocol": "http"}
                    },
                    "egresses": {"orders-db": {"service": "db"}}
                }
            }
        }))
        .await;
    let mut events = rigd.events(&id);
    let up = events.until(EnvironmentUp).await;
    let env_dir = up.env_dir.clone();
    let temp_dir = format!("{env_dir}/api");
    let env = parse_env(&read_written(
        &std::path::Path::new(&temp_dir).join("env.txt"),
    ));

    let api = &up.ingresses["api"];
    let (host, port) = api["default"].hostport.split_once(':').expect("host:port");
    let (admin_host, admin_port) = api["admin"].hostport.split_once(':').expect("host:port");
    let db_hostport = &up.ingresses["db"]["default"].hostport;
    let (db_host, db_port) = db_hostport.split_once(':').expect("host:port");
    let expected = [
        ("HOST", host),
        ("PORT", port),
        ("ADMIN_HOST", admin_host),
        ("ADMIN_PORT", admin_port),
        ("PGHOST", "127.0.0.1"),
        ("SELF_URL", &format!("http://{host}:{port}/v1")),
        ("MAX_ROWS", "1e+06"),
        ("ORDERS_DB_HOST", db_host),
        ("ORDERS_DB_PORT", db_port),
        ("ORDERS_DB_PGHOST", "127.0.0.1"),
        ("ORDERS_DB_PGPORT", db_port),
        ("ORDERS_DB_PGDATABASE", "orders"),
        ("RIG_SERVICE", "api"),
        ("RIG_TEMP_DIR", &temp_dir),
        ("RIG_ENV_DIR", &env_dir),
        ("RIG_IT_PASSED", "from the client"),
    ];
    for (name, value) in expected {
        assert_eq!(
            env.get(name).map(String::as_str),
            Some(value),
            "{name} in {env:#?}"
        );
    }
    assert_eq!(host, "127.0.0.1", "the wiring's HOST wins over host_env");
    assert_eq!(
        env.get("PATH"),
        Some(&std::env::var("PATH").unwrap_or_default())
    );
    assert!(
        !env.contains_key(RIGD_ONLY_VAR),
        "rigd's own environment leaked into the child"
    );
    assert!(
        !env.contains_key("DB_HOST"),
        "egresses are prefixed by their name"
    );

    let wiring: Value = serde_json::from_str(&env["RIG_WIRING"]).expect("RIG_WIRING is JSON");
    assert_eq!(
        wiring,
        json!({
            "ingresses": {
                "admin": {"hostport": api["admin"].hostport, "protocol": "http"},
                "default": {
                    "hostport": api["default"].hostport,
                    "protocol": "http",
                    "attributes": {
                        "PGHOST": "127.0.0.1",
                        "SELF_URL": format!("http://{host}:{port}/v1"),
                        "MAX_ROWS": 1000000
                    }
                }
            },
            "egresses": {
                "orders-db": {
                    "hostport": db_hostport,
                    "protocol": "http",
                    "attributes": {
                        "PGHOST": "127.0.0.1", "PGPORT": db_port, "PGDATABASE": "orders"
                    }
                }
            },
            "temp_dir": temp_dir,
            "env_dir": env_dir
        })
    );

    // GET /environments/{id} shows the same resolved egress.
    let view = rigd.client().get_environment(&id).await.expect("GET");
    let egresses = view.services["api"]
        .egresses
        .as_ref()
        .expect("api has an egress");
    assert_eq!(&egresses["orders-db"].hostport, db_hostport);
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}

#[tokio::test]
async fn args_are_expanded_against_the_service_environment() {
    let rigd = Rigd::start();
    // Writes its arguments one per line, then listens on the port it was given.
    let script = rigd.script(
        "print-args.sh",
        "printf '%s\\n' \"$@\" > \"$RIG_TEMP_DIR/args.txt\"\n\
         exec python3 -m http.server --bind 127.0.0.1 \"$1\"\n",
    );
    let id = rigd
        .create(
            json!({"name": "args", "observe": false, "services": {"api": {
                "type": "process",
                "config": {"command": "sh"},
                "args": [
                    script, "${PORT}", "--port", "${PORT}", "--host", "$HOST",
                    "-c", "${RIG_TEMP_DIR}/config.json", "--missing=${NOT_SET}", "plain"
                ],
                "ingresses": {"default": {"protocol": "http"}}
            }}}),
        )
        .await;
    let mut events = rigd.events(&id);
    let up = events.until(EnvironmentUp).await;
    let port = up.ingresses["api"]["default"]
        .port()
        .expect("a port")
        .to_string();
    let temp_dir = format!("{}/api", up.env_dir);
    let args = read_written(&std::path::Path::new(&temp_dir).join("args.txt"));
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            port.as_str(),
            "--port",
            port.as_str(),
            "--host",
            "127.0.0.1",
            "-c",
            &format!("{temp_dir}/config.json"),
            "--missing=",
            "plain"
        ]
    );
    // The unset name is pointed out in the service's log, on rigd's own stream.
    let notes: Vec<String> = rigd
        .log(&id)
        .await
        .into_iter()
        .filter_map(|event| event.log)
        .filter(|log| log.stream.as_str() == "rig")
        .map(|log| log.data)
        .collect();
    assert_eq!(
        notes,
        [
            "args[8] \"--missing=${NOT_SET}\": $NOT_SET is not set for this service, so it \
          expands to nothing; check the spelling, or write $$ for a literal $\n"
        ]
    );
    rigd.client()
        .delete_environment(&id, &DeleteOptions::default())
        .await
        .expect("DELETE");
}
