//! Handing what a container wrote into its mounts back to rigd's user.
//!
//! With a rootful engine and rigd running as a normal user (a developer in the `docker`
//! group), a container running as root writes root-owned files and directories into the
//! directories rigd mounts into it (`/rig/temp`, `/rig/env`), which rigd then cannot remove.
//! So before a container goes, rigd has root inside it give them to rigd's user:
//!
//! ```text
//!  still running   exec `chown -R <uid>:<gid> <mounts>` as root in it
//!  exited, or no   a short-lived helper container of the same image, as root, with the same
//!  luck with exec  mounts, entrypoint `chown`; removed after
//! ```
//!
//! What the container writes while it handles its stop signal comes after the exec: once it
//! has stopped, rigd looks through the mounts on the host, and if anything there is not the
//! user's, a helper container hands it back in what is left of the time.
//!
//! Nothing is done either when the engine maps container root to another host user
//! (rootless Docker, `userns-remap`: see [`files_owner_for`]).
//!
//! Both together are bounded in time ([`HAND_BACK_WHILE_STOPPING`] for a container being
//! stopped, [`HAND_BACK_DEADLINE`] for one that exited), and a helper container given up on is
//! removed all the same. Nothing is done when rigd runs as
//! root. An image without `chown` (`scratch`, distroless) cannot do it: the service's log
//! says so, and what rigd cannot remove is reported when the environment directory goes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::WaitContainerOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::container::ContainerSpec;
use super::exec::exec_output_as;
use super::owner::labels;
use super::removal::Removal;
use crate::reaper::Reaper;

/// How long handing files back may take for a container that exited by itself (both ways
/// together).
pub const HAND_BACK_DEADLINE: Duration = Duration::from_secs(10);

/// How long handing files back may take for a container being stopped: a share of the margin
/// the lifecycle gives a stopping service beyond its stop grace, so that the stop and the
/// removal after it still fit.
pub const HAND_BACK_WHILE_STOPPING: Duration = Duration::from_secs(3);

/// rigd's own environment variable that sets who gets what containers write into their
/// mounts (`<uid>:<gid>`), instead of rigd's user; it also applies when rigd runs as root.
/// Meant for tests, which run as root.
pub const FILES_OWNER_VAR: &str = "RIG_CONTAINER_FILES_OWNER";

/// A user and group to give files to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilesOwner {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

impl FilesOwner {
    /// `<uid>:<gid>`, as `chown` takes it.
    fn spec(self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }
}

/// Who gets what this rigd's containers write into their mounts: [`FILES_OWNER_VAR`] when
/// set, else rigd's user and group, or `None` when rigd runs as root (root can remove
/// anything).
pub fn files_owner() -> Option<FilesOwner> {
    static OWNER: OnceLock<Option<FilesOwner>> = OnceLock::new();
    *OWNER.get_or_init(|| {
        // SAFETY: geteuid(2) and getegid(2) cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let set = std::env::var(FILES_OWNER_VAR).ok();
        owner_from(set.as_deref(), uid, gid).unwrap_or_else(|e| {
            eprintln!("rigd: {e}");
            owner_from(None, uid, gid).unwrap_or_default()
        })
    })
}

/// Who gets what the containers of engine `docker` write into their mounts: [`files_owner`],
/// or `None` when root in its containers is not root on the host (rootless Docker, where it
/// is rigd's own user, or `userns-remap`, where it is a subordinate uid): there, a `chown` to
/// rigd's uid from inside would hand the files to some subordinate uid instead, which rigd
/// could not remove at all. The engine's answer is asked once.
pub async fn files_owner_for(docker: &Docker) -> Option<FilesOwner> {
    static REMAPPED: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    let owner = files_owner()?;
    let remapped = REMAPPED
        .get_or_try_init(|| async {
            let info = docker.info().await?;
            Ok::<_, bollard::errors::Error>(remaps_root(&info.security_options.unwrap_or_default()))
        })
        .await
        // An engine that does not say is taken as rootful, as before; asked again next time.
        .copied()
        .unwrap_or(false);
    (!remapped).then_some(owner)
}

/// True when an engine's `SecurityOptions` (`docker info`: `name=seccomp,profile=default`,
/// `name=rootless`, `name=userns`...) say that root in its containers is another user on the
/// host.
fn remaps_root(security_options: &[String]) -> bool {
    security_options.iter().any(|option| {
        option
            .split(',')
            .any(|part| matches!(part.trim(), "name=rootless" | "name=userns"))
    })
}

/// [`files_owner`] from the variable's value `set` and rigd's `uid` and `gid`.
fn owner_from(set: Option<&str>, uid: u32, gid: u32) -> Result<Option<FilesOwner>, String> {
    let Some(set) = set.filter(|s| !s.is_empty()) else {
        return Ok((uid != 0).then_some(FilesOwner { uid, gid }));
    };
    set.split_once(':')
        .and_then(|(uid, gid)| Some((uid.parse().ok()?, gid.parse().ok()?)))
        .map(|(uid, gid)| Some(FilesOwner { uid, gid }))
        .ok_or_else(|| {
            format!(
                "{FILES_OWNER_VAR}={set:?} is not <uid>:<gid> (e.g. 1000:1000); ignoring it: \
                 containers' files go to rigd's own user"
            )
        })
}

/// Gives what container `id` (made from `spec`) wrote into its mounts to `owner`: by exec in
/// it while `running`, else (or when that fails) by a helper container, both within
/// `budget`. The error says why neither worked.
pub async fn hand_back(
    docker: &Docker,
    id: &str,
    spec: &ContainerSpec,
    running: bool,
    owner: FilesOwner,
    reaper: Option<&Arc<Reaper>>,
    budget: Duration,
) -> Result<(), String> {
    if spec.mounts.is_empty() {
        return Ok(());
    }
    let args: Vec<String> = ["-R".to_string(), owner.spec()]
        .into_iter()
        .chain(spec.mounts.iter().map(|m| m.container.clone()))
        .collect();
    let deadline = Instant::now() + budget;
    let mut in_place = None;
    if running {
        let cmd: Vec<String> = std::iter::once("chown".to_string())
            .chain(args.iter().cloned())
            .collect();
        match bounded(deadline, exec_output_as(docker, id, &cmd, Some("0"))).await {
            Ok(_) => return Ok(()),
            Err(e) => in_place = Some(e),
        }
    }
    if Instant::now() >= deadline {
        return Err(in_place.unwrap_or_else(|| "no time was left".to_string()));
    }
    bounded(deadline, helper(docker, spec, args, reaper))
        .await
        .map_err(|e| match in_place {
            Some(first) => format!("{first}; then a helper container: {e}"),
            None => format!("a helper container: {e}"),
        })
}

/// How many entries of a container's mounts [`stragglers`] looks at before it assumes there
/// is one (a tree that large is handed back again rather than walked to its end).
const STRAGGLER_WALK_LIMIT: usize = 100_000;

/// Whether anything in `spec`'s mounts on the host (the mount directories themselves
/// included) is not `owner`'s: what a container wrote after its files were handed back, while
/// it handled its stop signal. Stops at the first such entry; past [`STRAGGLER_WALK_LIMIT`]
/// entries it answers yes.
pub fn stragglers(spec: &ContainerSpec, owner: FilesOwner) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut stack: Vec<std::path::PathBuf> = spec.mounts.iter().map(|m| m.host.clone()).collect();
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        seen += 1;
        if seen > STRAGGLER_WALK_LIMIT {
            return true;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
            return true;
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    false
}

/// `work`, given up at `deadline`.
async fn bounded<T>(
    deadline: Instant,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let start = Instant::now();
    tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "did not finish within {}",
                rig_types::GoDuration::from_std(deadline.saturating_duration_since(start))
            ))
        })
}

/// Runs `chown <args>` as root in a new container of `spec`'s image with its mounts (and no
/// network), waits for it and removes it.
async fn helper(
    docker: &Docker,
    spec: &ContainerSpec,
    args: Vec<String>,
    reaper: Option<&Arc<Reaper>>,
) -> Result<(), String> {
    let binds = spec.binds();
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec!["chown".to_string()]),
        cmd: Some(args),
        user: Some("0".to_string()),
        labels: Some(labels(&spec.instance, &spec.service)),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some("none".to_string()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let id = docker
        .create_container(None, body)
        .await
        .map_err(|e| format!("create: {e}"))?
        .id;
    // Removed even when the hand-back's deadline drops this future.
    let removal = Removal::track(docker, &id, reaper.cloned(), Duration::ZERO);
    let result = run_to_end(docker, &id).await;
    removal.remove().await;
    result
}

/// Starts container `id` and waits for it to exit 0.
async fn run_to_end(docker: &Docker, id: &str) -> Result<(), String> {
    docker
        .start_container(id, None)
        .await
        .map_err(|e| format!("start: {e}"))?;
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    match docker.wait_container(id, Some(options)).next().await {
        Some(Ok(_)) => Ok(()),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
            Err(format!("chown exited with code {code}"))
        }
        Some(Err(e)) => Err(format!("wait: {e}")),
        None => Err("wait: the engine ended the wait".to_string()),
    }
}

/// The remark for the service's log when [`hand_back`] failed with `error`.
pub fn hand_back_failed(spec: &ContainerSpec, owner: FilesOwner, error: &str) -> String {
    let mounts: Vec<&str> = spec.mounts.iter().map(|m| m.container.as_str()).collect();
    format!(
        "could not give what the container wrote under {} to rigd's user ({}): {error}; \
         rigd may be unable to remove the files it wrote as root (its image needs a `chown` \
         for this, or run it as rigd's user)",
        mounts.join(" and "),
        owner.spec()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_whose_root_is_not_the_hosts_are_recognised() {
        let options = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!remaps_root(&[]));
        assert!(!remaps_root(&options(&[
            "name=seccomp,profile=default",
            "name=apparmor",
            "name=cgroupns"
        ])));
        assert!(remaps_root(&options(&[
            "name=seccomp,profile=default",
            "name=rootless",
            "name=cgroupns"
        ])));
        assert!(remaps_root(&options(&["name=apparmor", "name=userns"])));
        assert!(remaps_root(&options(&["name=selinux, name=userns"])));
        assert!(!remaps_root(&options(&["name=seccomp,profile=rootless"])));
    }

    #[test]
    fn files_go_to_rigds_user_unless_it_is_root_or_told_otherwise() {
        let user = |uid, gid| Ok(Some(FilesOwner { uid, gid }));
        assert_eq!(owner_from(None, 1000, 100), user(1000, 100));
        assert_eq!(owner_from(None, 0, 0), Ok(None));
        assert_eq!(owner_from(Some(""), 0, 0), Ok(None));
        assert_eq!(owner_from(Some("4321:8765"), 0, 0), user(4321, 8765));
        assert_eq!(owner_from(Some("4321:8765"), 1000, 100), user(4321, 8765));
        let err = owner_from(Some("nobody"), 0, 0).unwrap_err();
        assert!(err.contains("is not <uid>:<gid>"), "{err}");
    }
}
