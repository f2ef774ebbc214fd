//! The spill file: service output and traffic events moved out of memory, one JSON line
//! each, read back by position.
//!
//! The file lives in the environment directory (`events.spill.jsonl`, mode 0600) and goes
//! with it. It is only ever appended to, by one spill at a time; reads are positioned
//! (`pread`), so they need no lock and may run while a spill appends.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rig_types::Event;

/// The spill file's name in the environment directory.
pub const SPILL_FILE: &str = "events.spill.jsonl";

/// Where one spilled event is: its `seq` and its line in the spill file; or, for an event
/// dropped because the spill file could not be written, only its `seq` (see
/// [`Spilled::dropped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spilled {
    pub(crate) seq: u64,
    offset: u64,
    len: u32,
}

impl Spilled {
    /// The place of event `seq`, dropped from memory without being written anywhere: it
    /// keeps its position in its store, and reads skip it.
    pub(crate) fn dropped(seq: u64) -> Spilled {
        Spilled {
            seq,
            offset: 0,
            len: 0,
        }
    }

    /// Whether the event was dropped rather than written (every line written holds at least
    /// its newline).
    pub(crate) fn is_dropped(&self) -> bool {
        self.len == 0
    }
}

/// An open spill file.
#[derive(Debug)]
pub(crate) struct SpillFile {
    path: PathBuf,
    file: File,
    /// The end of what was written; held while appending, so appends never overlap.
    end: Mutex<u64>,
    /// How many events were read back, for tests of what reads cost.
    #[cfg(test)]
    pub(crate) reads: std::sync::atomic::AtomicUsize,
}

impl SpillFile {
    /// Creates (or empties) the spill file in `dir`.
    pub(crate) fn create(dir: &Path) -> io::Result<SpillFile> {
        let path = dir.join(SPILL_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        Ok(SpillFile {
            path,
            file,
            end: Mutex::new(0),
            #[cfg(test)]
            reads: Default::default(),
        })
    }

    /// Appends `events` as JSON lines and returns where each went, in the same order.
    pub(crate) fn append(&self, events: &[Arc<Event>]) -> io::Result<Vec<Spilled>> {
        let mut lines = Vec::new();
        let mut spans = Vec::with_capacity(events.len());
        for event in events {
            let start = lines.len();
            serde_json::to_writer(&mut lines, &**event)?;
            lines.push(b'\n');
            let len = u32::try_from(lines.len() - start).map_err(|_| {
                io::Error::other(format!("event {} is over 4 GiB as JSON", event.seq))
            })?;
            spans.push((event.seq, start as u64, len));
        }
        let mut end = self.end.lock();
        self.file.write_all_at(&lines, *end)?;
        let base = *end;
        *end += lines.len() as u64;
        Ok(spans
            .into_iter()
            .map(|(seq, start, len)| Spilled {
                seq,
                offset: base + start,
                len,
            })
            .collect())
    }

    /// Reads back the event spilled at `at`; `None`, reported on stderr, if it cannot be
    /// read (the file was removed or damaged behind rigd's back).
    pub(crate) fn read(&self, at: Spilled) -> Option<Arc<Event>> {
        #[cfg(test)]
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut line = vec![0; at.len as usize];
        let event = self
            .file
            .read_exact_at(&mut line, at.offset)
            .map_err(|e| e.to_string())
            .and_then(|()| serde_json::from_slice::<Event>(&line).map_err(|e| e.to_string()));
        match event {
            Ok(event) => Some(Arc::new(event)),
            Err(error) => {
                eprintln!(
                    "rigd: event {} could not be read back from {}: {error}",
                    at.seq,
                    self.path.display()
                );
                None
            }
        }
    }
}
