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
