//! The environment spec (what a client POSTs to `/environments`) and the resolved views rigd
//! returns for it.
//!
//! These are plain data. Decoding with duplicate-key checks, defaulting, validation and the
//! `~test`/observe transforms live in `rigd::spec`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;
use crate::endpoint::{Attributes, Protocol, ResolvedEndpoint};

/// A whole environment: named services wired together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Required; names log files and appears in listings.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Services by name. At least one is required.
    #[serde(default, deserialize_with = "null_default")]
    pub services: BTreeMap<String, Service>,
    /// Insert an observing proxy on every edge. On when a JSON spec leaves it out (rig-rs;
    /// upstream defaults to off); `Environment::default()` leaves it off.
    #[serde(default = "observe_default", deserialize_with = "observe_or_default")]
    pub observe: bool,
    /// The client's process environment: the base layer of every service environment.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub host_env: BTreeMap<String, String>,
    /// The client's working directory: default cwd of children and base for relative paths.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub dir: String,
    /// Explicit lifetime as a Go duration string. Kept as text so validation can report a bad
    /// value with the user's spelling.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub ttl: String,
    /// How long rigd waits for the client to answer a callback (hooks, `client` starts); zero
    /// means rigd's default (30 s). A rig-rs addition.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "GoDuration::is_zero"
    )]
    pub callback_timeout: GoDuration,
}

/// One service of an environment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// The service type (`process`, `container`, `postgres`, ...).
    #[serde(default, deserialize_with = "null_default", rename = "type")]
    pub service_type: String,
    /// Type-specific configuration.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub config: Option<serde_json::Value>,
    /// Arguments; `$VAR`/`${VAR}` are expanded against the service environment.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    /// Ingresses by name. May be empty: there is no implicit default ingress.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub ingresses: BTreeMap<String, IngressSpec>,
    /// Egresses (dependencies) by name.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub egresses: BTreeMap<String, EgressSpec>,
    /// Lifecycle hooks.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub hooks: Option<Hooks>,
    /// Marks nodes rigd inserts itself (`~test`, proxies).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub injected: bool,
}

/// An ingress: a port the service listens on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IngressSpec {
    /// One of `tcp`, `http`, `grpc`, `kafka` (checked by validation).
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: Protocol,
    /// Port inside a container; 0 means "the same as the host port".
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero_u16"
    )]
    pub container_port: u16,
    /// How to tell the ingress is ready; defaults to a probe of the ingress protocol.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub ready: Option<ReadySpec>,
    /// Static attributes, which may use `${HOST}`, `${PORT}` and `${HOSTPORT}`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub attributes: Option<Attributes>,
}

/// An egress: a dependency on another service's ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressSpec {
    /// Target service name.
    #[serde(default, deserialize_with = "null_default")]
    pub service: String,
    /// Target ingress name; when empty, resolved by defaulting (single ingress or `default`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub ingress: String,
}

/// Readiness probe settings for an ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadySpec {
    /// `tcp`, `http` or `grpc`; empty means the ingress protocol, anything else means TCP.
    #[serde(
        default,
        deserialize_with = "null_default",
        rename = "type",
        skip_serializing_if = "String::is_empty"
    )]
    pub probe_type: String,
    /// HTTP path to probe (default `/`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub path: String,
    /// Initial poll interval (default 10 ms, doubling to 1 s).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "GoDuration::is_zero"
    )]
    pub interval: GoDuration,
    /// Give up after this long (default 30 s).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "GoDuration::is_zero"
    )]
    pub timeout: GoDuration,
}

/// Hooks run before a service starts (`prestart`) and once it is healthy (`init`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hooks {
    /// Run after wiring resolves, before the service starts.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub prestart: Vec<HookSpec>,
    /// Run after the service is healthy, before it is ready.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub init: Vec<HookSpec>,
}

/// One hook.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HookSpec {
    /// `client_func`, or a server-side kind (`exec`, `sql`, `schema`).
    #[serde(default, deserialize_with = "null_default", rename = "type")]
    pub hook_type: String,
    /// The client function to call, for `client_func` hooks.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_func: Option<ClientFuncSpec>,
    /// Type-specific configuration for server-side hooks.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub config: Option<serde_json::Value>,
    /// How long the hook may run (`"90s"`, `"10m"`); zero or absent for the default: the
    /// environment's `callback_timeout` for a `client_func` hook, 5 minutes for a server-side
    /// one. Additive: upstream has no per-hook limit, and a server-side hook could hang forever.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "GoDuration::is_zero"
    )]
    pub timeout: GoDuration,
}

/// Names a function registered in the client (SDK) process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFuncSpec {
    /// The handler name the SDK registered (e.g. `_hook_1`).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// Where a service is in its lifecycle, as shown by `GET /environments/{id}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// Not started yet (waiting on dependencies or artifacts).
    #[default]
    Pending,
    /// The process or container has been launched.
    Starting,
    /// Readiness checks passed.
    Healthy,
    /// Init hooks ran; dependants may start.
    Ready,
    /// The service failed.
    Failed,
    /// Teardown is stopping it.
    Stopping,
    /// It has stopped.
    Stopped,
}

impl ServiceStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ServiceStatus; 7] = [
        ServiceStatus::Pending,
        ServiceStatus::Starting,
        ServiceStatus::Healthy,
        ServiceStatus::Ready,
        ServiceStatus::Failed,
        ServiceStatus::Stopping,
        ServiceStatus::Stopped,
    ];

    /// The wire name (`"pending"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Pending => "pending",
            ServiceStatus::Starting => "starting",
            ServiceStatus::Healthy => "healthy",
            ServiceStatus::Ready => "ready",
            ServiceStatus::Failed => "failed",
            ServiceStatus::Stopping => "stopping",
            ServiceStatus::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The point-in-time view of an environment returned by `GET /environments/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolvedEnvironment {
    /// Environment id.
    pub id: String,
    /// Environment name.
    pub name: String,
    /// Non-injected services by name.
    pub services: BTreeMap<String, ResolvedService>,
    /// Service → ingress → the address the test is given for it, once the environment is up
    /// (`environment.up`'s `ingresses`): in observe mode the proxy that records the test's
    /// calls (rig-rs addition; omitted before the environment is up).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub test_ingresses: BTreeMap<String, BTreeMap<String, ResolvedEndpoint>>,
    /// Why the environment failed (its first `environment.failing`'s error), once it has
    /// (rig-rs addition; omitted otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failed: String,
}

/// One service in a [`ResolvedEnvironment`]. Empty maps serialise as `null`, as upstream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolvedService {
    /// Published ingresses by name.
    pub ingresses: Option<BTreeMap<String, ResolvedEndpoint>>,
    /// Egress endpoints by egress name.
    pub egresses: Option<BTreeMap<String, ResolvedEndpoint>>,
    /// Current status.
    pub status: ServiceStatus,
}

/// Observe mode is on unless a spec turns it off (rig-rs; upstream defaults to off).
fn observe_default() -> bool {
    true
}

/// `observe`: absent or `null` means on.
fn observe_or_default<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// Decodes JSON `null` as the field's default, as Go's decoder does (`"args": null` is no
/// arguments, not an error).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documented_wire_json_parses() {
        let env: Environment = serde_json::from_value(json!({
            "name": "orders",
            "observe": true,
            "ttl": "5m",
            "services": {
                "db": {"type": "postgres", "ingresses": {"default": {"protocol": "tcp", "container_port": 5432}}},
                "api": {
                    "type": "go",
                    "config": {"module": "./cmd/api"},
                    "args": ["--db", "${DATABASE_HOST}"],
                    "ingresses": {"default": {"protocol": "http", "ready": {"path": "/health", "interval": "200ms", "timeout": "30s"}}},
                    "egresses": {"database": {"service": "db"}},
                    "hooks": {
                        "prestart": [{"type": "client_func", "client_func": {"name": "_hook_1"}}],
                        "init": [{"type": "sql", "config": {"statements": ["SELECT 1"]}}]
                    }
                }
            }
        }))
        .unwrap();
        assert_eq!(env.name, "orders");
        assert!(env.observe);
        assert_eq!(env.ttl, "5m");
        let api = &env.services["api"];
        assert_eq!(api.service_type, "go");
        assert_eq!(api.egresses["database"].service, "db");
        assert_eq!(api.egresses["database"].ingress, "");
        let ready = api.ingresses["default"].ready.as_ref().unwrap();
        assert_eq!(ready.interval, GoDuration::from_millis(200));
        assert_eq!(ready.timeout, GoDuration::from_secs(30));
        let hooks = api.hooks.as_ref().unwrap();
        assert_eq!(
            hooks.prestart[0].client_func.as_ref().unwrap().name,
            "_hook_1"
        );
        assert_eq!(hooks.init[0].hook_type, "sql");
        assert_eq!(env.services["db"].ingresses["default"].container_port, 5432);
    }

    #[test]
    fn null_fields_decode_as_defaults_like_go() {
        let env: Environment = serde_json::from_value(json!({
            "name": "n", "observe": null, "host_env": null, "dir": null, "ttl": null,
            "services": {"a": {
                "type": "process", "config": null, "args": null, "ingresses": null,
                "egresses": null, "hooks": {"prestart": null, "init": null}, "injected": null
            }}
        }))
        .unwrap();
        let a = &env.services["a"];
        assert!(env.observe, "observe is on unless turned off");
        assert!(a.args.is_empty() && a.ingresses.is_empty() && a.egresses.is_empty());
        assert!(a.config.is_none());
        let ready: ReadySpec =
            serde_json::from_value(json!({"type": null, "interval": null})).unwrap();
        assert!(ready.interval.is_zero());
    }

    #[test]
    fn observe_defaults_to_on_and_off_survives_a_round_trip() {
        let on: Environment = serde_json::from_value(json!({"name": "n"})).unwrap();
        assert!(on.observe);
        let off: Environment =
            serde_json::from_value(json!({"name": "n", "observe": false})).unwrap();
        assert!(!off.observe);
        let back: Environment =
            serde_json::from_str(&serde_json::to_string(&off).unwrap()).unwrap();
        assert!(!back.observe);
    }

    #[test]
    fn full_environment_round_trips() {
        let env: Environment = serde_json::from_value(json!({
            "name": "rt",
            "services": {
                "db": {"type": "postgres", "ingresses": {"default": {"protocol": "tcp", "container_port": 5432,
                        "attributes": {"PGHOST": "${HOST}", "PGPORT": "${PORT}"}}}},
                "api": {"type": "go", "config": {"module": "./api"}, "args": ["-c", "${RIG_TEMP_DIR}/c.json"],
                        "ingresses": {"default": {"protocol": "http"}},
                        "egresses": {"db": {"service": "db", "ingress": "default"}},
                        "hooks": {"prestart": [{"type": "client_func", "client_func": {"name": "p"}}],
                                  "init": [{"type": "client_func", "client_func": {"name": "i"}}]}}
            }
        }))
        .unwrap();
        let text = serde_json::to_string(&env).unwrap();
        let back: Environment = serde_json::from_str(&text).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn ready_spec_round_trips() {
        let r = ReadySpec {
            probe_type: "http".into(),
            path: "/health".into(),
            interval: GoDuration::from_millis(200),
            timeout: GoDuration::from_secs(30),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"type": "http", "path": "/health", "interval": "200ms", "timeout": "30s"})
        );
        assert_eq!(serde_json::from_value::<ReadySpec>(v).unwrap(), r);
        // Upstream's Go SDK always writes both durations, as "" when zero.
        let zero: ReadySpec =
            serde_json::from_value(json!({"interval": "", "timeout": ""})).unwrap();
        assert!(zero.interval.is_zero() && zero.timeout.is_zero());
    }

    #[test]
    fn service_status_values_are_distinct() {
        let names: std::collections::BTreeSet<_> =
            ServiceStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), 7);
        for s in ServiceStatus::ALL {
            assert!(!s.as_str().is_empty());
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }

    #[test]
    fn resolved_environment_round_trips_and_empty_maps_are_null() {
        let mut attrs = Attributes::new();
        attrs.insert("PGHOST".into(), json!("127.0.0.1"));
        let mut svc = ResolvedService {
            ingresses: Some(BTreeMap::from([(
                "default".to_string(),
                ResolvedEndpoint::new("127.0.0.1:8080", Protocol::Http),
            )])),
            egresses: Some(BTreeMap::from([(
                "db".to_string(),
                ResolvedEndpoint {
                    hostport: "127.0.0.1:5432".into(),
                    protocol: Protocol::Tcp,
                    attributes: Some(attrs),
                },
            )])),
            status: ServiceStatus::Ready,
        };
        let env = ResolvedEnvironment {
            id: "abc".into(),
            name: "rt".into(),
            services: BTreeMap::from([("api".to_string(), svc.clone())]),
            test_ingresses: BTreeMap::new(),
            failed: String::new(),
        };
        let back: ResolvedEnvironment =
            serde_json::from_str(&serde_json::to_string(&env).unwrap()).unwrap();
        assert_eq!(back, env);
        assert_eq!(
            back.services["api"].ingresses.as_ref().unwrap()["default"].port(),
            Some(8080)
        );

        svc.ingresses = None;
        svc.egresses = None;
        assert_eq!(
            serde_json::to_value(&svc).unwrap(),
            json!({"ingresses": null, "egresses": null, "status": "ready"})
        );
    }
}
