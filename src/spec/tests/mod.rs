//! Unit tests of the spec module, one file per concern. Tests that port an upstream Go test
//! say which one in their doc comment.

mod decode;
mod defaults;
mod robustness;
mod transform;
mod validate;

use rig_types::{EgressSpec, Environment, IngressSpec, Protocol, Service};
use serde_json::Value;

use super::decode_environment;

/// Decodes a JSON value with [`decode_environment`], panicking (in tests) on error.
fn decode(value: Value) -> Environment {
    let body = serde_json::to_vec(&value).expect("test JSON serialises");
    match decode_environment(&body) {
        Ok(env) => env,
        Err(e) => panic!("decode failed: {e}"),
    }
}

/// The decode error message for a raw document, panicking (in tests) if it decodes.
fn decode_err(body: &str) -> String {
    match decode_environment(body.as_bytes()) {
        Ok(env) => panic!("expected a decode error, got {env:?}"),
        Err(e) => e.to_string(),
    }
}

/// A service of type `t` with the given ingresses (name, protocol) and egresses
/// (name, target service, target ingress).
fn svc(t: &str, ingresses: &[(&str, &str)], egresses: &[(&str, &str, &str)]) -> Service {
    Service {
        service_type: t.to_string(),
        ingresses: ingresses
            .iter()
            .map(|(name, protocol)| {
                (
                    name.to_string(),
                    IngressSpec {
                        protocol: Protocol::from_name(protocol),
                        ..IngressSpec::default()
                    },
                )
            })
            .collect(),
        egresses: egresses
            .iter()
            .map(|(name, service, ingress)| {
                (
                    name.to_string(),
                    EgressSpec {
                        service: service.to_string(),
                        ingress: ingress.to_string(),
                    },
                )
            })
            .collect(),
        ..Service::default()
    }
}

/// An environment named `test` with the given services.
fn env_of(services: Vec<(&str, Service)>) -> Environment {
    Environment {
        name: "test".to_string(),
        services: services
            .into_iter()
            .map(|(name, service)| (name.to_string(), service))
            .collect(),
        ..Environment::default()
    }
}
