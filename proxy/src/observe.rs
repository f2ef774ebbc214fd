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
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rig_types::{Event, EventType};
use tokio::sync::{mpsc, oneshot};
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

/// What the observation channel carries.
enum Message {
    /// An observation to turn into an event.
    Record(Observation),
    /// Answered once everything sent before it has reached the sink.
    Barrier(oneshot::Sender<()>),
}

/// The data path's handle on the observation channel. Cheap to clone.
#[derive(Clone)]
pub struct Observer {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Waits until the observations a proxy's relays have handed over so far have reached its
/// sink, so a reader of the sink (a test counting calls) can tell "not observed" from "not
/// observed yet". Holding one does not keep the observer alive. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ObservationBarrier {
    tx: mpsc::WeakSender<Message>,
}

impl ObservationBarrier {
    /// Returns once every observation handed to the observer before this call has been
    /// delivered to the sink (or counted as dropped, and that count delivered); at once when
    /// the observer has ended. Waits for room on a full channel: this is never the data path.
    pub async fn wait(&self) {
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        let (done, delivered) = oneshot::channel();
        if tx.send(Message::Barrier(done)).await.is_ok() {
            drop(tx);
            let _ = delivered.await;
        }
    }
}

/// The barriers of a set of proxies (an environment's), registered as they start; see
/// [`RunOptions::barriers`](crate::RunOptions::barriers). Cheap to clone: clones share the set.
#[derive(Clone, Debug, Default)]
pub struct ObservationBarriers {
    barriers: Arc<parking_lot::Mutex<Vec<ObservationBarrier>>>,
}

impl ObservationBarriers {
    /// Adds the barrier of a proxy that has started; those of ended proxies are let go.
    pub fn register(&self, barrier: ObservationBarrier) {
        let mut barriers = self.barriers.lock();
        barriers.retain(|b| b.tx.strong_count() > 0);
        barriers.push(barrier);
    }

    /// [`ObservationBarrier::wait`] for every registered proxy, one after the other (each
    /// takes about a millisecond on an idle proxy).
    pub async fn wait(&self) {
        let barriers = self.barriers.lock().clone();
        for barrier in &barriers {
            barrier.wait().await;
        }
    }
}

impl PartialEq for ObservationBarriers {
    /// The same set (clones of one another).
    fn eq(&self, other: &ObservationBarriers) -> bool {
        Arc::ptr_eq(&self.barriers, &other.barriers)
    }
}

impl Eq for ObservationBarriers {}

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
        if self.tx.try_send(Message::Record(observation)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Observations dropped so far and not yet reported.
    pub fn pending_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A barrier on this observer's deliveries.
    pub fn barrier(&self) -> ObservationBarrier {
        ObservationBarrier {
            tx: self.tx.downgrade(),
        }
    }
}

async fn deliver(
    edge: Edge,
    sink: Arc<dyn TrafficSink>,
    mut rx: mpsc::Receiver<Message>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(mut message) = rx.recv().await {
        loop {
            match message {
                Message::Record(record) => {
                    // A record that fails to convert (a bug) costs its own event, reported,
                    // not this edge's observation for the rest of the proxy's life.
                    if let Some(preparation) = record.ready() {
                        preparation.await;
                    }
                    report_dropped(&edge, &*sink, &dropped);
                    match std::panic::catch_unwind(AssertUnwindSafe(|| record.into_event(&edge))) {
                        Ok(event) => sink.emit(event),
                        Err(panic) => sink.emit(unconverted(&edge, &*panic)),
                    }
                }
                Message::Barrier(done) => {
                    // What was dropped before the barrier is part of "so far".
                    report_dropped(&edge, &*sink, &dropped);
                    let _ = done.send(());
                }
            }
            match rx.try_recv() {
                Ok(next) => message = next,
                Err(_) => break,
            }
        }
        // Let the next records gather: under load the task wakes once per GATHER, not once
        // per record (the data path runs on other threads, so every wake-up is a thread's).
        tokio::time::sleep(GATHER).await;
    }
    report_dropped(&edge, &*sink, &dropped);
}

/// The event for an observation whose conversion panicked with `panic`.
fn unconverted(edge: &Edge, panic: &(dyn std::any::Any + Send)) -> Event {
    let why = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic");
    let mut event = Event::new(EventType::ObservationsDropped);
    event.dropped = 1;
    event.message = format!(
        "a traffic observation on {} → {} ({}) was not recorded: turning it into an event \
         failed ({why}), a bug in rig's proxy worth reporting; the traffic itself was not affected",
        edge.source, edge.target, edge.ingress
    );
    event
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

    /// A record whose conversion panics.
    struct Broken;

    impl Record for Broken {
        fn into_event(self: Box<Self>, _edge: &Edge) -> Event {
            panic!("unexpected frame");
        }
    }

    /// A record that fails to convert costs its own event, reported as lost, and the records
    /// after it are still delivered.
    #[tokio::test]
    async fn a_record_that_fails_to_convert_is_reported_and_the_rest_delivered() {
        let sink = Arc::new(Collect::default());
        let (observer, task) = Observer::spawn(edge(), sink.clone(), 8);
        observer.record(Box::new(Note("a")));
        observer.record(Box::new(Broken));
        observer.record(Box::new(Note("b")));
        drop(observer);
        task.await.unwrap();
        let events = sink.0.lock().unwrap();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.event_type.clone(), e.dropped, e.message.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (EventType::ConnectionClosed, 0, "~test a"),
                (
                    EventType::ObservationsDropped,
                    1,
                    "a traffic observation on ~test → api (default) was not recorded: turning \
                     it into an event failed (unexpected frame), a bug in rig's proxy worth \
                     reporting; the traffic itself was not affected"
                ),
                (EventType::ConnectionClosed, 0, "~test b"),
            ]
        );
    }

    /// A record whose conversion waits until the test lets it.
    struct Held(Arc<tokio::sync::Semaphore>);

    impl Record for Held {
        fn ready(&self) -> Option<Preparation> {
            let gate = self.0.clone();
            Some(Box::pin(async move {
                let _ = gate.acquire().await;
            }))
        }

        fn into_event(self: Box<Self>, _edge: &Edge) -> Event {
            Event::new(EventType::ConnectionClosed).with_message("held")
        }
    }

    /// A barrier waits for the records before it, however long they take to become events,
    /// and not at all once the observer has ended.
    #[tokio::test]
    async fn a_barrier_returns_once_what_came_before_is_delivered() {
        let sink = Arc::new(Collect::default());
        let (observer, task) = Observer::spawn(edge(), sink.clone(), 8);
        let barriers = ObservationBarriers::default();
        barriers.register(observer.barrier());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        observer.record(Box::new(Held(gate.clone())));
        observer.record(Box::new(Note("after")));
        let waiting = tokio::spawn({
            let barriers = barriers.clone();
            async move { barriers.wait().await }
        });
        // This runtime has one thread: the observer and the barrier run only when we yield.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiting.is_finished(),
            "the held record is not delivered yet"
        );
        assert!(sink.0.lock().unwrap().is_empty());
        gate.add_permits(1);
        waiting.await.unwrap();
        let messages: Vec<String> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(messages, ["held", "~test after"]);

        drop(observer);
        task.await.unwrap();
        barriers.wait().await;
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
