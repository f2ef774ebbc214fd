//! The capped body capture: keeps the start of a body up to a limit and counts every byte that
//! passes. Paths whose frames are `Bytes` they hand on (hyper, the h2c relay) keep clones of
//! them (reference counts, not copies); the raw HTTP/1.1 path, which reuses its read buffers,
//! copies the bytes out once, into the buffer the event then takes as it is.

use bytes::Bytes;

/// The captured start of one direction's body plus its exact size.
///
/// Truncation follows upstream exactly: a body of `limit` bytes is complete, one of
/// `limit + 1` bytes is truncated with `limit` bytes kept. Every byte seen is kept while there
/// is room, so the capture keeps `min(total, limit)` bytes and is truncated when
/// `total > limit`.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    kept: Kept,
    total: u64,
    limit: usize,
}

/// The kept bytes. A capture is fed one way: with [`Capture::push`] (slices) or with
/// [`Capture::copy`] (copies).
#[derive(Debug)]
enum Kept {
    /// Slices of the forwarded frames, in order.
    Slices(Vec<Bytes>),
    /// A copy of the forwarded bytes.
    Copy(Vec<u8>),
}

impl Default for Kept {
    fn default() -> Kept {
        Kept::Slices(Vec::new())
    }
}

impl Capture {
    /// An empty capture keeping at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Capture {
        Capture {
            limit,
            ..Capture::default()
        }
    }

    /// How many bytes are kept.
    fn kept(&self) -> usize {
        usize::try_from(self.total).map_or(self.limit, |total| total.min(self.limit))
    }

    /// Counts `len` more bytes and says how many of them there is room to keep.
    fn note(&mut self, len: usize) -> usize {
        let room = self.limit - self.kept();
        self.total += len as u64;
        len.min(room)
    }

    /// Notes one data frame on its way through: counts it and keeps a slice of it while there
    /// is room. Never copies the payload.
    pub(crate) fn push(&mut self, data: &Bytes) {
        let take = self.note(data.len());
        if take > 0 {
            match &mut self.kept {
                Kept::Slices(chunks) => chunks.push(data.slice(..take)),
                Kept::Copy(_) => debug_assert!(false, "a capture is fed one way"),
            }
        }
    }

    /// Notes bytes on their way through out of a buffer that will be reused: counts them and
    /// copies what there is room for.
    pub(crate) fn copy(&mut self, data: &[u8]) {
        let take = self.note(data.len());
        if take > 0 {
            self.copies().extend_from_slice(&data[..take]);
        }
    }

    /// Makes room for copying a body of `len` bytes at once (as much of it as will be kept),
    /// so a body read in several pieces is not copied again as the buffer grows.
    pub(crate) fn expect(&mut self, len: u64) {
        let room = self.limit - self.kept();
        let keep = usize::try_from(len).map_or(room, |len| len.min(room));
        self.copies().reserve_exact(keep);
    }

    /// The buffer copies go to (the capture turns into a copying one if nothing was kept yet).
    fn copies(&mut self) -> &mut Vec<u8> {
        if let Kept::Slices(chunks) = &self.kept {
            debug_assert!(chunks.is_empty(), "a capture is fed one way");
            self.kept = Kept::Copy(Vec::new());
        }
        match &mut self.kept {
            Kept::Copy(copy) => copy,
            Kept::Slices(_) => unreachable!("just replaced"),
        }
    }

    /// Counts `len` bytes that passed without keeping any of them (the capture is full).
    pub(crate) fn count(&mut self, len: usize) {
        debug_assert!(
            len == 0 || !self.has_room(),
            "bytes skipped while there was room"
        );
        self.total += len as u64;
    }

    /// Whether more bytes would be kept.
    pub(crate) fn has_room(&self) -> bool {
        self.kept() < self.limit
    }

    /// Every byte seen, kept or not.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Whether bytes were seen beyond the limit.
    pub(crate) fn truncated(&self) -> bool {
        self.total > self.limit as u64
    }

    /// The kept frames (slices of the forwarded ones), in order; empty for a copying capture.
    pub(crate) fn chunks(&self) -> &[Bytes] {
        match &self.kept {
            Kept::Slices(chunks) => chunks,
            Kept::Copy(_) => {
                debug_assert!(false, "only pushed frames are chunks");
                &[]
            }
        }
    }

    /// The first `limit` kept bytes as one buffer, `None` when nothing was kept. Runs on the
    /// observer task.
    pub(crate) fn prefix(&self, limit: usize) -> Option<Vec<u8>> {
        let len = self.kept().min(limit);
        if len == 0 {
            return None;
        }
        match &self.kept {
            Kept::Copy(copy) => Some(copy[..len].to_vec()),
            Kept::Slices(chunks) => Some(concat(chunks, len)),
        }
    }

    /// The kept bytes as one buffer, `None` when nothing was kept. Runs on the observer task.
    pub(crate) fn into_vec(self) -> Option<Vec<u8>> {
        let len = self.kept();
        if len == 0 {
            return None;
        }
        match self.kept {
            Kept::Copy(copy) => Some(copy),
            Kept::Slices(chunks) => Some(concat(&chunks, len)),
        }
    }
}

/// The first `len` bytes of `chunks`, as one buffer.
fn concat(chunks: &[Bytes], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for chunk in chunks {
        let room = len - out.len();
        if room == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds numbered frames of the given lengths, as slices.
    fn feed(limit: usize, frames: &[usize]) -> Capture {
        feed_as(false, limit, frames)
    }

    /// Feeds numbered frames of the given lengths, as slices or as copies.
    fn feed_as(copy: bool, limit: usize, frames: &[usize]) -> Capture {
        let mut capture = Capture::new(limit);
        let mut next = 0u8;
        for &len in frames {
            let frame: Vec<u8> = (0..len)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            if copy {
                capture.copy(&frame);
            } else {
                capture.push(&Bytes::from(frame));
            }
        }
        capture
    }

    #[test]
    fn exactly_the_limit_is_not_truncated() {
        for copy in [false, true] {
            let c = feed_as(copy, 8, &[3, 5]);
            assert_eq!(c.total(), 8);
            assert!(!c.truncated());
            assert_eq!(c.into_vec().unwrap(), (1..=8).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn one_byte_over_is_truncated_and_keeps_the_limit() {
        for copy in [false, true] {
            let c = feed_as(copy, 8, &[3, 6]);
            assert_eq!(c.total(), 9);
            assert!(c.truncated());
            assert_eq!(c.into_vec().unwrap(), (1..=8).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn frames_after_the_cap_are_only_counted() {
        for copy in [false, true] {
            let c = feed_as(copy, 4, &[4, 10, 10]);
            assert_eq!(c.total(), 24);
            assert!(c.truncated());
            assert_eq!(c.into_vec().unwrap(), vec![1, 2, 3, 4]);
        }
    }

    #[test]
    fn empty_and_zero_limit_keep_nothing() {
        for copy in [false, true] {
            assert_eq!(feed_as(copy, 8, &[]).into_vec(), None);
            assert_eq!(feed_as(copy, 8, &[0, 0]).into_vec(), None);
            let c = feed_as(copy, 0, &[5]);
            assert_eq!(c.total(), 5);
            assert!(c.truncated());
            assert_eq!(c.into_vec(), None);
        }
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
    fn copies_become_the_event_buffer_as_they_are() {
        let c = feed_as(true, 16, &[3, 5, 4]);
        assert_eq!(c.prefix(6).unwrap(), (1..=6).collect::<Vec<u8>>());
        let Kept::Copy(copy) = &c.kept else {
            panic!("copies were not kept as a copy")
        };
        let kept = copy.as_ptr();
        let body = c.into_vec().unwrap();
        assert_eq!(body, (1..=12).collect::<Vec<u8>>());
        assert_eq!(body.as_ptr(), kept, "moved, not copied again");
    }

    #[test]
    fn kept_bytes_share_the_forwarded_buffer() {
        let frame = Bytes::from(vec![7u8; 16]);
        let mut c = Capture::new(8);
        c.push(&frame);
        assert_eq!(
            c.chunks()[0].as_ptr(),
            frame.as_ptr(),
            "a slice, not a copy"
        );
    }
}
