//! Which TCP ports a service really listens on, read from `/proc`, to say why an ingress did
//! not become ready: the commonest causes are a service that ignores the port rigd gave it
//! (it listens on its own default, 3000 or 8080) and one that listens on the wrong address
//! (a container app on its own loopback, which the published port cannot reach).
//!
//! Only for advice after a readiness failure: it reads the environment and file descriptors
//! of every process of this user, which is no work for a hot path.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `LISTEN` in the `st` column of `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// A listening TCP socket and its inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Socket {
    addr: SocketAddr,
    inode: u64,
}

/// The listening TCP sockets of the network namespace process `pid` is in
/// (`/proc/<pid>/net/tcp` and `tcp6`), sorted by port; empty when they cannot be read.
pub fn in_namespace_of(pid: u32) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = listening(pid).into_iter().map(|s| s.addr).collect();
    addrs.sort_by_key(|a| (a.port(), a.ip()));
    addrs.dedup();
    addrs
}

/// The listening TCP sockets held by the processes of this user whose environment has a
/// `name=value` entry whose value starts with `value_prefix` (a service's run tag), sorted by
/// port. `None` when no such process was found.
pub fn of_tagged(name: &str, value_prefix: &str) -> Option<Vec<SocketAddr>> {
    let pids = tagged(&format!("{name}={value_prefix}"));
    let first = *pids.first()?;
    let inodes: HashSet<u64> = pids.iter().flat_map(|&pid| socket_inodes(pid)).collect();
    let mut addrs: Vec<SocketAddr> = listening(first)
        .into_iter()
        .filter(|s| inodes.contains(&s.inode))
        .map(|s| s.addr)
        .collect();
    addrs.sort_by_key(|a| (a.port(), a.ip()));
    addrs.dedup();
    Some(addrs)
}

/// Advice when nothing answered at `port` although the service's sockets are `listening`
/// (where it listens, as the service sees its addresses), for a probe sent to `loopback`
/// (127.0.0.1 or ::1) of the service's network namespace. `None` when the service listens
/// where the probe goes, so the cause is elsewhere. `port_name` says how the service is told
/// its port (`$PORT`); `fixed` is true when `port` is the same every run (a container's
/// `container_port`), so the service may be set to it instead, and false when rigd picks a new
/// one each run; `own_loopback` names the loopback a probe cannot reach when it comes from
/// outside (a container's), or is `None` when probes come from the same namespace.
pub fn advice(
    listening: &[SocketAddr],
    port: u16,
    port_name: &str,
    fixed: bool,
    own_loopback: Option<&str>,
) -> Option<String> {
    let on_port: Vec<&SocketAddr> = listening.iter().filter(|a| a.port() == port).collect();
    if on_port.is_empty() {
        if listening.is_empty() {
            return Some(format!(
                "nothing it runs listens on a TCP port (it should listen on {port}, given to \
                 it as {port_name})"
            ));
        }
        let ports: Vec<String> = dedup_ports(listening);
        let fix = if fixed {
            format!("make it listen on {port_name}, or on {port} for a fixed port")
        } else {
            format!("make it listen on {port_name} (rigd picks a free port for each run)")
        };
        return Some(format!(
            "it listens on {} {}, not on {port}, the port given to it as {port_name}: {fix}",
            if ports.len() == 1 { "port" } else { "ports" },
            ports.join(", ")
        ));
    }
    if on_port.iter().any(|a| a.ip().is_unspecified()) {
        return None;
    }
    match own_loopback {
        Some(what) if on_port.iter().all(|a| a.ip().is_loopback()) => Some(format!(
            "it listens on {} only, {what}, which the published port cannot reach: make it \
             listen on all addresses (0.0.0.0)",
            join(&on_port)
        )),
        Some(_) => None,
        None if on_port
            .iter()
            .any(|a| a.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)) =>
        {
            None
        }
        None => Some(format!(
            "it listens on {} only, which a connection to 127.0.0.1:{port} does not reach: \
             make it listen on 127.0.0.1 (given to it as $HOST) or on all addresses",
            join(&on_port)
        )),
    }
}

fn join(addrs: &[&SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The distinct ports of `addrs`, in order, at most ten of them named.
fn dedup_ports(addrs: &[SocketAddr]) -> Vec<String> {
    let mut ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();
    ports.dedup();
    let more = ports.len().saturating_sub(10);
    let mut named: Vec<String> = ports.iter().take(10).map(|p| p.to_string()).collect();
    if more > 0 {
        named.push(format!("{more} more"));
    }
    named
}

/// The listening sockets in `/proc/<pid>/net/tcp{,6}`.
fn listening(pid: u32) -> Vec<Socket> {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(parse_line)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One line of `/proc/net/tcp{,6}`: `sl local_address rem_address st ... uid timeout inode`,
/// kept when its state is `LISTEN`.
fn parse_line(line: &str) -> Option<Socket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if *fields.get(3)? != LISTEN {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = parse_ip(ip)?;
    let inode = fields.get(9)?.parse().ok()?;
    Some(Socket {
        addr: SocketAddr::new(ip, port),
        inode,
    })
}

/// An address as `/proc/net/tcp{,6}` writes it: 32-bit words in hex, each in host byte order.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let words: Option<Vec<u32>> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect();
    let bytes: Vec<u8> = words?.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// The inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Processes of this user (never this one) with an environment entry starting with `entry`.
fn tagged(entry: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // SAFETY: geteuid(2) cannot fail.
    let uid = unsafe { libc::geteuid() };
    let me = std::process::id();
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(pid, path)| {
            *pid != me
                && std::fs::metadata(path).is_ok_and(|m| m.uid() == uid)
                && std::fs::read(path.join("environ")).is_ok_and(|environ| {
                    environ
                        .split(|&b| b == 0)
                        .any(|var| var.starts_with(entry.as_bytes()))
                })
        })
        .map(|(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn proc_net_tcp_lines_are_read_as_the_kernel_writes_them() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_line(v4),
            Some(Socket {
                addr: addr("127.0.0.1:8080"),
                inode: 4242
            })
        );
        let v6 = "   0: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_line(v6).unwrap().addr, addr("[::1]:3000"));
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_line(&established), None);
    }

    #[test]
    fn this_process_listening_is_found_in_its_namespace() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let own = listener.local_addr().unwrap();
        assert!(in_namespace_of(std::process::id()).contains(&own));
    }

    #[test]
    fn advice_names_the_ports_a_service_listens_on_instead() {
        // A port rigd picked for this run only: hard-coding it would break the next run.
        let text = advice(&[addr("0.0.0.0:3000")], 41234, "$PORT", false, None).unwrap();
        assert_eq!(
            text,
            "it listens on port 3000, not on 41234, the port given to it as $PORT: make it \
             listen on $PORT (rigd picks a free port for each run)"
        );
        // A container's container_port is the same every run.
        let text = advice(&[addr("0.0.0.0:3000")], 80, "$PORT", true, None).unwrap();
        assert_eq!(
            text,
            "it listens on port 3000, not on 80, the port given to it as $PORT: make it \
             listen on $PORT, or on 80 for a fixed port"
        );
        let none = advice(&[], 41234, "$PORT", false, None).unwrap();
        assert!(
            none.starts_with("nothing it runs listens on a TCP port"),
            "{none}"
        );
    }

    #[test]
    fn advice_about_addresses_depends_on_where_the_probe_comes_from() {
        let v4_loopback = [addr("127.0.0.1:80")];
        assert_eq!(advice(&v4_loopback, 80, "$PORT", true, None), None);
        let container = advice(
            &v4_loopback,
            80,
            "$PORT",
            true,
            Some("the container's loopback"),
        );
        assert!(container
            .unwrap()
            .contains("127.0.0.1:80 only, the container's loopback"),);
        assert_eq!(
            advice(
                &[addr("0.0.0.0:80")],
                80,
                "$PORT",
                true,
                Some("the container's loopback")
            ),
            None
        );
        let v6_only = advice(&[addr("[::1]:80")], 80, "$PORT", true, None).unwrap();
        assert!(
            v6_only.starts_with("it listens on [::1]:80 only"),
            "{v6_only}"
        );
    }
}
