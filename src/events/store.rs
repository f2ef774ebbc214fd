//! The three append-only stores behind an event log and the merge-by-seq reads over them.
//!
//! Every event is kept once, as an `Arc<Event>`, in the store of its kind (lifecycle,
//! `service.log`, traffic). All three share one sequence counter, so each store is sorted by
//! `seq` with gaps where the other stores' events went; a merged read walks the three in step
//! and always takes the smallest `seq`.
//!
//! Memory bounding and spill-to-disk (architecture decision 4.10) belong here: a store becomes
//! a list of segments whose older ones may be written out to the environment directory and
//! read back on demand. Readers already address events only through [`Cursor`] positions and
//! [`Stores::merge_into`], so that change stays inside this file.

use std::sync::Arc;

use rig_types::Event;

use super::filter::StoreKind;

/// Positions into the three stores: index of the next event each store would yield.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    pos: [usize; 3],
}

/// The state guarded by the event log's lock.
#[derive(Debug, Default)]
pub(crate) struct Stores {
    /// The last sequence number assigned (0 before the first publish).
    last_seq: u64,
    /// Lifecycle, log and traffic events, each sorted by `seq`.
    lists: [Vec<Arc<Event>>; 3],
    /// Set by `close()`: subscriptions end once they have delivered every event up to here.
    closed_at: Option<u64>,
}

impl Stores {
    /// Claims the next sequence number.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// Appends an event whose `seq` was just claimed with [`Stores::next_seq`].
    pub(crate) fn push(&mut self, kind: StoreKind, event: Arc<Event>) {
        self.lists[kind.index()].push(event);
    }

    /// The last sequence number assigned.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// All events of one store, in `seq` order.
    pub(crate) fn list(&self, kind: StoreKind) -> &[Arc<Event>] {
        &self.lists[kind.index()]
    }

    /// Total number of events stored.
    pub(crate) fn len(&self) -> usize {
        self.lists.iter().map(Vec::len).sum()
    }

    /// Marks the log closed at the current sequence number (idempotent: the first close wins).
    pub(crate) fn close(&mut self) {
        if self.closed_at.is_none() {
            self.closed_at = Some(self.last_seq);
        }
    }

    /// The sequence number the log was closed at, if it was.
    pub(crate) fn closed_at(&self) -> Option<u64> {
        self.closed_at
    }

    /// A cursor positioned at the first event with `seq > after_seq` in every store.
    ///
    /// Binary search per store: sequence numbers are sorted but have gaps.
    pub(crate) fn cursor_after(&self, after_seq: u64) -> Cursor {
        let mut cursor = Cursor::default();
        for (pos, list) in cursor.pos.iter_mut().zip(&self.lists) {
            *pos = list.partition_point(|e| e.seq <= after_seq);
        }
        cursor
    }

    /// Appends to `out`, in `seq` order, up to `limit` events of the `include`d stores that
    /// come after `cursor` and have `seq <= max_seq`, advancing the cursor past them.
    /// Returns how many events were appended.
    pub(crate) fn merge_into(
        &self,
        cursor: &mut Cursor,
        include: [bool; 3],
        max_seq: u64,
        limit: usize,
        out: &mut impl Extend<Arc<Event>>,
    ) -> usize {
        let mut taken = 0;
        while taken < limit {
            let mut best: Option<(usize, u64)> = None;
            for (store, list) in self.lists.iter().enumerate() {
                if !include[store] {
                    continue;
                }
                if let Some(event) = list.get(cursor.pos[store]) {
                    if best.is_none_or(|(_, seq)| event.seq < seq) {
                        best = Some((store, event.seq));
                    }
                }
            }
            let Some((store, seq)) = best else { break };
            if seq > max_seq {
                break;
            }
            out.extend(std::iter::once(Arc::clone(
                &self.lists[store][cursor.pos[store]],
            )));
            cursor.pos[store] += 1;
            taken += 1;
        }
        taken
    }

    /// Every event with `seq > after_seq`, merged in `seq` order.
    pub(crate) fn merged_after(&self, after_seq: u64) -> Vec<Arc<Event>> {
        let mut cursor = self.cursor_after(after_seq);
        let total = self.len();
        let remaining = total - cursor.pos.iter().sum::<usize>().min(total);
        let mut out = Vec::with_capacity(remaining);
        self.merge_into(&mut cursor, [true; 3], u64::MAX, usize::MAX, &mut out);
        out
    }
}
