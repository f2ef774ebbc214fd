//! Formatting the last lines of a service's output (used in failure messages).

use std::sync::Arc;

use rig_types::Event;

/// The prefix put before every tail line.
const LINE_PREFIX: &str = "  | ";

/// A service's output chunks gathered newest first, until they hold the lines a tail needs.
pub(crate) struct Chunks<'a> {
    service: &'a str,
    /// Only chunks with a smaller `seq` count.
    before_seq: u64,
    wanted: usize,
    lines: usize,
    newest_first: Vec<Arc<Event>>,
}

impl<'a> Chunks<'a> {
    /// Gathers `service`'s chunks for its last `wanted` lines written before the event
    /// `before_seq` (`u64::MAX`: all of them).
    pub(crate) fn new(service: &'a str, wanted: usize, before_seq: u64) -> Chunks<'a> {
        Chunks {
            service,
            before_seq,
            wanted,
            lines: 0,
            newest_first: Vec::new(),
        }
    }

    /// Takes `event`, the next older `service.log` event, if it is the service's; true once
    /// the chunks taken hold enough lines.
    pub(crate) fn add(&mut self, event: &Arc<Event>) -> bool {
        if !self.enough() && event.service == self.service && event.seq < self.before_seq {
            if let Some(log) = &event.log {
                self.lines += chunk_lines(&log.data).count();
                self.newest_first.push(Arc::clone(event));
            }
        }
        self.enough()
    }

    /// Whether the chunks taken hold enough lines.
    pub(crate) fn enough(&self) -> bool {
        self.lines >= self.wanted
    }

    /// The tail of the chunks taken, as [`service_log_tail`] formats it.
    pub(crate) fn tail(self) -> String {
        service_log_tail(self.newest_first.iter().rev(), self.service, self.wanted)
    }
}

/// The last `n` output lines of `service` among `logs` (the `service.log` store), each prefixed
/// with `"  | "` and joined with `\n`; `""` when there are none.
///
/// Each chunk has its trailing newlines trimmed and is split on `\n`, so an empty chunk counts
/// as one empty line (upstream `ServiceLogTail`). Only the chunks needed for the last `n` lines
/// are examined, newest first.
pub(crate) fn service_log_tail<'a>(
    logs: impl DoubleEndedIterator<Item = &'a Arc<Event>>,
    service: &str,
    n: usize,
) -> String {
    if n == 0 {
        return String::new();
    }
    let chunks = logs
        .rev()
        .filter(|e| e.service == service)
        .filter_map(|e| e.log.as_ref());
    let mut lines: Vec<&str> = Vec::with_capacity(n);
    'chunks: for entry in chunks {
        for line in chunk_lines(&entry.data).rev() {
            lines.push(line);
            if lines.len() == n {
                break 'chunks;
            }
        }
    }
    let mut out = String::new();
    for (i, line) in lines.iter().rev().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(LINE_PREFIX);
        out.push_str(line);
    }
    out
}

/// The lines of an output chunk: trailing newlines trimmed, split on `\n`.
fn chunk_lines(data: &str) -> impl DoubleEndedIterator<Item = &str> {
    data.trim_end_matches('\n').split('\n')
}
