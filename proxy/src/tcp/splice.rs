//! The zero-copy relay direction on Linux: `splice(2)` from one socket into a pipe and from the
//! pipe into the other socket, so payload bytes never enter user space.
//!
//! Everything is non-blocking and driven by tokio readiness: the pipe is opened `O_NONBLOCK`
//! and every splice passes `SPLICE_F_NONBLOCK`, and each socket-side call runs inside
//! [`TcpStream::try_io`], which clears the socket's readiness when the kernel answers `EAGAIN`.
//! That is only correct if `EAGAIN` can only come from the socket, so the pipe is filled only
//! when it is empty (a fill can never find the pipe full) and drained only while it holds data
//! (a drain can never find the pipe empty).
//!
//! Pipes are leased per burst of traffic, not per connection: a direction takes a pipe from a
//! small process-wide pool when bytes arrive and gives it back, empty, when the source has
//! nothing more to read. A thousand idle pooled database connections therefore hold no pipes,
//! and the pipe quota of the user (`/proc/sys/fs/pipe-user-pages-soft`) is not exhausted by
//! connections that are not moving data. A pipe still holding bytes (a relay cut short) is
//! closed rather than returned.
//!
//! Writing into a socket whose peer has gone raises `SIGPIPE`, as `write(2)` does; Rust
//! programs ignore `SIGPIPE` from `main`, so the splice fails with `EPIPE` and the direction
//! ends.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::copy::retry;
use super::pump::PumpEnd;

/// The pipe size asked for. `/proc/sys/fs/pipe-max-size` is 1 MiB by default, so unprivileged
/// processes get it unless they are over their pipe quota, in which case the pipe keeps the
/// kernel's default size.
const PIPE_SIZE: usize = 1 << 20;

/// Pipes kept for reuse. Each accounts for up to [`PIPE_SIZE`] against the user's pipe quota
/// (64 MiB by default), so the pool stays well below it.
const POOL_LIMIT: usize = 16;

/// Empty pipes waiting for the next burst of traffic.
static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

/// How a splice direction ended.
pub(super) enum Outcome {
    /// The direction is over.
    Finished(PumpEnd),
    /// Splicing is not possible here (no pipe could be opened, or the kernel refused to splice
    /// these file descriptors); the pipe is empty and the direction should continue with the
    /// buffered copy.
    Unsupported,
}

/// Moves bytes from `src` to `dst` through a pipe until `src` reaches EOF or either side fails,
/// adding every byte written to `dst` to `delivered`.
pub(super) async fn pump(src: &TcpStream, dst: &TcpStream, delivered: &AtomicU64) -> Outcome {
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut lease: Option<Lease> = None;
    loop {
        if let Err(err) = src.readable().await {
            return Outcome::Finished(PumpEnd::ReadFailed(err));
        }
        let pipe = match lease {
            Some(ref mut pipe) => pipe,
            None => match Pipe::take() {
                Ok(pipe) => lease.insert(Lease::new(pipe)),
                Err(_) => return Outcome::Unsupported,
            },
        };
        let (pipe_in, pipe_out, capacity) = (pipe.write_fd, pipe.read_fd, pipe.capacity);

        // Fill the (empty) pipe with whatever the source has.
        match src.try_io(Interest::READABLE, || splice(src_fd, pipe_in, capacity)) {
            Ok(0) => return Outcome::Finished(PumpEnd::Eof),
            Ok(n) => pipe.buffered = n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                // Nothing to read right now: give the empty pipe back until the next burst.
                lease = None;
                continue;
            }
            Err(err) if retry(&err) => continue,
            Err(err) if unsupported(&err) => return Outcome::Unsupported,
            Err(err) => return Outcome::Finished(PumpEnd::ReadFailed(err)),
        }

        // Drain it completely into the destination.
        while pipe.buffered > 0 {
            if let Err(err) = dst.writable().await {
                return Outcome::Finished(PumpEnd::WriteFailed(err));
            }
            let pending = pipe.buffered;
            match dst.try_io(Interest::WRITABLE, || splice(pipe_out, dst_fd, pending)) {
                Ok(0) => {
                    return Outcome::Finished(PumpEnd::WriteFailed(io::ErrorKind::WriteZero.into()))
                }
                Ok(n) => {
                    pipe.buffered -= n;
                    delivered.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(err) if retry(&err) => continue,
                Err(err) => return Outcome::Finished(PumpEnd::WriteFailed(err)),
            }
        }
    }
}

/// `splice(2)` between two non-seekable file descriptors, never blocking on the pipe.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from a live
    // `TcpStream` or an owned pipe end), and null offsets are required for sockets and pipes.
    let moved = unsafe {
        libc::splice(
            from,
            ptr::null_mut(),
            to,
            ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if moved < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(moved as usize)
    }
}

/// Errors meaning "this kernel or these descriptors cannot splice", as opposed to a failing
/// connection.
fn unsupported(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

/// A non-blocking pipe.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// An empty pipe from the pool, or a new one.
    fn take() -> io::Result<Pipe> {
        let pooled = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match pooled {
            Some(pipe) => Ok(pipe),
            None => Pipe::open(),
        }
    }

    /// Returns an empty pipe to the pool, or closes it when the pool is full.
    fn give_back(self) {
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_LIMIT {
            pool.push(self);
        }
    }

    fn open() -> io::Result<Pipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are new and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; failure (quota exceeded) is handled.
        let grown = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        let capacity = if grown > 0 {
            grown
        } else {
            // SAFETY: as above.
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) }
        };
        Ok(Pipe {
            read,
            write,
            // The kernel default (16 pages) if the size cannot even be read.
            capacity: usize::try_from(capacity)
                .ok()
                .filter(|&c| c > 0)
                .unwrap_or(64 * 1024),
        })
    }
}

/// A pipe leased by one relay direction, with the number of bytes it holds.
struct Lease {
    /// Always `Some` until the lease is dropped.
    pipe: Option<Pipe>,
    read_fd: RawFd,
    write_fd: RawFd,
    capacity: usize,
    buffered: usize,
}

impl Lease {
    fn new(pipe: Pipe) -> Lease {
        Lease {
            read_fd: pipe.read.as_raw_fd(),
            write_fd: pipe.write.as_raw_fd(),
            capacity: pipe.capacity,
            pipe: Some(pipe),
            buffered: 0,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            // Only an empty pipe can serve another connection; one with bytes left in it
            // (a relay cut short) is closed.
            if self.buffered == 0 {
                pipe.give_back();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_non_blocking_and_as_large_as_allowed() {
        let pipe = Pipe::open().unwrap();
        assert!(pipe.capacity >= 4096);
        // SAFETY: F_GETFL on a descriptor we own.
        let flags = unsafe { libc::fcntl(pipe.read.as_raw_fd(), libc::F_GETFL) };
        assert_ne!(flags & libc::O_NONBLOCK, 0);
        // Splicing out of an empty pipe must say EAGAIN, not block.
        let other = Pipe::open().unwrap();
        let err = splice(pipe.read.as_raw_fd(), other.write.as_raw_fd(), 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    }

    #[test]
    fn only_empty_pipes_go_back_to_the_pool() {
        let pipe = Pipe::open().unwrap();
        // SAFETY: writing three bytes from a live buffer into a pipe we own.
        let written = unsafe { libc::write(pipe.write.as_raw_fd(), b"old".as_ptr().cast(), 3) };
        assert_eq!(written, 3);
        let mut lease = Lease::new(pipe);
        lease.buffered = 3;
        drop(lease);

        let pool = POOL.lock().unwrap();
        for pooled in pool.iter() {
            let mut queued: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int to `queued`.
            let rc = unsafe { libc::ioctl(pooled.read.as_raw_fd(), libc::FIONREAD, &mut queued) };
            assert_eq!(rc, 0);
            assert_eq!(
                queued, 0,
                "a pooled pipe still holds bytes of another connection"
            );
        }
    }
}
