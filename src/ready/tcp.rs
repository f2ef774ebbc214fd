//! The TCP probe: the endpoint is ready when a connection can be made.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::error::ProbeError;

/// How long one TCP probe may take, name resolution included.
pub(super) const DIAL_TIMEOUT: Duration = Duration::from_millis(200);

/// Connects to `hostport` within [`DIAL_TIMEOUT`] and closes the connection again.
pub(super) async fn probe(hostport: &str) -> Result<(), ProbeError> {
    match tokio::time::timeout(DIAL_TIMEOUT, connect(hostport)).await {
        Ok(result) => result.map(drop),
        Err(_) => Err(ProbeError::TimedOut {
            action: format!("dial tcp {hostport}"),
            after: DIAL_TIMEOUT,
        }),
    }
}

/// How long a connection through a port publisher must stay open to show that something
/// listens behind it.
pub(super) const HOLD: Duration = Duration::from_millis(100);

/// Connects to `hostport` through a port publisher (Docker's `docker-proxy`), which accepts
/// connections as soon as the container runs and closes them at once while nothing in the
/// container listens: ready when the connection stays open for [`HOLD`], or the service
/// speaks first.
pub(super) async fn probe_held(hostport: &str) -> Result<(), ProbeError> {
    let stream = match tokio::time::timeout(DIAL_TIMEOUT, connect(hostport)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(ProbeError::TimedOut {
                action: format!("dial tcp {hostport}"),
                after: DIAL_TIMEOUT,
            })
        }
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(HOLD, stream.peek(&mut first)).await {
        Err(_) | Ok(Ok(1..)) => Ok(()),
        Ok(Ok(0)) => Err(ProbeError::NotReady {
            protocol: "tcp",
            reason: format!(
                "{hostport} accepted the connection and closed it at once: the port is \
                 published, but nothing in the container listens on it yet"
            ),
        }),
        Ok(Err(source)) => Err(ProbeError::Dial {
            addr: hostport.to_owned(),
            source,
        }),
    }
}

/// Opens a TCP connection to `hostport` (no timeout of its own; callers bound it).
///
/// Names are resolved by the system resolver; every resolved address is tried in turn. A
/// connection to a loopback address is announced to [`rig_proxy::probes`] first, so an
/// observing proxy in this process records it as a probe rather than application traffic.
pub(super) async fn connect(hostport: &str) -> Result<TcpStream, ProbeError> {
    let dial_error = |source| ProbeError::Dial {
        addr: hostport.to_owned(),
        source,
    };
    let mut last = None;
    for addr in tokio::net::lookup_host(hostport)
        .await
        .map_err(dial_error)?
    {
        match connect_marked(addr).await {
            Ok(stream) => {
                // Probe requests are tiny; don't let Nagle hold them back. Failing to set the
                // option only costs latency, so the error is ignored.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(dial_error(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses found")
    })))
}

/// Connects to `addr`; for a loopback address from a socket bound first, so its address pair
/// is known and can be marked as a probe before the connection exists.
async fn connect_marked(addr: SocketAddr) -> std::io::Result<TcpStream> {
    if !addr.ip().is_loopback() {
        return TcpStream::connect(addr).await;
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(addr.ip(), 0))?;
    rig_proxy::probes::mark(socket.local_addr()?, addr);
    socket.connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Upstream `TestTCPCheck_Success`.
    #[tokio::test]
    async fn listening_socket_is_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        probe(&addr).await.unwrap();
        // The probe really connected.
        let (_conn, peer) = listener.accept().await.unwrap();
        assert!(peer.ip().is_loopback());
    }

    /// Upstream `TestTCPCheck_Failure`.
    #[tokio::test]
    async fn closed_port_is_refused() {
        let err = probe("127.0.0.1:1").await.unwrap_err();
        assert!(matches!(err, ProbeError::Dial { .. }), "{err:?}");
        assert_eq!(err.to_string(), "dial tcp 127.0.0.1:1: connection refused");
    }

    #[tokio::test]
    async fn address_without_port_is_an_error() {
        let err = probe("127.0.0.1").await.unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("dial tcp 127.0.0.1: "), "{text}");
    }
}
