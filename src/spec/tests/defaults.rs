//! `resolve_defaults`: upstream's `TestResolveDefaults_*`.

use super::{env_of, svc};
use crate::spec::{resolve_defaults, validate_environment};

/// Upstream `TestResolveDefaults_DoesNotAddDefaultIngress`.
#[test]
fn does_not_add_a_default_ingress() {
    let mut env = env_of(vec![("worker", svc("process", &[], &[]))]);
    resolve_defaults(&mut env);
    assert!(env.services["worker"].ingresses.is_empty());
}

/// Upstream `TestResolveDefaults_ResolvesEgressShorthand`: a single-ingress target gives its
/// ingress, whatever its name.
#[test]
fn resolves_egress_shorthand_to_the_single_ingress() {
    let mut env = env_of(vec![
        ("db", svc("postgres", &[("default", "tcp")], &[])),
        ("grpc", svc("process", &[("api", "grpc")], &[])),
        (
            "api",
            svc("process", &[], &[("db", "db", ""), ("rpc", "grpc", "")]),
        ),
    ]);
    resolve_defaults(&mut env);
    assert_eq!(env.services["api"].egresses["db"].ingress, "default");
    assert_eq!(env.services["api"].egresses["rpc"].ingress, "api");
}

/// Upstream `TestResolveDefaults_DoesNotResolveAmbiguousEgress`.
#[test]
fn does_not_resolve_an_ambiguous_egress() {
    let mut env = env_of(vec![
        (
            "web",
            svc("process", &[("frontend", "http"), ("ui", "http")], &[]),
        ),
        ("api", svc("process", &[], &[("web", "web", "")])),
    ]);
    resolve_defaults(&mut env);
    assert_eq!(env.services["api"].egresses["web"].ingress, "");
}

/// Upstream `TestResolveDefaults_ResolvesDefaultIngressAmongMultiple`.
#[test]
fn resolves_default_among_multiple_ingresses() {
    let mut env = env_of(vec![
        (
            "web",
            svc("process", &[("default", "http"), ("ui", "http")], &[]),
        ),
        ("api", svc("process", &[], &[("web", "web", "")])),
    ]);
    resolve_defaults(&mut env);
    assert_eq!(env.services["api"].egresses["web"].ingress, "default");
}

/// Upstream `TestValidateEnvironment_DefaultIngressFallbackValid`.
#[test]
fn default_ingress_fallback_validates() {
    let mut env = env_of(vec![
        (
            "web",
            svc("process", &[("default", "http"), ("ui", "http")], &[]),
        ),
        ("api", svc("process", &[], &[("web", "web", "")])),
    ]);
    assert_eq!(validate_environment(&mut env), Vec::<String>::new());
    assert_eq!(env.services["api"].egresses["web"].ingress, "default");
}

/// Upstream `TestResolveDefaults_PreservesExplicitIngresses`.
#[test]
fn preserves_explicit_ingresses() {
    let mut env = env_of(vec![
        (
            "svc",
            svc("process", &[("grpc", "grpc"), ("http", "http")], &[]),
        ),
        (
            "api",
            svc(
                "process",
                &[],
                &[("a", "svc", "grpc"), ("b", "svc", "http")],
            ),
        ),
    ]);
    let before = env.clone();
    resolve_defaults(&mut env);
    assert_eq!(env, before);
}

/// An explicit ingress is kept even when the target has a single, different one (validation
/// reports the mismatch), and an egress to an unknown service is left alone.
#[test]
fn leaves_explicit_and_unknown_targets_alone() {
    let mut env = env_of(vec![
        ("db", svc("postgres", &[("default", "tcp")], &[])),
        (
            "api",
            svc("process", &[], &[("db", "db", "admin"), ("x", "nope", "")]),
        ),
    ]);
    let before = env.clone();
    resolve_defaults(&mut env);
    assert_eq!(env, before);
}
