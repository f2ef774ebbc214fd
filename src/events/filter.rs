//! Which events a subscription delivers: per-store include flags plus an optional predicate.

use std::fmt;
use std::sync::Arc;

use rig_types::{Event, EventType};

/// The store an event lives in. Every event belongs to exactly one store, decided by its type.
///
/// The split keeps lifecycle scans (`wait_for`, resolved-state builders) independent of the
/// volume of service output and observed traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// Every event that is neither `service.log` nor traffic.
    Lifecycle,
    /// `service.log` events (chunks of service output).
    Log,
    /// Events emitted by the observing proxies ([`EventType::is_traffic`]).
    Traffic,
}

impl StoreKind {
    /// All stores, in their index order.
    pub const ALL: [StoreKind; 3] = [StoreKind::Lifecycle, StoreKind::Log, StoreKind::Traffic];

    /// The store an event of type `event_type` is kept in.
    pub fn of(event_type: &EventType) -> StoreKind {
        if event_type.is_log() {
            StoreKind::Log
        } else if event_type.is_traffic() {
            StoreKind::Traffic
        } else {
            StoreKind::Lifecycle
        }
    }

    /// Position of this store in per-store arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            StoreKind::Lifecycle => 0,
            StoreKind::Log => 1,
            StoreKind::Traffic => 2,
        }
    }
}

/// A predicate over events, shared between subscriptions.
pub type EventPredicate = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// Selects the events a subscription delivers.
///
/// A filter first chooses whole stores (lifecycle, `service.log`, traffic); a subscription never
/// reads a store its filter excludes, so excluding the high-volume stores costs nothing. An
/// optional predicate then refines the events of the included stores; it runs outside the log's
/// lock.
///
/// ```
/// use rigd::events::EventFilter;
/// use rig_types::EventType;
///
/// // What the SSE handler streams: everything except service output.
/// let sse = EventFilter::without_logs();
/// // Only `service.ready` events.
/// let ready = EventFilter::lifecycle_only()
///     .and_matching(|e| e.event_type == EventType::ServiceReady);
/// # let _ = (sse, ready);
/// ```
#[derive(Clone)]
pub struct EventFilter {
    include: [bool; 3],
    predicate: Option<EventPredicate>,
}

impl EventFilter {
    /// Every event of every store.
    pub fn all() -> EventFilter {
        EventFilter {
            include: [true; 3],
            predicate: None,
        }
    }

    /// Every event except `service.log` (what the SSE endpoint streams).
    pub fn without_logs() -> EventFilter {
        EventFilter::all().with_store(StoreKind::Log, false)
    }

    /// Only traffic events (`request.completed`, `connection.*`, `grpc.call.completed`,
    /// `kafka.request.completed`).
    pub fn traffic_only() -> EventFilter {
        EventFilter::none().with_store(StoreKind::Traffic, true)
    }

    /// Only lifecycle events (neither `service.log` nor traffic).
    pub fn lifecycle_only() -> EventFilter {
        EventFilter::none().with_store(StoreKind::Lifecycle, true)
    }

    /// Only `service.log` events.
    pub fn logs_only() -> EventFilter {
        EventFilter::none().with_store(StoreKind::Log, true)
    }

    /// Every event for which `predicate` returns true (all stores are read).
    pub fn matching(predicate: impl Fn(&Event) -> bool + Send + Sync + 'static) -> EventFilter {
        EventFilter::all().and_matching(predicate)
    }

    /// Includes or excludes a whole store.
    pub fn with_store(mut self, store: StoreKind, include: bool) -> EventFilter {
        self.include[store.index()] = include;
        self
    }

    /// Adds a predicate; an event is delivered only when every predicate added returns true.
    pub fn and_matching(
        mut self,
        predicate: impl Fn(&Event) -> bool + Send + Sync + 'static,
    ) -> EventFilter {
        self.predicate = Some(match self.predicate.take() {
            None => Arc::new(predicate),
            Some(previous) => Arc::new(move |e: &Event| previous(e) && predicate(e)),
        });
        self
    }

    /// True when the filter reads `store` at all.
    pub fn includes(&self, store: StoreKind) -> bool {
        self.include[store.index()]
    }

    /// True when `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.includes(StoreKind::of(&event.event_type)) && self.matches_predicate(event)
    }

    /// The per-store include flags, indexed by [`StoreKind::index`].
    pub(crate) fn store_flags(&self) -> [bool; 3] {
        self.include
    }

    /// True when `event` passes the predicate (or there is none); the store is not checked.
    pub(crate) fn matches_predicate(&self, event: &Event) -> bool {
        self.predicate.as_ref().is_none_or(|p| p(event))
    }

    /// True when a predicate has to run on every event read.
    pub(crate) fn has_predicate(&self) -> bool {
        self.predicate.is_some()
    }

    fn none() -> EventFilter {
        EventFilter {
            include: [false; 3],
            predicate: None,
        }
    }
}

impl Default for EventFilter {
    fn default() -> EventFilter {
        EventFilter::all()
    }
}

impl fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFilter")
            .field("lifecycle", &self.includes(StoreKind::Lifecycle))
            .field("log", &self.includes(StoreKind::Log))
            .field("traffic", &self.includes(StoreKind::Traffic))
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}
