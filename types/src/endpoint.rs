//! Endpoints: where a service's ingress can be reached, with its protocol and attributes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Attributes attached to an endpoint (`PGHOST`, `REDIS_URL`, ...). Values are arbitrary JSON;
/// strings may hold `${HOST}`, `${PORT}` and `${HOSTPORT}` templates until resolved.
pub type Attributes = BTreeMap<String, serde_json::Value>;

/// The wire protocol of an ingress.
///
/// Decoding never fails: a string that is not one of the four known protocols is kept as
/// [`Protocol::Unknown`] so validation can report it with the user's spelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Raw TCP.
    Tcp,
    /// HTTP/1.1 or HTTP/2 (h2c).
    Http,
    /// gRPC over HTTP/2.
    Grpc,
    /// The Kafka wire protocol.
    Kafka,
    /// Any other string, including the empty string. Invalid in a spec.
    Unknown(String),
}

impl Protocol {
    /// The four protocols a spec may name, in upstream's order.
    pub const ALL: [Protocol; 4] = [
        Protocol::Tcp,
        Protocol::Http,
        Protocol::Grpc,
        Protocol::Kafka,
    ];

    /// Parses a protocol name; unknown names become [`Protocol::Unknown`].
    pub fn from_name(name: &str) -> Protocol {
        match name {
            "tcp" => Protocol::Tcp,
            "http" => Protocol::Http,
            "grpc" => Protocol::Grpc,
            "kafka" => Protocol::Kafka,
            other => Protocol::Unknown(other.to_string()),
        }
    }

    /// The wire name (`"tcp"`, `"http"`, ...), or the unknown string as given.
    pub fn as_str(&self) -> &str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Kafka => "kafka",
            Protocol::Unknown(s) => s,
        }
    }

    /// True for the four protocols rigd supports.
    pub fn is_valid(&self) -> bool {
        !matches!(self, Protocol::Unknown(_))
    }
}

/// The empty (invalid) protocol, like Go's zero value: a spec that leaves `protocol` out is
/// reported by validation rather than silently treated as TCP.
impl Default for Protocol {
    fn default() -> Protocol {
        Protocol::Unknown(String::new())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Protocol::from_name(&s))
    }
}

/// A network address with its protocol and attributes (upstream `spec.Endpoint`).
///
/// Inside rigd, attributes may still hold templates; at output boundaries (environment
/// variables, `RIG_WIRING`, callbacks, `environment.up`, GET) they are resolved and the value
/// is a [`ResolvedEndpoint`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `host:port`.
    #[serde(default)]
    pub hostport: String,
    /// The ingress protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Static attributes; omitted from JSON when absent or empty.
    #[serde(default, skip_serializing_if = "attributes_empty")]
    pub attributes: Option<Attributes>,
}

/// An [`Endpoint`] whose attribute templates have been expanded. Same JSON shape.
pub type ResolvedEndpoint = Endpoint;

fn attributes_empty(a: &Option<Attributes>) -> bool {
    a.as_ref().is_none_or(|m| m.is_empty())
}

impl Endpoint {
    /// An endpoint without attributes.
    pub fn new(hostport: impl Into<String>, protocol: Protocol) -> Endpoint {
        Endpoint {
            hostport: hostport.into(),
            protocol,
            attributes: None,
        }
    }

    /// The host part of `hostport` (brackets stripped from IPv6), or `""` when it has no port.
    pub fn host(&self) -> &str {
        split_host_port(&self.hostport).map_or("", |(h, _)| h)
    }

    /// The port part of `hostport` as a string, or `""` when it has none.
    pub fn port_str(&self) -> &str {
        split_host_port(&self.hostport).map_or("", |(_, p)| p)
    }

    /// The port as a number, or `None` when `hostport` has no valid port.
    pub fn port(&self) -> Option<u16> {
        self.port_str().parse().ok()
    }
}

/// Splits `host:port` like Go's `net.SplitHostPort`: the port follows the last colon, and an
/// IPv6 host must be bracketed (`[::1]:80`). Returns `None` for a missing port or a bare IPv6.
pub fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = rest[end + 1..].strip_prefix(':')?;
        return (!port.contains(':')).then_some((host, port));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn protocol_names_round_trip_and_unknown_is_kept() {
        for p in Protocol::ALL {
            assert!(p.is_valid());
            assert_eq!(Protocol::from_name(p.as_str()), p);
        }
        for bad in ["websocket", "", "HTTP"] {
            let p = Protocol::from_name(bad);
            assert!(!p.is_valid());
            assert_eq!(p.as_str(), bad);
        }
        let p: Protocol = serde_json::from_value(json!("websocket")).unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap(), json!("websocket"));
    }

    #[test]
    fn a_missing_protocol_is_invalid_not_tcp() {
        assert!(!Protocol::default().is_valid());
        assert_eq!(Protocol::default().as_str(), "");
    }

    #[test]
    fn endpoint_round_trip_with_attributes() {
        let mut attrs = Attributes::new();
        attrs.insert("PGHOST".into(), json!("${HOST}"));
        attrs.insert("PGPORT".into(), json!(5432));
        let ep = Endpoint {
            hostport: "127.0.0.1:5432".into(),
            protocol: Protocol::Tcp,
            attributes: Some(attrs),
        };
        let text = serde_json::to_string(&ep).unwrap();
        assert_eq!(
            text,
            r#"{"hostport":"127.0.0.1:5432","protocol":"tcp","attributes":{"PGHOST":"${HOST}","PGPORT":5432}}"#
        );
        let back: Endpoint = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ep);
    }

    #[test]
    fn endpoint_omits_empty_attributes() {
        let mut ep = Endpoint::new("127.0.0.1:80", Protocol::Http);
        assert_eq!(
            serde_json::to_string(&ep).unwrap(),
            r#"{"hostport":"127.0.0.1:80","protocol":"http"}"#
        );
        ep.attributes = Some(Attributes::new());
        assert!(!serde_json::to_string(&ep).unwrap().contains("attributes"));
    }

    #[test]
    fn host_and_port_split_like_go() {
        let ep = Endpoint::new("127.0.0.1:5432", Protocol::Tcp);
        assert_eq!(
            (ep.host(), ep.port_str(), ep.port()),
            ("127.0.0.1", "5432", Some(5432))
        );
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
        assert_eq!(
            split_host_port("localhost:http"),
            Some(("localhost", "http"))
        );
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(Endpoint::new("nohost", Protocol::Tcp).host(), "");
    }
}
