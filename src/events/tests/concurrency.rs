//! The three stores under concurrent publishers, `since` across gaps, and store routing.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use rig_types::{Event, EventType};

use super::{lifecycle, log_chunk, mixed, poll_once, seqs, traffic, FlagWaker};
use crate::events::EventLog;

#[test]
fn events_are_routed_to_three_stores_sharing_one_counter() {
    let log = EventLog::new();
    assert!(log.is_empty());
    assert_eq!(log.last_seq(), 0);
    assert_eq!(log.publish(lifecycle(EventType::ServiceStarting, "api")), 1);
    assert_eq!(log.publish(log_chunk("api", "hello\n")), 2);
    assert_eq!(log.publish(traffic("~test", "api")), 3);
    let mut grpc = Event::new(EventType::GrpcCallCompleted);
    grpc.service = "api".into();
    assert_eq!(log.publish(grpc), 4);
    assert_eq!(log.publish(Event::new(EventType::RequestCompleted)), 5);
    assert_eq!(log.publish(Event::new(EventType::KafkaRequestCompleted)), 6);
    assert_eq!(log.publish(Event::new(EventType::ConnectionOpened)), 7);
    assert_eq!(log.publish(lifecycle(EventType::ServiceReady, "api")), 8);

    assert_eq!(log.last_seq(), 8);
    assert!(!log.is_empty());
    assert_eq!(seqs(&log.lifecycle_events()), [1, 8]);
    assert_eq!(seqs(&log.traffic_events()), [3, 4, 5, 6, 7]);
    assert_eq!(seqs(&log.events()), [1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn snapshots_share_the_stored_events() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    let a = log.events();
    let b = log.lifecycle_events();
    assert!(
        Arc::ptr_eq(&a[0], &b[0]),
        "reads share one Arc, no deep clone"
    );
}

#[test]
fn since_across_gaps_matches_a_filtered_full_read() {
    let log = EventLog::new();
    // Runs of each kind so that every store has gaps of different lengths.
    let pattern = [0, 0, 1, 1, 1, 2, 0, 2, 2, 1, 0, 3, 3, 1];
    for (i, p) in pattern.iter().enumerate() {
        let event = match p {
            0 => lifecycle(EventType::ServiceStarting, "api"),
            1 => log_chunk("api", &format!("{i}\n")),
            _ => traffic("~test", "api"),
        };
        log.publish(event);
    }
    let all = log.events();
    for after in 0..=(pattern.len() as u64 + 2) {
        let expected: Vec<u64> = seqs(&all).into_iter().filter(|s| *s > after).collect();
        assert_eq!(seqs(&log.since(after)), expected, "since({after})");
    }
}

#[test]
fn wait_for_ignores_traffic_events() {
    let log = EventLog::new();
    let waker = Arc::new(FlagWaker::default());
    let mut wait = pin!(log.wait_for(|_| true));
    assert!(poll_once(wait.as_mut(), &waker).is_pending());
    for _ in 0..10 {
        log.publish(traffic("~test", "api"));
        log.publish(log_chunk("api", "x"));
    }
    assert!(!waker.woken(), "traffic and log events do not wake waiters");
    assert!(poll_once(wait.as_mut(), &waker).is_pending());
    log.publish(lifecycle(EventType::EnvironmentUp, ""));
    assert!(waker.woken());
    match poll_once(wait.as_mut(), &waker) {
        Poll::Ready(event) => assert_eq!(event.seq, 21),
        Poll::Pending => panic!("environment.up was published"),
    }
}

#[test]
fn wait_for_scans_existing_lifecycle_events_from_the_start() {
    let log = EventLog::new();
    log.publish(lifecycle(EventType::ServiceReady, "db"));
    log.publish(log_chunk("api", "x"));
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    let waker = Arc::new(FlagWaker::default());
    let wait = pin!(log.wait_for(|e| e.event_type == EventType::ServiceReady));
    match poll_once(wait, &waker) {
        Poll::Ready(event) => assert_eq!((event.seq, event.service.as_str()), (1, "db")),
        Poll::Pending => panic!("two matches exist"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_publishers_get_seqs_one_to_a_hundred() {
    let log = EventLog::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let log = log.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                log.publish(mixed(i))
            })
        })
        .collect();
    let mut returned = HashSet::new();
    for task in tasks {
        assert!(returned.insert(task.await.unwrap()), "duplicate seq");
    }
    assert_eq!(returned, (1..=100).collect::<HashSet<u64>>());
    assert_eq!(seqs(&log.events()), (1..=100).collect::<Vec<u64>>());
}

#[test]
fn concurrent_mixed_publish_from_threads_keeps_every_store_sorted() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5_000;
    let log = EventLog::new();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let log = &log;
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    log.publish(mixed(t + i));
                }
            });
        }
    });
    let total = THREADS * PER_THREAD;
    let all = seqs(&log.events());
    assert_eq!(all, (1..=total as u64).collect::<Vec<u64>>());
    for store in [log.lifecycle_events(), log.traffic_events()] {
        assert!(seqs(&store).windows(2).all(|w| w[0] < w[1]));
    }
    let events = log.events();
    let count = |t: EventType| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(
        log.lifecycle_events().len(),
        count(EventType::ServiceStarting)
    );
    assert_eq!(
        log.traffic_events().len(),
        count(EventType::ConnectionClosed)
    );
    assert_eq!(
        count(EventType::ServiceStarting)
            + count(EventType::ServiceLog)
            + count(EventType::ConnectionClosed),
        total
    );
}
