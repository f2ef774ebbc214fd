//! Container images (`container` service type, container backends): used from the local
//! engine when present (`artifact.cached`, the registry is not contacted), pulled otherwise.
//!
//! Cache layout as upstream: `docker/<sha256("docker:" + image)>/.image-id` and `.image-ref`,
//! breadcrumbs for tools; the engine's own image store is the real cache.

use std::collections::BTreeMap;
use std::path::Path;

use super::hash::sha256_hex;
use super::{BoxFuture, BuildJob, Output, Resolver};
use crate::docker::{connect, ensure_image, is_stall, local_image_id, ImageSource};

/// One image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerImage {
    /// `repo[:tag]` or `repo@digest`.
    pub image: String,
    /// Why this image was chosen, added to a failure (`auto` falling back from a native
    /// backend whose binaries are missing); empty when the spec asked for it.
    pub why: String,
}

impl DockerImage {
    /// The artifact key: `docker:<image>`.
    pub fn key(&self) -> String {
        format!("docker:{}", self.image)
    }

    /// The artifact that makes `image` present in the local engine for `service`.
    pub fn artifact(image: impl Into<String>, service: &str) -> super::Artifact {
        DockerImage::artifact_because(image, service, String::new())
    }

    /// [`DockerImage::artifact`], whose failure also says `why` the image was chosen.
    pub fn artifact_because(
        image: impl Into<String>,
        service: &str,
        why: String,
    ) -> super::Artifact {
        let image = DockerImage {
            image: image.into(),
            why,
        };
        super::Artifact {
            key: image.key(),
            service: service.to_string(),
            resolver: std::sync::Arc::new(image),
        }
    }

    fn output(&self, dir: &Path, id: String) -> Output {
        // Breadcrumbs only; failing to write them changes nothing.
        let _ = std::fs::write(dir.join(".image-id"), &id);
        let _ = std::fs::write(dir.join(".image-ref"), &self.image);
        Output {
            path: Default::default(),
            meta: BTreeMap::from([
                ("image".to_string(), self.image.clone()),
                ("image_id".to_string(), id),
            ]),
        }
    }
}

impl Resolver for DockerImage {
    fn cache_key(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { Ok(format!("docker/{}", sha256_hex(&self.key()))) })
    }

    fn cached<'a>(&'a self, dir: &'a Path) -> BoxFuture<'a, Option<Output>> {
        Box::pin(async move {
            let docker = connect().await.ok()?;
            let id = local_image_id(&docker, &self.image).await?;
            Some(self.output(dir, id))
        })
    }

    fn resolve(&self, job: BuildJob) -> BoxFuture<'_, Result<Output, String>> {
        Box::pin(async move {
            let docker = connect().await.map_err(|e| e.to_string())?;
            let pulled = tokio::select! {
                _ = job.cancel.cancelled() => return Err("cancelled".to_string()),
                r = ensure_image(&docker, &self.image) => r.map_err(|e| match &self.why[..] {
                    "" => e,
                    why => format!("{e} ({why})"),
                })?,
            };
            let id = match pulled {
                ImageSource::Local(id) | ImageSource::Pulled(id) => id,
            };
            Ok(self.output(&job.dir, id))
        })
    }

    fn retryable(&self) -> bool {
        true
    }

    fn retry_after(&self, error: &str) -> bool {
        // A stalled pull already waited a whole stall limit; another would wait as long.
        !is_stall(error)
    }
}
