//! Telling rigd's own TCP readiness probes from application connections.
//!
//! HTTP and gRPC probes carry a header; a raw TCP probe carries nothing, it only connects and
//! closes. rigd runs its probes and its proxies in one process, so a probe announces its
//! connection here ([`mark`]) before connecting, by the socket's two addresses, and the proxy
//! looks the accepted connection up ([`is_probe`]) to mark its `connection.opened` and
//! `connection.closed` events `"probe": true`.
//!
//! A mark outlives the probe's socket: the proxy may accept the connection after the probe
//! has already closed it. Marks expire after [`MARK_LIFETIME`], which is safe because the
//! probe closes first, so its side of the connection stays in `TIME_WAIT` (60 s on Linux)
//! and no other connection can have the same address pair meanwhile. When no probe is
//! marked, the lookup is one atomic load.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a mark is kept.
pub const MARK_LIFETIME: Duration = Duration::from_secs(30);

/// `(probe's local address, probe's remote address, when marked)`.
type Mark = (SocketAddr, SocketAddr, Instant);

static MARKS: Mutex<Vec<Mark>> = Mutex::new(Vec::new());
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Records that the connection from `local` to `remote` is a readiness probe. Call it after
/// binding the probe's socket and before connecting it.
pub fn mark(local: SocketAddr, remote: SocketAddr) {
    let now = Instant::now();
    let mut marks = MARKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    marks.retain(|&(_, _, at)| now.duration_since(at) < MARK_LIFETIME);
    marks.push((local, remote, now));
    LIVE.store(marks.len(), Ordering::Release);
}

/// Whether the connection accepted from `peer` on `local` was marked as a probe.
pub fn is_probe(peer: SocketAddr, local: SocketAddr) -> bool {
    if LIVE.load(Ordering::Acquire) == 0 {
        return false;
    }
    let marks = MARKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    marks
        .iter()
        .any(|&(probe_local, probe_remote, _)| probe_local == peer && probe_remote == local)
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
        assert!(is_probe(a, b));
        assert!(!is_probe(c, b), "another client of the same proxy");
        assert!(!is_probe(b, a), "the reverse direction");
    }
}
