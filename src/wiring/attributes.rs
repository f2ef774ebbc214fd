//! Resolving endpoint attribute templates (`${HOST}`, `${PORT}`, `${HOSTPORT}`).
//!
//! Endpoints keep their templates inside rigd (in `ingress.published` events and in the wiring
//! between services), so moving an endpoint (a container address, a proxy in front of it) only
//! changes `hostport`. Templates are resolved at the output boundaries: environment variables,
//! `RIG_WIRING`, callback wiring, `environment.up` and `GET /environments/{id}`.
//!
//! Rules (upstream `spec.ResolveAttributes`):
//! - absent attributes stay absent and an empty map stays empty;
//! - values that are not strings, and strings without `$`, are copied unchanged;
//! - other strings are expanded with Go `os.Expand` semantics (see [`super::expand`](mod@super::expand)) against
//!   exactly three variables: `HOST` and `PORT` (split from `hostport`) and `HOSTPORT`;
//! - any other name is an error naming the attribute, its template and the last unknown
//!   variable in it;
//! - the source map is never modified: a new map is returned.

use std::collections::BTreeMap;

use rig_types::endpoint::{split_host_port, Attributes};
use rig_types::{Endpoint, ResolvedEndpoint};
use serde_json::Value;

use super::expand::expand;
use crate::spec::go_quote;

/// An attribute template names a variable other than `HOST`, `PORT` and `HOSTPORT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "attribute {} template {} references unknown variable ${{{variable}}}; only HOST, PORT, and HOSTPORT are available",
    go_quote(.attribute),
    go_quote(.template)
)]
pub struct TemplateError {
    /// The attribute whose value holds the template.
    pub attribute: String,
    /// The template as written.
    pub template: String,
    /// The last unknown variable the template references.
    pub variable: String,
}

/// A template in one endpoint of a map of endpoints could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("endpoint {}: {source}", go_quote(.endpoint))]
pub struct EndpointError {
    /// The endpoint's name in the map (an ingress or egress name).
    pub endpoint: String,
    /// What was wrong with its attributes.
    pub source: TemplateError,
}

/// Resolves the templates in `attrs` against `hostport`. `None` stays `None`; the source is
/// not modified.
///
/// # Errors
/// A string value references a variable other than `HOST`, `PORT` or `HOSTPORT` (the first
/// such attribute in key order is reported).
pub fn resolve_attributes(
    attrs: Option<&Attributes>,
    hostport: &str,
) -> Result<Option<Attributes>, TemplateError> {
    let Some(attrs) = attrs else {
        return Ok(None);
    };
    let (host, port) = split_host_port(hostport).unwrap_or(("", ""));
    let builtin = |name: &str| match name {
        "HOST" => Some(host),
        "PORT" => Some(port),
        "HOSTPORT" => Some(hostport),
        _ => None,
    };

    let mut resolved = Attributes::new();
    for (key, value) in attrs {
        let template = match value {
            Value::String(s) if s.contains('$') => s,
            other => {
                resolved.insert(key.clone(), other.clone());
                continue;
            }
        };
        let mut unknown: Option<String> = None;
        let expanded = expand(template, |name| match builtin(name) {
            Some(v) => Some(v.to_string()),
            None => {
                unknown = Some(name.to_string());
                None
            }
        });
        if let Some(variable) = unknown {
            return Err(TemplateError {
                attribute: key.clone(),
                template: template.clone(),
                variable,
            });
        }
        resolved.insert(key.clone(), Value::String(expanded));
    }
    Ok(Some(resolved))
}

/// Resolves an endpoint's attribute templates against its own `hostport`.
///
/// # Errors
/// See [`resolve_attributes`].
pub fn resolve_endpoint(endpoint: &Endpoint) -> Result<ResolvedEndpoint, TemplateError> {
    Ok(ResolvedEndpoint {
        hostport: endpoint.hostport.clone(),
        protocol: endpoint.protocol.clone(),
        attributes: resolve_attributes(endpoint.attributes.as_ref(), &endpoint.hostport)?,
    })
}

/// Resolves every endpoint of a map (upstream `resolveEndpointMap`).
///
/// # Errors
/// The first endpoint (in name order) whose attributes fail to resolve, named in the error.
pub fn resolve_endpoints(
    endpoints: &BTreeMap<String, Endpoint>,
) -> Result<BTreeMap<String, ResolvedEndpoint>, EndpointError> {
    endpoints
        .iter()
        .map(|(name, endpoint)| {
            resolve_endpoint(endpoint)
                .map(|resolved| (name.clone(), resolved))
                .map_err(|source| EndpointError {
                    endpoint: name.clone(),
                    source,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig_types::Protocol;
    use serde_json::json;

    fn attrs(value: Value) -> Attributes {
        serde_json::from_value(value).unwrap()
    }

    fn endpoint(hostport: &str, attributes: Option<Value>) -> Endpoint {
        Endpoint {
            hostport: hostport.into(),
            protocol: Protocol::Tcp,
            attributes: attributes.map(attrs),
        }
    }

    fn resolve(value: Value, hostport: &str) -> Result<Attributes, TemplateError> {
        resolve_attributes(Some(&attrs(value)), hostport).map(|a| a.unwrap())
    }

    // Upstream TestResolveAttributes_Basic.
    #[test]
    fn builtins_expand_and_literals_stay() {
        let got = resolve(
            json!({"H": "${HOST}", "P": "${PORT}", "HP": "${HOSTPORT}", "LIT": "plain"}),
            "127.0.0.1:5432",
        )
        .unwrap();
        assert_eq!(
            got,
            attrs(json!({"H": "127.0.0.1", "P": "5432", "HP": "127.0.0.1:5432", "LIT": "plain"}))
        );
    }

    // Upstream TestResolveAttributes_CompoundBuiltins.
    #[test]
    fn compound_template_expands_fully() {
        let got = resolve(
            json!({"DATABASE_URL": "postgres://${HOST}:${PORT}/mydb"}),
            "localhost:5432",
        )
        .unwrap();
        assert_eq!(got["DATABASE_URL"], json!("postgres://localhost:5432/mydb"));
    }

    // Upstream TestResolveAttributes_NonBuiltinReturnsError.
    #[test]
    fn non_builtin_variable_is_an_error() {
        let err = resolve(json!({"URL": "postgres://${PGHOST}/db"}), "127.0.0.1:1").unwrap_err();
        assert_eq!(err.variable, "PGHOST");
        assert!(err.to_string().contains("PGHOST"), "{err}");
    }

    // Upstream TestResolveAttributes_NilAttributes.
    #[test]
    fn none_stays_none() {
        assert_eq!(resolve_attributes(None, "127.0.0.1:1"), Ok(None));
    }

    // Upstream TestResolveAttributes_EmptyAttributes.
    #[test]
    fn empty_stays_empty() {
        assert_eq!(
            resolve_attributes(Some(&Attributes::new()), "127.0.0.1:1"),
            Ok(Some(Attributes::new()))
        );
    }

    // Upstream TestResolveAttributes_NoTemplates.
    #[test]
    fn strings_without_dollar_are_unchanged() {
        let src = json!({"A": "hello", "B": "{HOST}", "C": "100%"});
        assert_eq!(resolve(src.clone(), "h:1").unwrap(), attrs(src));
    }

    // Upstream TestResolveAttributes_DoesNotMutateSource.
    #[test]
    fn source_is_not_mutated() {
        let ep = endpoint("127.0.0.1:80", Some(json!({"H": "${HOST}"})));
        let before = ep.clone();
        let resolved = resolve_endpoint(&ep).unwrap();
        assert_eq!(ep, before);
        assert_eq!(ep.attributes.unwrap()["H"], json!("${HOST}"));
        assert_eq!(resolved.attributes.unwrap()["H"], json!("127.0.0.1"));
    }

    // Upstream TestResolveAttributes_UnknownVarReturnsError.
    #[test]
    fn typo_is_an_error_naming_it() {
        let err = resolve(json!({"X": "${HOOST}/foo"}), "h:1").unwrap_err();
        assert!(err.to_string().contains("HOOST"), "{err}");
    }

    // Upstream TestResolveAttributes_NonStringValue.
    #[test]
    fn non_string_values_pass_through() {
        let got = resolve(
            json!({"N": 100, "F": 0.5, "B": true, "Z": null, "L": ["${HOST}"], "M": {"k": "${PORT}"}, "S": "${PORT}"}),
            "h:7",
        )
        .unwrap();
        assert_eq!(
            got,
            attrs(
                json!({"N": 100, "F": 0.5, "B": true, "Z": null, "L": ["${HOST}"], "M": {"k": "${PORT}"}, "S": "7"})
            )
        );
    }

    #[test]
    fn error_message_is_exactly_upstreams() {
        let err = resolve(json!({"PG": "${PGHOST}:${PORT}"}), "h:1").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"attribute "PG" template "${PGHOST}:${PORT}" references unknown variable ${PGHOST}; only HOST, PORT, and HOSTPORT are available"#
        );
    }

    #[test]
    fn error_names_the_last_unknown_variable() {
        let err = resolve(json!({"A": "${ONE}-$TWO-${HOST}"}), "h:1").unwrap_err();
        assert_eq!(err.variable, "TWO");
        assert_eq!(err.attribute, "A");
        assert_eq!(err.template, "${ONE}-$TWO-${HOST}");
    }

    #[test]
    fn positional_and_special_names_are_errors() {
        for (template, name) in [
            ("$1", "1"),
            ("${?}", "?"),
            ("a${$}", "$"),
            ("$host", "host"),
        ] {
            let err = resolve(json!({ "A": template }), "h:1").unwrap_err();
            assert_eq!(err.variable, name, "template {template}");
        }
    }

    #[test]
    fn error_quotes_like_go() {
        let err = resolve(json!({"A\"b": "x\n${Y}"}), "h:1").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"attribute "A\"b" template "x\n${Y}" references"#),
            "{err}"
        );
    }

    #[test]
    fn first_failing_attribute_in_key_order_is_reported() {
        let err = resolve(json!({"B": "${BAD2}", "A": "${BAD1}"}), "h:1").unwrap_err();
        assert_eq!(err.attribute, "A");
    }

    #[test]
    fn bare_dollar_forms_and_swallowed_syntax() {
        let got = resolve(
            json!({"A": "$HOST:$PORT", "B": "cost 5$", "C": "${}x", "D": "a$ b", "E": "${HOST"}),
            "10.0.0.1:99",
        )
        .unwrap();
        assert_eq!(
            got,
            attrs(json!({"A": "10.0.0.1:99", "B": "cost 5$", "C": "x", "D": "a$ b", "E": "HOST"}))
        );
    }

    #[test]
    fn ipv6_and_portless_hostports() {
        let got = resolve(
            json!({"H": "${HOST}", "P": "${PORT}", "HP": "${HOSTPORT}"}),
            "[::1]:80",
        )
        .unwrap();
        assert_eq!(got, attrs(json!({"H": "::1", "P": "80", "HP": "[::1]:80"})));
        // Go's net.SplitHostPort fails here and gives empty host and port.
        let got = resolve(
            json!({"H": "${HOST}", "P": "${PORT}", "HP": "${HOSTPORT}"}),
            "noport",
        )
        .unwrap();
        assert_eq!(got, attrs(json!({"H": "", "P": "", "HP": "noport"})));
    }

    #[test]
    fn resolve_endpoint_keeps_address_and_protocol() {
        let mut ep = endpoint("127.0.0.1:9", None);
        ep.protocol = Protocol::Grpc;
        let resolved = resolve_endpoint(&ep).unwrap();
        assert_eq!(resolved, ep);
        assert_eq!(resolved.attributes, None);
    }

    #[test]
    fn resolve_endpoints_names_the_failing_endpoint() {
        let mut map = BTreeMap::new();
        map.insert(
            "good".to_string(),
            endpoint("h:1", Some(json!({"A": "${PORT}"}))),
        );
        map.insert(
            "bad".to_string(),
            endpoint("h:2", Some(json!({"A": "${NOPE}"}))),
        );
        let err = resolve_endpoints(&map).unwrap_err();
        assert_eq!(err.endpoint, "bad");
        assert_eq!(
            err.to_string(),
            r#"endpoint "bad": attribute "A" template "${NOPE}" references unknown variable ${NOPE}; only HOST, PORT, and HOSTPORT are available"#
        );
        map.remove("bad");
        let resolved = resolve_endpoints(&map).unwrap();
        assert_eq!(
            resolved["good"].attributes.as_ref().unwrap()["A"],
            json!("1")
        );
        assert!(resolve_endpoints(&BTreeMap::new()).unwrap().is_empty());
    }
}
