//! Upstream connections shared by client connections on the raw HTTP/1.1 path: parked between
//! exchanges, reused by the next request on the same worker, closed when unused for the idle
//! timeout and when the proxy stops.

use std::net::SocketAddr;
use std::time::Duration;

use rig_proxy::http::HttpSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::origin::Origin;
use crate::raw::read_answer;
use crate::support::{Proxy, PATIENCE};

/// The proxy's worker threads: each keeps idle upstream connections of its own.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sends one GET with `headers` over `client`, checks the answer and its event, and returns
/// the answer's body.
async fn get_with(proxy: &mut Proxy, client: &mut TcpStream, path: &str, headers: &str) -> Vec<u8> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: api\r\n{headers}\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let answer = read_answer(client, &mut Vec::new(), false).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    let r = proxy.events.request().await;
    assert_eq!(
        (r.path.as_str(), r.status_code, r.error.as_str()),
        (path, 200, "")
    );
    answer.body
}

async fn get(proxy: &mut Proxy, client: &mut TcpStream, path: &str) -> Vec<u8> {
    get_with(proxy, client, path, "").await
}

#[tokio::test]
async fn client_connections_share_the_parked_upstream_connections() {
    let origin = Origin::start().await;
    let mut proxy = Proxy::start(origin.addr).await;
    // One request at a time, each on a new client connection that then stays open and idle.
    let clients = 4 * workers() + 2;
    let mut idle = Vec::new();
    for i in 0..clients {
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        get(&mut proxy, &mut client, &format!("/echo?client={i}")).await;
        idle.push(client);
    }
    // Each worker dials once, then reuses what it parked; the idle clients hold none.
    let dialled = origin.connections();
    assert!(
        dialled <= workers(),
        "{clients} client connections made {dialled} upstream connections ({} workers)",
        workers()
    );
    // The parked connections still serve the idle clients' next requests.
    for (i, client) in idle.iter_mut().enumerate() {
        get(&mut proxy, client, &format!("/echo?again={i}")).await;
    }
    assert_eq!(origin.connections(), dialled);
}

/// A keep-alive HTTP/1.1 target that answers every request with the number of the connection
/// it came on (1 for the first accepted) and reports each connection the proxy closes.
async fn keep_alive_target() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut accepted = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted += 1;
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{accepted}");
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let mut buffered = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffered.drain(..end + 4);
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) => {
                            let _ = closed.send(());
                            return;
                        }
                        Ok(n) => buffered.extend_from_slice(&chunk[..n]),
                        Err(_) => return,
                    }
                }
            });
        }
    });
    (addr, closed)
}

#[tokio::test]
async fn a_parked_connection_unused_for_the_idle_timeout_is_closed() {
    let (target, mut closed) = keep_alive_target().await;
    let settings = HttpSettings {
        pool_idle_timeout: Duration::from_millis(200),
        ..HttpSettings::default()
    };
    let mut proxy = Proxy::with(target.to_string(), settings).await;
    // The client stays connected: only the idle timeout can close the upstream connection.
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    get(&mut proxy, &mut client, "/once").await;
    tokio::time::timeout(PATIENCE, closed.recv())
        .await
        .expect("the parked connection was closed after its idle timeout")
        .unwrap();
    // The next request dials again and works.
    get(&mut proxy, &mut client, "/later").await;
}

#[tokio::test]
async fn stopping_the_proxy_closes_its_parked_connections() {
    let (target, mut closed) = keep_alive_target().await;
    let mut proxy = Proxy::start(target).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    get(&mut proxy, &mut client, "/once").await;
    drop(client);
    assert!(
        closed.try_recv().is_err(),
        "parked, not closed, when its client left"
    );
    proxy.stop().await.unwrap();
    tokio::time::timeout(PATIENCE, closed.recv())
        .await
        .expect("the proxy closed its parked connection when it stopped")
        .unwrap();
}

/// NTLM and Negotiate authenticate the connection, not the request: such a client keeps an
/// upstream connection of its own, which no other client's request is sent over.
#[tokio::test]
async fn connection_bound_authentication_keeps_its_own_upstream_connection() {
    let (target, _closed) = keep_alive_target().await;
    let mut proxy = Proxy::start(target).await;
    let mut authenticating = TcpStream::connect(proxy.addr).await.unwrap();
    let negotiate =
        "Authorization: NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==\r\n";
    let first = get_with(&mut proxy, &mut authenticating, "/ntlm/1", negotiate).await;
    let second = get_with(&mut proxy, &mut authenticating, "/ntlm/2", negotiate).await;
    assert_eq!(
        first, second,
        "both legs of the handshake on one connection"
    );

    // Other clients, enough that some are served on the authenticated client's worker.
    let mut others = Vec::new();
    for i in 0..4 * workers() + 1 {
        let mut other = TcpStream::connect(proxy.addr).await.unwrap();
        let plain = get(&mut proxy, &mut other, &format!("/plain/{i}")).await;
        assert_ne!(
            plain, first,
            "another client used the authenticated connection"
        );
        others.push(other);
    }
    // The authenticated client's later requests stay on its connection.
    let third = get(&mut proxy, &mut authenticating, "/after").await;
    assert_eq!(third, first);
}
