//! Noticing the moment a port starts listening, without connecting to it.
//!
//! Readiness probes follow upstream's schedule (first probe at once, then 10 ms, 20 ms, ...),
//! so a service that binds its port 1 ms after starting is found ready only at the 10 ms
//! probe, while the probe at once is bound to fail. [`listening`] closes that gap: it
//! resolves as soon as some socket on this machine listens on the port, and
//! [`poll_hinted`](super::poll::poll_hinted) holds the first probe until then (one interval
//! at most) and probes at once instead of sleeping out a later interval. For a TCP probe the
//! answer can be the probe itself: when the kernel says a connection to the endpoint's
//! loopback address would be routed to a listening socket ([`Heard::Accepting`]), that is
//! what a successful dial would have shown, without a connection the service (or an
//! observing proxy) has to accept.
//!
//! One watcher thread serves every waiter (a thread, not a task, so it belongs to no Tokio
//! runtime and outlives none). It starts with the first waiter and stays, parked while nobody
//! waits, so an environment's start pays for no thread or socket of its own. While any port
//! is watched it asks the kernel once per [`TICK`] which of the waited ports a TCP socket
//! listens on and wakes their waiters. It asks over `NETLINK_SOCK_DIAG`: a lookup per port at
//! 127.0.0.1 and ::1 (answered as an incoming connection would be routed, so a socket
//! listening on every address is found too), all in one message, while few ports are waited
//! for; a dump of the machine's listening sockets, with their addresses, beyond. Where
//! neither is available (not Linux, or refused) every waiter hears [`Heard::Unavailable`]
//! and readiness falls back to the plain schedule. For [`FAST_WINDOW`] after anyone starts
//! waiting it looks every [`FAST_TICK`] instead, since that is when services usually start
//! listening; either way it rests at least nine times as long as its last look took.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How often the watcher looks at the listening sockets, once nobody has started waiting
/// for [`FAST_WINDOW`].
pub const TICK: Duration = Duration::from_millis(1);
/// How often it looks right after someone starts waiting: most services start listening
/// within a few milliseconds of being spawned, so that is when a short tick pays.
pub const FAST_TICK: Duration = Duration::from_micros(100);
/// How long after the latest new waiter the watcher keeps to [`FAST_TICK`].
pub const FAST_WINDOW: Duration = Duration::from_millis(20);
/// Between looks the watcher rests at least this many times as long as its last look took,
/// so it never takes more than a tenth of a CPU, even when many waited ports make each look
/// a dump (tens of microseconds) while the services it waits for need the CPU to start.
const REST_PER_LOOK: u32 = 9;
/// The longest rest between looks, however long the last one took.
const MAX_REST: Duration = Duration::from_millis(5);

/// The loopback address a waiter will connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loopback {
    /// 127.0.0.1.
    V4,
    /// ::1.
    V6,
    /// Either (`localhost`: a dial tries every address it resolves to).
    Either,
    /// Another loopback address (127.0.0.2, ...), which the watcher does not look up: it
    /// can only tell that the port listens.
    Other,
}

/// What [`listening`] heard about a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Nothing can be observed here (no socket diagnostics): no hint will come.
    Unavailable,
    /// A TCP socket listens on the port, maybe on another address than the one waited on.
    Listening,
    /// The kernel routes a connection to the waited loopback address and port to a listening
    /// socket: a TCP dial there would succeed.
    Accepting,
}

/// One waiter of a port.
struct Waiter {
    at: Loopback,
    tx: oneshot::Sender<Heard>,
}

/// The watcher's shared state.
struct Shared {
    /// Ports being waited for, each with its waiters.
    waiters: BTreeMap<u16, Vec<Waiter>>,
    watcher: Watcher,
}

enum Watcher {
    NotStarted,
    Running(Thread),
    /// It could not start, or the kernel cannot be asked here: nothing will be heard.
    Unavailable,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    waiters: BTreeMap::new(),
    watcher: Watcher::NotStarted,
});
/// Bumped by every new waiter, so the watcher knows to look often again.
static NEW_WAITERS: AtomicU64 = AtomicU64::new(0);

fn shared() -> std::sync::MutexGuard<'static, Shared> {
    SHARED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves once a TCP socket listens on `port`: to [`Heard::Accepting`] when a connection
/// to `at` would reach it, else to [`Heard::Listening`]; or to [`Heard::Unavailable`] as soon
/// as that cannot be observed here. Cancel it by dropping it.
pub async fn listening(port: u16, at: Loopback) -> Heard {
    let (tx, rx) = oneshot::channel();
    {
        let mut shared = shared();
        if let Watcher::NotStarted = shared.watcher {
            shared.watcher = match std::thread::Builder::new()
                .name("rigd-listen-watch".into())
                .spawn(watch)
            {
                Ok(handle) => Watcher::Running(handle.thread().clone()),
                Err(_) => Watcher::Unavailable,
            };
        }
        let Watcher::Running(thread) = &shared.watcher else {
            return Heard::Unavailable;
        };
        let thread = thread.clone();
        shared
            .waiters
            .entry(port)
            .or_default()
            .push(Waiter { at, tx });
        NEW_WAITERS.fetch_add(1, Ordering::Relaxed);
        drop(shared);
        thread.unpark();
    }
    // An error: the watcher found it cannot observe sockets here.
    rx.await.unwrap_or(Heard::Unavailable)
}

/// The watcher thread: looks while anyone waits, parks while nobody does.
fn watch() {
    let mut lister: Option<sockets::Lister> = None;
    let mut wanted: Vec<u16> = Vec::new();
    let mut seen = NEW_WAITERS.load(Ordering::Relaxed);
    let mut fast_until = Instant::now() + FAST_WINDOW;
    let mut last_look = Duration::ZERO;
    loop {
        // Park until someone waits (a waiter unparks after adding itself, so no wake-up is
        // lost between the look and the park).
        while shared().waiters.is_empty() {
            std::thread::park();
        }
        let open = match &mut lister {
            Some(open) => open,
            slot @ None => match sockets::Lister::open() {
                Ok(opened) => slot.insert(opened),
                Err(_) => {
                    // No way to tell: nobody will hear anything (dropping the senders tells
                    // the waiters so).
                    let mut shared = shared();
                    shared.watcher = Watcher::Unavailable;
                    shared.waiters.clear();
                    return;
                }
            },
        };
        let now = Instant::now();
        let latest = NEW_WAITERS.load(Ordering::Relaxed);
        if latest != seen {
            seen = latest;
            fast_until = now + FAST_WINDOW;
        }
        let tick = if now < fast_until { FAST_TICK } else { TICK };
        std::thread::sleep(tick.max(last_look.saturating_mul(REST_PER_LOOK).min(MAX_REST)));
        wanted.clear();
        wanted.extend(shared().waiters.keys());
        if wanted.is_empty() {
            continue;
        }
        let look_started = Instant::now();
        let found = open.listening(&wanted);
        last_look = look_started.elapsed();
        match found {
            Ok(found) => shared().waiters.retain(|&port, waiters| {
                for waiter in std::mem::take(waiters) {
                    match found.heard(port, waiter.at) {
                        Some(heard) => {
                            let _ = waiter.tx.send(heard);
                        }
                        None if waiter.tx.is_closed() => {}
                        None => waiters.push(waiter),
                    }
                }
                !waiters.is_empty()
            }),
            Err(_) => {
                // A lookup failed (a lost answer, say): these waiters get no hint, and the
                // next ones a fresh socket.
                shared().waiters.clear();
                lister = None;
            }
        }
    }
}

/// Which waited ports a TCP socket listens on, as far as one look could tell.
#[derive(Debug, Default)]
struct Found {
    /// Ports a connection to 127.0.0.1 would reach a listening socket on.
    v4: HashSet<u16>,
    /// Ports a connection to ::1 would reach a listening socket on.
    v6: HashSet<u16>,
    /// Ports some socket listens on (from dumps), whatever its address.
    somewhere: HashSet<u16>,
}

impl Found {
    /// What a waiter for `port` at `at` hears; `None` while nothing listens there.
    fn heard(&self, port: u16, at: Loopback) -> Option<Heard> {
        let (v4, v6) = (self.v4.contains(&port), self.v6.contains(&port));
        let reaches = match at {
            Loopback::V4 => v4,
            Loopback::V6 => v6,
            Loopback::Either => v4 || v6,
            Loopback::Other => false,
        };
        if reaches {
            Some(Heard::Accepting)
        } else if v4 || v6 || self.somewhere.contains(&port) {
            Some(Heard::Listening)
        } else {
            None
        }
    }

    fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
        self.somewhere.clear();
    }

    /// Adds a listening socket of `family` from a dump, given the body of its
    /// `inet_diag_msg`: family, state, timer and retrans bytes, then the socket id (source
    /// port, destination port, source address, ...). A socket on 127.0.0.1 or 0.0.0.0
    /// accepts at 127.0.0.1; one on ::1 or :: at ::1 (and one on :: maybe at 127.0.0.1 too,
    /// unless it is IPv6-only, which the dump does not say: that port just listens).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn add_dumped(&mut self, family: u8, body: &[u8]) {
        let (Some(port), Some(addr)) = (body.get(4..6), body.get(8..24)) else {
            return;
        };
        let port = u16::from_be_bytes([port[0], port[1]]);
        self.somewhere.insert(port);
        if i32::from(family) == libc::AF_INET {
            if addr[..4] == [127, 0, 0, 1] || addr[..4] == [0, 0, 0, 0] {
                self.v4.insert(port);
            }
        } else if addr == std::net::Ipv6Addr::LOCALHOST.octets()
            || addr == std::net::Ipv6Addr::UNSPECIFIED.octets()
        {
            self.v6.insert(port);
        }
    }
}

#[cfg(target_os = "linux")]
mod sockets {
    //! Which TCP ports of this machine's network namespace have a listening socket:
    //! `SOCK_DIAG_BY_FAMILY` lookups of given ports, or a dump per address family.

    use std::collections::HashSet;
    use std::io;

    use super::Found;

    const NETLINK_SOCK_DIAG: libc::c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;
    /// `nlmsghdr` (16 bytes) + `inet_diag_req_v2` (56 bytes).
    const REQUEST_LEN: usize = 72;
    /// Offset of `idiag_state` in the body of a reply (after the `nlmsghdr`): the
    /// `inet_diag_msg` starts with its family byte.
    const STATE_BODY_OFFSET: usize = 1;

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
        found: Found,
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
                found: Found::default(),
                lookups_refused: false,
            })
        }

        /// Which of `wanted` a TCP socket listens on now: looked up at the loopback
        /// addresses, or found among every listening socket. May hold other ports too.
        pub fn listening(&mut self, wanted: &[u16]) -> io::Result<&Found> {
            self.found.clear();
            if wanted.len() <= LOOKUP_MAX && !self.lookups_refused {
                match self.look_up(wanted) {
                    Ok(()) => return Ok(&self.found),
                    Err(_) => {
                        self.lookups_refused = true;
                        self.found.clear();
                    }
                }
            }
            self.listening_ports()?;
            Ok(&self.found)
        }

        /// Every port a TCP socket listens on now (IPv4 and IPv6), on any address.
        pub fn listening_ports(&mut self) -> io::Result<&HashSet<u16>> {
            self.found.clear();
            for family in [libc::AF_INET, libc::AF_INET6] {
                self.dump(family as u8)?;
            }
            Ok(&self.found.somewhere)
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
                    let found = if answer.seq % 2 == 0 {
                        &mut self.found.v4
                    } else {
                        &mut self.found.v6
                    };
                    match answer.kind {
                        // A lookup can only match a listening socket (nothing connected has
                        // port 0 at the other end); the state is checked all the same.
                        SOCK_DIAG_BY_FAMILY => {
                            if answer.body.get(STATE_BODY_OFFSET) == Some(&(TCP_LISTEN as u8)) {
                                found.extend(port);
                            }
                        }
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
                        _ => self.found.add_dumped(family, answer.body),
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

    use super::Found;

    /// Listening sockets cannot be listed here: there is no lister.
    pub enum Lister {}

    impl Lister {
        pub fn listening(&mut self, _wanted: &[u16]) -> io::Result<&Found> {
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
        let found = lister.listening(&wanted).unwrap();
        for port in &listening {
            assert!(
                found.heard(*port, Loopback::Either).is_some(),
                "lookup missed {port}"
            );
        }
        for port in [bound.1, closed] {
            assert_eq!(found.heard(port, Loopback::Either), None);
        }

        // Past the lookup limit the ports are dumped instead: same answers.
        let mut many = wanted.clone();
        many.extend(std::iter::repeat_n(closed, 40));
        let dumped = lister.listening(&many).unwrap();
        for port in &listening {
            assert!(
                dumped.heard(*port, Loopback::Either).is_some(),
                "dump missed {port}"
            );
        }
        for port in [bound.1, closed] {
            assert_eq!(dumped.heard(port, Loopback::Either), None);
        }
    }

    /// Lookups and dumps tell which loopback address reaches a listener: a socket on
    /// 127.0.0.1 accepts there and not at ::1, one on every address at both (where the
    /// machine has IPv6).
    #[test]
    fn lookups_tell_which_loopback_address_accepts() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v4 = v4.local_addr().unwrap().port();
        let dual = std::net::TcpListener::bind("[::]:0").ok();
        let mut lister = sockets::Lister::open().unwrap();
        let mut wanted = vec![v4];
        wanted.extend(dual.iter().map(|l| l.local_addr().unwrap().port()));
        let mut many = wanted.clone();
        many.extend(std::iter::repeat_n(1, 40));
        for (how, wanted) in [("lookup", &wanted), ("dump", &many)] {
            let found = lister.listening(wanted).unwrap();
            let heard = |port, at| (how, found.heard(port, at));
            assert_eq!(heard(v4, Loopback::V4), (how, Some(Heard::Accepting)));
            assert_eq!(heard(v4, Loopback::Either), (how, Some(Heard::Accepting)));
            assert_eq!(heard(v4, Loopback::V6), (how, Some(Heard::Listening)));
            assert_eq!(heard(v4, Loopback::Other), (how, Some(Heard::Listening)));
            if let Some(dual) = &dual {
                let port = dual.local_addr().unwrap().port();
                assert_eq!(heard(port, Loopback::V6), (how, Some(Heard::Accepting)));
                // A dual-stack socket takes IPv4 connections too (unless the machine says
                // otherwise: bindv6only), but only a lookup can tell.
                let v6_only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
                    .is_ok_and(|v| v.trim() == "1");
                if !v6_only && how == "lookup" {
                    assert_eq!(heard(port, Loopback::V4), (how, Some(Heard::Accepting)));
                }
                assert!(heard(port, Loopback::V4).1.is_some(), "{how}");
            }
        }
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
        let waiter = tokio::spawn(listening(port, Loopback::V4));
        let elsewhere = tokio::spawn(listening(port, Loopback::V6));
        // Not before: give the watcher some ticks with the port bound but not listening.
        let early = tokio::time::timeout(TICK * 20, listening(port, Loopback::V4)).await;
        assert!(early.is_err(), "fired before the port listened");
        let _listener = socket.listen(16).unwrap();
        let heard = |waiter: tokio::task::JoinHandle<Heard>| async {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("fired once the port listened")
                .unwrap()
        };
        assert_eq!(
            heard(waiter).await,
            Heard::Accepting,
            "the watcher works here (Linux sock_diag)"
        );
        assert_eq!(heard(elsewhere).await, Heard::Listening);

        // The watcher stays for the next waiters (parked in between), and an abandoned wait
        // leaves nothing behind.
        let (socket, port) = socket2_bound();
        let abandoned = tokio::time::timeout(TICK * 5, listening(port, Loopback::Either)).await;
        assert!(abandoned.is_err());
        let _listener = socket.listen(16).unwrap();
        let again = listening(port, Loopback::Either);
        assert_eq!(heard(tokio::spawn(again)).await, Heard::Accepting);
    }
}
