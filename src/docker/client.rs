//! The shared Docker client, and which engine it talks to.
//!
//! The engine is the one the `docker` CLI would use: `DOCKER_HOST` when set, else the
//! endpoint of the current Docker context (`DOCKER_CONTEXT`, or `currentContext` in
//! `$DOCKER_CONFIG/config.json`, default `~/.docker`), else `/var/run/docker.sock`. It must
//! run on this machine: rigd publishes containers' ports on `127.0.0.1`, bind-mounts this
//! machine's directories into them and relays their egresses from this machine's Docker
//! bridge, none of which works with an engine elsewhere, so a remote endpoint is refused with
//! an error that says so.

use std::net::IpAddr;
use std::path::PathBuf;

use bollard::Docker;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// The Docker engine cannot be used.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct DockerError(String);

/// The engine's address when nothing names another.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

static CLIENT: OnceCell<Docker> = OnceCell::const_new();

/// Where the engine is, and what named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `unix:///var/run/docker.sock`, `tcp://127.0.0.1:2375`...
    pub host: String,
    /// What chose it, for messages: `DOCKER_HOST`, `Docker context "colima"`, or `default`.
    pub from: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.from.as_str() {
            "DOCKER_HOST" => write!(f, "DOCKER_HOST={}", self.host),
            "default" => write!(f, "{}", self.host),
            from => write!(f, "{} ({from})", self.host),
        }
    }
}

/// The Docker client of this rigd, for the engine [`endpoint`] names (API version negotiated
/// with it: older engines reject newer versions). Connected and pinged once; a failure is
/// retried on the next call, so starting Docker after rigd works. The error names the
/// endpoint.
pub async fn connect() -> Result<Docker, DockerError> {
    CLIENT
        .get_or_try_init(|| async {
            let endpoint = endpoint();
            ensure_local(&endpoint).await?;
            let unreachable = |e: bollard::errors::Error| {
                DockerError(format!(
                    "cannot connect to Docker daemon at {endpoint} (is Docker running?): {e}"
                ))
            };
            let docker = Docker::connect_with_host(&endpoint.host).map_err(unreachable)?;
            let docker = docker.negotiate_version().await.map_err(unreachable)?;
            docker.ping().await.map_err(unreachable)?;
            Ok(docker)
        })
        .await
        .cloned()
}

/// A client of [`endpoint`]'s engine, not yet connected (for clean-up on a runtime of its own:
/// the reaper, the start-up sweep).
pub(super) fn client() -> Option<Docker> {
    Docker::connect_with_host(&endpoint().host).ok()
}

/// The engine to use (see the module docs).
pub(crate) fn endpoint() -> Endpoint {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(host) = var("DOCKER_HOST") {
        return Endpoint {
            host,
            from: "DOCKER_HOST".to_string(),
        };
    }
    let config_dir = var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".docker")));
    let context = var("DOCKER_CONTEXT").or_else(|| {
        let config = std::fs::read(config_dir.as_ref()?.join("config.json")).ok()?;
        let config: serde_json::Value = serde_json::from_slice(&config).ok()?;
        config["currentContext"].as_str().map(str::to_string)
    });
    let host = match (&context, &config_dir) {
        (Some(name), Some(dir)) if name != "default" => context_host(dir, name),
        _ => None,
    };
    match (host, context) {
        (Some(host), Some(name)) => Endpoint {
            host,
            from: format!("Docker context {name:?}"),
        },
        _ => Endpoint {
            host: DEFAULT_HOST.to_string(),
            from: "default".to_string(),
        },
    }
}

/// The engine address of Docker context `name`:
/// `<config dir>/contexts/meta/<sha256 of the name>/meta.json`, `Endpoints.docker.Host`.
fn context_host(config_dir: &std::path::Path, name: &str) -> Option<String> {
    let digest: String = Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let meta = config_dir
        .join("contexts/meta")
        .join(digest)
        .join("meta.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
    meta["Endpoints"]["docker"]["Host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// Refuses an engine that is not on this machine (see the module docs).
async fn ensure_local(endpoint: &Endpoint) -> Result<(), DockerError> {
    let local = match network_host(&endpoint.host) {
        Locality::Local => true,
        Locality::Remote => false,
        Locality::Address(host, port) => is_this_machine(&host, port).await,
    };
    if local {
        return Ok(());
    }
    Err(DockerError(format!(
        "the Docker engine at {endpoint} is not on this machine (or not reachable as a local \
         one); rigd needs a local engine: it publishes containers' ports on 127.0.0.1, \
         bind-mounts this machine's directories into them and relays their calls to this \
         machine's services through the Docker bridge; point DOCKER_HOST at a local engine \
         (unix:///var/run/docker.sock, or tcp://127.0.0.1:<port>)"
    )))
}

/// Where an engine address points.
#[derive(Debug, PartialEq, Eq)]
enum Locality {
    /// A local socket, or a loopback address.
    Local,
    /// A scheme that only reaches other machines (`ssh://`), or one rigd cannot use.
    Remote,
    /// A network host and port, to be looked up.
    Address(String, u16),
}

/// What `host` (an engine address) says of where the engine is.
fn network_host(host: &str) -> Locality {
    let Some((scheme, rest)) = host.split_once("://") else {
        return Locality::Remote;
    };
    match scheme {
        "unix" => return Locality::Local,
        "tcp" | "http" | "https" => {}
        _ => return Locality::Remote,
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (name, port) = match authority.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => (name, port.parse().unwrap_or(2375)),
        _ => (authority, 2375),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    match name.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Locality::Local,
        _ if name.eq_ignore_ascii_case("localhost") => Locality::Local,
        _ if name.is_empty() => Locality::Remote,
        _ => Locality::Address(name.to_string(), port),
    }
}

/// True when `host` resolves to an address of this machine (one a socket can be bound to).
async fn is_this_machine(host: &str, port: u16) -> bool {
    let Ok(addresses) = tokio::net::lookup_host((host, port)).await else {
        return false;
    };
    let addresses: Vec<IpAddr> = addresses.map(|a| a.ip()).collect();
    !addresses.is_empty()
        && addresses
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, 0)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_addresses_say_whether_the_engine_is_local() {
        assert_eq!(network_host("unix:///var/run/docker.sock"), Locality::Local);
        assert_eq!(network_host("tcp://127.0.0.1:2375"), Locality::Local);
        assert_eq!(network_host("tcp://127.0.0.1"), Locality::Local);
        assert_eq!(network_host("http://localhost:2375/"), Locality::Local);
        assert_eq!(network_host("tcp://[::1]:2375"), Locality::Local);
        assert_eq!(network_host("ssh://me@build-box"), Locality::Remote);
        assert_eq!(
            network_host("npipe:////./pipe/docker_engine"),
            Locality::Remote
        );
        assert_eq!(network_host("/var/run/docker.sock"), Locality::Remote);
        assert_eq!(
            network_host("tcp://10.1.2.3:2376"),
            Locality::Address("10.1.2.3".to_string(), 2376)
        );
        assert_eq!(
            network_host("https://docker.example:2376"),
            Locality::Address("docker.example".to_string(), 2376)
        );
        assert_eq!(
            network_host("tcp://[fd00::5]:2376"),
            Locality::Address("fd00::5".to_string(), 2376)
        );
    }

    #[tokio::test]
    async fn only_addresses_of_this_machine_are_local() {
        // TEST-NET-1: never assigned to an interface here.
        assert!(!is_this_machine("192.0.2.1", 2375).await);
        assert!(is_this_machine("127.0.0.2", 2375).await);
        let remote = Endpoint {
            host: "tcp://192.0.2.1:2376".to_string(),
            from: "DOCKER_HOST".to_string(),
        };
        let err = ensure_local(&remote).await.unwrap_err().to_string();
        assert!(
            err.starts_with("the Docker engine at DOCKER_HOST=tcp://192.0.2.1:2376 is not on"),
            "{err}"
        );
    }

    #[test]
    fn the_current_docker_context_names_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let digest: String = Sha256::digest(b"colima")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let meta = dir.path().join("contexts/meta").join(digest);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"colima","Endpoints":{"docker":{"Host":"unix:///home/me/.colima/docker.sock"}}}"#,
        )
        .unwrap();
        assert_eq!(
            context_host(dir.path(), "colima").as_deref(),
            Some("unix:///home/me/.colima/docker.sock")
        );
        assert_eq!(context_host(dir.path(), "other"), None);
    }
}
