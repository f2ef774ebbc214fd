//! `rig traffic <file|pattern>`: the HTTP, gRPC, Kafka and TCP traffic of a run as a table,
//! filtered, or one exchange in full (`--detail N`); `--follow` attaches to a running
//! environment instead.

pub mod detail;
mod ordered;
pub mod rows;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;

use rig_types::Event;
use serde::Serialize;

use super::args::Args;
use super::error::{CliError, CmdResult, EXIT_OK};
use super::flags::{self, Opt, Parsed};
use super::format;
use super::live;
use super::logread::{self, Mode};
use super::ls::{json_element, to_json};
use super::output::{eprint_line, Out, Paint, ServiceColors, Style};
use super::table::{Cell, Widths};
use ordered::{OrderedTraffic, TrafficEvents};

pub use rows::{FilterArgs, Index, Protocol, Row, RowBuilder, TrafficFilter};

/// `rig traffic --help`.
pub const USAGE: &str = concat!(
    "\
Usage: rig traffic [file|pattern] [options]
       rig traffic --follow [name|id] [options]

Show the traffic the proxies recorded in a run: HTTP requests, gRPC calls, Kafka requests and
TCP connections, one row each, numbered (#) in the order they completed; readiness probes are
numbered p1, p2, ... and hidden unless --probes.

Arguments:
",
    log_argument_help!(),
    "

Filters (all must match; a repeated or comma-separated filter matches any of its values):
      --edge E       a→b or 'a->b' (caller and callee; quoted, as a shell reads > as a
                     redirection), a→ or →b (one end), a (either end)
      --slow DUR     latency at least DUR (Go duration: 5ms, 1.5s)
      --status S     5xx or 404 (HTTP), NotFound, NOT_FOUND or 5 (gRPC), error (failed
                     exchanges)
      --method M     GET, POST, gRPC, TCP, Produce, ...
      --path P       path (or gRPC Service/Method) containing P
      --grep RE      a regular expression over paths, headers, bodies and messages
      --since T      from T into the run (2.5s) or from an RFC 3339 time
      --http, --grpc, --tcp, --kafka   only these protocols
      --probes       include readiness probes

Output:
  -d, --detail N   show exchange N in full: headers and bodies (JSON pretty-printed, gzip
                   decoded), gRPC metadata and decoded messages; repeat or use 1,3 or 2-5
      --json       JSON instead of a table (with --follow: one object per line)
  -f, --follow     follow a running environment (by name or id; default: the only one) and
                   print traffic as it happens, until the environment is torn down
      --server ADDR  the rigd to follow (default: $RIG_SERVER_ADDR, else the addr file in
                   $RIG_DIR)
      --color WHEN auto (default; off when NO_COLOR is set), always or never
  -h, --help       show this help"
);

const OPTS: &[Opt] = &[
    Opt::value("--edge", &["-e"]),
    Opt::value("--slow", &[]),
    Opt::value("--status", &[]),
    Opt::value("--method", &["-m"]),
    Opt::value("--path", &[]),
    Opt::value("--grep", &["-g"]),
    Opt::value("--since", &[]),
    Opt::switch("--http", &[]),
    Opt::switch("--grpc", &[]),
    Opt::switch("--tcp", &[]),
    Opt::switch("--kafka", &[]),
    Opt::switch("--probes", &[]),
    Opt::value("--detail", &["-d"]),
    Opt::switch("--json", &[]),
    Opt::switch("-f", &["--follow"]),
    Opt::value("--server", &[]),
];

/// A row as `--json` prints it.
#[derive(Serialize)]
pub struct JsonRow<'a> {
    index: String,
    time_s: f64,
    protocol: Protocol,
    source: &'a str,
    target: &'a str,
    method: &'a str,
    path: &'a str,
    status: &'a str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    probe: bool,
    event: &'a rig_types::Event,
}

impl<'a> JsonRow<'a> {
    /// The JSON form of `row`.
    pub fn of(row: &'a Row<'a>) -> JsonRow<'a> {
        JsonRow {
            index: row.index.to_string(),
            time_s: (row.time_s * 1000.0).round() / 1000.0,
            protocol: row.protocol,
            source: row.source,
            target: row.target,
            method: &row.method,
            path: &row.path,
            status: &row.status,
            latency_ms: row.latency_ms,
            probe: row.probe,
            event: row.event,
        }
    }
}

/// Parses the filter options.
pub fn filter_of(parsed: &Parsed) -> Result<TrafficFilter, CliError> {
    let mut protocols = Vec::new();
    for (flag, p) in [
        ("--http", Protocol::Http),
        ("--grpc", Protocol::Grpc),
        ("--tcp", Protocol::Tcp),
        ("--kafka", Protocol::Kafka),
    ] {
        if parsed.has(flag) {
            protocols.push(p);
        }
    }
    TrafficFilter::new(&FilterArgs {
        edges: parsed.values("--edge"),
        slow: parsed.value("--slow"),
        statuses: parsed.values("--status"),
        methods: parsed.values("--method"),
        paths: parsed.values("--path"),
        grep: parsed.value("--grep"),
        since: parsed.value("--since"),
        protocols,
        probes: parsed.has("--probes"),
    })
}

/// Runs `rig traffic`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("traffic", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("traffic", 1, "one file, pattern or environment")?;
    let filter = filter_of(&parsed)?;
    let details = parse_details(&parsed.values("--detail"))?;
    let style = Style::new(parsed.color.enabled_for_stdout());
    let target = parsed.positional_strings().into_iter().next();
    if parsed.has("-f") {
        if !details.is_empty() {
            return Err(CliError::usage(
                "--detail cannot be combined with --follow: follow first, then run \
                 `rig traffic <name> --detail N` on the log",
            ));
        }
        return super::block_on(live::follow_traffic(
            parsed.value("--server").map(str::to_string),
            target,
            filter,
            style,
            parsed.has("--json"),
        ));
    }

    let mut log = logread::load(target.as_deref(), Mode::Strict, parsed.value("--server"))?;
    // The table shows none of the headers, bodies and messages: only `--detail`, `--json`
    // and `--grep` need them.
    let payloads = !details.is_empty() || parsed.has("--json") || filter.searches_payloads();
    // Reading counts the rows, filters them and measures the table's columns; the rows
    // printed are made again from their events, so none is held, however large the log.
    let table = details.is_empty() && !parsed.has("--json");
    let mut seen = Seen::default();
    let mut widths = Widths::new(&TABLE_HEADER);
    let mut colors = ServiceColors::default();
    let traffic = TrafficEvents::read(&mut log, payloads, |row| {
        seen.see(row, &filter);
        let keep = filter.keep(row);
        if keep && table {
            seen.kept += 1;
            // The number is not known yet: its column is measured once the rows are in order.
            widths.measure(&cells(row, &mut colors, style));
        }
        keep
    })?;
    let why_none = traffic.why_none();
    let mut ordered = traffic.in_time_order(&log)?;
    if seen.all == 0 {
        if parsed.has("--json") {
            Out.line("[]");
        } else {
            eprint_line(format!(
                "No traffic events found in {} ({}).",
                log.path().display(),
                why_none
            ));
        }
        return Ok(EXIT_OK);
    }
    if !details.is_empty() {
        return show_details(&mut ordered, &details, &seen, style, parsed.has("--json"));
    }
    if parsed.has("--json") {
        return print_json(&mut ordered);
    }
    if seen.kept == 0 {
        let hint = if filter.has_edges() && !seen.edge_matched {
            format!(
                "; --edge matches no edge of this run, which has {}",
                seen.edges()
            )
        } else if seen.probes == seen.all && !filter.probes {
            format!(
                " (only {} readiness probes were recorded; add --probes to see them)",
                seen.probes
            )
        } else {
            format!(" ({} rows before filtering)", seen.all)
        };
        eprint_line(format!("No matching traffic events{hint}."));
        return Ok(EXIT_OK);
    }

    for index in ordered.kept() {
        widths.fit(0, index.to_string().chars().count());
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", widths.header(style)).is_err() {
        return Ok(EXIT_OK);
    }
    let mut colors = ServiceColors::default();
    ordered.for_each(
        |_, kept| kept,
        |row| {
            writeln!(
                out,
                "{}",
                widths.line(&cells(row, &mut colors, style), style)
            )
            .is_ok()
        },
    )?;
    let _ = out.flush();
    Ok(EXIT_OK)
}

/// What a pass over every row found besides the rows.
#[derive(Debug, Default)]
struct Seen {
    /// Rows, before filtering.
    all: usize,
    /// Readiness probes among them.
    probes: usize,
    /// Rows the filters keep (counted for the table only).
    kept: usize,
    /// With `--edge`: the distinct edges, each caller with its callees.
    edges: BTreeMap<String, BTreeSet<String>>,
    /// True once an `--edge` matched a row.
    edge_matched: bool,
}

impl Seen {
    /// Counts `row`.
    fn see(&mut self, row: &Row, filter: &TrafficFilter) {
        self.all += 1;
        self.probes += usize::from(row.probe);
        if filter.has_edges() {
            self.edge_matched |= filter.edge_matches(row);
            match self.edges.get_mut(row.source) {
                Some(targets) if targets.contains(row.target) => {}
                Some(targets) => {
                    targets.insert(row.target.to_string());
                }
                None => {
                    self.edges
                        .insert(row.source.to_string(), [row.target.to_string()].into());
                }
            }
        }
    }

    /// The distinct edges, as `--edge` takes them: `'~test->api', 'api->db'`.
    fn edges(&self) -> String {
        let edges: Vec<String> = self
            .edges
            .iter()
            .flat_map(|(source, targets)| targets.iter().map(move |t| format!("'{source}->{t}'")))
            .collect();
        edges.join(", ")
    }
}

/// The table's columns.
const TABLE_HEADER: [&str; 8] = [
    "#",
    "TIME",
    "EDGE",
    "METHOD",
    "PATH/SERVICE",
    "STATUS",
    "LATENCY",
    "",
];

/// The cells of one row; each end of the EDGE has its service's colour.
pub fn cells(r: &Row, colors: &mut ServiceColors, style: Style) -> Vec<Cell> {
    let edge = format!("{} → {}", r.source, r.target);
    let painted = format!(
        "{} → {}",
        style.paint(colors.of(r.source), r.source),
        style.paint(colors.of(r.target), r.target)
    );
    vec![
        Cell::maybe(r.index.to_string(), r.probe.then_some(Paint::Dim)),
        Cell::plain(format::relative(r.time_s)),
        Cell::prepainted(edge, painted),
        Cell::painted(r.method.clone(), Paint::Cyan),
        Cell::plain(r.path.clone()),
        Cell::maybe(r.status.clone(), r.status_paint),
        Cell::plain(format::latency(r.latency_ms)),
        Cell::plain(r.extra.clone()),
    ]
}

/// `--json`: the rows the filters keep, as one JSON array printed as it is made.
fn print_json(ordered: &mut OrderedTraffic) -> CmdResult {
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    let mut closed = false;
    ordered.for_each(
        |_, kept| kept,
        |row| {
            let separator = if printed == 0 { "[\n" } else { ",\n" };
            printed += 1;
            closed = json_element(&JsonRow::of(row))
                .and_then(|element| write!(out, "{separator}{element}"))
                .is_err();
            !closed
        },
    )?;
    if !closed {
        let _ = writeln!(out, "{}", if printed == 0 { "[]" } else { "\n]" });
        let _ = out.flush();
    }
    Ok(EXIT_OK)
}

/// `--detail`: the exchanges `wanted` names, in that order.
fn show_details(
    ordered: &mut OrderedTraffic,
    wanted: &[Index],
    seen: &Seen,
    style: Style,
    json: bool,
) -> CmdResult {
    let picked: HashSet<Index> = wanted.iter().copied().collect();
    let mut found: Vec<(Index, Event)> = Vec::with_capacity(picked.len());
    ordered.for_each(
        |index, _| picked.contains(&index),
        |row| {
            found.push((row.index, row.event.clone()));
            true
        },
    )?;
    let mut rows = Vec::with_capacity(wanted.len());
    for index in wanted {
        let row = found
            .iter()
            .find(|(i, _)| i == index)
            .and_then(|(_, event)| ordered.row(event, *index));
        match row {
            Some(row) => rows.push(row),
            None => return Err(CliError::failed(not_found(*index, seen))),
        }
    }
    if json {
        let rows: Vec<JsonRow> = rows.iter().map(JsonRow::of).collect();
        Out.line(to_json(&rows)?);
        return Ok(EXIT_OK);
    }
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            Out.line("");
        }
        Out.lines(detail::render(r, style));
    }
    Ok(EXIT_OK)
}

fn not_found(index: Index, seen: &Seen) -> String {
    let traffic = seen.all - seen.probes;
    let range = |prefix: &str, n: usize| match n {
        1 => format!("#{prefix}1"),
        n => format!("#{prefix}1–#{prefix}{n}"),
    };
    let mut have = Vec::new();
    if traffic > 0 {
        have.push(range("", traffic));
    }
    if seen.probes > 0 {
        have.push(format!("probes {}", range("p", seen.probes)));
    }
    format!(
        "request #{index} not found (this log has {}); run `rig traffic` without --detail to \
         see the numbers",
        have.join(" and ")
    )
}

/// `--detail` values: `3`, `p2`, `1,3`, `2-5` (repeatable).
pub fn parse_details(values: &[&str]) -> Result<Vec<Index>, CliError> {
    let bad = |v: &str| {
        CliError::usage(format!(
            "invalid --detail value {v:?}: expected a row number (3), a probe (p2), a list \
             (1,3) or a range (2-5)"
        ))
    };
    let mut out = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')) {
        let v = v.trim();
        if let Some((a, b)) = v.split_once('-') {
            let (Ok(Index::Traffic(a)), Ok(Index::Traffic(b))) = (a.parse(), b.parse()) else {
                return Err(bad(v));
            };
            if b < a || b - a > 10_000 {
                return Err(bad(v));
            }
            out.extend((a..=b).map(Index::Traffic));
        } else {
            out.push(v.parse().map_err(|_| bad(v))?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rig_types::{Event, EventType};

    use super::*;

    /// Every `a->b` shown as something to type is quoted: unquoted, a shell reads `>` as a
    /// redirection (and creates a file named `b`). In the help every `->` is such an example;
    /// in the README, the values after `--edge`.
    #[test]
    fn edge_examples_are_quoted_for_the_shell() {
        let quoted_at = |text: &str, at: usize| {
            let start = text[..at]
                .rfind(|c: char| c.is_whitespace() || c == '`')
                .map_or(0, |i| i + 1);
            text[start..].starts_with('\'')
        };
        for (at, _) in USAGE.match_indices("->") {
            assert!(
                quoted_at(USAGE, at),
                "help: {:?}",
                USAGE[..at].lines().last()
            );
        }
        let readme = include_str!("../../../README.md");
        for (at, flag) in readme.match_indices("--edge ") {
            let value = &readme[at + flag.len()..];
            let end = value.find(['`', '\n']).unwrap_or(value.len());
            let value = &value[..end];
            assert!(
                !value.contains("->") || value.starts_with('\''),
                "README.md: unquoted --edge {value}"
            );
        }
    }

    /// The hint for `events`, read as a log.
    fn why_no_traffic(events: &[Event]) -> &'static str {
        let mut traffic = TrafficEvents::default();
        for e in events {
            traffic.push(e.clone(), None, None);
        }
        traffic.why_none()
    }

    #[test]
    fn the_no_traffic_hint_blames_observe_only_when_no_proxy_ran() {
        let crashed = [
            Event::for_service(EventType::ServiceStarting, "api"),
            Event::for_service(EventType::ServiceReady, "api~proxy~~test"),
            Event::for_service(EventType::ServiceFailed, "api"),
        ];
        assert_eq!(
            why_no_traffic(&crashed),
            "its proxies ran but recorded no request or connection"
        );
        let unobserved = [
            Event::for_service(EventType::ServiceStarting, "api"),
            Event::for_service(EventType::ServiceFailed, "api"),
        ];
        assert!(why_no_traffic(&unobserved).starts_with("no proxy ran: observe is off"));
    }

    #[test]
    fn detail_values() {
        assert_eq!(
            parse_details(&["1,3", "p2", "5-7"]).unwrap(),
            [
                Index::Traffic(1),
                Index::Traffic(3),
                Index::Probe(2),
                Index::Traffic(5),
                Index::Traffic(6),
                Index::Traffic(7)
            ]
        );
        assert!(parse_details(&["x"]).is_err());
        assert!(parse_details(&["5-2"]).is_err());
    }
}
