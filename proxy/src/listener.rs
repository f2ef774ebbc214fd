//! Readying the listeners the proxy is handed: a wide accept queue, and connections that do
//! not pace ([`crate::pacing`]).
//!
//! rigd allocates listeners with `std::net::TcpListener::bind`, whose accept queue holds 128
//! connections. A test that opens a burst of connections at once (a connection pool warming
//! up, a load test, 1,000 concurrent clients) can fill that queue before the accept loop
//! drains it; the kernel then drops the surplus SYNs and those clients wait a full second for
//! their retransmission. haproxy sizes its queue from `maxconn`, nginx asks for 511 and tokio
//! for 1,024; the proxy asks for as much as the kernel allows.

use std::io;

/// The accept queue asked for; Linux caps it at `net.core.somaxconn` (4,096 by default).
const ACCEPT_BACKLOG: i32 = 4096;

/// Readies an already listening socket: widens its accept queue (calling `listen` again on a
/// listening socket only changes its backlog; queued connections stay), and has the
/// connections it accepts inherit an unpaced congestion control.
pub(crate) fn prepare(listener: &std::net::TcpListener) -> io::Result<()> {
    crate::pacing::unpace(listener);
    socket2::SockRef::from(listener).listen(ACCEPT_BACKLOG)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{SocketAddr, TcpListener};
    use std::os::fd::AsRawFd;

    use socket2::{Domain, Socket, Type};

    use super::*;

    /// The TCP state of a socket, from `TCP_INFO` (its first byte).
    fn tcp_state(socket: &Socket) -> u8 {
        let mut info = [0u8; 256];
        let mut len = info.len() as libc::socklen_t;
        // SAFETY: TCP_INFO writes at most `len` bytes into `info` and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        info[0]
    }

    /// Opens `count` connections to `addr` without waiting for any of them, and counts those
    /// the kernel completed at once. On loopback the handshake runs inside `connect`, so a
    /// connection is established when it returns unless its SYN was dropped because the
    /// accept queue was full.
    fn established_at_once(addr: SocketAddr, count: usize) -> (usize, Vec<Socket>) {
        const TCP_ESTABLISHED: u8 = 1;
        let sockets: Vec<Socket> = (0..count)
            .map(|_| {
                let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                socket.set_nonblocking(true).unwrap();
                let _ = socket.connect(&addr.into());
                socket
            })
            .collect();
        let established = sockets
            .iter()
            .filter(|socket| tcp_state(socket) == TCP_ESTABLISHED)
            .count();
        (established, sockets)
    }

    #[test]
    fn a_burst_beyond_std_s_queue_is_not_dropped() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(4096);
        if somaxconn < 600 {
            eprintln!("net.core.somaxconn is {somaxconn}: no queue of 600 can be had here");
            return;
        }
        // Baseline: std's own queue overflows (so this test can tell the difference).
        let narrow = TcpListener::bind("127.0.0.1:0").unwrap();
        let (established, _held) = established_at_once(narrow.local_addr().unwrap(), 600);
        assert!(
            established < 600,
            "std's listener queued all 600 connections; the test cannot show the widening"
        );

        let wide = TcpListener::bind("127.0.0.1:0").unwrap();
        prepare(&wide).unwrap();
        let (established, _held) = established_at_once(wide.local_addr().unwrap(), 600);
        assert_eq!(established, 600, "connections were dropped by a full queue");
    }
}
