//! The HTTP API of rigd.
//!
//! | Method & path | Purpose | Success |
//! |---|---|---|
//! | `GET /health` | liveness | 200 `{"status":"ok","version":..,"api":1}` (upstream: status only) |
//! | `POST /environments` | validate and create an environment (it starts in the background) | 201 `{"id":...}`, plus `"warnings"` naming fields rigd ignored |
//! | `GET /environments` | list registered environments, sorted by name, and those being torn down (`"status":"destroying"`, ours) | 200 array |
//! | `GET /environments/{id}` | resolved view: statuses, ingresses, egresses | 200 object |
//! | `GET /environments/{id}/events` | Server-Sent Events: replay from `Last-Event-ID`, then follow; `?owner=true` binds the environment's life to the stream (ours) | 200 `text/event-stream`; 400 for a `Last-Event-ID` past the last event |
//! | `POST /environments/{id}/events` | client events (`callback.response`, `service.error`, `service.log`, `test.note`) | 204 |
//! | `GET /environments/{id}/log` | every event, `service.log` included | 200 array |
//! | `POST /environments/{id}/sync` | wait until the traffic observed so far is in the log (ours) | 200 `{"seq":N}` |
//! | `POST /environments/{id}/keepalive` | push the TTL deadline out by one TTL (ours) | 204 |
//! | `DELETE /environments/{id}` | tear down and wait (`preserve`, `reason`, `log` parameters) | 200 object |
//!
//! Errors are `{"error": "..."}` (plus `validation_errors` on a 422); an unknown id on any
//! `{id}` route is 404 `environment not found`; a known path with the wrong method is 405
//! (with `Allow`); an unknown path is 404. Every request restarts the idle countdown and
//! passes the security checks of `guard.rs` first.
//!
//! Layout: `state.rs` (registry, TTLs, teardown, shutdown), `environments.rs` and `events.rs`
//! (handlers), `resolved.rs` (the GET view), `sse.rs` (framing and streaming),
//! `client_event.rs` (posted events), `idle.rs`, `ttl.rs`, `owner.rs` (environments that end
//! with their client), `guard.rs`, `response.rs`,
//! `teardown_logs.rs` (log files and summary at teardown).

mod client_event;
mod environments;
mod events;
mod guard;
mod idle;
mod owner;
mod resolved;
mod response;
mod sse;
mod state;
mod teardown_logs;
mod ttl;

#[cfg(test)]
mod tests;

pub use idle::IdleTimer;
pub use owner::REASON_ORPHANED;
pub use sse::HEARTBEAT_INTERVAL;
pub use state::{
    AppState, ServerOptions, ShutdownReport, DEFAULT_ORPHAN_GRACE, REASON_RIGD_SHUTDOWN,
    REASON_TTL_EXPIRED,
};

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use self::response::{json, ApiError};

/// The largest request body accepted (specs carry the client's whole environment; service
/// output arrives in batches).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The API router over `state`. Serve it with `axum::serve`, or call it in tests with
/// `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(
            "/environments",
            post(environments::create).get(environments::list),
        )
        .route(
            "/environments/{id}",
            get(environments::get).delete(environments::delete),
        )
        .route(
            "/environments/{id}/events",
            get(events::stream).post(events::post),
        )
        .route("/environments/{id}/log", get(events::log))
        .route("/environments/{id}/sync", post(events::sync))
        .route(
            "/environments/{id}/keepalive",
            post(environments::keepalive),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(guard::security))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::touch_idle,
        ))
        .with_state(state)
}

/// `GET /health`.
async fn health() -> Response {
    json(
        StatusCode::OK,
        &rig_types::Health::current(env!("CARGO_PKG_VERSION")),
    )
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("not found: no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed on {}", uri.path()),
    )
}
