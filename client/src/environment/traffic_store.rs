//! The traffic events an environment handle has received, in a bounded amount of memory.
//!
//! Every traffic event is kept, in arrival order, so queries and assertions can look at all of
//! them. The newest are kept in memory up to a budget (64 MiB by default, mostly captured
//! bodies); older ones are written, as JSON, to an unnamed temporary file and read back when a
//! query reaches them. rigd bounds its own memory the same way. Queries that wait for new
//! traffic (`wait_for`, `expect`) only look at recent events, which are in memory.
//!
//! The file is unlinked as soon as it is created, so nothing is left behind, even when the
//! test process is killed. If it cannot be written, events simply stay in memory: nothing is
//! dropped.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rig_types::Event;

/// Bytes of traffic events kept in memory unless
/// [`EnvironmentBuilder::traffic_memory`](crate::EnvironmentBuilder::traffic_memory) says
/// otherwise.
pub const DEFAULT_TRAFFIC_MEMORY: usize = 64 << 20;

/// What an event costs besides its bodies (fields, headers, the allocation itself), roughly.
const EVENT_OVERHEAD: usize = 512;

/// Every traffic event received, oldest first.
#[derive(Debug)]
pub(crate) struct TrafficStore {
    slots: Vec<Slot>,
    /// Events are moved to disk oldest first, so those from this index on are in memory.
    first_resident: usize,
    /// Estimated bytes of the events held in memory.
    resident_bytes: usize,
    budget: usize,
    spill: Spill,
}

#[derive(Clone, Debug)]
enum Slot {
    InMemory(Arc<Event>),
    /// JSON of the event at `offset` in the spill file.
    OnDisk {
        offset: u64,
        len: usize,
    },
}

#[derive(Debug)]
enum Spill {
    /// No event has been spilled yet.
    NotYet,
    Open {
        file: Arc<File>,
        end: u64,
    },
    /// The file could not be created or written: everything stays in memory.
    Failed,
}

impl Default for TrafficStore {
    fn default() -> TrafficStore {
        TrafficStore::new(DEFAULT_TRAFFIC_MEMORY)
    }
}

impl TrafficStore {
    /// An empty store keeping up to `budget` bytes of events in memory.
    pub(crate) fn new(budget: usize) -> TrafficStore {
        TrafficStore {
            slots: Vec::new(),
            first_resident: 0,
            resident_bytes: 0,
            budget,
            spill: Spill::NotYet,
        }
    }

    /// How many events have been received.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Adds the newest event, moving the oldest in-memory events to disk while over budget.
    pub(crate) fn push(&mut self, event: Event) {
        self.resident_bytes += footprint(&event);
        self.slots.push(Slot::InMemory(Arc::new(event)));
        // The newest event always stays in memory: the waiters are about to look at it.
        while self.resident_bytes > self.budget && self.first_resident + 1 < self.slots.len() {
            let oldest = &mut self.slots[self.first_resident];
            if let Slot::InMemory(event) = oldest {
                let Some((offset, len)) = self.spill.append(event) else {
                    return;
                };
                self.resident_bytes -= footprint(event);
                *oldest = Slot::OnDisk { offset, len };
            }
            self.first_resident += 1;
        }
    }

    /// The events from index `start` on, in order; those on disk are read back. An event that
    /// cannot be read back (the temporary file was damaged) is reported on stderr and skipped.
    pub(crate) fn iter_from(&self, start: usize) -> impl Iterator<Item = Cow<'_, Event>> + '_ {
        events(
            self.slots.get(start..).unwrap_or_default(),
            self.spill.file(),
        )
    }

    /// What the store holds now, to look through without holding the lock the store is
    /// behind: events on disk are read back only as the snapshot is walked.
    pub(crate) fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            slots: self.slots.clone(),
            file: self.spill.file().cloned(),
        }
    }
}

/// The events of a [`TrafficStore`] at one moment (see [`TrafficStore::snapshot`]).
pub(crate) struct TrafficSnapshot {
    slots: Vec<Slot>,
    file: Option<Arc<File>>,
}

impl TrafficSnapshot {
    /// Every event, in order; those on disk are read back as they are reached.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Cow<'_, Event>> + '_ {
        events(&self.slots, self.file.as_ref())
    }
}

/// The events of `slots`, those on disk read back from `file` as they are reached.
fn events<'a>(
    slots: &'a [Slot],
    file: Option<&'a Arc<File>>,
) -> impl Iterator<Item = Cow<'a, Event>> + 'a {
    slots.iter().filter_map(move |slot| match slot {
        Slot::InMemory(event) => Some(Cow::Borrowed(&**event)),
        Slot::OnDisk { offset, len } => read(file, *offset, *len).map(Cow::Owned),
    })
}

/// Reads back the event at `offset` of the spill `file`; `None`, reported on stderr, when it
/// cannot be.
fn read(file: Option<&Arc<File>>, offset: u64, len: usize) -> Option<Event> {
    // Only an open file ever received events, and it stays open.
    let file = file?;
    let mut json = vec![0; len];
    let read = file
        .read_exact_at(&mut json, offset)
        .map_err(|e| e.to_string())
        .and_then(|()| serde_json::from_slice(&json).map_err(|e| e.to_string()));
    match read {
        Ok(event) => Some(event),
        Err(e) => {
            eprintln!("rig: could not read back a traffic event kept on disk: {e}");
            None
        }
    }
}

impl Spill {
    /// The spill file, once one is open.
    fn file(&self) -> Option<&Arc<File>> {
        match self {
            Spill::Open { file, .. } => Some(file),
            _ => None,
        }
    }

    /// Appends `event` to the spill file; `None` (and no more spilling) when that fails.
    fn append(&mut self, event: &Event) -> Option<(u64, usize)> {
        if matches!(self, Spill::NotYet) {
            *self = match unlinked_temp_file(&std::env::temp_dir()) {
                Ok(file) => Spill::Open {
                    file: Arc::new(file),
                    end: 0,
                },
                Err(e) => spill_failed(&format!("create a temporary file: {e}")),
            };
        }
        let Spill::Open { file, end } = self else {
            return None;
        };
        let json = match serde_json::to_vec(event) {
            Ok(json) => json,
            Err(e) => {
                *self = spill_failed(&format!("encode an event: {e}"));
                return None;
            }
        };
        if let Err(e) = file.write_all_at(&json, *end) {
            *self = spill_failed(&format!("write the temporary file: {e}"));
            return None;
        }
        let offset = *end;
        *end += json.len() as u64;
        Some((offset, json.len()))
    }
}

/// Roughly how many bytes `event` holds: its captured bodies (and, for gRPC, their decoded
/// forms) plus a fixed overhead.
fn footprint(event: &Event) -> usize {
    let len = |body: &Option<Vec<u8>>| body.as_ref().map_or(0, Vec::len);
    let bodies = match (&event.request, &event.grpc_call) {
        (Some(request), _) => len(&request.request_body) + len(&request.response_body),
        // Decoded JSON messages come on top of the raw bodies.
        (_, Some(call)) => 3 * (len(&call.request_body) + len(&call.response_body)),
        _ => 0,
    };
    EVENT_OVERHEAD + bodies
}

fn spill_failed(why: &str) -> Spill {
    eprintln!("rig: could not move older traffic events to disk ({why}); keeping them in memory");
    Spill::Failed
}

/// A new file in `dir`, already unlinked: it disappears with its handle.
fn unlinked_temp_file(dir: &Path) -> std::io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let name = format!(
            "rig-sdk-traffic-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let created = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path);
        match created {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig_types::{EventType, RequestInfo};

    fn request(n: usize, body_len: usize) -> Event {
        let mut event = Event::new(EventType::RequestCompleted);
        event.seq = n as u64;
        event.request = Some(Box::new(RequestInfo {
            path: format!("/r/{n}"),
            response_body: Some(vec![n as u8; body_len]),
            ..RequestInfo::default()
        }));
        event
    }

    fn on_disk(store: &TrafficStore) -> usize {
        store
            .slots
            .iter()
            .filter(|s| matches!(s, Slot::OnDisk { .. }))
            .count()
    }

    #[test]
    fn older_events_move_to_disk_and_come_back_whole() {
        let mut store = TrafficStore::new(64 * 1024);
        let events: Vec<Event> = (0..40).map(|n| request(n, 10_000)).collect();
        for event in &events {
            store.push(event.clone());
        }
        assert_eq!(store.len(), 40);
        // About six 10 kB events fit in 64 KiB; the rest went to disk.
        assert!(on_disk(&store) >= 30, "{} on disk", on_disk(&store));
        assert!(store.resident_bytes <= 64 * 1024);
        assert!(matches!(store.slots[39], Slot::InMemory(_)));
        let back: Vec<Event> = store.snapshot().iter().map(Cow::into_owned).collect();
        assert_eq!(back, events);
        let tail: Vec<u64> = store.iter_from(37).map(|e| e.seq).collect();
        assert_eq!(tail, [37, 38, 39]);
        assert_eq!(store.iter_from(40).count(), 0);
        assert_eq!(store.iter_from(41).count(), 0);
    }

    #[test]
    fn a_snapshot_keeps_what_it_saw_while_the_store_moves_on() {
        let mut store = TrafficStore::new(32 * 1024);
        for n in 0..3 {
            store.push(request(n, 10_000));
        }
        let snapshot = store.snapshot();
        // These push the snapshot's in-memory events to disk in the store.
        for n in 3..10 {
            store.push(request(n, 10_000));
        }
        let seen: Vec<u64> = snapshot.iter().map(|e| e.seq).collect();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(store.snapshot().iter().count(), 10);
    }

    #[test]
    fn the_newest_event_stays_in_memory_however_large() {
        let mut store = TrafficStore::new(1024);
        store.push(request(1, 100_000));
        assert_eq!(on_disk(&store), 0);
        store.push(request(2, 100_000));
        assert_eq!(on_disk(&store), 1);
        assert!(matches!(store.slots[1], Slot::InMemory(_)));
    }

    #[test]
    fn within_budget_nothing_touches_the_disk() {
        let mut store = TrafficStore::new(DEFAULT_TRAFFIC_MEMORY);
        for n in 0..100 {
            store.push(request(n, 1_000));
        }
        assert_eq!(on_disk(&store), 0);
        assert!(matches!(store.spill, Spill::NotYet));
    }

    #[test]
    fn without_a_spill_file_events_stay_in_memory() {
        let mut store = TrafficStore::new(1024);
        store.spill = Spill::Failed;
        for n in 0..5 {
            store.push(request(n, 10_000));
        }
        assert_eq!(on_disk(&store), 0);
        assert_eq!(store.snapshot().iter().count(), 5);
    }

    #[test]
    fn the_spill_file_leaves_no_name_behind() {
        let dir = std::env::temp_dir().join(format!("rig-sdk-spill-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = unlinked_temp_file(&dir).unwrap();
        let names = std::fs::read_dir(&dir).unwrap().count();
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(names, 0);
        file.write_all_at(b"still usable", 0).unwrap();
        let mut back = [0; 12];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"still usable");
    }
}
