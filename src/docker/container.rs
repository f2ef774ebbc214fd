//! Running one container to the end.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{FutureExt, StreamExt};
use rig_types::LogStream;
use tokio_util::sync::CancellationToken;

use super::files_owner::{
    files_owner_for, hand_back, hand_back_failed, stragglers, HAND_BACK_DEADLINE,
    HAND_BACK_WHILE_STOPPING,
};
use super::owner::labels;
use super::removal::{self, Removal};
use crate::reaper::Reaper;
use crate::services::OutputSink;

/// A port published on the host's loopback interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// The port inside the container.
    pub container_port: u16,
    /// The port on `127.0.0.1` of the host; 0 lets the engine pick a free one (read it back
    /// with [`super::host_port`]).
    pub host_port: u16,
}

/// A host directory mounted into the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The host directory.
    pub host: PathBuf,
    /// Where it appears inside the container.
    pub container: String,
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    /// The container name (`rig-<instance>-<service>` for services).
    pub name: String,
    /// The image; must be present locally ([`super::ensure_image`] in the artifact phase).
    pub image: String,
    /// The command; `None` runs the image's default.
    pub cmd: Option<Vec<String>>,
    /// The whole environment of the container's process.
    pub env: BTreeMap<String, String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// The environment instance id and service name, recorded as labels.
    pub instance: String,
    /// The service name.
    pub service: String,
}

impl ContainerSpec {
    /// The bind mounts as the engine takes them, `<host path>:<container path>`.
    pub fn binds(&self) -> Vec<String> {
        self.mounts
            .iter()
            .map(|m| format!("{}:{}", m.host.display(), m.container))
            .collect()
    }
}

/// How a running container is stopped and who must know about it.
#[derive(Clone)]
pub struct StopSettings {
    /// Fires when the container must stop.
    pub cancel: CancellationToken,
    /// Between the stop signal (SIGTERM) and SIGKILL.
    pub grace: Duration,
    /// Removes the container if rigd dies.
    pub reaper: Option<Arc<Reaper>>,
}

/// Creates, starts and follows a container until it exits or `stop.cancel` fires.
///
/// Output goes to `output` (`service.log`, stdout and stderr apart). An exit before
/// cancellation is an error, `container exited with code N` (exit 0 says that services must
/// keep running); cancellation stops the container (SIGTERM, SIGKILL after the grace period)
/// and returns `Ok`. The container is removed in every case, after what it wrote into its
/// mounts has been given to rigd's user (see [`super::files_owner`]).
pub async fn run_container(
    docker: &Docker,
    spec: &ContainerSpec,
    output: &OutputSink,
    stop: &StopSettings,
) -> Result<(), String> {
    let id = create(docker, spec).await?;
    // Removes it even if this future is dropped before its end (the lifecycle gives up on a
    // runner that overruns its shutdown wait).
    let removal = Removal::track(docker, &id, stop.reaper.clone(), stop.grace);
    let result = start_and_follow(docker, &id, spec, output, stop).await;
    removal.remove().await;
    result
}

/// Creates (without starting) the container `spec` describes, labelled with its owner; returns
/// its id.
pub async fn create(docker: &Docker, spec: &ContainerSpec) -> Result<String, String> {
    let mut port_bindings = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.ports {
        let key = format!("{}/tcp", p.container_port);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        // Two ingresses may view one port inside (as HTTP and as raw TCP, say): each gets a
        // host port of its own, bound to the same container port.
        let bindings: &mut Option<Vec<PortBinding>> =
            port_bindings.entry(key).or_insert_with(|| Some(Vec::new()));
        bindings.get_or_insert_with(Vec::new).push(PortBinding {
            host_ip: Some("127.0.0.1".to_string()),
            // An empty host port is the engine's choice.
            host_port: Some(if p.host_port == 0 {
                String::new()
            } else {
                p.host_port.to_string()
            }),
        });
    }
    let binds = spec.binds();
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.cmd.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: Some(exposed),
        labels: Some(labels(&spec.instance, &spec.service)),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            binds: Some(binds),
            // Linux engines do not define it by themselves (Docker Desktop does).
            extra_hosts: Some(vec!["host.docker.internal:host-gateway".to_string()]),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&spec.name)
        .build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| {
            format!(
                "create container {:?} from image {:?}: {e}",
                spec.name, spec.image
            )
        })?;
    Ok(created.id)
}

async fn start_and_follow(
    docker: &Docker,
    id: &str,
    spec: &ContainerSpec,
    output: &OutputSink,
    stop: &StopSettings,
) -> Result<(), String> {
    docker
        .start_container(id, None)
        .await
        .map_err(|e| format!("start container: {e}"))?;
    let logs = Follower::start(docker, id, output);
    let wait_options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut wait = docker.wait_container(id, Some(wait_options));
    let exited = tokio::select! {
        exited = wait.next() => Some(exited),
        _ = stop.cancel.cancelled() => None,
    };
    // While it runs, what it wrote can be handed back from inside it.
    let owner = files_owner_for(docker).await;
    let mut handed_back = None;
    let handing_back = tokio::time::Instant::now();
    if let (None, Some(owner)) = (&exited, owner) {
        // A share of the time the lifecycle waits for a stopping service beyond its grace.
        handed_back = Some(
            hand_back(
                docker,
                id,
                spec,
                true,
                owner,
                stop.reaper.as_ref(),
                HAND_BACK_WHILE_STOPPING,
            )
            .await,
        );
    }
    let drain = if exited.is_some() {
        LOG_DRAIN
    } else {
        LOG_DRAIN_WHILE_STOPPING
    };
    let mut remark = None;
    let result = match exited {
        None => {
            let took = handing_back.elapsed();
            // Removed right after anyway; a failed stop only costs the grace period.
            if removal::stop(docker, id, stop.grace).await {
                let grace =
                    Duration::from_secs(removal::stop_seconds(stop.grace).unsigned_abs().into());
                remark = stop_remark(docker, id, grace).await;
            }
            // What it wrote while handling the stop signal, in what is left of the time.
            let left = HAND_BACK_WHILE_STOPPING.saturating_sub(took);
            if let (Some(Ok(())), Some(owner)) = (&handed_back, owner) {
                let spec_now = spec.clone();
                let late = tokio::task::spawn_blocking(move || stragglers(&spec_now, owner))
                    .await
                    .unwrap_or(true);
                if late && !left.is_zero() {
                    handed_back = Some(
                        hand_back(docker, id, spec, false, owner, stop.reaper.as_ref(), left).await,
                    );
                }
            }
            Ok(())
        }
        Some(Some(Ok(_))) => Err(
            "container exited with code 0 before the environment was torn \
                                  down (services must keep running)"
                .to_string(),
        ),
        Some(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => {
            Err(format!("container exited with code {code}"))
        }
        Some(Some(Err(e))) => Err(format!("wait for container: {e}")),
        Some(None) => Err("wait for container: the engine ended the wait".to_string()),
    };
    if let (None, Some(owner)) = (&handed_back, owner) {
        // It exited on its own.
        handed_back = Some(
            hand_back(
                docker,
                id,
                spec,
                false,
                owner,
                stop.reaper.as_ref(),
                HAND_BACK_DEADLINE,
            )
            .await,
        );
    }
    // The log stream ends when the container stops; let it deliver the last lines (all of
    // them before the runner reports the end), but within the time a stopping service has.
    output.note(logs.finish(drain).await);
    output.note(remark);
    if let (Some(Err(e)), Some(owner)) = (&handed_back, owner) {
        output.note(Some(hand_back_failed(spec, owner, e)));
    }
    result
}

/// rigd's remark on a stopped container that did not stop cleanly, for the service's log: the
/// engine had to kill it (a program running as PID 1 does not die of a signal it does not
/// handle), or it answered the stop signal with a failing exit code.
async fn stop_remark(docker: &Docker, id: &str, grace: Duration) -> Option<String> {
    let inspected = docker.inspect_container(id, None).await.ok()?;
    let code = inspected.state?.exit_code?;
    let signal = inspected
        .config
        .and_then(|config| config.stop_signal)
        .filter(|signal| !signal.is_empty())
        .unwrap_or_else(|| "SIGTERM".to_string());
    unclean_stop(code, &signal, grace)
}

/// The remark for a container that exited with `code` after being sent `signal` (its image's
/// stop signal) and, `grace` later, SIGKILL; `None` for a clean stop (0, or 128 + the signal).
fn unclean_stop(code: i64, signal: &str, grace: Duration) -> Option<String> {
    let name = signal.trim_start_matches("SIG");
    let number = match name.parse::<i64>() {
        Ok(number) => Some(number),
        Err(_) => SIGNALS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, number)| i64::from(number)),
    };
    let signal = format!("SIG{}", name.to_ascii_uppercase());
    if code == 0 || number.is_some_and(|n| code == 128 + n) {
        return None;
    }
    if code == 128 + i64::from(libc::SIGKILL) {
        return Some(format!(
            "did not stop within {} of {signal}, so the engine killed it (SIGKILL); have its \
             program exit on {signal} (as PID 1, a program only dies of a signal it handles), \
             or give rigd a longer --stop-grace",
            rig_types::GoDuration::from_std(grace)
        ));
    }
    Some(format!(
        "exited with code {code} when told to stop ({signal})"
    ))
}

/// Stop signals by name, as images give them (`STOPSIGNAL SIGQUIT`).
const SIGNALS: [(&str, libc::c_int); 7] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("WINCH", libc::SIGWINCH),
];

/// How long the output of a container that exited by itself may take to reach the log after
/// its end; then the rest is read once more (for as long again) without following.
const LOG_DRAIN: Duration = Duration::from_secs(60);

/// How long the log follower may go without writing anything before it is taken to be stuck
/// (and the rest is read without following).
const LOG_PROGRESS: Duration = Duration::from_secs(5);

/// The most container output written as one event.
const LOG_BATCH: usize = 64 * 1024;

/// [`LOG_DRAIN`] for a container told to stop (which the lifecycle waits for only so long).
const LOG_DRAIN_WHILE_STOPPING: Duration = Duration::from_secs(2);

/// Follows a container's stdout and stderr into the service's log until it stops; dropped, it
/// stops following.
struct Follower {
    task: tokio::task::JoinHandle<bool>,
    /// Bytes of stdout and stderr written to the log so far.
    seen: Arc<[AtomicU64; 2]>,
    docker: Docker,
    id: String,
    output: OutputSink,
}

impl Follower {
    fn start(docker: &Docker, id: &str, output: &OutputSink) -> Follower {
        let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let options = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let logs = docker.logs(id, Some(options));
        let task = tokio::spawn({
            let seen = seen.clone();
            let output = output.clone();
            async move { copy_logs(logs, &output, [0, 0], &seen).await.is_ok() }
        });
        Follower {
            task,
            seen,
            docker: docker.clone(),
            id: id.to_string(),
            output: output.clone(),
        }
    }

    /// Waits for the follower to have written the stopped container's last output, for as
    /// long as it makes progress, up to `wait` in all; one that stalls (or failed) is stopped.
    /// Then what it had not written yet is read without following, for up to `wait` again:
    /// also when the follow stream ended cleanly, since the engine may end it at the
    /// container's exit before it has sent everything (seen under heavy load: a crashing
    /// container's follow stream ended after 5,110 of its 100,001 lines).
    /// Returns a remark when the output in the log is cut short.
    async fn finish(mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        let written = |seen: &[AtomicU64; 2]| {
            seen[0].load(Ordering::Relaxed) + seen[1].load(Ordering::Relaxed)
        };
        let mut before = written(&self.seen);
        let ended = loop {
            let check = (tokio::time::Instant::now() + LOG_PROGRESS).min(deadline);
            match tokio::time::timeout_at(check, &mut self.task).await {
                Ok(_) => break true,
                Err(_) => {
                    let now = written(&self.seen);
                    if now == before || check >= deadline {
                        break false;
                    }
                    before = now;
                }
            }
        };
        if !ended {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
        let skip = [
            self.seen[0].load(Ordering::Relaxed),
            self.seen[1].load(Ordering::Relaxed),
        ];
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let logs = self.docker.logs(&self.id, Some(options));
        let rest = copy_logs(logs, &self.output, skip, &self.seen);
        let cut = match tokio::time::timeout(wait, rest).await {
            Ok(Ok(())) => return None,
            Ok(Err(e)) => format!("reading it failed: {e}"),
            Err(_) => format!(
                "it did not reach rigd within {} of the container's end",
                rig_types::GoDuration::from_std(wait * 2)
            ),
        };
        Some(format!(
            "the container's output is cut short here ({cut}); `docker logs` had the rest \
             until the container was removed"
        ))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes container output from `logs` into `output`, after the first `skip` bytes of stdout
/// and of stderr, adding what it writes to `seen`. Chunks that have already arrived are
/// written together (up to [`LOG_BATCH`] bytes, one stream at a time): a chatty container
/// gives a few large events rather than one per line, which the log could not keep up with.
async fn copy_logs(
    mut logs: impl futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
    output: &OutputSink,
    mut skip: [u64; 2],
    seen: &[AtomicU64; 2],
) -> Result<(), String> {
    let mut pending: Option<(usize, Vec<u8>)> = None;
    let flush = |pending: &mut Option<(usize, Vec<u8>)>| {
        if let Some((stream, bytes)) = pending.take() {
            let stream = if stream == 0 {
                LogStream::Stdout
            } else {
                LogStream::Stderr
            };
            output.write(stream, String::from_utf8_lossy(&bytes).into_owned());
        }
    };
    loop {
        let next = match logs.next().now_or_never() {
            Some(next) => next,
            None => {
                // Nothing more has arrived: write what has, then wait.
                flush(&mut pending);
                logs.next().await
            }
        };
        let chunk = match next {
            None => {
                flush(&mut pending);
                return Ok(());
            }
            Some(Err(e)) => {
                flush(&mut pending);
                return Err(e.to_string());
            }
            Some(Ok(chunk)) => chunk,
        };
        let Some((stream, bytes)) = stream_of(&chunk) else {
            continue;
        };
        let skipped = skip[stream].min(bytes.len() as u64);
        skip[stream] -= skipped;
        let bytes = &bytes[skipped as usize..];
        if bytes.is_empty() {
            continue;
        }
        // Counted as written: nothing awaits between here and the write.
        seen[stream].fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if pending
            .as_ref()
            .is_some_and(|(s, p)| *s != stream || p.len() + bytes.len() > LOG_BATCH)
        {
            flush(&mut pending);
        }
        pending
            .get_or_insert_with(|| (stream, Vec::new()))
            .1
            .extend_from_slice(bytes);
    }
}

/// The stream of a chunk (0 for stdout, 1 for stderr) and its bytes; `None` for stdin.
fn stream_of(chunk: &LogOutput) -> Option<(usize, &bytes::Bytes)> {
    match chunk {
        LogOutput::StdOut { message } | LogOutput::Console { message } => Some((0, message)),
        LogOutput::StdErr { message } => Some((1, message)),
        LogOutput::StdIn { .. } => None,
    }
}

/// One demultiplexed chunk of container output into the log.
pub(super) fn write_chunk(output: &OutputSink, chunk: LogOutput) {
    let (stream, bytes) = match chunk {
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (LogStream::Stdout, message)
        }
        LogOutput::StdIn { .. } => return,
    };
    if !bytes.is_empty() {
        output.write(stream, String::from_utf8_lossy(&bytes).into_owned());
    }
}

/// The host port the engine bound to `container_port/tcp` of a running container.
pub async fn host_port(docker: &Docker, id: &str, container_port: u16) -> Result<u16, String> {
    let inspected = docker
        .inspect_container(id, None)
        .await
        .map_err(|e| format!("inspect container: {e}"))?;
    let key = format!("{container_port}/tcp");
    inspected
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|ports| ports.get(&key).cloned().flatten())
        .into_iter()
        .flatten()
        .filter_map(|b| b.host_port?.parse::<u16>().ok())
        .find(|p| *p != 0)
        .ok_or_else(|| format!("the engine published no host port for {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unclean_stops_are_remarked_on() {
        let grace = Duration::from_secs(5);
        assert_eq!(unclean_stop(0, "SIGTERM", grace), None);
        assert_eq!(unclean_stop(143, "SIGTERM", grace), None);
        assert_eq!(unclean_stop(131, "SIGQUIT", grace), None);
        assert_eq!(unclean_stop(131, "3", grace), None);
        assert_eq!(unclean_stop(130, "int", grace), None);
        assert_eq!(
            unclean_stop(143, "SIGQUIT", grace).as_deref(),
            Some("exited with code 143 when told to stop (SIGQUIT)")
        );
        assert_eq!(
            unclean_stop(2, "SIGTERM", grace).as_deref(),
            Some("exited with code 2 when told to stop (SIGTERM)")
        );
        assert_eq!(
            unclean_stop(137, "SIGTERM", grace).as_deref(),
            Some(
                "did not stop within 5s of SIGTERM, so the engine killed it (SIGKILL); have its \
                 program exit on SIGTERM (as PID 1, a program only dies of a signal it \
                 handles), or give rigd a longer --stop-grace"
            )
        );
    }
}
