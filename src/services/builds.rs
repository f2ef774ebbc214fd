//! The `cargo` and `go` types: a binary built by the artifact phase, run like `process`.
//!
//! `cargo` config: `{"path": "<package dir, relative to the spec dir>", "bin": "<optional>",
//! "profile": "<default release>", "features": [..], "env": {..}}`.
//! `go` config: `{"module": "<module dir relative to the spec dir, or module@version>",
//! "env": {..}}`.
//!
//! The binary runs with the spec `dir` as its working directory (as upstream's `go`), its args
//! expanded against the service environment, and the config `env` on top of it. Builds run
//! with rigd's environment overlaid with the client's `host_env` (the toolchain needs `HOME`,
//! `CARGO_HOME`, `GOPATH`..., which clients rarely send).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rig_types::Endpoint;
use serde::Deserialize;

use super::process::{listening_advice, run_program};
use super::{
    AdviceFuture, ArtifactRequest, RunContext, RunFuture, ServiceError, ServiceRef, ServiceType,
};
use crate::artifacts::cargo::{CargoBuild, CargoConfig, DEFAULT_PROFILE};
use crate::artifacts::go::{GoBuild, GoModule};
use crate::artifacts::Artifact;

/// The `cargo` service type.
pub struct Cargo;

/// The `go` service type.
pub struct Go;

/// rigd's own environment overlaid with the client's.
fn build_env(host_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.extend(host_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Example `cargo` config, for errors.
const CARGO_SHAPE: &str = r#"{"path": "<package dir>", "bin": "...", "profile": "release", "features": ["..."], "env": {"NAME": "value"}}"#;
/// Example `go` config, for errors.
const GO_SHAPE: &str = r#"{"module": "<module dir, or path@version>", "env": {"NAME": "value"}}"#;

/// The keys a `cargo` config takes.
pub(crate) fn cargo_fields() -> &'static [&'static str] {
    super::config::struct_fields::<CargoConfig>()
}

/// The keys a `go` config takes.
pub(crate) fn go_fields() -> &'static [&'static str] {
    super::config::struct_fields::<GoConfig>()
}

fn decode<T: for<'de> Deserialize<'de> + Default>(
    kind: &str,
    config: Option<&serde_json::Value>,
) -> Result<T, ServiceError> {
    let shape = if kind == "go" { GO_SHAPE } else { CARGO_SHAPE };
    super::config::decode(config, &format!("{kind} config"), shape)
}

fn cargo_build(
    config: &CargoConfig,
    spec_dir: &str,
    env: BTreeMap<String, String>,
) -> Result<CargoBuild, ServiceError> {
    if config.path.is_empty() {
        return Err(ServiceError::new(
            "cargo config needs \"path\": the directory of the Cargo package (relative to the \
             spec dir)",
        ));
    }
    let path = Path::new(&config.path);
    let package_dir = if path.is_absolute() {
        path.to_path_buf()
    } else if spec_dir.is_empty() {
        return Err(ServiceError::new(format!(
            "relative cargo path {:?} requires environment dir (the client must send \"dir\")",
            config.path
        )));
    } else {
        Path::new(spec_dir).join(path)
    };
    Ok(CargoBuild {
        package_dir: normalize(&absolute(&package_dir)),
        bin: config.bin.clone().filter(|b| !b.is_empty()),
        profile: config
            .profile
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PROFILE.to_string()),
        features: config.features.clone(),
        env,
    })
}

/// `path` against rigd's working directory when it is relative (a relative spec `dir`):
/// builds run in the package directory, where a relative path would be resolved again.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `a/./b/../c` → `a/c`, lexically (so equal packages get equal artifact keys).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The binary the artifact phase produced for `key`.
fn built_binary(ctx: &RunContext, key: &str) -> Result<PathBuf, ServiceError> {
    ctx.artifacts
        .get(key)
        .map(|o| o.path.clone())
        .ok_or_else(|| ServiceError::new(format!("artifact {key:?} not resolved")))
}

async fn run_built(
    ctx: RunContext,
    key: String,
    env: BTreeMap<String, String>,
) -> Result<(), ServiceError> {
    let program = built_binary(&ctx, &key)?;
    let mut full = ctx.env.clone();
    full.extend(env);
    let dir = (!ctx.spec_dir.is_empty()).then(|| PathBuf::from(&ctx.spec_dir));
    run_program(ctx, &program, dir.as_deref(), &full).await
}

impl ServiceType for Cargo {
    fn artifacts(&self, req: &ArtifactRequest<'_>) -> Result<Vec<Artifact>, ServiceError> {
        let config: CargoConfig = decode("cargo", req.spec.config.as_ref())?;
        let build = cargo_build(&config, req.spec_dir, build_env(req.host_env))?;
        Ok(vec![Artifact {
            key: build.key(),
            service: req.service.to_string(),
            resolver: Arc::new(build),
        }])
    }

    fn run(&self, ctx: RunContext) -> RunFuture {
        Box::pin(async move {
            let config: CargoConfig = decode("cargo", ctx.spec.config.as_ref())?;
            let key = cargo_build(&config, &ctx.spec_dir, BTreeMap::new())?.key();
            run_built(ctx, key, config.env).await
        })
    }

    fn not_ready_advice(
        &self,
        service: &ServiceRef,
        ingress: &str,
        endpoint: &Endpoint,
    ) -> Option<AdviceFuture> {
        listening_advice(service, ingress, endpoint)
    }
}

/// The `go` service config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoConfig {
    #[serde(default)]
    module: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn go_build(
    config: &GoConfig,
    spec_dir: &str,
    env: BTreeMap<String, String>,
    work_dir: &Path,
) -> Result<GoBuild, ServiceError> {
    let module = match GoModule::parse(&config.module, spec_dir).map_err(ServiceError::new)? {
        GoModule::Local(dir) => GoModule::Local(normalize(&absolute(&dir))),
        remote => remote,
    };
    Ok(GoBuild {
        module,
        env,
        work_dir: work_dir.to_path_buf(),
    })
}

impl ServiceType for Go {
    fn artifacts(&self, req: &ArtifactRequest<'_>) -> Result<Vec<Artifact>, ServiceError> {
        let config: GoConfig = decode("go", req.spec.config.as_ref())?;
        let build = go_build(
            &config,
            req.spec_dir,
            build_env(req.host_env),
            req.cache_root,
        )?;
        Ok(vec![Artifact {
            key: build.key(),
            service: req.service.to_string(),
            resolver: Arc::new(build),
        }])
    }

    fn run(&self, ctx: RunContext) -> RunFuture {
        Box::pin(async move {
            let config: GoConfig = decode("go", ctx.spec.config.as_ref())?;
            let key = go_build(&config, &ctx.spec_dir, BTreeMap::new(), Path::new(""))?.key();
            run_built(ctx, key, config.env).await
        })
    }

    fn not_ready_advice(
        &self,
        service: &ServiceRef,
        ingress: &str,
        endpoint: &Endpoint,
    ) -> Option<AdviceFuture> {
        listening_advice(service, ingress, endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_paths_resolve_against_the_spec_dir() {
        let config = CargoConfig {
            path: "./services/../api".into(),
            ..CargoConfig::default()
        };
        let b = cargo_build(&config, "/src", BTreeMap::new()).unwrap();
        assert_eq!(b.package_dir, PathBuf::from("/src/api"));
        assert_eq!(b.profile, "release");
        let relative = cargo_build(&config, "src", BTreeMap::new()).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            relative.package_dir,
            cwd.join("src/api"),
            "a relative spec dir"
        );
        let err = cargo_build(&config, "", BTreeMap::new()).unwrap_err();
        assert!(err.message().contains("requires environment dir"), "{err}");
        let err = cargo_build(&CargoConfig::default(), "/src", BTreeMap::new()).unwrap_err();
        assert!(err.message().contains("\"path\""), "{err}");
    }

    #[test]
    fn unknown_config_fields_are_refused() {
        let err = decode::<CargoConfig>("cargo", Some(&serde_json::json!({"pth": "x"})))
            .err()
            .unwrap();
        assert!(err.message().starts_with("invalid cargo config"), "{err}");
    }
}
