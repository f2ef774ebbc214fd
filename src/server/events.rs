//! Handlers of an environment's events: the SSE stream, client-posted events and the full
//! log.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rig_types::EventType;

use super::client_event::{Action, ClientEvent};
use super::response::ApiError;
use super::sse::{event_stream, parse_last_event_id, HEARTBEAT_INTERVAL};
use super::state::AppState;
use crate::events::{EventFilter, Replay, StoreKind};

/// Query parameters of the event stream.
#[derive(serde::Deserialize)]
pub(crate) struct StreamQuery {
    /// `logs=true` also streams `service.log` events (rig-rs addition, used by `rig up --logs`);
    /// `logs=rig` only rigd's remarks among them (stream `rig`, used by `rig up`).
    #[serde(default)]
    logs: Option<String>,
    /// `owner=true`: the client ends the environment itself when done, so rigd ends it when
    /// the client is gone (see [`owner`](super::owner); rig-rs addition, used by the SDK and
    /// `rig up`).
    #[serde(default)]
    owner: Option<String>,
}

/// `GET /environments/{id}/events`: replay from `Last-Event-ID` (exclusive), then follow.
/// Every event except `service.log` is streamed, unless `?logs=true` (all of them) or
/// `?logs=rig` (those of rigd's remarks about services). With `?owner=true` the
/// stream holds the environment: it is torn down once no such stream has been open for the
/// orphan grace period.
pub(crate) async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<StreamQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let entry = state.get(&id).ok_or_else(ApiError::environment_not_found)?;
    // As every error of the API: JSON, not axum's plain-text rejection.
    let Query(query) =
        query.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let from_seq = parse_last_event_id(headers.get("last-event-id").and_then(|v| v.to_str().ok()));
    // Anything else means no logs, as upstream reads it.
    let filter = match query.logs.as_deref() {
        Some("true") => EventFilter::all(),
        Some("rig") => EventFilter::all().and_matching(|event| {
            event.event_type != EventType::ServiceLog
                || event.log.as_ref().is_some_and(|log| log.stream.is_rig())
        }),
        _ => EventFilter::without_logs(),
    };
    let log = entry.instance().log();
    // No event of this log has that number yet: the client's id is from another stream (another
    // environment, or a rigd that has since restarted), and following from it would skip the
    // events it has not seen.
    let last_seq = log.last_seq();
    if from_seq > last_seq {
        return Err(ApiError::bad_request(format!(
            "Last-Event-ID {from_seq} is past the end of environment {id}'s events (the last is \
             {last_seq}): it is not from this environment's stream; reconnect without it to \
             replay from the start"
        )));
    }
    let owner = match query.owner.as_deref() {
        None | Some("false") => None,
        Some("true") => Some(entry.owners().attach()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query: owner must be true or false, not {other:?}"
            )))
        }
    };
    let subscription = log.subscribe(from_seq, Some(filter), state.stream_token());
    let body = Body::from_stream(event_stream(subscription, HEARTBEAT_INTERVAL, owner));
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

/// `POST /environments/{id}/sync`: waits until every exchange the environment's proxies had
/// observed when the request arrived is in the log, then answers `{"seq": N}`, the sequence
/// number of the last event the event stream (without `service.log`) delivers. A client that
/// has read its stream up to `N` has seen the traffic of every exchange that completed before
/// it asked: what it has not seen did not happen (rig-rs addition, for "exactly n calls").
pub(crate) async fn sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let entry = state.get(&id).ok_or_else(ApiError::environment_not_found)?;
    let log = entry.instance().log();
    log.settle_traffic().await;
    let seq = log.last_seq_in(&[StoreKind::Lifecycle, StoreKind::Traffic]);
    Ok(super::response::json(
        StatusCode::OK,
        &serde_json::json!({ "seq": seq }),
    ))
}

/// The largest client event accepted. Its event on the stream is about as long (the same
/// strings, escaped alike, plus a few fields), and well within the line limit of the SDK's
/// stream reader (16 MiB).
pub(crate) const MAX_CLIENT_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// `POST /environments/{id}/events`: a client event (callback response, service error,
/// service output, test note).
pub(crate) async fn post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let entry = state.get(&id).ok_or_else(ApiError::environment_not_found)?;
    let body = body.map_err(|e| ApiError::body("decode body", &e))?;
    if body.len() > MAX_CLIENT_EVENT_BYTES {
        // Its event would be a line longer than readers of the event stream take.
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a client event may be at most {} MiB of JSON, this one is {} bytes: send \
                 service output in smaller pieces",
                MAX_CLIENT_EVENT_BYTES >> 20,
                body.len()
            ),
        ));
    }
    let event = ClientEvent::decode(&body)
        .map_err(|e| ApiError::bad_request(format!("decode body: {e}")))?;
    let action = event
        .into_action()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let instance = entry.instance();
    let (named, required) = match &action {
        Action::Publish(event) => (event.service.as_str(), false),
        Action::FailService { service, .. } => (service.as_str(), true),
    };
    if (required || !named.is_empty()) && !instance.spec().services.contains_key(named) {
        // Failing a service that is not there would fail the whole environment for a typo.
        let services: Vec<&str> = instance
            .spec()
            .services
            .iter()
            .filter(|(_, service)| !service.injected)
            .map(|(name, _)| name.as_str())
            .collect();
        let what = if named.is_empty() {
            "service.error needs \"service\": the service that failed".to_string()
        } else {
            format!(
                "service {named:?} is not in environment {:?}",
                instance.name()
            )
        };
        return Err(ApiError::bad_request(format!(
            "{what} (its services: {})",
            services.join(", ")
        )));
    }
    match action {
        Action::Publish(event) => {
            instance.emit(*event);
        }
        Action::FailService { service, error } => instance.fail_service(&service, &error),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /environments/{id}/log`: every event so far, `service.log` included, in `seq` order,
/// as one JSON array (what [`json`](super::response::json) would write for them all).
///
/// The array is streamed a batch of events at a time, each read (spilled events from disk)
/// and serialised on a blocking thread, so rigd never holds the whole log, nor its JSON, in
/// memory for one request.
pub(crate) async fn log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let entry = state.get(&id).ok_or_else(ApiError::environment_not_found)?;
    let array = JsonArray::new(entry.instance().log().replay());
    let chunks = futures_util::stream::unfold(array, |mut array| async move {
        let (array, chunk) = tokio::task::spawn_blocking(move || {
            let chunk = array.next_chunk();
            (array, chunk)
        })
        .await
        .ok()?;
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk?)), array))
    });
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from_stream(chunks),
    )
        .into_response())
}

/// A replay written out as a JSON array, piece by piece.
struct JsonArray {
    replay: Replay,
    opened: bool,
    empty: bool,
    closed: bool,
}

impl JsonArray {
    fn new(replay: Replay) -> JsonArray {
        JsonArray {
            replay,
            opened: false,
            empty: true,
            closed: false,
        }
    }

    /// The next piece: `[` and the first batch of events, `,`-separated, then the next
    /// batches, then `]` and a newline; `None` after that.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.closed {
            return None;
        }
        let mut out = Vec::new();
        if !self.opened {
            self.opened = true;
            out.push(b'[');
        }
        let Some(batch) = self.replay.next_batch() else {
            self.closed = true;
            out.extend_from_slice(b"]\n");
            return Some(out);
        };
        for event in &batch {
            let mark = out.len();
            if !self.empty {
                out.push(b',');
            }
            // Events always serialise (string keys only); one that did not is left out
            // rather than breaking the array.
            match serde_json::to_writer(&mut out, &**event) {
                Ok(()) => self.empty = false,
                Err(_) => out.truncate(mark),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use rig_types::{Event, EventType, LogStream};

    use super::*;
    use crate::events::EventLog;

    fn streamed(log: &EventLog) -> Vec<u8> {
        let mut array = JsonArray::new(log.replay());
        let mut out = Vec::new();
        while let Some(chunk) = array.next_chunk() {
            out.extend(chunk);
        }
        out
    }

    /// The streamed array is byte for byte what serialising every event at once gives, for
    /// an empty log, one event, and more events than one batch holds.
    #[test]
    fn the_streamed_log_is_the_json_array_of_every_event() {
        let log = EventLog::new();
        for count in [0, 1, 700] {
            while log.last_seq() < count {
                let event = match log.last_seq() % 3 {
                    0 => Event::new(EventType::EnvironmentUp),
                    1 => Event::log("api", LogStream::Stdout, "a line\n"),
                    _ => Event::new(EventType::ConnectionClosed),
                };
                log.publish(event);
            }
            let events = log.events();
            let events: Vec<&Event> = events.iter().map(|e| &**e).collect();
            let mut expected = serde_json::to_vec(&events).unwrap();
            expected.push(b'\n');
            assert_eq!(streamed(&log), expected, "{count} events");
        }
    }
}
