//! The `rig` command-line tool: one module per command, plus the pieces they share.
//!
//! Commands:
//! - [`up`]: bring up an environment from a spec file and follow it;
//! - reading log files: [`ls`], [`traffic`], [`logs`], [`explain`], [`summary`], [`export`]
//!   (HAR);
//! - on the running rigd: [`ps`], [`down`], [`version`], and `traffic`/`logs --follow`
//!   ([`live`]);
//! - [`prune`]: old log files and cache entries.
//!
//! Shared modules:
//! - [`args`]: the argument lexer (no external parser; `--help` on every command), and
//!   [`flags`], the option table each command declares;
//! - [`logdir`] (finding log files by name) and [`logread`] (reading them);
//! - [`table`]: aligned, coloured tables;
//! - [`autostart`]: finding or starting rigd (addr file, `flock`ed lock file, spawn, poll);
//! - [`client`] and [`event_stream`]: the HTTP client for rigd's API and its SSE stream
//!   (parsed by [`sse`]), reconnecting with `Last-Event-ID`. These, [`autostart`] and
//!   [`lockfile`] are re-exported from the SDK crate (`rig::transport`);
//! - [`output`] and [`format`](mod@format): colour (`--color`, `NO_COLOR`) and value formatting;
//! - [`error`]: failures and exit codes (0 ok, 1 failure, 2 usage, 130 interrupted);
//! - [`signals`]: Ctrl-C and SIGTERM for commands that clean up before exiting.

/// The help of the `[file|pattern]` argument of the commands that read one log (`explain`,
/// `export`, `logs`, `traffic`), for their `USAGE` (`concat!`); the rules are
/// [`logdir`]'s.
macro_rules! log_argument_help {
    () => {
        "  [file|pattern]   a JSONL log file, or an environment name: its whole name first, then a
                   glob (*, ?, [..]), then the start of a name, then any part of a log's
                   file name (an id, say); the most recent matching log is read (default:
                   the environment running on rigd if it is the only one, else the most
                   recent log), and which one is said on stderr unless the name was whole;
                   a start or part shared by several environments is an error listing
                   them; an environment of that name (or id) running on rigd is
                   a later run than any file: its log so far is read instead (and when no
                   file matches, one whose name contains the argument)"
    };
}

pub mod args;
pub mod down;
pub mod error;
pub mod explain;
pub mod export;
pub mod flags;
pub mod format;
pub mod live;
pub mod logdir;
pub mod logread;
pub mod logs;
pub mod ls;
pub mod output;
pub mod prune;
pub mod ps;
pub mod signals;
pub mod strict_json;
pub mod summary;
pub mod table;
pub mod traffic;
pub mod up;
pub mod version;

// The transport lives in the SDK crate (`rig-client`, lib name `rig`) so the CLI and Rust
// tests share one client; re-exported here at the paths the CLI has always used.
pub use rig::transport::{autostart, client, event_stream, lockfile, sse};

use std::ffi::OsString;
use std::future::Future;

use args::{is_help, Arg, Args};
use error::{CliError, CmdResult, EXIT_OK, EXIT_USAGE};
use output::{eprint_line, Out};

/// `rig --help`.
pub const USAGE: &str = "\
rig: run test environments from a spec and watch the traffic between their services

Usage: rig <command> [options]

Commands:
  up <spec.json>     bring up an environment, show its endpoints, follow its traffic until Ctrl-C

  ls [pattern]       list the log files of past runs (newest first)
  traffic [file]     the HTTP, gRPC, Kafka and TCP traffic of a run (--follow: a live one)
  logs [file]        the services' output and test notes of a run (--follow: a live one)
  explain [file]     why a run failed
  summary [pattern]  every run at a glance: counts, timings, failures
  export [file]      write a run's HTTP and gRPC exchanges as HAR (--har FILE)

  ps                 the environments on the running rigd and their endpoints
  down <name|id>     tear environments down (--all: every one)
  prune              delete old log files and cache entries (older than 24h; --max-age)
  version            the versions of rig and of the running rigd
  help [command]     show this help, or a command's help

Options:
  -h, --help       show this help
  -V, --version    show the version

Run `rig <command> --help` for a command's options.

Environment:
  RIG_DIR          rigd's base directory (default ~/.rig)
  RIG_LOGS         where log files are read (default $RIG_DIR/logs)
  RIG_SERVER_ADDR  use the rigd at this address instead of finding or starting one
  RIG_BINARY       the rigd binary to start (default: next to rig, then PATH)
  NO_COLOR         turn colour off (unless --color always)";

/// Runs `rig` with `args` (without the program name) and returns the exit status.
pub fn main<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args = Args::new(args);
    let (command, result) = dispatch(&mut args);
    match result {
        Ok(code) => code,
        Err(e) => {
            match &command {
                Some(cmd) => eprint_line(format!("rig {cmd}: {e}")),
                None => eprint_line(format!("rig: {e}")),
            }
            if matches!(e, CliError::Usage(_)) && command.is_none() {
                eprint_line(format!("\n{USAGE}"));
            }
            e.exit_code()
        }
    }
}

/// Picks the command and runs it; returns the command name (for error prefixes) and the
/// outcome.
fn dispatch(args: &mut Args) -> (Option<String>, CmdResult) {
    let first = match args.next_arg() {
        Ok(first) => first,
        Err(e) => return (None, Err(e)),
    };
    let command = match first {
        None => {
            eprint_line(USAGE);
            return (None, Ok(EXIT_USAGE));
        }
        Some(Arg::Flag { name, .. }) if is_help(&name) => {
            Out.line(USAGE);
            return (None, Ok(EXIT_OK));
        }
        Some(Arg::Flag { name, .. }) if name == "-V" || name == "--version" => {
            Out.line(format!("rig {}", env!("CARGO_PKG_VERSION")));
            return (None, Ok(EXIT_OK));
        }
        Some(Arg::Flag { name, .. }) => {
            return (
                None,
                Err(CliError::usage(format!(
                    "unknown option {name} before the command"
                ))),
            )
        }
        Some(Arg::Positional(p)) => p.to_string_lossy().into_owned(),
    };
    let rest = std::mem::replace(args, Args::new(Vec::<OsString>::new()));
    let result = match command.as_str() {
        "up" => block_on(up::run(rest)),
        "ls" => ls::run(rest),
        "traffic" => traffic::run(rest),
        "logs" => logs::run(rest),
        "explain" => explain::run(rest),
        "summary" => summary::run(rest),
        "export" => export::run(rest),
        "ps" => ps::run(rest),
        "down" => down::run(rest),
        "prune" => prune::run(rest),
        "version" => version::run(rest),
        "help" => help(rest),
        other => Err(unknown_command(other)),
    };
    let known = COMMANDS.iter().any(|(name, _)| *name == command) || command == "help";
    (known.then_some(command), result)
}

/// Every command and its help text.
const COMMANDS: &[(&str, &str)] = &[
    ("up", up::USAGE),
    ("ls", ls::USAGE),
    ("traffic", traffic::USAGE),
    ("logs", logs::USAGE),
    ("explain", explain::USAGE),
    ("summary", summary::USAGE),
    ("export", export::USAGE),
    ("ps", ps::USAGE),
    ("down", down::USAGE),
    ("prune", prune::USAGE),
    ("version", version::USAGE),
];

/// The error for an unknown command, naming the closest ones.
fn unknown_command(name: &str) -> CliError {
    let close = logdir::close_names(name, COMMANDS.iter().map(|(n, _)| n.to_string()), 3);
    let hint = if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(", "))
    };
    CliError::usage(format!("unknown command {name:?}{hint}"))
}

/// `rig help [command]`.
fn help(mut args: Args) -> CmdResult {
    match args.next_arg()? {
        None => Out.line(USAGE),
        Some(Arg::Positional(p)) if COMMANDS.iter().any(|(n, _)| p == *n) => {
            let usage = COMMANDS
                .iter()
                .find(|(n, _)| p == *n)
                .map_or("", |(_, u)| u);
            Out.line(usage);
        }
        Some(other) => {
            let name = match other {
                Arg::Positional(p) => p.to_string_lossy().into_owned(),
                Arg::Flag { name, .. } => name,
            };
            return Err(CliError::usage(format!(
                "no help for {name:?}: unknown command"
            )));
        }
    }
    Ok(EXIT_OK)
}

/// Runs `future` to completion on a fresh single-threaded runtime (for the synchronous
/// commands that sometimes ask rigd something).
fn block_on_value<T, F: Future<Output = Result<T, CliError>>>(future: F) -> Result<T, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(future);
    runtime.shutdown_background();
    result
}

/// Runs a command on a fresh single-threaded runtime. The runtime is shut down without
/// waiting for stray tasks, so an exit requested by a second Ctrl-C is immediate.
fn block_on<F: Future<Output = CmdResult>>(future: F) -> CmdResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(future);
    runtime.shutdown_background();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_version_exit_zero() {
        assert_eq!(main(["--help"]), 0);
        assert_eq!(main(["-h"]), 0);
        assert_eq!(main(["help"]), 0);
        assert_eq!(main(["help", "up"]), 0);
        assert_eq!(main(["up", "--help"]), 0);
        assert_eq!(main(["--version"]), 0);
        for (name, _) in COMMANDS {
            assert_eq!(main([*name, "--help"]), 0, "{name} --help");
            assert_eq!(main(["help", name]), 0, "help {name}");
        }
    }

    #[test]
    fn usage_errors_exit_two() {
        assert_eq!(main(Vec::<String>::new()), 2);
        assert_eq!(main(["frobnicate"]), 2);
        assert_eq!(main(["--bogus"]), 2);
        assert_eq!(main(["up"]), 2);
        assert_eq!(main(["up", "a.json", "--nope"]), 2);
        assert_eq!(main(["help", "frobnicate"]), 2);
    }

    #[test]
    fn unreadable_spec_exits_one() {
        assert_eq!(
            main(["up", "/nonexistent/rig-spec.json", "--color", "never"]),
            1
        );
    }
}
