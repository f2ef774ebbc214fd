//! Running a command inside a running container (`exec` hooks).

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

use super::container::write_chunk;
use crate::services::OutputSink;

/// Runs `cmd` in container `container` with `env` (`NAME=value`) added to the container's
/// environment, its output into `output`; a non-zero exit is `exec [<cmd>]: exit code N`.
pub async fn exec(
    docker: &Docker,
    container: &str,
    cmd: &[String],
    env: &[String],
    output: &OutputSink,
) -> Result<(), String> {
    exec_with(docker, container, cmd, env, None, |chunk| {
        write_chunk(output, chunk)
    })
    .await
}

/// Runs `cmd` in container `container` and returns its output (stdout and stderr as they
/// came); a failure (`exec [<cmd>]: exit code N`) quotes it.
pub async fn exec_output(
    docker: &Docker,
    container: &str,
    cmd: &[String],
) -> Result<String, String> {
    exec_output_as(docker, container, cmd, None).await
}

/// [`exec_output`] as `user` (`"0"` for root) when given, else as the container's user.
pub(super) async fn exec_output_as(
    docker: &Docker,
    container: &str,
    cmd: &[String],
    user: Option<&str>,
) -> Result<String, String> {
    let mut text = String::new();
    let result = exec_with(docker, container, cmd, &[], user, |chunk| {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    })
    .await;
    match result {
        Ok(()) => Ok(text),
        Err(e) => Err(format!("{e}: {}", text.trim())),
    }
}

/// Runs `cmd` with `env` added (as `user` when given), handing every chunk of its output to
/// `on_output`.
async fn exec_with(
    docker: &Docker,
    container: &str,
    cmd: &[String],
    env: &[String],
    user: Option<&str>,
    mut on_output: impl FnMut(LogOutput),
) -> Result<(), String> {
    let what = format!("exec {cmd:?}");
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                env: (!env.is_empty()).then(|| env.to_vec()),
                user: user.map(str::to_string),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..CreateExecOptions::default()
            },
        )
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    match docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| format!("{what}: {e}"))?
    {
        StartExecResults::Attached {
            output: mut out, ..
        } => {
            while let Some(Ok(chunk)) = out.next().await {
                on_output(chunk);
            }
        }
        StartExecResults::Detached => {}
    }
    let inspected = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    match inspected.exit_code {
        Some(0) => Ok(()),
        Some(code) => Err(format!("{what}: exit code {code}")),
        None => Err(format!("{what}: no exit code (still running?)")),
    }
}
