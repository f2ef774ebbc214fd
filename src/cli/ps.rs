//! `rig ps`: the environments active on the running rigd, with how to reach each service.

use rig_types::{ResolvedEnvironment, ServiceStatus};
use serde::Serialize;

use super::args::Args;
use super::client::EnvironmentSummary;
use super::error::{CmdResult, EXIT_OK};
use super::flags::{self, Opt};
use super::format::endpoint_text;
use super::live;
use super::ls::to_json;
use super::output::{eprint_line, pad, Out, Paint, Style};

/// `rig ps --help`.
pub const USAGE: &str = "\
Usage: rig ps [options]

List the environments active on the running rigd: name, id, time left before the TTL tears
it down, and one line per service ingress with how to reach it (a URL, a Postgres DSN, ...).

Options:
      --json         print a JSON array (the list with every service's endpoints and status)
      --server ADDR  the rigd to ask (default: $RIG_SERVER_ADDR, else the addr file in $RIG_DIR)
      --color WHEN   auto (default; off when NO_COLOR is set), always or never
  -h, --help         show this help";

const OPTS: &[Opt] = &[Opt::switch("--json", &[]), Opt::value("--server", &[])];

#[derive(Serialize)]
struct JsonEnv<'a> {
    #[serde(flatten)]
    summary: &'a EnvironmentSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a ResolvedEnvironment>,
    /// Why the detail could not be read, when it was not because the environment is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail_error: Option<&'a str>,
}

/// What `GET /environments/{id}` gave for one listed environment.
enum Detail {
    Found(Box<ResolvedEnvironment>),
    /// Torn down since it was listed.
    Gone,
    /// Any other failure, worded.
    Failed(String),
}

impl Detail {
    fn found(&self) -> Option<&ResolvedEnvironment> {
        match self {
            Detail::Found(detail) => Some(detail),
            _ => None,
        }
    }
}

/// Runs `rig ps`.
pub fn run(args: Args) -> CmdResult {
    let parsed = flags::parse("ps", args, OPTS)?;
    if parsed.help {
        Out.line(USAGE);
        return Ok(EXIT_OK);
    }
    parsed.at_most("ps", 0, "no arguments")?;
    let style = Style::new(parsed.color.enabled_for_stdout());
    let json = parsed.has("--json");
    let server = parsed.value("--server").map(str::to_string);
    super::block_on(async move {
        let running = live::find_running(server.as_deref()).await?;
        let envs = live::all_environments(&running).await?;
        let mut details = Vec::with_capacity(envs.len());
        for e in &envs {
            if e.is_ending() {
                details.push(Detail::Gone);
                continue;
            }
            // An environment torn down meanwhile is simply left without detail.
            details.push(match running.client.get_environment(&e.id).await {
                Ok(detail) => Detail::Found(Box::new(detail)),
                Err(error) if error.is_not_found() => Detail::Gone,
                Err(error) => Detail::Failed(error.to_string()),
            });
        }
        if json {
            let out: Vec<JsonEnv> = envs
                .iter()
                .zip(&details)
                .map(|(summary, detail)| JsonEnv {
                    summary,
                    detail: detail.found(),
                    detail_error: match detail {
                        Detail::Failed(error) => Some(error),
                        _ => None,
                    },
                })
                .collect();
            Out.line(to_json(&out)?);
            return Ok(EXIT_OK);
        }
        if envs.is_empty() {
            eprint_line(format!(
                "No active environments on rigd at {}.",
                running.client.addr()
            ));
            return Ok(EXIT_OK);
        }
        let mut out = Vec::new();
        for (i, (e, detail)) in envs.iter().zip(&details).enumerate() {
            if i > 0 {
                out.push(String::new());
            }
            out.extend(render(e, detail, style));
        }
        Out.lines(out);
        Ok(EXIT_OK)
    })
}

fn render(e: &EnvironmentSummary, detail: &Detail, s: Style) -> Vec<String> {
    let when = if e.is_ending() {
        "tearing down".to_string()
    } else if e.is_abandoned() {
        "its test process or rig up is gone: rigd ends it shortly".to_string()
    } else {
        format!("expires in {}", e.remaining_ttl)
    };
    let mut out = vec![format!(
        "{}  {}  {when}",
        s.paint(Paint::Bold, &e.name),
        s.paint(Paint::Dim, &e.id),
    )];
    let detail = match detail {
        Detail::Found(detail) => detail,
        Detail::Gone => {
            if !e.is_ending() {
                out.push(format!("  {}", s.paint(Paint::Dim, "(being torn down)")));
            }
            return out;
        }
        Detail::Failed(error) => {
            out.push(format!("  (its services could not be read: {error})"));
            return out;
        }
    };
    if !detail.failed.is_empty() {
        let first = detail.failed.lines().next().unwrap_or_default();
        out.push(format!(
            "  {}",
            s.paint(Paint::Red, &format!("failed: {first}"))
        ));
    }
    let mut rows = Vec::new();
    for (name, svc) in &detail.services {
        let ingresses = svc.ingresses.as_ref().filter(|i| !i.is_empty());
        match ingresses {
            None => rows.push((name.clone(), "(no ingress)".to_string(), svc.status)),
            Some(ingresses) => {
                for (ingress, ep) in ingresses {
                    let label = if ingress == "default" {
                        name.clone()
                    } else {
                        format!("{name}/{ingress}")
                    };
                    // The address the test is given: in observe mode the proxy that records
                    // what goes through it, which is what a hand-made call should use too.
                    let given = detail.test_ingresses.get(name).and_then(|i| i.get(ingress));
                    let text = match given {
                        Some(proxy) if proxy.hostport != ep.hostport => format!(
                            "{}  {}",
                            endpoint_text(proxy),
                            s.paint(
                                Paint::Dim,
                                &format!("(observed; service at {})", ep.hostport)
                            )
                        ),
                        _ => endpoint_text(ep),
                    };
                    rows.push((label, text, svc.status));
                }
            }
        }
    }
    let width = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    for (label, text, status) in rows {
        let status_text = match status {
            // The environment failed before this service started: it never will.
            ServiceStatus::Pending if !detail.failed.is_empty() => "not started".to_string(),
            _ => serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        };
        let paint = if status == ServiceStatus::Failed {
            Paint::Red
        } else {
            Paint::Yellow
        };
        let status_cell = if status_text == "ready" {
            String::new()
        } else {
            format!("  {}", s.paint(paint, &format!("({status_text})")))
        };
        out.push(format!("  {}  {text}{status_cell}", pad(&label, width)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_without_detail_says_why() {
        let e = EnvironmentSummary {
            id: "abc".into(),
            name: "orders".into(),
            remaining_ttl: "9m0s".into(),
            ..EnvironmentSummary::default()
        };
        let style = Style::new(false);
        assert_eq!(
            render(&e, &Detail::Gone, style),
            ["orders  abc  expires in 9m0s", "  (being torn down)"]
        );
        let ending = EnvironmentSummary {
            status: "destroying".into(),
            ..e.clone()
        };
        assert_eq!(
            render(&ending, &Detail::Gone, style),
            ["orders  abc  tearing down"]
        );
        let abandoned = EnvironmentSummary {
            status: "abandoned".into(),
            ..e.clone()
        };
        assert_eq!(
            render(&abandoned, &Detail::Gone, style)[0],
            "orders  abc  its test process or rig up is gone: rigd ends it shortly"
        );
        let failed = Detail::Failed("rigd returned HTTP 500: boom".into());
        assert_eq!(
            render(&e, &failed, style)[1],
            "  (its services could not be read: rigd returned HTTP 500: boom)"
        );
    }

    #[test]
    fn a_failed_environment_says_so_and_which_services_never_started() {
        let e = EnvironmentSummary {
            id: "abc".into(),
            name: "orders".into(),
            remaining_ttl: "9m0s".into(),
            ..EnvironmentSummary::default()
        };
        let service = |status| rig_types::ResolvedService {
            status,
            ..Default::default()
        };
        let detail = ResolvedEnvironment {
            failed: "artifact \"cargo:/src/api\": cargo build: exit status 101\nerror[E0425]"
                .into(),
            services: [
                ("api".to_string(), service(ServiceStatus::Pending)),
                ("db".to_string(), service(ServiceStatus::Failed)),
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(
            render(&e, &Detail::Found(Box::new(detail)), Style::new(false)),
            [
                "orders  abc  expires in 9m0s",
                "  failed: artifact \"cargo:/src/api\": cargo build: exit status 101",
                "  api                   (no ingress)  (not started)",
                "  db                    (no ingress)  (failed)",
            ]
        );
    }
}
