//! `rig ls [pattern]`: the log files of past runs, newest first.

use std::path::Path;

use serde::Serialize;

use super::args::Args;
use super::error::{CliError, CmdResult, EXIT_FAILURE, EXIT_OK};
use super::flags::{self, Opt};
use super::format;
use super::logdir::{self, FoundLog};
use super::output::{Out, Paint, Style};
use super::table::{Cell, Table};
use crate::logfiles::Outcome;

/// `rig ls --help`.
pub const USAGE: &str = "\
Usage: rig ls [pattern] [options]

List the JSONL log files of past runs, newest first (by when each was written).

Arguments:
  [pattern]       keep files whose name matches: a substring, or a glob with * ? [...];
                  case-insensitive, and / matches _ (TestOrderFlow/Go finds TestOrderFlow_Go-...)

Options:
      --failed    only failed and crashed runs
      --passed    only passed runs
  -q, --quiet     print only the paths, one per line (for $(...) and xargs)
  -n, --limit N   at most N files (-n 5 or -n5)
      --json      print a JSON array
      --color WHEN  auto (default; off when NO_COLOR is set), always or never
  -h, --help      show this help

Log files are read from $RIG_LOGS, else $RIG_DIR/logs (default ~/.rig/logs).
Exit status 1 when no file matches; the error lists the closest names.";

const OPTS: &[Opt] = &[
    Opt::switch("--failed", &[]),
    Opt::switch("--passed", &[]),
    Opt::switch("-q", &["--quiet"]),
    Opt::value("-n", &["--limit"]),
    Opt::switch("--json", &[]),
];

#[derive(Serialize)]
struct Entry<'a> {
    path: String,
    environment: &'a str,
    outcome: &'a str,
    timestamp: String,
    duration_ms: f64,
    services: &'a [String],
}

/// Runs `rig ls`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("ls", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("ls", 1, "at most one pattern")?;
    if parsed.has("--failed") && parsed.has("--passed") {
        return Err(CliError::usage(
            "--failed and --passed exclude each other: give one, or neither for every run",
        ));
    }
    let limit = match parsed.value("-n") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            CliError::usage(format!("invalid -n value {v:?}: expected a whole number"))
        })?,
    };
    let style = Style::new(parsed.color.enabled_for_stdout());
    let pattern = parsed.positional_strings().into_iter().next();
    let dir = logdir::log_dir();
    let mut found: Vec<FoundLog> = logdir::find(&dir, pattern.as_deref())?
        .into_iter()
        .filter(|f| f.header.is_some())
        .filter(|f| {
            let outcome = f.header.as_ref().and_then(|h| h.outcome);
            (!parsed.has("--failed") || outcome.is_some_and(Outcome::is_failure))
                && (!parsed.has("--passed") || outcome == Some(Outcome::Passed))
        })
        .collect();
    found.sort_by(FoundLog::newest_first);
    if limit > 0 {
        found.truncate(limit);
    }
    if found.is_empty() {
        if parsed.has("--json") {
            Out.line("[]");
            return Ok(EXIT_FAILURE);
        }
        return Err(nothing_listed(&dir, pattern.as_deref(), &parsed));
    }

    if parsed.has("--json") {
        let entries: Vec<Entry> = found
            .iter()
            .filter_map(|f| {
                let h = f.header.as_ref()?;
                Some(Entry {
                    path: f.path.display().to_string(),
                    environment: &h.environment,
                    outcome: h.outcome.map_or("unknown", Outcome::as_str),
                    timestamp: h.timestamp.to_rfc3339(),
                    duration_ms: h.duration_ms,
                    services: &h.services,
                })
            })
            .collect();
        Out.line(to_json(&entries)?);
        return Ok(EXIT_OK);
    }
    if parsed.has("-q") {
        Out.lines(found.iter().map(|f| f.path.display().to_string()));
        return Ok(EXIT_OK);
    }
    let mut table = Table::new(&["TIME", "OUTCOME", "NAME", "DURATION", "SERVICES"]);
    for f in &found {
        let Some(h) = &f.header else { continue };
        let outcome = h.outcome;
        table.push(vec![
            Cell::plain(format::local_datetime(&h.timestamp)),
            Cell::maybe(
                outcome.map_or("unknown", Outcome::as_str),
                outcome.map(outcome_paint),
            ),
            Cell::plain(h.environment.clone()),
            Cell::plain(format::run_duration(h.duration_ms)),
            Cell::plain(h.services.join(", ")),
        ]);
    }
    Out.lines(table.render(style));
    Ok(EXIT_OK)
}

/// Why `rig ls` listed nothing, and what to run next: a pattern that matches no file gets
/// the close names (as every command that takes a pattern); files that match but not with
/// `--failed`/`--passed` are counted, with the command that lists them.
fn nothing_listed(dir: &Path, pattern: Option<&str>, parsed: &flags::Parsed) -> CliError {
    let matching = logdir::find(dir, pattern)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.header.is_some())
        .count();
    if matching == 0 {
        return logdir::no_match(dir, pattern);
    }
    let which = if parsed.has("--failed") {
        "failed or crashed"
    } else {
        "passed"
    };
    let (files, them) = if matching == 1 {
        ("file", "it")
    } else {
        ("files", "them all")
    };
    let (among, all) = match pattern {
        Some(p) => (
            format!("the {matching} log {files} matching {p:?}"),
            format!("rig ls {p:?}"),
        ),
        None => (
            format!("the {matching} log {files} in {}", dir.display()),
            "rig ls".to_string(),
        ),
    };
    CliError::failed(format!(
        "no {which} runs among {among} (`{all}` lists {them})"
    ))
}

/// The colour of an outcome: passed green, failed and crashed red.
pub fn outcome_paint(o: Outcome) -> Paint {
    match o {
        Outcome::Passed => Paint::Green,
        Outcome::Failed | Outcome::Crashed => Paint::Red,
    }
}

/// Pretty JSON, as every `--json` prints it.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failed(format!("cannot encode JSON: {e}")))
}

/// `value` as an element of a pretty-printed JSON array (each line indented by two spaces),
/// as [`to_json`] prints a whole array: for output printed as it is made.
pub fn json_element<T: Serialize>(value: &T) -> std::io::Result<String> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    // JSON strings escape their newlines, so every newline here is between two lines.
    Ok(format!("  {}", text.replace('\n', "\n  ")))
}
