//! Lossless subscriptions: slow and concurrent readers, cancellation, `close()` and streams.

use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use rig_types::{Event, EventType};
use tokio_util::sync::CancellationToken;

use super::{lifecycle, log_chunk, mixed, poll_once, seqs, traffic, FlagWaker};
use crate::events::{EventFilter, EventLog, Subscription};

/// Guards against a hang; never used to wait for something to happen.
const PATIENCE: Duration = Duration::from_secs(30);

async fn next(sub: &mut Subscription) -> Option<Arc<Event>> {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("subscription did not deliver in time")
}

/// Reads until the subscription ends.
async fn drain(sub: &mut Subscription) -> Vec<Arc<Event>> {
    let mut got = Vec::new();
    while let Some(event) = next(sub).await {
        got.push(event);
    }
    got
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_still_gets_every_event_in_order() {
    const N: u64 = 100_000;
    let log = EventLog::new();
    let mut sub = log.subscribe(0, None, CancellationToken::new());
    for i in 0..N as usize {
        log.publish(mixed(i));
    }
    log.close();
    let got = drain(&mut sub).await;
    assert_eq!(got.len() as u64, N);
    assert!(got.iter().zip(1..).all(|(e, seq)| e.seq == seq));
    assert_eq!(got[1].event_type, EventType::ServiceLog);
    assert_eq!(got[3].event_type, EventType::ConnectionClosed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_reading_alongside_a_publisher_thread_gets_every_event_in_order() {
    const N: u64 = 100_000;
    let log = EventLog::new();
    let mut sub = log.subscribe(0, None, CancellationToken::new());
    let publisher = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..N as usize {
                log.publish(mixed(i));
            }
            log.close();
        })
    };
    let mut expected = 1;
    while let Some(event) = next(&mut sub).await {
        assert_eq!(
            event.seq, expected,
            "events arrive in seq order, none missing"
        );
        expected += 1;
    }
    assert_eq!(expected - 1, N);
    publisher.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_filtered_subscribers_each_see_their_share() {
    const N: usize = 20_000;
    let log = EventLog::new();
    let cancel = CancellationToken::new();
    let mut all = log.subscribe(0, None, cancel.clone());
    let mut no_logs = log.subscribe(0, Some(EventFilter::without_logs()), cancel.clone());
    let mut only_traffic = log.subscribe(0, Some(EventFilter::traffic_only()), cancel.clone());
    let readers = tokio::spawn(async move {
        let (a, b, c) = tokio::join!(
            drain(&mut all),
            drain(&mut no_logs),
            drain(&mut only_traffic)
        );
        (a, b, c)
    });
    let publisher = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                log.publish(mixed(i));
            }
            log.close();
        })
    };
    let (all, no_logs, only_traffic) = readers.await.unwrap();
    publisher.join().unwrap();
    let events = log.events();
    assert_eq!(seqs(&all), seqs(&events));
    let expect = |f: &dyn Fn(&Event) -> bool| -> Vec<u64> {
        events.iter().filter(|e| f(e)).map(|e| e.seq).collect()
    };
    assert_eq!(seqs(&no_logs), expect(&|e| !e.event_type.is_log()));
    assert_eq!(seqs(&only_traffic), expect(&|e| e.event_type.is_traffic()));
    assert_eq!(only_traffic.len(), N / 4);
}

#[tokio::test]
async fn cancelling_ends_next_even_with_events_pending() {
    let log = EventLog::new();
    let cancel = CancellationToken::new();
    let mut sub = log.subscribe(0, None, cancel.clone());
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    assert_eq!(next(&mut sub).await.unwrap().seq, 1);
    cancel.cancel();
    assert!(next(&mut sub).await.is_none());
    log.publish(lifecycle(EventType::ServiceStopped, "api"));
    assert!(next(&mut sub).await.is_none(), "stays ended");
}

#[test]
fn a_subscriber_blocked_in_next_wakes_up_on_cancel() {
    let log = EventLog::new();
    let cancel = CancellationToken::new();
    let mut sub = log.subscribe(0, None, cancel.clone());
    let waker = Arc::new(FlagWaker::default());
    let mut pending = pin!(sub.next());
    assert!(poll_once(pending.as_mut(), &waker).is_pending());
    assert!(!waker.woken());
    cancel.cancel();
    assert!(waker.woken(), "cancel wakes the blocked reader");
    assert!(matches!(
        poll_once(pending.as_mut(), &waker),
        Poll::Ready(None)
    ));
}

#[test]
fn a_subscriber_blocked_in_next_wakes_up_on_publish() {
    let log = EventLog::new();
    let mut sub = log.subscribe(
        0,
        Some(EventFilter::traffic_only()),
        CancellationToken::new(),
    );
    let waker = Arc::new(FlagWaker::default());
    let mut pending = pin!(sub.next());
    assert!(poll_once(pending.as_mut(), &waker).is_pending());
    log.publish(log_chunk("api", "x"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    assert!(
        !waker.woken(),
        "a traffic-only reader sleeps through other stores"
    );
    log.publish(traffic("~test", "api"));
    assert!(waker.woken());
    match poll_once(pending.as_mut(), &waker) {
        Poll::Ready(Some(event)) => assert_eq!(event.seq, 3),
        other => panic!("expected the traffic event, got {other:?}"),
    }
}

#[test]
fn a_subscriber_blocked_in_next_wakes_up_on_close() {
    let log = EventLog::new();
    let mut sub = log.subscribe(
        0,
        Some(EventFilter::traffic_only()),
        CancellationToken::new(),
    );
    let waker = Arc::new(FlagWaker::default());
    let mut pending = pin!(sub.next());
    assert!(poll_once(pending.as_mut(), &waker).is_pending());
    log.close();
    assert!(waker.woken(), "close wakes every reader");
    assert!(matches!(
        poll_once(pending.as_mut(), &waker),
        Poll::Ready(None)
    ));
}

#[tokio::test]
async fn close_delivers_everything_published_before_it_then_ends() {
    let log = EventLog::new();
    let mut early = log.subscribe(0, None, CancellationToken::new());
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(log_chunk("api", "x"));
    log.publish(lifecycle(EventType::EnvironmentDown, ""));
    assert!(!log.is_closed());
    log.close();
    assert!(log.is_closed());
    // Published after close: stored, but not delivered.
    assert_eq!(log.publish(lifecycle(EventType::TestNote, "")), 4);
    log.close(); // idempotent: the first close decides
    let mut late = log.subscribe(1, None, CancellationToken::new());

    assert_eq!(seqs(&drain(&mut early).await), [1, 2, 3]);
    assert!(next(&mut early).await.is_none(), "stays ended");
    assert_eq!(seqs(&drain(&mut late).await), [2, 3]);
    assert_eq!(seqs(&log.events()), [1, 2, 3, 4]);
}

#[tokio::test]
async fn filters_skip_whole_stores_and_apply_predicates() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api")); // 1
    log.publish(log_chunk("api", "x")); // 2
    log.publish(traffic("~test", "api")); // 3
    log.publish(traffic("api", "db")); // 4
    log.publish(lifecycle(EventType::ServiceReady, "db")); // 5
    log.close();
    let run = |filter: EventFilter| {
        let log = log.clone();
        async move { seqs(&drain(&mut log.subscribe(0, Some(filter), CancellationToken::new())).await) }
    };
    assert_eq!(run(EventFilter::all()).await, [1, 2, 3, 4, 5]);
    assert_eq!(run(EventFilter::without_logs()).await, [1, 3, 4, 5]);
    assert_eq!(run(EventFilter::traffic_only()).await, [3, 4]);
    assert_eq!(run(EventFilter::lifecycle_only()).await, [1, 5]);
    assert_eq!(run(EventFilter::logs_only()).await, [2]);
    let from_test = EventFilter::traffic_only()
        .and_matching(|e| e.connection.as_ref().is_some_and(|c| c.source == "~test"));
    assert_eq!(run(from_test).await, [3]);
    let db = EventFilter::matching(|e| e.service == "db" || e.connection.is_some())
        .and_matching(|e| e.event_type != EventType::ConnectionClosed);
    assert_eq!(run(db).await, [5]);
}

#[tokio::test]
async fn replay_from_a_seq_in_a_gap_starts_at_the_next_event() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api")); // 1
    log.publish(log_chunk("api", "x")); // 2
    log.publish(log_chunk("api", "y")); // 3
    log.publish(lifecycle(EventType::ServiceReady, "api")); // 4
    log.close();
    let mut sub = log.subscribe(
        2,
        Some(EventFilter::lifecycle_only()),
        CancellationToken::new(),
    );
    assert_eq!(seqs(&drain(&mut sub).await), [4]);
    let mut beyond = log.subscribe(99, None, CancellationToken::new());
    assert!(drain(&mut beyond).await.is_empty());
}

#[tokio::test]
async fn a_start_beyond_the_end_skips_everything_up_to_it() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    let mut sub = log.subscribe(10, None, CancellationToken::new());
    for i in 0..12 {
        log.publish(mixed(i)); // seqs 2..=13
    }
    log.close();
    assert_eq!(seqs(&drain(&mut sub).await), [11, 12, 13]);
}

#[tokio::test]
async fn into_stream_yields_the_same_events_and_ends_with_the_subscription() {
    let log = EventLog::new();
    for i in 0..10 {
        log.publish(mixed(i));
    }
    log.close();
    let stream = log
        .subscribe(
            0,
            Some(EventFilter::without_logs()),
            CancellationToken::new(),
        )
        .into_stream();
    let got: Vec<Arc<Event>> = tokio::time::timeout(PATIENCE, stream.collect())
        .await
        .expect("stream ended");
    assert_eq!(seqs(&got), [1, 4, 5, 8, 9]);
}

#[tokio::test]
async fn a_dropped_next_future_loses_no_event() {
    let log = EventLog::new();
    let mut sub = log.subscribe(0, None, CancellationToken::new());
    {
        let waker = Arc::new(FlagWaker::default());
        let mut pending = pin!(sub.next());
        assert!(poll_once(pending.as_mut(), &waker).is_pending());
        log.publish(lifecycle(EventType::ServiceReady, "api"));
        assert!(waker.woken());
        // Dropped here without being polled again.
    }
    log.publish(lifecycle(EventType::ServiceStopped, "api"));
    assert_eq!(next(&mut sub).await.unwrap().seq, 1);
    assert_eq!(next(&mut sub).await.unwrap().seq, 2);
}
