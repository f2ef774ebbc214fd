//! Read buffers recycled per worker thread, and across threads.
//!
//! A raw-path connection holds no buffer while it waits for the next request, so idle
//! connections cost no buffer memory. Allocating a fresh buffer for every request instead
//! costs more than the malloc call: a 72 KiB buffer comes from the top of glibc's heap, which
//! glibc trims again when it is freed (`madvise`, then page faults on the next use), and the
//! memory it hands out is cold in the CPU caches. Like haproxy's buffer pools, a connection going
//! idle hands its buffer to a small free list of its worker thread, and the next request on
//! that thread takes it back, still warm. Tasks move between worker threads, and responses
//! and requests come in bursts, so one thread can be giving buffers back while another needs
//! them: a thread's full list overflows into a list shared by all threads, which a thread
//! whose own list is empty takes from.
//!
//! A buffer only goes back when nothing else shares it (the path copies what it records out
//! of its buffers, so that is the usual case) and when it is at least as large as the size
//! class it goes into. Each thread keeps at most [`KEEP`] buffers per class, the shared list
//! [`SHARED_KEEP`].

use std::cell::RefCell;

use bytes::BytesMut;
use parking_lot::Mutex;

use super::{BODY_READ, HEAD_READ};

/// Buffers kept per size class and worker thread: 8 × (8 + 72) KiB = 640 KiB per thread at
/// most, whatever the number of connections.
const KEEP: usize = 8;

/// Buffers kept per size class in the shared list: 64 × (8 + 72) KiB = 5 MiB at most.
const SHARED_KEEP: usize = 64;

/// The size classes, smallest first: what the connection reserves.
const CLASSES: [usize; 2] = [HEAD_READ, BODY_READ];

thread_local! {
    static FREE: RefCell<[Vec<BytesMut>; CLASSES.len()]> = const {
        RefCell::new([Vec::new(), Vec::new()])
    };
}

/// Free buffers by size class.
type Lists = [Vec<BytesMut>; CLASSES.len()];

static SHARED: Mutex<Lists> = Mutex::new([Vec::new(), Vec::new()]);

/// Gives `buf` room for at least `size` more bytes: from this thread's free list or the
/// shared one when `buf` has no memory yet and `size` is a class size, else by growing it.
pub(super) fn reserve(buf: &mut BytesMut, size: usize) {
    reserve_from(&SHARED, buf, size);
}

fn reserve_from(shared: &Mutex<Lists>, buf: &mut BytesMut, size: usize) {
    if buf.capacity() == 0 {
        if let Some(class) = CLASSES.iter().position(|&c| c == size) {
            let pooled = FREE
                .with(|free| free.borrow_mut()[class].pop())
                .or_else(|| shared.lock()[class].pop());
            if let Some(pooled) = pooled {
                *buf = pooled;
                return;
            }
        }
    }
    buf.reserve(size);
}

/// Takes `buf`'s memory away (it must be empty), keeping it on this thread's free list, or
/// else the shared one, when nothing else shares it and a list has room.
pub(super) fn release(buf: &mut BytesMut) {
    release_to(&SHARED, buf);
}

fn release_to(shared: &Mutex<Lists>, buf: &mut BytesMut) {
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
    let overflow = FREE.with(|free| {
        let list = &mut free.borrow_mut()[class];
        if list.len() < KEEP {
            list.push(buf);
            None
        } else {
            Some(buf)
        }
    });
    if let Some(buf) = overflow {
        let mut shared = shared.lock();
        if shared[class].len() < SHARED_KEEP {
            shared[class].push(buf);
        }
    }
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
    fn a_full_thread_list_overflows_to_threads_that_need_buffers() {
        static SHARED: Mutex<Lists> = Mutex::new([Vec::new(), Vec::new()]);
        let released = std::thread::spawn(|| {
            let bufs: Vec<BytesMut> = (0..KEEP + SHARED_KEEP + 4)
                .map(|_| {
                    let mut buf = BytesMut::new();
                    reserve_from(&SHARED, &mut buf, HEAD_READ);
                    buf
                })
                .collect();
            let addresses: Vec<usize> = bufs.iter().map(|b| b.as_ptr() as usize).collect();
            for mut buf in bufs {
                release_to(&SHARED, &mut buf);
            }
            assert_eq!(FREE.with(|free| free.borrow()[0].len()), KEEP);
            addresses
        })
        .join()
        .unwrap();
        assert_eq!(
            SHARED.lock()[0].len(),
            SHARED_KEEP,
            "the shared list is bounded"
        );

        // Another thread, with nothing of its own, gets the overflow.
        let taken = std::thread::spawn(|| {
            let mut buf = BytesMut::new();
            reserve_from(&SHARED, &mut buf, HEAD_READ);
            buf.as_ptr() as usize
        })
        .join()
        .unwrap();
        assert!(
            released[KEEP..].contains(&taken),
            "the buffer was allocated, not taken from the shared list"
        );
    }
}
