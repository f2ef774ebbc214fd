//! The results: one value per scenario and path, printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// The outcome of one scenario on one path.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// HTTP load results.
    Http(HttpSummary),
    /// TCP bulk results.
    Tcp(TcpSummary),
    /// Idle-connection memory.
    Memory(MemorySummary),
    /// The path could not run the scenario.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// The scenario does not apply to the path (e.g. memory of "direct", TCP on pingora).
    NotApplicable {
        /// Why.
        reason: String,
    },
}

/// HTTP load on one path.
#[derive(Clone, Debug, Serialize)]
pub struct HttpSummary {
    /// Successful measured requests per second.
    pub req_per_s: f64,
    /// Median latency (request start to last body byte), µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
    /// Worst latency, µs.
    pub max_us: f64,
    /// Successful measured requests.
    pub requests: u64,
    /// Failed requests (any time in the run).
    pub errors: u64,
    /// Connections the server closed between requests.
    pub reconnects: u64,
    /// The first failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// CPU time the proxy process(es) used per measured request, µs (none for "direct").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_cpu_us_per_req: Option<f64>,
}

/// TCP bulk on one path.
#[derive(Clone, Debug, Serialize)]
pub struct TcpSummary {
    /// Throughput, gigabits per second.
    pub gbit_per_s: f64,
    /// Bytes the origin received.
    pub bytes: u64,
    /// Seconds from the first connect until the last count came back.
    pub seconds: f64,
    /// CPU time the proxy used per GiB relayed, ms (none for "direct").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_cpu_ms_per_gib: Option<f64>,
}

/// Memory of the proxy process(es) before and after opening idle connections.
#[derive(Clone, Debug, Serialize)]
pub struct MemorySummary {
    /// Resident memory before, KiB.
    pub before_kib: u64,
    /// Resident memory with the connections open, KiB.
    pub after_kib: u64,
    /// Connections opened.
    pub connections: usize,
    /// The growth scaled to 1,000 connections, MiB.
    pub mib_per_1000: f64,
}

/// One scenario's outcomes, by path, in path order.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// Stable key (`http1_small`, `http1_64k`, `h2c_small`, `tcp_bulk`, `idle_http`,
    /// `idle_tcp`).
    pub key: &'static str,
    /// Human title.
    pub title: &'static str,
    /// Outcome per path name (a JSON object in path order).
    #[serde(serialize_with = "in_order_map")]
    pub paths: Vec<(String, Outcome)>,
}

fn in_order_map<S: serde::Serializer>(
    pairs: &[(String, Outcome)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

impl ScenarioResult {
    fn outcome(&self, path: &str) -> Option<&Outcome> {
        self.paths.iter().find(|(p, _)| p == path).map(|(_, o)| o)
    }
}

/// A path the run measured or skipped.
#[derive(Clone, Debug, Serialize)]
pub struct PathInfo {
    /// `direct`, `rig`, `rig+json`, `haproxy`, `nginx` or `pingora`.
    pub name: String,
    /// Version or description.
    pub version: String,
    /// Why it was skipped, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Anything worth knowing (e.g. what it cannot do here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Everything a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The settings used.
    pub settings: BTreeMap<&'static str, serde_json::Value>,
    /// CPUs the client, origin and proxies shared.
    pub cpus: usize,
    /// How to read the numbers.
    pub caveat: String,
    /// The paths, in column order.
    pub paths: Vec<PathInfo>,
    /// The scenarios, in row order.
    pub scenarios: Vec<ScenarioResult>,
    /// What rig's sinks saw, by path (`events`, `dropped`, `json_bytes`).
    pub rig_observation: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Report {
    /// Writes the report as pretty JSON to `path`, creating its directory.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The table, the notes under it and the caveat, as printed on stdout.
    pub fn render(&self) -> String {
        let columns: Vec<&str> = self
            .paths
            .iter()
            .filter(|p| p.skipped.is_none())
            .map(|p| p.name.as_str())
            .collect();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["scenario".to_string(), "metric".to_string()];
        header.extend(columns.iter().map(|c| c.to_string()));
        header.extend(RATIOS.iter().map(|other| format!("rig÷{other}")));
        rows.push(header);
        for scenario in &self.scenarios {
            for metric in METRICS.iter().filter(|m| m.applies(scenario.key)) {
                let mut row = vec![scenario.title.to_string(), metric.label.to_string()];
                let value = |path: &str| scenario.outcome(path).and_then(|o| (metric.get)(o));
                for column in &columns {
                    row.push(match scenario.outcome(column) {
                        Some(Outcome::Failed { .. }) => "failed".into(),
                        _ => value(column).map_or("—".into(), |v| format_value(v, metric)),
                    });
                }
                for other in RATIOS {
                    row.push(match (value("rig"), value(other)) {
                        (Some(rig), Some(o)) if o > 0.0 => format!("{:.2}×", rig / o),
                        _ => "—".into(),
                    });
                }
                rows.push(row);
            }
        }
        let mut out = table(&rows);
        out.push('\n');
        self.render_notes(&mut out);
        out
    }

    fn render_notes(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "ratios: rig's value ÷ the other's (above 1 is better for req/s and Gbit/s, \
             below 1 is better for latency, CPU and memory)."
        );
        for path in &self.paths {
            match &path.skipped {
                Some(reason) => {
                    let _ = writeln!(out, "{}: skipped: {reason}", path.name);
                }
                None => {
                    let _ = writeln!(out, "{}: {}", path.name, path.version);
                }
            }
            if let Some(note) = &path.note {
                let _ = writeln!(out, "  note: {note}");
            }
        }
        for scenario in &self.scenarios {
            for (path, outcome) in &scenario.paths {
                match outcome {
                    Outcome::Failed { error } => {
                        let _ = writeln!(out, "{} via {path} failed: {error}", scenario.title);
                    }
                    Outcome::Http(http) if http.errors > 0 => {
                        let _ = writeln!(
                            out,
                            "{} via {path}: {} failed requests (first: {})",
                            scenario.title,
                            http.errors,
                            http.first_error.as_deref().unwrap_or("?")
                        );
                    }
                    _ => {}
                }
            }
        }
        for (path, stats) in &self.rig_observation {
            let get = |k: &str| stats.get(k).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{path} observed {} events ({} observations dropped, {} bytes of event JSON)",
                get("events"),
                get("dropped"),
                get("json_bytes")
            );
        }
        let _ = writeln!(out, "caveat: {}", self.caveat);
    }
}

/// The paths rig is compared with in the ratio columns, in column order.
const RATIOS: [&str; 3] = ["haproxy", "direct", "splice"];

/// One row kind of the table.
struct Metric {
    label: &'static str,
    /// Scenario keys it applies to.
    scenarios: &'static [&'static str],
    get: fn(&Outcome) -> Option<f64>,
    decimals: usize,
}

impl Metric {
    fn applies(&self, key: &str) -> bool {
        self.scenarios.contains(&key)
    }
}

const HTTP: &[&str] = &["http1_small", "http1_64k", "h2c_small"];

const METRICS: &[Metric] = &[
    Metric {
        label: "req/s",
        scenarios: HTTP,
        get: |o| http(o).map(|h| h.req_per_s),
        decimals: 0,
    },
    Metric {
        label: "p50 µs",
        scenarios: HTTP,
        get: |o| http(o).map(|h| h.p50_us),
        decimals: 0,
    },
    Metric {
        label: "p99 µs",
        scenarios: HTTP,
        get: |o| http(o).map(|h| h.p99_us),
        decimals: 0,
    },
    Metric {
        label: "p99.9 µs",
        scenarios: HTTP,
        get: |o| http(o).map(|h| h.p999_us),
        decimals: 0,
    },
    Metric {
        label: "proxy CPU µs/req",
        scenarios: HTTP,
        get: |o| http(o).and_then(|h| h.proxy_cpu_us_per_req),
        decimals: 1,
    },
    Metric {
        label: "Gbit/s",
        scenarios: &["tcp_bulk"],
        get: |o| match o {
            Outcome::Tcp(t) => Some(t.gbit_per_s),
            _ => None,
        },
        decimals: 2,
    },
    Metric {
        label: "proxy CPU ms/GiB",
        scenarios: &["tcp_bulk"],
        get: |o| match o {
            Outcome::Tcp(t) => t.proxy_cpu_ms_per_gib,
            _ => None,
        },
        decimals: 0,
    },
    Metric {
        label: "RSS MiB/1k conns",
        scenarios: &["idle_http", "idle_tcp"],
        get: |o| match o {
            Outcome::Memory(m) => Some(m.mib_per_1000),
            _ => None,
        },
        decimals: 1,
    },
];

fn http(outcome: &Outcome) -> Option<&HttpSummary> {
    match outcome {
        Outcome::Http(h) => Some(h),
        _ => None,
    }
}

fn format_value(value: f64, metric: &Metric) -> String {
    if metric.decimals == 0 {
        group_thousands(value.round() as i64)
    } else {
        format!("{value:.*}", metric.decimals)
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Left-aligns the first two columns and right-aligns the rest.
fn table(rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len)).map(width).collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i < 2 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if n == 0 {
            let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(req_per_s: f64, p99_us: f64) -> Outcome {
        Outcome::Http(HttpSummary {
            req_per_s,
            p50_us: 100.0,
            p99_us,
            p999_us: 900.0,
            max_us: 1000.0,
            requests: 10,
            errors: 0,
            reconnects: 0,
            first_error: None,
            proxy_cpu_us_per_req: None,
        })
    }

    fn report() -> Report {
        let path = |name: &str, skipped: Option<&str>| PathInfo {
            name: name.into(),
            version: format!("{name} 1.0"),
            skipped: skipped.map(Into::into),
            note: None,
        };
        Report {
            settings: BTreeMap::new(),
            cpus: 2,
            caveat: "shared cores".into(),
            paths: vec![
                path("direct", None),
                path("rig", None),
                path("haproxy", None),
                path("pingora", Some("not built")),
            ],
            scenarios: vec![ScenarioResult {
                key: "http1_small",
                title: "HTTP/1.1 16 B",
                paths: vec![
                    ("direct".into(), summary(40_000.0, 500.0)),
                    ("rig".into(), summary(30_000.0, 800.0)),
                    ("haproxy".into(), summary(20_000.0, 1_000.0)),
                ],
            }],
            rig_observation: BTreeMap::from([(
                "rig".to_string(),
                BTreeMap::from([("events".to_string(), 42)]),
            )]),
        }
    }

    #[test]
    fn table_has_a_column_per_measured_path_and_the_ratios() {
        let text = report().render();
        let header = text.lines().next().unwrap();
        assert!(header.contains("direct") && header.contains("haproxy"));
        assert!(!header.contains("pingora"), "skipped paths get no column");
        let req = text.lines().find(|l| l.contains("req/s")).unwrap();
        assert!(req.contains("40,000") && req.contains("30,000"), "{req}");
        assert!(req.contains("1.50×"), "rig÷haproxy: {req}");
        assert!(req.contains("0.75×"), "rig÷direct: {req}");
        let p99 = text.lines().find(|l| l.contains("p99 µs")).unwrap();
        assert!(p99.contains("0.80×"), "{p99}");
        assert!(text.contains("pingora: skipped: not built"));
        assert!(text.contains("rig observed 42 events"));
        assert!(text.contains("caveat: shared cores"));
    }

    #[test]
    fn json_names_every_scenario_and_outcome_kind() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["scenarios"][0]["key"], "http1_small");
        let rig = &json["scenarios"][0]["paths"]["rig"];
        assert_eq!(rig["kind"], "http");
        assert_eq!(rig["req_per_s"], 30_000.0);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(-1_000), "-1,000");
    }
}
