//! The `kafka` init hook `schema`: creates topics and registers a schema.
//!
//! Config: `{"topics": ["orders", {"name": "payments", "partitions": 3,
//! "replication_factor": 1}], "subject": "...", "schema_type": "AVRO", "schema": "..."}`.
//! - `topics` are created with the Kafka `CreateTopics` API on the broker (a rig-rs addition:
//!   brokers such as tansu create no topic on first use); existing topics are left alone.
//! - `subject` and `schema` are registered as upstream: `POST
//!   http://<schema-registry>/subjects/<subject>/versions` with `{"schemaType": ...,
//!   "schema": ...}`; a non-2xx answer fails the hook with
//!   `kafka init: POST <url>: <code>: <body>`.
//!
//! At least one of the two is needed.

use bytes::Bytes;
use http::Method;
use serde::Deserialize;

use super::{kafka_ingress, SCHEMA_REGISTRY};
use crate::services::{HookContext, ServiceError};
use crate::wire::kafka::{self, Patience, TopicSpec};

/// The hook's config.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchemaHook {
    /// Topics to create.
    #[serde(default)]
    pub topics: Vec<Topic>,
    /// The schema registry subject.
    #[serde(default)]
    pub subject: String,
    /// `AVRO`, `PROTOBUF` or `JSON`.
    #[serde(default)]
    pub schema_type: String,
    /// The schema text.
    #[serde(default)]
    pub schema: String,
}

/// A topic to create: its name, or its name with settings. Decoded by hand rather than as an
/// untagged enum, so a misspelt or unsupported setting (`"partition"`, `"configs"`) is an
/// error that names it instead of being ignored, and a wrong type says what was expected.
#[derive(Debug, PartialEq)]
pub enum Topic {
    /// A topic with one partition and replication factor 1.
    Name(String),
    /// A topic with settings.
    Detailed {
        /// The name.
        name: String,
        /// The partition count (default 1).
        partitions: i32,
        /// The replication factor (default 1).
        replication_factor: i16,
    },
}

/// The settings form of a [`Topic`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicSettings {
    name: String,
    #[serde(default = "one")]
    partitions: i32,
    #[serde(default = "one_i16")]
    replication_factor: i16,
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Topic, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Topic;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a topic name, or {\"name\": ..., \"partitions\": N, \
                     \"replication_factor\": N}",
                )
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Topic, E> {
                Ok(Topic::Name(name.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Topic, A::Error> {
                let settings =
                    TopicSettings::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Topic::Detailed {
                    name: settings.name,
                    partitions: settings.partitions,
                    replication_factor: settings.replication_factor,
                })
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

fn one() -> i32 {
    1
}

fn one_i16() -> i16 {
    1
}

impl Topic {
    fn spec(&self) -> TopicSpec {
        match self {
            Topic::Name(name) => TopicSpec {
                name: name.clone(),
                partitions: 1,
                replication_factor: 1,
            },
            Topic::Detailed {
                name,
                partitions,
                replication_factor,
            } => TopicSpec {
                name: name.clone(),
                partitions: *partitions,
                replication_factor: *replication_factor,
            },
        }
    }
}

impl SchemaHook {
    /// Reads and checks a hook's config.
    pub fn parse(config: Option<&serde_json::Value>) -> Result<SchemaHook, ServiceError> {
        let hook: SchemaHook = crate::services::config::decode(
            config,
            "schema hook config",
            r#"{"topics": ["name", {"name": ..., "partitions": N}], "subject": ..., "schema_type": ..., "schema": ...}"#,
        )
        .map_err(|e| ServiceError::new(format!("kafka init: {e}")))?;
        if hook.topics.is_empty() && hook.subject.is_empty() {
            return Err(ServiceError::new(
                "kafka init: the schema hook needs \"topics\" (topics to create) or \
                 \"subject\" and \"schema\" (a schema to register)",
            ));
        }
        if let Some(bad) = hook
            .topics
            .iter()
            .map(Topic::spec)
            .find(|t| t.name.is_empty() || t.partitions < 1 || t.replication_factor < 1)
        {
            return Err(ServiceError::new(format!(
                "kafka init: topic {:?}: needs a name, partitions ≥ 1 and replication_factor ≥ 1",
                bad.name
            )));
        }
        Ok(hook)
    }
}

/// Runs the hook.
pub async fn run(ctx: HookContext) -> Result<(), ServiceError> {
    let hook = SchemaHook::parse(ctx.hook.config.as_ref())?;
    if !hook.topics.is_empty() {
        let name = kafka_ingress(&ctx.service.spec);
        let broker = ctx
            .ingresses
            .get(name)
            .map(|ep| ep.hostport.clone())
            .ok_or_else(|| ServiceError::new(format!("kafka init: no ingress {name:?}")))?;
        let topics: Vec<TopicSpec> = hook.topics.iter().map(Topic::spec).collect();
        kafka::create_topics(&broker, &topics, Patience::DEFAULT)
            .await
            .map_err(|e| {
                ServiceError::new(format!("kafka init: create topics on {broker}: {e}"))
            })?;
    }
    if !hook.subject.is_empty() {
        register(&ctx, &hook).await?;
    }
    Ok(())
}

async fn register(ctx: &HookContext, hook: &SchemaHook) -> Result<(), ServiceError> {
    let registry = ctx
        .ingresses
        .get(SCHEMA_REGISTRY)
        .ok_or_else(|| ServiceError::new("kafka init: no schema-registry ingress found"))?;
    let path = format!("/subjects/{}/versions", hook.subject);
    let body = serde_json::json!({"schemaType": hook.schema_type, "schema": hook.schema});
    let url = format!("http://{}{path}", registry.hostport);
    let response = crate::wire::http::send(
        &registry.hostport,
        Method::POST,
        &path,
        &[("content-type", "application/vnd.schemaregistry.v1+json")],
        Bytes::from(body.to_string()),
    )
    .await
    .map_err(|e| ServiceError::new(format!("kafka init: {e}")))?;
    if response.ok() {
        Ok(())
    } else {
        Err(ServiceError::new(format!(
            "kafka init: POST {url}: {}: {}",
            response.status, response.body
        )))
    }
}
