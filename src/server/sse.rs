//! Server-Sent Events framing and the event stream behind `GET /environments/{id}/events`.
//!
//! Each event is one frame, fields in this order, compact single-line JSON:
//!
//! ```text
//! id: <seq>
//! event: <type>
//! data: {"seq":<seq>,"type":"<type>",...}
//! <blank line>
//! ```
//!
//! The stream is a lossless cursor over the environment's log (see
//! [`Subscription`](crate::events::Subscription)): a slow reader slows only itself and never
//! loses an event. While nothing happens, a comment line (`: keepalive`) is sent every
//! [`HEARTBEAT_INTERVAL`] so proxies and clients can tell a quiet stream from a dead one.
//! The stream ends when the client disconnects (the body is dropped), when the environment is
//! torn down and its log closed (after every event up to `environment.down` was sent), or
//! when rigd shuts down.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use rig_types::Event;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::owner::OwnerGuard;
use crate::events::Subscription;

/// How often a quiet stream sends a heartbeat comment.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// The heartbeat frame: an SSE comment, ignored by every client.
pub(crate) const HEARTBEAT: &[u8] = b": keepalive\n\n";

/// Formats one event as an SSE frame (`id:`, `event:`, `data:`, blank line).
pub(crate) fn frame(event: &Event) -> Result<Bytes, serde_json::Error> {
    let data = serde_json::to_string(event)?;
    // The type goes on a line of its own; a line break in it (impossible for the types rigd
    // emits) would split the frame, so drop any.
    let event_type: String = event
        .event_type
        .as_str()
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    let mut out = String::with_capacity(data.len() + event_type.len() + 32);
    out.push_str("id: ");
    out.push_str(&event.seq.to_string());
    out.push_str("\nevent: ");
    out.push_str(&event_type);
    out.push_str("\ndata: ");
    // serde_json escapes control characters inside strings, so the JSON is one line.
    out.push_str(&data);
    out.push_str("\n\n");
    Ok(Bytes::from(out))
}

/// Parses a `Last-Event-ID` header value: an unsigned decimal sequence number, anything else
/// (or no header) meaning "from the start".
pub(crate) fn parse_last_event_id(value: Option<&str>) -> u64 {
    value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// The body stream of an SSE response: the subscription's events as frames, with a heartbeat
/// after every `heartbeat` of silence. `owner`, if any, is held until the stream is dropped
/// (the client disconnected or the stream ended).
pub(crate) fn event_stream(
    subscription: Subscription,
    heartbeat: Duration,
    owner: Option<OwnerGuard>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = StreamState {
        subscription,
        ticker,
        _owner: owner,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok(chunk), state))
    })
}

struct StreamState {
    subscription: Subscription,
    ticker: Interval,
    _owner: Option<OwnerGuard>,
}

impl StreamState {
    /// The next frame or heartbeat; `None` when the subscription ended.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            tokio::select! {
                // `Subscription::next` is cancel-safe: losing the race to the ticker loses
                // no event.
                event = self.subscription.next() => {
                    let event = event?;
                    self.ticker.reset();
                    match frame(&event) {
                        Ok(bytes) => return Some(bytes),
                        Err(e) => {
                            eprintln!("rigd: skipping event {} in SSE stream: {e}", event.seq);
                            continue;
                        }
                    }
                }
                _ = self.ticker.tick() => return Some(Bytes::from_static(HEARTBEAT)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventFilter, EventLog};
    use futures_util::StreamExt;
    use rig_types::EventType;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn frame_has_id_event_data_in_order_and_compact_json() {
        let mut event = Event::for_service(EventType::ServiceFailed, "api")
            .with_error("exit status 1\nsecond line");
        event.seq = 42;
        event.environment = "orders".into();
        let bytes = frame(&event).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.len(), 5, "{text:?}");
        assert_eq!(lines[0], "id: 42");
        assert_eq!(lines[1], "event: service.failed");
        let data = lines[2].strip_prefix("data: ").expect("data line");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "");
        let back: Event = serde_json::from_str(data).unwrap();
        assert_eq!(back, event);
        assert!(!data.contains(": "), "not compact: {data}");
        assert!(data.starts_with(r#"{"seq":42,"type":"service.failed","environment":"orders""#));
    }

    #[test]
    fn last_event_id_parsing() {
        assert_eq!(parse_last_event_id(None), 0);
        assert_eq!(parse_last_event_id(Some("17")), 17);
        assert_eq!(parse_last_event_id(Some("-1")), 0);
        assert_eq!(parse_last_event_id(Some("abc")), 0);
        assert_eq!(parse_last_event_id(Some(" 3")), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_stream_sends_heartbeats_then_events() {
        let log = EventLog::new();
        let sub = log.subscribe(
            0,
            Some(EventFilter::without_logs()),
            CancellationToken::new(),
        );
        let stream = event_stream(sub, Duration::from_secs(15), None);
        tokio::pin!(stream);
        let start = Instant::now();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(&first[..], HEARTBEAT);
        assert_eq!(start.elapsed(), Duration::from_secs(15));
        log.publish(Event::log("api", rig_types::LogStream::Stdout, "hidden"));
        log.publish(Event::new(EventType::EnvironmentUp));
        let next = stream.next().await.unwrap().unwrap();
        assert!(std::str::from_utf8(&next)
            .unwrap()
            .starts_with("id: 2\nevent: environment.up\n"));
    }

    #[tokio::test]
    async fn stream_ends_when_the_token_is_cancelled() {
        let log = EventLog::new();
        let token = CancellationToken::new();
        log.publish(Event::new(EventType::EnvironmentUp));
        let sub = log.subscribe(0, Some(EventFilter::without_logs()), token.clone());
        let stream = event_stream(sub, HEARTBEAT_INTERVAL, None);
        tokio::pin!(stream);
        assert!(stream.next().await.is_some());
        token.cancel();
        assert!(stream.next().await.is_none());
    }
}
