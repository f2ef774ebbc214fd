//! `rig down <name|id>...` and `rig down --all`: tear environments down on the running rigd,
//! writing their log files.

use super::args::Args;
use super::client::{DeleteOptions, EnvironmentSummary};
use super::error::{CliError, CmdResult, EXIT_FAILURE, EXIT_OK};
use super::flags::{self, Opt};
use super::live;
use super::output::{eprint_line, Out, Paint, Style};

/// `rig down --help`.
pub const USAGE: &str = "\
Usage: rig down <name|id>... [options]
       rig down --all

Tear down environments on the running rigd (services stopped, log files written, as when a
test ends). An environment is named by its id, its name (case-insensitive; / and _ alike) or
a part of either that matches only one.

Options:
      --all          tear down every active environment
      --preserve     keep the environment directories (they are removed otherwise)
      --server ADDR  the rigd to use (default: $RIG_SERVER_ADDR, else the addr file in $RIG_DIR)
      --color WHEN   auto (default; off when NO_COLOR is set), always or never
  -h, --help         show this help";

const OPTS: &[Opt] = &[
    Opt::switch("--all", &["-a"]),
    Opt::switch("--preserve", &[]),
    Opt::value("--server", &[]),
];

/// Runs `rig down`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("down", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    let names = parsed.positional_strings();
    let all = parsed.has("--all");
    if all && !names.is_empty() {
        return Err(CliError::usage(
            "give either --all or environment names, not both",
        ));
    }
    if !all && names.is_empty() {
        return Err(CliError::usage(
            "which environment? rig down <name|id>... or rig down --all (rig ps lists them)",
        ));
    }
    let style = Style::new(parsed.color.enabled_for_stdout());
    let preserve = parsed.has("--preserve");
    let server = parsed.value("--server").map(str::to_string);
    super::block_on(async move {
        let running = live::find_running(server.as_deref()).await?;
        let envs = live::environments(&running).await?;
        let targets: Vec<EnvironmentSummary> = if all {
            if envs.is_empty() {
                eprint_line(format!(
                    "No active environments on rigd at {}.",
                    running.client.addr()
                ));
                return Ok(EXIT_OK);
            }
            envs.clone()
        } else {
            let mut picked: Vec<EnvironmentSummary> = Vec::new();
            for name in &names {
                let env = live::pick(&envs, Some(name), running.client.addr())?;
                if !picked.iter().any(|p| p.id == env.id) {
                    picked.push(env.clone());
                }
            }
            picked
        };
        let options = DeleteOptions {
            preserve,
            reason: None,
            log: true,
        };
        let mut failed = false;
        for env in &targets {
            match running.client.delete_environment(&env.id, &options).await {
                Ok(resp) => {
                    Out.line(format!(
                        "{} torn down {} ({})",
                        style.paint(Paint::Green, "✓"),
                        env.name,
                        env.id
                    ));
                    if let Some(log) = resp.log_file.as_deref() {
                        Out.line(format!("  {} {log}", style.paint(Paint::Dim, "log:")));
                    }
                    if preserve && !resp.env_dir.is_empty() {
                        Out.line(format!(
                            "  {} {}",
                            style.paint(Paint::Dim, "env dir kept:"),
                            resp.env_dir
                        ));
                    }
                    if let Some(summary) = resp.summary.as_deref().filter(|s| !s.trim().is_empty())
                    {
                        Out.lines(summary.lines().map(|l| format!("  {l}")));
                    }
                }
                Err(e) if e.is_not_found() => {
                    eprint_line(format!(
                        "rig down: environment {} ({}) was already torn down",
                        env.name, env.id
                    ));
                }
                Err(e) => {
                    failed = true;
                    eprint_line(format!("rig down: {} ({}): {e}", env.name, env.id));
                }
            }
        }
        Ok(if failed { EXIT_FAILURE } else { EXIT_OK })
    })
}
