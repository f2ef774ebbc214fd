//! The proxy's own sockets do not pace their segments.
//!
//! A socket using BBR has its segments paced: without the `fq` queueing discipline, Linux
//! spaces them out itself with a high-resolution timer per burst, and on a virtual machine
//! arming and taking those timers means trips to the hypervisor. BBR is the system default on
//! some distributions and cloud images. The proxy's hops are on loopback or a local bridge,
//! where pacing buys nothing, so when the system default is `bbr` the proxy's sockets (its
//! listeners, whose accepted connections inherit the choice, and the connections it opens) use
//! `cubic` instead, or `reno`, which every process may choose. The client and the target keep
//! whatever the system gives them; other defaults are left alone.
//!
//! Measured on a 2-core VM whose default is `bbr`: bulk TCP through the proxy went from 19–21
//! to 34–39 Gbit/s (direct: 51–57), with no change for small HTTP exchanges.

use std::sync::OnceLock;

use socket2::SockRef;

/// Where Linux says which congestion control new sockets get.
const DEFAULT_CONTROL: &str = "/proc/sys/net/ipv4/tcp_congestion_control";
/// Algorithms that do not pace, most preferred first.
const UNPACED: [&[u8]; 2] = [b"cubic", b"reno"];

/// Makes `socket` send without pacing, when the system default would pace. Best effort: a
/// socket that refuses keeps the default, and only costs more CPU.
pub(crate) fn unpace<'s>(socket: impl Into<SockRef<'s>>) {
    if !default_paces() {
        return;
    }
    let socket = socket.into();
    for name in UNPACED {
        if socket.set_tcp_congestion(name).is_ok() {
            return;
        }
    }
}

/// Whether new sockets get a pacing congestion control (read once).
fn default_paces() -> bool {
    static PACES: OnceLock<bool> = OnceLock::new();
    *PACES.get_or_init(|| std::fs::read_to_string(DEFAULT_CONTROL).is_ok_and(|name| paces(&name)))
}

/// Whether the congestion control named `name` paces its segments.
fn paces(name: &str) -> bool {
    name.trim() == "bbr"
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// The congestion control the proxy's sockets should have on this machine.
    fn expected() -> Vec<Vec<u8>> {
        let default = std::fs::read_to_string(DEFAULT_CONTROL).unwrap();
        if paces(&default) {
            UNPACED.iter().map(|name| name.to_vec()).collect()
        } else {
            vec![default.trim().as_bytes().to_vec()]
        }
    }

    fn assert_unpaced(socket: &TcpStream) {
        let name = SockRef::from(socket).tcp_congestion().unwrap();
        let name: Vec<u8> = name.into_iter().take_while(|&byte| byte != 0).collect();
        let text = String::from_utf8_lossy(&name);
        assert!(expected().contains(&name), "the socket uses {text}");
    }

    #[test]
    fn only_bbr_paces() {
        assert!(paces("bbr\n"));
        assert!(!paces("cubic\n"));
        assert!(!paces("reno"));
    }

    #[test]
    fn accepted_connections_inherit_the_listener_choice() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        crate::listener::prepare(&listener).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_unpaced(&accepted);
    }

    #[tokio::test]
    async fn connections_the_proxy_opens_do_not_pace() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = target.local_addr().unwrap().to_string();
        let http = crate::http::upstream::connect(&addr, std::time::Duration::from_secs(5))
            .await
            .unwrap()
            .into_inner()
            .into_std()
            .unwrap();
        let tcp = crate::tcp::connection::dial(&addr, std::time::Duration::ZERO)
            .await
            .unwrap()
            .into_std()
            .unwrap();
        assert_unpaced(&http);
        assert_unpaced(&tcp);
    }
}
