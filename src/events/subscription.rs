//! [`Subscription`]: a lossless cursor that follows an event log.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use futures_util::Stream;
use rig_types::Event;
use tokio_util::sync::CancellationToken;

use super::filter::EventFilter;
use super::log::Shared;
use super::store::{Cursor, Slot};

/// How many events a subscription copies out of the log per lock acquisition.
const BATCH: usize = 256;

/// A reader that follows an [`EventLog`](super::EventLog) from a starting point, created by
/// [`EventLog::subscribe`](super::EventLog::subscribe).
///
/// It is a cursor over the persistent log, not a queue: it never drops an event, holds only
/// its position and a small batch of `Arc`s, and a slow reader slows only itself. Events are
/// copied out in batches under the log's read lock; the filter's predicate runs outside it.
///
/// A reader never holds its runtime's thread for long: spilled events are read back from disk
/// on a blocking thread, and after each batch that delivers nothing (a predicate that rejects
/// most events, over a long log) it lets other tasks run: at once after a batch read back from
/// the spill file, and once tokio's cooperative budget is spent after batches from memory.
pub struct Subscription {
    shared: Arc<Shared>,
    cursor: Cursor,
    filter: EventFilter,
    include: [bool; 3],
    buffer: VecDeque<Arc<Event>>,
    cancel: CancellationToken,
    /// Events up to this seq are skipped even though the cursor is past them: set when the
    /// subscription starts beyond the end of the log, 0 once that point is passed.
    skip_through: u64,
    ended: bool,
}

/// What one read from the log found.
enum Fill {
    /// Events were read (the filter may have rejected all of them); `spilled` when some were
    /// read back from the spill file.
    Read { spilled: bool },
    /// Nothing new yet.
    CaughtUp,
    /// The log is closed and everything published before the close was read.
    Ended,
}

impl Subscription {
    /// A subscription reading from `cursor`; events with `seq <= skip_through` are never
    /// delivered.
    pub(crate) fn new(
        shared: Arc<Shared>,
        cursor: Cursor,
        skip_through: u64,
        filter: EventFilter,
        cancel: CancellationToken,
    ) -> Subscription {
        Subscription {
            shared,
            cursor,
            include: filter.store_flags(),
            filter,
            buffer: VecDeque::new(),
            cancel,
            skip_through,
            ended: false,
        }
    }

    /// The next event that passes the filter, in `seq` order, waiting for one to be published
    /// if needed.
    ///
    /// Returns `None` once the cancellation token is cancelled (a call blocked here wakes up),
    /// and after [`EventLog::close`](super::EventLog::close) once every event published before
    /// the close was delivered; every later call returns `None` too.
    ///
    /// Cancel-safe: dropping the future (e.g. in `tokio::select!`) loses no event.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            if self.ended || self.cancel.is_cancelled() {
                return None;
            }
            if let Some(event) = self.buffer.pop_front() {
                return Some(event);
            }
            match self.fill().await {
                Fill::Read { spilled } => {
                    self.pause_if_nothing_passed(spilled).await;
                    continue;
                }
                Fill::Ended => return None,
                Fill::CaughtUp => {}
            }
            // Caught up: register for a wake-up, then look once more so a publish that raced
            // with the read above is not missed.
            let shared = Arc::clone(&self.shared);
            let notified = shared.notify_for(self.include).notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.fill().await {
                Fill::Read { spilled } => {
                    self.pause_if_nothing_passed(spilled).await;
                    continue;
                }
                Fill::Ended => return None,
                Fill::CaughtUp => {}
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return None,
                () = &mut notified => {}
            }
        }
    }

    /// Turns the subscription into a [`Stream`] of the same events (for the SSE handler). The
    /// stream ends when [`Subscription::next`] would return `None`.
    pub fn into_stream(self) -> impl Stream<Item = Arc<Event>> + Send + 'static {
        futures_util::stream::unfold(self, |mut subscription| async move {
            let event = subscription.next().await?;
            Some((event, subscription))
        })
    }

    /// After a batch read that left nothing to deliver, lets the runtime's other tasks run:
    /// always after a batch read back from the spill file, else when the task's cooperative
    /// budget is spent. Otherwise [`Subscription::next`] would read on, without ever yielding,
    /// until a matching event or the end of the log.
    async fn pause_if_nothing_passed(&self, spilled: bool) {
        if !self.buffer.is_empty() {
            return;
        }
        if spilled {
            tokio::task::yield_now().await;
        } else {
            tokio::task::consume_budget().await;
        }
    }

    /// Reads the next batch of events into the buffer and applies the predicate.
    ///
    /// Cancel-safe: the cursor moves past the batch only once its events are in the buffer.
    async fn fill(&mut self) -> Fill {
        let mut slots = Vec::new();
        let mut cursor = self.cursor;
        let (read, closed) = {
            let stores = self.shared.stores.read();
            let closed_at = stores.closed_at();
            let read = stores.merge_into(
                &mut cursor,
                self.include,
                closed_at.unwrap_or(u64::MAX),
                BATCH,
                &mut slots,
            );
            (read, closed_at.is_some())
        };
        // Spilled events are read back from disk outside the lock, and off the runtime's
        // threads: parsing a batch of large events takes milliseconds.
        let spilled = slots.iter().any(Slot::is_spilled);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if spilled => {
                let loading = runtime.spawn_blocking(move || load(slots));
                match loading.await {
                    Ok(events) => self.buffer.extend(events),
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    // The runtime is shutting down: so are its readers.
                    Err(_) => {
                        self.ended = true;
                        return Fill::Ended;
                    }
                }
            }
            _ => self.buffer.extend(slots.into_iter().filter_map(Slot::load)),
        }
        self.cursor = cursor;
        if self.skip_through > 0 {
            let skip = self.skip_through;
            if self.buffer.back().is_some_and(|event| event.seq >= skip) {
                self.skip_through = 0;
            }
            self.buffer.retain(|event| event.seq > skip);
        }
        if self.filter.has_predicate() {
            let filter = &self.filter;
            self.buffer.retain(|event| filter.matches_predicate(event));
        }
        if read > 0 {
            Fill::Read { spilled }
        } else if closed {
            self.ended = true;
            Fill::Ended
        } else {
            Fill::CaughtUp
        }
    }
}

/// The events of `slots`, spilled ones read back.
fn load(slots: Vec<Slot>) -> Vec<Arc<Event>> {
    slots.into_iter().filter_map(Slot::load).collect()
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("cursor", &self.cursor)
            .field("filter", &self.filter)
            .field("buffered", &self.buffer.len())
            .field("cancelled", &self.cancel.is_cancelled())
            .field("ended", &self.ended)
            .finish()
    }
}
