//! `rig up <spec.json>`: bring up an environment from a spec file and watch it.
//!
//! 1. Read the spec and fill `dir` and `host_env` ([`SpecFile`]).
//! 2. Find or start rigd ([`Autostart`]), then `POST /environments`.
//! 3. Follow the event stream (with `?logs=true` under `--logs`), printing progress per
//!    service ([`Progress`]); on `environment.up`, the endpoints and the env dir; after that,
//!    one line per observed exchange.
//! 4. Ctrl-C or SIGTERM: `DELETE ...?log=true`, showing the services stop, then the log file
//!    and any failure summary; exit 0 once the environment was up, 130 if it was interrupted
//!    before it came up (so scripts can tell the two apart). A second Ctrl-C exits at once
//!    with 130.
//! 5. `environment.down` that nobody asked for: print its failure summary, delete the
//!    environment (writing its log files) and exit 1. When `environment.destroying` came
//!    first, someone else (`rig down`, the TTL, rigd shutting down) tore it down: say who,
//!    without deleting it again, and exit 1.
//!
//! Client functions (hooks of type `client_func`, `client` services) need an SDK process to
//! run them; `rig up` answers their callbacks with an error so the environment fails at once
//! with a clear message instead of waiting for a timeout.
//!
//! While it runs, `rig up` keeps the environment's TTL from expiring
//! (`POST /environments/{id}/keepalive`), like the SDK does for a running test, and it
//! follows the events as the environment's owner: killed before it could tear down, its
//! environment ends within rigd's orphan grace period.

mod options;
mod progress;
mod spec_file;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rig_types::{Event, EventType, GoDuration};
use serde_json::json;

use super::args::Args;
use super::autostart::Autostart;
use super::client::{ClientError, DeleteOptions, DeleteResponse, RigdClient};
use super::error::{CliError, CmdResult, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK};
use super::event_stream::EventStream;
use super::output::{eprint_line, one_line, Out, Paint, Style};
use super::signals::Signals;

pub use options::{parse, Parsed, UpOptions, USAGE};
pub use progress::{is_injected, Progress};
pub use spec_file::SpecFile;

/// How often the environment's TTL is pushed out while `rig up` runs (at most; a shorter
/// spec `ttl` shortens it).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
/// After the DELETE returns, how long to wait for the remaining stop events.
const DRAIN_AFTER_DELETE: Duration = Duration::from_secs(2);
/// How long rigd may take to answer `GET /health` after another party tore the environment
/// down; no answer means it is shutting down.
const STILL_RUNNING_WITHIN: Duration = Duration::from_secs(2);

/// Runs `rig up` with the arguments after `up`.
pub async fn run(args: Args) -> CmdResult {
    let opts = match parse(args)? {
        Parsed::Help => {
            Out.line(USAGE);
            return Ok(EXIT_OK);
        }
        Parsed::Run(opts) => opts,
    };
    let style = Style::new(opts.color.enabled_for_stdout());
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::failed(format!("cannot read the current directory: {e}")))?;
    let spec = SpecFile::load(&opts.spec, &cwd)?;
    for warning in &spec.warnings {
        eprint_line(format!("warning: {warning}"));
    }

    let client = find_rigd(opts.server.as_deref(), style).await?;
    let mut signals = Signals::install()?;
    let Some((id, interrupted)) = create(&client, &spec, &mut signals).await? else {
        return Ok(EXIT_INTERRUPTED);
    };

    let name = spec.name().to_string();
    Out.line(style.paint(
        Paint::Dim,
        &format!("environment {name:?} ({id}) on rigd {}", client.addr()),
    ));
    let names = spec.service_names();
    let mut session = Session {
        events: client
            .events(&id, None)
            .with_logs(opts.logs)
            .with_rig_remarks(true)
            .owning(true),
        progress: Progress::new(style, opts.logs, &names),
        client,
        id,
        name,
        style,
        logs: opts.logs,
        observe: spec.observe(),
        was_up: false,
        torn_down_elsewhere: false,
    };
    if interrupted {
        return session.teardown(&mut signals).await;
    }
    let _keepalive = session.keep_alive(keepalive_period(spec.ttl()));
    session.follow(&mut signals).await
}

/// Finds or starts rigd (see [`Autostart`]), saying so when it had to start one.
async fn find_rigd(server: Option<&str>, style: Style) -> Result<RigdClient, CliError> {
    let autostart = Autostart::from_process(server).map_err(failed)?;
    let server = autostart.ensure().await.map_err(failed)?;
    if let Some(pid) = server.spawned_pid {
        let log = server
            .log
            .as_ref()
            .map(|l| format!("; log: {}", l.display()))
            .unwrap_or_default();
        Out.line(style.paint(
            Paint::Dim,
            &format!("started rigd (pid {pid}) on {}{log}", server.addr),
        ));
    }
    RigdClient::new(&server.addr).map_err(failed)
}

/// `POST /environments`. Returns the id and whether a signal arrived meanwhile (the
/// environment must then be torn down at once), or `None` when a second signal asked to quit
/// without waiting.
async fn create(
    client: &RigdClient,
    spec: &SpecFile,
    signals: &mut Signals,
) -> Result<Option<(String, bool)>, CliError> {
    // A signal during the POST cannot be acted on until rigd says which environment it made.
    let create = Box::pin(client.create_environment(&spec.spec));
    let create = match until_signal(create, signals).await {
        // rigd's warnings about the spec were found and printed from the file already.
        Interruptible::Done(result) => return Ok(Some((result.map_err(cannot_create)?.id, false))),
        Interruptible::Signalled(create) => create,
    };
    eprint_line(
        "interrupted: waiting for rigd to create the environment, then tearing it down \
         (Ctrl-C again to quit now)",
    );
    match until_signal(create, signals).await {
        Interruptible::Done(result) => Ok(Some((result.map_err(cannot_create)?.id, true))),
        Interruptible::Signalled(_) => Ok(None),
    }
}

/// One environment being watched.
struct Session {
    client: RigdClient,
    id: String,
    name: String,
    events: EventStream,
    progress: Progress,
    style: Style,
    logs: bool,
    observe: bool,
    /// `environment.up` was seen.
    was_up: bool,
    /// `environment.destroying` was seen while following: someone else is tearing it down.
    torn_down_elsewhere: bool,
}

impl Session {
    /// Follows events until a signal (teardown) or an unrequested
    /// `environment.down` (exit 1).
    async fn follow(&mut self, signals: &mut Signals) -> CmdResult {
        loop {
            tokio::select! {
                signal = signals.recv() => {
                    eprint_line(format!("\n{signal} received"));
                    return self.teardown(signals).await;
                }
                item = self.events.next() => {
                    let event = match item {
                        Some(Ok(event)) => event,
                        Some(Err(e)) if e.is_recoverable() => {
                            eprint_line(format!("rig up: {e}"));
                            continue;
                        }
                        Some(Err(e)) => return Err(CliError::failed(e.to_string())),
                        None => return Err(CliError::failed(format!(
                            "the event stream of environment {} ended before environment.down",
                            self.id
                        ))),
                    };
                    Out.lines(self.progress.render(&event));
                    match event.event_type {
                        EventType::EnvironmentUp => {
                            self.was_up = true;
                            self.print_following_hint();
                        }
                        EventType::CallbackRequest => self.refuse_callback(&event).await,
                        EventType::EnvironmentDestroying => self.torn_down_elsewhere = true,
                        EventType::EnvironmentDown if self.torn_down_elsewhere => {
                            return Ok(self.after_teardown_elsewhere().await);
                        }
                        EventType::EnvironmentDown => return self.after_down(&event, signals).await,
                        _ => {}
                    }
                }
            }
        }
    }

    fn print_following_hint(&self) {
        let what = match (self.observe, self.logs) {
            (true, true) => "following traffic and logs",
            (true, false) => "following traffic",
            (false, true) => "following logs",
            (false, false) => "running",
        };
        Out.line("");
        Out.line(self.style.paint(
            Paint::Dim,
            &format!("{what}; press Ctrl-C to tear the environment down"),
        ));
        if !self.observe {
            Out.line(self.style.paint(
                Paint::Dim,
                "(observe is off in this spec, so traffic is not recorded; remove \"observe\": false to see it)",
            ));
        }
    }

    /// Answers a callback with an error: nothing in `rig up` can run client functions.
    async fn refuse_callback(&self, event: &Event) {
        let Some(cb) = &event.callback else {
            return;
        };
        let answer = json!({
            "type": "callback.response",
            "service": event.service,
            "request_id": cb.request_id,
            "error": format!(
                "client function {:?} cannot run under `rig up`: client functions live in an SDK \
                 test process; use a server-side hook or service type instead",
                cb.name
            ),
        });
        if let Err(e) = self.client.post_event(&self.id, &answer).await {
            eprint_line(format!(
                "rig up: cannot answer callback {}: {e}",
                cb.request_id
            ));
        }
    }

    /// Someone else tore the environment down: says whether that was rigd shutting down (it
    /// no longer answers) or another client or the TTL; exit 1.
    async fn after_teardown_elsewhere(&self) -> i32 {
        let rigd_running = self
            .client
            .health_within(STILL_RUNNING_WITHIN)
            .await
            .is_ok();
        Out.line(format!(
            "  {} {}",
            self.style.paint(Paint::Red, "✗"),
            torn_down_elsewhere_text(&self.name, &self.id, rigd_running)
        ));
        EXIT_FAILURE
    }

    /// The environment went down without being asked to: record its logs, exit 1.
    async fn after_down(&mut self, down: &Event, signals: &mut Signals) -> CmdResult {
        let options = DeleteOptions {
            preserve: env_is_true("RIG_PRESERVE")
                || (!down.message.is_empty() && env_is_true("RIG_PRESERVE_ON_FAILURE")),
            reason: None,
            log: true,
        };
        let delete = Box::pin(self.client.delete_environment(&self.id, &options));
        match until_signal(delete, signals).await {
            Interruptible::Signalled(_) => return Ok(EXIT_INTERRUPTED),
            Interruptible::Done(Ok(response)) => self.print_files(&response, options.preserve),
            // Someone else deleted it already: nothing left to record.
            Interruptible::Done(Err(e)) if e.is_not_found() => {}
            Interruptible::Done(Err(e)) => {
                eprint_line(format!("rig up: deleting environment {}: {e}", self.id));
            }
        }
        Ok(EXIT_FAILURE)
    }

    /// Deletes the environment on request, showing the services stop. Exits 0 if the
    /// environment had come up, else 130: the session was interrupted, not completed.
    async fn teardown(&mut self, signals: &mut Signals) -> CmdResult {
        let done = if self.was_up {
            EXIT_OK
        } else {
            EXIT_INTERRUPTED
        };
        Out.line(format!("tearing down {:?} ({})…", self.name, self.id));
        self.progress.set_tearing_down();
        let options = DeleteOptions {
            preserve: env_is_true("RIG_PRESERVE"),
            reason: None,
            log: true,
        };
        let client = self.client.clone();
        let id = self.id.clone();
        let delete = client.delete_environment(&id, &options);
        tokio::pin!(delete);
        let mut stream_done = false;
        let result = loop {
            tokio::select! {
                result = &mut delete => break result,
                _ = signals.recv() => return Ok(interrupted_again()),
                item = self.events.next(), if !stream_done => stream_done = self.show(item),
            }
        };
        // environment.down is in the log before DELETE returns; show the stops not yet read.
        if !stream_done {
            let deadline = tokio::time::sleep(DRAIN_AFTER_DELETE);
            tokio::pin!(deadline);
            while !stream_done {
                tokio::select! {
                    _ = &mut deadline => break,
                    _ = signals.recv() => return Ok(interrupted_again()),
                    item = self.events.next() => stream_done = self.show(item),
                }
            }
        }
        match result {
            Ok(response) => {
                Out.line(format!(
                    "  {} torn down {:?}",
                    self.style.paint(Paint::Green, "✓"),
                    self.name
                ));
                self.print_files(&response, options.preserve);
                if !self.was_up {
                    eprint_line(format!("interrupted before {:?} was up", self.name));
                }
                Ok(done)
            }
            Err(e) if e.is_not_found() => {
                Out.line(format!("environment {} was already gone", self.id));
                Ok(done)
            }
            Err(e) => Err(CliError::failed(format!(
                "tearing down environment {}: {e}",
                self.id
            ))),
        }
    }

    /// Renders one stream item during teardown; true when the stream is over.
    fn show(&mut self, item: Option<Result<Event, ClientError>>) -> bool {
        match item {
            Some(Ok(event)) => {
                Out.lines(self.progress.render(&event));
                event.event_type == EventType::EnvironmentDown
            }
            Some(Err(e)) => !e.is_recoverable(),
            None => true,
        }
    }

    fn print_files(&self, response: &DeleteResponse, preserved: bool) {
        let dim = |s: &str| self.style.paint(Paint::Dim, s);
        if let Some(log) = response
            .log_file_pretty
            .as_deref()
            .or(response.log_file.as_deref())
        {
            Out.line(format!("  {} {log}", dim("log:")));
        }
        if let Some(error) = response.log_error.as_deref().filter(|e| !e.is_empty()) {
            Out.line(format!(
                "  {} {}",
                dim("log files not written:"),
                one_line(error.to_string())
            ));
        }
        if preserved && !response.env_dir.is_empty() {
            Out.line(format!("  {} {}", dim("env dir kept:"), response.env_dir));
        }
        if let Some(summary) = response.summary.as_deref().filter(|s| !s.trim().is_empty()) {
            Out.line("");
            // The summary's lines are `rig: ` and, continuing one, `rig:   `.
            let summary = self.progress.without_repeats(summary, "rig:   ");
            Out.lines(summary.lines());
        }
    }

    /// Pushes the TTL out every `period` until the returned guard is dropped.
    fn keep_alive(&self, period: Duration) -> AbortOnDrop {
        let client = self.client.clone();
        let id = self.id.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                ticker.tick().await;
                // A rigd without the keepalive route (upstream) answers 404: the TTL then
                // applies as it would for any client.
                if let Err(ClientError::Api { status: 404, .. }) = client.keepalive(&id).await {
                    return;
                }
            }
        }))
    }
}

/// What `rig up` says when an environment it follows was torn down by someone else.
fn torn_down_elsewhere_text(name: &str, id: &str, rigd_running: bool) -> String {
    if rigd_running {
        format!("environment {name:?} ({id}) was torn down by another client (rig down) or its TTL")
    } else {
        format!("rigd stopped: it tore environment {name:?} ({id}) down as it shut down")
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often to call keepalive: [`KEEPALIVE_EVERY`], or a third of a shorter spec `ttl`.
fn keepalive_period(ttl: &str) -> Duration {
    GoDuration::parse(ttl)
        .ok()
        .and_then(GoDuration::to_std)
        .filter(|d| !d.is_zero())
        .map_or(KEEPALIVE_EVERY, |ttl| {
            (ttl / 3).clamp(Duration::from_secs(1), KEEPALIVE_EVERY)
        })
}

enum Interruptible<F: Future> {
    Done(F::Output),
    Signalled(Pin<Box<F>>),
}

/// Runs `future` until it completes or a signal arrives; on a signal the future is handed
/// back, still running, so the caller can decide whether to keep waiting for it.
async fn until_signal<F: Future>(
    mut future: Pin<Box<F>>,
    signals: &mut Signals,
) -> Interruptible<F> {
    tokio::select! {
        output = &mut future => Interruptible::Done(output),
        _ = signals.recv() => Interruptible::Signalled(future),
    }
}

fn interrupted_again() -> i32 {
    eprint_line("interrupted again: exiting without waiting for the teardown to finish");
    EXIT_INTERRUPTED
}

fn env_is_true(key: &str) -> bool {
    std::env::var_os(key).is_some_and(|v| v == "true")
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::failed(e.to_string())
}

fn cannot_create(e: ClientError) -> CliError {
    CliError::failed(format!("cannot create the environment: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_period_follows_short_ttls() {
        assert_eq!(keepalive_period(""), KEEPALIVE_EVERY);
        assert_eq!(keepalive_period("garbage"), KEEPALIVE_EVERY);
        assert_eq!(keepalive_period("10m"), KEEPALIVE_EVERY);
        assert_eq!(keepalive_period("30s"), Duration::from_secs(10));
        assert_eq!(keepalive_period("1s"), Duration::from_secs(1));
    }
}
