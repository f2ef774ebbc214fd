//! The shared Docker client.

use bollard::Docker;
use tokio::sync::OnceCell;

/// The Docker engine cannot be used.
#[derive(Clone, Debug, thiserror::Error)]
#[error("cannot connect to Docker daemon (is Docker running?): {0}")]
pub struct DockerError(String);

static CLIENT: OnceCell<Docker> = OnceCell::const_new();

/// The Docker client of this rigd: `DOCKER_HOST` or the local socket, API version negotiated
/// with the engine (older engines reject newer versions). Connected and pinged once; a
/// failure is retried on the next call, so starting Docker after rigd works.
pub async fn connect() -> Result<Docker, DockerError> {
    CLIENT
        .get_or_try_init(|| async {
            let docker =
                Docker::connect_with_local_defaults().map_err(|e| DockerError(e.to_string()))?;
            let docker = docker
                .negotiate_version()
                .await
                .map_err(|e| DockerError(e.to_string()))?;
            docker
                .ping()
                .await
                .map_err(|e| DockerError(e.to_string()))?;
            Ok(docker)
        })
        .await
        .cloned()
}
