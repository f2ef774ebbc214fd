//! Read buffers recycled per worker thread.
//!
//! A raw-path connection holds no buffer while it waits for the next request, so idle
//! connections cost no buffer memory. Allocating a fresh buffer for every request instead
//! costs more than the malloc call: a 64 KiB buffer comes from the top of glibc's heap, which
//! glibc trims again when it is freed (`madvise`, then page faults on the next use), and the
//! memory it hands out is cold in the CPU caches. Like haproxy's buffer pools, a connection going
//! idle hands its buffer to a small free list of its worker thread, and the next request on
//! that thread takes it back, still warm.
//!
//! A buffer only goes back when nothing else shares it (the path copies what it records out
//! of its buffers, so that is the usual case) and when it is at least as large as the size
//! class it goes into. Each thread keeps at most [`KEEP`] buffers per class.

use std::cell::RefCell;

use bytes::BytesMut;

use super::{BODY_READ, HEAD_READ};

/// Buffers kept per size class and worker thread: 8 × (8 + 72) KiB = 640 KiB per thread at
/// most, whatever the number of connections.
const KEEP: usize = 8;

/// The size classes, smallest first: what the connection reserves.
const CLASSES: [usize; 2] = [HEAD_READ, BODY_READ];

thread_local! {
    static FREE: RefCell<[Vec<BytesMut>; CLASSES.len()]> = const {
        RefCell::new([Vec::new(), Vec::new()])
    };
}

/// Gives `buf` room for at least `size` more bytes: from this thread's free list when `buf`
/// has no memory yet and `size` is a class size, else by growing it.
pub(super) fn reserve(buf: &mut BytesMut, size: usize) {
    if buf.capacity() == 0 {
        if let Some(class) = CLASSES.iter().position(|&c| c == size) {
            let pooled = FREE.with(|free| free.borrow_mut()[class].pop());
            if let Some(pooled) = pooled {
                *buf = pooled;
                return;
            }
        }
    }
    buf.reserve(size);
}

/// Takes `buf`'s memory away (it must be empty), keeping it on this thread's free list when
/// nothing else shares it and the list has room.
pub(super) fn release(buf: &mut BytesMut) {
    debug_assert!(buf.is_empty());
    if buf.capacity() == 0 {
        return;
    }
    let mut buf = std::mem::take(buf);
    // The largest class the buffer can serve whole; `try_reclaim` succeeds only when nothing
    // else refers to the memory, and rewinds the buffer to its start.
    let Some(class) = CLASSES.iter().rposition(|&c| buf.try_reclaim(c)) else {
        return;
    };
    FREE.with(|free| {
        let list = &mut free.borrow_mut()[class];
        if list.len() < KEEP {
            list.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_buffer_serves_the_next_request_on_the_thread() {
        let mut buf = BytesMut::new();
        reserve(&mut buf, BODY_READ);
        buf.extend_from_slice(b"response");
        let address = buf.as_ptr();
        let head = buf.split_to(4).freeze();
        drop(head);
        buf.clear();
        release(&mut buf);
        assert_eq!(
            buf.capacity(),
            0,
            "the connection keeps no memory while idle"
        );

        let mut next = BytesMut::new();
        reserve(&mut next, BODY_READ);
        assert_eq!(next.as_ptr(), address, "the pooled buffer was not reused");
        assert!(next.capacity() >= BODY_READ);
    }

    #[test]
    fn a_buffer_still_shared_is_not_pooled() {
        let mut buf = BytesMut::new();
        reserve(&mut buf, HEAD_READ);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let kept = buf.split().freeze();
        let address = kept.as_ptr();
        release(&mut buf);

        let mut next = BytesMut::new();
        reserve(&mut next, HEAD_READ);
        assert_ne!(
            next.as_ptr(),
            address,
            "memory an event still holds was handed out"
        );
        next.extend_from_slice(&[0; 64]);
        assert_eq!(&kept[..], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn each_thread_keeps_a_bounded_number() {
        let bufs: Vec<BytesMut> = (0..KEEP + 4)
            .map(|_| {
                let mut buf = BytesMut::new();
                reserve(&mut buf, HEAD_READ);
                buf
            })
            .collect();
        for mut buf in bufs {
            release(&mut buf);
        }
        let kept = FREE.with(|free| free.borrow()[0].len());
        assert_eq!(kept, KEEP);
    }
}
