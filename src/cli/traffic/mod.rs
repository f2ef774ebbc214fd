//! `rig traffic <file|pattern>`: the HTTP, gRPC, Kafka and TCP traffic of a run as a table,
//! filtered, or one exchange in full (`--detail N`); `--follow` attaches to a running
//! environment instead.

pub mod detail;
pub mod rows;

use rig_types::{Event, Timestamp};
use serde::Serialize;

use super::args::Args;
use super::error::{CliError, CmdResult, EXIT_OK};
use super::flags::{self, Opt, Parsed};
use super::format;
use super::live;
use super::logread::{self, LogStream, Mode};
use super::ls::to_json;
use super::output::{eprint_line, Out, Paint, ServiceColors, Style};
use super::table::{Cell, Table};
use crate::logfiles::{exchange_end, happened_at};

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
    let traffic = TrafficEvents::read(&mut log, payloads)?;
    let why_none = traffic.why_none();
    let events: Vec<Box<Event>> = traffic.in_time_order().collect();
    let mut builder = RowBuilder::new(log.start());
    let all: Vec<Row> = events.iter().filter_map(|e| builder.row(e)).collect();
    if all.is_empty() {
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
        return show_details(&all, &details, style, parsed.has("--json"));
    }

    let rows: Vec<&Row> = all.iter().filter(|r| filter.keep(r)).collect();
    if parsed.has("--json") {
        let json: Vec<JsonRow> = rows.iter().map(|r| JsonRow::of(r)).collect();
        Out.line(to_json(&json)?);
        return Ok(EXIT_OK);
    }
    if rows.is_empty() {
        let probes = all.iter().filter(|r| r.probe).count();
        let hint = if filter.edges_match_nothing(&all) {
            format!(
                "; --edge matches no edge of this run, which has {}",
                edges_of(&all)
            )
        } else if probes == all.len() && !filter.probes {
            format!(" (only {probes} readiness probes were recorded; add --probes to see them)")
        } else {
            format!(" ({} rows before filtering)", all.len())
        };
        eprint_line(format!("No matching traffic events{hint}."));
        return Ok(EXIT_OK);
    }
    Out.lines(table(&rows, style));
    Ok(EXIT_OK)
}

/// The distinct edges of `rows`, as `--edge` takes them: `'~test->api', 'api->db'`.
fn edges_of(rows: &[Row]) -> String {
    let edges: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| format!("'{}->{}'", r.source, r.target))
        .collect();
    edges.into_iter().collect::<Vec<_>>().join(", ")
}

/// The traffic table of `rows`.
pub fn table(rows: &[&Row], style: Style) -> Vec<String> {
    let mut colors = ServiceColors::default();
    let mut t = Table::new(&[
        "#",
        "TIME",
        "EDGE",
        "METHOD",
        "PATH/SERVICE",
        "STATUS",
        "LATENCY",
        "",
    ]);
    for r in rows {
        t.push(cells(r, &mut colors, style));
    }
    t.render(style)
}

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

fn show_details(all: &[Row], wanted: &[Index], style: Style, json: bool) -> CmdResult {
    let mut picked = Vec::new();
    for index in wanted {
        match all.iter().find(|r| r.index == *index) {
            Some(r) => picked.push(r),
            None => return Err(CliError::failed(not_found(*index, all))),
        }
    }
    if json {
        let rows: Vec<JsonRow> = picked.iter().map(|r| JsonRow::of(r)).collect();
        Out.line(to_json(&rows)?);
        return Ok(EXIT_OK);
    }
    for (i, r) in picked.iter().enumerate() {
        if i > 0 {
            Out.line("");
        }
        Out.lines(detail::render(r, style));
    }
    Ok(EXIT_OK)
}

fn not_found(index: Index, all: &[Row]) -> String {
    let traffic = all.iter().filter(|r| !r.probe).count();
    let probes = all.len() - traffic;
    let range = |prefix: &str, n: usize| match n {
        1 => format!("#{prefix}1"),
        n => format!("#{prefix}1–#{prefix}{n}"),
    };
    let mut have = Vec::new();
    if traffic > 0 {
        have.push(range("", traffic));
    }
    if probes > 0 {
        have.push(format!("probes {}", range("p", probes)));
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

/// Why a run has no traffic events, as far as its events tell: proxies ran (observe was on)
/// but saw nothing, or none ran.
/// The traffic events of a log (what its rows are made of), read as a stream: every other
/// event is left out but for its time, which places the exchanges logged late.
struct TrafficEvents {
    /// In log order: each event's time ([`happened_at`]), whether it is an exchange that
    /// may move back ([`exchange_end`]), and for a traffic event the event (boxed: an entry
    /// for every other event stays small).
    timeline: Vec<(Timestamp, bool, Option<Box<Event>>)>,
    /// True when a proxy wrote anything.
    proxies_ran: bool,
}

impl TrafficEvents {
    /// Reads the rest of `log`; without `payloads`, the headers, bodies and messages of the
    /// exchanges are not kept.
    fn read(log: &mut LogStream, payloads: bool) -> Result<TrafficEvents, CliError> {
        let mut traffic = TrafficEvents {
            timeline: Vec::new(),
            proxies_ran: false,
        };
        while let Some(mut event) = log.next_event()? {
            if !payloads {
                event.drop_headers();
                event.drop_bodies();
            }
            traffic.push(event);
        }
        Ok(traffic)
    }

    /// Adds `event`, the next in log order.
    fn push(&mut self, event: Event) {
        self.proxies_ran |= event.service.contains("~proxy~");
        let at = happened_at(&event);
        let exchange = exchange_end(&event).is_some();
        let traffic = RowBuilder::default().row(&event).is_some();
        self.timeline
            .push((at, exchange, traffic.then(|| Box::new(event))));
    }

    /// The traffic events, in the order the exchanges ended, placed as
    /// [`in_time_order`](crate::logfiles::in_time_order) places them: an observation can be
    /// logged well after its exchange (a gRPC call's waits for the target's descriptors).
    fn in_time_order(self) -> impl Iterator<Item = Box<Event>> {
        crate::logfiles::order_by_time(self.timeline)
            .into_iter()
            .filter_map(|(_, e)| e)
    }

    /// Why a log has no traffic rows.
    fn why_none(&self) -> &'static str {
        if self.proxies_ran {
            "its proxies ran but recorded no request or connection"
        } else {
            "no proxy ran: observe is off in the spec, or the run ended before any proxy started"
        }
    }
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
        let mut traffic = TrafficEvents {
            timeline: Vec::new(),
            proxies_ran: false,
        };
        for e in events {
            traffic.push(e.clone());
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
