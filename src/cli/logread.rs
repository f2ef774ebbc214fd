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
//!
//! Logs can be far larger than memory should hold (a chatty service writes hundreds of MB), so
//! they are read as a stream: [`LogStream`] yields one event at a time, and each command keeps
//! only what its output needs. [`read`] (every event in memory) is for small logs and tests.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rig_types::{Event, Timestamp};

use super::client::EnvironmentSummary;
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

/// A log read one event at a time: the header (when the log has one) is read on opening, each
/// event when asked for, so memory does not grow with the log.
///
/// ```ignore
/// let mut log = LogStream::open(path, Mode::Strict)?;
/// while let Some(event) = log.next_event()? {
///     // keep what the output needs
/// }
/// ```
pub struct LogStream {
    /// Where it is read from (`rigd:<id>` for a running environment's log).
    path: PathBuf,
    header: Option<LogHeader>,
    source: Source,
    mode: Mode,
    /// The log file again, when it is a regular file, whose events can be read again by
    /// place (the same file, even if its path is replaced meanwhile).
    again: Option<File>,
    /// How many events were yielded.
    events: usize,
    /// The environment of the first event that names one.
    environment: String,
    /// The timestamp of the first event that has one.
    start: Option<Timestamp>,
    /// When a derived header says the log was written (default: the last event's time).
    written: Option<Timestamp>,
}

/// Where a [`LogStream`]'s events come from.
enum Source {
    /// JSONL lines.
    Lines(LineReader),
    /// Events already in memory (a running environment's log, fetched from rigd).
    Events(std::vec::IntoIter<Event>),
}

impl Source {
    /// The next event, with where its line is when the log is a file that can be read again.
    fn next(
        &mut self,
        path: &Path,
        mode: Mode,
        seekable: bool,
    ) -> Result<Option<(Event, Option<LineAt>)>, CliError> {
        match self {
            Source::Events(events) => Ok(events.next().map(|e| (e, None))),
            Source::Lines(lines) => Ok(next_line_event(path, lines, mode)?.map(|e| {
                let at = LineAt {
                    offset: lines.offset,
                    len: lines.raw.len() as u32,
                };
                (
                    e,
                    (seekable && lines.raw.len() <= u32::MAX as usize).then_some(at),
                )
            })),
        }
    }
}

/// The JSONL lines of a file (or pipe), read one at a time.
struct LineReader {
    reader: BufReader<Box<dyn Read>>,
    /// The current line's bytes (reused).
    raw: Vec<u8>,
    /// The number of the last line read.
    n: usize,
    /// Where the current line starts, in bytes from the start of the log.
    offset: u64,
    /// Where the line after it starts.
    next_offset: u64,
    /// The first line, when it was read for a header and is an event.
    pending: Option<Vec<u8>>,
}

/// Where an event's line is in a log file, to read it again with [`EventReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineAt {
    /// Its first byte.
    offset: u64,
    /// Its length, newline included.
    len: u32,
}

/// Reads events again from where [`LogStream::next_event_at`] found them in a log file, so a
/// command can keep the places of the events it prints instead of the events.
pub struct EventReader {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl EventReader {
    /// The event whose line is at `at`.
    pub fn read(&mut self, at: LineAt) -> Result<Event, CliError> {
        use std::os::unix::fs::FileExt;
        self.buf.resize(at.len as usize, 0);
        let changed = |detail: &dyn std::fmt::Display| {
            CliError::failed(format!(
                "{}: the log changed while it was read (the event at byte {}: {detail})",
                self.path.display(),
                at.offset
            ))
        };
        self.file
            .read_exact_at(&mut self.buf, at.offset)
            .map_err(|e| changed(&e))?;
        serde_json::from_slice(self.buf.trim_ascii()).map_err(|e| changed(&e))
    }
}

impl LineReader {
    fn new(reader: Box<dyn Read>) -> LineReader {
        LineReader {
            reader: BufReader::with_capacity(64 * 1024, reader),
            raw: Vec::new(),
            n: 0,
            offset: 0,
            next_offset: 0,
            pending: None,
        }
    }

    /// Reads the next line into `raw`; false at the end.
    fn advance(&mut self, path: &Path) -> Result<bool, CliError> {
        if let Some(first) = self.pending.take() {
            self.raw = first;
            return Ok(true);
        }
        self.offset = self.next_offset;
        self.raw.clear();
        let read = self.reader.read_until(b'\n', &mut self.raw).map_err(|e| {
            CliError::failed(format!(
                "{}: line {}: cannot read: {e}",
                path.display(),
                self.n + 1
            ))
        })?;
        if read == 0 {
            return Ok(false);
        }
        self.next_offset += read as u64;
        self.n += 1;
        Ok(true)
    }

    /// True when the line in `raw` is the log's last. Asked only of a line that does not
    /// parse, since on a log still being written (a pipe) it waits for what comes next.
    fn is_last(&mut self) -> bool {
        // A file cut while being written ends without a newline, possibly inside a character.
        !self.raw.ends_with(b"\n") || self.reader.fill_buf().map_or(true, |b| b.is_empty())
    }
}

impl LogStream {
    /// Opens the log at `path` (a file, or a pipe) and reads its header line, if any.
    pub fn open(path: &Path, mode: Mode) -> Result<LogStream, CliError> {
        let file = File::open(path).map_err(|e| open_error(path, &e))?;
        let again = file
            .metadata()
            .is_ok_and(|m| m.is_file())
            .then(|| file.try_clone().ok())
            .flatten();
        let mut stream = LogStream::from_reader(path, Box::new(file), mode)?;
        stream.again = again;
        Ok(stream)
    }

    /// Reads a log from `reader`, named `path` in messages; its header line, if any, is read
    /// now.
    pub fn from_reader(
        path: &Path,
        reader: Box<dyn Read>,
        mode: Mode,
    ) -> Result<LogStream, CliError> {
        let mut lines = LineReader::new(reader);
        let header = read_header_line(path, &mut lines, mode)?;
        Ok(LogStream {
            path: path.to_path_buf(),
            header,
            source: Source::Lines(lines),
            mode,
            again: None,
            events: 0,
            environment: String::new(),
            start: None,
            written: None,
        })
    }

    /// A stream over events already in memory, with no header line.
    fn of_events(path: PathBuf, events: Vec<Event>) -> LogStream {
        LogStream {
            path,
            header: None,
            source: Source::Events(events.into_iter()),
            mode: Mode::Lenient,
            again: None,
            events: 0,
            environment: String::new(),
            start: None,
            written: None,
        }
    }

    /// Where the log is read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header line, when the log has one.
    pub fn header(&self) -> Option<&LogHeader> {
        self.header.as_ref()
    }

    /// The environment's name: the header's, else that of the first event read so far that
    /// names one.
    pub fn environment(&self) -> &str {
        match &self.header {
            Some(h) if !h.environment.is_empty() => &h.environment,
            _ => &self.environment,
        }
    }

    /// The timestamp of the first event read so far that has one (the start of the run).
    pub fn start(&self) -> Option<Timestamp> {
        self.start
    }

    /// The next event, `None` at the end of the log. In [`Mode::Strict`] a line that is not an
    /// event is an error naming it; a log with neither a header nor an event is an error in
    /// both modes.
    pub fn next_event(&mut self) -> Result<Option<Event>, CliError> {
        Ok(self.next_event_at()?.map(|(event, _)| event))
    }

    /// [`LogStream::next_event`], with where the event's line is when the log is a regular
    /// file: [`LogStream::reader`] reads it again from there.
    pub fn next_event_at(&mut self) -> Result<Option<(Event, Option<LineAt>)>, CliError> {
        let next = self
            .source
            .next(&self.path, self.mode, self.again.is_some())?;
        let Some((event, at)) = next else {
            if self.header.is_none() && self.events == 0 {
                // Lenient reading skips what is not an event: without this, any file "passed".
                return Err(CliError::failed(format!(
                    "{}: not a rig log: it has no log.header line and no event line",
                    self.path.display()
                )));
            }
            return Ok(None);
        };
        self.events += 1;
        if self.environment.is_empty() && !event.environment.is_empty() {
            self.environment = event.environment.clone();
        }
        if self.start.is_none() && !event.timestamp.is_zero() {
            self.start = Some(event.timestamp);
        }
        Ok(Some((event, at)))
    }

    /// A reader of this log's events by the places [`LogStream::next_event_at`] gave, when
    /// it gave any (the log is a regular file).
    pub fn reader(&self) -> Result<Option<EventReader>, CliError> {
        let Some(file) = &self.again else {
            return Ok(None);
        };
        let file = file.try_clone().map_err(|e| open_error(&self.path, &e))?;
        Ok(Some(EventReader {
            file,
            path: self.path.clone(),
            buf: Vec::new(),
        }))
    }

    /// The header line, else one derived from `events` (what the command kept of the log's
    /// events, in order: [`crate::explain::AnalysisEvents`] keeps all the derivation needs).
    pub fn header_or_derived<E: std::borrow::Borrow<Event>>(&self, events: &[E]) -> LogHeader {
        self.header
            .clone()
            .unwrap_or_else(|| derived_header(self.environment(), events, self.written))
    }
}

/// Reads the first line as a `log.header` when it is one; any other first line is left for
/// [`next_line_event`].
fn read_header_line(
    path: &Path,
    lines: &mut LineReader,
    mode: Mode,
) -> Result<Option<LogHeader>, CliError> {
    if !lines.advance(path)? {
        return Ok(None);
    }
    let text = std::str::from_utf8(&lines.raw).map(str::trim).unwrap_or("");
    if is_header_line(text) {
        match serde_json::from_str::<LogHeader>(text) {
            Ok(h) => return Ok(Some(h)),
            Err(e) if mode == Mode::Strict => return Err(line_error(path, 1, &e.to_string())),
            // Lenient: a broken header line is skipped as any broken line.
            Err(_) => return Ok(None),
        }
    }
    lines.pending = Some(std::mem::take(&mut lines.raw));
    Ok(None)
}

/// The next event of `lines`, skipping blank lines (and in [`Mode::Lenient`] broken ones).
fn next_line_event(
    path: &Path,
    lines: &mut LineReader,
    mode: Mode,
) -> Result<Option<Event>, CliError> {
    let cut_off = |n: usize| {
        eprint_line(format!(
            "rig: warning: {}: the last line ({n}) is cut off mid-event, so it is skipped \
             (the log is still being written, or its writer stopped)",
            path.display()
        ))
    };
    while lines.advance(path)? {
        let n = lines.n;
        let text = match std::str::from_utf8(&lines.raw) {
            Ok(text) => text.trim(),
            Err(e) => {
                if lines.is_last() {
                    cut_off(n);
                } else if mode == Mode::Strict {
                    return Err(line_error(path, n, &format!("not UTF-8: {e}")));
                }
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let error = match serde_json::from_str::<Event>(text) {
            Ok(event) => return Ok(Some(event)),
            Err(e) => e,
        };
        if error.is_eof() && lines.is_last() {
            cut_off(n);
        } else if mode == Mode::Strict {
            return Err(line_error(path, n, &error.to_string()));
        }
    }
    Ok(None)
}

/// Reads `path` in full.
pub fn read(path: &Path, mode: Mode) -> Result<LogFile, CliError> {
    let mut stream = LogStream::open(path, mode)?;
    let mut events = Vec::new();
    while let Some(event) = stream.next_event()? {
        events.push(event);
    }
    Ok(LogFile {
        path: path.to_path_buf(),
        header: stream.header_or_derived(&events),
        has_header: stream.header.is_some(),
        events,
    })
}

/// How long a command that found a log file by name waits for rigd to say whether an
/// environment of that name is running: a stuck rigd must not hold up reading the file.
const LIVE_CHECK_PATIENCE: Duration = Duration::from_secs(2);

/// The log of a single-file command's argument, as a stream: the log file it names (see
/// [`logdir::resolve_one`](super::logdir::resolve_one)), unless it names an environment
/// running on rigd (the one at `server` when given, `--server`): a log file is written when
/// its environment is torn down, so a running environment of that name (its id, or its whole
/// name; without an argument, the only one running) is a later run than any file, and its log
/// so far (`GET /environments/{id}/log`) is read instead, saying so on stderr. When no file
/// matches, a running environment the name matches in part is read too, so a hanging test can
/// be inspected before it is torn down; several such environments are an error that lists
/// their ids.
pub fn load(arg: Option<&str>, mode: Mode, server: Option<&str>) -> Result<LogStream, CliError> {
    match super::logdir::resolve_one(arg) {
        Ok(resolved) if !resolved.by_name => open_resolved(resolved, mode),
        Ok(resolved) => {
            let running = super::block_on_value(async {
                tokio::time::timeout(LIVE_CHECK_PATIENCE, running_matches(arg, server, true))
                    .await
                    .unwrap_or(Ok(None))
            });
            match running {
                Ok(Some((running, envs))) if envs.len() == 1 => {
                    eprint_line(format!(
                        "rig: {} ({}) is running on rigd at {}: reading its log so far, not \
                         {} of an earlier run (give that path to read it)",
                        envs[0].name,
                        envs[0].id,
                        running.client.addr(),
                        resolved.path.display()
                    ));
                    super::block_on_value(live_stream(&running, &envs[0]))
                }
                Ok(Some((running, envs))) if envs.len() > 1 => {
                    eprint_line(format!(
                        "rig: reading {}, the log of an earlier run: {} environments{} are \
                         running on rigd at {}; give an id to read one's log so far:\n{}",
                        resolved.path.display(),
                        envs.len(),
                        arg.map_or(String::new(), |name| format!(" named {name:?}")),
                        running.client.addr(),
                        super::live::list(envs.iter())
                    ));
                    LogStream::open(&resolved.path, mode)
                }
                _ => open_resolved(resolved, mode),
            }
        }
        Err(not_found) => live_instead_of(arg, server, not_found),
    }
}

/// Opens the log file `resolved` picked, first saying on stderr how it was picked.
fn open_resolved(resolved: super::logdir::Resolved, mode: Mode) -> Result<LogStream, CliError> {
    if let Some(note) = resolved.note {
        eprint_line(format!("rig: {note}"));
    }
    LogStream::open(&resolved.path, mode)
}

/// The log so far of the one running environment `name` matches (without a name, the only
/// one running), when no log file does (`not_found` says why); several matching environments
/// are an error listing them.
fn live_instead_of(
    name: Option<&str>,
    server: Option<&str>,
    not_found: CliError,
) -> Result<LogStream, CliError> {
    let matching = name.map_or(String::new(), |name| format!(" match {name:?}"));
    match super::block_on_value(running_matches(name, server, false)) {
        Ok(Some((running, envs))) if envs.len() == 1 => {
            let why = name.map_or("no log files".to_string(), |name| {
                format!("no log file matches {name:?}")
            });
            eprint_line(format!(
                "({why}; showing the live log of running environment {} ({}) from rigd at {})",
                envs[0].name,
                envs[0].id,
                running.client.addr()
            ));
            super::block_on_value(live_stream(&running, &envs[0]))
        }
        Ok(Some((running, envs))) if envs.len() > 1 => Err(CliError::failed(format!(
            "{not_found}\n{} environments running on rigd at {}{matching}; name one by its \
             id:\n{}",
            envs.len(),
            running.client.addr(),
            super::live::list(envs.iter())
        ))),
        // The rigd asked for by name could not be asked: say so, not only that no file
        // matched.
        Err(e) if server.is_some() => Err(CliError::failed(format!("{not_found}; {e}"))),
        Ok(_) | Err(_) => Err(not_found),
    }
}

/// The running rigd (the one at `server` when given) and its active environments that `name`
/// names (without a name, all of them): by id or whole name when `whole_name_only`, else as
/// `rig traffic --follow` picks them. `None` when no rigd runs, unless it was given by
/// `server`, whose silence is an error.
async fn running_matches(
    name: Option<&str>,
    server: Option<&str>,
    whole_name_only: bool,
) -> Result<Option<(super::live::Running, Vec<EnvironmentSummary>)>, CliError> {
    let running = match super::live::find_running(server).await {
        Ok(running) => running,
        Err(e) if server.is_some() => return Err(e),
        Err(_) => return Ok(None),
    };
    let envs = super::live::environments(&running).await?;
    let matches: Vec<EnvironmentSummary> = match name {
        None => envs,
        Some(name) if whole_name_only => super::live::named(&envs, name)
            .into_iter()
            .cloned()
            .collect(),
        Some(name) => super::live::matching(&envs, name)
            .into_iter()
            .cloned()
            .collect(),
    };
    Ok(Some((running, matches)))
}

/// The log so far of the running environment `env`, fetched from rigd.
async fn live_stream(
    running: &super::live::Running,
    env: &EnvironmentSummary,
) -> Result<LogStream, CliError> {
    let events = running
        .client
        .get_log(&env.id)
        .await
        .map_err(|e| CliError::failed(format!("reading the log of {}: {e}", env.name)))?;
    let mut stream = LogStream::of_events(PathBuf::from(format!("rigd:{}", env.id)), events);
    stream.environment = env.name.clone();
    stream.written = Some(Timestamp::now());
    Ok(stream)
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

/// A header for a log that has none: the environment `name`, the outcome and services
/// derived from the events, written at `written`, else at the last event's time.
fn derived_header<E: std::borrow::Borrow<Event>>(
    name: &str,
    events: &[E],
    written: Option<Timestamp>,
) -> LogHeader {
    let injected: BTreeSet<String> = events
        .iter()
        .map(|e| e.borrow().service.clone())
        .filter(|s| s.contains('~'))
        .collect();
    let last = events
        .last()
        .map(|e| e.borrow().timestamp)
        .unwrap_or_default();
    LogHeader::for_events(name, events, &injected, "", written.unwrap_or(last))
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

    /// The reader yields each event as its line arrives: a log still being written (here a
    /// socket whose writer never finishes) is read without waiting for its end, and so
    /// without holding it whole.
    #[test]
    fn events_are_yielded_before_the_log_ends() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;

        let (mut writer, reader) = UnixStream::pair().unwrap();
        writer
            .write_all(format!("{HEADER}\n{EVENT}\n").as_bytes())
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let path = Path::new("live.jsonl");
            let first = LogStream::from_reader(path, Box::new(reader), Mode::Strict)
                .and_then(|mut log| Ok((log.header().cloned(), log.next_event()?)));
            let _ = tx.send(first);
        });
        // A bound on failure only: the reader answers as soon as it has parsed the line.
        let (header, event) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the first event before the log ends")
            .unwrap();
        assert_eq!(header.unwrap().environment, "T");
        assert_eq!(event.unwrap().error, "x_test.go:1: boom");
        drop(writer);
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
