//! Commands on a running rigd: finding it (never starting one), picking an environment by
//! name or id, and following an environment's traffic or logs over SSE.
//!
//! rigd is found, in order, at `--server`, `$RIG_SERVER_ADDR`, or the address in an addr file
//! of the rig dir (`rigd-v<version>.addr`, `rigd.addr`, then any other `rigd-v*.addr`) that
//! answers `GET /health`.

use std::path::PathBuf;

use rig_types::{Event, EventType};

use super::client::{ClientError, EnvironmentSummary, RigdClient};
use super::error::{CliError, CmdResult, EXIT_OK};
use super::logdir::{self, close_names, normalize};
use super::logs::{rows_of, LogFilter, LogRenderer};
use super::output::{eprint_line, one_line, pad, Out, Paint, ServiceColors, Style};
use super::traffic::{JsonRow, Row, RowBuilder, TrafficFilter};
use super::{autostart, format};

/// A running rigd and where its address came from.
#[derive(Debug, Clone)]
pub struct Running {
    /// The client.
    pub client: RigdClient,
    /// `--server`, `RIG_SERVER_ADDR` or the addr file.
    pub source: String,
}

/// Finds a running rigd without starting one (see the module docs).
pub async fn find_running(server: Option<&str>) -> Result<Running, CliError> {
    let given = match server.filter(|s| !s.trim().is_empty()) {
        Some(s) => Some((s.to_string(), "--server".to_string())),
        None => std::env::var("RIG_SERVER_ADDR")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(|s| (s, "RIG_SERVER_ADDR".to_string())),
    };
    if let Some((addr, source)) = given {
        let client =
            RigdClient::new(addr.trim()).map_err(|e| CliError::usage(format!("{source}: {e}")))?;
        let health = client.health_patiently().await.map_err(|e| {
            CliError::failed(format!("no rigd answering at {addr} (from {source}): {e}"))
        })?;
        compatible(&health, &addr)?;
        return Ok(Running { client, source });
    }
    let dir = logdir::rig_dir();
    let files = addr_files(&dir);
    let mut tried = Vec::new();
    let mut slow = false;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let addr = text.trim();
        if addr.is_empty() {
            continue;
        }
        let Ok(client) = RigdClient::new(addr) else {
            continue;
        };
        match client.health_patiently().await {
            Ok(health) => {
                compatible(&health, addr)?;
                return Ok(Running {
                    client,
                    source: file.display().to_string(),
                });
            }
            Err(e) => {
                slow |= matches!(e, ClientError::Timeout { .. });
                tried.push(format!("{} ({addr}): {e}", file.display()));
            }
        }
    }
    Err(not_found(&dir, &tried, slow))
}

/// Why no rigd was found: no addr file, addr files of rigds that are gone, or a rigd that
/// took the connection but did not answer (`slow`), which is there but stuck or overloaded.
fn not_found(dir: &std::path::Path, tried: &[String], slow: bool) -> CliError {
    if slow {
        return CliError::failed(format!(
            "rigd is not answering ({}); it is running but stuck or overloaded: its log is \
             {}",
            tried.join("; "),
            dir.join("rigd.log").display()
        ));
    }
    let detail = if tried.is_empty() {
        format!("no addr file in {}", dir.display())
    } else {
        format!("stale addr files: {}", tried.join("; "))
    };
    CliError::failed(format!(
        "rigd is not running ({detail}); start an environment with `rig up <spec.json>`, or \
         point --server or RIG_SERVER_ADDR at a running rigd"
    ))
}

/// Fails when rigd speaks another API version than this `rig`.
fn compatible(health: &rig_types::Health, addr: &str) -> Result<(), CliError> {
    match health.incompatibility() {
        None => Ok(()),
        Some(why) => Err(CliError::failed(format!(
            "the rigd at {addr} cannot be used: {why}; use the rig built with it, or stop it \
             and let `rig up` start a matching one"
        ))),
    }
}

/// The addr files to try, in order.
fn addr_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = vec![
        dir.join(format!("rigd-v{}.addr", autostart::VERSION)),
        dir.join("rigd.addr"),
    ];
    let mut others: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rigd-v") && n.ends_with(".addr"))
        })
        .filter(|p| !out.contains(p))
        .collect();
    others.sort();
    out.extend(others);
    out
}

/// The active environments, or a failure that says how to get one. Those being torn down
/// are left out: there is nothing left to follow or end.
pub async fn environments(running: &Running) -> Result<Vec<EnvironmentSummary>, CliError> {
    let mut envs = all_environments(running).await?;
    envs.retain(|e| !e.is_ending());
    Ok(envs)
}

/// Every environment rigd lists, those being torn down included.
pub async fn all_environments(running: &Running) -> Result<Vec<EnvironmentSummary>, CliError> {
    running
        .client
        .list_environments()
        .await
        .map_err(|e| CliError::failed(format!("listing environments: {e}")))
}

/// Picks the environment `arg` names: an exact id, else the name (case-insensitive, `/`
/// and `_` alike), else a unique substring of a name or id. Without `arg`, the only active
/// environment.
pub fn pick<'a>(
    envs: &'a [EnvironmentSummary],
    arg: Option<&str>,
    addr: &str,
) -> Result<&'a EnvironmentSummary, CliError> {
    if envs.is_empty() {
        return Err(CliError::failed(format!(
            "no active environments on rigd at {addr} (start one with `rig up <spec.json>`)"
        )));
    }
    let Some(arg) = arg else {
        if envs.len() == 1 {
            return Ok(&envs[0]);
        }
        return Err(CliError::usage(format!(
            "{} environments are active; name one:\n{}",
            envs.len(),
            list(envs.iter())
        )));
    };
    let matches = matching(envs, arg);
    match matches.len() {
        1 => Ok(matches[0]),
        0 => {
            let close = close_names(arg, envs.iter().map(|e| e.name.clone()), 5);
            let mut message = format!("no environment matching {arg:?}");
            if !close.is_empty() {
                message.push_str(&format!("; did you mean {}?", close.join(", ")));
            }
            message.push_str(&format!("\nActive environments:\n{}", list(envs.iter())));
            Err(CliError::failed(message))
        }
        n => Err(CliError::failed(format!(
            "ambiguous match {arg:?}: {n} environments match; use the id:\n{}",
            list(matches.into_iter())
        ))),
    }
}

/// Every environment `arg` selects (see [`pick`]), for commands that accept several.
pub fn matching<'a>(envs: &'a [EnvironmentSummary], arg: &str) -> Vec<&'a EnvironmentSummary> {
    let exact = named(envs, arg);
    if !exact.is_empty() {
        return exact;
    }
    let want = normalize(arg);
    envs.iter()
        .filter(|e| normalize(&e.name).contains(&want) || e.id.contains(&want))
        .collect()
}

/// The environments `arg` names in full: the one with that id, else those with that name
/// (case-insensitive, `/` and `_` alike); no partial matches.
pub fn named<'a>(envs: &'a [EnvironmentSummary], arg: &str) -> Vec<&'a EnvironmentSummary> {
    if let Some(e) = envs.iter().find(|e| e.id == arg) {
        return vec![e];
    }
    let want = normalize(arg);
    envs.iter().filter(|e| normalize(&e.name) == want).collect()
}

/// One line per environment, `  name  id`, for messages that list them.
pub fn list<'a>(envs: impl Iterator<Item = &'a EnvironmentSummary>) -> String {
    envs.map(|e| format!("  {}  {}", e.name, e.id))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `rig traffic --follow`.
pub async fn follow_traffic(
    server: Option<String>,
    target: Option<String>,
    filter: TrafficFilter,
    style: Style,
    json: bool,
) -> CmdResult {
    let (running, env) = attach_following(&server, &target, "traffic", style, json).await?;
    let mut stream = running.client.events(&env.id, None);
    let mut builder = RowBuilder::new(None);
    let mut colors = ServiceColors::default();
    let mut printed = 0usize;
    loop {
        let event = match next_event(&mut stream).await? {
            Some(e) => e,
            None => break,
        };
        if let Some(row) = builder.row(&event) {
            if filter.keep(&row) {
                if json {
                    Out.line(serde_json::to_string(&JsonRow::of(&row)).unwrap_or_default());
                } else {
                    if printed == 0 {
                        Out.line(style.paint(Paint::Bold, &follow_header()));
                    }
                    Out.line(follow_line(&row, &mut colors, style));
                }
                printed += 1;
            }
        }
        if event.event_type == EventType::EnvironmentDown {
            if !json {
                ended(&env, &event, style);
            }
            break;
        }
    }
    Ok(EXIT_OK)
}

/// Column widths of the streamed table: `#`, TIME, EDGE, METHOD, PATH/SERVICE, STATUS.
const FOLLOW_WIDTHS: [usize; 6] = [4, 8, 28, 6, 24, 6];

/// The header of the streamed table, in the widths of [`follow_line`].
fn follow_header() -> String {
    let titles = ["#", "TIME", "EDGE", "METHOD", "PATH/SERVICE", "STATUS"];
    let mut out: Vec<String> = titles
        .iter()
        .zip(FOLLOW_WIDTHS)
        .map(|(t, w)| pad(t, w))
        .collect();
    out.push("LATENCY".into());
    out.join("  ")
}

/// One streamed traffic line, in fixed columns (the widths cannot be known in advance).
fn follow_line(row: &Row, colors: &mut ServiceColors, style: Style) -> String {
    let [w_index, w_time, w_edge, w_method, w_path, w_status] = FOLLOW_WIDTHS;
    let edge_plain = format!("{} → {}", row.source, row.target);
    let edge = format!(
        "{} → {}{}",
        style.paint(colors.of(row.source), row.source),
        style.paint(colors.of(row.target), row.target),
        " ".repeat(w_edge.saturating_sub(edge_plain.chars().count()))
    );
    let status = pad(&row.status, w_status);
    let status = match row.status_paint {
        Some(p) => style.paint(p, &status),
        None => status,
    };
    // What the traffic carried (a path, a gRPC message, an error) is escaped, as in the table:
    // a newline or an escape sequence in it must not reach the terminal.
    let mut line = format!(
        "{}  {}  {edge}  {}  {}  {status}  {}",
        pad(&row.index.to_string(), w_index),
        pad(&format::relative(row.time_s), w_time),
        style.paint(Paint::Cyan, &pad(&one_line(row.method.clone()), w_method)),
        pad(&one_line(row.path.clone()), w_path),
        format::latency(row.latency_ms),
    );
    if !row.extra.is_empty() {
        line.push_str("  ");
        line.push_str(&one_line(row.extra.clone()));
    }
    line.trim_end().to_string()
}

/// `rig logs --follow`.
pub async fn follow_logs(
    server: Option<String>,
    target: Option<String>,
    filter: LogFilter,
    style: Style,
    json: bool,
) -> CmdResult {
    let (running, env) = attach_following(&server, &target, "logs", style, json).await?;
    let width = env
        .services
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0);
    let mut renderer = LogRenderer::new(style, width);
    let mut stream = running.client.events(&env.id, None).with_logs(true);
    let mut start = None;
    loop {
        let event = match next_event(&mut stream).await? {
            Some(e) => e,
            None => break,
        };
        if start.is_none() && !event.timestamp.is_zero() {
            start = Some(event.timestamp);
        }
        for row in rows_of(&event, start).iter().filter(|r| filter.keep(r)) {
            if json {
                Out.line(serde_json::to_string(row).unwrap_or_default());
            } else {
                Out.line(renderer.line(row));
            }
        }
        if event.event_type == EventType::EnvironmentDown {
            if !json {
                ended(&env, &event, style);
            }
            break;
        }
    }
    Ok(EXIT_OK)
}

/// [`attach`], then (unless the output is JSON) says on stderr which environment's `what`
/// (`traffic`, `logs`) is followed and how to stop.
async fn attach_following(
    server: &Option<String>,
    target: &Option<String>,
    what: &str,
    style: Style,
    json: bool,
) -> Result<(Running, EnvironmentSummary), CliError> {
    let (running, env) = attach(server.as_deref(), target.as_deref())
        .await
        .map_err(|e| with_finished_run(e, target.as_deref(), what))?;
    if !json {
        eprint_line(style.paint(
            Paint::Dim,
            &format!(
                "following the {what} of {} ({}) on rigd {}; Ctrl-C to stop",
                env.name,
                env.id,
                running.client.addr()
            ),
        ));
    }
    Ok((running, env))
}

/// `e`, the failure to find `target` running, plus where its finished run's log is when one
/// of that name was written: a run that ended is read without `--follow`.
fn with_finished_run(e: CliError, target: Option<&str>, what: &str) -> CliError {
    let CliError::Failed(message) = &e else {
        return e;
    };
    let Some(target) = target else { return e };
    let Ok(found) = logdir::find(&logdir::log_dir(), Some(target)) else {
        return e;
    };
    let Some(log) = found
        .iter()
        .filter(|f| f.matched == logdir::Match::Exact)
        .min_by(|a, b| logdir::FoundLog::newest_first(a, b))
    else {
        return e;
    };
    CliError::failed(format!(
        "{message}\n{target} is not running: its run has ended and its log is {}; `rig {what} \
         {target}` (without --follow) reads it",
        log.path.display()
    ))
}

/// Finds rigd and the environment to follow.
async fn attach(
    server: Option<&str>,
    target: Option<&str>,
) -> Result<(Running, EnvironmentSummary), CliError> {
    let running = find_running(server).await?;
    let envs = environments(&running).await?;
    let env = pick(&envs, target, running.client.addr())?.clone();
    Ok((running, env))
}

/// The next event; `None` when the stream ended (the environment was torn down). Malformed
/// events are reported and skipped.
async fn next_event(
    stream: &mut super::event_stream::EventStream,
) -> Result<Option<Event>, CliError> {
    loop {
        match stream.next().await {
            None => return Ok(None),
            Some(Ok(e)) => return Ok(Some(e)),
            Some(Err(e)) if e.is_recoverable() => eprint_line(format!("rig: {e}")),
            Some(Err(ClientError::EnvironmentGone { .. })) => return Ok(None),
            Some(Err(e)) => return Err(CliError::failed(e.to_string())),
        }
    }
}

fn ended(env: &EnvironmentSummary, down: &Event, style: Style) {
    if down.message.is_empty() {
        eprint_line(style.paint(
            Paint::Dim,
            &format!("environment {} ({}) is down", env.name, env.id),
        ));
    } else {
        eprint_line(style.paint(
            Paint::Red,
            &format!("environment {} ({}) is down:", env.name, env.id),
        ));
        for l in down.message.lines() {
            eprint_line(format!("  {l}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str, name: &str) -> EnvironmentSummary {
        EnvironmentSummary {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn streamed_rows_line_up_with_the_header() {
        let event: Event = serde_json::from_str(
            r#"{"seq":3,"type":"request.completed","request":{"source":"~test","target":"api","ingress":"default","method":"GET","path":"/x","status_code":200,"latency_ms":1.5,"request_size":0,"response_size":0},"timestamp":"2026-01-01T00:00:01Z"}"#,
        )
        .unwrap();
        let mut builder = RowBuilder::new("2026-01-01T00:00:00Z".parse().ok());
        let row = builder.row(&event).unwrap();
        let line = follow_line(&row, &mut ServiceColors::default(), Style::plain());
        let header = follow_header();
        assert_eq!(
            line,
            "1     1.000s    ~test → api                   GET     /x                        200     1.5ms"
        );
        for title in [
            "TIME",
            "EDGE",
            "METHOD",
            "PATH/SERVICE",
            "STATUS",
            "LATENCY",
        ] {
            let at = header.find(title).unwrap();
            let col = header[..at].chars().count();
            let cell: String = line.chars().skip(col).take(1).collect();
            assert_ne!(cell, " ", "{title} starts a cell: {header}\n{line}");
        }
    }

    #[test]
    fn what_the_traffic_carried_is_escaped_in_a_streamed_row() {
        let event: Event = serde_json::from_str(
            r#"{"seq":3,"type":"request.completed","request":{"source":"~test","target":"api","ingress":"default","method":"GET","path":"/x\u001b[2J\nfake","status_code":502,"latency_ms":1.5,"request_size":0,"response_size":0,"error":"reset\nby peer"},"timestamp":"2026-01-01T00:00:01Z"}"#,
        )
        .unwrap();
        let mut builder = RowBuilder::new("2026-01-01T00:00:00Z".parse().ok());
        let row = builder.row(&event).unwrap();
        let line = follow_line(&row, &mut ServiceColors::default(), Style::plain());
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("/x\\u{1b}[2J\\nfake"), "{line}");
        assert!(line.contains("reset\\nby peer"), "{line}");
    }

    #[test]
    fn pick_by_id_name_substring_and_only_one() {
        let envs = [
            env("19a-1", "TestOrderFlow/Go"),
            env("19a-2", "TestOrderFlow/Func"),
            env("19a-3", "demo"),
        ];
        assert_eq!(pick(&envs, Some("19a-2"), "x").unwrap().id, "19a-2");
        assert_eq!(
            pick(&envs, Some("testorderflow_go"), "x").unwrap().id,
            "19a-1"
        );
        assert_eq!(pick(&envs, Some("dem"), "x").unwrap().id, "19a-3");
        let err = pick(&envs, Some("Order"), "x").unwrap_err();
        assert!(
            err.message().starts_with("ambiguous match \"Order\": 2"),
            "{err}"
        );
        let err = pick(&envs, Some("demx"), "x").unwrap_err();
        assert!(err.message().contains("did you mean demo?"), "{err}");
        assert!(err.message().contains("  demo  19a-3"), "{err}");
        assert!(pick(&envs, None, "x").is_err());
        assert_eq!(pick(&envs[2..], None, "x").unwrap().id, "19a-3");
        assert!(pick(&[], None, "x")
            .unwrap_err()
            .message()
            .starts_with("no active environments"));
    }
}
