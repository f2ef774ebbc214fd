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
//! runtime and outlives none): while any port is watched, it asks the kernel once per
//! [`TICK`] which of the waited ports a TCP socket listens on, wakes their waiters, and stops
//! when nobody waits. It asks over `NETLINK_SOCK_DIAG`: a lookup per port at 127.0.0.1 and
//! ::1 (answered as an incoming connection would be routed, so a socket listening on every
//! address is found too), all in one message, while few ports are waited for; a dump of the
//! machine's listening sockets beyond. Where neither is available (not Linux, or refused)
//! the hint resolves to `false` and readiness falls back to the plain schedule. For
//! [`FAST_WINDOW`] after anyone starts waiting it looks every [`FAST_TICK`] instead, since
//! that is when services usually start listening.

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
    let Ok(mut lister) = sockets::Lister::open() else {
        // No way to tell: stop (dropping the senders tells the waiters).
        *WAITERS.lock().unwrap_or_else(|p| p.into_inner()) = None;
        return;
    };
    let mut wanted: Vec<u16> = Vec::new();
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
        {
            let guard = WAITERS.lock().unwrap_or_else(|p| p.into_inner());
            let Some(waiters) = guard.as_ref() else {
                return;
            };
            wanted.clear();
            wanted.extend(waiters.keys());
        }
        let listening = lister.listening(&wanted);
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
    //! Which TCP ports of this machine's network namespace have a listening socket:
    //! `SOCK_DIAG_BY_FAMILY` lookups of given ports, or a dump per address family.

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
    /// Offset of `idiag_sport` in the body of a reply (after the `nlmsghdr`):
    /// `inet_diag_msg`'s family, state, timer and retrans bytes come first.
    const SPORT_BODY_OFFSET: usize = 4;

    /// Up to this many ports are looked up one by one (two lookups each, in one message);
    /// beyond, the listening sockets are dumped. A lookup costs about 1.5 µs; a dump walks
    /// every listening socket of the machine and costs 35 µs and more (70 µs with a hundred
    /// listeners), each time the watcher looks.
    const LOOKUP_MAX: usize = 16;
    /// A lookup is answered with a `SOCK_DIAG_BY_FAMILY` message when a socket listens, and
    /// with an `NLMSG_ERROR` carrying this error when nothing does.
    const ENOENT_ERROR: i32 = -libc::ENOENT;

    /// Lists listening ports again and again over one netlink socket, reusing its buffers
    /// (the watcher asks thousands of times a second while services start).
    pub struct Lister {
        sock: Netlink,
        buf: Vec<u8>,
        request: Vec<u8>,
        ports: HashSet<u16>,
        /// Lookups were refused once (an old kernel): dump from then on.
        lookups_refused: bool,
    }

    impl Lister {
        /// Opens the netlink socket.
        pub fn open() -> io::Result<Lister> {
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
            // A lost answer must not stall the watcher: a receive gives up after a second.
            let timeout = libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            };
            // SAFETY: `timeout` is a valid timeval of the given size.
            let set = unsafe {
                libc::setsockopt(
                    sock.0,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            };
            if set != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Lister {
                sock,
                buf: vec![0u8; 32 * 1024],
                request: Vec::new(),
                ports: HashSet::new(),
                lookups_refused: false,
            })
        }

        /// Which of `wanted` a TCP socket listens on now, on the loopback addresses or on
        /// every address (IPv4 or IPv6). May hold other listening ports too.
        pub fn listening(&mut self, wanted: &[u16]) -> io::Result<&HashSet<u16>> {
            self.ports.clear();
            if wanted.len() <= LOOKUP_MAX && !self.lookups_refused {
                match self.look_up(wanted) {
                    Ok(()) => return Ok(&self.ports),
                    Err(_) => self.lookups_refused = true,
                }
            }
            self.listening_ports()
        }

        /// Every port a TCP socket listens on now (IPv4 and IPv6).
        pub fn listening_ports(&mut self) -> io::Result<&HashSet<u16>> {
            self.ports.clear();
            for family in [libc::AF_INET, libc::AF_INET6] {
                self.dump(family as u8)?;
            }
            Ok(&self.ports)
        }

        /// Looks `wanted` up at 127.0.0.1 and ::1, all in one message: the kernel answers a
        /// lookup as an incoming connection would be routed, so a socket listening on every
        /// address (dual-stack included) is found too.
        fn look_up(&mut self, wanted: &[u16]) -> io::Result<()> {
            self.request.clear();
            for (index, &port) in wanted.iter().enumerate() {
                for (v6, family) in [(false, libc::AF_INET), (true, libc::AF_INET6)] {
                    let mut request = header(NLM_F_REQUEST, family as u8, !0);
                    let seq = (index * 2 + usize::from(v6)) as u32;
                    request[8..12].copy_from_slice(&seq.to_ne_bytes());
                    // inet_diag_sockid: sport, dport, src[16], dst[16], if, cookie[2].
                    request[24..26].copy_from_slice(&port.to_be_bytes());
                    if v6 {
                        request[28..44].copy_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
                    } else {
                        request[28..32].copy_from_slice(&[127, 0, 0, 1]);
                    }
                    // No cookie to match (INET_DIAG_NOCOOKIE).
                    request[64..72].fill(0xff);
                    self.request.extend_from_slice(&request);
                }
            }
            // SAFETY: `request` is a valid buffer of the given length.
            let sent = unsafe {
                libc::send(
                    self.sock.0,
                    self.request.as_ptr().cast(),
                    self.request.len(),
                    0,
                )
            };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut answers = 0;
            while answers < wanted.len() * 2 {
                let n = self.receive()?;
                let mut rest = &self.buf[..n];
                while let Some(answer) = message(rest)? {
                    answers += 1;
                    let port = wanted.get(answer.seq as usize / 2).copied();
                    match answer.kind {
                        SOCK_DIAG_BY_FAMILY => self.ports.extend(port),
                        NLMSG_ERROR if error_code(answer.body) == Some(ENOENT_ERROR) => {}
                        _ => return Err(io::Error::other("sock_diag lookup refused")),
                    }
                    rest = answer.rest;
                }
            }
            Ok(())
        }

        fn dump(&mut self, family: u8) -> io::Result<()> {
            let request = header(NLM_F_REQUEST | NLM_F_DUMP, family, 1 << TCP_LISTEN);
            // SAFETY: `request` is a valid buffer of the given length; the kernel is the
            // peer (the default destination of an unconnected netlink socket).
            let sent =
                unsafe { libc::send(self.sock.0, request.as_ptr().cast(), request.len(), 0) };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            loop {
                let n = self.receive()?;
                let mut rest = &self.buf[..n];
                while let Some(answer) = message(rest)? {
                    match answer.kind {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => return Err(io::Error::other("sock_diag dump refused")),
                        _ => {
                            if let Some(port) =
                                answer.body.get(SPORT_BODY_OFFSET..SPORT_BODY_OFFSET + 2)
                            {
                                self.ports.insert(u16::from_be_bytes([port[0], port[1]]));
                            }
                        }
                    }
                    rest = answer.rest;
                }
            }
        }

        /// One datagram of answers into `buf`; its length.
        fn receive(&mut self) -> io::Result<usize> {
            // SAFETY: `buf` is a valid, writable buffer of the given length.
            let n =
                unsafe { libc::recv(self.sock.0, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(n as usize)
        }
    }

    /// A `SOCK_DIAG_BY_FAMILY` request for TCP sockets of `family` in `states`: `nlmsghdr`
    /// then `inet_diag_req_v2` with a zero socket id.
    fn header(flags: u16, family: u8, states: u32) -> [u8; REQUEST_LEN] {
        let mut request = [0u8; REQUEST_LEN];
        request[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
        request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        request[6..8].copy_from_slice(&flags.to_ne_bytes());
        request[16] = family;
        request[17] = libc::IPPROTO_TCP as u8;
        request[20..24].copy_from_slice(&states.to_ne_bytes());
        request
    }

    /// One netlink message of a datagram.
    struct Message<'a> {
        kind: u16,
        seq: u32,
        body: &'a [u8],
        /// The messages after it.
        rest: &'a [u8],
    }

    /// The first netlink message of `data`; `None` when `data` holds no more messages.
    fn message(data: &[u8]) -> io::Result<Option<Message<'_>>> {
        if data.len() < 16 {
            return Ok(None);
        }
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            return Err(io::Error::other("malformed sock_diag reply"));
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        // Messages are 4-byte aligned.
        let next = data.get((len + 3) & !3..).unwrap_or(&[]);
        Ok(Some(Message {
            kind,
            seq,
            body: &data[16..len],
            rest: next,
        }))
    }

    /// The (negative) error number of an `NLMSG_ERROR` body.
    fn error_code(body: &[u8]) -> Option<i32> {
        Some(i32::from_ne_bytes(body.get(..4)?.try_into().ok()?))
    }

    /// A netlink socket, closed on drop.
    struct Netlink(libc::c_int);

    impl Drop for Netlink {
        fn drop(&mut self) {
            // SAFETY: the descriptor is ours and closed once.
            unsafe { libc::close(self.0) };
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sockets {
    use std::collections::HashSet;
    use std::io;

    /// Listening sockets cannot be listed here: there is no lister.
    pub enum Lister {}

    impl Lister {
        pub fn listening(&mut self, _wanted: &[u16]) -> io::Result<&HashSet<u16>> {
            match *self {}
        }

        pub fn open() -> io::Result<Lister> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "listening sockets cannot be listed here",
            ))
        }

        pub fn listening_ports(&mut self) -> io::Result<&HashSet<u16>> {
            match *self {}
        }
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
        let mut lister = sockets::Lister::open().unwrap();
        let ports = lister.listening_ports().unwrap().clone();
        // The socket and buffers are reused: a second listing works as well.
        assert!(lister.listening_ports().unwrap().contains(&port));
        assert!(ports.contains(&port));
        if let Some(v6) = v6 {
            assert!(ports.contains(&v6.local_addr().unwrap().port()));
        }
        // Bound but not listening, as rigd holds allocated ports.
        let bound = socket2_bound();
        assert!(!lister.listening_ports().unwrap().contains(&bound.1));
    }

    /// Lookups (a few ports) and dumps (many) find the same: listeners on 127.0.0.1, on
    /// [::1] and on every address; not a socket that is only bound, nor a closed port.
    #[test]
    fn lookups_and_dumps_agree_on_which_ports_listen() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let bound = socket2_bound();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut listening = vec![
            v4.local_addr().unwrap().port(),
            any.local_addr().unwrap().port(),
        ];
        listening.extend(v6.as_ref().map(|l| l.local_addr().unwrap().port()));
        let mut wanted = listening.clone();
        wanted.extend([bound.1, closed]);

        let mut lister = sockets::Lister::open().unwrap();
        let found = lister.listening(&wanted).unwrap().clone();
        for port in &listening {
            assert!(found.contains(port), "lookup missed {port}");
        }
        assert!(!found.contains(&bound.1) && !found.contains(&closed));

        // Past the lookup limit the ports are dumped instead: same answers.
        let mut many = wanted.clone();
        many.extend(std::iter::repeat_n(closed, 40));
        let dumped = lister.listening(&many).unwrap().clone();
        for port in &listening {
            assert!(dumped.contains(port), "dump missed {port}");
        }
        assert!(!dumped.contains(&bound.1) && !dumped.contains(&closed));
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
