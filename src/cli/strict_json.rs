//! JSON parsing that rejects duplicate object keys.
//!
//! `serde_json::Value` keeps the last of two equal keys, silently. A spec with two `"api"`
//! services is a mistake rigd reports (`duplicate services key`), but only if it sees the
//! original text; the CLI re-serialises the spec after filling in defaults, so it must catch
//! duplicates itself, anywhere in the document, with their location.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `text` as one JSON value, rejecting duplicate keys in any object. The error names
/// the duplicate, the object's path (`services.api.ingresses`) and the line and column.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed {
        path: String::new(),
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

struct ValueSeed {
    path: String,
}

impl ValueSeed {
    fn child(&self, segment: &str) -> ValueSeed {
        let path = if self.path.is_empty() {
            segment.to_string()
        } else if segment.starts_with('[') {
            format!("{}{segment}", self.path)
        } else {
            format!("{}.{segment}", self.path)
        };
        ValueSeed { path }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child(&format!("[{}]", out.len())))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let place = if self.path.is_empty() {
                    "the top-level object".to_string()
                } else {
                    self.path.clone()
                };
                return Err(de::Error::custom(format!(
                    "duplicate key {key:?} in {place}"
                )));
            }
            let value = map.next_value_seed(self.child(&key))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_like_serde_json_and_keeps_key_order() {
        let text = r#"{"name":"x","services":{"b":{"args":["1",2,3.5,null,true]},"a":{}},"n":-7}"#;
        let v = parse(text).unwrap();
        assert_eq!(v, serde_json::from_str::<Value>(text).unwrap());
        let keys: Vec<&String> = v["services"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "a"]);
    }

    #[test]
    fn duplicate_keys_are_reported_with_path_and_position() {
        let err = parse("{\"services\": {\n  \"api\": {},\n  \"api\": {}\n}}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "duplicate key \"api\" in services at line 3 column 7"
        );
        let err = parse(r#"{"a":1,"a":2}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("duplicate key \"a\" in the top-level object"),
            "{err}"
        );
        let err = parse(r#"{"s":{"x":{"hooks":{"init":[{"t":1,"t":2}]}}}}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("duplicate key \"t\" in s.x.hooks.init[0]"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_and_trailing_text_are_errors() {
        assert!(parse("{").is_err());
        assert!(parse("{} x").is_err());
        assert_eq!(parse(" [1] ").unwrap(), json!([1]));
    }
}
