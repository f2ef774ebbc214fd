//! Making sure an image is present locally: pulled only when missing.

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
    while let Some(progress) = pull.next().await {
        match progress {
            Ok(info) => {
                if let Some(err) = info.error_detail.and_then(|d| d.message) {
                    return Err(format!("docker pull {image}: {err}"));
                }
            }
            Err(e) => return Err(format!("docker pull {image}: {e}")),
        }
    }
    local_image_id(docker, image)
        .await
        .map(ImageSource::Pulled)
        .ok_or_else(|| format!("docker inspect {image}: not present after the pull"))
}

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
