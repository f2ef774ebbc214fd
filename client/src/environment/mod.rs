//! [`Environment`]: a running environment, its endpoints, its traffic, and its end.

mod builder;
mod session;
mod shared;
mod teardown;

pub use builder::{EnvironmentBuilder, DEFAULT_CALLBACK_TIMEOUT, DEFAULT_STARTUP_TIMEOUT};
pub use teardown::DownReport;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rig_types::{Event, Protocol};
use serde_json::json;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::traffic::{Request, RequestFilter};
use shared::{Phase, Shared, UpInfo};
use teardown::{Ending, Lifetime};

/// How long [`Environment::expect_requests`] waits for the expected requests to arrive.
pub const DEFAULT_TRAFFIC_WAIT: Duration = Duration::from_secs(10);

/// A running environment. Created by [`rig::up`](crate::up) or
/// [`Environment::builder`]; ended by [`Environment::down`] or by dropping it.
///
/// While it exists the SDK renews its TTL, so a long test never loses it. Dropping it
/// without `down()` tears it down too, blocking the dropping thread until rigd has (this
/// works in `#[tokio::test]`; the work happens on the SDK's own thread). A drop while the
/// test panics tells rigd the test failed (`reason=test_failed`) and prints rigd's failure
/// summary and the log file paths to stderr.
pub struct Environment {
    lifetime: Lifetime,
    shared: Arc<Shared>,
    up: Arc<UpInfo>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .field("rigd", &self.shared.client.addr())
            .field("ingresses", &self.up.ingresses)
            .field("env_dir", &self.up.env_dir)
            .finish_non_exhaustive()
    }
}

impl Environment {
    /// Options for an environment called `name`; add services and call
    /// [`EnvironmentBuilder::up`].
    pub fn builder(name: impl Into<String>) -> EnvironmentBuilder {
        EnvironmentBuilder::new(name.into())
    }

    fn new(lifetime: Lifetime, shared: Arc<Shared>, up: Arc<UpInfo>) -> Environment {
        Environment {
            lifetime,
            shared,
            up,
        }
    }

    /// The environment id rigd assigned (`rig down <id>`, `rig traffic <id>`).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The environment name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The `host:port` of the rigd running it.
    pub fn rigd_addr(&self) -> &str {
        self.shared.client.addr()
    }

    /// The directory shared by the environment's services (`RIG_ENV_DIR`); each service has
    /// its own `temp_dir` below it.
    pub fn env_dir(&self) -> &Path {
        &self.up.env_dir
    }

    /// The names of the environment's services, sorted.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.up.ingresses.keys().map(String::as_str)
    }

    /// The endpoint of `service`: its `default` ingress, or its only one. In observe mode
    /// this is the proxy in front of it, so the test's calls are recorded.
    ///
    /// # Errors
    /// [`Error::UnknownService`], or [`Error::UnknownIngress`] when the service has several
    /// ingresses and none is called `default`.
    pub fn endpoint(&self, service: &str) -> Result<Endpoint> {
        let ingresses = self.ingresses(service)?;
        let only = (ingresses.len() == 1)
            .then(|| ingresses.values().next())
            .flatten();
        match ingresses.get("default").or(only) {
            Some(ep) => Ok(ep.clone()),
            None => self.endpoint_at(service, "default"),
        }
    }

    /// The endpoint of ingress `ingress` of `service`.
    ///
    /// # Errors
    /// [`Error::UnknownService`] or [`Error::UnknownIngress`], naming what exists.
    pub fn endpoint_at(&self, service: &str, ingress: &str) -> Result<Endpoint> {
        let ingresses = self.ingresses(service)?;
        ingresses
            .get(ingress)
            .cloned()
            .ok_or_else(|| Error::UnknownIngress {
                service: service.to_string(),
                ingress: ingress.to_string(),
                available: ingresses.keys().cloned().collect(),
            })
    }

    /// `http://host:port` of `service`'s HTTP ingress (see [`Environment::endpoint`]).
    ///
    /// # Errors
    /// As [`Environment::endpoint`], or [`Error::NotHttp`] for a non-HTTP ingress.
    pub fn url(&self, service: &str) -> Result<String> {
        let ep = self.endpoint(service)?;
        self.http_url(service, "default", ep)
    }

    /// `http://host:port` of ingress `ingress` of `service`.
    ///
    /// # Errors
    /// As [`Environment::endpoint_at`], or [`Error::NotHttp`].
    pub fn url_at(&self, service: &str, ingress: &str) -> Result<String> {
        let ep = self.endpoint_at(service, ingress)?;
        self.http_url(service, ingress, ep)
    }

    fn http_url(&self, service: &str, ingress: &str, ep: Endpoint) -> Result<String> {
        if ep.protocol == Protocol::Http {
            Ok(ep.url())
        } else {
            Err(Error::NotHttp {
                service: service.to_string(),
                ingress: ingress.to_string(),
                protocol: ep.protocol.to_string(),
            })
        }
    }

    fn ingresses(&self, service: &str) -> Result<&BTreeMap<String, Endpoint>> {
        self.up
            .ingresses
            .get(service)
            .ok_or_else(|| Error::UnknownService {
                service: service.to_string(),
                environment: self.shared.name.clone(),
                available: self.up.ingresses.keys().cloned().collect(),
            })
    }

    /// Records a test failure note in the environment's event log (a `test.note`, prefixed
    /// with the caller's `file:line`). rigd then reports the environment's outcome as failed,
    /// and the note appears in its timeline and failure summary.
    ///
    /// ```no_run
    /// # async fn example(env: &rig::Environment) -> rig::Result<()> {
    /// env.note("order total was 0, expected 42").await?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn note(&self, message: impl Into<String>) -> impl Future<Output = Result<()>> + '_ {
        let location = std::panic::Location::caller();
        let file = Path::new(location.file())
            .file_name()
            .map_or_else(|| location.file().into(), |f| f.to_string_lossy());
        let text = format!("{file}:{}: {}", location.line(), message.into());
        async move {
            let event = json!({"type": "test.note", "error": text});
            self.shared
                .client
                .post_event(&self.shared.id, &event)
                .await?;
            Ok(())
        }
    }

    /// Tears the environment down and waits until rigd has: services stopped, log files
    /// written, the environment directory removed (kept with `RIG_PRESERVE=true`).
    ///
    /// # Errors
    /// rigd could not be reached, or the environment no longer exists there.
    pub async fn down(mut self) -> Result<DownReport> {
        self.lifetime.end(Ending::Normal).await
    }

    /// Every traffic event recorded so far (HTTP, gRPC, TCP, Kafka), in order.
    pub fn traffic_events(&self) -> Vec<Event> {
        self.shared.lock().traffic.clone()
    }

    /// The HTTP requests recorded so far that match `filter`, in order.
    ///
    /// Recording is asynchronous: a request's event reaches the SDK shortly after its
    /// response reaches the caller. To assert on requests just made, use
    /// [`Environment::wait_for_request`] or [`Environment::expect_requests`].
    pub fn requests(&self, filter: &RequestFilter) -> Vec<Request> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect()
    }

    /// The first request matching `filter`, waiting up to `timeout` for it.
    ///
    /// ```no_run
    /// # async fn example(env: &rig::Environment) -> rig::Result<()> {
    /// use std::time::Duration;
    /// let filter = rig::RequestFilter::new().edge("api", "payments").method("POST");
    /// let call = env.wait_for_request(&filter, Duration::from_secs(5)).await?;
    /// assert_eq!(call.status, 201);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::RequestTimeout`], listing the requests that were seen, or
    /// [`Error::EnvironmentDown`] / [`Error::StreamLost`] if the environment ends first.
    pub async fn wait_for_request(
        &self,
        filter: &RequestFilter,
        timeout: Duration,
    ) -> Result<Request> {
        let found = self
            .shared
            .wait_until(timeout, |s| {
                if let Some(r) = s.requests.iter().find(|r| filter.matches(r)) {
                    return Some(Ok(r.clone()));
                }
                self.ended(&s.phase).map(Err)
            })
            .await;
        match found {
            Some(result) => result,
            None => Err(Error::RequestTimeout {
                filter: filter.to_string(),
                after: timeout,
                seen: self.seen(filter),
            }),
        }
    }

    /// Checks that exactly `count` requests match `filter`, waiting up to
    /// [`DEFAULT_TRAFFIC_WAIT`] for that many to arrive; returns them.
    ///
    /// ```no_run
    /// # async fn example(env: &rig::Environment) -> rig::Result<()> {
    /// let orders = rig::RequestFilter::new().to("api").method("POST").path("/orders");
    /// env.expect_requests(&orders, 1).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Events arrive asynchronously, so the check passes as soon as `count` have arrived; a
    /// request still in flight at that moment is not counted.
    ///
    /// # Errors
    /// [`Error::RequestCount`], listing the matching requests and every request seen.
    pub async fn expect_requests(
        &self,
        filter: &RequestFilter,
        count: usize,
    ) -> Result<Vec<Request>> {
        self.expect_requests_within(filter, count, DEFAULT_TRAFFIC_WAIT)
            .await
    }

    /// [`Environment::expect_requests`] with an explicit wait.
    ///
    /// # Errors
    /// As [`Environment::expect_requests`].
    pub async fn expect_requests_within(
        &self,
        filter: &RequestFilter,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Request>> {
        let enough = |s: &shared::State| {
            let n = s.requests.iter().filter(|r| filter.matches(r)).count();
            (n >= count || self.ended(&s.phase).is_some()).then_some(())
        };
        if count > 0 {
            self.shared.wait_until(timeout, enough).await;
        }
        let matched = self.requests(filter);
        if matched.len() == count {
            Ok(matched)
        } else {
            Err(Error::RequestCount {
                filter: filter.to_string(),
                expected: count,
                matched: matched.iter().map(ToString::to_string).collect(),
                seen: self.seen(filter),
            })
        }
    }

    /// Panics unless exactly `count` requests match `filter` (see
    /// [`Environment::expect_requests`]); the message lists what was seen.
    pub async fn assert_requests(&self, filter: &RequestFilter, count: usize) -> Vec<Request> {
        match self.expect_requests(filter, count).await {
            Ok(requests) => requests,
            Err(e) => panic!("{e}"),
        }
    }

    /// Every request seen, one line each, for error messages (probes only when the filter
    /// includes them).
    fn seen(&self, filter: &RequestFilter) -> Vec<String> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| !r.probe || filter.includes_probes())
            .map(ToString::to_string)
            .collect()
    }

    /// The error for a wait that cannot succeed any more.
    fn ended(&self, phase: &Phase) -> Option<Error> {
        let (name, id) = (self.shared.name.clone(), self.shared.id.clone());
        match phase {
            Phase::Down(message) => Some(Error::EnvironmentDown {
                name,
                id,
                message: message.clone(),
            }),
            Phase::Lost(reason) => Some(Error::StreamLost {
                name,
                id,
                reason: reason.clone(),
            }),
            _ => None,
        }
    }
}
