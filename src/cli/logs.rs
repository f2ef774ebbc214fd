//! `rig logs <file|pattern>`: the services' output and the test's notes of one run, or of a
//! running environment with `--follow`.
//!
//! Rows come from `service.log` events (one row per line of output) and `test.note` events
//! (service `TEST`, stream `note`). Times are seconds since the run's first event, the same
//! reference `rig traffic` uses, so the two can be read side by side.

use std::io::Write as _;

use regex::Regex;
use rig_types::{Event, EventType, LogStream, Timestamp};
use serde::Serialize;

use super::args::Args;
use super::error::{CliError, CmdResult, EXIT_OK};
use super::flags::{self, Opt, Parsed};
use super::format;
use super::live;
use super::logdir::same_name;
use super::logread::{self, Mode};
use super::ls::json_element;
use super::output::{eprint_line, pad, Out, Paint, ServiceColors, Style};

/// `rig logs --help`.
pub const USAGE: &str = concat!(
    "\
Usage: rig logs [file|pattern] [options]
       rig logs --follow [name|id] [options]

Show the services' stdout and stderr and the test's notes (failed assertions) of a run, one
line per row: seconds since the run started, the service, the text.

Arguments:
",
    log_argument_help!(),
    "

Options:
      --service S  only this service (repeatable; case-insensitive; `test` means the notes)
      --stderr     only stderr (and the notes, and rigd's remarks)
      --stdout     only stdout
      --grep RE    only lines matching the regular expression RE
      --json       print a JSON array of rows (with --follow: one JSON object per line)
  -f, --follow     follow a running environment (by name or id; default: the only one)
                   until it is torn down
      --server ADDR  the rigd to follow (default: $RIG_SERVER_ADDR, else the addr file in
                   $RIG_DIR)
      --color WHEN auto (default; off when NO_COLOR is set), always or never
  -h, --help       show this help"
);

const OPTS: &[Opt] = &[
    Opt::value("--service", &["-s"]),
    Opt::switch("--stderr", &[]),
    Opt::switch("--stdout", &[]),
    Opt::value("--grep", &["-g"]),
    Opt::switch("--json", &[]),
    Opt::switch("-f", &["--follow"]),
    Opt::value("--server", &[]),
];

/// The label of note rows.
const NOTE_SERVICE: &str = "TEST";

/// One line of output or one note.
#[derive(Debug, Clone, Serialize)]
pub struct LogRow {
    /// Seconds since the run's first event.
    pub time_s: f64,
    /// The service, or `TEST` for a note.
    pub service: String,
    /// `stdout`, `stderr`, `rig` (rigd's remarks about the service) or `note`.
    pub stream: String,
    /// The line.
    pub data: String,
    /// When it was recorded.
    pub timestamp: String,
}

impl LogRow {
    fn is_note(&self) -> bool {
        self.stream == "note"
    }

    /// A remark of rigd's about the service (stream [`LogStream::RIG`]), not its output.
    fn is_rig(&self) -> bool {
        self.stream == LogStream::RIG
    }
}

/// Which rows to keep.
#[derive(Debug, Clone)]
pub struct LogFilter {
    services: Vec<String>,
    stderr: bool,
    stdout: bool,
    grep: Option<Regex>,
}

impl LogFilter {
    fn from_parsed(parsed: &Parsed) -> Result<LogFilter, CliError> {
        let grep = flags::regex("--grep", parsed.value("--grep"))?;
        Ok(LogFilter {
            services: parsed
                .values("--service")
                .into_iter()
                .flat_map(|s| s.split(','))
                .map(str::to_string)
                .collect(),
            stderr: parsed.has("--stderr"),
            stdout: parsed.has("--stdout"),
            grep,
        })
    }

    /// The width of the service column for rows of `services` (and notes) that can pass.
    fn width_of(&self, services: &[String]) -> usize {
        let wanted = |name: &str| {
            self.services.is_empty() || self.services.iter().any(|s| same_name(s, name))
        };
        let notes = self.services.is_empty()
            || self.services.iter().any(|s| s.eq_ignore_ascii_case("test"));
        services
            .iter()
            .filter(|s| wanted(s))
            .map(|s| s.chars().count())
            .chain(notes.then_some(NOTE_SERVICE.len()))
            .max()
            .unwrap_or(0)
    }

    /// True when `row` passes every filter.
    pub fn keep(&self, row: &LogRow) -> bool {
        if !self.services.is_empty() {
            let wanted = self.services.iter().any(|s| {
                if row.is_note() {
                    s.eq_ignore_ascii_case("test")
                } else {
                    same_name(s, &row.service)
                }
            });
            if !wanted {
                return false;
            }
        }
        if self.stderr && !self.stdout && !(row.stream == "stderr" || row.is_note() || row.is_rig())
        {
            return false;
        }
        if self.stdout && !self.stderr && row.stream != "stdout" {
            return false;
        }
        if let Some(re) = &self.grep {
            if !re.is_match(&row.data) {
                return false;
            }
        }
        true
    }
}

/// The rows of one event: a row per line of a `service.log`, a row for a `test.note`.
pub fn rows_of(event: &Event, start: Option<Timestamp>) -> Vec<LogRow> {
    // Milliseconds are what the text shows; JSON keeps microseconds.
    let time_s = start.map_or(0.0, |s| {
        (secs_between(&s, &event.timestamp) * 1e6).round() / 1e6
    });
    let timestamp = event.timestamp.to_rfc3339();
    match event.event_type {
        EventType::ServiceLog => {
            let Some(log) = &event.log else {
                return Vec::new();
            };
            let data = log.data.trim_end_matches(['\n', '\r']);
            if data.is_empty() {
                return Vec::new();
            }
            data.split('\n')
                .map(|line| LogRow {
                    time_s,
                    service: event.service.clone(),
                    stream: match &log.stream {
                        LogStream::Stdout => "stdout".into(),
                        LogStream::Stderr => "stderr".into(),
                        LogStream::Other(s) => s.clone(),
                    },
                    data: line.trim_end_matches('\r').to_string(),
                    timestamp: timestamp.clone(),
                })
                .collect()
        }
        EventType::TestNote if !event.error.is_empty() => event
            .error
            .trim_end()
            .split('\n')
            .map(|line| LogRow {
                time_s,
                service: NOTE_SERVICE.into(),
                stream: "note".into(),
                data: line.to_string(),
                timestamp: timestamp.clone(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Renders rows as aligned lines, colouring services by first appearance.
#[derive(Debug)]
pub struct LogRenderer {
    style: Style,
    width: usize,
    colors: ServiceColors,
}

impl LogRenderer {
    /// A renderer whose service column is at least `width` wide (and at least 4).
    pub fn new(style: Style, width: usize) -> LogRenderer {
        LogRenderer {
            style,
            width: width.max(4),
            colors: ServiceColors::default(),
        }
    }

    /// `<time>  <service>  <data>`; notes get a bold red `TEST` and a `✗`.
    pub fn line(&mut self, row: &LogRow) -> String {
        let s = self.style;
        self.width = self.width.max(row.service.chars().count());
        let time = s.paint(Paint::Dim, &format::relative(row.time_s));
        let padded = pad(&row.service, self.width);
        let text = s.service_text(&row.data);
        if row.is_note() {
            return format!(
                "{time}  {}  {}",
                s.paint(Paint::Bold, &s.paint(Paint::Red, &padded)),
                s.paint(Paint::Red, &format!("✗ {text}"))
            );
        }
        let color = self.colors.of(&row.service);
        let data = if row.stream == "stderr" {
            s.paint(Paint::Yellow, &text)
        } else if row.is_rig() {
            format!("{} {text}", s.paint(Paint::Yellow, "rig:"))
        } else {
            text.into_owned()
        };
        format!("{time}  {}  {data}", s.paint(color, &padded))
    }
}

/// Runs `rig logs`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("logs", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("logs", 1, "one file, pattern or environment")?;
    let filter = LogFilter::from_parsed(&parsed)?;
    let style = Style::new(parsed.color.enabled_for_stdout());
    let target = parsed.positional_strings().into_iter().next();
    if parsed.has("-f") {
        return super::block_on(live::follow_logs(
            parsed.value("--server").map(str::to_string),
            target,
            filter,
            style,
            parsed.has("--json"),
        ));
    }
    let mut log = logread::load(target.as_deref(), Mode::Strict, parsed.value("--server"))?;
    // The header lists the services, so the service column's width is known before the first
    // row and rows can be printed as they are read.
    let width = log.header().map(|header| filter.width_of(&header.services));
    let mut printer = RowPrinter::new(parsed.has("--json"), LogRenderer::new(style, 0), width);
    let read = read_matching(&mut log, &filter, |row| printer.push(row))?;
    printer.finish(&read, log.path())
}

/// What reading a log found, besides the rows that passed.
struct Counts {
    /// How many rows the log has.
    total: usize,
    /// The services of every row.
    services: std::collections::BTreeSet<String>,
}

/// Reads the rest of `log` as a stream, handing each row `filter` keeps to `keep`, which
/// says whether to go on (not once standard output is closed).
fn read_matching(
    log: &mut logread::LogStream,
    filter: &LogFilter,
    mut keep: impl FnMut(LogRow) -> bool,
) -> Result<Counts, CliError> {
    let mut counts = Counts {
        total: 0,
        services: Default::default(),
    };
    while let Some(event) = log.next_event()? {
        // The run starts at the first event, which this one may be.
        for row in rows_of(&event, log.start()) {
            counts.total += 1;
            if !counts.services.contains(&row.service) {
                counts.services.insert(row.service.clone());
            }
            if filter.keep(&row) && !keep(row) {
                return Ok(counts);
            }
        }
    }
    Ok(counts)
}

/// Prints the rows that pass as they are read: aligned lines when the service column's
/// width is known in advance (otherwise they are held and printed at the end), or one JSON
/// array, element by element.
struct RowPrinter {
    /// Line-buffered: each row is out as soon as it is read (the log may be a live one).
    out: std::io::StdoutLock<'static>,
    json: bool,
    renderer: LogRenderer,
    /// Rows waiting for the width: `Some` when the log has no header.
    held: Option<Vec<LogRow>>,
    printed: usize,
    /// Set when standard output is closed (`rig logs | head`).
    closed: bool,
}

impl RowPrinter {
    fn new(json: bool, renderer: LogRenderer, width: Option<usize>) -> RowPrinter {
        let mut renderer = renderer;
        if let Some(width) = width {
            renderer.width = renderer.width.max(width);
        }
        RowPrinter {
            out: std::io::stdout().lock(),
            json,
            renderer,
            held: (width.is_none() && !json).then(Vec::new),
            printed: 0,
            closed: false,
        }
    }

    /// Prints (or holds) `row`; false once standard output is closed.
    fn push(&mut self, row: LogRow) -> bool {
        if let Some(held) = &mut self.held {
            held.push(row);
            return true;
        }
        let written = if self.json {
            let separator = if self.printed == 0 { "[\n" } else { ",\n" };
            json_element(&row).and_then(|element| write!(self.out, "{separator}{element}"))
        } else {
            writeln!(self.out, "{}", self.renderer.line(&row))
        };
        self.printed += 1;
        self.closed = written.is_err();
        !self.closed
    }

    /// Prints what is held and ends the output; with no row to show, says why on stderr.
    fn finish(mut self, counts: &Counts, path: &std::path::Path) -> CmdResult {
        if let Some(held) = self.held.take() {
            let width = held.iter().map(|r| r.service.chars().count()).max();
            self.renderer.width = self.renderer.width.max(width.unwrap_or(0));
            for row in &held {
                if writeln!(self.out, "{}", self.renderer.line(row)).is_err() {
                    return Ok(EXIT_OK);
                }
                self.printed += 1;
            }
        }
        if self.closed {
            return Ok(EXIT_OK);
        }
        if self.json {
            let end = if self.printed == 0 { "[]" } else { "\n]" };
            let _ = writeln!(self.out, "{end}");
        } else if counts.total == 0 {
            eprint_line(format!(
                "No log events found in {} (services printed nothing and no test notes were \
                 posted).",
                path.display()
            ));
        } else if self.printed == 0 {
            eprint_line(format!(
                "No matching log events ({} rows before filtering; services: {}).",
                counts.total,
                counts
                    .services
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let _ = self.out.flush();
        Ok(EXIT_OK)
    }
}

/// Seconds from `from` to `to` (negative when `to` is earlier).
pub fn secs_between(from: &Timestamp, to: &Timestamp) -> f64 {
    if from.is_zero() || to.is_zero() {
        return 0.0;
    }
    to.duration_since(from).as_nanos() as f64 / 1e9
}

/// Prints an error-free notice to stderr (for follow mode).
pub fn notice(text: impl std::fmt::Display) {
    eprint_line(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_lines_cannot_drive_the_terminal() {
        let row = |stream: &str| LogRow {
            time_s: 1.0,
            service: "api".into(),
            stream: stream.into(),
            data: "\x1b[2Jwiped\x07".into(),
            timestamp: String::new(),
        };
        let mut renderer = LogRenderer::new(Style::plain(), 4);
        for stream in ["stdout", "stderr", "note", "rig"] {
            let line = renderer.line(&row(stream));
            assert!(!line.contains('\x1b'), "{line:?}");
            assert!(line.ends_with(r"\u{1b}[2Jwiped\u{7}"), "{line:?}");
        }
    }

    #[test]
    fn rigs_remarks_are_marked_and_kept_with_stderr() {
        let event = Event::log("api", LogStream::rig(), "$NOT_SET is not set\n");
        let rows = rows_of(&event, None);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].stream, "rig");
        let line = LogRenderer::new(Style::plain(), 4).line(&rows[0]);
        assert!(line.ends_with("api   rig: $NOT_SET is not set"), "{line:?}");
        let stderr_only = LogFilter {
            services: Vec::new(),
            stderr: true,
            stdout: false,
            grep: None,
        };
        assert!(stderr_only.keep(&rows[0]));
        let stdout_only = LogFilter {
            stderr: false,
            stdout: true,
            ..stderr_only
        };
        assert!(!stdout_only.keep(&rows[0]));
    }
}
