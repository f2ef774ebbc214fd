//! The environment variables a service, and its hooks, are given.
//!
//! [`build_service_env`] writes, in this order (a later write overwrites an earlier one):
//!
//! 1. every variable of `host_env` (the SDK's captured environment), as the base layer;
//! 2. `RIG_WIRING`: the [`WiringContext`] as compact JSON, resolved endpoints, empty fields
//!    omitted, with `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`... exactly like Go's
//!    `encoding/json` (so the text is byte-identical to upstream's for the same wiring;
//!    consumers decode it either way);
//! 3. `RIG_TEMP_DIR`, `RIG_ENV_DIR`, `RIG_SERVICE`;
//! 4. per ingress, in name order: `<prefix>HOST`, `<prefix>PORT`, then `<prefix><ATTR>` for
//!    every attribute rendered like Go's `%v` ([`super::gofmt`]). The prefix is empty for the
//!    ingress named `default` and [`to_env_prefix`] of the name otherwise;
//! 5. per egress, in name order, the same with the prefix always applied.
//!
//! Attributes therefore override the computed `HOST`/`PORT` of their endpoint, and egress
//! variables win over ingress variables. Upstream iterates Go maps, so collisions inside a
//! group were nondeterministic there; here the later name in sort order wins.
//!
//! Attribute templates are resolved first; an unknown variable fails the whole build.
//!
//! `RIG_WIRING` differs from upstream's text only where Go's JSON round trip loses
//! information: Go decodes attribute numbers to `float64`, so it writes `1.0` as `1` and
//! rounds integers above 2^53, and it sorts the keys of objects nested in attribute values.
//! Here numbers keep their written form and nested objects their order. Decoded, both mean
//! the same, which is all a consumer of `RIG_WIRING` does with it.

use std::collections::BTreeMap;

use rig_types::{Endpoint, ResolvedEndpoint, WiringContext};

use super::attributes::{resolve_endpoints, EndpointError};
use super::gofmt::go_format_value;

/// Everything the environment builders need to know about one service.
#[derive(Clone, Copy, Debug)]
pub struct ServiceEnvInput<'a> {
    /// The service name (`RIG_SERVICE`).
    pub service: &'a str,
    /// The service's own published ingresses, templates unresolved.
    pub ingresses: &'a BTreeMap<String, Endpoint>,
    /// The endpoints its egresses point at, templates unresolved.
    pub egresses: &'a BTreeMap<String, Endpoint>,
    /// The service's temporary directory (`RIG_TEMP_DIR`; may be empty for injected nodes).
    pub temp_dir: &'a str,
    /// The environment directory shared by all services (`RIG_ENV_DIR`).
    pub env_dir: &'a str,
    /// The SDK's captured process environment, the base layer of every map built here.
    pub host_env: &'a BTreeMap<String, String>,
}

/// Building a service's wiring failed.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// An ingress attribute template references an unknown variable.
    #[error("resolve ingress attributes: {0}")]
    Ingress(EndpointError),
    /// An egress attribute template references an unknown variable.
    #[error("resolve egress attributes: {0}")]
    Egress(EndpointError),
    /// `RIG_WIRING` could not be encoded as JSON.
    #[error("encode RIG_WIRING: {0}")]
    Encode(serde_json::Error),
}

/// The environment-variable prefix for an ingress or egress name: uppercased, `-` replaced
/// by `_`, with a trailing `_` (`order-db` gives `ORDER_DB_`). Nothing else is replaced:
/// `api~grpc` gives `API~GRPC_`.
pub fn to_env_prefix(name: &str) -> String {
    let mut prefix: String = name.to_uppercase().replace('-', "_");
    prefix.push('_');
    prefix
}

/// The resolved wiring of a service: its ingresses, egresses and directories. Handed to
/// callbacks and hooks, and serialised as `RIG_WIRING`.
///
/// # Errors
/// An attribute template of an ingress or egress references an unknown variable.
pub fn wiring_context(input: &ServiceEnvInput<'_>) -> Result<WiringContext, WiringError> {
    Ok(WiringContext {
        ingresses: resolve_endpoints(input.ingresses).map_err(WiringError::Ingress)?,
        egresses: resolve_endpoints(input.egresses).map_err(WiringError::Egress)?,
        temp_dir: input.temp_dir.to_string(),
        env_dir: input.env_dir.to_string(),
    })
}

/// `RIG_WIRING`'s text: compact JSON, HTML-escaped like Go's `json.Marshal`.
///
/// # Errors
/// Serialisation failed (not expected for these types).
pub fn wiring_json(wiring: &WiringContext) -> Result<String, WiringError> {
    let json = serde_json::to_string(wiring).map_err(WiringError::Encode)?;
    Ok(go_html_escape(json))
}

/// The full environment of a service's process (upstream `BuildServiceEnv`); see the module
/// documentation for what is written in which order.
///
/// # Errors
/// An attribute template references an unknown variable.
pub fn build_service_env(
    input: &ServiceEnvInput<'_>,
) -> Result<BTreeMap<String, String>, WiringError> {
    let wiring = wiring_context(input)?;
    let mut env = input.host_env.clone();
    env.insert("RIG_WIRING".to_string(), wiring_json(&wiring)?);
    set_service_vars(&mut env, input);
    add_ingress_vars(&mut env, &wiring.ingresses);
    add_egress_vars(&mut env, &wiring.egresses);
    Ok(env)
}

/// The environment of a prestart hook: identical to the service's own
/// ([`build_service_env`]).
///
/// # Errors
/// An attribute template references an unknown variable.
pub fn build_prestart_hook_env(
    input: &ServiceEnvInput<'_>,
) -> Result<BTreeMap<String, String>, WiringError> {
    build_service_env(input)
}

/// The environment of an init hook: host env, `RIG_TEMP_DIR`, `RIG_ENV_DIR`, `RIG_SERVICE`
/// and the ingress variables. Egresses are ignored and there is no `RIG_WIRING`.
///
/// # Errors
/// An ingress attribute template references an unknown variable.
pub fn build_init_hook_env(
    input: &ServiceEnvInput<'_>,
) -> Result<BTreeMap<String, String>, WiringError> {
    let ingresses = resolve_endpoints(input.ingresses).map_err(WiringError::Ingress)?;
    let mut env = input.host_env.clone();
    set_service_vars(&mut env, input);
    add_ingress_vars(&mut env, &ingresses);
    Ok(env)
}

fn set_service_vars(env: &mut BTreeMap<String, String>, input: &ServiceEnvInput<'_>) {
    env.insert("RIG_TEMP_DIR".to_string(), input.temp_dir.to_string());
    env.insert("RIG_ENV_DIR".to_string(), input.env_dir.to_string());
    env.insert("RIG_SERVICE".to_string(), input.service.to_string());
}

fn add_ingress_vars(
    env: &mut BTreeMap<String, String>,
    ingresses: &BTreeMap<String, ResolvedEndpoint>,
) {
    for (name, endpoint) in ingresses {
        add_endpoint_vars(env, &ingress_prefix(name), endpoint);
    }
}

/// The prefix of ingress `name`'s variables: none for `default`.
fn ingress_prefix(name: &str) -> String {
    if name == "default" {
        String::new()
    } else {
        to_env_prefix(name)
    }
}

/// The variable that gives a service the port of its ingress `name`: `PORT` for `default`,
/// `<NAME>_PORT` for the others.
pub fn port_variable(name: &str) -> String {
    format!("{}PORT", ingress_prefix(name))
}

fn add_egress_vars(
    env: &mut BTreeMap<String, String>,
    egresses: &BTreeMap<String, ResolvedEndpoint>,
) {
    for (name, endpoint) in egresses {
        add_endpoint_vars(env, &to_env_prefix(name), endpoint);
    }
}

/// Writes `<prefix>HOST`, `<prefix>PORT` and `<prefix><ATTR>` for every attribute.
fn add_endpoint_vars(
    env: &mut BTreeMap<String, String>,
    prefix: &str,
    endpoint: &ResolvedEndpoint,
) {
    env.insert(format!("{prefix}HOST"), endpoint.host().to_string());
    env.insert(format!("{prefix}PORT"), endpoint.port_str().to_string());
    for (key, value) in endpoint.attributes.iter().flatten() {
        env.insert(format!("{prefix}{key}"), go_format_value(value));
    }
}

/// Escapes what Go's JSON encoder escapes beyond serde_json: `<`, `>`, `&` (HTML safety) and
/// U+2028/U+2029 (JavaScript line terminators). These characters can only occur inside
/// string literals of the encoded JSON, so replacing them anywhere is safe.
fn go_html_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}
