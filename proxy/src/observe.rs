//! The observation path: from the data path to the sink, without ever making traffic wait.
//!
//! Relays build a small [`Record`] (counters, `Bytes` clones of captured bodies, header maps)
//! and hand it to [`Observer::record`], which only tries to put it on a bounded channel. The
//! observer task turns records into [`Event`]s (the costly part: header maps to JSON shapes,
//! redaction, base64, decoding) and passes them to the [`TrafficSink`]. When the channel is
//! full the record is counted and dropped, and the task later publishes one
//! `proxy.observations_dropped` event with the count. The task delivers what it finds, then
//! waits a millisecond (`GATHER`) for more, so a busy proxy wakes it once per millisecond
//! rather than once per exchange.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rig_types::{Event, EventType};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Default capacity of the observation channel.
pub const DEFAULT_CAPACITY: usize = 4096;

/// How long the observer task waits, after delivering what was there, before it looks again:
/// the delay an event may have on top of its building, and what keeps a busy proxy's
/// observer from being woken for every record (at 60,000 requests per second those wake-ups
/// cost about a quarter of the proxy's CPU).
const GATHER: Duration = Duration::from_millis(1);

/// Receives the traffic events of a proxy. Called on the observer task, never on the data path.
pub trait TrafficSink: Send + Sync + 'static {
    /// Takes one finished event (`request.completed`, `connection.closed`, ...).
    fn emit(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync + 'static> TrafficSink for F {
    fn emit(&self, event: Event) {
        self(event)
    }
}

/// The edge a proxy sits on: who calls whom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edge {
    /// The calling service (`~test` for the test itself).
    pub source: String,
    /// The target service.
    pub target: String,
    /// The target's ingress.
    pub ingress: String,
}

/// A future a record waits for on the observer task before it becomes an event.
pub type Preparation = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One observation, built on the data path and turned into an event on the observer task.
pub trait Record: Send + 'static {
    /// Something to wait for before [`Record::into_event`], e.g. gRPC descriptors being
    /// fetched (bounded by the fetch's timeout). Runs on the observer task, which delivers
    /// the records of its proxy in order; `None` (the default) converts at once.
    fn ready(&self) -> Option<Preparation> {
        None
    }

    /// Converts the record into its event. Runs on the observer task.
    fn into_event(self: Box<Self>, edge: &Edge) -> Event;
}

/// A boxed [`Record`].
pub type Observation = Box<dyn Record>;

/// The data path's handle on the observation channel. Cheap to clone.
#[derive(Clone)]
pub struct Observer {
    tx: mpsc::Sender<Observation>,
    dropped: Arc<AtomicU64>,
}

impl Observer {
    /// Starts the observer task for `edge`, delivering events to `sink`. The task ends once
    /// every clone of the returned [`Observer`] is dropped and the channel is drained.
    pub fn spawn(
        edge: Edge,
        sink: Arc<dyn TrafficSink>,
        capacity: usize,
    ) -> (Observer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(deliver(edge, sink, rx, dropped.clone()));
        (Observer { tx, dropped }, task)
    }

    /// Hands a record to the observer task without waiting. If the channel is full the record
    /// is counted as dropped; traffic is never held up by observation.
    pub fn record(&self, observation: Observation) {
        if self.tx.try_send(observation).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Observations dropped so far and not yet reported.
    pub fn pending_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn deliver(
    edge: Edge,
    sink: Arc<dyn TrafficSink>,
    mut rx: mpsc::Receiver<Observation>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(mut record) = rx.recv().await {
        loop {
            if let Some(preparation) = record.ready() {
                preparation.await;
            }
            report_dropped(&edge, &*sink, &dropped);
            sink.emit(record.into_event(&edge));
            match rx.try_recv() {
                Ok(next) => record = next,
                Err(_) => break,
            }
        }
        // Let the next records gather: under load the task wakes once per GATHER, not once
        // per record (the data path runs on other threads, so every wake-up is a thread's).
        tokio::time::sleep(GATHER).await;
    }
    report_dropped(&edge, &*sink, &dropped);
}

fn report_dropped(edge: &Edge, sink: &dyn TrafficSink, dropped: &AtomicU64) {
    let lost = dropped.swap(0, Ordering::Relaxed);
    if lost == 0 {
        return;
    }
    let mut event = Event::new(EventType::ObservationsDropped);
    event.dropped = lost;
    event.message = format!(
        "{lost} traffic observations on {} → {} ({}) were not recorded because observation fell behind; the traffic itself was not affected",
        edge.source, edge.target, edge.ingress
    );
    sink.emit(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sink that collects events (the event log lives in rigd).
    #[derive(Default)]
    struct Collect(Mutex<Vec<Event>>);

    impl TrafficSink for Collect {
        fn emit(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    struct Note(&'static str);

    impl Record for Note {
        fn into_event(self: Box<Self>, edge: &Edge) -> Event {
            Event::new(EventType::ConnectionClosed)
                .with_message(format!("{} {}", edge.source, self.0))
        }
    }

    fn edge() -> Edge {
        Edge {
            source: "~test".into(),
            target: "api".into(),
            ingress: "default".into(),
        }
    }

    #[tokio::test]
    async fn records_become_events_in_order() {
        let sink = Arc::new(Collect::default());
        let (observer, task) = Observer::spawn(edge(), sink.clone(), 8);
        observer.record(Box::new(Note("a")));
        observer.record(Box::new(Note("b")));
        drop(observer);
        task.await.unwrap();
        let events = sink.0.lock().unwrap();
        let messages: Vec<_> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["~test a", "~test b"]);
    }

    #[tokio::test]
    async fn a_full_channel_drops_and_reports_the_count() {
        let sink = Arc::new(Collect::default());
        // A current-thread runtime: the observer task cannot run until this test yields, so
        // the channel (capacity 2) fills deterministically.
        let (observer, task) = Observer::spawn(edge(), sink.clone(), 2);
        for _ in 0..5 {
            observer.record(Box::new(Note("x")));
        }
        assert_eq!(observer.pending_dropped(), 3);
        drop(observer);
        task.await.unwrap();
        let events = sink.0.lock().unwrap();
        let dropped: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == EventType::ObservationsDropped)
            .collect();
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].dropped, 3);
        assert!(dropped[0].message.contains("~test → api"));
        assert_eq!(events.len(), 3, "2 delivered + 1 drop report");
    }

    #[tokio::test(start_paused = true)]
    async fn records_arriving_after_a_delivery_gather_for_a_millisecond() {
        let sink = Arc::new(Collect::default());
        let (observer, task) = Observer::spawn(edge(), sink.clone(), 8);
        let delivered = || sink.0.lock().unwrap().len();
        observer.record(Box::new(Note("a")));
        while delivered() < 1 {
            tokio::task::yield_now().await;
        }
        observer.record(Box::new(Note("b")));
        observer.record(Box::new(Note("c")));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(delivered(), 1, "b and c wait for the gathering to end");
        tokio::time::sleep(GATHER).await;
        while delivered() < 3 {
            tokio::task::yield_now().await;
        }
        drop(observer);
        task.await.unwrap();
        assert_eq!(delivered(), 3);
    }
}
