//! Functions the SDK runs in the test process when rigd asks: hooks and in-test services.

use std::future::Future;

use futures_util::future::BoxFuture;

use crate::error::BoxError;
use crate::wiring::Wiring;

/// A hook or an in-test service, boxed: called once with the wiring rigd sends.
pub(crate) type ClientFn =
    Box<dyn FnOnce(Wiring) -> BoxFuture<'static, Result<(), BoxError>> + Send + 'static>;

/// Boxes a user closure.
pub(crate) fn boxed<F, Fut>(f: F) -> ClientFn
where
    F: FnOnce(Wiring) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    Box::new(move |wiring| Box::pin(f(wiring)))
}

/// An init hook: run by the test (a closure) or by rigd itself (`sql`, `exec`, ...).
pub(crate) enum InitHook {
    /// A closure, run through a `client_func` callback.
    Client(ClientFn),
    /// A server-side hook: its type and configuration, sent as given.
    Server {
        /// `sql`, `exec`, `schema`.
        hook_type: &'static str,
        /// Its `config`.
        config: serde_json::Value,
    },
}

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// After the service's wiring resolves, before it starts.
    Prestart,
    /// After the service is healthy, before dependants start.
    Init,
}

impl Phase {
    /// `prestart` or `init`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::Init => "init",
        }
    }
}

/// What a registered callback name runs.
pub(crate) enum Handler {
    /// A prestart or init hook of `service`.
    Hook {
        /// The service.
        service: String,
        /// Its phase.
        phase: Phase,
        /// Its own time limit ([`Service::hook_timeout`](super::Service::hook_timeout)),
        /// instead of the environment's callback timeout.
        timeout: Option<std::time::Duration>,
        /// The function.
        run: ClientFn,
    },
    /// The body of an in-test service.
    Start {
        /// The service.
        service: String,
        /// The function.
        run: ClientFn,
    },
}

impl Handler {
    /// The service the callback belongs to.
    pub(crate) fn service(&self) -> &str {
        match self {
            Handler::Hook { service, .. } | Handler::Start { service, .. } => service,
        }
    }
}

/// The callback name of hook number `index` (from 1) of `service` in `phase`:
/// `init hook 2 of api`. rigd quotes it in its messages (`callback "init hook 2 of api":
/// error: ...`), so it says which hook failed; it is unique within the environment because
/// service names are.
pub(crate) fn hook_name(service: &str, phase: Phase, index: usize) -> String {
    format!("{} hook {index} of {service}", phase.as_str())
}

/// The callback name of the in-test service `service`: `start func api`.
pub(crate) fn start_name(service: &str) -> String {
    format!("start func {service}")
}
