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
    order_by_time(
        events
            .map(|e| (happened_at(e), exchange_end(e).is_some(), e))
            .collect(),
    )
}

/// [`in_time_order`]'s placing of any items: `entries` in log order, each with the time it
/// happened and whether it is an exchange (which moves back before entries of a later time;
/// the others keep their place).
///
/// When no entry that keeps its place is earlier than an entry before it (rigd's logs, whose
/// events are stamped as they are written, and an exchange ends before its event is), moving
/// each exchange back is exactly a stable sort by time, done as one: a step per entry moved
/// over made a log with many late exchanges among many lines take quadratic time. Otherwise
/// (a clock stepped back) each exchange is moved back one entry at a time.
pub fn order_by_time<T>(entries: Vec<(Timestamp, bool, T)>) -> Vec<(Timestamp, T)> {
    let mut latest: Option<Timestamp> = None;
    let sorted_as_written = entries.iter().all(|(at, exchange, _)| {
        let in_place = *exchange || latest.is_none_or(|l| *at >= l);
        latest = latest.max(Some(*at));
        in_place
    });
    if sorted_as_written {
        let mut lines: Vec<(Timestamp, T)> = entries
            .into_iter()
            .map(|(at, _, item)| (at, item))
            .collect();
        lines.sort_by_key(|(at, _)| *at);
        return lines;
    }
    let mut lines: Vec<(Timestamp, T)> = Vec::with_capacity(entries.len());
    for (at, exchange, item) in entries {
        let mut place = lines.len();
        if exchange {
            while place > 0 && lines[place - 1].0 > at {
                place -= 1;
            }
        }
        lines.insert(place, (at, item));
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

    /// The placing rule itself, one step at a time: each exchange moves back over the
    /// entries of a later time, the others stay.
    fn step_by_step(entries: &[(i128, bool, usize)]) -> Vec<usize> {
        let mut lines: Vec<(i128, usize)> = Vec::new();
        for &(t, exchange, item) in entries {
            let mut place = lines.len();
            while exchange && place > 0 && lines[place - 1].0 > t {
                place -= 1;
            }
            lines.insert(place, (t, item));
        }
        lines.into_iter().map(|(_, item)| item).collect()
    }

    fn ordered(entries: &[(i128, bool, usize)]) -> Vec<usize> {
        order_by_time(entries.iter().map(|&(t, x, i)| (at(t), x, i)).collect())
            .into_iter()
            .map(|(_, item)| item)
            .collect()
    }

    /// Logs as rigd writes them (lines stamped as written, each exchange logged after it
    /// ended, some late by many lines), and logs whose clock stepped back: the placing is
    /// the rule's in both, whichever way it is computed.
    #[test]
    fn exchanges_are_placed_by_the_rule_in_written_and_in_disordered_logs() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..200 {
            let clock_steps_back = round % 4 == 3;
            let mut now = 0i128;
            let mut entries = Vec::new();
            for item in 0..300 {
                now += next(5) as i128;
                if clock_steps_back && next(50) == 0 {
                    now -= 40;
                }
                let exchange = next(3) == 0;
                let t = if exchange {
                    now - next(60) as i128
                } else {
                    now
                };
                entries.push((t, exchange, item));
            }
            assert_eq!(ordered(&entries), step_by_step(&entries), "round {round}");
        }
    }

    #[test]
    fn an_exchange_logged_late_goes_before_the_lines_written_after_it_ended() {
        // line@10, line@20, exchange ended @15, line@30 (and a tie: exchange @20 after it).
        let entries = [
            (10, false, 0),
            (20, false, 1),
            (15, true, 2),
            (30, false, 3),
            (20, true, 4),
        ];
        assert_eq!(ordered(&entries), [0, 2, 1, 4, 3]);
        // With the clock stepped back (a line @5 after @20), lines keep their order, and an
        // exchange stops at the first entry no later than it.
        let stepped = [(10, false, 0), (20, false, 1), (5, false, 2), (15, true, 3)];
        assert_eq!(ordered(&stepped), [0, 1, 2, 3]);
    }
}
