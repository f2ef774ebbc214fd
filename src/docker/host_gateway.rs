//! Container → host egress: how a container reaches services and proxies listening on the
//! host's loopback interface.
//!
//! rigd's services and observe-mode proxies listen on `127.0.0.1` only, which a container
//! cannot reach: its `127.0.0.1` is its own. Containers get the extra host
//! `host.docker.internal:host-gateway` (the default bridge's gateway address, an address of
//! the host), and for each egress of a container whose target listens on loopback, rigd
//! listens on `<gateway>:<same port>` and relays every connection to `127.0.0.1:<port>`:
//!
//! ```text
//!  container ──► host.docker.internal:P  (172.17.0.1:P, this relay) ──► 127.0.0.1:P
//!                                                                        (proxy or service)
//! ```
//!
//! Only the ports a container's egresses name are opened on the gateway address, and only
//! while that container runs: nothing else leaves loopback, and the gateway address is not
//! reachable from outside the host. Every container on the bridge can reach that address, so
//! the relays serve the container they were opened for only ([`Peers`]): a connection from
//! any other address is closed at once. In observe mode the relay forwards to the edge's proxy,
//! so the traffic is recorded on the edge like any other.
//!
//! A side that resets its connection gets the other side's reset too (a zero `SO_LINGER`
//! before closing, as rig-proxy's TCP relay does), so that a stream cut short never looks
//! complete to the container.
//!
//! The relay binds the same port number as the loopback target when it can, so the
//! container's wiring is upstream's (`host.docker.internal:<port>`); if that port is taken on
//! the gateway address it takes a free one, and the wiring names that one.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bollard::Docker;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};

/// The name of the default bridge network, whose gateway `host-gateway` resolves to.
const BRIDGE_NETWORK: &str = "bridge";
/// Relay buffer per direction (the relay is on the path of every byte a container sends
/// to the host).
const RELAY_BUFFER: usize = 64 * 1024;

/// The host's address on Docker's default bridge (`docker0`, usually `172.17.0.1`): what
/// `host.docker.internal` resolves to inside a container started with
/// `host.docker.internal:host-gateway`.
///
/// # Errors
/// The engine does not answer, or its default bridge has no IPv4 subnet.
pub async fn bridge_gateway(docker: &Docker) -> Result<IpAddr, String> {
    let network = docker
        .inspect_network(
            BRIDGE_NETWORK,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .map_err(|e| format!("inspect Docker network {BRIDGE_NETWORK:?}: {e}"))?;
    let configs = network
        .ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .into_iter()
        .map(|config| (config.gateway, config.subnet));
    ipv4_gateway(configs).ok_or_else(|| {
        format!(
            "Docker network {BRIDGE_NETWORK:?} has no IPv4 gateway: containers cannot \
             reach the host (is the engine started with --bridge=none?)"
        )
    })
}

/// The first IPv4 gateway among a network's IPAM configs (`(gateway, subnet)`). A config
/// that names a subnet but no gateway (some engines leave the default bridge's out) has the
/// subnet's first address, which is the one Docker gives the bridge then.
fn ipv4_gateway(
    configs: impl IntoIterator<Item = (Option<String>, Option<String>)>,
) -> Option<IpAddr> {
    configs
        .into_iter()
        .find_map(|(gateway, subnet)| match gateway {
            Some(gateway) => gateway.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            None => first_address(subnet.as_deref()?).map(IpAddr::V4),
        })
}

/// The first host address of an IPv4 subnet in CIDR form (`172.17.0.0/16` → `172.17.0.1`).
fn first_address(subnet: &str) -> Option<Ipv4Addr> {
    let (network, prefix) = subnet.split_once('/')?;
    let network: Ipv4Addr = network.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|&p| p <= 30)?;
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Some(Ipv4Addr::from((u32::from(network) & mask) + 1))
}

/// Who may connect to a [`HostGateway`]'s relays.
#[derive(Clone)]
pub enum Peers {
    /// Container `name` only: its addresses on the engine's networks, looked up when it first
    /// connects (it runs by then) and kept.
    Container {
        /// The engine.
        docker: Docker,
        /// The container's name.
        name: String,
        /// Its addresses, once looked up.
        addresses: Arc<tokio::sync::OnceCell<Vec<IpAddr>>>,
    },
    /// This address only.
    Address(IpAddr),
}

impl Peers {
    /// The relays of container `name`.
    pub fn container(docker: &Docker, name: &str) -> Peers {
        Peers::Container {
            docker: docker.clone(),
            name: name.to_string(),
            addresses: Arc::default(),
        }
    }

    /// Whether a connection from `peer` is served. A container whose addresses cannot be
    /// looked up is refused, and rigd's output says why.
    async fn allow(&self, peer: IpAddr) -> bool {
        match self {
            Peers::Address(only) => *only == peer,
            Peers::Container {
                docker,
                name,
                addresses,
            } => {
                let found = addresses
                    .get_or_try_init(|| container_addresses(docker, name))
                    .await;
                match found {
                    Ok(addresses) => addresses.contains(&peer),
                    Err(e) => {
                        eprintln!(
                            "rigd: host-gateway relay of container {name}: refused a \
                             connection from {peer}: {e}"
                        );
                        false
                    }
                }
            }
        }
    }
}

/// The addresses of container `name` on the networks it is attached to.
async fn container_addresses(docker: &Docker, name: &str) -> Result<Vec<IpAddr>, String> {
    let inspected = docker
        .inspect_container(name, None)
        .await
        .map_err(|e| format!("inspect the container: {e}"))?;
    let addresses: Vec<IpAddr> = inspected
        .network_settings
        .and_then(|settings| settings.networks)
        .unwrap_or_default()
        .values()
        .filter_map(|network| network.ip_address.as_deref()?.parse().ok())
        .collect();
    if addresses.is_empty() {
        return Err("it has no address on any network yet".to_string());
    }
    Ok(addresses)
}

/// Relays from the bridge gateway to loopback ports, for as long as it lives.
///
/// Dropping it stops accepting and ends the relayed connections.
pub struct HostGateway {
    /// Loopback port → the port on the gateway address that relays to it.
    ports: BTreeMap<u16, u16>,
    _stop: DropGuard,
}

impl HostGateway {
    /// Listens on `gateway` for each of `loopback_ports` (the same port number when free
    /// there, else any free port) and relays connections from `peers` to `127.0.0.1:<port>`.
    ///
    /// # Errors
    /// A port cannot be bound on `gateway` at all (the address is not the host's, as with a
    /// remote `DOCKER_HOST`).
    pub async fn open(
        gateway: IpAddr,
        loopback_ports: impl IntoIterator<Item = u16>,
        peers: Peers,
    ) -> Result<HostGateway, String> {
        let stop = CancellationToken::new();
        let mut ports = BTreeMap::new();
        for port in loopback_ports {
            if ports.contains_key(&port) {
                continue;
            }
            let listener = bind(gateway, port).await.map_err(|e| {
                format!(
                    "listen on the Docker bridge gateway {gateway} so that the container can \
                     reach 127.0.0.1:{port} of the host: {e}{}",
                    not_local_advice(gateway, &e)
                )
            })?;
            let outside = listener
                .local_addr()
                .map_err(|e| format!("relay for 127.0.0.1:{port}: {e}"))?
                .port();
            ports.insert(port, outside);
            tokio::spawn(accept_loop(listener, port, peers.clone(), stop.clone()));
        }
        Ok(HostGateway {
            ports,
            _stop: stop.drop_guard(),
        })
    }

    /// The gateway port that relays to loopback `port`, if one was opened for it.
    pub fn port_for(&self, port: u16) -> Option<u16> {
        self.ports.get(&port).copied()
    }

    /// Loopback port → gateway port, for every relay.
    pub fn ports(&self) -> &BTreeMap<u16, u16> {
        &self.ports
    }
}

/// What to do when the gateway is not an address of this machine (`EADDRNOTAVAIL`): the
/// engine's bridge is in another network namespace or machine, so nothing rigd runs on this
/// host's loopback is reachable from the container through it.
fn not_local_advice(gateway: IpAddr, error: &io::Error) -> String {
    if error.kind() != io::ErrorKind::AddrNotAvailable {
        return String::new();
    }
    format!(
        ". {gateway} is not an address of this machine: the Docker engine's bridge network is \
         not on it, as with rootless Docker (the bridge lives in the engine's own network \
         namespace), Docker Desktop (in its VM) or a remote DOCKER_HOST. A container's \
         egresses to services and proxies rigd runs on the host need a rootful engine on this \
         machine (`docker context use default`, or DOCKER_HOST=unix:///var/run/docker.sock); \
         otherwise give the container no egress to host services"
    )
}

/// Binds `gateway:port`, or `gateway:<any>` when that port is taken on the gateway address.
async fn bind(gateway: IpAddr, port: u16) -> io::Result<TcpListener> {
    match TcpListener::bind(SocketAddr::new(gateway, port)).await {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            TcpListener::bind(SocketAddr::new(gateway, 0)).await
        }
        other => other,
    }
}

async fn accept_loop(listener: TcpListener, port: u16, peers: Peers, stop: CancellationToken) {
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((inbound, from)) => {
                let (peers, stop) = (peers.clone(), stop.clone());
                tokio::spawn(async move {
                    // Dropped (closed) unless it comes from the container.
                    if peers.allow(from.ip()).await {
                        relay(inbound, target, stop).await;
                    }
                });
            }
            // Per-connection failures (the peer reset before accept) and fd exhaustion:
            // keep serving; a short pause avoids spinning on the latter.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// One connection: dial the loopback target and copy both ways until both sides are done.
/// A target that refuses the connection closes the inbound one, as the target itself would.
/// A side that resets the connection (a read fails) has the relay reset the other side too,
/// so that a stream cut short is not taken for a complete one.
async fn relay(mut inbound: TcpStream, target: SocketAddr, stop: CancellationToken) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (inbound_read, inbound_write) = inbound.split();
    let (outbound_read, outbound_write) = outbound.split();
    let up = pump(inbound_read, outbound_write);
    let down = pump(outbound_read, inbound_write);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let reset = tokio::select! {
            _ = stop.cancelled() => return,
            reset = &mut up, if !up_done => { up_done = true; reset }
            reset = &mut down, if !down_done => { down_done = true; reset }
        };
        if reset {
            // Both streams close when this returns: the one whose peer is still there with
            // a reset (set by `pump`).
            return;
        }
    }
}

/// Copies `src` to `dst` until `src` ends, then half-closes `dst`. True when reading `src`
/// failed (its peer reset the connection): `dst` is then set to reset its connection when it
/// is closed, instead of ending it cleanly.
async fn pump(
    mut src: tokio::net::tcp::ReadHalf<'_>,
    mut dst: tokio::net::tcp::WriteHalf<'_>,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; RELAY_BUFFER];
    loop {
        match src.read(&mut buf).await {
            Ok(0) => {
                let _ = dst.shutdown().await;
                return false;
            }
            Ok(n) => {
                if dst.write_all(&buf[..n]).await.is_err() {
                    // The destination is gone; its side of the relay learns it from its own
                    // socket.
                    return false;
                }
            }
            Err(_) => {
                let _ = dst.as_ref().set_zero_linger();
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn a_bridge_without_a_gateway_uses_its_subnets_first_address() {
        let gateway = |g: Option<&str>, s: Option<&str>| (g.map(String::from), s.map(String::from));
        let named = [gateway(Some("172.18.0.1"), Some("172.18.0.0/16"))];
        assert_eq!(ipv4_gateway(named), Some("172.18.0.1".parse().unwrap()));
        // Docker 20.10 started without --bip lists the default bridge's subnet only.
        let unnamed = [gateway(None, Some("172.17.0.0/16"))];
        assert_eq!(ipv4_gateway(unnamed), Some("172.17.0.1".parse().unwrap()));
        let v6_first = [
            gateway(Some("fd00::1"), Some("fd00::/64")),
            gateway(None, Some("10.1.2.0/24")),
        ];
        assert_eq!(ipv4_gateway(v6_first), Some("10.1.2.1".parse().unwrap()));
        assert_eq!(ipv4_gateway([gateway(None, None)]), None);
        assert_eq!(ipv4_gateway([]), None);
        assert_eq!(
            first_address("10.0.0.0/8"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            first_address("192.168.5.77/24"),
            Some("192.168.5.1".parse().unwrap())
        );
        assert_eq!(
            first_address("10.0.0.0/31"),
            None,
            "no host addresses to spare"
        );
        assert_eq!(first_address("fd00::/64"), None);
        assert_eq!(first_address("10.0.0.0"), None);
    }

    /// Where the tests' clients connect from.
    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A connection from another address than the relay's peer is closed unserved; one
    /// from the peer's address is relayed.
    #[tokio::test]
    async fn only_the_peer_it_was_opened_for_is_relayed() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = target.accept().await {
                let _ = s.write_all(b"served").await;
            }
        });
        let gateway: IpAddr = "127.0.0.2".parse().unwrap();
        let peer: IpAddr = "127.0.0.3".parse().unwrap();
        let relays = HostGateway::open(gateway, [port], Peers::Address(peer))
            .await
            .unwrap();
        let relay = SocketAddr::new(gateway, relays.port_for(port).unwrap());
        let read_all = |mut s: TcpStream| async move {
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got).await;
            got
        };

        let stranger = TcpStream::connect(relay).await.unwrap();
        assert_eq!(stranger.local_addr().unwrap().ip(), LOOPBACK);
        assert_eq!(read_all(stranger).await, b"", "a stranger is not relayed");

        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(peer, 0)).unwrap();
        let own = socket.connect(relay).await.unwrap();
        assert_eq!(read_all(own).await, b"served");
    }

    /// Loopback stands in for the gateway address: the relay's job is the same.
    #[tokio::test]
    async fn relays_both_ways_on_the_same_port_number_when_free_and_stops_when_dropped() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        let echo = tokio::spawn(async move {
            let (mut s, _) = target.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        // 127.0.0.2 is loopback too, and its port `port` is free.
        let gateway: IpAddr = "127.0.0.2".parse().unwrap();
        let relays = HostGateway::open(gateway, [port, port], Peers::Address(LOOPBACK))
            .await
            .unwrap();
        assert_eq!(relays.ports().len(), 1, "one relay per port");
        assert_eq!(relays.port_for(port), Some(port));

        let mut client = TcpStream::connect((gateway, port)).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        echo.await.unwrap();

        drop(relays);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while TcpStream::connect((gateway, port)).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still listening");
            tokio::task::yield_now().await;
        }
    }

    /// A target that resets the connection after 1000 bytes: the client through the relay
    /// gets the bytes and then a reset too, not a clean end that would make a cut-short
    /// stream look complete.
    #[tokio::test]
    async fn a_reset_from_the_target_reaches_the_client_as_a_reset() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        let (received, reset) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut s, _) = target.accept().await.unwrap();
            s.write_all(&[b'x'; 1000]).await.unwrap();
            // Once the client has the bytes: they are not lost with the reset.
            let _ = reset.await;
            s.set_zero_linger().unwrap();
            drop(s);
        });
        let gateway: IpAddr = "127.0.0.4".parse().unwrap();
        let relays = HostGateway::open(gateway, [port], Peers::Address(LOOPBACK))
            .await
            .unwrap();
        let mut client = TcpStream::connect((gateway, relays.port_for(port).unwrap()))
            .await
            .unwrap();
        let mut first = [0u8; 1000];
        client.read_exact(&mut first).await.unwrap();
        received.send(()).unwrap();
        server.await.unwrap();
        let mut got = Vec::new();
        let end = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            client.read_to_end(&mut got),
        )
        .await
        .expect("the relayed connection ends");
        assert_eq!(got.len(), 0, "nothing after the reset");
        let err = end.expect_err("a reset, not a clean end");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }

    #[tokio::test]
    async fn takes_another_port_when_the_same_number_is_taken_on_the_gateway() {
        let gateway: IpAddr = "127.0.0.3".parse().unwrap();
        let taken = TcpListener::bind((gateway, 0)).await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let relays = HostGateway::open(gateway, [port], Peers::Address(LOOPBACK))
            .await
            .unwrap();
        let outside = relays.port_for(port).unwrap();
        assert_ne!(outside, port);
        assert!(TcpStream::connect((gateway, outside)).await.is_ok());
    }

    #[tokio::test]
    async fn an_address_not_of_this_host_is_a_clear_error() {
        // TEST-NET-1: never assigned to an interface here.
        let err = match HostGateway::open(
            "192.0.2.1".parse().unwrap(),
            [8080],
            Peers::Address(LOOPBACK),
        )
        .await
        {
            Err(e) => e,
            Ok(_) => panic!("bound an address of no interface"),
        };
        assert!(
            err.starts_with("listen on the Docker bridge gateway 192.0.2.1"),
            "{err}"
        );
        assert!(
            err.contains("192.0.2.1 is not an address of this machine")
                && err.contains("rootless Docker"),
            "the error says why and what to do: {err}"
        );
    }
}
