//! Telling rigd's own TCP readiness probes from application connections.
//!
//! HTTP and gRPC probes carry a header; a raw TCP probe carries nothing, it only connects and
//! closes. rigd runs its probes and its proxies in one process, so a probe announces its
//! connection here ([`mark`]) before connecting, by the socket's two addresses, and the proxy
//! looks the accepted connection up ([`is_probe`]) to mark its `connection.opened` and
//! `connection.closed` events `"probe": true`. A mark matches one connection: the lookup
//! that finds it removes it.
//!
//! A mark outlives the probe's socket: the proxy may accept the connection after the probe
//! has already closed it. Marks expire after [`MARK_LIFETIME`] (a lookup does not match an
//! older one, whether or not probing goes on), which is safe because the probe closes
//! first, so its side of the connection stays in `TIME_WAIT` (60 s on Linux) and no other
//! connection can have the same address pair meanwhile; after that, a later connection
//! reusing the port is not taken for a probe. When no probe is marked, the lookup is one
//! atomic load.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a mark is kept.
pub const MARK_LIFETIME: Duration = Duration::from_secs(30);

/// `(probe's local address, probe's remote address)`.
type Pair = (SocketAddr, SocketAddr);

/// The live marks. Every readiness probe of every environment marks one pair, so there can be
/// tens of thousands within [`MARK_LIFETIME`] on a busy rigd: marking and looking up must not
/// walk them all.
struct Marks {
    /// Pair → when it was last marked.
    by_pair: HashMap<Pair, Instant>,
    /// Every mark in the order it was made (so by time: it is made under the lock), for
    /// expiring the oldest first.
    by_age: VecDeque<(Pair, Instant)>,
}

impl Marks {
    /// Marks `pair` at `now`.
    fn put(&mut self, pair: Pair, now: Instant) {
        self.expire(now);
        self.by_pair.insert(pair, now);
        self.by_age.push_back((pair, now));
    }

    /// Whether `pair` has a mark younger than [`MARK_LIFETIME`] at `now`; a mark that matches
    /// is removed (each probe connection is accepted once).
    fn take(&mut self, pair: Pair, now: Instant) -> bool {
        self.expire(now);
        // Left in `by_age`, whose entry `expire` drops in time.
        self.by_pair.remove(&pair).is_some()
    }

    /// Drops the marks older than [`MARK_LIFETIME`] at `now`: only the expired ones are
    /// visited.
    fn expire(&mut self, now: Instant) {
        while let Some(&(pair, at)) = self.by_age.front() {
            if now.saturating_duration_since(at) < MARK_LIFETIME {
                break;
            }
            self.by_age.pop_front();
            // A pair marked again later keeps its newer mark.
            if self.by_pair.get(&pair) == Some(&at) {
                self.by_pair.remove(&pair);
            }
        }
    }
}

static MARKS: Mutex<Option<Marks>> = Mutex::new(None);
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Records that the connection from `local` to `remote` is a readiness probe. Call it after
/// binding the probe's socket and before connecting it.
pub fn mark(local: SocketAddr, remote: SocketAddr) {
    let now = Instant::now();
    let mut guard = MARKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let marks = guard.get_or_insert_with(|| Marks {
        by_pair: HashMap::new(),
        by_age: VecDeque::new(),
    });
    marks.put((local, remote), now);
    LIVE.store(marks.by_pair.len(), Ordering::Release);
}

/// Whether the connection accepted from `peer` on `local` was marked as a probe within the
/// last [`MARK_LIFETIME`]; the mark is used up.
pub fn is_probe(peer: SocketAddr, local: SocketAddr) -> bool {
    if LIVE.load(Ordering::Acquire) == 0 {
        return false;
    }
    let now = Instant::now();
    let mut guard = MARKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(marks) = guard.as_mut() else {
        return false;
    };
    let found = marks.take((peer, local), now);
    LIVE.store(marks.by_pair.len(), Ordering::Release);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_address_pairs_are_probes() {
        let (a, b, c): (SocketAddr, SocketAddr, SocketAddr) = (
            "127.0.0.1:40001".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:40002".parse().unwrap(),
        );
        assert!(!is_probe(a, b));
        mark(a, b);
        assert!(!is_probe(c, b), "another client of the same proxy");
        assert!(!is_probe(b, a), "the reverse direction");
        assert!(is_probe(a, b));
        assert!(!is_probe(a, b), "a mark matches one connection");
    }

    #[test]
    fn a_mark_stops_matching_once_expired_without_another_mark() {
        let pair: Pair = (
            SocketAddr::from(([127, 0, 0, 1], 40003)),
            SocketAddr::from(([127, 0, 0, 1], 6000)),
        );
        let start = Instant::now();
        let mut marks = Marks {
            by_pair: HashMap::new(),
            by_age: VecDeque::new(),
        };
        marks.put(pair, start);
        // Probing stopped: no further mark, only a later connection from the same port.
        assert!(!marks.take(pair, start + MARK_LIFETIME));
        assert!(marks.by_pair.is_empty() && marks.by_age.is_empty());

        marks.put(pair, start);
        assert!(marks.take(pair, start + MARK_LIFETIME - Duration::from_millis(1)));
        assert!(
            !marks.take(pair, start + Duration::from_secs(1)),
            "a matched mark is used up"
        );
    }

    #[test]
    fn marks_expire_oldest_first_and_a_renewed_mark_survives_its_old_one() {
        let pair = |port: u16| -> Pair {
            (
                SocketAddr::from(([127, 0, 0, 1], port)),
                SocketAddr::from(([127, 0, 0, 1], 6000)),
            )
        };
        let start = Instant::now();
        let mut marks = Marks {
            by_pair: HashMap::new(),
            by_age: VecDeque::new(),
        };
        marks.put(pair(1), start);
        marks.put(pair(2), start + Duration::from_secs(10));
        marks.put(pair(1), start + Duration::from_secs(20));

        marks.expire(start + MARK_LIFETIME);
        // The first mark of pair 1 expired, but pair 1 was marked again since.
        assert_eq!(marks.by_age.len(), 2);
        assert!(marks.by_pair.contains_key(&pair(1)));
        assert!(marks.by_pair.contains_key(&pair(2)));

        marks.expire(start + Duration::from_secs(10) + MARK_LIFETIME);
        assert!(!marks.by_pair.contains_key(&pair(2)));
        assert!(marks.by_pair.contains_key(&pair(1)));

        marks.expire(start + Duration::from_secs(20) + MARK_LIFETIME);
        assert!(marks.by_pair.is_empty() && marks.by_age.is_empty());
    }
}
