//! In-process tests of the API: requests go through the real router with
//! `tower::ServiceExt::oneshot`, environments run on the real orchestrator.

mod lifecycle;
mod logs;
mod routes;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{app, AppState, ServerOptions};
use crate::orchestrator::{Orchestrator, Settings};
use crate::ports::PortAllocator;
use crate::services::{Registry, RunContext, RunFuture, ServiceType};

/// A service type that runs until told to stop: environments without processes, registered
/// as `custom` in the test registry.
struct Idle;

impl ServiceType for Idle {
    fn run(&self, ctx: RunContext) -> RunFuture {
        Box::pin(async move {
            ctx.cancel.cancelled().await;
            Ok(())
        })
    }
}

/// A service type that, told to stop, says so on `stopping` and then waits for a permit of
/// `gate`: a teardown that is in progress for as long as a test wants. Registered as
/// `custom` by [`Harness::gated`].
struct Gated {
    stopping: Arc<tokio::sync::Notify>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl ServiceType for Gated {
    fn run(&self, ctx: RunContext) -> RunFuture {
        let (stopping, gate) = (self.stopping.clone(), self.gate.clone());
        Box::pin(async move {
            ctx.cancel.cancelled().await;
            stopping.notify_one();
            let _ = gate.acquire().await;
            Ok(())
        })
    }
}

/// A server state over a private temp directory, removed on drop.
pub(super) struct Harness {
    pub(super) state: AppState,
    pub(super) dir: PathBuf,
}

impl Harness {
    pub(super) fn new() -> Harness {
        Harness::with_options(ServerOptions {
            idle_timeout: Duration::ZERO,
            ..ServerOptions::default()
        })
    }

    pub(super) fn with_options(options: ServerOptions) -> Harness {
        let mut registry = Registry::builtin();
        registry.register("custom", Idle);
        Harness::with_registry(options, registry)
    }

    /// A harness whose `custom` services, told to stop, notify the first value returned and
    /// then stop only once the second is given a permit.
    pub(super) fn gated(
        options: ServerOptions,
    ) -> (
        Harness,
        Arc<tokio::sync::Notify>,
        Arc<tokio::sync::Semaphore>,
    ) {
        let stopping = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut registry = Registry::builtin();
        registry.register(
            "custom",
            Gated {
                stopping: stopping.clone(),
                gate: gate.clone(),
            },
        );
        (Harness::with_registry(options, registry), stopping, gate)
    }

    fn with_registry(options: ServerOptions, registry: Registry) -> Harness {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rigd-server-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let orchestrator = Orchestrator::new(
            Arc::new(PortAllocator::new()),
            Arc::new(registry),
            dir.join("tmp"),
            Settings::default(),
        );
        Harness {
            state: AppState::new(orchestrator, options),
            dir,
        }
    }

    pub(super) fn app(&self) -> Router {
        app(self.state.clone())
    }

    /// Sends a request and collects the whole response.
    pub(super) async fn call(&self, req: Request<Body>) -> Reply {
        let resp = self.app().oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("read body");
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Creates an environment and returns its id.
    pub(super) async fn create(&self, spec: Value) -> String {
        let reply = self
            .call(post_json("/environments", &spec.to_string()))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply.json()["id"]
            .as_str()
            .expect("id is a string")
            .to_string()
    }

    /// Opens the SSE stream of `id`.
    pub(super) async fn events(&self, id: &str, last_event_id: Option<&str>) -> SseReader {
        self.events_at(&format!("/environments/{id}/events"), last_event_id)
            .await
    }

    /// Opens the event stream at `uri` (which may carry a query).
    pub(super) async fn events_at(&self, uri: &str, last_event_id: Option<&str>) -> SseReader {
        let mut req = Request::get(uri);
        if let Some(last) = last_event_id {
            req = req.header("Last-Event-ID", last);
        }
        let resp = self
            .app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .expect("router is infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/event-stream",
            "SSE content type"
        );
        SseReader {
            body: Box::pin(resp.into_body().into_data_stream()),
            buffer: String::new(),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A collected response.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Reply {
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; also checks the JSON content type.
    pub(super) fn json(&self) -> Value {
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "content type of {}",
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The `error` field of a JSON error body.
    pub(super) fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.text()))
            .to_string()
    }
}

pub(super) fn request(method: Method, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
}

pub(super) fn post_json(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// One SSE frame.
#[derive(Debug)]
pub(super) struct Frame {
    pub(super) id: u64,
    pub(super) event: String,
    pub(super) data: Value,
}

/// Reads frames from an SSE body.
pub(super) struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, axum::Error>> + Send>>,
    buffer: String,
}

impl SseReader {
    /// The next event frame (heartbeats skipped); `None` when the stream ended.
    pub(super) async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if block.starts_with(':') {
                    continue;
                }
                return Some(parse_frame(&block));
            }
            let chunk = self.body.next().await?.expect("SSE body chunk");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 frames"));
        }
    }

    /// Frames up to and including the first of type `event_type`; panics after `patience`.
    pub(super) async fn until(&mut self, event_type: &str, patience: Duration) -> Vec<Frame> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(patience, async {
            while let Some(frame) = self.next().await {
                let done = frame.event == event_type;
                seen.push(frame);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        match found {
            Ok(true) => seen,
            Ok(false) => panic!("stream ended before {event_type}: {seen:#?}"),
            Err(_) => panic!("no {event_type} within {patience:?}: {seen:#?}"),
        }
    }
}

/// Parses `id: N\nevent: T\ndata: J\n\n`, checking the field order.
fn parse_frame(block: &str) -> Frame {
    let lines: Vec<&str> = block.trim_end_matches('\n').split('\n').collect();
    assert_eq!(lines.len(), 3, "frame {block:?}");
    let id = lines[0]
        .strip_prefix("id: ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("id line in {block:?}"));
    let event = lines[1]
        .strip_prefix("event: ")
        .unwrap_or_else(|| panic!("event line in {block:?}"))
        .to_string();
    let data: Value = serde_json::from_str(
        lines[2]
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("data line in {block:?}")),
    )
    .expect("data is JSON");
    assert_eq!(data["seq"], id, "data seq matches id");
    assert_eq!(data["type"], event.as_str(), "data type matches event");
    Frame { id, event, data }
}
