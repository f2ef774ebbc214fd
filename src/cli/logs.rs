//! `rig logs <file|pattern>`: the services' output and the test's notes of one run, or of a
//! running environment with `--follow`.
//!
//! Rows come from `service.log` events (one row per line of output) and `test.note` events
//! (service `TEST`, stream `note`). Times are seconds since the run's first event, the same
//! reference `rig traffic` uses, so the two can be read side by side.

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
use super::ls::to_json;
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
    let read = MatchingRows::read(&mut log, &filter)?;
    if read.total == 0 {
        if parsed.has("--json") {
            Out.line("[]");
        } else {
            eprint_line(format!(
                "No log events found in {} (services printed nothing and no test notes were \
                 posted).",
                log.path().display()
            ));
        }
        return Ok(EXIT_OK);
    }
    let rows: Vec<&LogRow> = read.rows.iter().collect();
    if parsed.has("--json") {
        Out.line(to_json(&rows)?);
        return Ok(EXIT_OK);
    }
    if rows.is_empty() {
        eprint_line(format!(
            "No matching log events ({} rows before filtering; services: {}).",
            read.total,
            read.services.into_iter().collect::<Vec<_>>().join(", ")
        ));
        return Ok(EXIT_OK);
    }
    let width = rows
        .iter()
        .map(|r| r.service.chars().count())
        .max()
        .unwrap_or(0);
    let mut renderer = LogRenderer::new(style, width);
    Out.lines(rows.iter().map(|r| renderer.line(r)));
    Ok(EXIT_OK)
}

/// The rows of a log that pass a filter, read as a stream: only those are kept.
struct MatchingRows {
    /// The rows that pass, in log order.
    rows: Vec<LogRow>,
    /// How many rows the log has.
    total: usize,
    /// The services of every row.
    services: std::collections::BTreeSet<String>,
}

impl MatchingRows {
    /// Reads the rest of `log`, keeping the rows `filter` keeps.
    fn read(log: &mut logread::LogStream, filter: &LogFilter) -> Result<MatchingRows, CliError> {
        let mut out = MatchingRows {
            rows: Vec::new(),
            total: 0,
            services: Default::default(),
        };
        while let Some(event) = log.next_event()? {
            // The run starts at the first event, which this one may be.
            for row in rows_of(&event, log.start()) {
                out.total += 1;
                if !out.services.contains(&row.service) {
                    out.services.insert(row.service.clone());
                }
                if filter.keep(&row) {
                    out.rows.push(row);
                }
            }
        }
        Ok(out)
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
