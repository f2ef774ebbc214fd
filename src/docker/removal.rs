//! Removing a container however the work that created it ends.
//!
//! A container's runner removes it at its end, but the runner may never get there: the
//! lifecycle drops a runner that overruns its shutdown wait, and a bounded step (the helper
//! container of a hand-back) drops its work at its deadline. A [`Removal`] made right after
//! the container is created removes it in every case: by [`Removal::remove`] at the end, or,
//! when dropped before that, by a detached task (stop with the grace period, then forced
//! removal). The reaper forgets the container only once the engine says it is gone, so one
//! the engine could not remove (engine down) is still removed when rigd exits.

use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::StopContainerOptionsBuilder;
use bollard::Docker;

use super::owner::remove;
use crate::reaper::Reaper;

/// How long a detached removal may wait for the engine beyond the stop grace.
const DETACHED_DEADLINE: Duration = Duration::from_secs(30);

/// Owns the removal of one container (see the module docs).
pub(super) struct Removal {
    docker: Docker,
    id: String,
    reaper: Option<Arc<Reaper>>,
    /// The stop grace a detached removal gives the container (zero: killed at once).
    grace: Duration,
    done: bool,
}

impl Removal {
    /// Takes charge of container `id`, registering it with `reaper` (removed if rigd dies).
    pub(super) fn track(
        docker: &Docker,
        id: &str,
        reaper: Option<Arc<Reaper>>,
        grace: Duration,
    ) -> Removal {
        if let Some(reaper) = &reaper {
            reaper.track_container(id);
        }
        Removal {
            docker: docker.clone(),
            id: id.to_string(),
            reaper,
            grace,
            done: false,
        }
    }

    /// Force-removes the container now; true when it is gone (removed, or there was none).
    /// Dropped before it finishes, the removal goes on detached.
    pub(super) async fn remove(mut self) -> bool {
        let gone = remove_and_forget(&self.docker, &self.id, self.reaper.as_deref()).await;
        self.done = true;
        gone
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (rigd is exiting): the reaper removes what it still tracks.
            return;
        };
        let docker = self.docker.clone();
        let id = std::mem::take(&mut self.id);
        let reaper = self.reaper.take();
        let grace = self.grace;
        runtime.spawn(async move {
            let work = async {
                if !grace.is_zero() {
                    stop(&docker, &id, grace).await;
                }
                remove_and_forget(&docker, &id, reaper.as_deref()).await;
            };
            if tokio::time::timeout(grace + DETACHED_DEADLINE, work)
                .await
                .is_err()
            {
                eprintln!(
                    "rigd: container {id} could not be removed within {}; it is removed \
                     when rigd exits",
                    rig_types::GoDuration::from_std(grace + DETACHED_DEADLINE)
                );
            }
        });
    }
}

/// `docker stop` with `grace` between the stop signal and SIGKILL (whole seconds, rounded
/// up). The request may take the whole grace and more, so it is not cut by the client's
/// usual timeout. Errors are ignored: the container is force-removed right after anyway.
pub(crate) async fn stop(docker: &Docker, id: &str, grace: Duration) -> bool {
    let seconds = stop_seconds(grace);
    let options = StopContainerOptionsBuilder::default().t(seconds).build();
    let docker = docker
        .clone()
        .with_timeout(Duration::from_secs(seconds.unsigned_abs().into()) + STOP_MARGIN);
    docker.stop_container(id, Some(options)).await.is_ok()
}

/// How long a stop request may take beyond the grace period (the kill, the engine's own work).
const STOP_MARGIN: Duration = Duration::from_secs(60);

/// `grace` in whole seconds for `docker stop`, rounded up (a grace of 300ms is 1 s, not 0,
/// which the engine takes as "kill at once"), at least 1.
pub(crate) fn stop_seconds(grace: Duration) -> i32 {
    let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
}

/// Force-removes container `id` and forgets it in `reaper`'s record once the engine says it
/// is gone; one the engine could not remove (engine down) stays there, so that the reaper
/// removes it when rigd exits. True when it is gone.
async fn remove_and_forget(docker: &Docker, id: &str, reaper: Option<&Reaper>) -> bool {
    let gone = remove(docker, id).await.gone();
    if let (true, Some(reaper)) = (gone, reaper) {
        reaper.untrack_container(id);
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_graces_round_up_to_whole_seconds() {
        assert_eq!(stop_seconds(Duration::ZERO), 1);
        assert_eq!(stop_seconds(Duration::from_millis(300)), 1);
        assert_eq!(stop_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(stop_seconds(Duration::from_secs(5)), 5);
        assert_eq!(stop_seconds(Duration::from_secs(300)), 300);
    }
}
