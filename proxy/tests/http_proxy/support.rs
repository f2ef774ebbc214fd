//! The proxy under test, its recorded events, and the clients that drive it.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rig_proxy::http::{serve, HttpSettings, ServeError};
use rig_proxy::{Edge, Observer, TrafficSink};
use rig_types::{ConnectionInfo, Event, EventType, RequestInfo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen promptly before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A body the test clients send.
pub type ClientBody = BoxBody<Bytes, std::io::Error>;

/// Events a proxy recorded, in order.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

struct ChannelSink(mpsc::UnboundedSender<Event>);

impl TrafficSink for ChannelSink {
    fn emit(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

impl Events {
    /// The next event.
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(PATIENCE, self.rx.recv())
            .await
            .expect("the proxy recorded no event in time")
            .expect("the observer stopped")
    }

    /// The next event, which must be a `request.completed`.
    pub async fn request(&mut self) -> RequestInfo {
        let event = self.next().await;
        assert_eq!(event.event_type, EventType::RequestCompleted, "{event:?}");
        *event.request.expect("request.completed without a request")
    }

    /// The next event, which must be a `connection.closed`.
    pub async fn closed(&mut self) -> ConnectionInfo {
        let event = self.next().await;
        assert_eq!(event.event_type, EventType::ConnectionClosed, "{event:?}");
        *event
            .connection
            .expect("connection.closed without a connection")
    }

    /// Asserts that nothing else has been recorded so far.
    pub fn assert_no_more(&mut self) {
        if let Ok(event) = self.rx.try_recv() {
            panic!("unexpected extra event: {event:?}");
        }
    }
}

/// A running proxy on an ephemeral port.
pub struct Proxy {
    pub addr: SocketAddr,
    pub events: Events,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Proxy {
    /// A proxy to `target` with default settings.
    pub async fn start(target: SocketAddr) -> Proxy {
        Proxy::with(target.to_string(), HttpSettings::default()).await
    }

    /// A proxy to `target` with `settings`.
    pub async fn with(target: String, settings: HttpSettings) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (observer, _task) = Observer::spawn(edge(), Arc::new(ChannelSink(tx)), 8192);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, target, observer, settings, cancel.clone()));
        Proxy {
            addr,
            events: Events { rx },
            cancel,
            task: Some(task),
        }
    }

    /// `http://<proxy><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the proxy to shut down, without waiting.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Takes the events, to read them after the proxy is stopped.
    pub fn take_events(&mut self) -> Events {
        let (_, rx) = mpsc::unbounded_channel();
        std::mem::replace(&mut self.events, Events { rx })
    }

    /// Cancels the proxy and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.cancel.cancel();
        let task = self.task.take().expect("stopped twice");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("serve did not return after cancellation")
            .expect("serve panicked")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The edge every test proxy sits on.
pub fn edge() -> Edge {
    Edge {
        source: "~test".into(),
        target: "api".into(),
        ingress: "default".into(),
    }
}

/// What `curl` got.
#[derive(Debug)]
pub struct CurlResponse {
    pub status: u16,
    /// The status line's version, e.g. `HTTP/1.1` or `HTTP/2`.
    pub version: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CurlResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs `/usr/bin/curl -sS -i <args>` and parses its output.
pub async fn curl(args: &[&str]) -> CurlResponse {
    let mut all = vec!["-i"];
    all.extend_from_slice(args);
    parse_curl(&curl_output(&all).await)
}

/// Runs `/usr/bin/curl -sS <args>`, which must succeed, and returns what it printed.
pub async fn curl_output(args: &[&str]) -> Vec<u8> {
    let output = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new("/usr/bin/curl")
            .args(["-sS", "--max-time", "15"])
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("curl did not finish")
    .expect("running /usr/bin/curl");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn parse_curl(mut out: &[u8]) -> CurlResponse {
    loop {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("curl output has no header block");
        let head = String::from_utf8_lossy(&out[..end]).into_owned();
        let body = &out[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        // Interim responses are skipped, and so is the `101` of an h2c upgrade, which the
        // response to the upgraded request follows.
        if (100..200).contains(&status) && (status != 101 || body.starts_with(b"HTTP/")) {
            out = body;
            continue;
        }
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return CurlResponse {
            status,
            version,
            headers,
            body: body.to_vec(),
        };
    }
}

/// A pooled HTTP/1.1 hyper client.
pub fn http1_client() -> Client<HttpConnector, ClientBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A pooled h2c (prior knowledge) hyper client.
pub fn http2_client() -> Client<HttpConnector, ClientBody> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A complete body.
pub fn full(data: impl Into<Bytes>) -> ClientBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// No body.
pub fn empty() -> ClientBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A response read to the end: status, headers, body, trailers.
pub struct Collected {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

/// Sends `request` with `client` and reads the whole response.
pub async fn send(
    client: &Client<HttpConnector, ClientBody>,
    request: http::Request<ClientBody>,
) -> Collected {
    let response = tokio::time::timeout(PATIENCE, client.request(request))
        .await
        .expect("no response in time")
        .expect("request failed");
    let (parts, body) = response.into_parts();
    let collected = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("body did not end in time")
        .expect("body failed");
    let trailers = collected.trailers().cloned();
    Collected {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// Reads a response head off `stream` byte by byte, so nothing after it (a tunnel, another
/// protocol) is read.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "connection closed in the response head");
        head.push(byte[0]);
    }
    head
}

/// For test targets: reads from `stream` into `seen` until a whole message head is there, and
/// takes it out of `seen` (what follows stays); `None` when the connection ends first.
pub async fn next_head(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(seen.drain(..end + 4).collect());
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Everything `stream` receives until the other side closes it, within [`PATIENCE`].
pub async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the connection was not closed in time")
        .expect("reading to the close");
    received
}

/// `n` bytes of a recognisable pattern.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A port with nothing listening on it, kept that way while the returned socket lives: it is
/// bound but not listening, so connections are refused and no parallel test can take the port.
pub async fn dead_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}
