//! Noticing the moment a port starts listening, without connecting to it.
//!
//! Readiness probes follow upstream's schedule (first probe at once, then 10 ms, 20 ms, ...),
//! so a service that binds its port 1 ms after starting is found ready only at the 10 ms
//! probe, while the probe at once is bound to fail. [`listening`] closes that gap: it
//! resolves as soon as some socket on this machine listens on the port, and
//! [`poll_hinted`](super::poll::poll_hinted) holds the first probe until then (one interval
//! at most) and probes at once instead of sleeping out a later interval. The probe still
//! decides readiness; the hint only moves it, and it produces no connection the service (or
//! an observing proxy) could see.
//!
//! One watcher thread serves every waiter (a thread, not a task, so it belongs to no Tokio
//! runtime and outlives none): while any port is watched, it asks the kernel for
//! the machine's listening TCP sockets (a `NETLINK_SOCK_DIAG` dump filtered to the LISTEN
//! state, so its cost follows the number of listening sockets, not of connections) once per
//! [`TICK`], wakes the waiters whose port is among them, and stops when nobody waits. Where
//! the dump is unavailable (not Linux, or refused) the hint resolves to `false` and readiness
//! falls back to the plain schedule. For [`FAST_WINDOW`] after anyone starts waiting it looks every
//! [`FAST_TICK`] instead, since that is when services usually start listening.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How often the watcher looks at the listening sockets, once nobody has started waiting
/// for [`FAST_WINDOW`].
pub const TICK: Duration = Duration::from_millis(1);
/// How often it looks right after someone starts waiting: most services start listening
/// within a few milliseconds of being spawned, so that is when a short tick pays.
pub const FAST_TICK: Duration = Duration::from_micros(200);
/// How long after the latest new waiter the watcher keeps to [`FAST_TICK`].
pub const FAST_WINDOW: Duration = Duration::from_millis(20);

/// Ports being waited for, each with its waiters.
static WAITERS: Mutex<Option<HashMap<u16, Vec<oneshot::Sender<()>>>>> = Mutex::new(None);
/// Bumped by every new waiter, so the watcher knows to look often again.
static NEW_WAITERS: AtomicU64 = AtomicU64::new(0);

/// Resolves to `true` once a TCP socket listens on `port` (on any address), or to `false` as
/// soon as that cannot be observed here. Cancel it by dropping it.
pub async fn listening(port: u16) -> bool {
    let (tx, rx) = oneshot::channel();
    let start = {
        let mut waiters = WAITERS.lock().unwrap_or_else(|p| p.into_inner());
        let start = waiters.is_none();
        waiters
            .get_or_insert_with(HashMap::new)
            .entry(port)
            .or_default()
            .push(tx);
        NEW_WAITERS.fetch_add(1, Ordering::Relaxed);
        start
    };
    if start {
        let spawned = std::thread::Builder::new()
            .name("rigd-listen-watch".into())
            .spawn(watch);
        if spawned.is_err() {
            // No thread, no hint: the plain schedule applies.
            *WAITERS.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
    // An error: the watcher gave up (no socket diagnostics here) or never started.
    rx.await.is_ok()
}

/// The watcher thread: runs while anyone waits.
fn watch() {
    let mut seen = NEW_WAITERS.load(Ordering::Relaxed);
    let mut fast_until = Instant::now() + FAST_WINDOW;
    loop {
        let now = Instant::now();
        let latest = NEW_WAITERS.load(Ordering::Relaxed);
        if latest != seen {
            seen = latest;
            fast_until = now + FAST_WINDOW;
        }
        std::thread::sleep(if now < fast_until { FAST_TICK } else { TICK });
        let listening = sockets::listening_ports();
        let mut guard = WAITERS.lock().unwrap_or_else(|p| p.into_inner());
        let Some(waiters) = guard.as_mut() else {
            return;
        };
        waiters.retain(|port, senders| {
            senders.retain(|s| !s.is_closed());
            match &listening {
                Ok(ports) if ports.contains(port) => {
                    for sender in senders.drain(..) {
                        let _ = sender.send(());
                    }
                    false
                }
                _ => !senders.is_empty(),
            }
        });
        // Nobody left, or no way to tell: stop (dropping the senders tells the waiters).
        if waiters.is_empty() || listening.is_err() {
            *guard = None;
            return;
        }
    }
}

#[cfg(target_os = "linux")]
mod sockets {
    //! The listening TCP ports of this machine's network namespace, from one
    //! `SOCK_DIAG_BY_FAMILY` dump per address family.

    use std::collections::HashSet;
    use std::io;

    const NETLINK_SOCK_DIAG: libc::c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;
    /// `nlmsghdr` (16 bytes) + `inet_diag_req_v2` (56 bytes).
    const REQUEST_LEN: usize = 72;
    /// Offset of `idiag_sport` in a reply: `nlmsghdr` then `inet_diag_msg`'s family, state,
    /// timer and retrans bytes.
    const SPORT_OFFSET: usize = 16 + 4;

    /// Every port a TCP socket listens on (IPv4 and IPv6).
    pub fn listening_ports() -> io::Result<HashSet<u16>> {
        let mut ports = HashSet::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            dump(family as u8, &mut ports)?;
        }
        Ok(ports)
    }

    /// A netlink socket, closed on drop.
    struct Netlink(libc::c_int);

    impl Drop for Netlink {
        fn drop(&mut self) {
            // SAFETY: the descriptor is ours and closed once.
            unsafe { libc::close(self.0) };
        }
    }

    fn dump(family: u8, ports: &mut HashSet<u16>) -> io::Result<()> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = Netlink(fd);

        let mut request = [0u8; REQUEST_LEN];
        request[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
        request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        // inet_diag_req_v2: family, protocol, ext, pad, states; the socket id stays zero.
        request[16] = family;
        request[17] = libc::IPPROTO_TCP as u8;
        request[20..24].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        // SAFETY: `request` is a valid buffer of the given length; the kernel is the peer
        // (the default destination of an unconnected netlink socket).
        let sent = unsafe { libc::send(sock.0, request.as_ptr().cast(), request.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }

        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: `buf` is a valid, writable buffer of the given length.
            let n = unsafe { libc::recv(sock.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                if len < 16 || len > rest.len() {
                    return Err(io::Error::other("malformed sock_diag reply"));
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => return Err(io::Error::other("sock_diag dump refused")),
                    _ if len >= SPORT_OFFSET + 2 => {
                        ports.insert(u16::from_be_bytes([
                            rest[SPORT_OFFSET],
                            rest[SPORT_OFFSET + 1],
                        ]));
                    }
                    _ => {}
                }
                // Messages are 4-byte aligned.
                let next = (len + 3) & !3;
                rest = rest.get(next..).unwrap_or(&[]);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sockets {
    use std::collections::HashSet;
    use std::io;

    pub fn listening_ports() -> io::Result<HashSet<u16>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "listening sockets cannot be listed here",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_include_a_listener_and_not_a_bound_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let ports = sockets::listening_ports().unwrap();
        assert!(ports.contains(&port));
        if let Some(v6) = v6 {
            assert!(ports.contains(&v6.local_addr().unwrap().port()));
        }
        // Bound but not listening, as rigd holds allocated ports.
        let bound = socket2_bound();
        assert!(!sockets::listening_ports().unwrap().contains(&bound.1));
    }

    /// A TCP socket bound to a loopback port without listening.
    fn socket2_bound() -> (tokio::net::TcpSocket, u16) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        (socket, port)
    }

    #[tokio::test]
    async fn resolves_when_the_port_starts_listening() {
        let (socket, port) = socket2_bound();
        let waiter = tokio::spawn(listening(port));
        // Not before: give the watcher some ticks with the port bound but not listening.
        let early = tokio::time::timeout(TICK * 20, listening(port)).await;
        assert!(early.is_err(), "fired before the port listened");
        let _listener = socket.listen(16).unwrap();
        let listening_now = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("fired once the port listened")
            .unwrap();
        assert!(listening_now, "the watcher works here (Linux sock_diag)");
    }
}
