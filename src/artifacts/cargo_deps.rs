//! The local packages a Cargo package's build reads besides its own directory: path
//! dependencies (`shared = { path = "../shared-lib" }`), workspace members it depends on
//! (`shared.workspace = true` with a `path` in `[workspace.dependencies]`), `[patch]` entries
//! with a `path`, and so on transitively.
//!
//! Cargo knows them all, however they are declared: `cargo metadata` lists every package of
//! the resolved graph, and the local ones have no `source`. Only those reachable from the
//! package in the resolve graph count, so editing an unrelated workspace member does not
//! invalidate the binary. Blocking: call from `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cargo::{tool_output, KeyTools};

/// The directories of the local packages `package_dir`'s package depends on, directly or
/// not, other than itself, sorted. Dependencies of every kind count (normal, build, dev):
/// more than a build needs, never less.
///
/// Offline first (nothing to fetch when the dependencies are in Cargo's cache, as after a
/// build); online only when that fails, as `cargo build` itself would fetch.
///
/// # Errors
/// `cargo metadata` fails (the manifest is invalid, a dependency cannot be resolved), with
/// cargo's message.
pub fn local_dependencies(
    tools: &KeyTools,
    package_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Vec<PathBuf>, String> {
    let manifest = package_dir.join("Cargo.toml");
    let manifest = manifest.to_string_lossy();
    let base = [
        "metadata",
        "--format-version",
        "1",
        "--manifest-path",
        &manifest,
    ];
    let offline: Vec<&str> = base.iter().copied().chain(["--offline"]).collect();
    let json = tool_output(tools, "cargo", &offline, package_dir, env)
        .or_else(|_| tool_output(tools, "cargo", &base, package_dir, env))
        .map_err(|e| format!("list the package's path dependencies: {e}"))?;
    let metadata: Metadata = serde_json::from_str(&json)
        .map_err(|e| format!("decode the output of cargo metadata: {e}"))?;
    Ok(metadata.local_dependencies())
}

/// The parts of `cargo metadata`'s output used here.
#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    #[serde(default)]
    resolve: Option<Resolve>,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    manifest_path: PathBuf,
    /// `None` for local packages (path dependencies and workspace members).
    #[serde(default)]
    source: Option<String>,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
    /// The package of the manifest given (`None` for a virtual manifest).
    #[serde(default)]
    root: Option<String>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    #[serde(default)]
    dependencies: Vec<String>,
}

impl Metadata {
    fn local_dependencies(&self) -> Vec<PathBuf> {
        let local: HashMap<&str, &Package> = self
            .packages
            .iter()
            .filter(|p| p.source.is_none())
            .map(|p| (p.id.as_str(), p))
            .collect();
        let Some(resolve) = &self.resolve else {
            return Vec::new();
        };
        let Some(root) = resolve.root.as_deref() else {
            return Vec::new();
        };
        let edges: HashMap<&str, &[String]> = resolve
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.dependencies.as_slice()))
            .collect();
        // Walk the graph from the root through local packages only: a registry crate cannot
        // depend on a path crate.
        let mut seen = BTreeSet::from([root]);
        let mut stack = vec![root];
        let mut dirs = BTreeSet::new();
        while let Some(id) = stack.pop() {
            for dep in edges.get(id).copied().unwrap_or_default() {
                let Some(package) = local.get(dep.as_str()) else {
                    continue;
                };
                if seen.insert(dep.as_str()) {
                    stack.push(dep.as_str());
                    if let Some(dir) = package.manifest_path.parent() {
                        dirs.insert(dir.to_path_buf());
                    }
                }
            }
        }
        dirs.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn package(dir: &Path, name: &str, deps: &str, workspace: bool) {
        let ws = if workspace { "\n[workspace]\n" } else { "" };
        write(
            &dir.join("Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
                 {ws}\n[dependencies]\n{deps}"
            ),
        );
        write(&dir.join("src/lib.rs"), "");
    }

    #[test]
    fn path_dependencies_are_found_transitively_from_cargo_metadata() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        package(
            &root.join("app"),
            "app",
            "shared = { path = \"../shared-lib\" }\n",
            true,
        );
        package(
            &root.join("shared-lib"),
            "shared",
            "deep = { path = \"../deep\" }\n",
            false,
        );
        package(&root.join("deep"), "deep", "", false);
        package(&root.join("unrelated"), "unrelated", "", false);
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let deps = local_dependencies(&KeyTools::default(), &root.join("app"), &env).unwrap();
        let canon = |p: &str| std::fs::canonicalize(root.join(p)).unwrap();
        let deps: Vec<PathBuf> = deps
            .iter()
            .map(|d| std::fs::canonicalize(d).unwrap())
            .collect();
        assert_eq!(deps, [canon("deep"), canon("shared-lib")]);
    }

    #[test]
    fn workspace_members_count_only_when_depended_on() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        write(
            &root.join("Cargo.toml"),
            "[workspace]\nmembers = [\"api\", \"common\", \"other\"]\nresolver = \"2\"\n\n\
             [workspace.dependencies]\ncommon = { path = \"common\" }\n",
        );
        package(&root.join("api"), "api", "common.workspace = true\n", false);
        package(&root.join("common"), "common", "", false);
        package(&root.join("other"), "other", "", false);
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let deps = local_dependencies(&KeyTools::default(), &root.join("api"), &env).unwrap();
        assert_eq!(deps.len(), 1, "{deps:?}");
        assert!(deps[0].ends_with("common"), "{deps:?}");
    }

    #[test]
    fn an_invalid_manifest_is_cargos_error() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("Cargo.toml"), "[package\n");
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let err = local_dependencies(&KeyTools::default(), root.path(), &env).unwrap_err();
        assert!(
            err.starts_with("list the package's path dependencies: cargo metadata"),
            "{err}"
        );
    }
}
