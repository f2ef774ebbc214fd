//! `rig version`: this CLI's version and, when one is running, rigd's.

use serde::Serialize;

use super::args::Args;
use super::error::{CmdResult, EXIT_OK};
use super::flags::{self, Opt};
use super::live;
use super::ls::to_json;
use super::output::Out;

/// `rig version --help`.
pub const USAGE: &str = "\
Usage: rig version [options]

Print the version of rig and of the running rigd, if any (found as `rig ps` finds it).

Options:
      --json         print {\"rig\": ..., \"rigd\": {\"addr\", \"version\"}}
      --server ADDR  the rigd to ask (default: $RIG_SERVER_ADDR, else the addr file in $RIG_DIR)
  -h, --help         show this help";

const OPTS: &[Opt] = &[Opt::switch("--json", &[]), Opt::value("--server", &[])];

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Serialize)]
struct Versions {
    rig: &'static str,
    rigd: Option<Rigd>,
}

#[derive(Serialize)]
struct Rigd {
    addr: String,
    version: String,
}

/// Runs `rig version`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("version", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("version", 0, "no arguments")?;
    let server = parsed.value("--server").map(str::to_string);
    let json = parsed.has("--json");
    super::block_on(async move {
        let rigd = match live::find_running(server.as_deref()).await {
            Ok(running) => {
                let version = running
                    .client
                    .health()
                    .await
                    .map(|h| h.version)
                    .unwrap_or_default();
                Some(Rigd {
                    addr: running.client.addr().to_string(),
                    version,
                })
            }
            Err(_) => None,
        };
        if json {
            Out.line(to_json(&Versions { rig: VERSION, rigd })?);
            return Ok(EXIT_OK);
        }
        Out.line(format!("rig   {VERSION}"));
        match rigd {
            Some(r) if r.version.is_empty() => Out.line(format!(
                "rigd  unknown version at {} (it does not report one: an upstream or older rigd)",
                r.addr
            )),
            Some(r) => {
                let note = if r.version == VERSION {
                    String::new()
                } else {
                    "  (differs from rig; the wire protocol is shared, but upgrade both to match)"
                        .to_string()
                };
                Out.line(format!("rigd  {} at {}{note}", r.version, r.addr));
            }
            None => Out.line("rigd  not running"),
        }
        Ok(EXIT_OK)
    })
}
