//! Tests of the environment builders: every upstream `wiring_test.go` case, every row of the
//! reference table of pinned variables, and the write-order rules.

use std::collections::BTreeMap;

use rig_types::{Endpoint, Protocol, WiringContext};
use serde_json::{json, Value};

use super::env::*;

fn ep(hostport: &str, protocol: Protocol, attributes: Option<Value>) -> Endpoint {
    Endpoint {
        hostport: hostport.into(),
        protocol,
        attributes: attributes.map(|a| serde_json::from_value(a).unwrap()),
    }
}

/// Owns everything a [`ServiceEnvInput`] borrows.
struct Fixture {
    service: String,
    ingresses: BTreeMap<String, Endpoint>,
    egresses: BTreeMap<String, Endpoint>,
    temp_dir: String,
    env_dir: String,
    host_env: BTreeMap<String, String>,
}

impl Fixture {
    fn new(service: &str) -> Fixture {
        Fixture {
            service: service.into(),
            ingresses: BTreeMap::new(),
            egresses: BTreeMap::new(),
            temp_dir: "/tmp".into(),
            env_dir: "/tmp".into(),
            host_env: BTreeMap::new(),
        }
    }

    fn ingress(mut self, name: &str, endpoint: Endpoint) -> Fixture {
        self.ingresses.insert(name.into(), endpoint);
        self
    }

    fn egress(mut self, name: &str, endpoint: Endpoint) -> Fixture {
        self.egresses.insert(name.into(), endpoint);
        self
    }

    fn dirs(mut self, temp_dir: &str, env_dir: &str) -> Fixture {
        self.temp_dir = temp_dir.into();
        self.env_dir = env_dir.into();
        self
    }

    fn host(mut self, key: &str, value: &str) -> Fixture {
        self.host_env.insert(key.into(), value.into());
        self
    }

    fn input(&self) -> ServiceEnvInput<'_> {
        ServiceEnvInput {
            service: &self.service,
            ingresses: &self.ingresses,
            egresses: &self.egresses,
            temp_dir: &self.temp_dir,
            env_dir: &self.env_dir,
            host_env: &self.host_env,
        }
    }

    fn service_env(&self) -> BTreeMap<String, String> {
        build_service_env(&self.input()).unwrap()
    }

    fn init_env(&self) -> BTreeMap<String, String> {
        build_init_hook_env(&self.input()).unwrap()
    }
}

#[track_caller]
fn assert_var(env: &BTreeMap<String, String>, key: &str, want: &str) {
    match env.get(key) {
        Some(got) => assert_eq!(got, want, "env[{key:?}]"),
        None => panic!(
            "missing env var {key:?} (have {:?})",
            env.keys().collect::<Vec<_>>()
        ),
    }
}

fn postgres_default() -> Endpoint {
    ep(
        "127.0.0.1:5432",
        Protocol::Tcp,
        Some(json!({"PGHOST": "${HOST}", "PGPORT": "${PORT}", "PGDATABASE": "testdb"})),
    )
}

// --- upstream wiring_test.go ---------------------------------------------------------------

#[test]
fn service_level_variables() {
    let f = Fixture::new("my-api").dirs("/tmp/rig/abc/my-api", "/tmp/rig/abc");
    let env = f.service_env();
    assert_var(&env, "RIG_TEMP_DIR", "/tmp/rig/abc/my-api");
    assert_var(&env, "RIG_ENV_DIR", "/tmp/rig/abc");
    assert_var(&env, "RIG_SERVICE", "my-api");
}

#[test]
fn default_ingress_is_unprefixed_and_resolved() {
    let f = Fixture::new("db").ingress("default", postgres_default());
    let env = f.service_env();
    assert_var(&env, "HOST", "127.0.0.1");
    assert_var(&env, "PORT", "5432");
    assert_var(&env, "PGHOST", "127.0.0.1");
    assert_var(&env, "PGPORT", "5432");
}

#[test]
fn named_ingress_is_prefixed() {
    let f = Fixture::new("api")
        .ingress("default", ep("127.0.0.1:8080", Protocol::Http, None))
        .ingress("admin", ep("127.0.0.1:9090", Protocol::Http, None));
    let env = f.service_env();
    assert_var(&env, "HOST", "127.0.0.1");
    assert_var(&env, "PORT", "8080");
    assert_var(&env, "ADMIN_HOST", "127.0.0.1");
    assert_var(&env, "ADMIN_PORT", "9090");
}

#[test]
fn egress_is_always_prefixed() {
    let f = Fixture::new("api").egress(
        "database",
        ep(
            "127.0.0.1:54321",
            Protocol::Tcp,
            Some(json!({"PGHOST": "${HOST}", "PGPORT": "${PORT}", "PGDATABASE": "orders"})),
        ),
    );
    let env = f.service_env();
    assert_var(&env, "DATABASE_HOST", "127.0.0.1");
    assert_var(&env, "DATABASE_PORT", "54321");
    assert_var(&env, "DATABASE_PGHOST", "127.0.0.1");
    assert_var(&env, "DATABASE_PGPORT", "54321");
    assert_var(&env, "DATABASE_PGDATABASE", "orders");
    for bare in ["HOST", "PORT", "PGHOST", "PGDATABASE"] {
        assert!(!env.contains_key(bare), "egress leaked unprefixed {bare}");
    }
}

#[test]
fn multiple_egresses_are_kept_apart() {
    let f = Fixture::new("api")
        .egress(
            "orders-db",
            ep(
                "127.0.0.1:54321",
                Protocol::Tcp,
                Some(json!({"PGDATABASE": "orders"})),
            ),
        )
        .egress(
            "users-db",
            ep(
                "127.0.0.1:54322",
                Protocol::Tcp,
                Some(json!({"PGDATABASE": "users"})),
            ),
        );
    let env = f.service_env();
    assert_var(&env, "ORDERS_DB_PGDATABASE", "orders");
    assert_var(&env, "USERS_DB_PGDATABASE", "users");
    assert_var(&env, "ORDERS_DB_PORT", "54321");
    assert_var(&env, "USERS_DB_PORT", "54322");
}

#[test]
fn hyphenated_egress_name() {
    let f = Fixture::new("api").egress("order-db", ep("127.0.0.1:5432", Protocol::Tcp, None));
    let env = f.service_env();
    assert_var(&env, "ORDER_DB_HOST", "127.0.0.1");
    assert_var(&env, "ORDER_DB_PORT", "5432");
}

#[test]
fn no_default_ingress_means_no_bare_host_port() {
    let f = Fixture::new("api")
        .ingress("grpc", ep("127.0.0.1:9090", Protocol::Grpc, None))
        .ingress("http", ep("127.0.0.1:8080", Protocol::Http, None));
    let env = f.service_env();
    assert_var(&env, "GRPC_HOST", "127.0.0.1");
    assert_var(&env, "GRPC_PORT", "9090");
    assert_var(&env, "HTTP_HOST", "127.0.0.1");
    assert_var(&env, "HTTP_PORT", "8080");
    assert!(!env.contains_key("HOST"));
    assert!(!env.contains_key("PORT"));
}

#[test]
fn init_hook_env_has_no_egresses_and_no_wiring() {
    let f = Fixture::new("postgres")
        .dirs("/tmp/pg", "/tmp")
        .ingress("default", postgres_default())
        .egress(
            "database",
            ep(
                "127.0.0.1:1",
                Protocol::Tcp,
                Some(json!({"PGHOST": "${HOST}"})),
            ),
        );
    let env = f.init_env();
    assert_var(&env, "HOST", "127.0.0.1");
    assert_var(&env, "PORT", "5432");
    assert_var(&env, "PGHOST", "127.0.0.1");
    assert_var(&env, "PGDATABASE", "testdb");
    assert_var(&env, "RIG_TEMP_DIR", "/tmp/pg");
    assert_var(&env, "RIG_ENV_DIR", "/tmp");
    assert_var(&env, "RIG_SERVICE", "postgres");
    assert!(!env.keys().any(|k| k.starts_with("DATABASE_")), "{env:?}");
    assert!(!env.contains_key("RIG_WIRING"));
}

#[test]
fn init_hook_env_with_multiple_ingresses() {
    let f = Fixture::new("temporal")
        .ingress(
            "default",
            ep(
                "127.0.0.1:7233",
                Protocol::Grpc,
                Some(json!({"TEMPORAL_ADDRESS": "${HOSTPORT}"})),
            ),
        )
        .ingress("ui", ep("127.0.0.1:8080", Protocol::Http, None));
    let env = f.init_env();
    assert_var(&env, "HOST", "127.0.0.1");
    assert_var(&env, "PORT", "7233");
    assert_var(&env, "TEMPORAL_ADDRESS", "127.0.0.1:7233");
    assert_var(&env, "UI_HOST", "127.0.0.1");
    assert_var(&env, "UI_PORT", "8080");
}

#[test]
fn prestart_hook_env_has_egresses_and_equals_service_env() {
    let f = Fixture::new("order-service")
        .dirs("/tmp/os", "/tmp")
        .ingress("default", ep("127.0.0.1:8080", Protocol::Http, None))
        .egress(
            "database",
            ep(
                "127.0.0.1:5432",
                Protocol::Tcp,
                Some(json!({"PGHOST": "${HOST}", "PGDATABASE": "orders"})),
            ),
        );
    let env = build_prestart_hook_env(&f.input()).unwrap();
    assert_var(&env, "HOST", "127.0.0.1");
    assert_var(&env, "PORT", "8080");
    assert_var(&env, "DATABASE_PGDATABASE", "orders");
    assert_var(&env, "DATABASE_HOST", "127.0.0.1");
    assert_var(&env, "DATABASE_PGHOST", "127.0.0.1");
    assert_eq!(env, f.service_env());
}

#[test]
fn service_env_resolves_templates() {
    let f = Fixture::new("db").ingress(
        "default",
        ep(
            "127.0.0.1:5432",
            Protocol::Tcp,
            Some(json!({"PGHOST": "${HOST}", "PGPORT": "${PORT}", "PGDATABASE": "orders", "ADDR": "${HOSTPORT}"})),
        ),
    );
    let env = f.service_env();
    assert_var(&env, "PGHOST", "127.0.0.1");
    assert_var(&env, "PGPORT", "5432");
    assert_var(&env, "PGDATABASE", "orders");
    assert_var(&env, "ADDR", "127.0.0.1:5432");
}

#[test]
fn host_env_is_the_base_layer() {
    let f = Fixture::new("api")
        .host("PATH", "/usr/bin:/bin")
        .host("JAVA_HOME", "/opt/java")
        .ingress("default", ep("127.0.0.1:8080", Protocol::Http, None));
    let env = f.service_env();
    assert_var(&env, "PATH", "/usr/bin:/bin");
    assert_var(&env, "JAVA_HOME", "/opt/java");
    assert_var(&env, "HOST", "127.0.0.1");
    assert_var(&env, "RIG_SERVICE", "api");
    let env = f.init_env();
    assert_var(&env, "PATH", "/usr/bin:/bin");
    assert_var(&env, "JAVA_HOME", "/opt/java");
}

#[test]
fn wiring_overrides_host_env() {
    let f = Fixture::new("api")
        .host("HOST", "original-host")
        .host("PORT", "9999")
        .host("PATH", "/usr/bin")
        .host("RIG_SERVICE", "someone-else")
        .host("RIG_WIRING", "stale")
        .ingress("default", ep("127.0.0.1:8080", Protocol::Http, None));
    let env = f.service_env();
    assert_var(&env, "HOST", "127.0.0.1");
    assert_var(&env, "PORT", "8080");
    assert_var(&env, "PATH", "/usr/bin");
    assert_var(&env, "RIG_SERVICE", "api");
    assert_ne!(env["RIG_WIRING"], "stale");
}

// --- prefixes, ordering and rendering --------------------------------------------------------

#[test]
fn env_prefixes() {
    assert_eq!(to_env_prefix("order-db"), "ORDER_DB_");
    assert_eq!(to_env_prefix("schema-registry"), "SCHEMA_REGISTRY_");
    assert_eq!(to_env_prefix("api~grpc"), "API~GRPC_");
    assert_eq!(to_env_prefix("a.b_c"), "A.B_C_");
    assert_eq!(to_env_prefix("Admin"), "ADMIN_");
    assert_eq!(to_env_prefix(""), "_");
}

#[test]
fn only_the_ingress_named_default_is_unprefixed() {
    let f = Fixture::new("api").ingress("Default", ep("127.0.0.1:1", Protocol::Tcp, None));
    let env = f.service_env();
    assert_var(&env, "DEFAULT_PORT", "1");
    assert!(!env.contains_key("PORT"));
}

#[test]
fn attributes_override_computed_host_and_port() {
    let f = Fixture::new("api")
        .ingress(
            "default",
            ep(
                "127.0.0.1:8080",
                Protocol::Http,
                Some(json!({"PORT": "80"})),
            ),
        )
        .egress(
            "db",
            ep(
                "127.0.0.1:5432",
                Protocol::Tcp,
                Some(json!({"HOST": "db.local"})),
            ),
        );
    let env = f.service_env();
    assert_var(&env, "PORT", "80");
    assert_var(&env, "HOST", "127.0.0.1");
    assert_var(&env, "DB_HOST", "db.local");
    assert_var(&env, "DB_PORT", "5432");
}

#[test]
fn egresses_are_written_after_ingresses() {
    // The default ingress's attribute DATABASE_HOST collides with egress `database`.
    let f = Fixture::new("api")
        .ingress(
            "default",
            ep(
                "127.0.0.1:1",
                Protocol::Tcp,
                Some(json!({"DATABASE_HOST": "from-ingress"})),
            ),
        )
        .egress("database", ep("10.0.0.2:5432", Protocol::Tcp, None));
    assert_var(&f.service_env(), "DATABASE_HOST", "10.0.0.2");
}

#[test]
fn ingress_attributes_are_written_after_service_variables() {
    let f = Fixture::new("api").ingress(
        "default",
        ep(
            "127.0.0.1:1",
            Protocol::Tcp,
            Some(json!({"RIG_SERVICE": "overridden"})),
        ),
    );
    assert_var(&f.service_env(), "RIG_SERVICE", "overridden");
    assert_var(&f.init_env(), "RIG_SERVICE", "overridden");
}

#[test]
fn attribute_values_render_like_go_percent_v() {
    let f = Fixture::new("api").egress(
        "db",
        ep(
            "127.0.0.1:5432",
            Protocol::Tcp,
            Some(json!({
                "INT": 5432,
                "HALF": 0.5,
                "MILLION": 1000000,
                "NULL": null,
                "YES": true,
                "NO": false,
                "LIST": ["a", "b"],
                "OBJ": {"k": "v", "a": 1},
                "STR": "plain text",
            })),
        ),
    );
    let env = f.service_env();
    assert_var(&env, "DB_INT", "5432");
    assert_var(&env, "DB_HALF", "0.5");
    assert_var(&env, "DB_MILLION", "1e+06");
    assert_var(&env, "DB_NULL", "<nil>");
    assert_var(&env, "DB_YES", "true");
    assert_var(&env, "DB_NO", "false");
    assert_var(&env, "DB_LIST", "[a b]");
    assert_var(&env, "DB_OBJ", "map[a:1 k:v]");
    assert_var(&env, "DB_STR", "plain text");
}

#[test]
fn empty_temp_dir_is_still_set() {
    let f = Fixture::new("~proxy").dirs("", "/env");
    let env = f.service_env();
    assert_var(&env, "RIG_TEMP_DIR", "");
    assert_var(&env, "RIG_ENV_DIR", "/env");
}

#[test]
fn unparsable_hostport_gives_empty_host_and_port() {
    let f = Fixture::new("api").ingress("default", ep("nohost", Protocol::Tcp, None));
    let env = f.service_env();
    assert_var(&env, "HOST", "");
    assert_var(&env, "PORT", "");
}

// --- RIG_WIRING --------------------------------------------------------------------------------

#[test]
fn rig_wiring_is_compact_resolved_json() {
    let f = Fixture::new("api")
        .dirs("/tmp/rig/abc/api", "/tmp/rig/abc")
        .ingress("default", ep("127.0.0.1:8080", Protocol::Http, None))
        .egress(
            "db",
            ep(
                "127.0.0.1:5432",
                Protocol::Tcp,
                Some(json!({"PGHOST": "${HOST}", "PGPORT": 5432})),
            ),
        );
    let env = f.service_env();
    assert_eq!(
        env["RIG_WIRING"],
        concat!(
            r#"{"ingresses":{"default":{"hostport":"127.0.0.1:8080","protocol":"http"}},"#,
            r#""egresses":{"db":{"hostport":"127.0.0.1:5432","protocol":"tcp","attributes":{"PGHOST":"127.0.0.1","PGPORT":5432}}},"#,
            r#""temp_dir":"/tmp/rig/abc/api","env_dir":"/tmp/rig/abc"}"#
        )
    );
    let decoded: WiringContext = serde_json::from_str(&env["RIG_WIRING"]).unwrap();
    assert_eq!(decoded, wiring_context(&f.input()).unwrap());
}

#[test]
fn rig_wiring_omits_empty_fields() {
    let f = Fixture::new("api").dirs("", "");
    assert_var(&f.service_env(), "RIG_WIRING", "{}");
    let f = Fixture::new("api").dirs("/t", "");
    assert_var(&f.service_env(), "RIG_WIRING", r#"{"temp_dir":"/t"}"#);
}

#[test]
fn rig_wiring_is_html_escaped_like_go() {
    let f = Fixture::new("api").dirs("/tmp/a<b>&c\u{2028}", "").ingress(
        "default",
        ep("127.0.0.1:1", Protocol::Tcp, Some(json!({"Q": "x&y"}))),
    );
    let wiring = &f.service_env()["RIG_WIRING"];
    assert!(
        wiring.contains(r#""temp_dir":"/tmp/a\u003cb\u003e\u0026c\u2028""#),
        "{wiring}"
    );
    assert!(wiring.contains(r#""Q":"x\u0026y""#), "{wiring}");
    let decoded: WiringContext = serde_json::from_str(wiring).unwrap();
    assert_eq!(decoded.temp_dir, "/tmp/a<b>&c\u{2028}");
}

#[test]
fn wiring_context_resolves_and_keeps_source() {
    let f = Fixture::new("api")
        .dirs("/t", "/e")
        .ingress("default", postgres_default())
        .egress(
            "db",
            ep(
                "10.0.0.1:5",
                Protocol::Tcp,
                Some(json!({"URL": "pg://${HOSTPORT}"})),
            ),
        );
    let wiring = wiring_context(&f.input()).unwrap();
    assert_eq!(wiring.temp_dir, "/t");
    assert_eq!(wiring.env_dir, "/e");
    let attrs = wiring.ingresses["default"].attributes.as_ref().unwrap();
    assert_eq!(attrs["PGHOST"], json!("127.0.0.1"));
    assert_eq!(
        wiring.egresses["db"].attributes.as_ref().unwrap()["URL"],
        json!("pg://10.0.0.1:5")
    );
    // The caller's endpoints still hold their templates.
    assert_eq!(
        f.ingresses["default"].attributes.as_ref().unwrap()["PGHOST"],
        json!("${HOST}")
    );
}

// --- errors ----------------------------------------------------------------------------------

#[test]
fn unknown_variable_in_ingress_fails_with_context() {
    let f = Fixture::new("api").ingress(
        "default",
        ep(
            "127.0.0.1:1",
            Protocol::Tcp,
            Some(json!({"URL": "${PGHOST}"})),
        ),
    );
    let want = r#"resolve ingress attributes: endpoint "default": attribute "URL" template "${PGHOST}" references unknown variable ${PGHOST}; only HOST, PORT, and HOSTPORT are available"#;
    assert_eq!(build_service_env(&f.input()).unwrap_err().to_string(), want);
    assert_eq!(
        build_init_hook_env(&f.input()).unwrap_err().to_string(),
        want
    );
    assert_eq!(wiring_context(&f.input()).unwrap_err().to_string(), want);
}

#[test]
fn unknown_variable_in_egress_fails_service_env_but_not_init_env() {
    let f = Fixture::new("api").egress(
        "db",
        ep("127.0.0.1:1", Protocol::Tcp, Some(json!({"URL": "$1"}))),
    );
    let err = build_service_env(&f.input()).unwrap_err();
    assert!(matches!(err, WiringError::Egress(_)));
    assert!(
        err.to_string()
            .starts_with(r#"resolve egress attributes: endpoint "db": attribute "URL""#),
        "{err}"
    );
    assert!(build_prestart_hook_env(&f.input()).is_err());
    // Init hooks never see egresses, so they are not resolved.
    assert!(build_init_hook_env(&f.input()).is_ok());
}
