//! [`Environment`]: a running environment, its endpoints, its traffic, and its end.

mod builder;
mod panic_note;
mod session;
mod shared;
mod teardown;
mod traffic_store;

use traffic_store::TrafficSnapshot;

pub(crate) use builder::RIGD_CALLBACK_MARGIN;
pub use builder::{EnvironmentBuilder, DEFAULT_CALLBACK_TIMEOUT, DEFAULT_STARTUP_TIMEOUT};
pub use teardown::DownReport;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::panic::Location;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rig_types::{Event, Protocol};
use serde_json::json;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::traffic::{
    self, Connection, ConnectionFilter, GrpcCall, GrpcFilter, KafkaFilter, KafkaRequest, Observed,
    Request, RequestFilter, TrafficFilter,
};
use crate::transport::client::ClientError;
use shared::{Phase, Shared, UpInfo};
use teardown::{Ending, Lifetime};

/// How long [`Environment::expect`] waits for the expected traffic to arrive.
pub const DEFAULT_TRAFFIC_WAIT: Duration = Duration::from_secs(10);

/// The name traffic from (or to) the test itself has.
const TEST_SERVICE: &str = "~test";

/// How long a count waits for its event stream to deliver what rigd's log already holds.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// A running environment. Created by [`rig::up`](crate::up) or
/// [`Environment::builder`]; ended by [`Environment::down`] or by dropping it.
///
/// While it exists the SDK renews its TTL, so a long test never loses it. Dropping it
/// without `down()` tears it down too, blocking the dropping thread until rigd has (this
/// works in `#[tokio::test]`; the work happens on the SDK's own thread). A drop while the
/// test panics tells rigd the test failed (`reason=test_failed`), records the panic's message
/// and `file:line` as a note in the event log, and prints rigd's failure summary and the log
/// file paths to stderr.
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
        let (_, endpoint) = self.main_ingress(service)?;
        Ok(endpoint)
    }

    /// The name and endpoint of `service`'s `default` ingress, or of its only one.
    fn main_ingress(&self, service: &str) -> Result<(String, Endpoint)> {
        let ingresses = self.ingresses(service)?;
        let only = (ingresses.len() == 1)
            .then(|| ingresses.iter().next())
            .flatten();
        match ingresses.get_key_value("default").or(only) {
            Some((name, ep)) => Ok((name.clone(), ep.clone())),
            None => Ok(("default".into(), self.endpoint_at(service, "default")?)),
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
        let (ingress, ep) = self.main_ingress(service)?;
        self.http_url(service, &ingress, ep)
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
        let text = located(Location::caller(), &message.into());
        async move { self.post_note(text).await }
    }

    /// Passes `result` through, first recording an `Err` as a failure note (see
    /// [`Environment::note`]). A test that fails with `?` on an error of its own (not a failed
    /// [`expect`](Environment::expect) or [`assert`](Environment::assert), which are
    /// recorded anyway) is otherwise logged as passed: rigd cannot see a test's return value.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), rig::BoxError> {
    /// let env = rig::up("orders", [("api", rig::process("./api"))]).await?;
    /// env.check(async {
    ///     let status = reqwest_like_call(&env.url("api")?).await?;
    ///     if status != 200 {
    ///         return Err(format!("GET / gave {status}").into());
    ///     }
    ///     Ok::<(), rig::BoxError>(())
    /// }.await).await
    /// # }
    /// # async fn reqwest_like_call(_: &str) -> Result<u16, rig::BoxError> { Ok(200) }
    /// ```
    #[track_caller]
    pub fn check<'a, T: 'a, E: std::fmt::Display + 'a>(
        &'a self,
        result: std::result::Result<T, E>,
    ) -> impl Future<Output = std::result::Result<T, E>> + 'a {
        let location = Location::caller();
        async move {
            if let Err(error) = &result {
                // Best effort: the test's own error is what it returns either way.
                let _ = self.post_note(located(location, &error.to_string())).await;
            }
            result
        }
    }

    /// Posts a `test.note` with `text` as it is.
    async fn post_note(&self, text: String) -> Result<()> {
        let event = json!({"type": "test.note", "error": text});
        self.shared
            .client
            .post_event(&self.shared.id, &event)
            .await?;
        Ok(())
    }

    /// Tears the environment down and waits until rigd has: services stopped, log files
    /// written, the environment directory removed (kept with `RIG_PRESERVE=true`).
    ///
    /// # Errors
    /// rigd could not be reached, or the environment no longer exists there.
    pub async fn down(mut self) -> Result<DownReport> {
        self.lifetime.end(Ending::Normal).await
    }

    /// Every traffic event recorded so far (HTTP, gRPC, TCP, Kafka), in order. Events beyond
    /// the handle's [`traffic_memory`](crate::EnvironmentBuilder::traffic_memory) are read
    /// back from disk, and all of them are returned in memory: with heavy traffic, prefer
    /// [`Environment::observed`] with a filter.
    pub fn traffic_events(&self) -> Vec<Event> {
        let traffic = self.traffic();
        traffic.iter().map(Cow::into_owned).collect()
    }

    /// The exchanges recorded so far that `filter` selects, in order: [`Request`]s for a
    /// [`RequestFilter`], [`GrpcCall`]s for a [`GrpcFilter`], [`Connection`]s for a
    /// [`ConnectionFilter`], [`KafkaRequest`]s for a [`KafkaFilter`].
    ///
    /// Recording is asynchronous: an exchange's event reaches the SDK shortly after its
    /// response reaches the caller. To assert on traffic just made, use
    /// [`Environment::wait_for`] or [`Environment::expect`].
    ///
    /// # Errors
    /// [`Error::NotObserving`] for an environment built with `.observe(false)` and
    /// [`Error::UnknownService`] when the filter names a service the environment does not
    /// have, [`Error::UnknownIngress`] an ingress its target does not have,
    /// [`Error::NoSuchIngress`] an ingress no service has: an empty list would then prove
    /// nothing.
    pub fn observed<F: TrafficFilter>(&self, filter: &F) -> Result<Vec<F::Item>> {
        self.checkable(filter)?;
        Ok(traffic::select(self.traffic().iter(), filter))
    }

    /// The traffic received so far, to look through without holding up the event stream.
    fn traffic(&self) -> TrafficSnapshot {
        self.shared.lock().traffic.snapshot()
    }

    /// The first exchange `filter` selects, waiting up to `timeout` for it.
    ///
    /// ```no_run
    /// # async fn example(env: &rig::Environment) -> rig::Result<()> {
    /// use std::time::Duration;
    /// let reserve = rig::GrpcFilter::new().to("inventory").method("inv.v1.Stock/Reserve");
    /// let call = env.wait_for(&reserve, Duration::from_secs(5)).await?;
    /// assert!(call.is_ok(), "{call}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::TrafficTimeout`], listing what was seen, or [`Error::EnvironmentDown`] /
    /// [`Error::StreamLost`] if the environment ends first; [`Error::NotObserving`] for an
    /// environment built with `.observe(false)`; [`Error::UnknownService`] when the filter
    /// names a service the environment does not have, [`Error::UnknownIngress`] an ingress
    /// its target does not have, [`Error::NoSuchIngress`] an ingress no service has.
    pub async fn wait_for<F: TrafficFilter>(
        &self,
        filter: &F,
        timeout: Duration,
    ) -> Result<F::Item> {
        self.checkable(filter)?;
        let mut scanned = 0;
        let found = self
            .shared
            .wait_until(timeout, |s| {
                // Only the events that arrived since the last look (see `expect_at`).
                let first = s
                    .traffic
                    .iter_from(scanned)
                    .filter_map(|event| F::Item::from_event(&event))
                    .find(|item| filter.matches(item));
                scanned = s.traffic.len();
                match first {
                    Some(item) => Some(Ok(item)),
                    None => self.ended(&s.phase).map(Err),
                }
            })
            .await;
        match found {
            Some(result) => result,
            None => Err(Error::TrafficTimeout {
                filter: filter.to_string(),
                kind: filter.listed_kind(),
                after: timeout,
                seen: traffic::seen(self.traffic().iter(), filter),
                probes: traffic::probes_left_out(self.traffic().iter(), filter),
            }),
        }
    }

    /// Checks that exactly `count` exchanges match `filter`, waiting up to
    /// [`DEFAULT_TRAFFIC_WAIT`] for that many to arrive; returns them.
    ///
    /// ```no_run
    /// # async fn example(env: &rig::Environment) -> rig::Result<()> {
    /// env.expect(&rig::KafkaFilter::new().from("api").api("Produce"), 1).await?;
    /// env.expect(&rig::ConnectionFilter::new().edge("api", "db"), 1).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Once `count` have arrived (or the wait is over), rigd is asked to settle: every
    /// exchange that completed before then is counted, even one whose event was still on its
    /// way, so a service that made one call too many fails the check. An exchange still in
    /// flight at that moment is not counted.
    ///
    /// A wrong count is an assertion that failed: it is recorded in the event log as a
    /// `test.note` with the caller's `file:line` (as upstream's `env.T` records failed
    /// assertions), so the run is logged as failed and `rig explain` shows why, even when the
    /// error leaves the test through `?` after the environment is gone. To look at traffic
    /// without asserting, use [`Environment::observed`].
    ///
    /// # Errors
    /// [`Error::TrafficCount`], listing the matching exchanges and everything of that kind
    /// seen; [`Error::EnvironmentDown`] (or [`Error::StreamLost`]) when fewer arrived because
    /// the environment ended; [`Error::NotObserving`] for an environment built with
    /// `.observe(false)`; [`Error::UnknownService`] when the filter names a service the
    /// environment does not have, [`Error::UnknownIngress`] an ingress its target does not
    /// have, [`Error::NoSuchIngress`] an ingress no service has.
    #[track_caller]
    pub fn expect<'a, F: TrafficFilter>(
        &'a self,
        filter: &'a F,
        count: usize,
    ) -> impl Future<Output = Result<Vec<F::Item>>> + 'a {
        self.expect_at(filter, count, DEFAULT_TRAFFIC_WAIT, Location::caller())
    }

    /// [`Environment::expect`] with an explicit wait.
    ///
    /// # Errors
    /// As [`Environment::expect`].
    #[track_caller]
    pub fn expect_within<'a, F: TrafficFilter>(
        &'a self,
        filter: &'a F,
        count: usize,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<F::Item>>> + 'a {
        self.expect_at(filter, count, timeout, Location::caller())
    }

    /// [`Environment::expect_within`] for a caller at `caller`.
    async fn expect_at<F: TrafficFilter>(
        &self,
        filter: &F,
        count: usize,
        timeout: Duration,
        caller: &'static Location<'static>,
    ) -> Result<Vec<F::Item>> {
        self.checkable(filter)?;
        // Each wake-up looks only at the events that arrived since the last one: converting
        // an event copies its captured bodies.
        let (mut scanned, mut n) = (0, 0);
        let enough = |s: &shared::State| {
            n += s
                .traffic
                .iter_from(scanned)
                .filter_map(|event| F::Item::from_event(&event))
                .filter(|item| filter.matches(item))
                .count();
            scanned = s.traffic.len();
            (n >= count || self.ended(&s.phase).is_some()).then_some(())
        };
        if count > 0 {
            self.shared.wait_until(timeout, enough).await;
        }
        let caught_up = self.catch_up().await;
        let failure = {
            let (traffic, phase) = {
                let state = self.shared.lock();
                (state.traffic.snapshot(), state.phase.clone())
            };
            let matched = traffic::select(traffic.iter(), filter);
            if matched.len() == count {
                return Ok(matched);
            }
            match (self.ended(&phase), caught_up) {
                // Too few because the environment is gone: that is the news, not the count
                // (and the environment's own failure is its outcome).
                (Some(ended), _) if matched.len() < count => return Err(ended),
                // rigd is gone: the count says nothing.
                (_, Err(unreachable)) => return Err(unreachable.into()),
                _ => Error::TrafficCount {
                    filter: filter.to_string(),
                    kind: filter.listed_kind(),
                    expected: count,
                    matched: matched.iter().map(ToString::to_string).collect(),
                    seen: traffic::seen(traffic.iter(), filter),
                    probes: traffic::probes_left_out(traffic.iter(), filter),
                },
            }
        };
        // Best effort: the count's error is what the test gets either way.
        let _ = self.post_note(located(caller, &failure.to_string())).await;
        Err(failure)
    }

    /// Whether `filter` can select anything: [`Error::NotObserving`] unless the environment's
    /// traffic is recorded, [`Error::UnknownService`] when it names a service the environment
    /// does not have (`~test` is the test), [`Error::UnknownIngress`] when it names an ingress
    /// its target does not have, [`Error::NoSuchIngress`] an ingress no service has.
    fn checkable<F: TrafficFilter>(&self, filter: &F) -> Result<()> {
        if !self.shared.observe {
            return Err(Error::NotObserving {
                name: self.shared.name.clone(),
                id: self.shared.id.clone(),
            });
        }
        let unknown = filter
            .services()
            .into_iter()
            .find(|s| *s != TEST_SERVICE && !self.up.ingresses.contains_key(*s));
        if let Some(service) = unknown {
            return Err(Error::UnknownService {
                service: service.to_string(),
                environment: self.shared.name.clone(),
                available: self.services().map(str::to_string).collect(),
            });
        }
        self.known_ingress(filter)
    }

    /// [`Error::UnknownIngress`] when the filter names an ingress its target does not have,
    /// [`Error::NoSuchIngress`] when it names no target and no service has the ingress.
    fn known_ingress<F: TrafficFilter>(&self, filter: &F) -> Result<()> {
        match filter.target_ingress() {
            None => Ok(()),
            Some((Some(service), ingress)) => match self.up.ingresses.get(service) {
                Some(ingresses) if !ingresses.contains_key(ingress) => Err(Error::UnknownIngress {
                    service: service.to_string(),
                    ingress: ingress.to_string(),
                    available: ingresses.keys().cloned().collect(),
                }),
                _ => Ok(()),
            },
            Some((None, ingress)) => {
                let all = self.up.ingresses.values();
                if all.clone().any(|ingresses| ingresses.contains_key(ingress)) {
                    return Ok(());
                }
                let names: std::collections::BTreeSet<&String> =
                    all.flat_map(|ingresses| ingresses.keys()).collect();
                Err(Error::NoSuchIngress {
                    ingress: ingress.to_string(),
                    environment: self.shared.name.clone(),
                    available: names.into_iter().cloned().collect(),
                })
            }
        }
    }

    /// Reads the event stream up to where rigd's log stands once the traffic its proxies have
    /// observed is in it (`POST /environments/{id}/sync`). A rigd that answers but does not
    /// know the call (an older one) or the environment (torn down) leaves the stream as it
    /// is; a rigd that cannot be reached is the error.
    async fn catch_up(&self) -> std::result::Result<(), ClientError> {
        let seq = match self.shared.client.sync(&self.shared.id).await {
            Ok(seq) => seq,
            Err(ClientError::Api { .. }) => return Ok(()),
            Err(unreachable) => return Err(unreachable),
        };
        self.shared
            .wait_until(CATCH_UP_WAIT, |s| {
                (s.seen_seq >= seq || self.ended(&s.phase).is_some()).then_some(())
            })
            .await;
        Ok(())
    }

    /// Panics unless exactly `count` exchanges match `filter` (see [`Environment::expect`],
    /// which also records the failure); the message starts with the caller's `file:line` and
    /// lists what was seen. The harness's `panicked at` line names a place inside the SDK: the
    /// panic happens in the returned future, which cannot carry its caller's location on
    /// stable Rust, so the message's own `file:line` is the one to go by.
    #[track_caller]
    pub fn assert<'a, F: TrafficFilter>(
        &'a self,
        filter: &'a F,
        count: usize,
    ) -> impl Future<Output = Vec<F::Item>> + 'a {
        let caller = Location::caller();
        async move {
            match self
                .expect_at(filter, count, DEFAULT_TRAFFIC_WAIT, caller)
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    // `expect_at` posted this failure as a note already.
                    panic_note::already_noted();
                    panic!("{}", located(caller, &e.to_string()))
                }
            }
        }
    }

    /// The HTTP requests recorded so far that match `filter` ([`Environment::observed`]).
    pub fn requests(&self, filter: &RequestFilter) -> Result<Vec<Request>> {
        self.observed(filter)
    }

    /// The gRPC calls recorded so far that match `filter` ([`Environment::observed`]).
    pub fn grpc_calls(&self, filter: &GrpcFilter) -> Result<Vec<GrpcCall>> {
        self.observed(filter)
    }

    /// The TCP connections recorded so far that match `filter` ([`Environment::observed`]).
    pub fn connections(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
        self.observed(filter)
    }

    /// The Kafka requests recorded so far that match `filter` ([`Environment::observed`]).
    pub fn kafka_requests(&self, filter: &KafkaFilter) -> Result<Vec<KafkaRequest>> {
        self.observed(filter)
    }

    /// The first HTTP request matching `filter`, waiting up to `timeout` for it
    /// ([`Environment::wait_for`]).
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
    /// As [`Environment::wait_for`].
    pub async fn wait_for_request(
        &self,
        filter: &RequestFilter,
        timeout: Duration,
    ) -> Result<Request> {
        self.wait_for(filter, timeout).await
    }

    /// Checks that exactly `count` HTTP requests match `filter` ([`Environment::expect`]).
    ///
    /// ```no_run
    /// # async fn example(env: &rig::Environment) -> rig::Result<()> {
    /// let orders = rig::RequestFilter::new().to("api").method("POST").path("/orders");
    /// env.expect_requests(&orders, 1).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Environment::expect`].
    #[track_caller]
    pub fn expect_requests<'a>(
        &'a self,
        filter: &'a RequestFilter,
        count: usize,
    ) -> impl Future<Output = Result<Vec<Request>>> + 'a {
        self.expect(filter, count)
    }

    /// Panics unless exactly `count` HTTP requests match `filter` ([`Environment::assert`]).
    #[track_caller]
    pub fn assert_requests<'a>(
        &'a self,
        filter: &'a RequestFilter,
        count: usize,
    ) -> impl Future<Output = Vec<Request>> + 'a {
        self.assert(filter, count)
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

/// `file.rs:12: message`: a note or panic text placed at `location` (the file name only, as
/// Go's testing package prints it).
fn located(location: &Location<'_>, message: &str) -> String {
    let file = Path::new(location.file())
        .file_name()
        .map_or_else(|| location.file().into(), |f| f.to_string_lossy());
    format!("{file}:{}: {message}", location.line())
}
