//! Test harness for the TCP relay: a collecting sink that can be waited on, a running proxy,
//! target servers and a verifiable byte pattern.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rig_types::{ConnectionInfo, Event, EventType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::observe::{Edge, Observer, TrafficSink};
use crate::tcp::{serve, TcpSettings};

/// Upper bound for any wait in these tests: a failure guard, never a synchronisation.
pub const GUARD: Duration = Duration::from_secs(60);

/// Runs a test body on a two-thread runtime, failing it if it takes longer than [`GUARD`]: a
/// broken relay fails its test instead of hanging the suite.
pub fn run(body: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(guarded("the test", body));
}

/// Awaits `future`, failing the test with `what` if it takes longer than [`GUARD`].
pub async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A sink that keeps every event and lets tests wait for a condition on them.
pub struct Collect(watch::Sender<Vec<Event>>);

impl Collect {
    pub fn new() -> Arc<Collect> {
        Arc::new(Collect(watch::Sender::new(Vec::new())))
    }

    /// Waits until `condition` holds for the events so far, and returns a copy of them.
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let mut rx = self.0.subscribe();
        guarded(what, async {
            let events = rx.wait_for(|events| condition(events)).await;
            events.expect("the sender lives in self").clone()
        })
        .await
    }

    /// Waits until `n` events of type `event_type` were collected.
    pub async fn wait_for_count(&self, event_type: EventType, n: usize) -> Vec<Event> {
        self.wait_for(&format!("{n} {event_type} events"), |events| {
            count(events, &event_type) >= n
        })
        .await
    }

    pub fn events(&self) -> Vec<Event> {
        self.0.borrow().clone()
    }
}

impl TrafficSink for Collect {
    fn emit(&self, event: Event) {
        self.0.send_modify(|events| events.push(event));
    }
}

pub fn count(events: &[Event], event_type: &EventType) -> usize {
    events
        .iter()
        .filter(|e| &e.event_type == event_type)
        .count()
}

/// The connection payload of every event of `event_type`.
pub fn connections(events: &[Event], event_type: EventType) -> Vec<ConnectionInfo> {
    events
        .iter()
        .filter(|e| e.event_type == event_type)
        .map(|e| {
            *e.connection
                .clone()
                .expect("connection events carry a connection")
        })
        .collect()
}

pub fn edge() -> Edge {
    Edge {
        source: "~test".into(),
        target: "db".into(),
        ingress: "default".into(),
    }
}

/// A running TCP proxy in front of `target`.
pub struct Proxy {
    pub addr: SocketAddr,
    pub sink: Arc<Collect>,
    cancel: CancellationToken,
    serve: JoinHandle<()>,
    observer: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr, settings: TcpSettings) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = Collect::new();
        // Large enough that observation never drops in these tests.
        let (observer, observer_task) = Observer::spawn(edge(), sink.clone(), 1 << 16);
        let cancel = CancellationToken::new();
        let serve = tokio::spawn(serve(
            listener,
            target.to_string(),
            observer,
            settings,
            cancel.clone(),
        ));
        Proxy {
            addr,
            sink,
            cancel,
            serve,
            observer: observer_task,
        }
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Cancels the proxy, waits for `serve` and the observer task to finish, and returns every
    /// event.
    pub async fn shutdown(self) -> Vec<Event> {
        self.cancel.cancel();
        guarded("serve to return", self.serve).await.unwrap();
        guarded("the observer to drain", self.observer)
            .await
            .unwrap();
        let events = self.sink.events();
        assert_eq!(
            count(&events, &EventType::ObservationsDropped),
            0,
            "no observation may be dropped in these tests"
        );
        events
    }
}

/// Starts a server on 127.0.0.1 that runs `handler` for every connection.
pub async fn spawn_server<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    });
    addr
}

/// An echo server: writes back everything it reads and half-closes after the client's EOF.
pub async fn spawn_echo() -> SocketAddr {
    spawn_server(|mut stream: TcpStream| async move {
        let (read, mut write) = stream.split();
        let mut read = BufReader::with_capacity(64 * 1024, read);
        if tokio::io::copy_buf(&mut read, &mut write).await.is_ok() {
            let _ = write.shutdown().await;
        }
    })
    .await
}

/// An address on 127.0.0.1 where nothing listens.
pub async fn closed_port() -> (tokio::net::TcpSocket, SocketAddr) {
    // Bound but not listening: connections are refused, and as long as the caller holds the
    // socket no other test can bind the port (a freed port could be reused by a parallel
    // test's listener, which would then see a stray connection).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Reads until EOF, returning what was read; a reset also counts as the end.
pub async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    out
}

/// The period of the test pattern: a prime, so a lost, repeated or reordered chunk of any size
/// that is not a multiple of it shows up as a mismatch.
const PERIOD: usize = 65_521;

/// Two periods of pseudo-random bytes, so any window of one period is a contiguous slice.
static PATTERN: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let block: Vec<u8> = (0..PERIOD)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    [block.as_slice(), block.as_slice()].concat()
});

/// Writes `total` bytes of the test pattern to `writer`.
pub async fn send_pattern(writer: &mut (impl AsyncWriteExt + Unpin), total: u64) {
    let mut sent = 0u64;
    while sent < total {
        let offset = (sent % PERIOD as u64) as usize;
        let len = (total - sent).min(PERIOD as u64) as usize;
        writer
            .write_all(&PATTERN[offset..offset + len])
            .await
            .unwrap();
        sent += len as u64;
    }
}

/// Checks a stream of bytes against the test pattern, chunk by chunk.
#[derive(Default)]
pub struct PatternCheck {
    pub received: u64,
}

impl PatternCheck {
    /// Checks the next chunk; panics on the first byte that differs.
    pub fn check(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let offset = (self.received % PERIOD as u64) as usize;
            let len = chunk.len().min(PERIOD);
            assert!(
                chunk[..len] == PATTERN[offset..offset + len],
                "relayed bytes differ from what was sent, near byte {}",
                self.received
            );
            self.received += len as u64;
            chunk = &chunk[len..];
        }
    }
}

/// Reads `reader` to EOF, checking the pattern; returns the number of bytes read.
pub async fn receive_pattern(reader: &mut (impl AsyncReadExt + Unpin)) -> u64 {
    let mut check = PatternCheck::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            return check.received;
        }
        check.check(&buf[..n]);
    }
}
