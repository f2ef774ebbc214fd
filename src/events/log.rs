//! [`EventLog`]: publishing and reading an environment's events.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rig_types::{Event, Timestamp};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::filter::{EventFilter, StoreKind};
use super::replay::Replay;
use super::spill::SpillFile;
use super::store::{Slot, Stores};
use super::subscription::Subscription;
use super::tail;

/// The memory rigd gives each environment's service output and traffic events before older
/// ones are spilled to disk: 64 MiB, about five hundred exchanges with 64 KiB captured each
/// way.
pub const DEFAULT_EVENT_MEMORY: usize = 64 << 20;

/// How many of a service's spilled `service.log` events a tail looks up at a time.
const SPILLED_TAIL_BATCH: usize = 256;

/// The persistent, ordered event log of one environment.
///
/// Events live in three append-only stores that share one sequence counter (the first event
/// is seq 1): lifecycle events, `service.log` output and proxy traffic. Lifecycle scans
/// ([`EventLog::wait_for`], [`EventLog::lifecycle_events`]) therefore cost the same however
/// much output and traffic an environment produces; full-timeline reads merge the stores by
/// `seq`. Events are stored as `Arc<Event>`, so snapshots and subscribers share them.
///
/// `EventLog` is a cheap handle: clones refer to the same log.
///
/// Concurrency: one short critical section per publish under a `parking_lot` read/write lock,
/// then a wake-up of the tasks waiting for new events. Publishers never wait for subscribers;
/// each subscriber is a cursor over the log and reads at its own pace, so none ever misses an
/// event.
///
/// Memory: a log made with [`EventLog::with_spill`] keeps about its budget of `service.log`
/// and traffic events in memory and writes older ones to a spill file, from which reads load
/// them back (see `store.rs`); nothing is dropped, unless the spill file cannot be written
/// (see [`EventLog::with_spill`]). Lifecycle events stay in memory.
/// [`EventLog::new`] keeps everything in memory.
#[derive(Clone, Default)]
pub struct EventLog {
    shared: Arc<Shared>,
}

/// State shared by the log handles and its subscriptions.
#[derive(Default)]
pub(crate) struct Shared {
    /// The stores; held only for short, non-blocking sections.
    pub(crate) stores: RwLock<Stores>,
    /// Woken when an event is appended to the store of the same index, and on close.
    store_notify: [Notify; 3],
    /// Woken on every publish and on close.
    any_notify: Notify,
    /// Where and when output and traffic events leave memory; `None` keeps them all.
    spill: Option<SpillConfig>,
    /// The observing proxies publishing into this log, to wait for what they observed.
    traffic_barriers: rig_proxy::ObservationBarriers,
}

/// The memory budget for output and traffic events and where the spill file goes.
struct SpillConfig {
    dir: PathBuf,
    budget: usize,
    /// Created with the first spill.
    file: Mutex<Option<Arc<SpillFile>>>,
    /// After a spill failed: when to try again (events stay in memory until one succeeds).
    retry_at: Mutex<Option<Instant>>,
    /// How long after a failed spill the next is tried.
    retry_after: Duration,
    /// Why the last spill failed, for the record of events dropped meanwhile.
    last_error: Mutex<String>,
}

/// While the spill file cannot be written, the output and traffic events in memory may grow to
/// this many times the budget; beyond that the oldest are dropped (with an `events.dropped`
/// record), so a full disk cannot make rigd's memory grow without bound.
const FAILED_SPILL_CAP: usize = 2;

/// How long after a failed spill (a full disk, say) the next is tried.
const SPILL_RETRY: Duration = Duration::from_secs(10);

impl SpillConfig {
    fn new(dir: PathBuf, budget: usize, retry_after: Duration) -> SpillConfig {
        SpillConfig {
            dir,
            budget,
            file: Mutex::new(None),
            retry_at: Mutex::new(None),
            retry_after,
            last_error: Mutex::new(String::new()),
        }
    }

    /// Whether the last spill failed (and none has succeeded since).
    fn failing(&self) -> bool {
        self.retry_at.lock().is_some()
    }

    /// While spilling fails: drops the oldest output and traffic events of `stores` beyond
    /// [`FAILED_SPILL_CAP`] times the budget, down to the budget. Returns the record to
    /// publish of what was dropped, if anything was.
    fn drop_overflow(&self, stores: &mut Stores) -> Option<Event> {
        let cap = self.budget.saturating_mul(FAILED_SPILL_CAP);
        // Checked first: three additions, where `failing` takes a lock, on every publish.
        if stores.resident_bytes() <= cap || !self.failing() {
            return None;
        }
        let dropped = stores.drop_oldest(cap, self.budget);
        (dropped > 0).then(|| self.dropped_record(dropped))
    }

    /// The `events.dropped` event saying that `dropped` events were lost, and why.
    fn dropped_record(&self, dropped: usize) -> Event {
        let mut event = Event::new(rig_types::EventType::EventsDropped);
        event.dropped = dropped as u64;
        event.message = format!(
            "{dropped} of the oldest service output and traffic events were dropped: {} could \
             not be written ({}), and rigd keeps at most {} MiB of them in memory; free space \
             there and later events are kept again",
            self.dir.join(super::spill::SPILL_FILE).display(),
            self.last_error.lock(),
            (self.budget.saturating_mul(FAILED_SPILL_CAP)) >> 20,
        );
        event
    }

    /// Whether a spill may be tried now: none failed, or the last failure is old enough.
    fn due(&self) -> bool {
        self.retry_at.lock().is_none_or(|at| Instant::now() >= at)
    }

    fn file(&self) -> std::io::Result<Arc<SpillFile>> {
        let mut file = self.file.lock();
        if let Some(file) = &*file {
            return Ok(Arc::clone(file));
        }
        let created = Arc::new(SpillFile::create(&self.dir)?);
        *file = Some(Arc::clone(&created));
        Ok(created)
    }
}

impl Shared {
    /// The notifier to wait on for new events of the `include`d stores: the store's own when
    /// exactly one is included (so a traffic-only reader sleeps through log output), otherwise
    /// the one woken by every publish.
    pub(crate) fn notify_for(&self, include: [bool; 3]) -> &Notify {
        let mut only = None;
        for (index, included) in include.iter().enumerate() {
            if *included {
                if only.is_some() {
                    return &self.any_notify;
                }
                only = Some(index);
            }
        }
        match only {
            Some(index) => &self.store_notify[index],
            None => &self.any_notify,
        }
    }

    fn notify_published(&self, kind: StoreKind) {
        self.store_notify[kind.index()].notify_waiters();
        self.any_notify.notify_waiters();
    }

    fn notify_everyone(&self) {
        for notify in &self.store_notify {
            notify.notify_waiters();
        }
        self.any_notify.notify_waiters();
    }
}

impl EventLog {
    /// An empty log that keeps every event in memory.
    pub fn new() -> EventLog {
        EventLog::default()
    }

    /// An empty log that keeps about `budget` bytes of `service.log` and traffic events in
    /// memory: beyond that, the oldest go to a spill file in `dir` (created when first needed)
    /// and are read back from there. If the file cannot be written, events stay in memory
    /// (reported on stderr) until a spill, tried again every 10 s, succeeds; but never more
    /// than twice the budget of them: beyond that the oldest are dropped, and an
    /// `events.dropped` event says how many and why.
    pub fn with_spill(dir: impl Into<PathBuf>, budget: usize) -> EventLog {
        EventLog::with_spill_retry(dir, budget, SPILL_RETRY)
    }

    /// [`EventLog::with_spill`] trying again `retry_after` after a spill failed.
    pub(crate) fn with_spill_retry(
        dir: impl Into<PathBuf>,
        budget: usize,
        retry_after: Duration,
    ) -> EventLog {
        EventLog {
            shared: Arc::new(Shared {
                spill: Some(SpillConfig::new(dir.into(), budget, retry_after)),
                ..Shared::default()
            }),
        }
    }

    /// Appends `event` with the next sequence number and returns that number.
    ///
    /// A zero timestamp is set to now; an explicit one is kept. Never blocks on readers or
    /// subscribers beyond a short critical section. Events published after [`EventLog::close`]
    /// are still stored (they appear in [`EventLog::events`]) but no subscription delivers
    /// them.
    pub fn publish(&self, event: Event) -> u64 {
        let now = event.timestamp.is_zero().then(Timestamp::now);
        let kind = StoreKind::of(&event.event_type);
        // Move the event straight to the heap, outside the lock (events are large, so every
        // copy counts); the fresh Arc is unique, so make_mut never clones.
        let mut event = Arc::new(event);
        let (seq, spill, dropped) = {
            let mut stores = self.shared.stores.write();
            let seq = stores.next_seq();
            let stored = Arc::make_mut(&mut event);
            stored.seq = seq;
            if let Some(now) = now {
                stored.timestamp = now;
            }
            stores.push(kind, event);
            let (spill, dropped) = match &self.shared.spill {
                Some(config) if kind != StoreKind::Lifecycle => {
                    match stores.begin_spill(config.budget, || config.due()) {
                        Some(batch) => (Some(batch), None),
                        None => (None, config.drop_overflow(&mut stores)),
                    }
                }
                _ => (None, None),
            };
            (seq, spill, dropped)
        };
        self.shared.notify_published(kind);
        if let Some(record) = dropped {
            self.publish(record);
        }
        if let Some(batch) = spill {
            // Writing a batch takes milliseconds: on a multi-threaded runtime, its other tasks
            // move to other threads meanwhile.
            match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(|| self.spill(batch))
                }
                _ => self.spill(batch),
            }
        }
        seq
    }

    /// Writes `batch` (the oldest output and traffic events in memory) to the spill file,
    /// outside the lock, then lets the stores forget them. Readers keep finding them in memory
    /// until then.
    fn spill(&self, batch: Vec<Arc<Event>>) {
        let Some(config) = &self.shared.spill else {
            return;
        };
        let written = config
            .file()
            .and_then(|file| file.append(&batch).map(|spilled| (file, spilled)));
        drop(batch);
        let path = || config.dir.join(super::spill::SPILL_FILE);
        let mut stores = self.shared.stores.write();
        match written {
            Ok((file, spilled)) => {
                stores.spilled(&file, spilled);
                if config.retry_at.lock().take().is_some() {
                    eprintln!("rigd: writing events to {} works again", path().display());
                }
            }
            Err(error) => {
                stores.spill_failed();
                *config.last_error.lock() = error.to_string();
                let retry_at = Instant::now() + config.retry_after;
                // Said once, not at every retry.
                if config.retry_at.lock().replace(retry_at).is_none() {
                    eprintln!(
                        "rigd: writing events to {} failed: {error}; they stay in memory, and \
                         rigd tries again every {}s",
                        path().display(),
                        config.retry_after.as_secs()
                    );
                }
            }
        }
        let dropped = config.drop_overflow(&mut stores);
        drop(stores);
        if let Some(record) = dropped {
            self.publish(record);
        }
    }

    /// Every event, merged in `seq` order. The snapshot is independent: later publishes do not
    /// change it. Empty when nothing was published (upstream's `/log` renders that as `null`).
    pub fn events(&self) -> Vec<Arc<Event>> {
        let slots = self.shared.stores.read().merged_after(0);
        load(slots)
    }

    /// The lifecycle events only (neither `service.log` nor traffic), in `seq` order.
    pub fn lifecycle_events(&self) -> Vec<Arc<Event>> {
        let stores = self.shared.stores.read();
        stores.resident(StoreKind::Lifecycle).cloned().collect()
    }

    /// The traffic events only, in `seq` order (spilled ones read back).
    pub fn traffic_events(&self) -> Vec<Arc<Event>> {
        let slots = self.shared.stores.read().slots(StoreKind::Traffic);
        load(slots)
    }

    /// A reader of every event published so far, in `seq` order and in batches, so a writer
    /// never holds the whole log (spilled events included) in memory at once.
    pub fn replay(&self) -> Replay {
        let stores = self.shared.stores.read();
        Replay::new(
            Arc::clone(&self.shared),
            stores.cursor_after(0),
            stores.last_seq(),
        )
    }

    /// Every event with `seq > after_seq`, merged in `seq` order; empty when `after_seq` is at
    /// or beyond the end.
    pub fn since(&self, after_seq: u64) -> Vec<Arc<Event>> {
        let slots = self.shared.stores.read().merged_after(after_seq);
        load(slots)
    }

    /// The sequence number of the last event published (0 when the log is empty).
    pub fn last_seq(&self) -> u64 {
        self.shared.stores.read().last_seq()
    }

    /// The sequence number of the last event of the given kinds (0 when there is none): of
    /// [`StoreKind::Lifecycle`] and [`StoreKind::Traffic`], the last one a stream without
    /// `service.log` delivers.
    pub fn last_seq_in(&self, kinds: &[StoreKind]) -> u64 {
        let stores = self.shared.stores.read();
        kinds
            .iter()
            .map(|&kind| stores.last_seq_in(kind))
            .max()
            .unwrap_or(0)
    }

    /// Where the observing proxies that publish into this log register, so that
    /// [`EventLog::settle_traffic`] can wait for them.
    pub fn traffic_barriers(&self) -> &rig_proxy::ObservationBarriers {
        &self.shared.traffic_barriers
    }

    /// Returns once every exchange the proxies of this log had observed when it was called
    /// is in the log (or counted in a `proxy.observations_dropped` event).
    pub async fn settle_traffic(&self) {
        self.shared.traffic_barriers.wait().await;
    }

    /// True when nothing was published yet.
    pub fn is_empty(&self) -> bool {
        self.last_seq() == 0
    }

    /// The last `n` lines `service` wrote, each prefixed with `"  | "` and joined with `\n`;
    /// `""` when it wrote nothing.
    ///
    /// Each `service.log` chunk has its trailing newlines trimmed and is split on `\n`, so an
    /// empty chunk counts as one empty line.
    pub fn service_log_tail(&self, service: &str, n: usize) -> String {
        self.service_log_tail_before(service, n, u64::MAX)
    }

    /// [`EventLog::service_log_tail`] of the output `service` wrote before the event
    /// `before_seq` was published (e.g. its `service.failed`): what it wrote after does not
    /// count.
    pub fn service_log_tail_before(&self, service: &str, n: usize, before_seq: u64) -> String {
        // The service's chunks, newest first, until they hold `n` lines: from memory, then,
        // when its output goes back further, from the spill file (read outside the lock). Only
        // the service's own spilled chunks from before `before_seq` are read back, so at most
        // `n` of them, however much other services wrote.
        let mut chunks = tail::Chunks::new(service, n, before_seq);
        let mut end = {
            let stores = self.shared.stores.read();
            for event in stores.resident(StoreKind::Log).rev() {
                if chunks.add(event) {
                    break;
                }
            }
            stores.spilled_output_before(service, before_seq)
        };
        while end > 0 && !chunks.enough() {
            let start = end.saturating_sub(SPILLED_TAIL_BATCH);
            let slots = self
                .shared
                .stores
                .read()
                .spilled_output(service, start..end);
            for event in slots.into_iter().rev().filter_map(Slot::load) {
                if chunks.add(&event) {
                    break;
                }
            }
            end = start;
        }
        chunks.tail()
    }

    /// The first lifecycle event for which `matches` returns true, waiting for it if needed.
    ///
    /// Existing lifecycle events are scanned from the beginning first; after that only new
    /// lifecycle events are examined, in order. `service.log` and traffic events are never
    /// examined. `matches` runs under the log's read lock, so keep it cheap and non-blocking.
    ///
    /// There is no built-in deadline: cancel by dropping the future, typically through
    /// `tokio::time::timeout` or `tokio::select!`. Dropping it is always safe. A wait on a
    /// closed log that no stored event satisfies waits until dropped.
    pub async fn wait_for<F>(&self, matches: F) -> Arc<Event>
    where
        F: Fn(&Event) -> bool,
    {
        let notify = &self.shared.store_notify[StoreKind::Lifecycle.index()];
        let mut scanned = 0;
        loop {
            // Register before looking, so a publish between the look and the await still
            // wakes this task.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let stores = self.shared.stores.read();
                let mut lifecycle = stores.resident(StoreKind::Lifecycle).skip(scanned);
                if let Some(found) = lifecycle.find(|e| matches(e)) {
                    return Arc::clone(found);
                }
                scanned = stores.count(StoreKind::Lifecycle);
            }
            notified.await;
        }
    }

    /// A lossless subscription to the events with `seq > from_seq`: it replays the stored
    /// ones, then follows new ones as they are published.
    ///
    /// `filter` chooses the stores read and an optional predicate (`None` delivers every
    /// event, `service.log` included). The subscription ends when `cancel` is cancelled, or
    /// after [`EventLog::close`] once it has delivered every event published before the close.
    /// A subscriber that reads slowly holds no resources but its cursor and slows nobody else.
    pub fn subscribe(
        &self,
        from_seq: u64,
        filter: Option<EventFilter>,
        cancel: CancellationToken,
    ) -> Subscription {
        let (cursor, skip_through) = {
            let stores = self.shared.stores.read();
            // A start beyond the end (e.g. a `Last-Event-ID` from elsewhere) still skips
            // everything up to `from_seq`, as upstream does.
            let skip_through = if from_seq > stores.last_seq() {
                from_seq
            } else {
                0
            };
            (stores.cursor_after(from_seq), skip_through)
        };
        Subscription::new(
            Arc::clone(&self.shared),
            cursor,
            skip_through,
            filter.unwrap_or_default(),
            cancel,
        )
    }

    /// Closes the log for subscribers (call it when the environment is released): every
    /// subscription, current or future, delivers the events published so far and then ends
    /// ([`Subscription::next`] returns `None`). Idempotent.
    ///
    /// Reads are unaffected and publishing still works, but events published after the close
    /// are not delivered to subscriptions. Pending [`EventLog::wait_for`] calls are not ended:
    /// their callers own the deadline.
    pub fn close(&self) {
        self.shared.stores.write().close();
        self.shared.notify_everyone();
    }

    /// True once [`EventLog::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.stores.read().closed_at().is_some()
    }

    /// How many events were read back from the spill file so far, for tests of what reads
    /// cost.
    #[cfg(test)]
    pub(crate) fn spill_reads(&self) -> usize {
        let spill = self
            .shared
            .spill
            .as_ref()
            .and_then(|c| c.file.lock().clone());
        spill.map_or(0, |file| {
            file.reads.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// The shared state, for tests that look at the stores.
    #[cfg(test)]
    pub(crate) fn shared_for_tests(&self) -> &Shared {
        &self.shared
    }
}

/// The events of `slots`, spilled ones read back (after the log's lock is released).
fn load(slots: Vec<Slot>) -> Vec<Arc<Event>> {
    slots.into_iter().filter_map(Slot::load).collect()
}

impl fmt::Debug for EventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stores = self.shared.stores.read();
        f.debug_struct("EventLog")
            .field("last_seq", &stores.last_seq())
            .field("lifecycle", &stores.count(StoreKind::Lifecycle))
            .field("log", &stores.count(StoreKind::Log))
            .field("traffic", &stores.count(StoreKind::Traffic))
            .field("bytes_in_memory", &stores.resident_bytes())
            .field("closed_at", &stores.closed_at())
            .finish()
    }
}
