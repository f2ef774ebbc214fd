//! The files a `go build` of a main package reads, as Go itself lists them.
//!
//! A main package's directory alone misses most of what its build reads: packages elsewhere
//! in the same module (`./internal/...`), the module's `go.mod` and `go.sum` above the
//! package, files pulled in with `//go:embed`, and modules replaced by a local path or
//! joined through `go.work`. `go list -deps` names every package of the build with its
//! files; packages from the module cache are named by `path@version` instead (their content
//! cannot change under a version). Blocking: call from `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cargo::{tool_output, KeyTools};

/// What a build of the main package in `dir` reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GoInputs {
    /// Local files, absolute, sorted: the sources (Go, cgo, assembly, `.syso`) and embedded
    /// files of every package outside the standard library and the module cache, and the
    /// `go.mod` and `go.sum` of their modules.
    pub files: BTreeSet<PathBuf>,
    /// Modules from the module cache, as `path@version` (sorted).
    pub modules: BTreeSet<String>,
}

/// One package of `go list -json` (the fields used).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Package {
    dir: PathBuf,
    standard: bool,
    module: Option<Module>,
    go_files: Vec<String>,
    cgo_files: Vec<String>,
    c_files: Vec<String>,
    cxx_files: Vec<String>,
    h_files: Vec<String>,
    s_files: Vec<String>,
    syso_files: Vec<String>,
    embed_files: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Module {
    path: String,
    version: String,
    go_mod: PathBuf,
    replace: Option<Box<Module>>,
}

/// The inputs of `go build` in `dir`, from `go list -deps -json` run with `env`.
///
/// # Errors
/// `go list` cannot run or its output is not what it documents.
///
/// `module_cache` is `GOMODCACHE`: a package of a versioned module found elsewhere (in the
/// main module's `vendor/`, which builds use with `-mod=vendor`, Go's default when it exists)
/// counts with its files, since they can be edited there.
pub fn go_inputs(
    tools: &KeyTools,
    dir: &Path,
    env: &BTreeMap<String, String>,
    module_cache: &Path,
) -> Result<GoInputs, String> {
    // `-e`: a package that does not compile is still listed, so its edit changes the key.
    let out = tool_output(
        tools,
        "go",
        &["list", "-e", "-deps", "-json", "."],
        dir,
        env,
    )?;
    parse(&out, module_cache)
}

fn parse(json: &str, module_cache: &Path) -> Result<GoInputs, String> {
    let mut inputs = GoInputs::default();
    for package in serde_json::Deserializer::from_str(json).into_iter::<Package>() {
        let package = package.map_err(|e| format!("read go list's output: {e}"))?;
        if package.standard {
            continue;
        }
        // The module the package's files come from: a `replace` with a path has no version.
        let module = package
            .module
            .as_ref()
            .map(|m| m.replace.as_deref().unwrap_or(m));
        if let Some(module) = module.filter(|m| !m.version.is_empty()) {
            inputs
                .modules
                .insert(format!("{}@{}", module.path, module.version));
            let cached =
                module_cache.as_os_str().is_empty() || package.dir.starts_with(module_cache);
            if cached {
                continue;
            }
            // Vendored: its files below.
        } else if let Some(go_mod) = module
            .map(|m| &m.go_mod)
            .filter(|p| !p.as_os_str().is_empty())
        {
            inputs.files.insert(go_mod.clone());
            inputs.files.insert(go_mod.with_file_name("go.sum"));
            // Which vendored module versions a `-mod=vendor` build uses.
            inputs
                .files
                .insert(go_mod.with_file_name("vendor").join("modules.txt"));
        }
        let names = [
            &package.go_files,
            &package.cgo_files,
            &package.c_files,
            &package.cxx_files,
            &package.h_files,
            &package.s_files,
            &package.syso_files,
            &package.embed_files,
        ];
        for name in names.into_iter().flatten() {
            inputs.files.insert(package.dir.join(name));
        }
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_packages_give_files_and_cached_modules_their_version() {
        let json = r#"
{"Dir": "/usr/lib/go/src/fmt", "ImportPath": "fmt", "Standard": true, "GoFiles": ["print.go"]}
{"Dir": "/src/app/internal/greet", "ImportPath": "example.com/app/internal/greet",
 "Module": {"Path": "example.com/app", "Main": true, "GoMod": "/src/app/go.mod"},
 "GoFiles": ["greet.go"], "EmbedFiles": ["msg.txt"]}
{"Dir": "/home/u/go/pkg/mod/golang.org/x/text@v0.3.0/language",
 "Module": {"Path": "golang.org/x/text", "Version": "v0.3.0",
            "GoMod": "/home/u/go/pkg/mod/cache/download/golang.org/x/text/@v/v0.3.0.mod"},
 "GoFiles": ["language.go"]}
{"Dir": "/src/lib", "Module": {"Path": "example.com/lib", "Version": "v1.0.0",
 "Replace": {"Path": "../lib", "Dir": "/src/lib", "GoMod": "/src/lib/go.mod"}},
 "GoFiles": ["lib.go"], "SFiles": ["fast_amd64.s"]}
{"Dir": "/src/app/cmd/api", "Module": {"Path": "example.com/app", "Main": true,
 "GoMod": "/src/app/go.mod"}, "GoFiles": ["main.go"]}
"#;
        let inputs = parse(json, Path::new("/home/u/go/pkg/mod")).unwrap();
        let files: Vec<&str> = inputs.files.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            files,
            [
                "/src/app/cmd/api/main.go",
                "/src/app/go.mod",
                "/src/app/go.sum",
                "/src/app/internal/greet/greet.go",
                "/src/app/internal/greet/msg.txt",
                "/src/app/vendor/modules.txt",
                "/src/lib/fast_amd64.s",
                "/src/lib/go.mod",
                "/src/lib/go.sum",
                "/src/lib/lib.go",
                "/src/lib/vendor/modules.txt",
            ]
        );
        assert_eq!(
            inputs.modules.into_iter().collect::<Vec<_>>(),
            ["golang.org/x/text@v0.3.0"]
        );
        assert!(parse("{not json", Path::new("")).is_err());
    }

    /// With `-mod=vendor`, a required module's packages come from `vendor/`, where they can
    /// be edited: their files count, not just the version.
    #[test]
    fn vendored_packages_give_their_files() {
        let json = r#"
{"Dir": "/src/app/vendor/example.com/dep", "Module": {"Path": "example.com/dep",
 "Version": "v1.0.0"}, "GoFiles": ["dep.go"]}
"#;
        let inputs = parse(json, Path::new("/home/u/go/pkg/mod")).unwrap();
        let files: Vec<&str> = inputs.files.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(files, ["/src/app/vendor/example.com/dep/dep.go"]);
        assert_eq!(
            inputs.modules.into_iter().collect::<Vec<_>>(),
            ["example.com/dep@v1.0.0"]
        );
    }
}
