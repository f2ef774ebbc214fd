//! Which probe checks an ingress.

use std::fmt;

use rig_types::{Protocol, ReadySpec};

/// Every `ready.type` a spec may give: upstream's `tcp`, `http` and `grpc`, and rig-rs's
/// `postgres`, `redis` and `kafka`. Validation refuses any other value.
pub const READY_TYPES: &[&str] = &["tcp", "http", "grpc", "postgres", "redis", "kafka"];

/// The kind of readiness probe run against an ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP connect with a 200 ms timeout.
    Tcp,
    /// A TCP connect that must then stay open for 100 ms: for ports a publisher such as
    /// `docker-proxy` holds, which accepts before the service listens (see
    /// [`ServiceType::published_by_proxy`](crate::services::ServiceType::published_by_proxy)).
    TcpHeld,
    /// An HTTP/1.1 `GET` of `path` (always starting with `/`); any status below 500 is ready.
    Http {
        /// The request path, with any query string.
        path: String,
    },
    /// A plaintext gRPC `grpc.health.v1.Health/Check` for the whole server (empty service
    /// name).
    Grpc,
    /// A PostgreSQL startup handshake (as role `postgres` to database `postgres`): ready once
    /// the server accepts connections, that is, answers anything but "starting up", "shutting
    /// down" or "too many connections" (the rule of `pg_isready`).
    Postgres,
    /// A Redis `PING`: ready on `+PONG` (or an authentication error: the server is up).
    Redis,
    /// A Kafka `ApiVersions` request: ready once the broker answers it without an error code.
    Kafka,
}

impl ProbeKind {
    /// Chooses the probe for an ingress (upstream rule): `ready.type` when set (one of
    /// [`READY_TYPES`]; upstream reads any other value as TCP, and so does this, but
    /// validation refuses such a spec), otherwise the ingress protocol (`http` → HTTP, `grpc`
    /// → gRPC, `tcp`, `kafka` and unknown protocols → TCP).
    ///
    /// The HTTP path is `ready.path`, defaulting to `/`; a path without a leading `/` gets one,
    /// so `health` probes `/health` rather than producing an invalid URL on every attempt.
    pub fn for_ingress(protocol: &Protocol, ready: Option<&ReadySpec>) -> ProbeKind {
        let probe_type = ready.map_or("", |r| r.probe_type.as_str());
        let name = if probe_type.is_empty() {
            protocol.as_str()
        } else {
            probe_type
        };
        match name {
            "http" => ProbeKind::Http {
                path: normalise_path(ready.map_or("", |r| r.path.as_str())),
            },
            "grpc" => ProbeKind::Grpc,
            "postgres" => ProbeKind::Postgres,
            "redis" => ProbeKind::Redis,
            // Only when asked for: upstream probes `kafka` ingresses with a TCP connect.
            "kafka" if !probe_type.is_empty() => ProbeKind::Kafka,
            _ => ProbeKind::Tcp,
        }
    }

    /// The probe's name: `tcp`, `http`, `grpc`, `postgres`, `redis` or `kafka`.
    pub fn name(&self) -> &'static str {
        match self {
            ProbeKind::Tcp | ProbeKind::TcpHeld => "tcp",
            ProbeKind::Http { .. } => "http",
            ProbeKind::Grpc => "grpc",
            ProbeKind::Postgres => "postgres",
            ProbeKind::Redis => "redis",
            ProbeKind::Kafka => "kafka",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeKind::Http { path } => write!(f, "http {path}"),
            other => f.write_str(other.name()),
        }
    }
}

fn normalise_path(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(probe_type: &str, path: &str) -> ReadySpec {
        ReadySpec {
            probe_type: probe_type.into(),
            path: path.into(),
            ..ReadySpec::default()
        }
    }

    fn http(path: &str) -> ProbeKind {
        ProbeKind::Http { path: path.into() }
    }

    /// Upstream `TestForEndpoint_InfersFromProtocol`.
    #[test]
    fn infers_from_protocol() {
        let table = [
            (Protocol::Tcp, ProbeKind::Tcp),
            (Protocol::Http, http("/")),
            (Protocol::Grpc, ProbeKind::Grpc),
            (Protocol::Kafka, ProbeKind::Tcp),
            (Protocol::Unknown("websocket".into()), ProbeKind::Tcp),
            (Protocol::Unknown(String::new()), ProbeKind::Tcp),
        ];
        for (protocol, want) in table {
            assert_eq!(ProbeKind::for_ingress(&protocol, None), want, "{protocol}");
            // A ready spec without a type still follows the protocol.
            let spec = ReadySpec::default();
            assert_eq!(
                ProbeKind::for_ingress(&protocol, Some(&spec)),
                want,
                "{protocol}"
            );
        }
    }

    /// Upstream `TestForEndpoint_ReadySpecOverride` and the rest of the override table.
    #[test]
    fn ready_type_overrides_protocol() {
        let table = [
            (Protocol::Http, "tcp", ProbeKind::Tcp),
            (Protocol::Tcp, "http", http("/")),
            (Protocol::Kafka, "grpc", ProbeKind::Grpc),
            (Protocol::Grpc, "http", http("/")),
            (Protocol::Http, "websocket", ProbeKind::Tcp),
            (Protocol::Grpc, "HTTP", ProbeKind::Tcp),
            (Protocol::Tcp, "postgres", ProbeKind::Postgres),
            (Protocol::Tcp, "redis", ProbeKind::Redis),
            (Protocol::Kafka, "kafka", ProbeKind::Kafka),
            (Protocol::Tcp, "kafka", ProbeKind::Kafka),
        ];
        for (protocol, probe_type, want) in table {
            let spec = ready(probe_type, "");
            assert_eq!(
                ProbeKind::for_ingress(&protocol, Some(&spec)),
                want,
                "{protocol} with ready.type {probe_type}"
            );
        }
    }

    #[test]
    fn http_path_comes_from_ready_spec() {
        let spec = ready("", "/healthz?full=1");
        assert_eq!(
            ProbeKind::for_ingress(&Protocol::Http, Some(&spec)),
            http("/healthz?full=1")
        );
        let spec = ready("http", "health");
        assert_eq!(
            ProbeKind::for_ingress(&Protocol::Tcp, Some(&spec)),
            http("/health")
        );
    }

    #[test]
    fn names() {
        assert_eq!(ProbeKind::Tcp.to_string(), "tcp");
        assert_eq!(ProbeKind::Grpc.name(), "grpc");
        assert_eq!(http("/h").to_string(), "http /h");
    }
}
