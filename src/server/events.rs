//! Handlers of an environment's events: the SSE stream, client-posted events and the full
//! log.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_event::{Action, ClientEvent};
use super::response::{json, ApiError};
use super::sse::{event_stream, parse_last_event_id, HEARTBEAT_INTERVAL};
use super::state::AppState;
use crate::events::EventFilter;

/// Query parameters of the event stream.
#[derive(serde::Deserialize)]
pub(crate) struct StreamQuery {
    /// `logs=true` also streams `service.log` events (rig-rs addition, used by `rig up --logs`).
    #[serde(default)]
    logs: Option<String>,
}

/// `GET /environments/{id}/events`: replay from `Last-Event-ID` (exclusive), then follow.
/// Every event except `service.log` is streamed, unless `?logs=true`.
pub(crate) async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let entry = state.get(&id).ok_or_else(ApiError::environment_not_found)?;
    let from_seq = parse_last_event_id(headers.get("last-event-id").and_then(|v| v.to_str().ok()));
    let filter = if query.logs.as_deref() == Some("true") {
        EventFilter::all()
    } else {
        EventFilter::without_logs()
    };
    let subscription =
        entry
            .instance()
            .log()
            .subscribe(from_seq, Some(filter), state.stream_token());
    let body = Body::from_stream(event_stream(subscription, HEARTBEAT_INTERVAL));
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONNECTION, HeaderValue::from_static("keep-alive")),
        ],
        body,
    )
        .into_response())
}

/// `POST /environments/{id}/events`: a client event (callback response, service error,
/// service output, test note).
pub(crate) async fn post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let entry = state.get(&id).ok_or_else(ApiError::environment_not_found)?;
    let body =
        body.map_err(|e| ApiError::bad_request(format!("decode body: {}", e.body_text())))?;
    let event = ClientEvent::decode(&body)
        .map_err(|e| ApiError::bad_request(format!("decode body: {e}")))?;
    let action = event
        .into_action()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let instance = entry.instance();
    match action {
        Action::Publish(event) => {
            instance.emit(*event);
        }
        Action::FailService { service, error } => instance.fail_service(&service, &error),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /environments/{id}/log`: every event so far, `service.log` included, in `seq` order.
pub(crate) async fn log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let entry = state.get(&id).ok_or_else(ApiError::environment_not_found)?;
    let events = entry.instance().log().events();
    let events: Vec<&rig_types::Event> = events.iter().map(|e| &**e).collect();
    Ok(json(StatusCode::OK, &events))
}
