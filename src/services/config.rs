//! Decoding the `config` of a service or hook, with errors that show the shape the spec
//! expects rather than the Rust type it is read into.

use serde::de::DeserializeOwned;

use super::ServiceError;

/// Decodes `config` as `T`; absent or `null` gives `T::default()`.
///
/// `what` names the config in errors (`"process config"`, `"postgres sql hook config"`) and
/// `shape` is an example of what it should look like (`{"command": "<program>"}`):
/// `invalid process config: expected an object like {"command": "<program>"}, got a string`.
pub(crate) fn decode<T: DeserializeOwned + Default>(
    config: Option<&serde_json::Value>,
    what: &str,
    shape: &str,
) -> Result<T, ServiceError> {
    let Some(value) = config.filter(|v| !v.is_null()) else {
        return Ok(T::default());
    };
    if !value.is_object() {
        return Err(ServiceError::new(format!(
            "invalid {what}: expected an object like {shape}, got {}",
            json_kind(value)
        )));
    }
    T::deserialize(value).map_err(|e| {
        ServiceError::new(format!(
            "invalid {what}: {} (expected an object like {shape})",
            without_type_names(&e.to_string())
        ))
    })
}

/// The field names of the struct `T` deserializes as (what its `Deserialize` passes to
/// `deserialize_struct`), for telling the keys a config takes from misspelt ones.
pub(crate) fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    /// A deserializer that only notes the fields it is asked for, then gives up.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields noted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// The keys the `config` of a service of type `type_name` takes; `None` for types whose
/// config is not checked (`custom`, `test`, `proxy`, unknown types).
pub(crate) fn config_fields(type_name: &str) -> Option<&'static [&'static str]> {
    Some(match type_name {
        "process" => super::process::config_fields(),
        "container" => struct_fields::<super::container::ContainerConfig>(),
        "cargo" => super::builds::cargo_fields(),
        "go" => super::builds::go_fields(),
        "client" => super::client::config_fields(),
        "kafka" => super::kafka::config_fields(),
        "temporal" => &["backend", "image", "version"],
        "postgres" | "redis" | "s3" | "sqs" => &["backend", "image"],
        _ => return None,
    })
}

/// Warnings for the keys in the services' `config` that their type does not take (rigd
/// ignores them): `unknown field services.db.config.version is ignored: is it misspelt? (a
/// postgres config takes backend, image)`, in service order.
pub fn config_warnings(env: &rig_types::Environment) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, service) in &env.services {
        let (Some(fields), Some(serde_json::Value::Object(config))) = (
            config_fields(&service.service_type),
            service.config.as_ref(),
        ) else {
            continue;
        };
        for key in config.keys().filter(|k| !fields.contains(&k.as_str())) {
            warnings.push(format!(
                "{} (a {} config takes {})",
                crate::spec::unknown_field_warning(&format!("services.{name}.config.{key}")),
                service.service_type,
                fields.join(", ")
            ));
        }
    }
    warnings
}

/// What kind of JSON value `value` is, with its article.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// serde's message with the Rust names of nested types (`expected struct TopicSpec`) put as
/// the JSON they stand for.
fn without_type_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("expected struct ") {
        out.push_str(&rest[..at]);
        out.push_str("expected an object");
        let after = &rest[at + "expected struct ".len()..];
        let name_len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[test]
    fn every_checked_type_names_the_keys_its_config_takes() {
        for name in [
            "process",
            "container",
            "cargo",
            "go",
            "client",
            "kafka",
            "postgres",
        ] {
            let fields = config_fields(name).unwrap();
            assert!(!fields.is_empty(), "{name}");
        }
        assert_eq!(config_fields("process").unwrap(), ["command", "dir", "env"]);
        assert_eq!(config_fields("container").unwrap(), ["image", "cmd", "env"]);
        assert_eq!(config_fields("custom"), None);
    }

    #[test]
    fn config_keys_a_type_does_not_take_are_warned_about() {
        let env: rig_types::Environment = serde_json::from_value(json!({
            "name": "e",
            "services": {
                "db": {"type": "postgres", "config": {"backend": "native", "version": "16"}},
                "cache": {"type": "redis", "config": {"backend": "native"}},
                "own": {"type": "custom", "config": {"anything": 1}},
                "odd": {"type": "process", "config": "not an object"},
            }
        }))
        .unwrap();
        assert_eq!(
            config_warnings(&env),
            [
                "unknown field services.db.config.version is ignored: is it misspelt? \
              (a postgres config takes backend, image)"
            ]
        );
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        #[serde(default)]
        command: String,
        #[serde(default)]
        #[allow(dead_code)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Default, Deserialize)]
    struct Inner {
        #[allow(dead_code)]
        n: u32,
    }

    fn error(config: serde_json::Value) -> String {
        decode::<Example>(
            Some(&config),
            "example config",
            r#"{"command": "<program>"}"#,
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn absent_or_null_is_the_default() {
        let absent: Example = decode(None, "example config", "{}").unwrap();
        assert_eq!(absent.command, "");
        let null: Example = decode(Some(&json!(null)), "example config", "{}").unwrap();
        assert_eq!(null.command, "");
        let given: Example =
            decode(Some(&json!({"command": "sh"})), "example config", "{}").unwrap();
        assert_eq!(given.command, "sh");
    }

    #[test]
    fn errors_show_the_shape_and_no_rust_type_names() {
        assert_eq!(
            error(json!("sh")),
            r#"invalid example config: expected an object like {"command": "<program>"}, got a string"#
        );
        assert_eq!(
            error(json!(["sh"])),
            r#"invalid example config: expected an object like {"command": "<program>"}, got an array"#
        );
        assert_eq!(
            error(json!({"command": 3})),
            r#"invalid example config: invalid type: integer `3`, expected a string (expected an object like {"command": "<program>"})"#
        );
        assert_eq!(
            error(json!({"inner": "x"})),
            r#"invalid example config: invalid type: string "x", expected an object (expected an object like {"command": "<program>"})"#
        );
        assert!(
            error(json!({"comand": "sh"})).starts_with(
                "invalid example config: unknown field `comand`, expected `command` or `inner`"
            ),
            "{}",
            error(json!({"comand": "sh"}))
        );
    }
}
