//! When an exchange happened, as opposed to when its event was published: a proxy's
//! observation of an exchange can reach the log well after the exchange ended (a gRPC call's
//! waits for the target's descriptors), so the log's order and its events' timestamps are
//! those of publication. The timeline, `rig traffic` and `rig explain` place an exchange at
//! its end.

use rig_types::{Event, Timestamp};

/// When the exchange of traffic event `e` (an HTTP request or a gRPC call) ended: its start
/// plus its duration (or, without one, its latency); `None` for other events and for
/// exchanges without a start time (upstream's logs).
pub fn exchange_end(e: &Event) -> Option<Timestamp> {
    let (started, duration_ms, latency_ms) = match (&e.request, &e.grpc_call) {
        (Some(r), _) => (r.started_at?, r.duration_ms, r.latency_ms),
        (None, Some(g)) => (g.started_at?, g.duration_ms, g.latency_ms),
        (None, None) => return None,
    };
    let ms = duration_ms.unwrap_or(latency_ms);
    let nanos = if ms.is_finite() && ms > 0.0 {
        (ms * 1e6) as i128
    } else {
        0
    };
    Some(Timestamp::from_unix_nanos(
        started.unix_nanos().saturating_add(nanos),
    ))
}

/// When `e` happened: the end of its exchange ([`exchange_end`]) for an HTTP request or gRPC
/// call that has a start time, else its timestamp.
pub fn happened_at(e: &Event) -> Timestamp {
    exchange_end(e).unwrap_or(e.timestamp)
}

/// `events` (in log order) with the time each happened ([`happened_at`]): an exchange
/// logged after lines of a later time is moved back before them; every other event keeps
/// its place in the log order.
pub fn in_time_order<'e>(events: impl Iterator<Item = &'e Event>) -> Vec<(Timestamp, &'e Event)> {
    let mut lines: Vec<(Timestamp, &Event)> = Vec::new();
    for e in events {
        let at = happened_at(e);
        let mut place = lines.len();
        if exchange_end(e).is_some() {
            // Usually no step back: observations are seldom late.
            while place > 0 && lines[place - 1].0 > at {
                place -= 1;
            }
        }
        lines.insert(place, (at, e));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig_types::{EventType, GrpcCallInfo, RequestInfo};

    fn at(nanos: i128) -> Timestamp {
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + nanos)
    }

    #[test]
    fn an_exchange_ends_at_its_start_plus_its_duration_else_its_latency() {
        let mut e = Event::new(EventType::RequestCompleted);
        e.timestamp = at(90_000_000);
        e.request = Some(Box::new(RequestInfo {
            started_at: Some(at(0)),
            latency_ms: 2.0,
            duration_ms: Some(5.5),
            ..RequestInfo::default()
        }));
        assert_eq!(exchange_end(&e), Some(at(5_500_000)));
        e.request.as_mut().unwrap().duration_ms = None;
        assert_eq!(happened_at(&e), at(2_000_000));
        e.request.as_mut().unwrap().started_at = None;
        assert_eq!(exchange_end(&e), None);
        assert_eq!(
            happened_at(&e),
            at(90_000_000),
            "the timestamp without a start"
        );

        let mut g = Event::new(EventType::GrpcCallCompleted);
        g.grpc_call = Some(Box::new(GrpcCallInfo {
            started_at: Some(at(0)),
            latency_ms: f64::NAN,
            ..GrpcCallInfo::default()
        }));
        assert_eq!(
            exchange_end(&g),
            Some(at(0)),
            "a bad latency counts as none"
        );
    }
}
