//! The `process` type: runs a command as a child process in its own process group.
//!
//! Config: `{"command": "<path or name>", "dir": "<optional working directory>", "env":
//! {"NAME": "value"}}`. The child gets exactly the service environment (the client's `host_env`
//! plus the wiring, then the config's `env`, a rig-rs addition for per-service variables), its
//! arguments expanded against that environment, and its stdout/stderr streamed into the event
//! log. Stopping sends SIGINT to the whole group, then SIGKILL after the grace period. The
//! child also carries a run tag (`RIG_RUN`), inherited by whatever it starts, so processes
//! that left the group (`setsid`, daemons) are killed with it. If rigd dies, its reaper (or
//! the next rigd) kills the group and the tagged processes (`crate::reaper`), so no child
//! outlives rigd.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rig_types::{Endpoint, LogStream};
use serde::Deserialize;
use tokio::process::{Child, Command};

use super::{config, AdviceFuture, RunContext, RunFuture, ServiceError, ServiceRef, ServiceType};
use crate::ready::listeners;
use crate::wiring::{expand_templates, unset_names};

/// The `process` service type.
pub struct Process;

#[derive(Deserialize, Default)]
struct ProcessConfig {
    #[serde(default)]
    command: String,
    #[serde(default)]
    dir: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// The keys a `process` config takes.
pub(crate) fn config_fields() -> &'static [&'static str] {
    config::struct_fields::<ProcessConfig>()
}

impl ServiceType for Process {
    fn run(&self, ctx: RunContext) -> RunFuture {
        Box::pin(run(ctx))
    }

    fn not_ready_advice(
        &self,
        service: &ServiceRef,
        ingress: &str,
        endpoint: &Endpoint,
    ) -> Option<AdviceFuture> {
        listening_advice(service, ingress, endpoint)
    }
}

/// [`ServiceType::not_ready_advice`] for a service run by [`run_program`]: where the
/// processes carrying its run tag (all it started) listen, against the port of `ingress`.
pub(crate) fn listening_advice(
    service: &ServiceRef,
    ingress: &str,
    endpoint: &Endpoint,
) -> Option<AdviceFuture> {
    let port = endpoint.port()?;
    let port_name = format!("${}", crate::wiring::env::port_variable(ingress));
    let tag_prefix = format!("{}/{}/", service.instance_id, service.service);
    Some(Box::pin(async move {
        tokio::task::spawn_blocking(move || {
            let listening = listeners::of_tagged(crate::reaper::RUN_TAG_VAR, &tag_prefix)?;
            listeners::advice(&listening, port, &port_name, false, None)
        })
        .await
        .ok()
        .flatten()
    }))
}

async fn run(ctx: RunContext) -> Result<(), ServiceError> {
    let config: ProcessConfig = config::decode(
        ctx.spec.config.as_ref(),
        "process config",
        r#"{"command": "./server", "dir": "<working directory>", "env": {"NAME": "value"}}"#,
    )?;
    if config.command.is_empty() {
        return Err(ServiceError::new(
            "process config needs \"command\": the program to run (a path or a name on PATH)",
        ));
    }
    let mut env = ctx.env.clone();
    env.extend(config.env);
    let dir = working_dir(&config.dir, &ctx.spec_dir);
    let program = resolve_program(&config.command, dir.as_deref(), &env)?;
    run_program(ctx, &program, dir.as_deref(), &env).await
}

/// Runs `program` as the service: the spec's args expanded against `env`, exactly `env` as
/// its environment, output into the log, stopped (SIGINT, then SIGKILL after the grace
/// period) when the service is told to stop. Shared by every type that runs a local binary.
pub(crate) async fn run_program(
    ctx: RunContext,
    program: &Path,
    dir: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<(), ServiceError> {
    ctx.output.note(unset_names("args", &ctx.spec.args, env));
    let args = expand_templates(&ctx.spec.args, env);
    let tag = run_tag(&ctx.instance_id, &ctx.service);
    let spawned_after = crate::reaper::boot_ticks_now();
    let mut child = spawn(program, &args, dir, env, Some(&tag))
        .map_err(|e| ServiceError::new(spawn_error(program, dir, &args, env, &e)))?;
    let pgid = child.id().map(|pid| pid as i32);
    if let (Some(reaper), Some(pgid)) = (&ctx.reaper, pgid) {
        reaper.track_group_tagged(pgid, spawned_after, &tag);
    }
    let group = pgid.map(|pgid| GroupKill {
        pgid,
        tag,
        reaper: ctx.reaper.clone(),
        done: false,
    });

    let mut readers = OutputReaders::default();
    if let Some(out) = child.stdout.take() {
        readers.spawn(ctx.output.clone().pump(out, LogStream::Stdout));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(ctx.output.clone().pump(err, LogStream::Stderr));
    }

    let outcome = tokio::select! {
        status = child.wait() => Exit::BySelf(status),
        _ = ctx.cancel.cancelled() => {
            // Told to stop: how it ended is not a failure, whatever the status; an unclean
            // end is remarked on below.
            Exit::Stopped(stop(&mut child, pgid, spawned_after, ctx.stop_grace).await)
        }
    };
    // Whatever the leader did, nothing it started may outlive it, in its group or not.
    let escaped = match group {
        Some(group) => group.finish().await,
        None => 0,
    };
    // Drain the output so the log holds everything the process wrote before we report.
    readers
        .drain(tokio::time::Instant::now() + OUTPUT_DRAIN)
        .await;
    if let Exit::Stopped(stopped) = &outcome {
        ctx.output.note(stopped.remarks(ctx.stop_grace));
    }
    ctx.output.note(escaped_remark(escaped));
    match outcome {
        Exit::Stopped(_) => Ok(()),
        Exit::BySelf(Ok(status)) => Err(ServiceError::new(describe_exit(status))),
        Exit::BySelf(Err(e)) => Err(ServiceError::new(format!("wait for process: {e}"))),
    }
}

/// rigd's remark on `escaped` processes that had left the service's group and were killed.
fn escaped_remark(escaped: usize) -> Option<String> {
    let (what, were) = match escaped {
        0 => return None,
        1 => ("1 process".to_string(), "was"),
        n => (format!("{n} processes"), "were"),
    };
    Some(format!(
        "{what} it started outside its process group (with setsid, or as a daemon) {were} \
         still running when it ended, and killed (SIGKILL)"
    ))
}

/// How long the output of a process that has ended is still read: a process it started that
/// left its group (`setsid`) and its run tag may hold its stdout open for ever.
pub(crate) const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// A new run tag ([`crate::reaper::RUN_TAG_VAR`]) for `service` of environment `instance`:
/// `<instance id>/<service>/<n>`, `n` counting the processes rigd has started.
pub(crate) fn run_tag(instance: &str, service: &str) -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{instance}/{service}/{n}")
}

/// A service's process group, and the processes carrying its run tag, killed (SIGKILL) when
/// the leader has ended ([`GroupKill::finish`]), and also when the runner itself is dropped
/// before that (mid-stop, say), so nothing of the service outlives it.
struct GroupKill {
    pgid: i32,
    tag: String,
    reaper: Option<std::sync::Arc<crate::reaper::Reaper>>,
    done: bool,
}

impl GroupKill {
    /// Kills what is left of the group, then whatever carries the run tag (processes that
    /// left the group); returns how many of the latter were found.
    async fn finish(mut self) -> usize {
        self.done = true;
        signal_group(self.pgid, libc::SIGKILL);
        let (tag, pgid) = (std::mem::take(&mut self.tag), self.pgid);
        let escaped =
            tokio::task::spawn_blocking(move || crate::reaper::kill_tagged(&[&tag], Some(pgid)))
                .await
                .unwrap_or(0);
        if let Some(reaper) = &self.reaper {
            reaper.untrack_group(self.pgid);
        }
        escaped
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        signal_group(self.pgid, libc::SIGKILL);
        crate::reaper::kill_tagged(&[&self.tag], None);
        if let Some(reaper) = &self.reaper {
            reaper.untrack_group(self.pgid);
        }
    }
}

/// The tasks reading a process's output. Those still reading when dropped, or when
/// [`OutputReaders::drain`] gives up on them, are aborted: their end of the pipe closes, so a
/// process that escaped the kill no longer writes into the log of a finished service.
#[derive(Default)]
pub(crate) struct OutputReaders(Vec<tokio::task::JoinHandle<()>>);

impl OutputReaders {
    /// Runs `reader` as one of these tasks.
    pub(crate) fn spawn(&mut self, reader: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(reader));
    }

    /// Waits until every reader has reached the end of its output, or `deadline`; aborts those
    /// that have not.
    pub(crate) async fn drain(mut self, deadline: tokio::time::Instant) {
        for reader in &mut self.0 {
            let _ = tokio::time::timeout_at(deadline, reader).await;
        }
    }
}

impl Drop for OutputReaders {
    fn drop(&mut self) {
        for reader in &self.0 {
            reader.abort();
        }
    }
}

enum Exit {
    BySelf(std::io::Result<ExitStatus>),
    Stopped(Stopped),
}

/// How a process that was told to stop ended.
struct Stopped {
    status: std::io::Result<ExitStatus>,
    /// It outlived the grace period and was sent SIGKILL.
    killed: bool,
    /// It ended in time, but other processes of its group outlived the grace period and
    /// were sent SIGKILL.
    group_killed: bool,
}

impl Stopped {
    /// rigd's remarks on an unclean stop, for the service's log: [`Stopped::remark`], and
    /// that other processes of its group needed SIGKILL.
    fn remarks(&self, grace: Duration) -> Vec<String> {
        let mut remarks: Vec<String> = self.remark(grace).into_iter().collect();
        if self.group_killed {
            remarks.push(format!(
                "other processes of its group did not exit within {} of SIGINT, so they were \
                 killed (SIGKILL); have them exit on SIGINT, or give rigd a longer --stop-grace",
                rig_types::GoDuration::from_std(grace)
            ));
        }
        remarks
    }

    /// rigd's remark on an unclean stop of the process itself: it needed SIGKILL, or it
    /// answered SIGINT with a failure (a panic in a shutdown handler, say). Ending by SIGINT
    /// itself, with status 0, or with 130 (128 + SIGINT, a shell's way) is clean.
    fn remark(&self, grace: Duration) -> Option<String> {
        if self.killed {
            return Some(format!(
                "did not exit within {} of SIGINT, so it was killed (SIGKILL); have it exit \
                 on SIGINT, or give rigd a longer --stop-grace",
                rig_types::GoDuration::from_std(grace)
            ));
        }
        let status = match &self.status {
            Ok(status) => *status,
            Err(e) => {
                return Some(format!(
                    "told to stop (SIGINT), then: wait for process: {e}"
                ))
            }
        };
        let clean = matches!(status.code(), Some(0 | 130)) || status.signal() == Some(libc::SIGINT);
        (!clean).then(|| {
            format!(
                "ended with {} when told to stop (SIGINT)",
                describe_exit(status)
            )
        })
    }
}

/// SIGINT to the group, then SIGKILL once `grace` has passed. Other processes of the group
/// get the same grace as the leader, even when it exits at once (a wrapper or a supervisor
/// that does not wait for its children): the group is killed when they have all gone or the
/// grace period is over.
async fn stop(child: &mut Child, pgid: Option<i32>, since: u64, grace: Duration) -> Stopped {
    let Some(pgid) = pgid else {
        return Stopped {
            status: child.wait().await,
            killed: false,
            group_killed: false,
        };
    };
    let deadline = tokio::time::Instant::now() + grace;
    interrupt_group(pgid);
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(status) => {
            let group_killed = !group_gone_by(pgid, since, deadline).await;
            if group_killed {
                signal_group(pgid, libc::SIGKILL);
            }
            Stopped {
                status,
                killed: false,
                group_killed,
            }
        }
        Err(_) => {
            signal_group(pgid, libc::SIGKILL);
            Stopped {
                status: child.wait().await,
                killed: true,
                group_killed: false,
            }
        }
    }
}

/// How often a stopping group is checked for processes left.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// Waits until group `pgid` has no live process started since `since` (clock ticks since
/// boot) or `deadline` has passed; true if it has none.
async fn group_gone_by(pgid: i32, since: u64, deadline: tokio::time::Instant) -> bool {
    loop {
        if !group_alive(pgid, since) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Whether group `pgid` still has a live process started since `since`.
fn group_alive(pgid: i32, since: u64) -> bool {
    // SAFETY: kill(2) with signal 0 only checks; a negative pid addresses the group.
    if unsafe { libc::kill(-pgid, 0) } != 0 {
        return std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    }
    // kill(2) counts zombies, which stay until their parent (init, for orphans) reaps them.
    !crate::reaper::group_members(pgid, since).is_empty()
}

/// Sends SIGINT to group `pgid`, then SIGCONT (as systemd follows its stop signal), so that
/// a process frozen with SIGSTOP or SIGTSTP (a debugger, a test that paused it, Ctrl-Z) acts
/// on the SIGINT at once instead of being killed at the end of the grace period. SIGCONT does
/// nothing to a process that runs.
fn interrupt_group(pgid: i32) {
    signal_group(pgid, libc::SIGINT);
    signal_group(pgid, libc::SIGCONT);
}

pub(crate) fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the group.
    // ESRCH (the group is gone) is the expected outcome once everything has exited.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Spawns `program` in a process group of its own with exactly `env` as its environment
/// (plus the run tag `tag`, if any, as [`crate::reaper::RUN_TAG_VAR`]), stdout and stderr
/// piped.
pub(crate) fn spawn(
    program: &Path,
    args: &[String],
    dir: Option<&Path>,
    env: &BTreeMap<String, String>,
    tag: Option<&str>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(env);
    if let Some(tag) = tag {
        cmd.env(crate::reaper::RUN_TAG_VAR, tag);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    // Registered, so services whose ports were closed meanwhile wait for the exec.
    let _fork = crate::ports::forking();
    // No `pre_exec` (and so no `PR_SET_PDEATHSIG`): without one, std spawns with
    // posix_spawn(3), a vfork that does not copy rigd's page tables, several times cheaper
    // than fork(2) per service. Orphans are prevented by the reaper instead (`crate::reaper`).
    cmd.spawn()
}

/// The working directory: config `dir` if absolute; joined to the spec `dir` if relative and
/// the spec has one; as given otherwise (relative to rigd's cwd, the rig dir); the spec `dir`
/// when config `dir` is empty; rigd's cwd when both are empty.
pub(crate) fn working_dir(config_dir: &str, spec_dir: &str) -> Option<PathBuf> {
    match (config_dir, spec_dir) {
        ("", "") => None,
        ("", spec) => Some(PathBuf::from(spec)),
        (dir, spec) if Path::new(dir).is_absolute() || spec.is_empty() => Some(PathBuf::from(dir)),
        (dir, spec) => Some(Path::new(spec).join(dir)),
    }
}

/// Finds the program: a name with a `/` is a path (relative to the working directory); a bare
/// name is looked up on the service's `PATH`, falling back to rigd's own `PATH`.
pub(crate) fn resolve_program(
    command: &str,
    dir: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<PathBuf, ServiceError> {
    if command.contains('/') {
        let path = Path::new(command);
        return Ok(match dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        });
    }
    let rigd_path = std::env::var("PATH").unwrap_or_default();
    let search = env.get("PATH").map(String::as_str).unwrap_or(&rigd_path);
    for entry in search.split(':') {
        let base = if entry.is_empty() {
            Path::new(".")
        } else {
            Path::new(entry)
        };
        let candidate = match dir {
            Some(dir) if base.is_relative() => dir.join(base).join(command),
            _ => base.join(command),
        };
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(ServiceError::new(format!(
        "executable file {command:?} not found in $PATH ({search})"
    )))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Describes how a process ended, in Go's words (`exit status 1`, `signal: killed`).
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        if code == 0 {
            return "exit status 0: the process exited before the environment was torn down \
                    (services must keep running)"
                .to_string();
        }
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(sig) => {
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!("signal: {}{core}", signal_name(sig))
        }
        None => format!("{status}"),
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "hangup",
        libc::SIGINT => "interrupt",
        libc::SIGQUIT => "quit",
        libc::SIGILL => "illegal instruction",
        libc::SIGTRAP => "trace/breakpoint trap",
        libc::SIGABRT => "aborted",
        libc::SIGBUS => "bus error",
        libc::SIGFPE => "floating point exception",
        libc::SIGKILL => "killed",
        libc::SIGUSR1 => "user defined signal 1",
        libc::SIGSEGV => "segmentation fault",
        libc::SIGUSR2 => "user defined signal 2",
        libc::SIGPIPE => "broken pipe",
        libc::SIGALRM => "alarm clock",
        libc::SIGTERM => "terminated",
        other => return format!("signal {other}"),
    };
    name.to_string()
}

/// Why `program` could not be started, blaming what the kernel's error is really about.
fn spawn_error(
    program: &Path,
    dir: Option<&Path>,
    args: &[String],
    env: &BTreeMap<String, String>,
    error: &std::io::Error,
) -> String {
    let path = program;
    let program = path.display();
    // The kernel says "No such file or directory" for a missing working directory too,
    // which would blame the program.
    if let Some(dir) = dir.filter(|dir| !dir.is_dir()) {
        return format!(
            "start {program}: the working directory {} does not exist (the config's or the \
             spec's \"dir\")",
            dir.display()
        );
    }
    // The kernel says "Permission denied" for a directory and for a file without an execute
    // bit alike.
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        if path.is_dir() {
            return format!(
                "start {program}: it is a directory, not a program (\"command\" must name an \
                 executable file)"
            );
        }
        if path.is_file() && !is_executable(path) {
            return format!(
                "start {program}: the file is not executable (make it so with chmod +x, or run \
                 it through its interpreter: \"command\": \"sh\", \"args\": [...])"
            );
        }
    }
    // The kernel says "No such file or directory" for a script whose `#!` interpreter is
    // missing too (a deleted virtualenv, Windows line endings), which would blame the script.
    if error.kind() == std::io::ErrorKind::NotFound && path.is_file() {
        if let Some(message) = missing_interpreter(path) {
            return format!("start {program}: {message}");
        }
    }
    // "nul byte found in provided data" names nothing: say which argument or variable.
    if error.kind() == std::io::ErrorKind::InvalidInput {
        let arg = args.iter().position(|a| a.contains('\0'));
        let var = env
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'));
        let culprit = match (arg, var) {
            (Some(i), _) => Some(format!("argument {} ({:?})", i + 1, args[i])),
            (None, Some((name, _))) => Some(format!("environment variable {name:?}")),
            (None, None) => None,
        };
        if let Some(culprit) = culprit {
            return format!(
                "start {program}: {culprit} contains a NUL character (\\u0000), which a \
                 process cannot be given; remove it from the spec"
            );
        }
    }
    // "Argument list too long" blames the arguments; with rig's wiring it is usually one
    // variable (`RIG_WIRING` of a large environment) over the kernel's limit for a single
    // string, 128 KiB on Linux, or everything together over the total.
    if error.raw_os_error() == Some(libc::E2BIG) {
        let env_bytes: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let arg_bytes: usize = args.iter().map(|a| a.len() + 1).sum();
        let largest = env.iter().max_by_key(|(k, v)| k.len() + v.len());
        let largest = largest
            .map(|(k, v)| {
                format!(
                    "; the largest variable is {k} ({} bytes)",
                    k.len() + v.len() + 1
                )
            })
            .unwrap_or_default();
        return format!(
            "start {program}: {error}: the environment ({env_bytes} bytes in {} variables) \
             and arguments ({arg_bytes} bytes) are over the kernel's limits (128 KiB for any \
             one of them on Linux){largest}",
            env.len()
        );
    }
    format!("start {program}: {error}")
}

/// If `script` starts with a `#!` line naming an interpreter that does not exist: what to
/// say about it.
fn missing_interpreter(script: &Path) -> Option<String> {
    use std::io::Read;
    let mut first = Vec::new();
    std::fs::File::open(script)
        .ok()?
        .take(256)
        .read_to_end(&mut first)
        .ok()?;
    let line = first.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = String::from_utf8_lossy(line);
    // The kernel splits the line at the first space or tab: interpreter, then one argument.
    let interpreter = line
        .trim_start_matches([' ', '\t'])
        .split([' ', '\t'])
        .next()?;
    if interpreter.is_empty() || Path::new(interpreter).exists() {
        return None;
    }
    if let Some(bare) = interpreter.strip_suffix('\r') {
        return Some(format!(
            "its interpreter {interpreter:?} (the script's `#!` line) does not exist: the line \
             ends with a carriage return (\\r), so the script has Windows line endings; \
             convert it (`dos2unix`, or `sed -i 's/\\r$//'`) to run it with {bare}"
        ));
    }
    Some(format!(
        "its interpreter {interpreter} (the script's `#!` line) does not exist; install it, \
         or fix the script's first line"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NUL in an argument or a variable: the error names which.
    #[test]
    fn a_nul_character_is_traced_to_its_argument_or_variable() {
        let program = Path::new("/bin/true");
        let env = BTreeMap::from([("TOKEN".to_string(), "a\0b".to_string())]);
        let error = spawn(program, &[], None, &env, None).expect_err("a NUL cannot be passed");
        assert_eq!(
            spawn_error(program, None, &[], &env, &error),
            "start /bin/true: environment variable \"TOKEN\" contains a NUL character \
             (\\u0000), which a process cannot be given; remove it from the spec"
        );
        let args = ["ok".to_string(), "x\0".to_string()];
        let error = spawn(program, &args, None, &BTreeMap::new(), None).expect_err("nor here");
        assert_eq!(
            spawn_error(program, None, &args, &BTreeMap::new(), &error),
            "start /bin/true: argument 2 (\"x\\0\") contains a NUL character (\\u0000), \
             which a process cannot be given; remove it from the spec"
        );
    }

    /// A variable over the kernel's per-string limit: the error names it, not the arguments.
    #[test]
    fn an_environment_too_large_to_start_names_its_largest_variable() {
        let env = BTreeMap::from([
            ("PATH".to_string(), "/bin:/usr/bin".to_string()),
            ("RIG_WIRING".to_string(), "x".repeat(200 * 1024)),
        ]);
        let program = Path::new("/bin/true");
        let error = spawn(program, &[], None, &env, None).expect_err("the kernel refuses it");
        assert_eq!(error.raw_os_error(), Some(libc::E2BIG));
        let message = spawn_error(program, None, &[], &env, &error);
        assert!(
            message.starts_with("start /bin/true: Argument list too long"),
            "{message}"
        );
        assert!(
            message.ends_with("the largest variable is RIG_WIRING (204811 bytes)"),
            "{message}"
        );
    }

    #[test]
    fn a_directory_or_a_file_without_execute_bit_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::new();
        let error = spawn(dir.path(), &[], None, &env, None).expect_err("a directory cannot run");
        let message = spawn_error(dir.path(), None, &[], &env, &error);
        assert_eq!(
            message,
            format!(
                "start {}: it is a directory, not a program (\"command\" must name an executable \
                 file)",
                dir.path().display()
            )
        );

        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let error = spawn(&script, &[], None, &env, None).expect_err("not executable");
        let message = spawn_error(&script, None, &[], &env, &error);
        assert!(
            message.starts_with(&format!(
                "start {}: the file is not executable (make it so with chmod +x",
                script.display()
            )),
            "{message}"
        );
    }

    /// A script whose `#!` interpreter is missing is not reported as missing itself.
    #[test]
    fn a_missing_interpreter_is_named_not_the_script() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::new();
        let script = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let crlf = script("crlf.sh", "#!/bin/sh\r\necho hi\r\n");
        let error = spawn(&crlf, &[], None, &env, None).expect_err("no /bin/sh\\r");
        assert_eq!(
            spawn_error(&crlf, None, &[], &env, &error),
            format!(
                "start {}: its interpreter \"/bin/sh\\r\" (the script's `#!` line) does not \
                 exist: the line ends with a carriage return (\\r), so the script has Windows \
                 line endings; convert it (`dos2unix`, or `sed -i 's/\\r$//'`) to run it with \
                 /bin/sh",
                crlf.display()
            )
        );
        let venv = dir.path().join("venv/bin/python");
        let gone = script("gone.py", &format!("#! {} -u\nprint(1)\n", venv.display()));
        let error = spawn(&gone, &[], None, &env, None).expect_err("no interpreter");
        assert_eq!(
            spawn_error(&gone, None, &[], &env, &error),
            format!(
                "start {}: its interpreter {} (the script's `#!` line) does not exist; install \
                 it, or fix the script's first line",
                gone.display(),
                venv.display()
            )
        );
        // A script that really is missing is still reported as such.
        let missing = dir.path().join("missing.sh");
        let error = spawn(&missing, &[], None, &env, None).expect_err("no script");
        assert_eq!(
            spawn_error(&missing, None, &[], &env, &error),
            format!("start {}: {error}", missing.display())
        );
    }

    #[test]
    fn working_dir_rules() {
        assert_eq!(working_dir("", ""), None);
        assert_eq!(working_dir("", "/t"), Some(PathBuf::from("/t")));
        assert_eq!(working_dir("/abs", "/t"), Some(PathBuf::from("/abs")));
        assert_eq!(working_dir("sub", "/t"), Some(PathBuf::from("/t/sub")));
        assert_eq!(working_dir("sub", ""), Some(PathBuf::from("sub")));
    }

    #[test]
    fn programs_resolve_on_the_service_path_then_rigd_path() {
        let env = BTreeMap::from([("PATH".to_string(), "/nonexistent:/bin:/usr/bin".to_string())]);
        let sh = resolve_program("sh", None, &env).unwrap();
        assert!(sh.ends_with("sh") && sh.is_absolute());
        // No PATH in the service env: rigd's own PATH is used.
        assert!(resolve_program("sh", None, &BTreeMap::new()).is_ok());
        let err = resolve_program("no-such-program-xyz", None, &env).unwrap_err();
        assert!(err.message().contains("not found in $PATH"), "{err}");
        assert_eq!(
            resolve_program("./bin/api", Some(Path::new("/srv")), &env).unwrap(),
            PathBuf::from("/srv/./bin/api")
        );
    }

    #[test]
    fn exits_are_described_like_go() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(libc::SIGKILL)),
            "signal: killed"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(libc::SIGINT)),
            "signal: interrupt"
        );
        assert!(describe_exit(ExitStatus::from_raw(0)).starts_with("exit status 0"));
    }

    #[test]
    fn a_group_killed_after_its_leader_ended_is_remarked_on() {
        let stopped = Stopped {
            status: Ok(ExitStatus::from_raw(0)),
            killed: false,
            group_killed: true,
        };
        assert_eq!(
            stopped.remarks(Duration::from_secs(5)),
            [
                "other processes of its group did not exit within 5s of SIGINT, so they were \
              killed (SIGKILL); have them exit on SIGINT, or give rigd a longer --stop-grace"
            ]
        );
    }

    #[test]
    fn only_unclean_stops_are_remarked_on() {
        let grace = Duration::from_secs(5);
        let stopped = |raw: i32| Stopped {
            status: Ok(ExitStatus::from_raw(raw)),
            killed: false,
            group_killed: false,
        };
        for clean in [0, 130 << 8, libc::SIGINT] {
            assert_eq!(stopped(clean).remark(grace), None, "{clean}");
        }
        assert_eq!(
            stopped(101 << 8).remark(grace).as_deref(),
            Some("ended with exit status 101 when told to stop (SIGINT)")
        );
        assert_eq!(
            stopped(libc::SIGSEGV | 0x80).remark(grace).as_deref(),
            Some("ended with signal: segmentation fault (core dumped) when told to stop (SIGINT)")
        );
        let killed = Stopped {
            status: Ok(ExitStatus::from_raw(libc::SIGKILL)),
            killed: true,
            group_killed: false,
        };
        assert_eq!(
            killed.remark(grace).as_deref(),
            Some(
                "did not exit within 5s of SIGINT, so it was killed (SIGKILL); have it exit on \
                 SIGINT, or give rigd a longer --stop-grace"
            )
        );
    }
}
