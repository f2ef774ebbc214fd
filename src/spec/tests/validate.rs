//! `validate_environment`: upstream's `TestValidateEnvironment_*`, the exact error order,
//! did-you-mean, cycles, ttl, and rigd's name rules.

use rig_types::{Environment, Service};

use super::{env_of, svc};
use crate::spec::{insert_test_node, transform_observe, validate_environment, KNOWN_SERVICE_TYPES};

/// Validates and returns the errors.
fn errors_of(mut env: Environment) -> Vec<String> {
    validate_environment(&mut env)
}

/// Asserts that exactly one error contains `needle`.
fn assert_one_error_containing(env: Environment, needle: &str) {
    let errors = errors_of(env);
    let hits = errors.iter().filter(|e| e.contains(needle)).count();
    assert_eq!(
        hits, 1,
        "expected one error containing {needle:?}, got {errors:#?}"
    );
}

fn none() -> Vec<String> {
    Vec::new()
}

/// Upstream `TestValidateEnvironment_Valid`.
#[test]
fn minimal_process_is_valid() {
    let env = env_of(vec![("api", svc("process", &[("default", "http")], &[]))]);
    assert_eq!(errors_of(env), none());
}

/// A NUL (or an `=` in a name) cannot reach a process: refused up front, naming the field.
#[test]
fn nul_characters_in_arguments_and_host_env_are_refused() {
    let mut env = env_of(vec![("api", svc("process", &[], &[]))]);
    env.services.get_mut("api").unwrap().args = vec!["ok".into(), "a\0b".into()];
    env.host_env.insert("TOKEN".into(), "x\0".into());
    env.host_env.insert("A=B".into(), "x".into());
    assert_eq!(
        errors_of(env),
        vec![
            "host_env \"A=B\": a variable's name must not hold \"=\" or NUL (\\u0000), nor its \
             value NUL: no process can be given it; remove it",
            "host_env \"TOKEN\": a variable's name must not hold \"=\" or NUL (\\u0000), nor \
             its value NUL: no process can be given it; remove it",
            "service \"api\": args[1] contains a NUL character (\\u0000), which no program can \
             be given; remove it",
        ]
    );
}

/// Upstream `TestValidateEnvironment_EmptyName`.
#[test]
fn empty_name() {
    let mut env = env_of(vec![("api", svc("process", &[], &[]))]);
    env.name.clear();
    assert_eq!(errors_of(env), vec!["environment name is required"]);
}

/// Upstream `TestValidateEnvironment_NoServices`.
#[test]
fn no_services() {
    assert_eq!(
        errors_of(env_of(vec![])),
        vec!["environment must have at least one service"]
    );
}

/// Upstream `TestValidateEnvironment_UnknownServiceType`.
#[test]
fn unknown_service_type() {
    let env = env_of(vec![("qc", svc("quantum-computer", &[], &[]))]);
    assert_eq!(
        errors_of(env),
        vec![r#"service "qc": unknown type "quantum-computer""#]
    );
}

/// A misspelt type names the type it is close to (the message is upstream's otherwise).
#[test]
fn a_misspelt_service_type_gets_a_hint() {
    let env = env_of(vec![("a", svc("procss", &[], &[]))]);
    assert_eq!(
        errors_of(env),
        vec![r#"service "a": unknown type "procss" (did you mean "process"?)"#]
    );
    let env = env_of(vec![("db", svc("postgresql", &[], &[]))]);
    assert_eq!(
        errors_of(env),
        vec![r#"service "db": unknown type "postgresql" (did you mean "postgres"?)"#]
    );
}

/// Upstream `TestValidateEnvironment_EmptyServiceType`.
#[test]
fn empty_service_type() {
    let env = env_of(vec![("api", svc("", &[], &[]))]);
    assert_eq!(errors_of(env), vec![r#"service "api": type is required"#]);
}

/// Every known type validates, `cargo` included; upstream's set is all there. (`test` and
/// `proxy`, the types of the nodes rigd inserts, have rules of their own.)
#[test]
fn every_known_type_is_accepted() {
    for t in KNOWN_SERVICE_TYPES
        .iter()
        .filter(|t| !["test", "proxy"].contains(t))
    {
        let env = env_of(vec![("s", svc(t, &[], &[]))]);
        assert_eq!(errors_of(env), none(), "type {t}");
    }
    for t in [
        "container",
        "process",
        "script",
        "go",
        "client",
        "postgres",
        "temporal",
        "redis",
    ] {
        assert!(KNOWN_SERVICE_TYPES.contains(&t));
    }
    for t in ["s3", "sqs", "kafka", "custom", "proxy", "test", "cargo"] {
        assert!(KNOWN_SERVICE_TYPES.contains(&t));
    }
    assert_eq!(KNOWN_SERVICE_TYPES.len(), 15);
}

/// Upstream `TestValidateEnvironment_InvalidProtocol` and `TestProtocolValid` (an empty
/// protocol is invalid too).
#[test]
fn invalid_protocol() {
    let env = env_of(vec![(
        "api",
        svc("process", &[("default", "websocket"), ("x", "")], &[]),
    )]);
    assert_eq!(
        errors_of(env),
        vec![
            r#"service "api", ingress "default": invalid protocol "websocket" (must be one of: tcp, http, grpc, kafka)"#,
            r#"service "api", ingress "x": invalid protocol "" (must be one of: tcp, http, grpc, kafka)"#,
        ]
    );
    for p in ["tcp", "http", "grpc", "kafka"] {
        assert_eq!(
            errors_of(env_of(vec![("a", svc("process", &[("i", p)], &[]))])),
            none()
        );
    }
}

/// Upstream `TestValidateEnvironment_ContainerPortOptional` and `_ContainerPortPresent`.
#[test]
fn container_port_is_optional() {
    let without = env_of(vec![("web", svc("container", &[("default", "http")], &[]))]);
    assert_eq!(errors_of(without.clone()), none());
    let mut with = without;
    if let Some(ingress) = with
        .services
        .get_mut("web")
        .and_then(|s| s.ingresses.get_mut("default"))
    {
        ingress.container_port = 5432;
    }
    assert_eq!(errors_of(with), none());
}

/// Upstream `TestValidateEnvironment_EgressReferencesUnknownService` and
/// `_EgressSuggestsCloseName`.
#[test]
fn unknown_egress_target_suggests_a_close_name() {
    let env = env_of(vec![
        ("postgres", svc("postgres", &[("default", "tcp")], &[])),
        ("api", svc("process", &[], &[("db", "postgre", "")])),
    ]);
    assert_eq!(
        errors_of(env),
        vec![
            r#"service "api", egress "db": references unknown service "postgre" (did you mean "postgres"?)"#
        ]
    );
}

/// No suggestion when nothing is close enough: the bound is `len/2 + 1`, exclusive.
#[test]
fn suggestion_threshold() {
    // "abcd": bound 3. "wxyd" is at distance 3 (not suggested), "axyd" at 2 (suggested).
    let far = env_of(vec![
        ("wxyd", svc("process", &[("default", "http")], &[])),
        ("api", svc("process", &[], &[("e", "abcd", "")])),
    ]);
    assert_eq!(
        errors_of(far),
        vec![r#"service "api", egress "e": references unknown service "abcd""#]
    );
    let near = env_of(vec![
        ("axyd", svc("process", &[("default", "http")], &[])),
        ("api", svc("process", &[], &[("e", "abcd", "")])),
    ]);
    assert_eq!(
        errors_of(near),
        vec![
            r#"service "api", egress "e": references unknown service "abcd" (did you mean "axyd"?)"#
        ]
    );
}

/// Ties go to the first candidate in sorted name order; the closest candidate wins over an
/// earlier, farther one; the source service itself is a candidate (as upstream).
#[test]
fn suggestion_ties_and_candidates() {
    let tie = env_of(vec![
        ("car", svc("process", &[("default", "http")], &[])),
        ("cab", svc("process", &[("default", "http")], &[])),
        ("bat", svc("process", &[("default", "http")], &[])),
        ("web", svc("process", &[], &[("e", "cat", "")])),
    ]);
    assert_one_error_containing(tie, r#"unknown service "cat" (did you mean "bat"?)"#);

    let closest = env_of(vec![
        ("aaaaaxx", svc("process", &[("default", "http")], &[])),
        ("zaaaaaa", svc("process", &[("default", "http")], &[])),
        ("web", svc("process", &[], &[("e", "aaaaaa", "")])),
    ]);
    assert_one_error_containing(closest, r#"(did you mean "zaaaaaa"?)"#);

    let itself = env_of(vec![("apii", svc("process", &[], &[("e", "api", "")]))]);
    assert_one_error_containing(
        itself,
        r#"references unknown service "api" (did you mean "apii"?)"#,
    );
}

/// An egress with an empty `service` says the field is required (upstream: "references
/// unknown service" with an empty name).
#[test]
fn egress_with_empty_service() {
    let env = env_of(vec![
        ("a", svc("process", &[("default", "http")], &[])),
        ("api", svc("process", &[], &[("db", "", "")])),
    ]);
    assert_eq!(
        errors_of(env),
        vec![
            r#"service "api", egress "db": "service" is required: name the service this egress calls"#
        ]
    );
}

/// A `proxy` written in the spec needs its egress `target` and exactly one ingress, `default`;
/// a `test` node is rigd's own.
#[test]
fn the_types_of_inserted_nodes_have_their_rules_in_a_spec() {
    let backend = ("db", svc("process", &[("default", "tcp")], &[]));
    let proxy = svc(
        "proxy",
        &[("default", "tcp")],
        &[("target", "db", "default")],
    );
    assert_eq!(
        errors_of(env_of(vec![backend.clone(), ("p", proxy)])),
        none()
    );

    let lost = svc("proxy", &[("default", "tcp")], &[("db", "db", "default")]);
    assert_one_error_containing(
        env_of(vec![backend.clone(), ("p", lost)]),
        r#"service "p": a proxy forwards to its egress "target", and this one has none"#,
    );
    let target = &[("target", "db", "default")];
    for ingresses in [
        &[][..],
        &[("public", "tcp")][..],
        &[("default", "tcp"), ("admin", "tcp")][..],
    ] {
        assert_one_error_containing(
            env_of(vec![
                backend.clone(),
                ("p", svc("proxy", ingresses, target)),
            ]),
            r#"service "p": a proxy publishes exactly one ingress, named "default""#,
        );
    }
    assert_one_error_containing(
        env_of(vec![backend, ("t", svc("test", &[], &[]))]),
        r#"service "t": type "test" is reserved for the "~test" node"#,
    );
}

/// Upstream `TestValidateEnvironment_SelfReferencingEgress`: the self-edge error and a cycle.
#[test]
fn self_referencing_egress_gives_both_errors() {
    let env = env_of(vec![(
        "api",
        svc("process", &[("default", "http")], &[("me", "api", "")]),
    )]);
    assert_eq!(
        errors_of(env),
        vec![
            r#"service "api", egress "me": cannot reference itself"#,
            "cycle detected: api \u{2192} api",
        ]
    );
}

/// Upstream `TestValidateEnvironment_EgressReferencesNonexistentIngress`.
#[test]
fn egress_to_a_missing_ingress_lists_the_available_ones() {
    let env = env_of(vec![
        (
            "web",
            svc("process", &[("public", "http"), ("default", "http")], &[]),
        ),
        ("api", svc("process", &[], &[("web", "web", "admin")])),
    ]);
    assert_eq!(
        errors_of(env),
        vec![
            r#"service "api", egress "web": target service "web" has no ingress "admin" (available: default, public)"#
        ]
    );
}

/// Upstream `TestValidateEnvironment_SingleIngressShorthandWorks`.
#[test]
fn single_ingress_shorthand_works() {
    let mut env = env_of(vec![
        ("db", svc("postgres", &[("main", "tcp")], &[])),
        ("api", svc("process", &[], &[("db", "db", "")])),
    ]);
    assert_eq!(validate_environment(&mut env), none());
    assert_eq!(env.services["api"].egresses["db"].ingress, "main");
}

/// Upstream `TestValidateEnvironment_SingleIngressShorthandFailsMultiple`.
#[test]
fn shorthand_with_several_ingresses_and_no_default_fails() {
    let env = env_of(vec![
        (
            "web",
            svc("process", &[("ui", "http"), ("frontend", "http")], &[]),
        ),
        ("api", svc("process", &[], &[("web", "web", "")])),
    ]);
    assert_eq!(
        errors_of(env),
        vec!["service \"api\", egress \"web\": target service \"web\" has 2 ingresses \u{2014} specify which one (frontend, ui)"]
    );
}

/// Upstream `TestValidateEnvironment_ServiceWithNoIngresses`.
#[test]
fn service_without_ingresses_is_valid() {
    let env = env_of(vec![("worker", svc("process", &[], &[]))]);
    assert_eq!(errors_of(env), none());
}

/// Upstream `TestValidateEnvironment_EgressToServiceWithNoIngresses`.
#[test]
fn egress_to_a_service_without_ingresses() {
    let env = env_of(vec![
        ("worker", svc("process", &[], &[])),
        ("api", svc("process", &[], &[("w", "worker", "")])),
    ]);
    assert_eq!(
        errors_of(env),
        vec![r#"service "api", egress "w": target service "worker" has no ingresses"#]
    );
}

/// Upstream `TestValidateEnvironment_CycleDetection`: a → b → c → a.
#[test]
fn three_node_cycle() {
    let env = env_of(vec![
        (
            "a",
            svc("process", &[("default", "http")], &[("b", "b", "")]),
        ),
        (
            "b",
            svc("process", &[("default", "http")], &[("c", "c", "")]),
        ),
        (
            "c",
            svc("process", &[("default", "http")], &[("a", "a", "")]),
        ),
    ]);
    assert_eq!(
        errors_of(env),
        vec!["cycle detected: a \u{2192} b \u{2192} c \u{2192} a"]
    );
}

/// Upstream `TestValidateEnvironment_TwoNodeCycle`.
#[test]
fn two_node_cycle() {
    let env = env_of(vec![
        (
            "b",
            svc("process", &[("default", "http")], &[("a", "a", "")]),
        ),
        (
            "a",
            svc("process", &[("default", "http")], &[("b", "b", "")]),
        ),
    ]);
    assert_eq!(
        errors_of(env),
        vec!["cycle detected: a \u{2192} b \u{2192} a"]
    );
}

/// The path starts at the node that closes the loop, not at the DFS root; egresses are
/// followed in egress-name order; only the first cycle is reported; unknown targets are
/// skipped.
#[test]
fn cycle_path_starts_where_the_loop_closes() {
    let env = env_of(vec![
        (
            "a",
            svc(
                "process",
                &[("default", "http")],
                &[("1", "b", ""), ("2", "x", "")],
            ),
        ),
        (
            "b",
            svc(
                "process",
                &[("default", "http")],
                &[("z", "c", ""), ("y", "d", "")],
            ),
        ),
        (
            "c",
            svc("process", &[("default", "http")], &[("b", "b", "")]),
        ),
        (
            "d",
            svc("process", &[("default", "http")], &[("b", "b", "")]),
        ),
    ]);
    let errors = errors_of(env);
    assert_eq!(
        errors.last().map(String::as_str),
        Some("cycle detected: b \u{2192} d \u{2192} b")
    );
    assert_eq!(errors.iter().filter(|e| e.starts_with("cycle")).count(), 1);
    assert_eq!(errors.len(), 2, "{errors:#?}"); // plus the unknown service "x"
}

/// Upstream `TestValidateEnvironment_NoCycleFalsePositive`: a diamond is not a cycle.
#[test]
fn diamond_is_not_a_cycle() {
    let env = env_of(vec![
        (
            "app",
            svc(
                "process",
                &[("default", "http")],
                &[("l", "left", ""), ("r", "right", "")],
            ),
        ),
        (
            "left",
            svc("process", &[("default", "http")], &[("db", "db", "")]),
        ),
        (
            "right",
            svc("process", &[("default", "http")], &[("db", "db", "")]),
        ),
        ("db", svc("postgres", &[("default", "tcp")], &[])),
    ]);
    assert_eq!(errors_of(env), none());
}

/// A long dependency chain is checked without recursion (no stack overflow).
#[test]
fn long_chain_does_not_overflow_the_stack() {
    let n = 20_000;
    let names: Vec<String> = (0..n).map(|i| format!("s{i:05}")).collect();
    let mut services = Vec::new();
    for i in 0..n {
        let next = &names[(i + 1) % n];
        services.push((
            names[i].as_str(),
            svc("process", &[("default", "tcp")], &[("next", next, "")]),
        ));
    }
    let errors = errors_of(env_of(services));
    // So many services have more ingresses than one environment may have.
    assert_eq!(errors.len(), 2, "{:?}", errors[0]);
    assert!(errors[0].starts_with("environment has 20000 ingresses"));
    assert!(errors[1].starts_with("cycle detected: s00000 \u{2192} s00001 \u{2192} "));
    assert!(errors[1].ends_with("s19999 \u{2192} s00000"));
}

/// Upstream `TestValidateEnvironment_MultipleErrors`, strengthened: the whole list, in order
/// (environment rules, services sorted, each with type, ingresses, egresses; then the cycle).
#[test]
fn many_errors_in_upstream_order() {
    let mut env = env_of(vec![
        (
            "zeta",
            svc(
                "quantum",
                &[("web", "websocket")],
                &[("x", "postgre", ""), ("self", "zeta", "")],
            ),
        ),
        ("alpha", svc("", &[], &[("b", "beta", "")])),
        (
            "beta",
            svc(
                "process",
                &[("a", "http"), ("b", "grpc")],
                &[("alpha", "alpha", "")],
            ),
        ),
        ("postgres", svc("postgres", &[("default", "tcp")], &[])),
        ("worker", svc("process", &[], &[])),
        (
            "gamma",
            svc(
                "process",
                &[],
                &[("w", "worker", ""), ("pg", "postgres", "admin")],
            ),
        ),
    ]);
    env.name.clear();
    env.ttl = "-5s".into();
    assert_eq!(
        errors_of(env),
        vec![
            "environment name is required",
            r#"ttl must be positive, got "-5s""#,
            r#"service "alpha": type is required"#,
            "service \"alpha\", egress \"b\": target service \"beta\" has 2 ingresses \u{2014} specify which one (a, b)",
            r#"service "beta", egress "alpha": target service "alpha" has no ingresses"#,
            r#"service "gamma", egress "pg": target service "postgres" has no ingress "admin" (available: default)"#,
            r#"service "gamma", egress "w": target service "worker" has no ingresses"#,
            r#"service "zeta": unknown type "quantum""#,
            r#"service "zeta", ingress "web": invalid protocol "websocket" (must be one of: tcp, http, grpc, kafka)"#,
            r#"service "zeta", egress "self": cannot reference itself"#,
            r#"service "zeta", egress "x": references unknown service "postgre" (did you mean "postgres"?)"#,
            "cycle detected: alpha \u{2192} beta \u{2192} alpha",
        ]
    );
}

/// TTL rules, with Go's parse errors.
#[test]
fn ttl_rules() {
    let cases: [(&str, Option<&str>); 8] = [
        ("30m", None),
        ("1h30m", None),
        ("1ns", None),
        (
            "abc",
            Some(r#"invalid ttl "abc": time: invalid duration "abc""#),
        ),
        (
            "1d",
            Some(r#"invalid ttl "1d": time: unknown unit "d" in duration "1d""#),
        ),
        ("0", Some(r#"ttl must be positive, got "0""#)),
        ("0s", Some(r#"ttl must be positive, got "0s""#)),
        ("-1m", Some(r#"ttl must be positive, got "-1m""#)),
    ];
    for (ttl, want) in cases {
        let mut env = env_of(vec![("a", svc("process", &[], &[]))]);
        env.ttl = ttl.to_string();
        let want: Vec<String> = want.into_iter().map(String::from).collect();
        assert_eq!(errors_of(env), want, "ttl {ttl:?}");
    }
}

/// Environment errors come first and all of them are reported.
#[test]
fn all_environment_errors_together() {
    let mut env = env_of(vec![]);
    env.name.clear();
    env.ttl = "soon".into();
    assert_eq!(
        errors_of(env),
        vec![
            "environment name is required",
            "environment must have at least one service",
            r#"invalid ttl "soon": time: invalid duration "soon""#,
        ]
    );
}

/// Our addition: empty service, ingress and egress names are rejected with what to do.
#[test]
fn empty_names_are_rejected() {
    let env = env_of(vec![
        ("", svc("process", &[("", "http")], &[])),
        ("api", svc("process", &[], &[("", "", "")])),
    ]);
    let errors = errors_of(env);
    assert_eq!(
        errors,
        vec![
            "service \"\": name must not be empty; give every service a non-empty name",
            "service \"\", ingress \"\": name must not be empty; name the ingress (\"default\" for the main one)",
            "service \"api\", egress \"\": name must not be empty; name the egress (usually after the service it connects to)",
        ],
    );
}

/// Our addition: `~` is reserved in service, ingress and egress names, and each problem is
/// reported with the service, in the sorted pass, before the egress target checks.
#[test]
fn tilde_names_are_rejected() {
    let env = env_of(vec![
        ("~test", svc("process", &[], &[])),
        (
            "web",
            svc("process", &[("a~b", "http")], &[("db~x", "nope", "")]),
        ),
    ]);
    assert_eq!(
        errors_of(env),
        vec![
            "service \"web\", ingress \"a~b\": name must not contain \"~\", which separates service and ingress in the names rigd generates; rename the ingress",
            "service \"web\", egress \"db~x\": name must not contain \"~\", which rigd reserves for the names it generates; rename the egress",
            r#"service "web", egress "db~x": references unknown service "nope""#,
            "service \"~test\": name must not contain \"~\", which rigd reserves for the nodes it generates (\"~test\", proxies); rename the service",
        ]
    );
}

/// Our decision on upstream's quirk: a client may not mark its own service `injected`
/// (it would silently drop out of `~test`'s dependencies and the listings).
#[test]
fn client_sent_injected_is_rejected() {
    let mut api = svc("process", &[("default", "http")], &[]);
    api.injected = true;
    let mut fake_proxy = svc("process", &[("default", "http")], &[]);
    fake_proxy.injected = true;
    let env = env_of(vec![("api", api), ("x~proxy~y", fake_proxy)]);
    assert_eq!(
        errors_of(env),
        vec![
            "service \"api\": \"injected\" is reserved for the nodes rigd inserts itself (\"~test\", proxies); remove it from the spec",
            "service \"x~proxy~y\": name must not contain \"~\", which rigd reserves for the nodes it generates (\"~test\", proxies); rename the service",
            "service \"x~proxy~y\": \"injected\" is reserved for the nodes rigd inserts itself (\"~test\", proxies); remove it from the spec",
        ]
    );
}

/// rigd's own nodes are exempt: a spec still validates after both transforms.
#[test]
fn transformed_spec_still_validates() {
    let mut env = env_of(vec![
        (
            "temporal",
            svc("temporal", &[("default", "grpc"), ("ui", "http")], &[]),
        ),
        (
            "api",
            svc("process", &[("default", "http")], &[("t", "temporal", "")]),
        ),
        ("worker", svc("process", &[], &[("t", "temporal", "ui")])),
    ]);
    env.observe = true;
    assert_eq!(validate_environment(&mut env), none());
    insert_test_node(&mut env);
    transform_observe(&mut env);
    assert!(env.services.keys().any(|k| k.contains("~proxy~")));
    assert_eq!(validate_environment(&mut env), none());
}

/// A hand-written `~test` that is not what rigd generates gets no exemption.
#[test]
fn only_exact_generated_shapes_are_exempt() {
    let test_node = Service {
        service_type: "process".into(),
        injected: true,
        ..Service::default()
    };
    let errors = errors_of(env_of(vec![("~test", test_node)]));
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

/// Our addition: a service name names its directory and egress and ingress names name
/// environment variables, so path separators, `=`, spaces and the like are refused, as are
/// names too long for a file name and two names giving the same variables.
#[test]
fn names_that_would_escape_a_directory_or_break_variables_are_rejected() {
    let long = "a".repeat(64);
    let env = env_of(vec![
        ("../../escape", svc("process", &[], &[])),
        ("/tmp/x", svc("process", &[], &[])),
        (long.as_str(), svc("process", &[], &[])),
        (
            "web",
            svc(
                "process",
                &[("default", "http"), ("a b", "http")],
                &[
                    ("PATH=x", "api", ""),
                    ("-db", "api", ""),
                    ("api-v2", "api", ""),
                    ("api_v2", "api", ""),
                ],
            ),
        ),
        ("api", svc("process", &[("default", "http")], &[])),
        ("order-db_2", svc("process", &[], &[])),
    ]);
    let errors = errors_of(env);
    let expected = [
        "service \"../../escape\": name may only contain ASCII letters, digits, \"-\" and \"_\" (it names the service's directory); rename the service",
        "service \"/tmp/x\": name may only contain ASCII letters, digits, \"-\" and \"_\" (it names the service's directory); rename the service",
        &format!("service \"{long}\": name is 64 characters long, over the 63 allowed (it names the service's directory); rename the service"),
        "service \"web\", ingress \"a b\": name may only contain ASCII letters, digits, \"-\" and \"_\" (it names environment variables); rename the ingress",
        "service \"web\", egress \"-db\": name must start with a letter or a digit (it names environment variables); rename the egress",
        "service \"web\", egress \"PATH=x\": name may only contain ASCII letters, digits, \"-\" and \"_\" (it names environment variables); rename the egress",
        "service \"web\": egresses \"api-v2\" and \"api_v2\" give the same environment variables (API_V2_*); rename one of them",
    ];
    for error in expected {
        assert!(
            errors.iter().any(|e| e == error),
            "missing {error:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

/// Our addition: an ingress and an egress of one service with the same variables (the
/// egress's would silently win) are refused; the `default` ingress has no prefix.
#[test]
fn an_ingress_and_an_egress_with_the_same_variables_are_rejected() {
    let env = env_of(vec![
        (
            "web",
            svc(
                "process",
                &[("default", "http"), ("cache", "tcp")],
                &[("cache", "cache", ""), ("default", "cache", "")],
            ),
        ),
        ("cache", svc("process", &[("default", "tcp")], &[])),
    ]);
    assert_eq!(
        errors_of(env),
        ["service \"web\": ingress \"cache\" and egress \"cache\" give the same environment variables (CACHE_*), and the egress's would hide the ingress's; rename one of them"]
    );
}

/// Our addition: "did you mean" hints compare a name with every service name, so they are
/// left out once a spec has 20 errors (more than a typo), and for names longer than any
/// valid one: a huge spec of unknown references cannot keep a server thread busy.
#[test]
fn did_you_mean_hints_are_bounded() {
    let mut services = vec![(
        "api".to_string(),
        svc("process", &[("default", "http")], &[]),
    )];
    for i in 0..30 {
        services.push((format!("w{i:02}"), svc("process", &[], &[("e", "apj", "")])));
    }
    let long = "a".repeat(200);
    services.push(("z".to_string(), svc("process", &[], &[("e", &long, "")])));
    let env = env_of(
        services
            .iter()
            .map(|(n, s)| (n.as_str(), s.clone()))
            .collect(),
    );
    let errors = errors_of(env);
    let hinted = errors.iter().filter(|e| e.contains("did you mean")).count();
    assert_eq!(hinted, 20, "{errors:#?}");
    assert!(
        errors[19].ends_with("(did you mean \"api\"?)"),
        "{}",
        errors[19]
    );
    assert!(
        errors[20].ends_with("references unknown service \"apj\""),
        "{}",
        errors[20]
    );
    assert_eq!(errors.len(), 31);
}

/// Our addition: an attribute template naming a variable other than `HOST`, `PORT` and
/// `HOSTPORT` is refused with the spec (upstream found it after the service had started).
#[test]
fn attribute_templates_are_checked_up_front() {
    let mut api = svc("process", &[("default", "tcp")], &[]);
    let ingress = api.ingresses.get_mut("default").unwrap();
    ingress.attributes = Some(std::collections::BTreeMap::from([
        ("GOOD".to_string(), serde_json::json!("${HOST}:${PORT}")),
        ("URL".to_string(), serde_json::json!("x${PRT}")),
    ]));
    let env = env_of(vec![("api", api)]);
    assert_eq!(
        errors_of(env),
        vec![
            "service \"api\", ingress \"default\": attribute \"URL\" template \"x${PRT}\" references unknown variable ${PRT}; only HOST, PORT, and HOSTPORT are available"
        ]
    );
}

/// Our addition: a `ready.path` that cannot be sent would fail every probe until the
/// readiness timeout; it is refused with the spec.
#[test]
fn a_ready_path_that_cannot_be_requested_is_refused() {
    for (path, ok) in [
        ("/healthz?full=1", true),
        ("healthz", true),
        ("", true),
        ("/a b", false),
        ("/a\r\nX: y", false),
    ] {
        let mut api = svc("process", &[("default", "http")], &[]);
        api.ingresses.get_mut("default").unwrap().ready = Some(rig_types::ReadySpec {
            path: path.to_string(),
            ..Default::default()
        });
        let errors = errors_of(env_of(vec![("api", api)]));
        if ok {
            assert_eq!(errors, none(), "{path:?}");
        } else {
            assert_eq!(
                errors,
                vec![format!(
                    "service \"api\", ingress \"default\": ready.path {path:?} is not a valid HTTP request path (spaces and control characters must be percent-encoded)"
                )],
            );
        }
    }
}

/// Our addition: negative durations are refused rather than read as "the default".
#[test]
fn negative_durations_are_refused() {
    let mut api = svc("process", &[("default", "http")], &[]);
    api.ingresses.get_mut("default").unwrap().ready = Some(rig_types::ReadySpec {
        timeout: rig_types::GoDuration::from_nanos(-1_000_000_000),
        ..Default::default()
    });
    api.hooks = Some(rig_types::Hooks {
        init: vec![
            rig_types::HookSpec {
                hook_type: "exec".into(),
                ..Default::default()
            },
            rig_types::HookSpec {
                hook_type: "exec".into(),
                timeout: rig_types::GoDuration::from_millis(-1500),
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let mut env = env_of(vec![("api", api)]);
    env.callback_timeout = rig_types::GoDuration::from_nanos(-5_000_000_000);
    assert_eq!(
        errors_of(env),
        vec![
            "callback_timeout must not be negative, got -5s (leave it out for the default)",
            "service \"api\", ingress \"default\": ready.timeout must not be negative, got -1s (leave it out for the default)",
            "service \"api\": hooks.init[1].timeout must not be negative, got -1.5s (leave it out for the default)",
        ]
    );
}

/// Our addition: a `ready.type` rigd does not know is refused (upstream silently checks TCP
/// instead, and ignores `ready.path`), with the closest known type when there is one.
#[test]
fn an_unknown_ready_type_is_refused() {
    let with_type = |probe_type: &str| {
        let mut api = svc("process", &[("default", "http")], &[]);
        api.ingresses.get_mut("default").unwrap().ready = Some(rig_types::ReadySpec {
            probe_type: probe_type.to_string(),
            path: "/healthz".into(),
            ..Default::default()
        });
        errors_of(env_of(vec![("api", api)]))
    };
    for known in ["", "tcp", "http", "grpc", "postgres", "redis", "kafka"] {
        assert_eq!(with_type(known), none(), "{known:?}");
    }
    assert_eq!(
        with_type("htpp"),
        vec![
            "service \"api\", ingress \"default\": unknown ready.type \"htpp\" (did you mean \"http\"? must be one of: tcp, http, grpc, postgres, redis, kafka; leave it out to check by the ingress protocol)"
        ]
    );
    assert_eq!(
        with_type("magic"),
        vec![
            "service \"api\", ingress \"default\": unknown ready.type \"magic\" (must be one of: tcp, http, grpc, postgres, redis, kafka; leave it out to check by the ingress protocol)"
        ]
    );
}
