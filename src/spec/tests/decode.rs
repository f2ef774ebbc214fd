//! `decode_environment`: upstream's `TestDecodeEnvironment_*` and `TestEnvironmentFromJSON`,
//! duplicate keys at every level, wrong types, hooks, error positions.

use std::collections::BTreeMap;

use rig_types::{
    ClientFuncSpec, EgressSpec, Environment, GoDuration, HookSpec, Hooks, IngressSpec, Protocol,
    ReadySpec, Service,
};
use serde_json::json;

use super::{decode, decode_err};
use crate::spec::{decode_environment, decode_environment_noting_unknown, DecodeError};

/// Upstream `TestDecodeEnvironment_Valid`: a minimal two-service document decodes.
#[test]
fn valid_two_service_document() {
    let env = decode(json!({
        "name": "two",
        "services": {
            "db": {"type": "postgres", "ingresses": {"default": {"protocol": "tcp"}}},
            "api": {"type": "process", "egresses": {"db": {"service": "db"}}}
        }
    }));
    assert_eq!(env.name, "two");
    assert_eq!(env.services.len(), 2);
    assert_eq!(
        env.services["db"].ingresses["default"].protocol,
        Protocol::Tcp
    );
    assert_eq!(env.services["api"].egresses["db"].service, "db");
}

/// A document saved with a UTF-8 byte order mark decodes; errors in it keep their positions.
#[test]
fn a_byte_order_mark_is_ignored() {
    let body = "\u{feff}{\"name\": \"bom\", \"services\": {}}";
    assert_eq!(decode_environment(body.as_bytes()).unwrap().name, "bom");
    let error = decode_err("\u{feff}{\n  \"name\": 7}");
    assert!(error.contains("line 2"), "{error}");
}

/// Fields no version of the spec has are ignored, as upstream ignores them, and listed so
/// `rig up` and the API can say so: at the top, in services, ingresses, egresses, readiness
/// checks and hooks; never inside `config` or `attributes`, which belong to the type.
#[test]
fn unknown_fields_are_listed_in_document_order() {
    let body = r#"{
        "name": "typos",
        "servces": {},
        "observ": false,
        "services": {
            "web": {
                "type": "process",
                "confg": {"command": "x"},
                "config": {"command": "x", "anything": 1},
                "ingresses": {"default": {
                    "protocol": "http",
                    "ready": {"type": "http", "pth": "/health", "timout": "5s"},
                    "attributes": {"free": "form"}
                }},
                "egreses": {},
                "egresses": {"db": {"service": "db", "ingres": "default"}},
                "hooks": {"prestart": [{"type": "client_func", "client_func": {"name": "seed"}, "extra": 1}]}
            },
            "db": {"type": "process", "args": [], "ingresess": {}}
        }
    }"#;
    let (env, unknown) = decode_environment_noting_unknown(body.as_bytes()).unwrap();
    assert_eq!(env.services.len(), 2);
    assert_eq!(
        unknown,
        [
            "servces",
            "observ",
            "services.web.confg",
            "services.web.ingresses.default.ready.pth",
            "services.web.ingresses.default.ready.timout",
            "services.web.egreses",
            "services.web.egresses.db.ingres",
            "services.web.hooks.prestart.0.extra",
            "services.db.ingresess",
        ]
    );
    let clean =
        r#"{"name": "ok", "services": {"web": {"type": "process", "config": {"command": "x"}}}}"#;
    let (_, unknown) = decode_environment_noting_unknown(clean.as_bytes()).unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
}

/// Upstream `TestDecodeEnvironment_DuplicateServiceNames`, with the exact message.
#[test]
fn duplicate_service_names() {
    let err = decode_err(
        r#"{"name":"x","services":{"api":{"type":"process"},"db":{},"api":{"type":"go"}}}"#,
    );
    assert_eq!(err, r#"duplicate services key: "api""#);
}

/// Upstream `TestDecodeEnvironment_DuplicateIngressNames`, with the exact message.
#[test]
fn duplicate_ingress_names() {
    let err = decode_err(
        r#"{"name":"x","services":{"api":{"type":"process","ingresses":{
            "default":{"protocol":"http"},"default":{"protocol":"grpc"}}}}}"#,
    );
    assert_eq!(err, r#"service "api": duplicate ingresses key: "default""#);
}

/// Upstream `TestDecodeEnvironment_DuplicateEgressNames`, with the exact message.
#[test]
fn duplicate_egress_names() {
    let err = decode_err(
        r#"{"name":"x","services":{"api":{"type":"process","egresses":{
            "db":{"service":"db"},"cache":{"service":"redis"},"db":{"service":"pg"}}}}}"#,
    );
    assert_eq!(err, r#"service "api": duplicate egresses key: "db""#);
}

/// The error value carries the parts of the message.
#[test]
fn duplicate_key_error_is_structured() {
    let body = r#"{"services":{"a":{"egresses":{"x":{},"x":{}}}}}"#;
    assert_eq!(
        decode_environment(body.as_bytes()),
        Err(DecodeError::DuplicateKey {
            service: "a".into(),
            map: "egresses",
            key: "x".into()
        })
    );
}

/// Keys that differ only by escaping are the same key; names are compared after unescaping
/// and quoted like Go's `%q` in the message.
#[test]
fn duplicate_detection_compares_unescaped_names() {
    let err = decode_err(r#"{"services":{"a\"b":{},"a\u0022b":{}}}"#);
    assert_eq!(err, r#"duplicate services key: "a\"b""#);
}

/// The same ingress name in two different services is not a duplicate.
#[test]
fn same_ingress_name_in_two_services_is_fine() {
    let env = decode(json!({"services": {
        "a": {"ingresses": {"default": {"protocol": "http"}}},
        "b": {"ingresses": {"default": {"protocol": "http"}}}
    }}));
    assert_eq!(env.services.len(), 2);
}

/// Upstream's order: the whole top level first, so a wrong-typed field after the services
/// wins over a duplicate service name.
#[test]
fn top_level_type_error_comes_before_duplicate_services() {
    let err = decode_err(r#"{"services":{"a":{},"a":{}},"ttl":5}"#);
    assert!(err.starts_with("ttl: invalid type: integer `5`"), "{err}");
}

/// Duplicate service names are found before any per-service problem, even one earlier in
/// the document.
#[test]
fn duplicate_services_come_before_service_errors() {
    let err = decode_err(r#"{"services":{"a":{"type":5},"b":{},"b":{}}}"#);
    assert_eq!(err, r#"duplicate services key: "b""#);
}

/// Per service: ingress duplicates, then egress duplicates, then field decoding.
#[test]
fn per_service_check_order() {
    let both =
        r#"{"services":{"a":{"type":5,"egresses":{"e":{},"e":{}},"ingresses":{"i":{},"i":{}}}}}"#;
    assert_eq!(
        decode_err(both),
        r#"service "a": duplicate ingresses key: "i""#
    );
    let egress_and_type = r#"{"services":{"a":{"type":5,"egresses":{"e":{},"e":{}}}}}"#;
    assert_eq!(
        decode_err(egress_and_type),
        r#"service "a": duplicate egresses key: "e""#
    );
}

/// Services are checked in document order: the first service's problem is reported even if
/// a later one (sorted earlier) has one too.
#[test]
fn services_are_checked_in_document_order() {
    let err =
        decode_err(r#"{"services":{"zeta":{"args":"x"},"alpha":{"ingresses":{"i":{},"i":{}}}}}"#);
    assert!(
        err.starts_with(r#"service "zeta": args: invalid type"#),
        "{err}"
    );
}

/// A missing or `null` `services` gives an empty map (validation rejects it later).
#[test]
fn missing_or_null_services_is_empty() {
    assert!(decode(json!({"name": "x"})).services.is_empty());
    assert!(decode(json!({"name": "x", "services": null}))
        .services
        .is_empty());
    assert!(decode(json!({"name": "x", "services": {}}))
        .services
        .is_empty());
}

/// Unknown keys are ignored at every level; keys are case-sensitive (serde's rule, not Go's).
#[test]
fn unknown_keys_are_ignored_and_keys_are_case_sensitive() {
    let env = decode(json!({
        "Name": "upper", "extra": [1, 2],
        "services": {"api": {"type": "process", "future_field": {"x": 1},
            "ingresses": {"default": {"protocol": "http", "unknown": true}}}}
    }));
    assert_eq!(env.name, "");
    assert_eq!(
        env.services["api"].ingresses["default"].protocol,
        Protocol::Http
    );
}

/// `null` top-level fields take their defaults, as in Go.
#[test]
fn null_top_level_fields_take_defaults() {
    let env = decode(json!({
        "name": null, "observe": null, "host_env": null, "dir": null, "ttl": null,
        "services": {"a": {"type": "process"}}
    }));
    assert_eq!(env.name, "");
    assert!(env.observe, "observe defaults to on");
    assert!(env.host_env.is_empty());
    assert_eq!(env.services.len(), 1);
}

/// Every top-level field is decoded into the environment. Listing every field of
/// `Environment` without `..Default::default()` makes this test stop compiling when a field
/// is added, as a reminder to decode it.
#[test]
fn every_top_level_field_is_decoded() {
    let expected = Environment {
        name: "full".into(),
        services: BTreeMap::from([("a".to_string(), Service::default())]),
        observe: true,
        host_env: BTreeMap::from([("HOME".to_string(), "/root".to_string())]),
        dir: "/work".into(),
        ttl: "5m".into(),
        callback_timeout: rig_types::GoDuration::from_secs(45),
    };
    let text = serde_json::to_vec(&expected).expect("serialises");
    assert_eq!(decode_environment(&text), Ok(expected));
}

/// Observe mode is on unless the spec turns it off.
#[test]
fn observe_is_on_unless_turned_off() {
    let on = decode_environment(br#"{"name":"a","services":{}}"#).unwrap();
    assert!(on.observe);
    let null = decode_environment(br#"{"name":"a","observe":null}"#).unwrap();
    assert!(null.observe);
    let off = decode_environment(br#"{"name":"a","observe":false}"#).unwrap();
    assert!(!off.observe);
}

/// A repeated top-level field is rejected rather than silently overwritten.
#[test]
fn repeated_top_level_field_is_rejected() {
    let err = decode_err(r#"{"name":"a","services":{},"name":"b"}"#);
    assert_eq!(err, r#"duplicate field "name": the spec sets it twice"#);
    // Repeated unknown keys are ignored, as any unknown key.
    assert!(decode_environment(br#"{"x":1,"x":2}"#).is_ok());
}

/// Wrong JSON types are errors naming the field, never panics.
#[test]
fn wrong_types_are_errors_naming_the_field() {
    let cases = [
        (
            r#"{"services":[]}"#,
            "services: invalid type: sequence, expected an object mapping service names to \
             services at line 1 column 12",
        ),
        (
            r#"{"ttl":5}"#,
            "ttl: invalid type: integer `5`, expected a string at line 1 column 8",
        ),
        (
            r#"{"observe":"yes"}"#,
            "observe: invalid type: string \"yes\", expected a boolean at line 1 column 16",
        ),
        (
            r#"{"name":1}"#,
            "name: invalid type: integer `1`, expected a string at line 1 column 9",
        ),
        (
            r#"{"host_env":{"HOME":1}}"#,
            "host_env.HOME: invalid type: integer `1`, expected a string at line 1 column 21",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(decode_err(body), want, "body {body}");
    }
}

/// Malformed documents and non-object documents are errors.
#[test]
fn malformed_documents_are_errors() {
    for body in [
        "",
        "{",
        "nope",
        r#"{"name":"x",}"#,
        "[]",
        "null",
        "42",
        r#"{"a":1} x"#,
    ] {
        assert!(
            decode_environment(body.as_bytes()).is_err(),
            "body {body:?}"
        );
    }
    assert_eq!(
        decode_err("[]"),
        "invalid type: sequence, expected a JSON object (the environment spec) at line 1 column 0"
    );
    assert_eq!(
        decode_err("\u{0}"),
        "expected value at line 1 column 1",
        "a NUL byte is not JSON"
    );
    let bad_utf8 = decode_environment(b"{\"name\":\"\xff\"}").map_err(|e| e.to_string());
    assert_eq!(
        bad_utf8,
        Err("the spec is not valid UTF-8 text (invalid byte at line 1 column 10)".to_string())
    );
}

/// A service that is not an object is an error with the service name.
#[test]
fn service_that_is_not_an_object() {
    assert_eq!(
        decode_err(r#"{"services":{"api":"process"}}"#),
        "service \"api\": invalid type: string \"process\", expected an object (the service \
         spec) at line 1 column 28"
    );
    assert!(decode_err(r#"{"services":{"api":null}}"#)
        .starts_with(r#"service "api": invalid type: null"#));
    assert!(decode_err(r#"{"services":{"api":["process"]}}"#)
        .starts_with(r#"service "api": invalid type: sequence"#));
}

/// A field error inside a service names the field path and gives its position in the whole
/// document, not in the service's own text.
#[test]
fn service_field_errors_have_path_and_document_position() {
    let body = "{\"name\": \"x\",\n \"services\": {\n  \"api\": {\"type\": \"process\",\n   \"ingresses\": {\"default\": {\"protocol\": 5}}}}}";
    assert_eq!(
        decode_err(body),
        "service \"api\": ingresses.default.protocol: invalid type: integer `5`, expected a \
         string at line 4 column 42"
    );
    let one_line = r#"{"services":{"api":{"type":"go","egresses":{"db":{"service":true}}}}}"#;
    assert_eq!(
        decode_err(one_line),
        "service \"api\": egresses.db.service: invalid type: boolean `true`, expected a string \
         at line 1 column 64"
    );
}

/// Positions reported for errors inside a service are the ones serde_json reports when it
/// parses the whole document in one go.
#[test]
fn service_error_positions_match_whole_document_positions() {
    let docs = [
        "{\"services\": {\n\"a\": {\"args\": [1]},\n \"b\": {}}}",
        "{\"services\":{\"x\":{\"type\":\"go\"},\"y\":{\n\n  \"ingresses\": {\"d\": {\"container_port\": -1}}}}}",
        "\n\n   {\"name\": \"n\", \"services\": {\"a\": {\"injected\": \"yes\"}}}",
        "{\"services\":{\"a\":{\"hooks\":{\"init\":[{\"client_func\":{\"name\":7}}]}}}}",
    ];
    for doc in docs {
        let whole = serde_json::from_str::<Environment>(doc).expect_err("invalid document");
        let suffix = format!(" at line {} column {}", whole.line(), whole.column());
        let ours = decode_err(doc);
        assert!(
            ours.ends_with(&suffix),
            "{ours:?} should end with {suffix:?}"
        );
    }
}

/// A bad duration inside a ready spec is a decode error with Go's message.
#[test]
fn bad_ready_duration_is_a_decode_error() {
    let err = decode_err(
        r#"{"services":{"a":{"ingresses":{"default":{"protocol":"http","ready":{"timeout":"1d"}}}}}}"#,
    );
    assert!(
        err.starts_with(r#"service "a": ingresses.default.ready.timeout: "#),
        "{err}"
    );
    assert!(
        err.contains(r#"time: unknown unit "d" in duration "1d""#),
        "{err}"
    );
    let err = decode_err(
        r#"{"services":{"a":{"ingresses":{"default":{"protocol":"http","ready":{"interval":5}}}}}}"#,
    );
    assert!(
        err.starts_with(r#"service "a": ingresses.default.ready.interval: "#),
        "{err}"
    );
}

/// A repeated field inside a service (serde's rule) is an error, not "last wins".
#[test]
fn repeated_field_inside_a_service_is_rejected() {
    let err = decode_err(r#"{"services":{"a":{"type":"go","type":"process"}}}"#);
    assert!(
        err.starts_with(r#"service "a": duplicate field `type`"#),
        "{err}"
    );
}

/// Our addition: a `null` hook is a decode error with the expected shape (upstream crashes).
#[test]
fn null_hooks_are_rejected_with_the_expected_shape() {
    let want = "service \"api\": hooks.prestart[0] is null; each hook must be an object like \
                {\"type\": \"client_func\", \"client_func\": {\"name\": \"...\"}}";
    assert_eq!(
        decode_err(r#"{"services":{"api":{"type":"process","hooks":{"prestart":[null]}}}}"#),
        want
    );
    let init = decode_err(
        r#"{"services":{"api":{"hooks":{"init":[{"type":"client_func","client_func":{"name":"h"}},null]}}}}"#,
    );
    assert!(
        init.starts_with(r#"service "api": hooks.init[1] is null; "#),
        "{init}"
    );
}

/// Our addition: a hook that is not an object says what it is.
#[test]
fn non_object_hooks_are_rejected() {
    let cases = [
        (
            r#""setup""#,
            "hooks.prestart[0] is a string, not an object; ",
        ),
        ("[]", "hooks.prestart[0] is an array, not an object; "),
        ("3", "hooks.prestart[0] is a number, not an object; "),
        ("true", "hooks.prestart[0] is a boolean, not an object; "),
    ];
    for (element, want) in cases {
        let body = format!(r#"{{"services":{{"api":{{"hooks":{{"prestart":[{element}]}}}}}}}}"#);
        let err = decode_err(&body);
        assert!(
            err.starts_with(&format!("service \"api\": {want}")),
            "{err}"
        );
    }
}

/// Hooks of the wrong container type are still errors (from the field decode).
#[test]
fn hooks_of_the_wrong_shape_are_errors() {
    assert!(decode_err(r#"{"services":{"a":{"hooks":{"init":{}}}}}"#)
        .starts_with(r#"service "a": hooks.init: invalid type: map"#));
    assert!(decode_err(r#"{"services":{"a":{"hooks":"x"}}}"#)
        .starts_with(r#"service "a": hooks: invalid type: string"#));
    // An explicit null hooks object means no hooks.
    assert_eq!(
        decode(json!({"services": {"a": {"hooks": null}}})).services["a"].hooks,
        None
    );
}

/// Upstream `TestEnvironmentFromJSON`: the documented wire JSON parses, and an egress without
/// `ingress` keeps its `service`.
#[test]
fn documented_wire_json_parses() {
    let env = decode(json!({
        "name": "my-test",
        "observe": true,
        "dir": "/src/app",
        "host_env": {"PATH": "/usr/bin"},
        "ttl": "30m0s",
        "services": {
            "db": {"type": "postgres", "ingresses": {"default": {"protocol": "tcp", "container_port": 5432}}},
            "api": {
                "type": "go",
                "config": {"module": "./cmd/api"},
                "args": ["--db", "${DB_HOST}"],
                "ingresses": {"default": {"protocol": "http", "ready": {"type": "http", "path": "/healthz"}}},
                "egresses": {"database": {"service": "db"}},
                "hooks": {"prestart": [{"type": "client_func", "client_func": {"name": "_hook_1"}}]}
            }
        }
    }));
    assert_eq!(env.name, "my-test");
    assert!(env.observe);
    assert_eq!(env.dir, "/src/app");
    assert_eq!(env.host_env["PATH"], "/usr/bin");
    assert_eq!(env.ttl, "30m0s");
    let api = &env.services["api"];
    assert_eq!(api.service_type, "go");
    assert_eq!(api.config, Some(json!({"module": "./cmd/api"})));
    assert_eq!(api.args, vec!["--db", "${DB_HOST}"]);
    assert_eq!(
        api.egresses["database"],
        EgressSpec {
            service: "db".into(),
            ingress: String::new()
        }
    );
    let ready = api.ingresses["default"].ready.as_ref().expect("ready spec");
    assert_eq!(
        (ready.probe_type.as_str(), ready.path.as_str()),
        ("http", "/healthz")
    );
    assert_eq!(env.services["db"].ingresses["default"].container_port, 5432);
}

/// Upstream `TestFullEnvironmentRoundTrip` and `TestReadySpecRoundTrip`, through the decoder:
/// a postgres plus go environment with config, templated args, typed ingresses with ready
/// specs, egresses and both hook phases survives encode then decode.
#[test]
fn full_environment_round_trips_through_the_decoder() {
    let api = Service {
        service_type: "go".into(),
        config: Some(json!({"module": "./cmd/api"})),
        args: vec!["--dsn".into(), "${DATABASE_URL}".into()],
        ingresses: BTreeMap::from([(
            "default".to_string(),
            IngressSpec {
                protocol: Protocol::Http,
                container_port: 0,
                ready: Some(ReadySpec {
                    probe_type: "http".into(),
                    path: "/health".into(),
                    interval: GoDuration::from_millis(200),
                    timeout: GoDuration::from_secs(30),
                }),
                attributes: None,
            },
        )]),
        egresses: BTreeMap::from([(
            "database".to_string(),
            EgressSpec {
                service: "db".into(),
                ingress: "default".into(),
            },
        )]),
        hooks: Some(Hooks {
            prestart: vec![HookSpec {
                hook_type: "client_func".into(),
                client_func: Some(ClientFuncSpec {
                    name: "_hook_1".into(),
                }),
                config: None,
                timeout: GoDuration::default(),
            }],
            init: vec![HookSpec {
                hook_type: "sql".into(),
                client_func: None,
                config: Some(json!({"statements": ["CREATE TABLE t (id int)"]})),
                timeout: GoDuration::from_secs(120),
            }],
        }),
        injected: false,
    };
    let mut db = Service {
        service_type: "postgres".into(),
        ..Service::default()
    };
    db.ingresses.insert(
        "default".into(),
        IngressSpec {
            protocol: Protocol::Tcp,
            container_port: 5432,
            attributes: Some(BTreeMap::from([("PGHOST".to_string(), json!("${HOST}"))])),
            ..IngressSpec::default()
        },
    );
    let env = Environment {
        name: "round-trip".into(),
        services: BTreeMap::from([("api".to_string(), api), ("db".to_string(), db)]),
        ..Environment::default()
    };
    let text = serde_json::to_vec(&env).expect("serialises");
    assert_eq!(decode_environment(&text), Ok(env));
}

/// Go's SDK writes zero durations as `""`; they decode to zero.
#[test]
fn empty_duration_strings_are_zero() {
    let env = decode(json!({"services": {"a": {"ingresses": {"default": {
        "protocol": "http", "ready": {"interval": "", "timeout": ""}}}}}}));
    let ready = env.services["a"].ingresses["default"]
        .ready
        .clone()
        .expect("ready");
    assert!(ready.interval.is_zero() && ready.timeout.is_zero());
}

/// A hook's `timeout` is a Go duration string; a typo is an error that points at it.
#[test]
fn hook_timeouts_are_durations() {
    let env = decode(json!({"services": {"a": {"hooks": {"init": [
        {"type": "exec", "timeout": "1m30s"}, {"type": "exec", "timeout": null}]}}}}));
    let init = &env.services["a"].hooks.as_ref().expect("hooks").init;
    assert_eq!(init[0].timeout, GoDuration::from_secs(90));
    assert!(init[1].timeout.is_zero());
    let err = decode_err(
        r#"{"services":{"a":{"hooks":{"init":[{"type":"exec","timeout":"10 minutes"}]}}}}"#,
    );
    assert!(err.contains("hooks.init[0].timeout"), "{err}");
}

/// An unknown protocol decodes (validation reports it with the user's spelling).
#[test]
fn unknown_protocol_decodes_for_validation_to_report() {
    let env =
        decode(json!({"services": {"a": {"ingresses": {"default": {"protocol": "websocket"}}}}}));
    assert_eq!(
        env.services["a"].ingresses["default"].protocol,
        Protocol::Unknown("websocket".into())
    );
}
