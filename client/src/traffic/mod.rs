//! Observed traffic and the filters that select it.
//!
//! In observe mode (the default) every edge, including the test's own calls to services,
//! goes through a proxy that records each exchange as a traffic event. The SDK keeps every
//! traffic event of its environment as it arrives on the event stream (the newest 64 MiB in
//! memory, older ones in a temporary file) and offers them as typed items:
//!
//! | item             | event                                   | filter               |
//! |------------------|-----------------------------------------|----------------------|
//! | [`Request`]      | `request.completed` (HTTP/1.1, h2c)     | [`RequestFilter`]    |
//! | [`GrpcCall`]     | `grpc.call.completed`                   | [`GrpcFilter`]       |
//! | [`Connection`]   | `connection.opened` / `connection.closed` (raw TCP) | [`ConnectionFilter`] |
//! | [`KafkaRequest`] | `kafka.request.completed`               | [`KafkaFilter`]      |
//!
//! [`Environment`](crate::Environment) has the queries and assertions, generic over
//! [`TrafficFilter`]: [`observed`](crate::Environment::observed),
//! [`wait_for`](crate::Environment::wait_for) and [`expect`](crate::Environment::expect).

use std::borrow::Borrow;
use std::fmt;

use rig_types::Event;

mod grpc;
mod http;
mod kafka;
mod tcp;

pub use grpc::{GrpcCall, GrpcFilter};
pub use http::{Request, RequestFilter};
pub use kafka::{KafkaFilter, KafkaRequest};
pub use tcp::{Connection, ConnectionFilter};

/// One kind of observed exchange, built from its traffic event.
pub trait Observed: Clone + fmt::Display + Send + Sync + 'static {
    /// What these are called in messages, plural: `HTTP requests`, `gRPC calls`, ...
    const KIND: &'static str;

    /// The item of `event`; `None` for events of other kinds.
    fn from_event(event: &Event) -> Option<Self>;

    /// A readiness probe sent by rigd rather than application traffic.
    fn is_probe(&self) -> bool {
        false
    }
}

/// Which observed exchanges a query or assertion is about.
///
/// Its [`Display`](fmt::Display) reads like the condition (`POST /orders requests to api`):
/// failure messages quote it.
pub trait TrafficFilter: fmt::Display + Send + Sync {
    /// The kind of exchange this filter selects.
    type Item: Observed;

    /// Whether `item` satisfies every condition.
    fn matches(&self, item: &Self::Item) -> bool;

    /// Whether readiness probes count as seen traffic in failure messages.
    fn includes_probes(&self) -> bool {
        false
    }

    /// Whether `item` belongs in a failure message's list of what was seen: by default every
    /// item of the kind does.
    fn lists(&self, _item: &Self::Item) -> bool {
        true
    }

    /// What the items [`lists`](TrafficFilter::lists) keeps are called in failure messages,
    /// plural.
    fn listed_kind(&self) -> &'static str {
        Self::Item::KIND
    }

    /// The services the filter names (as caller or callee), so a misspelt one is reported
    /// rather than waited for.
    fn services(&self) -> Vec<&str> {
        Vec::new()
    }

    /// The ingress the filter names, with the service it names as callee if it names one,
    /// so a misspelt ingress is reported rather than waited for.
    fn target_ingress(&self) -> Option<(Option<&str>, &str)> {
        None
    }
}

/// The `(target, ingress)` a filter names, when it names an ingress.
pub(crate) fn target_ingress<'a>(
    target: &'a Option<String>,
    ingress: &'a Option<String>,
) -> Option<(Option<&'a str>, &'a str)> {
    Some((target.as_deref(), ingress.as_deref()?))
}

/// The caller and callee a filter names.
pub(crate) fn named<'a>(source: &'a Option<String>, target: &'a Option<String>) -> Vec<&'a str> {
    [source, target]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect()
}

/// The items of kind `F::Item` among `events` that `filter` selects, in order.
pub(crate) fn select<F: TrafficFilter>(
    events: impl IntoIterator<Item = impl Borrow<Event>>,
    filter: &F,
) -> Vec<F::Item> {
    events
        .into_iter()
        .filter_map(|event| F::Item::from_event(event.borrow()))
        .filter(|item| filter.matches(item))
        .collect()
}

/// Every item of kind `F::Item` among `events` that `filter` lists, one line each, for
/// failure messages (probes only when the filter includes them).
pub(crate) fn seen<F: TrafficFilter>(
    events: impl IntoIterator<Item = impl Borrow<Event>>,
    filter: &F,
) -> Vec<String> {
    events
        .into_iter()
        .filter_map(|event| F::Item::from_event(event.borrow()))
        .filter(|item| !item.is_probe() || filter.includes_probes())
        .filter(|item| filter.lists(item))
        .map(|item| item.to_string())
        .collect()
}

/// How many items of kind `F::Item` among `events` are readiness probes that [`seen`] leaves
/// out.
pub(crate) fn probes_left_out<F: TrafficFilter>(
    events: impl IntoIterator<Item = impl Borrow<Event>>,
    filter: &F,
) -> usize {
    if filter.includes_probes() {
        return 0;
    }
    events
        .into_iter()
        .filter_map(|event| F::Item::from_event(event.borrow()))
        .filter(|item| item.is_probe() && filter.lists(item))
        .count()
}

/// Compares an optional wanted value with what was seen.
pub(crate) fn wanted(want: &Option<String>, got: &str) -> bool {
    want.as_deref().is_none_or(|w| w == got)
}

/// The `from x`, `to y`, `on ingress z` words shared by every filter's description.
pub(crate) fn edge_words(
    words: &mut Vec<String>,
    source: &Option<String>,
    target: &Option<String>,
    ingress: &Option<String>,
) {
    if let Some(s) = source {
        words.push(format!("from {s}"));
    }
    if let Some(t) = target {
        words.push(format!("to {t}"));
    }
    if let Some(i) = ingress {
        words.push(format!("on ingress {i}"));
    }
}

/// Milliseconds from the wire's float, never negative.
pub(crate) fn millis(ms: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}
