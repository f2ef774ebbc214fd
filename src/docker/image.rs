//! Making sure an image is present locally: pulled only when missing, and given up when the
//! engine reports no progress for a while (a registry that stopped answering mid-layer would
//! otherwise hold the environment forever).

use std::time::Duration;

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

/// Whether the image was already there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// Present locally; the registry was not contacted.
    Local(String),
    /// Pulled now.
    Pulled(String),
}

/// The id of `image`, pulling it first when it is not present locally. Pull errors reported
/// inside the pull stream count (upstream ignored them).
pub async fn ensure_image(docker: &Docker, image: &str) -> Result<ImageSource, String> {
    if let Some(id) = local_image_id(docker, image).await {
        return Ok(ImageSource::Local(id));
    }
    let (repo, tag) = split_reference(image);
    let options = CreateImageOptionsBuilder::default()
        .from_image(repo)
        .tag(tag)
        .build();
    let mut pull = docker.create_image(Some(options), None, None);
    let stall = stall_limit();
    let mut last = String::new();
    loop {
        let Ok(progress) = tokio::time::timeout(stall, pull.next()).await else {
            return Err(stalled(image, stall, &last));
        };
        match progress {
            None => break,
            Some(Ok(info)) => {
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(format!("docker pull {image}: {err}"));
                }
                let bytes = info
                    .progress_detail
                    .and_then(|p| match (p.current, p.total) {
                        (Some(current), Some(total)) if total > 0 => {
                            Some(format!("{current}/{total} bytes"))
                        }
                        _ => None,
                    });
                let said = [info.id, info.status, bytes]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                if !said.is_empty() {
                    last = said;
                }
            }
            Some(Err(e)) => return Err(format!("docker pull {image}: {e}")),
        }
    }
    local_image_id(docker, image)
        .await
        .map(ImageSource::Pulled)
        .ok_or_else(|| format!("docker inspect {image}: not present after the pull"))
}

/// How long a pull may go without a progress message from the engine before it is given up:
/// [`STALL_LIMIT`], or [`STALL_LIMIT_VAR`] when set.
fn stall_limit() -> Duration {
    std::env::var(STALL_LIMIT_VAR)
        .ok()
        .and_then(|v| rig_types::GoDuration::parse(&v).ok()?.to_std())
        .filter(|d| !d.is_zero())
        .unwrap_or(STALL_LIMIT)
}

/// The error of a pull of `image` that got no progress message for `limit`; `last` is the
/// last one it got.
pub(crate) fn stalled(image: &str, limit: Duration, last: &str) -> String {
    let limit = rig_types::GoDuration::from_std(limit);
    let progress = if last.is_empty() {
        "nothing yet".to_string()
    } else {
        format!("last: {last}")
    };
    format!(
        "docker pull {image}: {STALLED} for {limit} ({progress}); is the registry reachable? \
         `docker pull {image}` shows what the engine does"
    )
}

/// True for the error of a stalled pull ([`stalled`]): retrying would only stall again.
pub fn is_stall(error: &str) -> bool {
    error.starts_with("docker pull ") && error.contains(&format!(": {STALLED} for "))
}

/// What [`stalled`] says.
const STALLED: &str = "no progress";

/// The time a pull may go without progress.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// rigd's own environment variable that overrides [`STALL_LIMIT`] (a Go duration, `5s`);
/// meant for tests.
pub const STALL_LIMIT_VAR: &str = "RIG_DOCKER_PULL_STALL";

/// The id of a locally present image.
pub async fn local_image_id(docker: &Docker, image: &str) -> Option<String> {
    docker.inspect_image(image).await.ok().and_then(|i| i.id)
}

/// `repo[:tag]` → (`repo`, `tag` or `latest`); digests (`repo@sha256:..`) stay whole.
fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        // A colon after the last slash separates the tag; before it, a registry port.
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn a_stalled_pull_names_the_image_and_its_progress() {
        let limit = std::time::Duration::from_secs(60);
        assert_eq!(
            super::stalled("app:1", limit, ""),
            "docker pull app:1: no progress for 1m0s (nothing yet); is the registry \
             reachable? `docker pull app:1` shows what the engine does"
        );
        let err = super::stalled("app:1", limit, "a1b2 Downloading 1048576/20971520 bytes");
        assert!(super::is_stall(&err));
        assert!(!super::is_stall("docker pull app:1: manifest unknown"));
        assert!(
            err.contains("(last: a1b2 Downloading 1048576/20971520 bytes)"),
            "{err}"
        );
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(
            split_reference("postgres:16-alpine"),
            ("postgres", "16-alpine")
        );
        assert_eq!(split_reference("redis"), ("redis", "latest"));
        assert_eq!(
            split_reference("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
        assert_eq!(split_reference("app@sha256:abc"), ("app@sha256:abc", ""));
    }
}
