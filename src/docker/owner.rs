//! Who owns a container: labels, and removal of containers whose rigd is gone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;

/// The prefix of every label rigd puts on its containers.
pub const LABEL_PREFIX: &str = "dev.rig-rs.";
/// The rig dir of the owning rigd.
const RIG_DIR: &str = "dev.rig-rs.rig-dir";
/// `<pid>:<start time>` of the owning rigd.
const RIGD: &str = "dev.rig-rs.rigd";

/// How long rigd waits for the engine while cleaning up at start or after a crash.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(15);

static RIG_DIR_VALUE: OnceLock<String> = OnceLock::new();

/// Records this rigd's rig dir for the labels of the containers it creates.
pub fn set_rig_dir(rig_dir: &Path) {
    let dir = std::fs::canonicalize(rig_dir).unwrap_or_else(|_| rig_dir.to_path_buf());
    let _ = RIG_DIR_VALUE.set(dir.to_string_lossy().into_owned());
}

fn rig_dir_label() -> String {
    RIG_DIR_VALUE.get().cloned().unwrap_or_default()
}

/// `<pid>:<start time>` of this process.
fn this_rigd() -> String {
    let pid = std::process::id();
    format!(
        "{pid}:{}",
        crate::reaper::process_start(pid).unwrap_or_default()
    )
}

/// The owner labels of a new container, plus the environment and service it belongs to.
pub(super) fn labels(instance: &str, service: &str) -> HashMap<String, String> {
    HashMap::from([
        (RIG_DIR.to_string(), rig_dir_label()),
        (RIGD.to_string(), this_rigd()),
        (format!("{LABEL_PREFIX}environment"), instance.to_string()),
        (format!("{LABEL_PREFIX}service"), service.to_string()),
    ])
}

/// True while the rigd named by a `<pid>:<start>` label runs.
fn owner_alive(label: &str) -> bool {
    let Some((pid, start)) = label.split_once(':') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    crate::reaper::process_start(pid) == Some(start)
}

/// Removes the containers of dead rigds that used `rig_dir`. Returns how many. Runs on a
/// thread of its own (callable from anywhere, runtime or not) and gives up after a deadline
/// when the engine does not answer; no engine means nothing to clean.
pub fn sweep_leftovers_blocking(rig_dir: &Path) -> usize {
    let dir = std::fs::canonicalize(rig_dir).unwrap_or_else(|_| rig_dir.to_path_buf());
    on_own_runtime(move |docker| async move {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{RIG_DIR}={}", dir.to_string_lossy())],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(containers) = docker.list_containers(Some(options)).await else {
            return 0;
        };
        let mut removed = 0;
        for c in containers {
            let labels = c.labels.unwrap_or_default();
            if labels.get(RIGD).is_some_and(|owner| owner_alive(owner)) {
                continue;
            }
            if let Some(id) = c.id {
                if force_remove(&docker, &id).await {
                    removed += 1;
                }
            }
        }
        removed
    })
    .unwrap_or(0)
}

/// Force-removes the containers `ids`, and those labelled as owned by `owner`
/// (`<pid>:<start>` of a rigd that died). Best effort; used by the reaper.
pub fn remove_containers_blocking(ids: Vec<String>, owner: Option<String>) {
    if ids.is_empty() && owner.is_none() {
        return;
    }
    let _ = on_own_runtime(move |docker| async move {
        let mut ids = ids;
        if let Some(owner) = owner {
            let filters = HashMap::from([("label".to_string(), vec![format!("{RIGD}={owner}")])]);
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            if let Ok(found) = docker.list_containers(Some(options)).await {
                ids.extend(found.into_iter().filter_map(|c| c.id));
            }
        }
        ids.sort();
        ids.dedup();
        for id in ids {
            force_remove(&docker, &id).await;
        }
    });
}

/// Force-removes container `id` (name or id) with its volumes; false when there was none or
/// the engine refused (reported on stderr).
pub async fn force_remove(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => true,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => {
            eprintln!("rigd: remove container {id}: {e}");
            false
        }
    }
}

/// Runs `work` with a fresh client on a current-thread runtime of its own thread, under
/// [`CLEANUP_DEADLINE`]. `None` when the engine is unreachable or the deadline passed.
fn on_own_runtime<T, F, Fut>(work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(Docker) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async move {
            tokio::time::timeout(CLEANUP_DEADLINE, async move {
                let docker = Docker::connect_with_local_defaults().ok()?;
                let docker = docker.negotiate_version().await.ok()?;
                Some(work(docker).await)
            })
            .await
            .ok()
            .flatten()
        })
    });
    handle.join().ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_alive_only_with_matching_start_times() {
        assert!(owner_alive(&this_rigd()));
        let pid = std::process::id();
        assert!(
            !owner_alive(&format!("{pid}:1")),
            "a reused pid is not the owner"
        );
        assert!(!owner_alive("garbage"));
        assert!(!owner_alive(&format!("{}:0", u32::MAX - 5)));
        let labels = labels("env-1", "web");
        assert_eq!(labels[&format!("{LABEL_PREFIX}service")], "web");
        assert_eq!(labels[RIGD], this_rigd());
    }
}
