//! Ports of upstream's `internal/server/eventlog_test.go`, one test per upstream test.

use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rig_types::{EventType, Timestamp};
use tokio_util::sync::CancellationToken;

use super::{lifecycle, log_chunk, poll_once, seqs, types, FlagWaker};
use crate::events::{EventFilter, EventLog, Subscription};

/// Guards against a hang; never used to wait for something to happen.
const PATIENCE: Duration = Duration::from_secs(10);

async fn next(sub: &mut Subscription) -> Option<Arc<rig_types::Event>> {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("subscription did not deliver in time")
}

#[test]
fn publish_and_events() {
    let log = EventLog::new();
    assert_eq!(log.publish(lifecycle(EventType::ServiceStarting, "api")), 1);
    assert_eq!(log.publish(lifecycle(EventType::ServiceReady, "api")), 2);
    let events = log.events();
    assert_eq!(seqs(&events), [1, 2]);
    assert_eq!(
        types(&events),
        [EventType::ServiceStarting, EventType::ServiceReady]
    );
}

#[test]
fn publish_sets_timestamp() {
    let log = EventLog::new();
    let event = lifecycle(EventType::ServiceStarting, "api");
    assert!(event.timestamp.is_zero());
    log.publish(event);
    assert!(!log.events()[0].timestamp.is_zero());
}

#[test]
fn publish_preserves_explicit_timestamp() {
    let log = EventLog::new();
    const AT: &str = "2024-01-02T03:04:05.123456789Z";
    let mut event = lifecycle(EventType::ServiceStarting, "api");
    event.timestamp = AT.parse().unwrap();
    log.publish(event);
    assert_eq!(log.events()[0].timestamp, AT.parse::<Timestamp>().unwrap());
}

#[test]
fn since() {
    let log = EventLog::new();
    for t in [
        EventType::ServiceStarting,
        EventType::ServiceHealthy,
        EventType::ServiceReady,
    ] {
        log.publish(lifecycle(t, "api"));
    }
    assert_eq!(seqs(&log.since(1)), [2, 3]);
}

#[test]
fn since_beyond_end() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    assert!(log.since(5).is_empty());
}

#[test]
fn since_zero() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    assert_eq!(seqs(&log.since(0)), [1, 2]);
}

#[test]
fn wait_for_existing_event() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    let waker = Arc::new(FlagWaker::default());
    let wait = pin!(log.wait_for(|e| e.event_type == EventType::ServiceReady));
    match poll_once(wait, &waker) {
        Poll::Ready(event) => assert_eq!(event.seq, 1),
        Poll::Pending => panic!("an existing match must be returned immediately"),
    }
}

#[test]
fn wait_for_future_event() {
    let log = EventLog::new();
    let waker = Arc::new(FlagWaker::default());
    let mut wait = pin!(log.wait_for(|e| e.event_type == EventType::ServiceReady));
    assert!(poll_once(wait.as_mut(), &waker).is_pending());

    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    assert!(waker.woken(), "a lifecycle publish wakes the waiter");
    assert!(poll_once(wait.as_mut(), &waker).is_pending());

    log.publish(lifecycle(EventType::ServiceReady, "api"));
    match poll_once(wait.as_mut(), &waker) {
        Poll::Ready(event) => {
            assert_eq!(event.seq, 2);
            assert_eq!(event.event_type, EventType::ServiceReady);
        }
        Poll::Pending => panic!("the matching event was published"),
    }
}

#[tokio::test(start_paused = true)]
async fn wait_for_deadline_exceeded() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    let waited = tokio::time::timeout(
        Duration::from_millis(50),
        log.wait_for(|e| e.event_type == EventType::ServiceReady),
    )
    .await;
    assert!(waited.is_err(), "no match: the deadline must expire");
}

#[tokio::test]
async fn subscribe_replay() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    let mut sub = log.subscribe(0, None, CancellationToken::new());
    assert_eq!(next(&mut sub).await.unwrap().seq, 1);
    assert_eq!(next(&mut sub).await.unwrap().seq, 2);
}

#[tokio::test]
async fn subscribe_replay_from_middle() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    let mut sub = log.subscribe(1, None, CancellationToken::new());
    assert_eq!(next(&mut sub).await.unwrap().seq, 2);
}

#[tokio::test]
async fn subscribe_live_events() {
    let log = EventLog::new();
    let mut sub = log.subscribe(0, None, CancellationToken::new());
    let publisher = log.clone();
    let handle = tokio::spawn(async move {
        publisher.publish(lifecycle(EventType::ServiceReady, "api"));
    });
    let event = next(&mut sub).await.unwrap();
    assert_eq!(
        (event.seq, &event.event_type),
        (1, &EventType::ServiceReady)
    );
    handle.await.unwrap();
}

#[tokio::test]
async fn subscribe_filter() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    log.publish(lifecycle(EventType::ServiceStarting, "db"));
    log.publish(lifecycle(EventType::ServiceReady, "db"));
    log.close();
    let filter = EventFilter::matching(|e| e.event_type == EventType::ServiceReady);
    let mut sub = log.subscribe(0, Some(filter), CancellationToken::new());
    let mut got = Vec::new();
    while let Some(event) = next(&mut sub).await {
        got.push(event);
    }
    assert_eq!(seqs(&got), [2, 4]);
    assert!(got.iter().all(|e| e.event_type == EventType::ServiceReady));
}

#[tokio::test]
async fn subscribe_closed_on_cancel() {
    let log = EventLog::new();
    let cancel = CancellationToken::new();
    let mut sub = log.subscribe(0, None, cancel.clone());
    cancel.cancel();
    assert!(next(&mut sub).await.is_none());
}

#[test]
fn events_snapshot_is_independent() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    let before = log.events();
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    assert_eq!(seqs(&before), [1]);
    assert_eq!(seqs(&log.events()), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publish() {
    let log = EventLog::new();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move { log.publish(lifecycle(EventType::ServiceStarting, "api")) })
        })
        .collect();
    let mut returned = Vec::new();
    for task in tasks {
        returned.push(task.await.unwrap());
    }
    returned.sort_unstable();
    let expected: Vec<u64> = (1..=100).collect();
    assert_eq!(returned, expected, "every publish got a distinct seq");
    assert_eq!(seqs(&log.events()), expected);
}

#[test]
fn split_log_events() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(log_chunk("api", "hello\n"));
    log.publish(log_chunk("api", "world\n"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    let all = log.events();
    assert_eq!(seqs(&all), [1, 2, 3, 4]);
    assert_eq!(
        types(&all),
        [
            EventType::ServiceStarting,
            EventType::ServiceLog,
            EventType::ServiceLog,
            EventType::ServiceReady
        ]
    );
    assert_eq!(seqs(&log.lifecycle_events()), [1, 4]);
}

#[test]
fn wait_for_ignores_log_events() {
    let log = EventLog::new();
    let waker = Arc::new(FlagWaker::default());
    let examined = std::sync::atomic::AtomicUsize::new(0);
    let mut wait = pin!(log.wait_for(|e| {
        examined.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        e.event_type == EventType::ServiceLog || e.event_type == EventType::ServiceReady
    }));
    assert!(poll_once(wait.as_mut(), &waker).is_pending());
    for i in 0..100 {
        log.publish(log_chunk("api", &format!("line {i}\n")));
    }
    assert!(
        !waker.woken(),
        "log events must not wake a lifecycle waiter"
    );
    assert!(poll_once(wait.as_mut(), &waker).is_pending());
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    match poll_once(wait.as_mut(), &waker) {
        Poll::Ready(event) => {
            assert_eq!(event.event_type, EventType::ServiceReady);
            assert_eq!(event.seq, 101);
        }
        Poll::Pending => panic!("service.ready was published"),
    }
    assert_eq!(
        examined.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the lifecycle event is examined"
    );
}

#[test]
fn since_with_mixed_events() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(log_chunk("api", "hello\n"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    let since = log.since(1);
    assert_eq!(seqs(&since), [2, 3]);
    assert_eq!(
        types(&since),
        [EventType::ServiceLog, EventType::ServiceReady]
    );
}

#[tokio::test]
async fn subscribe_includes_log_events() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceStarting, "api"));
    log.publish(log_chunk("api", "hello\n"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    let mut sub = log.subscribe(0, None, CancellationToken::new());
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut sub).await.unwrap());
    }
    assert_eq!(seqs(&got), [1, 2, 3]);
    assert_eq!(
        types(&got),
        [
            EventType::ServiceStarting,
            EventType::ServiceLog,
            EventType::ServiceReady
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_publish() {
    let log = EventLog::new();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                if i % 3 == 0 {
                    log.publish(lifecycle(EventType::ServiceStarting, "api"))
                } else {
                    log.publish(log_chunk("api", "line\n"))
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let all = seqs(&log.events());
    assert_eq!(all, (1..=100).collect::<Vec<u64>>());
    let logs = log
        .events()
        .iter()
        .filter(|e| e.event_type == EventType::ServiceLog)
        .count();
    assert_eq!(logs, 66);
    assert_eq!(log.lifecycle_events().len(), all.len() - logs);
}
