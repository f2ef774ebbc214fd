//! The SDK's errors: one enum, each message saying what went wrong and what to do about it.

use std::fmt;
use std::time::Duration;

use crate::transport::autostart::AutostartError;
use crate::transport::client::ClientError;

/// The error type of hooks and in-test services: any error converts into it with `?`
/// (`std::io::Error`, `rig::Error`, `anyhow::Error`, a `String`, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong bringing an environment up, using it and tearing it down.
///
/// `Debug` prints the same text as `Display`, so a test that returns `rig::Result<()>` shows a
/// readable failure rather than a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `rig::up` was called outside a Tokio runtime.
    #[error(
        "rig::up must run inside a Tokio runtime: use #[tokio::test] (or #[tokio::main]), \
         whose runtime drives in-test services and hooks"
    )]
    NoRuntime,
    /// The SDK's background thread could not be started.
    #[error("cannot start the SDK's background runtime: {reason}")]
    Runtime {
        /// Why.
        reason: String,
    },
    /// No rigd could be found or started.
    #[error("cannot find or start rigd: {0}")]
    Rigd(#[from] AutostartError),
    /// A request to rigd failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// rigd rejected the spec.
    #[error("rigd rejected environment {name:?}:{}", bullet_list(errors))]
    Validation {
        /// The environment name.
        name: String,
        /// Every validation error, as rigd wrote it.
        errors: Vec<String>,
    },
    /// rigd has no driver for a service type the test uses.
    #[error(
        "service {service:?} has type {service_type:?}, which the rigd at {addr} does not \
         support yet; use a service type it runs (process, func) or a newer rigd"
    )]
    UnsupportedServiceType {
        /// The service.
        service: String,
        /// Its type.
        service_type: String,
        /// The rigd's address.
        addr: String,
    },
    /// The environment asks for observe mode, which this rigd cannot provide.
    #[error(
        "the rigd at {addr} cannot observe traffic (observe mode unavailable); \
         build the environment with .observe(false)"
    )]
    ObserveUnavailable {
        /// The rigd's address.
        addr: String,
    },
    /// A traffic check on an environment built with `.observe(false)`: its traffic is not
    /// recorded, so there is nothing to count or wait for.
    #[error(
        "environment {name:?} ({id}) was built with .observe(false), so its traffic is not \
         recorded: remove .observe(false) to check traffic"
    )]
    NotObserving {
        /// The environment name.
        name: String,
        /// Its id.
        id: String,
    },
    /// An environment variable the SDK reads holds a value it cannot use.
    #[error("invalid {name} {value:?}: {reason}")]
    InvalidSetting {
        /// The variable, e.g. `RIG_TTL`.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is unusable.
        reason: String,
    },
    /// A service builder was used in a way its type does not support.
    #[error("service {service:?}: {reason}")]
    InvalidService {
        /// The service.
        service: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Two services set the same environment variable to different values (see
    /// [`Service::env`](crate::Service::env)).
    #[error(
        "services {first:?} and {second:?} set {variable} to different values; .env() on a \
         custom service goes into the environment's host_env, which every service sees: use \
         one value, or pass the setting in the service's config or as an argument (.args)"
    )]
    EnvConflict {
        /// The variable.
        variable: String,
        /// The first service setting it.
        first: String,
        /// The second.
        second: String,
    },
    /// The environment failed while starting; `message` is rigd's failure summary.
    #[error(
        "environment {name:?} ({id}) failed to start:\n{message}{}",
        log_hint(log_file)
    )]
    StartFailed {
        /// The environment name.
        name: String,
        /// Its id.
        id: String,
        /// rigd's summary: the failing services, their last output and a timeline.
        message: String,
        /// The JSONL event log written at teardown, when rigd wrote one.
        log_file: Option<String>,
    },
    /// The environment did not come up within the startup timeout.
    #[error(
        "environment {name:?} ({id}) did not come up within {}{}{}",
        seconds(*after),
        stall.as_deref().map(|s| format!(":\n{s}")).unwrap_or_default(),
        log_hint(log_file)
    )]
    StartupTimeout {
        /// The environment name.
        name: String,
        /// Its id.
        id: String,
        /// The startup timeout.
        after: Duration,
        /// What was not ready: rigd's summary at teardown (each service's phase and its last
        /// failed readiness check), else its last progress-stall report, if any.
        stall: Option<String>,
        /// The JSONL event log written at teardown, when rigd wrote one.
        log_file: Option<String>,
    },
    /// The environment went down while the test was using it (a service crashed, its TTL
    /// expired, somebody ran `rig down`, rigd stopped).
    #[error("environment {name:?} ({id}) is down:\n{message}")]
    EnvironmentDown {
        /// The environment name.
        name: String,
        /// Its id.
        id: String,
        /// rigd's summary of why.
        message: String,
    },
    /// The environment's event stream broke and could not be resumed, so the SDK can no
    /// longer answer callbacks or record traffic.
    #[error("lost the event stream of environment {name:?} ({id}): {reason}")]
    StreamLost {
        /// The environment name.
        name: String,
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
    /// No service of that name.
    #[error(
        "service {service:?} not found in environment {environment:?} (services: {})",
        names(available)
    )]
    UnknownService {
        /// The name asked for.
        service: String,
        /// The environment name.
        environment: String,
        /// The services there are.
        available: Vec<String>,
    },
    /// No ingress of that name.
    #[error(
        "ingress {ingress:?} not found on service {service:?} (ingresses: {})",
        names(available)
    )]
    UnknownIngress {
        /// The service.
        service: String,
        /// The ingress asked for.
        ingress: String,
        /// The ingresses it has.
        available: Vec<String>,
    },
    /// A traffic filter names an ingress, but no target, and no service has that ingress.
    #[error(
        "no service of environment {environment:?} has an ingress {ingress:?} (ingresses: {})",
        names(available)
    )]
    NoSuchIngress {
        /// The ingress asked for.
        ingress: String,
        /// The environment name.
        environment: String,
        /// The ingress names its services have.
        available: Vec<String>,
    },
    /// No egress of that name in a service's wiring.
    #[error("egress {egress:?} not found in the wiring of {service:?} (egresses: {}); declare it with .egress()", names(available))]
    UnknownEgress {
        /// The service.
        service: String,
        /// The egress asked for.
        egress: String,
        /// The egresses it has.
        available: Vec<String>,
    },
    /// `url()` on an ingress that does not speak HTTP.
    #[error("ingress {ingress:?} of {service:?} speaks {protocol}, not HTTP: use endpoint() and connect to host_port")]
    NotHttp {
        /// The service.
        service: String,
        /// The ingress.
        ingress: String,
        /// Its protocol.
        protocol: String,
    },
    /// An endpoint attribute is missing or has the wrong type.
    #[error("attribute {name:?}: {problem}")]
    Attribute {
        /// The attribute name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// [`Wiring::from_env`](crate::Wiring::from_env) found no usable wiring.
    #[error("{reason}")]
    WiringEnv {
        /// What is missing or malformed.
        reason: String,
    },
    /// No matching traffic (request, call, connection) arrived in time.
    #[error(
        "no {filter} within {}; {}{}",
        seconds(*after),
        seen_list(&format!("{kind} seen"), seen),
        probes_left_out(*probes)
    )]
    TrafficTimeout {
        /// The filter, described.
        filter: String,
        /// The kind of traffic, plural: `HTTP requests`, `gRPC calls`, ...
        kind: &'static str,
        /// How long we waited.
        after: Duration,
        /// Every item of that kind seen, one line each.
        seen: Vec<String>,
        /// rigd's readiness probes of that kind, left out of `seen`.
        probes: usize,
    },
    /// The number of matching requests (calls, connections) is not the one expected.
    #[error(
        "expected exactly {expected} {filter}, saw {}{}{}{}{}",
        matched.len(),
        matched_list(matched),
        // After a list, on a line of its own.
        if matched.is_empty() { "; " } else { "\n" },
        seen_list(&format!("all {kind} seen"), seen),
        probes_left_out(*probes)
    )]
    TrafficCount {
        /// The filter, described.
        filter: String,
        /// The kind of traffic, plural: `HTTP requests`, `gRPC calls`, ...
        kind: &'static str,
        /// The count wanted.
        expected: usize,
        /// The matching items, one line each.
        matched: Vec<String>,
        /// Every item of that kind seen, one line each.
        seen: Vec<String>,
        /// rigd's readiness probes of that kind, left out of `seen`.
        probes: usize,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn bullet_list(items: &[String]) -> String {
    items.iter().map(|e| format!("\n  - {e}")).collect()
}

fn names(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn log_hint(log_file: &Option<String>) -> String {
    log_file
        .as_deref()
        .map(|f| format!("\nevent log: {f}"))
        .unwrap_or_default()
}

pub(crate) fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn matched_list(matched: &[String]) -> String {
    if matched.is_empty() {
        String::new()
    } else {
        format!(":{}", indented(matched))
    }
}

fn seen_list(title: &str, seen: &[String]) -> String {
    if seen.is_empty() {
        format!("{title}: none")
    } else {
        format!("{title} ({}):{}", seen.len(), indented(seen))
    }
}

/// A last line saying how many readiness probes a list leaves out: a service that calls a
/// dependency on every request also does so for rigd's probes, which explains a count.
fn probes_left_out(probes: usize) -> String {
    match probes {
        0 => String::new(),
        1 => "\n(and 1 readiness probe of rigd, left out: .include_probes() lists it)".into(),
        n => {
            format!("\n(and {n} readiness probes of rigd, left out: .include_probes() lists them)")
        }
    }
}

fn indented(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n  {l}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_mismatch_lists_matches_and_everything_seen() {
        let err = Error::TrafficCount {
            filter: "requests to api".into(),
            kind: "HTTP requests",
            expected: 2,
            matched: vec!["~test → api  GET /a  200".into()],
            seen: vec![
                "~test → api  GET /a  200".into(),
                "~test → web  GET /  200".into(),
            ],
            probes: 0,
        };
        assert_eq!(
            format!("{err:?}"),
            "expected exactly 2 requests to api, saw 1:\n  ~test → api  GET /a  200\n\
             all HTTP requests seen (2):\n  ~test → api  GET /a  200\n  ~test → web  GET /  200"
        );
        let none = Error::TrafficTimeout {
            filter: "requests to api".into(),
            kind: "HTTP requests",
            after: Duration::from_millis(1500),
            seen: vec![],
            probes: 0,
        };
        assert_eq!(
            none.to_string(),
            "no requests to api within 1.5s; HTTP requests seen: none"
        );
        let probed = Error::TrafficTimeout {
            filter: "requests to api".into(),
            kind: "HTTP requests",
            after: Duration::from_millis(1500),
            seen: vec![],
            probes: 2,
        };
        assert_eq!(
            probed.to_string(),
            "no requests to api within 1.5s; HTTP requests seen: none\n\
             (and 2 readiness probes of rigd, left out: .include_probes() lists them)"
        );
    }

    #[test]
    fn validation_errors_are_one_per_line() {
        let err = Error::Validation {
            name: "orders".into(),
            errors: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            err.to_string(),
            "rigd rejected environment \"orders\":\n  - a\n  - b"
        );
    }

    #[test]
    fn errors_are_send_sync_and_box() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        let boxed: BoxError = Error::NoRuntime.into();
        assert!(boxed.to_string().contains("#[tokio::test]"));
    }
}
