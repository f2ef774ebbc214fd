//! Callbacks: rigd asks the client (SDK) to run a registered function and waits for its answer.
//!
//! rigd publishes `callback.request` with the service's resolved wiring; the client, which
//! follows the event stream, runs the function and POSTs `callback.response` with the same
//! `request_id`.

use std::sync::Arc;
use std::time::Duration;

use rig_types::{CallbackKind, CallbackRequest, Event, EventType, GoDuration, WiringContext};

use super::Instance;

/// Dispatches callbacks for one service.
#[derive(Clone)]
pub struct CallbackDispatcher {
    instance: Arc<Instance>,
    service: Arc<str>,
    wiring: Arc<WiringContext>,
    timeout: Duration,
}

impl CallbackDispatcher {
    pub(super) fn new(
        instance: Arc<Instance>,
        service: &str,
        wiring: WiringContext,
        timeout: Duration,
    ) -> CallbackDispatcher {
        CallbackDispatcher {
            instance,
            service: service.into(),
            wiring: Arc::new(wiring),
            timeout,
        }
    }

    /// Publishes a `callback.request` for function `name` and waits for the client's
    /// `callback.response`. Returns the response data; a client error or no answer within the
    /// timeout (`timeout`, else the environment's `callback_timeout`) is an error. Cancel by
    /// dropping the future.
    pub async fn call(
        &self,
        name: &str,
        kind: CallbackKind,
        timeout: Option<Duration>,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, String> {
        let timeout = timeout.unwrap_or(self.timeout);
        // Upstream's ids (`<instance>-<service>-<name>`) repeat when a service has two hooks
        // with the same name, and the second wait then matches the first answer; a counter
        // keeps ours unique. Clients treat the id as opaque.
        let request_id = format!(
            "{}-{}-{}-{}",
            self.instance.id(),
            self.service,
            name,
            self.instance.next_callback_number()
        );
        let mut event = Event::for_service(EventType::CallbackRequest, &*self.service);
        event.callback = Some(Box::new(CallbackRequest {
            request_id: request_id.clone(),
            name: name.to_string(),
            kind,
            wiring: Some((*self.wiring).clone()),
        }));
        self.instance.emit(event);

        let answer = self.instance.log().wait_for(move |e| {
            e.event_type == EventType::CallbackResponse
                && e.result
                    .as_ref()
                    .is_some_and(|r| r.request_id == request_id)
        });
        let response = tokio::time::timeout(timeout, answer).await.map_err(|_| {
            format!(
                "callback {name:?} response not received within {} — client may have disconnected",
                GoDuration::from_std(timeout)
            )
        })?;
        let result = response.result.clone().unwrap_or_default();
        if !result.error.is_empty() {
            return Err(format!("callback {name:?}: error: {}", result.error));
        }
        Ok(result.data)
    }
}
