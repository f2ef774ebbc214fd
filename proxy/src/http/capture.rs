//! The capped body capture: keeps clones of the forwarded `Bytes` frames (reference counts,
//! not copies) up to a limit, and counts every byte that passes.

use bytes::Bytes;

/// The captured start of one direction's body plus its exact size.
///
/// Truncation follows upstream exactly: a body of `limit` bytes is complete, one of
/// `limit + 1` bytes is truncated with `limit` bytes kept.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    chunks: Vec<Bytes>,
    kept: usize,
    total: u64,
    truncated: bool,
    limit: usize,
}

impl Capture {
    /// An empty capture keeping at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Capture {
        Capture {
            limit,
            ..Capture::default()
        }
    }

    /// Notes one data frame on its way through: counts it and keeps a slice of it while there
    /// is room. Never copies the payload.
    pub(crate) fn push(&mut self, data: &Bytes) {
        let len = data.len();
        self.total += len as u64;
        let room = self.limit - self.kept;
        if len > room {
            self.truncated = true;
        }
        let take = len.min(room);
        if take > 0 {
            self.chunks.push(data.slice(..take));
            self.kept += take;
        }
    }

    /// Counts `len` bytes that passed without keeping any of them (the capture is full).
    pub(crate) fn count(&mut self, len: usize) {
        self.total += len as u64;
        if len > self.limit - self.kept {
            self.truncated = true;
        }
    }

    /// Whether more bytes would be kept.
    pub(crate) fn has_room(&self) -> bool {
        self.kept < self.limit
    }

    /// Every byte seen, kept or not.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Whether bytes were seen beyond the limit.
    pub(crate) fn truncated(&self) -> bool {
        self.truncated
    }

    /// The kept frames (slices of the forwarded ones), in order.
    pub(crate) fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The first `limit` kept bytes as one buffer, `None` when nothing was kept. Runs on the
    /// observer task.
    pub(crate) fn prefix(&self, limit: usize) -> Option<Vec<u8>> {
        let len = self.kept.min(limit);
        if len == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        for chunk in &self.chunks {
            let room = len - out.len();
            if room == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Some(out)
    }

    /// The kept bytes as one buffer, `None` when nothing was kept. Runs on the observer task.
    pub(crate) fn into_vec(self) -> Option<Vec<u8>> {
        if self.kept == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(self.kept);
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(limit: usize, frames: &[usize]) -> Capture {
        let mut capture = Capture::new(limit);
        let mut next = 0u8;
        for &len in frames {
            let frame: Vec<u8> = (0..len)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            capture.push(&Bytes::from(frame));
        }
        capture
    }

    #[test]
    fn exactly_the_limit_is_not_truncated() {
        let c = feed(8, &[3, 5]);
        assert_eq!(c.total(), 8);
        assert!(!c.truncated());
        assert_eq!(c.into_vec().unwrap(), (1..=8).collect::<Vec<u8>>());
    }

    #[test]
    fn one_byte_over_is_truncated_and_keeps_the_limit() {
        let c = feed(8, &[3, 6]);
        assert_eq!(c.total(), 9);
        assert!(c.truncated());
        assert_eq!(c.into_vec().unwrap(), (1..=8).collect::<Vec<u8>>());
    }

    #[test]
    fn frames_after_the_cap_are_only_counted() {
        let c = feed(4, &[4, 10, 10]);
        assert_eq!(c.total(), 24);
        assert!(c.truncated());
        assert_eq!(c.into_vec().unwrap(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn empty_and_zero_limit_keep_nothing() {
        assert_eq!(feed(8, &[]).into_vec(), None);
        assert_eq!(feed(8, &[0, 0]).into_vec(), None);
        let c = feed(0, &[5]);
        assert_eq!(c.total(), 5);
        assert!(c.truncated());
        assert_eq!(c.into_vec(), None);
    }

    #[test]
    fn prefixes_cut_across_chunks() {
        let c = feed(16, &[3, 5, 4]);
        assert_eq!(c.prefix(6).unwrap(), (1..=6).collect::<Vec<u8>>());
        assert_eq!(c.prefix(100).unwrap(), (1..=12).collect::<Vec<u8>>());
        assert_eq!(c.prefix(0), None);
        assert_eq!(c.chunks().len(), 3);
    }

    #[test]
    fn counted_bytes_are_not_kept() {
        let mut c = feed(4, &[4]);
        c.count(0);
        assert!(!c.truncated());
        c.count(3);
        assert_eq!((c.total(), c.truncated()), (7, true));
        assert_eq!(c.into_vec().unwrap(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn kept_bytes_share_the_forwarded_buffer() {
        let frame = Bytes::from(vec![7u8; 16]);
        let mut c = Capture::new(8);
        c.push(&frame);
        assert_eq!(c.chunks[0].as_ptr(), frame.as_ptr(), "a slice, not a copy");
    }
}
