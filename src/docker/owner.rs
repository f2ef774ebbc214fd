//! Who owns a container: labels, and removal of containers whose rigd is gone.
//!
//! A container names its rigd by `<pid>:<start time>` ([`RIGD`]), which only means something
//! in the pid namespace of the kernel boot it was written in: one engine may serve rigds on
//! other hosts or in other containers (CI jobs mounting `/var/run/docker.sock`), where the
//! same pid is another process, and this rigd's `/proc` says nothing about theirs. So a
//! second label ([`NAMESPACE`]) names that boot and pid namespace, and a rigd only ever
//! removes containers labelled with its own namespace whose rigd is gone. Containers of
//! older rigds carry no namespace label and are judged as before, by the pid alone.

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
/// `<boot id>:<pid namespace inode>` of the owning rigd: where the pid of [`RIGD`] means
/// something (see [`this_namespace`]).
const NAMESPACE: &str = "dev.rig-rs.rigd-namespace";

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

/// This rigd's boot and pid namespace, `<boot id>:<pid namespace inode>`
/// (`/proc/sys/kernel/random/boot_id`, and `/proc/self/ns/pid`): two processes with the same
/// value see the same processes under the same pids. `None` when either cannot be read; the
/// containers of such a rigd are labelled as by older rigds.
pub fn this_namespace() -> Option<&'static str> {
    static NAMESPACE: OnceLock<Option<String>> = OnceLock::new();
    NAMESPACE
        .get_or_init(|| {
            use std::os::unix::fs::MetadataExt;
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let boot = boot.trim();
            let pid_ns = std::fs::metadata("/proc/self/ns/pid").ok()?.ino();
            (!boot.is_empty()).then(|| format!("{boot}:{pid_ns}"))
        })
        .as_deref()
}

/// The owner labels of a new container, plus the environment and service it belongs to.
pub(super) fn labels(instance: &str, service: &str) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (RIG_DIR.to_string(), rig_dir_label()),
        (RIGD.to_string(), this_rigd()),
        (format!("{LABEL_PREFIX}environment"), instance.to_string()),
        (format!("{LABEL_PREFIX}service"), service.to_string()),
    ]);
    if let Some(namespace) = this_namespace() {
        labels.insert(NAMESPACE.to_string(), namespace.to_string());
    }
    labels
}

/// True when a container labelled `labels` was left by a rigd that is gone, so that a rigd
/// in `here` (its [`this_namespace`]) may remove it: its owner ([`RIGD`]) is not `alive`, and
/// its namespace is `here`. A container of another namespace (another host, another
/// container's rigd on a shared engine), or of any namespace when `here` is unknown, is never
/// a leftover: its pid means nothing here. One without a namespace label (older rigds) is
/// judged by its owner alone, as those rigds did.
fn is_leftover(
    labels: &HashMap<String, String>,
    here: Option<&str>,
    alive: impl Fn(&str) -> bool,
) -> bool {
    match labels.get(NAMESPACE) {
        Some(theirs) if here != Some(theirs.as_str()) => false,
        _ => !labels.get(RIGD).is_some_and(|owner| alive(owner)),
    }
}

/// What a container `name` (or id) is to this rigd, from its labels.
pub enum Occupant {
    /// No such container.
    Free,
    /// A container a gone rigd of this namespace left: safe to remove.
    Leftover,
    /// A container of a live rigd, of another namespace, or not rigd's at all: leave it.
    Live,
}

/// Whether container `name` exists and, if so, whether it is a leftover this rigd may
/// remove ([`is_leftover`]); a container without rigd's labels, or one the engine would not
/// describe, counts as [`Occupant::Live`].
pub async fn occupant(docker: &Docker, name: &str) -> Occupant {
    match docker.inspect_container(name, None).await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Occupant::Free,
        Err(_) => Occupant::Live,
        Ok(inspected) => {
            let labels = inspected
                .config
                .and_then(|config| config.labels)
                .unwrap_or_default();
            if labels.contains_key(RIGD) && is_leftover(&labels, this_namespace(), owner_alive) {
                Occupant::Leftover
            } else {
                Occupant::Live
            }
        }
    }
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

/// Removes the containers of dead rigds of this namespace that used `rig_dir`
/// ([`is_leftover`]). Returns how many. Runs on a thread of its own (callable from anywhere,
/// runtime or not) and gives up after a deadline when the engine does not answer; no engine
/// means nothing to clean.
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
            if !is_leftover(&labels, this_namespace(), owner_alive) {
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
/// (`<pid>:<start>` of a rigd that died) in `namespace` (its [`this_namespace`]; `None` for
/// the records of older rigds, whose containers carry no namespace). Best effort; used by the
/// reaper.
pub fn remove_containers_blocking(
    ids: Vec<String>,
    owner: Option<String>,
    namespace: Option<String>,
) {
    if ids.is_empty() && owner.is_none() {
        return;
    }
    let _ = on_own_runtime(move |docker| async move {
        let mut ids = ids;
        if let Some(owner) = owner {
            // Every label of the filter must match: the same pid and start time in another
            // namespace is another rigd.
            let mut wanted = vec![format!("{RIGD}={owner}")];
            wanted.extend(namespace.map(|ns| format!("{NAMESPACE}={ns}")));
            let filters = HashMap::from([("label".to_string(), wanted)]);
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
    remove(docker, id).await == Removed::Now
}

/// What became of a container rigd removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removed {
    /// Removed now.
    Now,
    /// There was no such container (any more).
    Absent,
    /// The engine refused or did not answer (reported on stderr): it may still exist.
    Failed,
}

impl Removed {
    /// True when the container no longer exists.
    pub(crate) fn gone(self) -> bool {
        self != Removed::Failed
    }
}

/// Force-removes container `id` (name or id) with its volumes.
pub(crate) async fn remove(docker: &Docker, id: &str) -> Removed {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Removed::Now,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Removed::Absent,
        Err(e) => {
            eprintln!("rigd: remove container {id}: {e}");
            Removed::Failed
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
                let docker = super::client::client()?;
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
        assert_eq!(Some(labels[NAMESPACE].as_str()), this_namespace());
    }

    #[test]
    fn the_namespace_names_the_boot_and_the_pid_namespace() {
        let namespace = this_namespace().expect("Linux has both");
        let (boot, pid_ns) = namespace.rsplit_once(':').unwrap();
        assert_eq!(
            boot,
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap()
                .trim()
        );
        // `pid:[4026531836]`
        let link = std::fs::read_link("/proc/self/ns/pid").unwrap();
        assert_eq!(link.to_string_lossy(), format!("pid:[{pid_ns}]"));
    }

    #[test]
    fn only_containers_of_gone_rigds_of_this_namespace_are_leftovers() {
        let here = Some("boot-a:4026531836");
        let with = |owner: &str, namespace: Option<&str>| {
            let mut labels = HashMap::from([(RIGD.to_string(), owner.to_string())]);
            labels.extend(namespace.map(|ns| (NAMESPACE.to_string(), ns.to_string())));
            labels
        };
        let alive = |owner: &str| owner == "10:100";
        // This namespace: gone owners are leftovers, live ones are not.
        assert!(is_leftover(&with("11:100", here), here, alive));
        assert!(!is_leftover(&with("10:100", here), here, alive));
        // Another pid namespace of this boot, or another host: never, dead pid or not.
        for foreign in ["boot-a:4026532000", "boot-b:4026531836"] {
            assert!(!is_leftover(&with("11:100", Some(foreign)), here, alive));
            assert!(!is_leftover(&with("10:100", Some(foreign)), here, alive));
        }
        // A rigd that does not know its own namespace removes no labelled container.
        assert!(!is_leftover(&with("11:100", here), None, alive));
        // Older rigds' containers (no namespace label): by the owner alone, as before.
        assert!(is_leftover(&with("11:100", None), here, alive));
        assert!(is_leftover(&with("garbage", None), here, alive));
        assert!(!is_leftover(&with("10:100", None), here, alive));
        assert!(is_leftover(&with("11:100", None), None, alive));
    }
}
