//! Requests of one connection waiting for their responses.
//!
//! A broker answers the requests of a connection in the order it received them, so the
//! in-flight requests form a queue. A response is matched by correlation id, not by position:
//! entries queued before the match were never answered (the broker skipped them), and are
//! dropped rather than left to mis-match later responses. Produce requests with `acks=0` get
//! no response by protocol and are never queued. The queue is bounded, so a broker that never
//! answers cannot grow it without limit.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The most requests kept waiting per connection; the oldest is forgotten beyond this.
const MAX_IN_FLIGHT: usize = 16 * 1024;

/// A relayed request waiting for its response.
#[derive(Debug)]
pub(super) struct Request {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// When the proxy had read the whole request.
    pub read_at: Instant,
    /// 4 + the request's payload length.
    pub size: u64,
    /// The leading payload bytes kept for the observer (header, and the whole body of small
    /// requests whose topics are reported).
    pub kept: Vec<u8>,
    /// Whether `kept` holds the whole payload.
    pub complete: bool,
}

/// The in-flight requests of one connection. Shared by its two directions.
#[derive(Debug, Default)]
pub(super) struct Pending(Mutex<VecDeque<Request>>);

impl Pending {
    /// Queues a relayed request. Call before its last bytes are forwarded, so a fast
    /// response always finds it.
    pub(super) fn push(&self, request: Request) {
        let mut queue = self.0.lock();
        if queue.len() >= MAX_IN_FLIGHT {
            queue.pop_front();
        }
        queue.push_back(request);
    }

    /// Takes the request a response with `correlation_id` answers, dropping older requests
    /// that were skipped. `None` (and nothing dropped) if no queued request has that id.
    pub(super) fn take(&self, correlation_id: i32) -> Option<Request> {
        let mut queue = self.0.lock();
        let at = queue
            .iter()
            .position(|request| request.correlation_id == correlation_id)?;
        queue.drain(..at);
        queue.pop_front()
    }

    /// Takes every request still waiting, oldest first: the connection ended before their
    /// responses came.
    pub(super) fn drain(&self) -> Vec<Request> {
        self.0.lock().drain(..).collect()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(correlation_id: i32) -> Request {
        Request {
            api_key: 3,
            api_version: 12,
            correlation_id,
            read_at: Instant::now(),
            size: 10,
            kept: Vec::new(),
            complete: true,
        }
    }

    #[test]
    fn responses_match_by_id_and_skipped_requests_do_not_linger() {
        let pending = Pending::default();
        for id in 1..=4 {
            pending.push(request(id));
        }
        assert_eq!(pending.take(1).unwrap().correlation_id, 1);
        // 2 was never answered: answering 3 drops it.
        assert_eq!(pending.take(3).unwrap().correlation_id, 3);
        assert!(pending.take(2).is_none());
        // An unknown id takes nothing and drops nothing.
        assert!(pending.take(99).is_none());
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.take(4).unwrap().correlation_id, 4);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn the_queue_is_bounded() {
        let pending = Pending::default();
        for id in 0..(MAX_IN_FLIGHT as i32 + 5) {
            pending.push(request(id));
        }
        assert_eq!(pending.len(), MAX_IN_FLIGHT);
        assert!(pending.take(0).is_none());
        assert!(pending.take(5).is_some());
    }
}
