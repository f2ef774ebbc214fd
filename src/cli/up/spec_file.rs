//! Reading a spec file for `rig up` and filling in what a spec written by hand leaves out.
//!
//! The spec stays a JSON document (not [`rig_types::Environment`]) so fields this CLI does not
//! know reach rigd untouched. Two fields are filled, as the SDKs fill them:
//! - `dir` (the base of relative paths in the spec): the spec file's directory when absent,
//!   `null` or empty; a relative `dir` is taken relative to the spec file's directory, not to
//!   rigd's working directory;
//! - `host_env` (the base layer of every service's environment): this process's environment,
//!   under the spec's own `host_env` entries, which win.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::cli::error::CliError;
use crate::cli::strict_json;
use crate::services::config_warnings;
use crate::spec::{decode_environment_noting_unknown, unknown_field_warning};

/// A loaded and filled spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecFile {
    /// Where it came from, for messages (`-` for standard input).
    pub source: String,
    /// The document to POST.
    pub spec: Map<String, Value>,
    /// What to tell the user before starting: fields the spec does not have (ignored).
    pub warnings: Vec<String>,
}

impl SpecFile {
    /// Reads `path` (`-` for standard input), parses it and fills `dir` and `host_env`.
    /// `cwd` resolves a relative `path`; standard input uses `cwd` as its directory.
    pub fn load(path: &Path, cwd: &Path) -> Result<SpecFile, CliError> {
        let (source, text, dir) = if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::failed(format!("cannot read the spec from stdin: {e}")))?;
            ("<stdin>".to_string(), text, cwd.to_path_buf())
        } else {
            let full = cwd.join(path);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                CliError::failed(format!("cannot read spec file {}: {e}", path.display()))
            })?;
            let parent = full.parent().unwrap_or(cwd);
            // Canonical when possible (no `..`), else the joined path, which is absolute too.
            let dir = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
            (path.display().to_string(), text, dir)
        };
        // A byte order mark, as some editors write, is not part of the document (rigd
        // ignores it too).
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut spec = parse_spec(&source, text)?;
        // Decoded here as rigd will decode it, so errors point into this file (rigd gets the
        // document re-encoded, filled in, on one line).
        let (decoded, unknown) = decode_environment_noting_unknown(text.as_bytes())
            .map_err(|e| CliError::failed(format!("{source} is not a valid spec: {e}")))?;
        let warnings = unknown
            .iter()
            .map(|path| unknown_field_warning(path))
            .chain(config_warnings(&decoded))
            .map(|warning| format!("{source}: {warning}"))
            .collect();
        let dir = dir.to_str().ok_or_else(|| {
            CliError::failed(format!(
                "the directory of {source} is not valid UTF-8; set \"dir\" in the spec"
            ))
        })?;
        fill(&mut spec, Path::new(dir), current_env());
        Ok(SpecFile {
            source,
            spec,
            warnings,
        })
    }

    /// The spec's `name`, or empty.
    pub fn name(&self) -> &str {
        self.spec.get("name").and_then(Value::as_str).unwrap_or("")
    }

    /// The names of the services the spec declares, in file order.
    pub fn service_names(&self) -> Vec<String> {
        self.spec
            .get("services")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// True unless the spec turns the observing proxies off (`"observe": false`); rigd
    /// observes by default.
    pub fn observe(&self) -> bool {
        self.spec
            .get("observe")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// The `dir` rigd will receive.
    pub fn dir(&self) -> Option<PathBuf> {
        self.spec
            .get("dir")
            .and_then(Value::as_str)
            .map(PathBuf::from)
    }

    /// The spec's `ttl` text, or empty.
    pub fn ttl(&self) -> &str {
        self.spec.get("ttl").and_then(Value::as_str).unwrap_or("")
    }
}

/// Parses spec text: valid JSON, no duplicate keys, an object at the top.
pub fn parse_spec(source: &str, text: &str) -> Result<Map<String, Value>, CliError> {
    let value = strict_json::parse(text)
        .map_err(|e| CliError::failed(format!("{source} is not a valid spec: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(CliError::failed(format!(
            "{source} is not a valid spec: expected a JSON object with \"name\" and \"services\", found {}",
            kind(&other)
        ))),
    }
}

/// Fills `dir` and `host_env` (see the module docs). Values of the wrong type are left for
/// rigd to report.
pub fn fill(
    spec: &mut Map<String, Value>,
    spec_dir: &Path,
    host_env: impl IntoIterator<Item = (String, String)>,
) {
    let dir = match spec.get("dir") {
        None | Some(Value::Null) => Some(spec_dir.to_path_buf()),
        Some(Value::String(s)) if s.is_empty() => Some(spec_dir.to_path_buf()),
        Some(Value::String(s)) if Path::new(s).is_relative() => Some(spec_dir.join(s)),
        Some(_) => None,
    };
    if let Some(dir) = dir {
        spec.insert(
            "dir".into(),
            Value::String(dir.to_string_lossy().into_owned()),
        );
    }

    match spec.get_mut("host_env") {
        None | Some(Value::Null) => {
            let env: Map<String, Value> = host_env
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            spec.insert("host_env".into(), Value::Object(env));
        }
        Some(Value::Object(given)) => {
            for (k, v) in host_env {
                given.entry(k).or_insert(Value::String(v));
            }
        }
        Some(_) => {}
    }
}

/// This process's environment, sorted, without variables that are not valid UTF-8 (JSON
/// cannot carry them).
pub fn current_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn env() -> Vec<(String, String)> {
        vec![
            ("HOME".into(), "/home/me".into()),
            ("PATH".into(), "/usr/bin".into()),
        ]
    }

    #[test]
    fn absent_dir_and_host_env_are_filled() {
        let mut spec = obj(json!({"name": "x", "services": {}}));
        fill(&mut spec, Path::new("/specs"), env());
        assert_eq!(spec["dir"], json!("/specs"));
        assert_eq!(
            spec["host_env"],
            json!({"HOME": "/home/me", "PATH": "/usr/bin"})
        );
        // Null and empty count as absent.
        let mut spec = obj(json!({"dir": "", "host_env": null}));
        fill(&mut spec, Path::new("/specs"), env());
        assert_eq!(spec["dir"], json!("/specs"));
        assert_eq!(spec["host_env"]["PATH"], json!("/usr/bin"));
    }

    #[test]
    fn absolute_dir_is_kept_and_relative_dir_is_from_the_spec_file() {
        let mut spec = obj(json!({"dir": "/elsewhere"}));
        fill(&mut spec, Path::new("/specs"), env());
        assert_eq!(spec["dir"], json!("/elsewhere"));
        let mut spec = obj(json!({"dir": "../app"}));
        fill(&mut spec, Path::new("/specs"), env());
        assert_eq!(spec["dir"], json!("/specs/../app"));
    }

    #[test]
    fn host_env_merges_with_spec_values_winning() {
        let mut spec = obj(json!({"host_env": {"PATH": "/opt/bin", "EXTRA": "1"}}));
        fill(&mut spec, Path::new("/specs"), env());
        assert_eq!(
            spec["host_env"],
            json!({"PATH": "/opt/bin", "EXTRA": "1", "HOME": "/home/me"})
        );
    }

    #[test]
    fn wrong_types_are_left_for_rigd_to_report() {
        let mut spec = obj(json!({"dir": 5, "host_env": ["A=1"]}));
        fill(&mut spec, Path::new("/specs"), env());
        assert_eq!(spec["dir"], json!(5));
        assert_eq!(spec["host_env"], json!(["A=1"]));
    }

    #[test]
    fn parse_errors_name_the_file_and_the_problem() {
        let err = parse_spec("spec.json", "{\"name\": }").unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.message()
                .starts_with("spec.json is not a valid spec: expected value at line 1"),
            "{err}"
        );
        let err = parse_spec("spec.json", "[]").unwrap_err();
        assert_eq!(
            err.message(),
            "spec.json is not a valid spec: expected a JSON object with \"name\" and \"services\", found an array"
        );
        let err = parse_spec("s.json", r#"{"services": {"a": {}, "a": {}}}"#).unwrap_err();
        assert!(
            err.message().contains("duplicate key \"a\" in services"),
            "{err}"
        );
    }

    #[test]
    fn load_reads_a_file_and_uses_its_absolute_directory() {
        let dir = std::env::temp_dir().join(format!("rig-spec-load-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("sub/spec.json"),
            r#"{"name": "demo", "observe": true, "ttl": "1m", "services": {"b": {}, "a": {}}}"#,
        )
        .unwrap();
        let loaded = SpecFile::load(Path::new("sub/spec.json"), &dir).unwrap();
        let canonical = std::fs::canonicalize(dir.join("sub")).unwrap();
        assert_eq!(loaded.dir(), Some(canonical));
        assert_eq!(loaded.name(), "demo");
        assert_eq!(loaded.service_names(), ["b", "a"]);
        assert!(loaded.observe());
        assert_eq!(loaded.ttl(), "1m");
        assert!(loaded.spec["host_env"]
            .as_object()
            .is_some_and(|m| !m.is_empty()));

        let err = SpecFile::load(Path::new("missing.json"), &dir).unwrap_err();
        assert!(
            err.message()
                .starts_with("cannot read spec file missing.json: No such file"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
