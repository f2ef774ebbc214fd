//! Following an environment's event stream for its whole life, on the SDK's background
//! runtime: recording its phase and traffic, and answering rigd's callbacks.
//!
//! Callbacks are handled concurrently with the stream: each runs in a task of its own, so
//! a slow hook never holds up events (or other hooks). The user's function runs on the
//! test's runtime (where its sockets and timers belong); the task here waits for it, with the
//! callback timeout, and posts the `callback.response`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rig_types::{CallbackKind, CallbackRequest, Event, EventType};
use serde_json::json;
use tokio::runtime::Handle;
use tokio::task::JoinError;

use super::shared::{Phase, Shared, UpInfo};
use crate::endpoint::Endpoint;
use crate::error::seconds;
use crate::logs::LogSink;
use crate::service::{ClientFn, Handler, Phase as HookPhase};
use crate::transport::client::ClientError;
use crate::transport::event_stream::EventStream;
use crate::wiring::Wiring;

/// One environment's stream follower and callback dispatcher.
pub(crate) struct Session {
    shared: Arc<Shared>,
    handlers: Mutex<HashMap<String, Handler>>,
    /// The test's runtime: where hooks and in-test services run.
    user: Handle,
    /// The SDK's runtime: where log pumps run.
    background: Handle,
    callback_timeout: Duration,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        handlers: HashMap<String, Handler>,
        user: Handle,
        background: Handle,
        callback_timeout: Duration,
    ) -> Session {
        Session {
            shared,
            handlers: Mutex::new(handlers),
            user,
            background,
            callback_timeout,
        }
    }

    /// Reads `stream` until it ends (after `environment.down`) or breaks for good.
    pub(crate) async fn run(self: Arc<Self>, mut stream: EventStream) {
        loop {
            match stream.next().await {
                Some(Ok(event)) => self.on_event(event),
                Some(Err(e)) if e.is_recoverable() => continue,
                Some(Err(e)) => {
                    let reason = lost_reason(e);
                    self.shared.update(|s| {
                        if !matches!(s.phase, Phase::Down(_)) {
                            s.phase = Phase::Lost(reason);
                        }
                    });
                    return;
                }
                None => return,
            }
        }
    }

    fn on_event(self: &Arc<Self>, event: Event) {
        let seq = event.seq;
        self.apply(event);
        // After the event's own change, so a waiter that sees `seen_seq` sees the event too.
        self.shared.update(|s| s.seen_seq = s.seen_seq.max(seq));
    }

    fn apply(self: &Arc<Self>, event: Event) {
        match event.event_type {
            EventType::CallbackRequest => {
                if let Some(request) = event.callback {
                    let this = self.clone();
                    tokio::spawn(async move { this.answer(event.service, *request).await });
                }
            }
            EventType::EnvironmentUp => {
                let ingresses = event
                    .ingresses
                    .into_iter()
                    .map(|(service, ingresses)| {
                        let converted: BTreeMap<String, Endpoint> = ingresses
                            .into_iter()
                            .map(|(name, ep)| (name, Endpoint::from(ep)))
                            .collect();
                        (service, converted)
                    })
                    .collect();
                let info = Arc::new(UpInfo {
                    ingresses,
                    env_dir: event.env_dir.into(),
                });
                self.shared.update(|s| s.phase = Phase::Up(info));
            }
            EventType::EnvironmentDown => {
                let message = if event.message.is_empty() {
                    "environment shut down unexpectedly".to_string()
                } else {
                    event.message
                };
                self.shared.update(|s| s.phase = Phase::Down(message));
            }
            EventType::ProgressStall => {
                self.shared.update(|s| s.stall = Some(stall_text(&event)));
            }
            ref t if t.is_traffic() => {
                self.shared.update(|s| s.traffic.push(event));
            }
            _ => {}
        }
    }

    async fn answer(self: Arc<Self>, service: String, request: CallbackRequest) {
        let log = LogSink::start(
            &self.background,
            self.shared.client.clone(),
            self.shared.id.clone(),
            service.clone(),
        );
        let wiring = Wiring::from_context(
            request.wiring.clone().unwrap_or_default(),
            service.clone(),
            Some(log.clone()),
        );
        let handler = self
            .handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request.name);
        let outcome = match (handler, request.kind) {
            (Some(h), _) if h.service() != service => Err(format!(
                "callback {:?} belongs to service {:?}, not {service:?}",
                request.name,
                h.service()
            )),
            (
                Some(Handler::Hook {
                    phase,
                    timeout,
                    run,
                    ..
                }),
                CallbackKind::Hook,
            ) => {
                let result = self.run_hook(phase, timeout, run, wiring).await;
                log.flush().await;
                result
            }
            (Some(Handler::Start { run, .. }), CallbackKind::Start) => {
                self.start_func(&service, run, wiring, log);
                Ok(())
            }
            (Some(_), kind) => Err(format!(
                "callback {:?} was registered for another kind of call than {kind:?}",
                request.name
            )),
            (None, _) => Err(format!(
                "no handler registered for callback {:?} in this test process (each hook and \
                 func runs once per environment)",
                request.name
            )),
        };
        let mut response = json!({
            "type": "callback.response",
            "service": service,
            "request_id": request.request_id,
        });
        if let Err(error) = outcome {
            response["error"] = json!(error);
        }
        // If this fails rigd times the callback out and reports it; nothing better to do.
        let _ = self
            .shared
            .client
            .post_event(&self.shared.id, &response)
            .await;
    }

    /// Runs a hook on the test's runtime within its own timeout, else the callback timeout.
    async fn run_hook(
        &self,
        phase: HookPhase,
        own_timeout: Option<Duration>,
        run: ClientFn,
        wiring: Wiring,
    ) -> Result<(), String> {
        let task = self.user.spawn(run(wiring));
        let abort = task.abort_handle();
        let limit = own_timeout.unwrap_or(self.callback_timeout);
        match tokio::time::timeout(limit, task).await {
            Err(_) => {
                abort.abort();
                let (which, raise) = match own_timeout {
                    Some(_) => ("its hook timeout", "the service's .hook_timeout(..)"),
                    None => (
                        "the callback timeout",
                        "Environment::builder(..).callback_timeout(..), or the service's \
                         .hook_timeout(..)",
                    ),
                };
                Err(format!(
                    "{} hook did not finish within {which} ({}); raise it with {raise}",
                    phase.as_str(),
                    seconds(limit)
                ))
            }
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(error_chain(&*e)),
            Ok(Err(e)) => Err(join_error_text(e, "hook")),
        }
    }

    /// Spawns an in-test service on the test's runtime and watches it: an error, a panic or
    /// an early return is reported to rigd as `service.error` (unless the environment is
    /// being torn down).
    fn start_func(&self, service: &str, run: ClientFn, wiring: Wiring, log: LogSink) {
        let task = self.user.spawn(run(wiring));
        let abort = task.abort_handle();
        self.shared.update(|s| s.funcs.push(abort));
        let shared = self.shared.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            let error = match task.await {
                // As a process that exits 0: whatever it served is gone, and rigd would
                // otherwise wait out its readiness timeout, or the test meet refused
                // connections with nothing said.
                Ok(Ok(())) => Some(
                    "the function returned Ok(()) while the environment was running: a \
                     service must keep serving until the environment is torn down (a loop \
                     that ended, or a server future that was not awaited?)"
                        .to_string(),
                ),
                Ok(Err(e)) => Some(error_chain(&*e)),
                Err(e) if e.is_cancelled() => None,
                Err(e) => Some(join_error_text(e, "service")),
            };
            log.flush().await;
            let Some(error) = error else { return };
            if shared.lock().tearing_down {
                return;
            }
            let event = json!({"type": "service.error", "service": service, "error": error});
            let _ = shared.client.post_event(&shared.id, &event).await;
        });
    }
}

/// An error and its sources: `connect: connection refused`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

fn join_error_text(error: JoinError, what: &str) -> String {
    if error.is_panic() {
        let payload = error.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into());
        format!("{what} panicked: {message}")
    } else {
        format!("{what} was cancelled: the test's runtime shut down")
    }
}

/// `progress.stall` as text: its message, else what each service waits on.
fn stall_text(event: &Event) -> String {
    if !event.message.is_empty() {
        return event.message.clone();
    }
    let Some(diagnostic) = &event.diagnostic else {
        return "no progress".into();
    };
    let mut text = format!("no progress for {}:", diagnostic.stalled_for);
    for s in &diagnostic.services {
        text.push_str(&format!("\n  {}: {}", s.name, s.phase));
        if let Some(detail) = s.detail() {
            text.push_str(&format!(" — {detail}"));
        }
    }
    text
}

/// Why the stream was lost, for [`Phase::Lost`]: the environment is named where the reason is
/// reported ([`crate::Error::StreamLost`]), so not again here.
fn lost_reason(e: ClientError) -> String {
    match e {
        ClientError::StreamLost { reason, .. } => reason,
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_stream_is_explained_once() {
        let lost = ClientError::StreamLost {
            id: "abc".into(),
            reason: "cannot connect to rigd; could not reconnect within 10s".into(),
        };
        let error = crate::Error::StreamLost {
            name: "orders".into(),
            id: "abc".into(),
            reason: lost_reason(lost),
        };
        assert_eq!(
            error.to_string(),
            "lost the event stream of environment \"orders\" (abc): cannot connect to rigd; \
             could not reconnect within 10s"
        );
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connect to db")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn error_chains_are_joined() {
        let e = Outer(std::io::Error::other("refused"));
        assert_eq!(error_chain(&e), "connect to db: refused");
    }

    #[tokio::test]
    async fn panics_are_described_with_their_message() {
        let err = tokio::spawn(async { panic!("boom {}", 1) })
            .await
            .unwrap_err();
        assert_eq!(join_error_text(err, "hook"), "hook panicked: boom 1");
    }

    #[test]
    fn stall_text_prefers_the_message_then_the_snapshot() {
        let e: Event = serde_json::from_value(serde_json::json!({
            "seq": 1, "type": "progress.stall",
            "diagnostic": {"stalled_for": "30s", "services": [
                {"name": "api", "phase": "published", "waiting_on": ["db"]},
                {"name": "db", "phase": "starting"}]}
        }))
        .unwrap();
        assert_eq!(
            stall_text(&e),
            "no progress for 30s:\n  api: published — waiting on db\n  db: starting"
        );
    }
}
