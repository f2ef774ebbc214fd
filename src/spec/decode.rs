//! Decoding a spec document (`POST /environments` body) into an [`Environment`].
//!
//! A plain map decode keeps the last of two entries with the same key, so a spec that names a
//! service, ingress or egress twice would silently lose one. This decoder reads the
//! `services`, `ingresses` and `egresses` objects as ordered `(key, raw JSON)` lists first and
//! rejects repeats, with upstream's messages:
//!
//! * ``duplicate services key: "<name>"``
//! * ``service "<svc>": duplicate ingresses key: "<key>"`` (and `egresses`)
//! * ``service "<svc>": <decode error>``
//!
//! The steps run in upstream's order: the whole top level first (malformed JSON or a field of
//! the wrong type fails before any duplicate check), then the duplicate service names, then
//! each service in document order (its ingress and egress names, its hooks, its fields).
//!
//! Differences from upstream, all deliberate:
//! * keys are case-sensitive (`"Name"` does not fill `name`);
//! * a repeated top-level field (`name`, `services`, ...) is an error instead of "last wins";
//! * a `null` or non-object element of `hooks.prestart`/`hooks.init` is an error naming the
//!   element (upstream crashes on `null`);
//! * a document or a service that is not a JSON object is an error (upstream decodes a
//!   top-level `null` as an empty spec).
//!
//! Positions in error messages (`at line L column C`) are positions in the whole document,
//! even for errors found while decoding one service.

use std::collections::BTreeMap;
use std::fmt;

use rig_types::{Environment, Service};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::go_quote;

/// Why a spec document could not be decoded. `Display` is the message for the client
/// (the API answers `400 {"error": "decode: <message>"}`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The document is not JSON, is not an object, or a top-level field has the wrong type.
    #[error("{0}")]
    Document(String),
    /// The top-level `services` object names a service twice.
    #[error("duplicate services key: {}", go_quote(.0))]
    DuplicateService(String),
    /// A service's `ingresses` or `egresses` object names an entry twice.
    #[error("service {}: duplicate {map} key: {}", go_quote(.service), go_quote(.key))]
    DuplicateKey {
        /// The service whose map holds the repeat.
        service: String,
        /// `"ingresses"` or `"egresses"`.
        map: &'static str,
        /// The repeated key.
        key: String,
    },
    /// A service could not be decoded.
    #[error("service {}: {message}", go_quote(.service))]
    Service {
        /// The service name.
        service: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The UTF-8 encoding of U+FEFF, the byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes a spec document, checking for repeated service, ingress and egress names.
///
/// A missing or `null` `services` gives an empty map (validation then reports it). Unknown
/// fields are ignored at every level ([`decode_environment_noting_unknown`] lists them).
pub fn decode_environment(body: &[u8]) -> Result<Environment, DecodeError> {
    decode_environment_noting_unknown(body).map(|(env, _)| env)
}

/// [`decode_environment`], also returning the fields it ignored because no version of the
/// spec has them (most likely misspelt: `"confg"`, `"ingresess"`), as dotted paths in
/// document order: `servces`, `services.web.ingresses.default.ready.pth`. What a service's
/// `config` holds is its type's business and is not listed.
pub fn decode_environment_noting_unknown(
    body: &[u8],
) -> Result<(Environment, Vec<String>), DecodeError> {
    let mut unknown = Vec::new();
    // A UTF-8 byte order mark, as some Windows editors write, is ignored (RFC 8259 §8.1
    // allows it); serde_json would refuse it as "expected value at line 1 column 1".
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    let doc = Document { body };
    let top = doc.entries(
        body_str_or_error(body)?,
        "a JSON object (the environment spec)",
    )?;

    // Observe mode is on unless the spec turns it off (absent or null means on).
    let mut env = Environment {
        observe: true,
        ..Environment::default()
    };
    let mut services: Option<Vec<(String, &RawValue)>> = None;
    let mut seen = Vec::with_capacity(top.len());
    for (key, raw) in &top {
        let field = key.as_str();
        if !TOP_LEVEL_FIELDS.contains(&field) {
            unknown.push(field.to_string());
            continue;
        }
        if seen.contains(&field) {
            return Err(DecodeError::Document(format!(
                "duplicate field {}: the spec sets it twice",
                go_quote(field)
            )));
        }
        seen.push(field);
        match field {
            "name" => env.name = doc.field::<String>(field, raw)?,
            "observe" => env.observe = doc.field::<Option<bool>>(field, raw)?.unwrap_or(true),
            "host_env" => env.host_env = doc.field::<BTreeMap<_, _>>(field, raw)?,
            "dir" => env.dir = doc.field::<String>(field, raw)?,
            "ttl" => env.ttl = doc.field::<String>(field, raw)?,
            "callback_timeout" => env.callback_timeout = doc.field(field, raw)?,
            "services" if is_null(raw) => services = None,
            "services" => {
                services = Some(
                    doc.entries(raw.get(), "an object mapping service names to services")
                        .map_err(|e| DecodeError::Document(format!("services: {e}")))?,
                );
            }
            _ => {}
        }
    }

    let services = services.unwrap_or_default();
    if let Some(name) = first_repeat(&services) {
        return Err(DecodeError::DuplicateService(name.to_string()));
    }
    for (name, raw) in services {
        let service = doc.service(&name, raw, &mut unknown)?;
        env.services.insert(name, service);
    }
    Ok((env, unknown))
}

/// The top-level fields of a spec (those of [`Environment`]); others are ignored.
const TOP_LEVEL_FIELDS: &[&str] = &[
    "name",
    "services",
    "observe",
    "host_env",
    "dir",
    "ttl",
    "callback_timeout",
];

/// The whole request body, kept to turn positions inside a sub-document into positions in it.
struct Document<'a> {
    body: &'a [u8],
}

impl<'a> Document<'a> {
    /// Reads `text` (part of the body) as a JSON object, keeping entries in document order,
    /// repeats included. `what` describes the expected object in the error message.
    fn entries(
        &self,
        text: &'a str,
        what: &'static str,
    ) -> Result<Vec<(String, &'a RawValue)>, DecodeError> {
        let mut de = serde_json::Deserializer::from_str(text);
        EntriesSeed { what }
            .deserialize(&mut de)
            .and_then(|entries| de.end().map(|()| entries))
            .map_err(|e| DecodeError::Document(self.describe(&e, text)))
    }

    /// Decodes the top-level field `name`; `null` gives the type's default, as in Go.
    fn field<T: for<'de> Deserialize<'de> + Default>(
        &self,
        name: &str,
        raw: &RawValue,
    ) -> Result<T, DecodeError> {
        self.with_path::<Option<T>>(raw.get(), &mut |_| {})
            .map(Option::unwrap_or_default)
            .map_err(|e| DecodeError::Document(e.under(name)))
    }

    /// Checks and decodes one service: repeated ingress/egress names, then hook elements,
    /// then the fields themselves.
    fn service(
        &self,
        name: &str,
        raw: &'a RawValue,
        unknown: &mut Vec<String>,
    ) -> Result<Service, DecodeError> {
        let service_err = |message: String| DecodeError::Service {
            service: name.to_string(),
            message,
        };
        let fields = self
            .entries(raw.get(), "an object (the service spec)")
            .map_err(|e| service_err(e.to_string()))?;
        for map in ["ingresses", "egresses"] {
            for (_, value) in fields.iter().filter(|(k, _)| k == map) {
                // A value of the wrong type is reported by the full decode below.
                let Ok(entries) = self.entries(value.get(), "an object") else {
                    continue;
                };
                if let Some(key) = first_repeat(&entries) {
                    return Err(DecodeError::DuplicateKey {
                        service: name.to_string(),
                        map,
                        key: key.to_string(),
                    });
                }
            }
        }
        for (_, hooks) in fields.iter().filter(|(k, _)| k == "hooks") {
            check_hooks(hooks).map_err(service_err)?;
        }
        let mut ignored = Vec::new();
        let service = self
            .with_path::<Service>(raw.get(), &mut |path| ignored.push(dotted(path)))
            .map_err(|e| service_err(e.to_string()))?;
        unknown.extend(
            ignored
                .into_iter()
                .map(|path| format!("services.{name}.{path}")),
        );
        Ok(service)
    }

    /// Decodes `text` (part of the body), keeping the path of the field at fault; fields the
    /// type does not have are passed to `ignored`.
    fn with_path<T: for<'de> Deserialize<'de>>(
        &self,
        text: &str,
        ignored: &mut dyn FnMut(serde_ignored::Path<'_>),
    ) -> Result<T, FieldError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let mut note = |path: serde_ignored::Path<'_>| ignored(path);
        let noting = serde_ignored::Deserializer::new(&mut de, &mut note);
        let value = serde_path_to_error::deserialize::<_, T>(noting).map_err(|e| FieldError {
            path: if e.path().iter().next().is_none() {
                String::new()
            } else {
                e.path().to_string()
            },
            message: self.describe(e.inner(), text),
        })?;
        de.end().map_err(|e| FieldError {
            path: String::new(),
            message: self.describe(&e, text),
        })?;
        Ok(value)
    }

    /// Formats a serde_json error raised while parsing `text`, a slice of the body, with its
    /// position in the whole body.
    fn describe(&self, err: &serde_json::Error, text: &str) -> String {
        let full = err.to_string();
        if err.line() == 0 {
            return full;
        }
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full);
        let Some(offset) = offset_in(self.body, text) else {
            return full;
        };
        let before = &self.body[..offset];
        let base_line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let base_col = before.iter().rev().take_while(|&&b| b != b'\n').count();
        let (line, column) = if err.line() == 1 {
            (base_line, base_col + err.column())
        } else {
            (base_line + err.line() - 1, err.column())
        };
        format!("{message} at line {line} column {column}")
    }
}

/// A decode error with the path of the field at fault (`ingresses.default.protocol`), empty
/// when the error is not inside a field.
struct FieldError {
    path: String,
    message: String,
}

impl FieldError {
    /// The message with the path under the top-level field `field`: `host_env.HOME: ...`.
    fn under(&self, field: &str) -> String {
        if self.path.is_empty() {
            format!("{field}: {}", self.message)
        } else {
            format!("{field}.{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The warning for a field the spec does not have, at `path` (as
/// [`decode_environment_noting_unknown`] lists it).
pub fn unknown_field_warning(path: &str) -> String {
    format!("unknown field {path} is ignored: is it misspelt?")
}

/// `ingresses.default.ready.pth`: the keys and indices of `path`, without serde_ignored's `?`
/// for each `Option` on the way.
fn dotted(path: serde_ignored::Path<'_>) -> String {
    fn push(path: &serde_ignored::Path<'_>, out: &mut Vec<String>) {
        use serde_ignored::Path;
        match path {
            Path::Root => {}
            Path::Seq { parent, index } => {
                push(parent, out);
                out.push(index.to_string());
            }
            Path::Map { parent, key } => {
                push(parent, out);
                out.push(key.clone());
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => push(parent, out),
        }
    }
    let mut parts = Vec::new();
    push(&path, &mut parts);
    parts.join(".")
}

/// The body as text, or the error serde_json gives for invalid UTF-8 (with its position).
fn body_str_or_error(body: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
        DecodeError::Document(format!(
            "the spec is not valid UTF-8 text (invalid byte at line {line} column {column})"
        ))
    })
}

/// The byte offset of `part` inside `whole`, if `part` is a slice of it.
fn offset_in(whole: &[u8], part: &str) -> Option<usize> {
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    let offset = at.checked_sub(start)?;
    (offset + part.len() <= whole.len()).then_some(offset)
}

/// True when the raw value is JSON `null`.
fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

/// The first key that appears a second time, in document order of the second appearance.
fn first_repeat<'e>(entries: &'e [(String, &RawValue)]) -> Option<&'e str> {
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    entries
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !seen.insert(*k))
}

/// Rejects `null` and non-object elements of `hooks.prestart` and `hooks.init` with a message
/// that shows the expected shape. Values of the wrong type elsewhere are left to the full
/// service decode, which reports them with their position.
fn check_hooks(hooks: &RawValue) -> Result<(), String> {
    #[derive(Deserialize)]
    struct HookLists<'a> {
        #[serde(borrow, default)]
        prestart: Option<Vec<&'a RawValue>>,
        #[serde(borrow, default)]
        init: Option<Vec<&'a RawValue>>,
    }
    let Ok(lists) = serde_json::from_str::<HookLists>(hooks.get()) else {
        return Ok(());
    };
    for (phase, list) in [("prestart", lists.prestart), ("init", lists.init)] {
        for (i, element) in list.unwrap_or_default().iter().enumerate() {
            let kind = json_kind(element);
            if kind != "object" {
                let what = if kind == "null" {
                    "is null".to_string()
                } else {
                    format!("is {kind}, not an object")
                };
                return Err(format!(
                    "hooks.{phase}[{i}] {what}; each hook must be an object like \
                     {{\"type\": \"client_func\", \"client_func\": {{\"name\": \"...\"}}}}"
                ));
            }
        }
    }
    Ok(())
}

/// Names the kind of a raw JSON value for messages (`"null"`, `"a string"`, `"object"`, ...).
fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => "object",
        Some(b'n') => "null",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

/// Reads a JSON object as its entries in document order, keeping repeated keys.
struct EntriesSeed {
    what: &'static str,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Vec<(String, &'de RawValue)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<String>()? {
            let value: &'de RawValue = map.next_value()?;
            entries.push((key, value));
        }
        Ok(entries)
    }
}
