//! [`Replay`]: every event published up to a point, read in batches, for writers that must
//! not hold a whole log in memory at once (the log files written at teardown).

use std::fmt;
use std::sync::Arc;

use rig_types::Event;

use super::log::Shared;
use super::store::{Cursor, Slot};

/// How many events a replay reads per lock acquisition.
const BATCH: usize = 256;

/// A reader of the events with `seq` up to the log's last when it was made, in `seq` order,
/// created by [`EventLog::replay`](super::EventLog::replay). Each batch is copied out under the
/// log's read lock; spilled events are read back after it is released.
///
/// A clone starts where the original is, so cloning a fresh replay reads the same events
/// twice.
#[derive(Clone)]
pub struct Replay {
    shared: Arc<Shared>,
    cursor: Cursor,
    until: u64,
}

impl Replay {
    pub(crate) fn new(shared: Arc<Shared>, cursor: Cursor, until: u64) -> Replay {
        Replay {
            shared,
            cursor,
            until,
        }
    }

    /// The next events, at most a few hundred; `None` once every event was read.
    pub fn next_batch(&mut self) -> Option<Vec<Arc<Event>>> {
        let mut slots = Vec::new();
        let read = self.shared.stores.read().merge_into(
            &mut self.cursor,
            [true; 3],
            self.until,
            BATCH,
            &mut slots,
        );
        (read > 0).then(|| slots.into_iter().filter_map(Slot::load).collect())
    }
}

impl fmt::Debug for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("cursor", &self.cursor)
            .field("until", &self.until)
            .finish()
    }
}
