//! Building a Go binary (`go` service type).
//!
//! A module is **local** (a directory: absolute, or relative to the spec `dir`) or **remote**
//! (`module/path@version`). Upstream joined every non-absolute module to the spec `dir`, so
//! remote modules never worked when the SDK sent a `dir`; here anything with an `@` that is
//! not a path is remote, and is installed with `go install module@version` (`go build` has no
//! remote form).
//!
//! Cache key: `go/<sha256>` over `go version` (which names the OS and architecture),
//! the effective `go env` settings that change the binary (`GOOS`, `GOARCH`, `GOFLAGS`,
//! `CGO_ENABLED`, `GOEXPERIMENT`, `CGO_CFLAGS`, ...: `BUILD_SETTINGS`, which `go env -w`
//! sets in the `GOENV` file as well as the environment does), and either what the
//! build reads as `go list -deps` names it (local: every local or vendored package's sources
//! and embedded files, their modules' `go.mod` and `go.sum`, and the `path@version` of modules
//! from the module cache; see [`super::go_deps`]) or the module string (remote). Upstream
//! hashed only the `*.go`, `go.mod` and `go.sum` files of the package directory, so an edit
//! elsewhere in the module, or to an embedded file, left the old binary running; that rule
//! remains the fallback when `go list` fails (the build then reports why).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cargo::{cached_binary, file_binary, tool_output, KeyTools};
use super::go_deps::go_inputs;
use super::hash::{list_sources, ContentHash, Sources};
use super::{BoxFuture, BuildCommand, BuildJob, Output, Resolver};

/// Which module to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoModule {
    /// A module (or main package) directory, absolute.
    Local(PathBuf),
    /// `module/path@version`.
    Remote(String),
}

impl GoModule {
    /// Interprets a config `module` against the spec `dir`.
    pub fn parse(module: &str, spec_dir: &str) -> Result<GoModule, String> {
        if module.is_empty() {
            return Err(
                "go config needs \"module\": a module directory (relative to the spec \
                        dir) or module/path@version"
                    .to_string(),
            );
        }
        let looks_like_path = module.starts_with('/') || module.starts_with('.');
        if looks_like_path || !module.contains('@') {
            let path = Path::new(module);
            if path.is_absolute() {
                return Ok(GoModule::Local(path.to_path_buf()));
            }
            if spec_dir.is_empty() {
                return Err(format!(
                    "relative module path {module:?} requires environment dir (SDK must send \
                     \"dir\" field)"
                ));
            }
            let local = Path::new(spec_dir).join(path);
            // `golang.org/x/example/hello` names a remote module, not a directory here.
            let host_like = module
                .split('/')
                .next()
                .is_some_and(|first| first.contains('.'));
            if !looks_like_path && host_like && !local.exists() {
                return Err(format!(
                    "module {module:?} is not a directory under the spec dir {spec_dir}; a \
                     remote module needs a version: {module}@latest or {module}@v1.2.3"
                ));
            }
            return Ok(GoModule::Local(local));
        }
        let (path, version) = module.split_once('@').unwrap_or((module, ""));
        if path.is_empty() || version.is_empty() {
            return Err(format!(
                "remote module {module:?} must include a version suffix (e.g. module@v1.2.3)"
            ));
        }
        Ok(GoModule::Remote(module.to_string()))
    }
}

/// A `go build` (local) or `go install` (remote) of one main package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoBuild {
    /// What to build.
    pub module: GoModule,
    /// The build environment.
    pub env: BTreeMap<String, String>,
    /// Where version queries and remote builds run (the rig dir or any directory).
    pub work_dir: PathBuf,
}

impl GoBuild {
    /// The artifact key: `gobuild:<module dir or module@version>`.
    pub fn key(&self) -> String {
        match &self.module {
            GoModule::Local(dir) => format!("gobuild:{}", dir.display()),
            GoModule::Remote(m) => format!("gobuild:{m}"),
        }
    }

    fn dir(&self) -> &Path {
        match &self.module {
            GoModule::Local(dir) => dir,
            GoModule::Remote(_) => &self.work_dir,
        }
    }

    fn compute_cache_key(&self, tools: &KeyTools) -> Result<String, String> {
        if let GoModule::Local(dir) = &self.module {
            if dir.is_file() {
                return Err(format!(
                    "module {} is a file: give the main package's directory (e.g. ./cmd/api)",
                    dir.display()
                ));
            }
            if !dir.is_dir() {
                return Err(format!("module directory {} does not exist", dir.display()));
            }
        }
        let env = self.build_env();
        std::fs::create_dir_all(self.dir())
            .map_err(|e| format!("create {}: {e}", self.dir().display()))?;
        let version = tool_output(tools, "go", &["version"], self.dir(), &env)?;
        let mut h = ContentHash::new();
        h.field("goversion", version.trim());
        let mut settings = go_settings(tools, self.dir(), &env)?;
        // Where modules are kept, not what they hold: not part of the key.
        let module_cache = PathBuf::from(settings.remove("GOMODCACHE").unwrap_or_default());
        for (var, value) in &settings {
            h.field(&format!("goenv:{var}"), value);
        }
        match &self.module {
            GoModule::Local(dir) => match go_inputs(tools, dir, &env, &module_cache) {
                Ok(inputs) => {
                    for module in &inputs.modules {
                        h.field("module", module);
                    }
                    let files: Vec<PathBuf> = inputs.files.into_iter().collect();
                    h.files(Path::new("/"), &files)
                        .map_err(|e| format!("read the sources of {}: {e}", dir.display()))?;
                }
                Err(_) => {
                    let files = list_sources(dir, Sources::Go)
                        .map_err(|e| format!("list the files of {}: {e}", dir.display()))?;
                    h.files(dir, &files)
                        .map_err(|e| format!("read the files of {}: {e}", dir.display()))?;
                }
            },
            GoModule::Remote(m) => h.field("module", m),
        }
        Ok(format!("go/{}", h.hex()))
    }

    /// The build environment, with a Go build cache when the environment names no home for
    /// one (Go refuses to build without).
    fn build_env(&self) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        let has_cache_home = ["GOCACHE", "HOME", "XDG_CACHE_HOME"]
            .iter()
            .any(|v| env.get(*v).is_some_and(|s| !s.is_empty()));
        if !has_cache_home {
            env.insert(
                "GOCACHE".to_string(),
                self.work_dir
                    .join("go-build-cache")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        env
    }

    fn meta(&self) -> (&'static str, String) {
        match &self.module {
            GoModule::Local(dir) => ("module", dir.to_string_lossy().into_owned()),
            GoModule::Remote(m) => ("module", m.clone()),
        }
    }
}

impl Resolver for GoBuild {
    fn cache_key(&self) -> BoxFuture<'_, Result<String, String>> {
        let this = self.clone();
        Box::pin(async move {
            let tools = KeyTools::default();
            let guard = tools.abandon_on_drop();
            let key = tokio::task::spawn_blocking(move || this.compute_cache_key(&tools))
                .await
                .map_err(|e| format!("hash sources: {e}"))?;
            guard.disarm();
            key
        })
    }

    fn cached<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Option<Output>> {
        Box::pin(async move {
            // `@latest` or a branch names whatever it is today: built again every time (Go's
            // module cache keeps that quick), so a new release is picked up.
            if let GoModule::Remote(module) = &self.module {
                if !fixed_version(module) {
                    return None;
                }
            }
            cached_binary(dir, self.meta())
        })
    }

    fn resolve(&self, job: BuildJob) -> BoxFuture<'_, Result<Output, String>> {
        Box::pin(async move {
            let mut env = self.build_env();
            let (args, what, built) = match &self.module {
                GoModule::Local(dir) => {
                    let out = job.dir.join(".build");
                    (
                        vec![
                            "build".to_string(),
                            "-trimpath".to_string(),
                            "-o".to_string(),
                            out.to_string_lossy().into_owned(),
                            ".".to_string(),
                        ],
                        format!("go build {}", dir.display()),
                        out,
                    )
                }
                GoModule::Remote(module) => {
                    let bin = job.dir.join(".gobin");
                    let _ = std::fs::remove_dir_all(&bin);
                    env.insert("GOBIN".to_string(), bin.to_string_lossy().into_owned());
                    (
                        vec![
                            "install".to_string(),
                            "-trimpath".to_string(),
                            module.clone(),
                        ],
                        format!("go install {module}"),
                        bin,
                    )
                }
            };
            let command = BuildCommand {
                program: "go".to_string(),
                args,
                dir: self.dir().to_path_buf(),
                env,
                log_stdout: true,
            };
            command
                .run(&job.output, &job.cancel, job.reaper.as_ref())
                .await
                .map_err(|f| f.describe(&what))?;
            let built = if built.is_dir() {
                single_file(&built)?
            } else {
                built
            };
            // Sources edited during the build leave the binary out of the cache.
            let key_now = self.cache_key().await;
            let path = file_binary(&built, &job, key_now, &self.key()["gobuild:".len()..])?;
            let _ = std::fs::remove_file(job.dir.join(".build"));
            let _ = std::fs::remove_dir_all(job.dir.join(".gobin"));
            let (k, v) = self.meta();
            Ok(Output {
                path,
                meta: BTreeMap::from([(k.to_string(), v)]),
            })
        })
    }

    fn retryable(&self) -> bool {
        matches!(self.module, GoModule::Remote(_))
    }
}

/// The `go env` settings that can change what `go build` produces. Asked of Go rather than
/// read from the environment: `go env -w` settings in the `GOENV` file count as well.
const BUILD_SETTINGS: &[&str] = &[
    "GOOS",
    "GOARCH",
    "GOFLAGS",
    "CGO_ENABLED",
    "GOEXPERIMENT",
    "CGO_CFLAGS",
    "CGO_CPPFLAGS",
    "CGO_CXXFLAGS",
    "CGO_FFLAGS",
    "CGO_LDFLAGS",
    "CC",
    "CXX",
    "AR",
    "PKG_CONFIG",
    "GOAMD64",
    "GOARM",
    "GOARM64",
    "GO386",
    "GOMIPS",
    "GOMIPS64",
    "GOPPC64",
    "GORISCV64",
    "GOWASM",
    "GOROOT",
    "GOWORK",
    "GO111MODULE",
    "GOTOOLCHAIN",
];

/// The effective values of [`BUILD_SETTINGS`] (and `GOMODCACHE`) for a build in `dir` with
/// `env`, from one `go env -json` (an older Go reports the settings it does not know as
/// empty).
fn go_settings(
    tools: &KeyTools,
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut args = vec!["env", "-json", "GOMODCACHE"];
    args.extend_from_slice(BUILD_SETTINGS);
    let out = tool_output(tools, "go", &args, dir, env)?;
    serde_json::from_str(&out).map_err(|e| format!("read the output of go env -json: {e}"))
}

/// The one file `go install` put into `dir`.
fn single_file(dir: &Path) -> Result<PathBuf, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    match files.len() {
        1 => Ok(files.remove(0)),
        n => Err(format!(
            "go install produced {n} binaries in {}; expected one",
            dir.display()
        )),
    }
}

/// Whether `module@version` names one immutable version: a full semantic version, which
/// pseudo-versions are too (`v1.2.3`, `v0.0.0-20240101000000-abcdef123456`), rather than a
/// query (`latest`, `upgrade`, `v1.2`, `<v2`, a branch or a commit prefix).
fn fixed_version(module: &str) -> bool {
    let Some((_, version)) = module.rsplit_once('@') else {
        return false;
    };
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_local_paths_or_versioned_remotes() {
        assert_eq!(
            GoModule::parse("./cmd/api", "/src").unwrap(),
            GoModule::Local("/src/./cmd/api".into())
        );
        assert_eq!(
            GoModule::parse("cmd/api", "/src").unwrap(),
            GoModule::Local("/src/cmd/api".into())
        );
        assert_eq!(
            GoModule::parse("/abs/api", "").unwrap(),
            GoModule::Local("/abs/api".into())
        );
        // Upstream joined this to the dir; it is a remote module.
        assert_eq!(
            GoModule::parse("github.com/x/y@v1.2.3", "/src").unwrap(),
            GoModule::Remote("github.com/x/y@v1.2.3".into())
        );
        let err = GoModule::parse("./api", "").unwrap_err();
        assert!(err.contains("requires environment dir"), "{err}");
        let err = GoModule::parse("golang.org/x/example/hello", "/nonexistent").unwrap_err();
        assert!(
            err.ends_with(
                "a remote module needs a version: golang.org/x/example/hello@latest \
                 or golang.org/x/example/hello@v1.2.3"
            ),
            "{err}"
        );
        let err = GoModule::parse("github.com/x/y@", "/src").unwrap_err();
        assert!(err.contains("version suffix"), "{err}");
        assert!(GoModule::parse("", "/src").is_err());
    }

    #[tokio::test]
    async fn a_remote_module_at_a_query_is_built_again_and_one_at_a_version_is_cached() {
        for version in [
            "v1.2.3",
            "v0.0.0-20240101000000-abcdef123456",
            "v2.0.0-rc.1+meta",
        ] {
            assert!(
                fixed_version(&format!("example.com/m@{version}")),
                "{version}"
            );
        }
        for version in [
            "latest", "upgrade", "patch", "v1.2", "<v2", "main", "abc1234", "1.2.3",
        ] {
            assert!(
                !fixed_version(&format!("example.com/m@{version}")),
                "{version}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("binary"), b"built").unwrap();
        let build = |module: &str| GoBuild {
            module: GoModule::Remote(module.into()),
            env: BTreeMap::new(),
            work_dir: "/tmp".into(),
        };
        assert!(build("example.com/m@v1.0.0")
            .cached(dir.path())
            .await
            .is_some());
        assert!(build("example.com/m@latest")
            .cached(dir.path())
            .await
            .is_none());
    }

    #[test]
    fn only_remote_builds_are_retried() {
        let local = GoBuild {
            module: GoModule::Local("/m".into()),
            env: BTreeMap::new(),
            work_dir: "/tmp".into(),
        };
        assert!(!local.retryable());
        assert_eq!(local.key(), "gobuild:/m");
        let remote = GoBuild {
            module: GoModule::Remote("example.com/m@v1.0.0".into()),
            ..local
        };
        assert!(remote.retryable());
        assert_eq!(remote.key(), "gobuild:example.com/m@v1.0.0");
    }

    #[test]
    fn a_cache_home_is_provided_when_the_environment_has_none() {
        let b = GoBuild {
            module: GoModule::Local("/m".into()),
            env: BTreeMap::from([("PATH".to_string(), "/usr/bin".to_string())]),
            work_dir: "/rig".into(),
        };
        assert_eq!(b.build_env()["GOCACHE"], "/rig/go-build-cache");
        let mut with_home = b.clone();
        with_home.env.insert("HOME".into(), "/root".into());
        assert!(!with_home.build_env().contains_key("GOCACHE"));
    }
}
