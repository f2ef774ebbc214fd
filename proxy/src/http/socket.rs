//! Socket reads and writes of the paths that drive sockets themselves (the raw HTTP/1.1 path,
//! the h2c relay) rather than through `AsyncRead`/`AsyncWrite`.

use std::io::{self, ErrorKind};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Reads what `stream` has into `buf`'s spare capacity, like `try_read_buf`, and when that
/// was less than room was left for (the socket is drained: a request arrived whole, as usual)
/// also tells Tokio the socket is no longer readable. Otherwise Tokio only learns that from
/// the next read failing with `WouldBlock`, and the proxy, watching the client while it waits
/// for the response, would make that extra system call for every request. Data arriving
/// after the read raises a new readiness event that this does not clear, so no wake-up is
/// lost.
pub(crate) fn read_draining(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let mut drained = None;
    let read = stream.try_io(Interest::READABLE, || {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        let n = socket2::SockRef::from(stream).recv(spare)?;
        // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        if n > 0 && n < room {
            drained = Some(n);
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match drained {
        Some(n) => Ok(n),
        None => read,
    }
}

/// Writes all of `bytes` to `stream`, trying first and waiting for room only when the socket
/// is full.
pub(crate) async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(error) if error.kind() == ErrorKind::WouldBlock => stream.writable().await?,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
