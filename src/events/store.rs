//! The three append-only stores behind an event log and the merge-by-seq reads over them.
//!
//! Every event is kept once, in the store of its kind (lifecycle, `service.log`, traffic). All
//! three share one sequence counter, so each store is sorted by `seq` with gaps where the other
//! stores' events went; a merged read walks the three in step and always takes the smallest
//! `seq`.
//!
//! Memory is bounded (architecture decision 4.10): once the service output and traffic events
//! in memory exceed the log's budget, the oldest of them are written out to a spill file (see
//! [`super::spill`]) and only their places in the file stay in memory. A store is therefore a
//! spilled prefix followed by a resident suffix; positions ([`Cursor`]) count across both and
//! never change when events move to disk. Reads hand out [`Slot`]s under the lock and load
//! spilled events after it is released.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use rig_types::Event;

use super::filter::StoreKind;
use super::spill::{SpillFile, Spilled};

/// The stores whose events may leave memory: service output and traffic. Lifecycle events
/// are few, and [`super::EventLog::wait_for`] scans them under the lock.
const SPILLABLE: [StoreKind; 2] = [StoreKind::Log, StoreKind::Traffic];

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
    lists: [Store; 3],
    /// Set by `close()`: subscriptions end once they have delivered every event up to here.
    closed_at: Option<u64>,
    /// Where spilled events went, once one was.
    spill: Option<Arc<SpillFile>>,
    /// For each service, the positions of its spilled `service.log` events in the log store,
    /// oldest first: the tail of one service's output reads back its own events only, not
    /// those of every service that wrote since.
    spilled_output: HashMap<String, Vec<usize>>,
    /// A batch of events is being written out.
    spilling: bool,
}

/// One store: the events written out to the spill file, then the ones in memory.
#[derive(Debug, Default)]
struct Store {
    spilled: Vec<Spilled>,
    /// In memory, oldest first, with their estimated sizes.
    resident: VecDeque<(Arc<Event>, usize)>,
    /// The sum of the resident events' estimated sizes.
    resident_bytes: usize,
}

impl Store {
    fn len(&self) -> usize {
        self.spilled.len() + self.resident.len()
    }

    fn seq_at(&self, pos: usize) -> Option<u64> {
        match pos.checked_sub(self.spilled.len()) {
            None => Some(self.spilled[pos].seq),
            Some(index) => self.resident.get(index).map(|(event, _)| event.seq),
        }
    }

    /// The event at `pos`; `None` past the end, and for an event that was dropped.
    fn slot_at(&self, pos: usize, spill: &Option<Arc<SpillFile>>) -> Option<Slot> {
        match pos.checked_sub(self.spilled.len()) {
            None if self.spilled[pos].is_dropped() => None,
            None => Some(Slot::Spilled(
                Arc::clone(
                    spill
                        .as_ref()
                        .expect("a store with spilled events has a spill file"),
                ),
                self.spilled[pos],
            )),
            Some(index) => self
                .resident
                .get(index)
                .map(|(event, _)| Slot::Resident(Arc::clone(event))),
        }
    }

    /// The position of the first event with `seq > after_seq`.
    fn position_after(&self, after_seq: u64) -> usize {
        let on_disk = self.spilled.partition_point(|e| e.seq <= after_seq);
        if on_disk < self.spilled.len() {
            return on_disk;
        }
        on_disk + self.resident.partition_point(|(e, _)| e.seq <= after_seq)
    }
}

/// An event as a read finds it under the lock: in memory, or where it is in the spill file
/// ([`Slot::load`] reads it after the lock is released).
#[derive(Debug)]
pub(crate) enum Slot {
    Resident(Arc<Event>),
    Spilled(Arc<SpillFile>, Spilled),
}

impl Slot {
    /// Whether the event is in the spill file (loading it reads the disk).
    pub(crate) fn is_spilled(&self) -> bool {
        matches!(self, Slot::Spilled(..))
    }

    /// The event; `None` (reported on stderr) when its spill file cannot be read back.
    pub(crate) fn load(self) -> Option<Arc<Event>> {
        match self {
            Slot::Resident(event) => Some(event),
            Slot::Spilled(file, at) => file.read(at),
        }
    }
}

impl Stores {
    /// Claims the next sequence number.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// Appends an event whose `seq` was just claimed with [`Stores::next_seq`].
    pub(crate) fn push(&mut self, kind: StoreKind, event: Arc<Event>) {
        let size = if SPILLABLE.contains(&kind) {
            super::size::approx_size(&event)
        } else {
            0
        };
        let store = &mut self.lists[kind.index()];
        store.resident_bytes += size;
        store.resident.push_back((event, size));
    }

    /// The last sequence number assigned.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The sequence number of the last event of one store (0 when it has none).
    pub(crate) fn last_seq_in(&self, kind: StoreKind) -> u64 {
        let store = &self.lists[kind.index()];
        store
            .resident
            .back()
            .map(|(event, _)| event.seq)
            .or_else(|| store.spilled.last().map(|e| e.seq))
            .unwrap_or(0)
    }

    /// The events of one store that are in memory, in `seq` order (all of the lifecycle
    /// store's, which is never spilled).
    pub(crate) fn resident(&self, kind: StoreKind) -> impl DoubleEndedIterator<Item = &Arc<Event>> {
        self.lists[kind.index()]
            .resident
            .iter()
            .map(|(event, _)| event)
    }

    /// How many events one store holds, spilled or not.
    pub(crate) fn count(&self, kind: StoreKind) -> usize {
        self.lists[kind.index()].len()
    }

    /// How many of one store's events are in the spill file: its positions `0..` that.
    #[cfg(test)]
    pub(crate) fn spilled_count(&self, kind: StoreKind) -> usize {
        self.lists[kind.index()].spilled.len()
    }

    /// How many of `service`'s `service.log` events in the spill file came before the event
    /// `before_seq`: its spilled output is numbered `0..` that, oldest first.
    pub(crate) fn spilled_output_before(&self, service: &str, before_seq: u64) -> usize {
        let spilled = &self.lists[StoreKind::Log.index()].spilled;
        self.spilled_output.get(service).map_or(0, |positions| {
            positions.partition_point(|&pos| spilled[pos].seq < before_seq)
        })
    }

    /// The events numbered `range` of `service`'s spilled output (see
    /// [`Stores::spilled_output_before`]), oldest first.
    pub(crate) fn spilled_output(&self, service: &str, range: Range<usize>) -> Vec<Slot> {
        let positions = self
            .spilled_output
            .get(service)
            .and_then(|positions| positions.get(range))
            .unwrap_or_default();
        positions
            .iter()
            .filter_map(|&pos| self.slot(StoreKind::Log, pos))
            .collect()
    }

    /// The event at position `pos` of one store.
    pub(crate) fn slot(&self, kind: StoreKind, pos: usize) -> Option<Slot> {
        self.lists[kind.index()].slot_at(pos, &self.spill)
    }

    /// Every event of one store, in `seq` order.
    pub(crate) fn slots(&self, kind: StoreKind) -> Vec<Slot> {
        (0..self.count(kind))
            .filter_map(|pos| self.slot(kind, pos))
            .collect()
    }

    /// Total number of events stored.
    pub(crate) fn len(&self) -> usize {
        self.lists.iter().map(Store::len).sum()
    }

    /// Estimated bytes of the service output and traffic events in memory.
    pub(crate) fn resident_bytes(&self) -> usize {
        SPILLABLE
            .iter()
            .map(|kind| self.lists[kind.index()].resident_bytes)
            .sum()
    }

    /// When the output and traffic events in memory exceed `budget`, no spill is under way and
    /// `due` says a spill may be tried: the oldest of them, down to three quarters of the
    /// budget, for the caller to write out and then hand to [`Stores::spilled`] (or
    /// [`Stores::spill_failed`]).
    pub(crate) fn begin_spill(
        &mut self,
        budget: usize,
        due: impl FnOnce() -> bool,
    ) -> Option<Vec<Arc<Event>>> {
        let resident = self.resident_bytes();
        if self.spilling || resident <= budget || !due() {
            return None;
        }
        self.spilling = true;
        Some(self.oldest(resident - budget / 4 * 3))
    }

    /// Ends a spill that could not be written: nothing moves.
    pub(crate) fn spill_failed(&mut self) {
        self.spilling = false;
    }

    /// When the output and traffic events in memory exceed `cap` and no spill is under way:
    /// forgets the oldest of them, down to `keep` bytes, without writing them anywhere (for
    /// when the spill file cannot be written). Their places stay, so positions and cursors
    /// keep their meaning, and reads skip them. Returns how many events were dropped.
    pub(crate) fn drop_oldest(&mut self, cap: usize, keep: usize) -> usize {
        let resident = self.resident_bytes();
        if self.spilling || resident <= cap {
            return 0;
        }
        let dropped = self.oldest(resident - keep.min(resident));
        for event in &dropped {
            let Some(index) = SPILLABLE.iter().map(|kind| kind.index()).find(|&i| {
                self.lists[i]
                    .resident
                    .front()
                    .is_some_and(|(e, _)| e.seq == event.seq)
            }) else {
                debug_assert!(false, "event {} was dropped out of order", event.seq);
                break;
            };
            let store = &mut self.lists[index];
            if let Some((_, size)) = store.resident.pop_front() {
                store.resident_bytes -= size;
                store.spilled.push(Spilled::dropped(event.seq));
            }
        }
        dropped.len()
    }

    /// The oldest resident output and traffic events, in `seq` order, whose sizes add up to
    /// at least `bytes` (all of them if they add up to less).
    fn oldest(&self, bytes: usize) -> Vec<Arc<Event>> {
        let [log, traffic] = SPILLABLE.map(|kind| &self.lists[kind.index()].resident);
        let (mut log, mut traffic) = (log.iter().peekable(), traffic.iter().peekable());
        let mut total = 0;
        let mut out = Vec::new();
        while total < bytes {
            let next = match (log.peek(), traffic.peek()) {
                (Some((l, _)), Some((t, _))) if l.seq < t.seq => log.next(),
                (Some(_), None) => log.next(),
                _ => traffic.next(),
            };
            let Some((event, size)) = next else { break };
            total += size;
            out.push(Arc::clone(event));
        }
        out
    }

    /// Ends a spill: replaces the oldest resident output and traffic events by their places
    /// in `file`. `spilled` lists them in `seq` order, as [`Stores::begin_spill`] returned
    /// them.
    pub(crate) fn spilled(&mut self, file: &Arc<SpillFile>, spilled: Vec<Spilled>) {
        self.spilling = false;
        self.spill.get_or_insert_with(|| Arc::clone(file));
        for at in spilled {
            let Some(store) = SPILLABLE.iter().map(|kind| kind.index()).find(|&i| {
                self.lists[i]
                    .resident
                    .front()
                    .is_some_and(|(e, _)| e.seq == at.seq)
            }) else {
                debug_assert!(false, "event {} was spilled out of order", at.seq);
                break;
            };
            let is_output = store == StoreKind::Log.index();
            let store = &mut self.lists[store];
            if let Some((event, size)) = store.resident.pop_front() {
                store.resident_bytes -= size;
                if is_output {
                    let position = store.spilled.len();
                    match self.spilled_output.get_mut(&event.service) {
                        Some(positions) => positions.push(position),
                        None => {
                            self.spilled_output
                                .insert(event.service.clone(), vec![position]);
                        }
                    }
                }
                store.spilled.push(at);
            }
        }
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
        for (pos, store) in cursor.pos.iter_mut().zip(&self.lists) {
            *pos = store.position_after(after_seq);
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
        out: &mut impl Extend<Slot>,
    ) -> usize {
        let mut taken = 0;
        while taken < limit {
            let mut best: Option<(usize, u64)> = None;
            for (store, list) in self.lists.iter().enumerate() {
                if !include[store] {
                    continue;
                }
                if let Some(next) = list.seq_at(cursor.pos[store]) {
                    if best.is_none_or(|(_, seq)| next < seq) {
                        best = Some((store, next));
                    }
                }
            }
            let Some((store, seq)) = best else { break };
            if seq > max_seq {
                break;
            }
            out.extend(self.lists[store].slot_at(cursor.pos[store], &self.spill));
            cursor.pos[store] += 1;
            taken += 1;
        }
        taken
    }

    /// Every event with `seq > after_seq`, merged in `seq` order.
    pub(crate) fn merged_after(&self, after_seq: u64) -> Vec<Slot> {
        let mut cursor = self.cursor_after(after_seq);
        let total = self.len();
        let remaining = total - cursor.pos.iter().sum::<usize>().min(total);
        let mut out = Vec::with_capacity(remaining);
        self.merge_into(&mut cursor, [true; 3], u64::MAX, usize::MAX, &mut out);
        out
    }
}
