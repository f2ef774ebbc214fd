//! Following an environment's events over SSE, surviving dropped connections.
//!
//! [`EventStream::next`] yields the events of `GET /environments/{id}/events` in order. When
//! the connection drops before `environment.down` (rigd restarted its listener, a proxy cut an
//! idle connection, no heartbeat arrived for [`IDLE_TIMEOUT`]), the stream reconnects with
//! `Last-Event-ID` set to the last id seen, so nothing is lost or repeated. Reconnection backs
//! off from 100 ms (or the server's `retry:`) to 2 s and gives up after [`RECONNECT_WINDOW`]
//! without success; a 404 on reconnection means the environment is gone.
//!
//! `next` is cancel-safe: all progress is kept in the stream, so it can be raced in
//! `tokio::select!` without losing events.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::Stream;
use http::{HeaderName, Method, StatusCode};
use http_body_util::BodyExt;
use rig_types::{Event, EventType};
use tokio::time::Instant;

use super::client::{api_error, environment_path, ClientError};
use super::http::{StreamingResponse, Transport};
use super::sse::{SseFrame, SseParser};

/// A connection that delivers nothing, not even rigd's 15 s heartbeat, for this long is
/// considered dead and reopened.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to keep trying to reopen a dropped stream.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(10);
/// How long opening the stream (until the response headers) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// First reconnection delay, unless the server sent `retry:`.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest reconnection delay.
const MAX_RETRY: Duration = Duration::from_secs(2);

const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The events of one environment, in order, across reconnections.
#[derive(Debug)]
pub struct EventStream {
    transport: Transport,
    id: String,
    logs: bool,
    rig_remarks: bool,
    owner: bool,
    /// The last id received from the server (events may still wait in `ready`); where this
    /// stream resumes after a dropped connection.
    last_id: Option<u64>,
    /// The id of the last event handed to the caller by [`EventStream::next`].
    returned_id: Option<u64>,
    live: Option<Live>,
    ready: VecDeque<Result<Event, ClientError>>,
    reconnect: Option<Reconnect>,
    connected_once: bool,
    saw_down: bool,
    finished: bool,
    retry_base: Duration,
    idle_timeout: Duration,
    reconnect_window: Duration,
}

#[derive(Debug)]
struct Live {
    response: StreamingResponse,
    parser: SseParser,
}

/// A reconnection in progress; cleared once the new connection delivers data.
#[derive(Debug)]
struct Reconnect {
    since: Instant,
    attempts: u32,
    last_error: String,
}

impl EventStream {
    pub(crate) fn new(transport: Transport, id: String, last_id: Option<u64>) -> EventStream {
        EventStream {
            transport,
            id,
            logs: false,
            rig_remarks: false,
            owner: false,
            last_id,
            returned_id: last_id,
            live: None,
            ready: VecDeque::new(),
            reconnect: None,
            connected_once: false,
            saw_down: false,
            finished: false,
            retry_base: FIRST_RETRY,
            idle_timeout: IDLE_TIMEOUT,
            reconnect_window: RECONNECT_WINDOW,
        }
    }

    /// Also receive `service.log` events (`?logs=true`), which rigd leaves out by default.
    pub fn with_logs(mut self, logs: bool) -> EventStream {
        self.logs = logs;
        self
    }

    /// Also receive rigd's remarks about services (`service.log` events on the stream `rig`),
    /// even without the rest of the logs (`?logs=rig`).
    pub fn with_rig_remarks(mut self, remarks: bool) -> EventStream {
        self.rig_remarks = remarks;
        self
    }

    /// Follows the stream as the environment's owner (`?owner=true`): the client ends the
    /// environment itself when it is done, so rigd ends it when the client has been gone for
    /// its orphan grace period (30 s by default), e.g. after the process was killed.
    pub fn owning(mut self, owner: bool) -> EventStream {
        self.owner = owner;
        self
    }

    /// Overrides [`IDLE_TIMEOUT`] and [`RECONNECT_WINDOW`].
    pub fn with_timeouts(mut self, idle: Duration, reconnect_window: Duration) -> EventStream {
        self.idle_timeout = idle;
        self.reconnect_window = reconnect_window;
        self
    }

    /// The id of the last event [`EventStream::next`] returned: where a new stream must
    /// resume so that nothing is skipped (events already received but not yet returned are
    /// not counted).
    pub fn last_event_id(&self) -> Option<u64> {
        self.returned_id
    }

    /// The next event. `None` once the server ended the stream after `environment.down`.
    /// An error of kind [`ClientError::BadEvent`] is not fatal (see
    /// [`ClientError::is_recoverable`]); after any other error the stream is finished.
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                if let Ok(event) = &item {
                    if event.seq > 0 {
                        self.returned_id = Some(event.seq);
                    }
                }
                return Some(item);
            }
            if self.finished {
                return None;
            }
            match self.live.as_mut() {
                None => {
                    if let Err(e) = self.connect().await {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
                Some(live) => {
                    let frame = tokio::time::timeout(self.idle_timeout, live.response.body.frame());
                    match frame.await {
                        Err(_) => self.lost(format!(
                            "no data, not even a heartbeat, for {}s",
                            self.idle_timeout.as_secs()
                        )),
                        Ok(None) if self.saw_down => self.finished = true,
                        Ok(None) => self.lost("rigd closed the stream".to_string()),
                        Ok(Some(Err(e))) => self.lost(format!("connection error: {e}")),
                        Ok(Some(Ok(frame))) => {
                            if let Ok(data) = frame.into_data() {
                                self.feed(&data);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Turns this into a [`Stream`] (for combinators); it ends where [`EventStream::next`]
    /// returns `None`.
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, ClientError>> {
        futures_util::stream::unfold(self, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        })
    }

    fn feed(&mut self, data: &[u8]) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        match live.parser.feed(data) {
            Ok(frames) => {
                if let Some(retry) = live.parser.retry() {
                    self.retry_base = retry.max(Duration::from_millis(10));
                }
                // The new connection works: later drops start a fresh reconnection window.
                self.reconnect = None;
                for frame in frames {
                    self.accept(frame);
                }
            }
            Err(e) => {
                self.live = None;
                self.finished = true;
                self.ready.push_back(Err(ClientError::Stream(e)));
            }
        }
    }

    fn accept(&mut self, frame: SseFrame) {
        let frame_id = frame
            .id
            .as_deref()
            .and_then(|s| s.trim().parse::<u64>().ok());
        match serde_json::from_str::<Event>(&frame.data) {
            Ok(event) => {
                let seq = frame_id.unwrap_or(event.seq);
                if seq > 0 {
                    if self.last_id.is_some_and(|last| seq <= last) {
                        return; // Already delivered before a reconnection.
                    }
                    self.last_id = Some(seq);
                }
                if event.event_type == EventType::EnvironmentDown {
                    self.saw_down = true;
                }
                self.ready.push_back(Ok(event));
            }
            Err(source) => {
                if let Some(id) = frame_id {
                    self.last_id = Some(self.last_id.map_or(id, |last| last.max(id)));
                }
                self.ready.push_back(Err(ClientError::BadEvent {
                    id: frame.id.unwrap_or_default(),
                    source,
                }));
            }
        }
    }

    /// Records a dropped connection; the next read reconnects.
    fn lost(&mut self, reason: String) {
        self.live = None;
        match self.reconnect.as_mut() {
            Some(r) => r.last_error = reason,
            None => {
                self.reconnect = Some(Reconnect {
                    since: Instant::now(),
                    attempts: 0,
                    last_error: reason,
                })
            }
        }
    }

    /// Opens the stream, or reopens it after a drop with backoff.
    async fn connect(&mut self) -> Result<(), ClientError> {
        loop {
            if let Some(r) = self.reconnect.as_mut() {
                let delay = self
                    .retry_base
                    .saturating_mul(1 << r.attempts.min(5))
                    .min(MAX_RETRY);
                if r.since.elapsed() + delay > self.reconnect_window {
                    return Err(ClientError::StreamLost {
                        id: self.id.clone(),
                        reason: format!(
                            "{}; could not reconnect within {}s",
                            r.last_error,
                            self.reconnect_window.as_secs()
                        ),
                    });
                }
                r.attempts += 1;
                tokio::time::sleep(delay).await;
            }
            match self.open().await {
                Ok(live) => {
                    self.live = Some(live);
                    self.connected_once = true;
                    return Ok(());
                }
                Err(e) if !self.connected_once => return Err(e),
                Err(e) if e.is_not_found() => {
                    return Err(ClientError::EnvironmentGone {
                        id: self.id.clone(),
                    })
                }
                Err(e) => self.lost(e.to_string()),
            }
        }
    }

    async fn open(&self) -> Result<Live, ClientError> {
        let mut path = format!("{}/events", environment_path(&self.id));
        let query: Vec<&str> = [
            (self.logs, "logs=true"),
            (self.rig_remarks && !self.logs, "logs=rig"),
            (self.owner, "owner=true"),
        ]
        .into_iter()
        .filter_map(|(on, param)| on.then_some(param))
        .collect();
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        let headers: Vec<(HeaderName, String)> = self
            .last_id
            .map(|id| (LAST_EVENT_ID, id.to_string()))
            .into_iter()
            .collect();
        let response = self
            .transport
            .open(Method::GET, &path, &headers, OPEN_TIMEOUT)
            .await?;
        if response.status != StatusCode::OK {
            let status = response.status;
            let body = tokio::time::timeout(
                OPEN_TIMEOUT,
                http_body_util::Limited::new(response.body, 64 * 1024).collect(),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|c| c.to_bytes())
            .unwrap_or_default();
            return Err(api_error(status, &body));
        }
        Ok(Live {
            response,
            parser: SseParser::new(),
        })
    }
}

#[cfg(test)]
mod tests;
