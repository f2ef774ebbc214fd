//! Reading JSONL log files, rigd's and upstream rig's alike (same format): an optional
//! `log.header` first line, then one event per line.
//!
//! Two modes, as upstream: [`Mode::Strict`] (`traffic`, `logs`, `export`) fails on the first
//! line that is not a valid event, naming the line; [`Mode::Lenient`] (`explain`, `summary`)
//! skips such lines. In both modes a last line cut off mid-event (a log still being written,
//! or whose writer was killed) is skipped with a warning on stderr, so the events before it
//! can still be read. Blank lines are always skipped. A file without a header is accepted; its
//! header is then derived from the events ([`LogHeader::for_events`]). A file with neither
//! (empty, or not a log at all) is an error in both modes.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rig_types::{Event, Timestamp};

use super::error::CliError;
use super::output::eprint_line;
use crate::logfiles::{LogHeader, LOG_HEADER_TYPE};

/// How malformed event lines are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A malformed line is an error naming the line.
    Strict,
    /// Malformed lines are skipped.
    Lenient,
}

/// A log file read in full.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The header line, or one derived from the events when the file has none.
    pub header: LogHeader,
    /// True when the file had a header line.
    pub has_header: bool,
    /// Every event, in file order.
    pub events: Vec<Event>,
}

impl LogFile {
    /// The environment's name: the header's, else the first event's.
    pub fn environment(&self) -> &str {
        if !self.header.environment.is_empty() {
            return &self.header.environment;
        }
        self.events
            .iter()
            .map(|e| e.environment.as_str())
            .find(|e| !e.is_empty())
            .unwrap_or("")
    }

    /// The timestamp of the first event (the start of the run), if any.
    pub fn start(&self) -> Option<Timestamp> {
        self.events
            .iter()
            .map(|e| e.timestamp)
            .find(|t| !t.is_zero())
    }
}

/// Reads `path` in full.
pub fn read(path: &Path, mode: Mode) -> Result<LogFile, CliError> {
    let file = File::open(path).map_err(|e| open_error(path, &e))?;
    let mut header = None;
    let mut events = Vec::new();
    let mut reader = BufReader::new(file);
    let mut raw = Vec::new();
    let mut n = 0;
    let cut_off = |n: usize| {
        eprint_line(format!(
            "rig: warning: {}: the last line ({n}) is cut off mid-event, so it is skipped \
             (the log is still being written, or its writer stopped)",
            path.display()
        ))
    };
    loop {
        raw.clear();
        let read = reader.read_until(b'\n', &mut raw).map_err(|e| {
            CliError::failed(format!(
                "{}: line {}: cannot read: {e}",
                path.display(),
                n + 1
            ))
        })?;
        if read == 0 {
            break;
        }
        n += 1;
        // A file cut while being written ends without a newline, possibly inside a character.
        let last = !raw.ends_with(b"\n") || reader.fill_buf().map_or(true, |b| b.is_empty());
        let line = match std::str::from_utf8(&raw) {
            Ok(line) => line,
            Err(_) if last => {
                cut_off(n);
                continue;
            }
            Err(e) if mode == Mode::Strict => {
                return Err(line_error(path, n, &format!("not UTF-8: {e}")));
            }
            Err(_) => continue,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if n == 1 && is_header_line(trimmed) {
            match serde_json::from_str::<LogHeader>(trimmed) {
                Ok(h) => {
                    header = Some(h);
                    continue;
                }
                Err(e) if mode == Mode::Strict => {
                    return Err(line_error(path, n, &e.to_string()));
                }
                Err(_) => continue,
            }
        }
        match serde_json::from_str::<Event>(trimmed) {
            Ok(event) => events.push(event),
            Err(e) if e.is_eof() && last => cut_off(n),
            Err(e) if mode == Mode::Strict => return Err(line_error(path, n, &e.to_string())),
            Err(_) => {}
        }
    }
    let has_header = header.is_some();
    if !has_header && events.is_empty() {
        // Lenient reading skips what is not an event: without this, any file "passed".
        return Err(CliError::failed(format!(
            "{}: not a rig log: it has no log.header line and no event line",
            path.display()
        )));
    }
    let header = header.unwrap_or_else(|| derived_header(&events));
    Ok(LogFile {
        path: path.to_path_buf(),
        header,
        has_header,
        events,
    })
}

/// The log of a single-file command's argument: the log file it names (see
/// [`logdir::resolve_one`](super::logdir::resolve_one)); when no file matches but an
/// environment running on rigd (the one at `server` when given, `--server`) does, its log so
/// far (`GET /environments/{id}/log`), so a hanging test can be inspected before it is torn
/// down.
pub fn load(arg: Option<&str>, mode: Mode, server: Option<&str>) -> Result<LogFile, CliError> {
    let not_found = match super::logdir::resolve_one(arg) {
        Ok(path) => return read(&path, mode),
        Err(e) => e,
    };
    let Some(arg) = arg else {
        return Err(not_found);
    };
    match super::block_on_value(live_log(arg, server)) {
        Ok(Some(log)) => Ok(log),
        // The rigd asked for by name could not be asked: say so, not only that no file
        // matched.
        Err(e) if server.is_some() => Err(CliError::failed(format!("{not_found}; {e}"))),
        Ok(None) | Err(_) => Err(not_found),
    }
}

/// The log so far of the one running environment `arg` names, if rigd runs and exactly one
/// matches. Only the rigd at `server`, when given, is asked, and its failing to answer is an
/// error.
async fn live_log(arg: &str, server: Option<&str>) -> Result<Option<LogFile>, CliError> {
    let running = match super::live::find_running(server).await {
        Ok(running) => running,
        Err(e) if server.is_some() => return Err(e),
        Err(_) => return Ok(None),
    };
    let envs = super::live::environments(&running).await?;
    let matches = super::live::matching(&envs, arg);
    let [env] = matches.as_slice() else {
        return Ok(None);
    };
    let events = running
        .client
        .get_log(&env.id)
        .await
        .map_err(|e| CliError::failed(format!("reading the log of {}: {e}", env.name)))?;
    super::output::eprint_line(format!(
        "(no log file matches {arg:?}; showing the live log of running environment {} ({}) \
         from rigd at {})",
        env.name,
        env.id,
        running.client.addr()
    ));
    let injected: BTreeSet<String> = events
        .iter()
        .map(|e| e.service.clone())
        .filter(|s| s.contains('~'))
        .collect();
    let header = LogHeader::for_events(&env.name, &events, &injected, "", Timestamp::now());
    Ok(Some(LogFile {
        path: PathBuf::from(format!("rigd:{}", env.id)),
        header,
        has_header: false,
        events,
    }))
}

/// Reads only the first line of `path` as a `log.header`.
pub fn read_header(path: &Path) -> Result<LogHeader, CliError> {
    let file = File::open(path).map_err(|e| open_error(path, &e))?;
    let mut first = String::new();
    BufReader::new(file)
        .read_line(&mut first)
        .map_err(|e| CliError::failed(format!("{}: cannot read: {e}", path.display())))?;
    let header: LogHeader = serde_json::from_str(first.trim())
        .map_err(|e| line_error(path, 1, &format!("not a log.header: {e}")))?;
    if !header.is_header() {
        return Err(line_error(
            path,
            1,
            &format!("expected log.header, got {:?}", header.kind),
        ));
    }
    Ok(header)
}

/// A header for a file that has none: the environment of the first event, the outcome and
/// services derived from the events, the last event's time.
fn derived_header(events: &[Event]) -> LogHeader {
    let name = events
        .iter()
        .map(|e| e.environment.as_str())
        .find(|e| !e.is_empty())
        .unwrap_or("");
    let injected: BTreeSet<String> = events
        .iter()
        .map(|e| e.service.clone())
        .filter(|s| s.contains('~'))
        .collect();
    let last = events.last().map(|e| e.timestamp).unwrap_or_default();
    LogHeader::for_events(name, events, &injected, "", last)
}

fn is_header_line(line: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_str::<Kind>(line)
        .ok()
        .and_then(|k| k.kind)
        .is_some_and(|k| k == LOG_HEADER_TYPE)
}

fn open_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::failed(format!("cannot open {}: {e}", path.display()))
}

fn line_error(path: &Path, n: usize, detail: &str) -> CliError {
    CliError::failed(format!(
        "{}: line {n}: {detail} (is this a rig JSONL log?)",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const HEADER: &str = r#"{"type":"log.header","environment":"T","outcome":"failed","services":["api"],"duration_ms":12.5,"timestamp":"2026-02-24T20:33:00+01:00"}"#;
    const EVENT: &str = r#"{"seq":1,"type":"test.note","environment":"T","error":"x_test.go:1: boom","timestamp":"2026-02-24T20:32:59.5+01:00"}"#;

    #[test]
    fn header_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.jsonl", &format!("{HEADER}\n{EVENT}\n\n"));
        let log = read(&path, Mode::Strict).unwrap();
        assert!(log.has_header);
        assert_eq!(log.environment(), "T");
        assert_eq!(log.events.len(), 1);
        assert_eq!(read_header(&path).unwrap().services, ["api"]);
    }

    #[test]
    fn strict_names_the_bad_line_and_lenient_skips_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "b.jsonl",
            &format!("{HEADER}\n{EVENT}\nnot json\n{EVENT}\n"),
        );
        let err = read(&path, Mode::Strict).unwrap_err();
        assert!(err.message().contains("line 3:"), "{err}");
        assert_eq!(read(&path, Mode::Lenient).unwrap().events.len(), 2);
    }

    #[test]
    fn a_last_line_cut_off_is_skipped_in_both_modes() {
        let dir = tempfile::tempdir().unwrap();
        let cut = &EVENT[..EVENT.len() / 2];
        let path = write(&dir, "cut.jsonl", &format!("{HEADER}\n{EVENT}\n{cut}"));
        for mode in [Mode::Strict, Mode::Lenient] {
            assert_eq!(read(&path, mode).unwrap().events.len(), 1, "{mode:?}");
        }
        // Cut off anywhere else, it is a broken line as any other.
        let path = write(
            &dir,
            "cut-inside.jsonl",
            &format!("{HEADER}\n{cut}\n{EVENT}\n"),
        );
        let err = read(&path, Mode::Strict).unwrap_err();
        assert!(err.message().contains("line 2:"), "{err}");
    }

    #[test]
    fn headerless_files_get_a_derived_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "c.jsonl", &format!("{EVENT}\n"));
        let log = read(&path, Mode::Strict).unwrap();
        assert!(!log.has_header);
        assert_eq!(log.header.environment, "T");
        assert!(read_header(&path).is_err());
    }

    #[test]
    fn a_file_that_is_not_a_log_is_an_error_in_both_modes() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_log = "not a rig log: it has no log.header line and no event line";
        let empty = write(&dir, "empty.jsonl", "");
        let passwd = write(&dir, "passwd", "root:x:0:0:root:/root:/bin/sh\n");
        for (path, mode) in [
            (&empty, Mode::Strict),
            (&empty, Mode::Lenient),
            (&passwd, Mode::Lenient),
        ] {
            let err = read(path, mode).unwrap_err();
            assert!(err.message().ends_with(not_a_log), "{mode:?}: {err}");
        }
        // Strict reading names the first line that is not an event, as before.
        let err = read(&passwd, Mode::Strict).unwrap_err();
        assert!(err.message().contains("line 1:"), "{err}");
    }
}
