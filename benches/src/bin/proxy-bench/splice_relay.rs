//! `serve-splice-relay`: what relaying alone costs on this machine, measured in the same run
//! as the proxies.
//!
//! A bare layer-4 relay with nothing else in it: no observation, no event loop, no parsing.
//! Each accepted connection gets a connection to the target and one blocking thread per
//! direction, which moves bytes with `splice(2)` through a pipe of its own (1 MiB): the same
//! kernel calls with the same flags as rig's TCP relay. Its cost is the second trip through
//! loopback that every proxy adds, so on a machine whose cores the load generator, the origin
//! and the proxy share, `splice ÷ direct` shows how close to direct any proxy can come there,
//! and `rig ÷ splice` what rig's event loop and observation cost on top.
//!
//! One thread per direction keeps the relay minimal but makes its memory per idle
//! connection a thread stack's, not comparable with the event-driven proxies.

use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::thread;

use anyhow::{Context, Result};

use crate::cli::SpliceRelayOptions;
use crate::standalone;

/// The pipe size asked for, as rig's relay asks.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Stack of each relay thread: a direction needs a few frames only.
const THREAD_STACK: usize = 64 * 1024;

/// Listens for HTTP (relayed byte for byte: HTTP/1.1 and h2c alike) and TCP, announces both
/// addresses, and relays until standard input closes.
pub fn main(options: SpliceRelayOptions) -> Result<()> {
    let mut announced = BTreeMap::new();
    for (name, target) in [("http", options.http), ("tcp", options.tcp)] {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
        announced.insert(name, listener.local_addr()?);
        thread::Builder::new()
            .name(format!("accept-{name}"))
            .spawn(move || accept(listener, target))
            .context("starting an accept thread")?;
    }
    standalone::announce(&announced)?;
    // The harness stops its children by closing their standard input (or SIGTERM, whose
    // default action ends the process).
    let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
    Ok(())
}

fn accept(listener: TcpListener, target: SocketAddr) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let started = thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || relay(client, target));
        if let Err(error) = started {
            eprintln!("serve-splice-relay: cannot start a relay thread: {error}");
        }
    }
}

/// Relays one connection both ways until both directions have ended.
fn relay(client: TcpStream, target: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    for stream in [&client, &upstream] {
        let _ = stream.set_nodelay(true);
    }
    let (Ok(client_in), Ok(upstream_out)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let Ok(other) = thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || direction(&client_in, &upstream_out))
    else {
        return;
    };
    direction(&upstream, &client);
    let _ = other.join();
}

/// Moves bytes from `src` to `dst` until `src` ends or either side fails, then passes the end
/// on (FIN to `dst`).
fn direction(src: &TcpStream, dst: &TcpStream) {
    if pump(src.as_raw_fd(), dst.as_raw_fd()).is_err() {
        let _ = src.shutdown(Shutdown::Read);
    }
    let _ = dst.shutdown(Shutdown::Write);
}

fn pump(src: RawFd, dst: RawFd) -> io::Result<()> {
    let (read, write) = pipe()?;
    loop {
        let filled = splice(src, write.as_raw_fd(), PIPE_SIZE as usize)?;
        if filled == 0 {
            return Ok(());
        }
        let mut left = filled;
        while left > 0 {
            match splice(read.as_raw_fd(), dst, left)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                moved => left -= moved,
            }
        }
    }
}

/// A blocking pipe, grown to [`PIPE_SIZE`] when the kernel allows.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are new and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own; a refusal (pipe quota) keeps the default size.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok((read, write))
}

/// Blocking `splice(2)` between two non-seekable descriptors, retried on `EINTR`.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: both descriptors are open for the call (borrowed from live streams or an
        // owned pipe); sockets and pipes take null offsets.
        let moved = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if moved >= 0 {
            return Ok(moved as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}
