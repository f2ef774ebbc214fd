//! [`Endpoint`]: where a service's ingress can be reached, with typed access to its
//! attributes.

use std::collections::BTreeMap;
use std::fmt;

use rig_types::endpoint::split_host_port;
use rig_types::Protocol;
use serde_json::Value;

use crate::error::{Error, Result};

/// Well-known attribute names published by rigd's built-in service types.
pub mod attrs {
    /// PostgreSQL host (`postgres`).
    pub const PGHOST: &str = "PGHOST";
    /// PostgreSQL port.
    pub const PGPORT: &str = "PGPORT";
    /// PostgreSQL user.
    pub const PGUSER: &str = "PGUSER";
    /// PostgreSQL password.
    pub const PGPASSWORD: &str = "PGPASSWORD";
    /// PostgreSQL database (one per environment).
    pub const PGDATABASE: &str = "PGDATABASE";
    /// Redis URL with the environment's database number (`redis`).
    pub const REDIS_URL: &str = "REDIS_URL";
    /// Temporal frontend address (`temporal`).
    pub const TEMPORAL_ADDRESS: &str = "TEMPORAL_ADDRESS";
    /// Temporal namespace (one per environment).
    pub const TEMPORAL_NAMESPACE: &str = "TEMPORAL_NAMESPACE";
    /// S3 endpoint URL (`s3`).
    pub const S3_ENDPOINT: &str = "S3_ENDPOINT";
    /// S3 bucket (one per environment).
    pub const S3_BUCKET: &str = "S3_BUCKET";
    /// SQS endpoint URL (`sqs`).
    pub const SQS_ENDPOINT: &str = "SQS_ENDPOINT";
    /// SQS queue URL (one per environment).
    pub const SQS_QUEUE_URL: &str = "SQS_QUEUE_URL";
    /// AWS access key id (`s3`, `sqs`).
    pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    /// AWS secret access key (`s3`, `sqs`).
    pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
}

/// An address to connect to: a service's ingress (from [`Environment`](crate::Environment))
/// or an ingress or egress in a [`Wiring`](crate::Wiring).
///
/// In observe mode the endpoints a test gets are rigd's proxies in front of the services, so
/// the test's own requests are recorded as traffic from `~test`.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// `host:port`.
    pub host_port: String,
    /// The protocol the ingress speaks.
    pub protocol: Protocol,
    /// Attributes published with the endpoint (`PGUSER`, `REDIS_URL`, ...), templates
    /// already resolved.
    pub attributes: BTreeMap<String, Value>,
}

impl Endpoint {
    /// The host part of [`host_port`](Endpoint::host_port) (brackets removed from IPv6), or
    /// `""` when it has no port.
    pub fn host(&self) -> &str {
        split_host_port(&self.host_port).map_or("", |(h, _)| h)
    }

    /// The port, or `None` when `host_port` has no valid port.
    pub fn port(&self) -> Option<u16> {
        split_host_port(&self.host_port).and_then(|(_, p)| p.parse().ok())
    }

    /// `http://host:port`, the base URL of an HTTP ingress (whatever its protocol; see
    /// [`Environment::url`](crate::Environment::url) for the checked version).
    pub fn url(&self) -> String {
        format!("http://{}", self.host_port)
    }

    /// An attribute's raw JSON value.
    pub fn attr_value(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }

    /// An attribute converted to `T`. JSON scalars convert sensibly: the number `5432` and
    /// the string `"5432"` both give a `u16`; anything reads as a `String` (numbers and
    /// booleans in their JSON form).
    ///
    /// ```
    /// # let ep = rig::Endpoint { host_port: "127.0.0.1:5432".into(), protocol: rig::Protocol::Tcp,
    /// #     attributes: [("PGPORT".to_string(), serde_json::json!(5432))].into() };
    /// let port: u16 = ep.attr(rig::attrs::PGPORT)?;
    /// let text: String = ep.attr(rig::attrs::PGPORT)?;
    /// assert_eq!((port, text.as_str()), (5432, "5432"));
    /// # Ok::<(), rig::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Attribute`] when the attribute is missing or cannot be converted.
    pub fn attr<T: FromAttribute>(&self, name: &str) -> Result<T> {
        let value = self.attributes.get(name).ok_or_else(|| Error::Attribute {
            name: name.to_string(),
            problem: format!(
                "not published on {} (attributes: {})",
                self.host_port,
                if self.attributes.is_empty() {
                    "none".to_string()
                } else {
                    self.attributes
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        })?;
        T::from_attribute(value).ok_or_else(|| Error::Attribute {
            name: name.to_string(),
            problem: format!("value {value} is not {}", T::EXPECTED),
        })
    }

    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable` from the `PG*`
    /// attributes a `postgres` service publishes (missing parts are left empty).
    pub fn postgres_dsn(&self) -> String {
        let get = |name| self.attr::<String>(name).unwrap_or_default();
        format!(
            "postgres://{}:{}@{}:{}/{}?sslmode=disable",
            get(attrs::PGUSER),
            get(attrs::PGPASSWORD),
            get(attrs::PGHOST),
            get(attrs::PGPORT),
            get(attrs::PGDATABASE)
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.host_port, self.protocol)
    }
}

impl From<rig_types::Endpoint> for Endpoint {
    fn from(ep: rig_types::Endpoint) -> Endpoint {
        Endpoint {
            host_port: ep.hostport,
            protocol: ep.protocol,
            attributes: ep.attributes.unwrap_or_default(),
        }
    }
}

/// A type an endpoint attribute converts to (see [`Endpoint::attr`]).
pub trait FromAttribute: Sized {
    /// What the type expects, for error messages (`"an integer from 0 to 65535"`).
    const EXPECTED: &'static str;

    /// Converts the JSON value, or `None` when it does not fit.
    fn from_attribute(value: &Value) -> Option<Self>;
}

impl FromAttribute for String {
    const EXPECTED: &'static str = "a string";

    fn from_attribute(value: &Value) -> Option<String> {
        Some(match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

impl FromAttribute for bool {
    const EXPECTED: &'static str = "a boolean";

    fn from_attribute(value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl FromAttribute for f64 {
    const EXPECTED: &'static str = "a number";

    fn from_attribute(value: &Value) -> Option<f64> {
        match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

macro_rules! integer_attribute {
    ($($t:ty),*) => {$(
        impl FromAttribute for $t {
            const EXPECTED: &'static str =
                concat!("an integer that fits ", stringify!($t));

            fn from_attribute(value: &Value) -> Option<$t> {
                match value {
                    Value::Number(n) => {
                        if let Some(i) = n.as_i64() {
                            <$t>::try_from(i).ok()
                        } else if let Some(u) = n.as_u64() {
                            <$t>::try_from(u).ok()
                        } else {
                            // 5432.0: a whole float (Go clients write numbers as float64).
                            let f = n.as_f64()?;
                            (f.fract() == 0.0 && f.abs() < 9.0e15)
                                .then(|| <$t>::try_from(f as i64).ok())
                                .flatten()
                        }
                    }
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }
            }
        }
    )*};
}

integer_attribute!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ep(attrs: Value) -> Endpoint {
        Endpoint {
            host_port: "127.0.0.1:5432".into(),
            protocol: Protocol::Tcp,
            attributes: serde_json::from_value(attrs).unwrap(),
        }
    }

    #[test]
    fn host_port_and_url() {
        let e = ep(json!({}));
        assert_eq!((e.host(), e.port()), ("127.0.0.1", Some(5432)));
        assert_eq!(e.url(), "http://127.0.0.1:5432");
        let v6 = Endpoint {
            host_port: "[::1]:80".into(),
            ..e
        };
        assert_eq!((v6.host(), v6.port()), ("::1", Some(80)));
    }

    #[test]
    fn scalars_convert_sensibly() {
        let e = ep(
            json!({"N": 5432, "S": "5432", "F": 5432.0, "B": true, "BS": "false", "BIG": 70000}),
        );
        assert_eq!(e.attr::<u16>("N").unwrap(), 5432);
        assert_eq!(e.attr::<u16>("S").unwrap(), 5432);
        assert_eq!(e.attr::<u16>("F").unwrap(), 5432);
        assert_eq!(e.attr::<String>("N").unwrap(), "5432");
        assert_eq!(e.attr::<String>("S").unwrap(), "5432");
        assert!(e.attr::<bool>("B").unwrap());
        assert!(!e.attr::<bool>("BS").unwrap());
        assert_eq!(e.attr::<f64>("S").unwrap(), 5432.0);
        let err = e.attr::<u16>("BIG").unwrap_err().to_string();
        assert_eq!(
            err,
            "attribute \"BIG\": value 70000 is not an integer that fits u16"
        );
    }

    #[test]
    fn a_missing_attribute_lists_what_there_is() {
        let e = ep(json!({"PGUSER": "postgres"}));
        assert_eq!(
            e.attr::<String>("PGHOST").unwrap_err().to_string(),
            "attribute \"PGHOST\": not published on 127.0.0.1:5432 (attributes: PGUSER)"
        );
    }

    #[test]
    fn postgres_dsn_from_attributes() {
        let e = ep(
            json!({"PGHOST": "127.0.0.1", "PGPORT": 5432, "PGUSER": "postgres",
                          "PGPASSWORD": "postgres", "PGDATABASE": "rig_1"}),
        );
        assert_eq!(
            e.postgres_dsn(),
            "postgres://postgres:postgres@127.0.0.1:5432/rig_1?sslmode=disable"
        );
        assert_eq!(
            ep(json!({})).postgres_dsn(),
            "postgres://:@:/?sslmode=disable"
        );
    }

    #[test]
    fn from_wire_endpoint() {
        let wire: rig_types::Endpoint =
            serde_json::from_value(json!({"hostport": "h:1", "protocol": "http"})).unwrap();
        let e = Endpoint::from(wire);
        assert_eq!(e.host_port, "h:1");
        assert_eq!(e.protocol, Protocol::Http);
        assert!(e.attributes.is_empty());
    }
}
