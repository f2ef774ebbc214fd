//! The memory budget: output and traffic events beyond it go to the spill file and come back,
//! whole and in order, through every read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rig_types::{Event, EventType, RequestInfo, Timestamp};
use tokio_util::sync::CancellationToken;

use super::{lifecycle, log_chunk, seqs};
use crate::events::{EventFilter, EventLog, StoreKind, SPILL_FILE};

/// Guards against a hang; never used to wait for something to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// A 16 KiB budget: a few of the exchanges below.
const BUDGET: usize = 16 * 1024;

/// A `request.completed` with a 4 KiB response body that says which exchange it is, and the
/// fields a real one has (headers, floats, a timestamp).
fn exchange(i: usize) -> Event {
    let mut headers = rig_types::event::Headers::new();
    headers.insert("Content-Type".into(), vec!["application/json".into()]);
    headers.insert("X-Several".into(), vec!["a".into(), "b".into()]);
    let mut event = Event::new(EventType::RequestCompleted);
    event.request = Some(Box::new(RequestInfo {
        source: "~test".into(),
        target: "api".into(),
        ingress: "http".into(),
        method: "POST".into(),
        path: format!("/orders/{i}?q=a%20b"),
        status_code: 201,
        latency_ms: 1.234 + i as f64 / 7.0,
        duration_ms: Some(2.5),
        request_headers: headers.clone(),
        response_headers: headers,
        request_body: Some(format!("{{\"n\":{i}}}").into_bytes()),
        response_body: Some(vec![(i % 251) as u8; 4096]),
        response_body_truncated: i % 2 == 0,
        started_at: Some(Timestamp::now()),
        http_version: "HTTP/1.1".into(),
        ..RequestInfo::default()
    }));
    event
}

/// A log whose events are published with the mix of kinds a real environment has: every
/// fourth one lifecycle, every fourth one service output, the rest exchanges.
fn filled(dir: &tempfile::TempDir, count: usize) -> (EventLog, Vec<Event>) {
    let log = EventLog::with_spill(dir.path(), BUDGET);
    let mut published = Vec::new();
    for i in 0..count {
        let event = match i % 4 {
            0 => lifecycle(EventType::ServiceHealthy, "api"),
            1 => log_chunk("api", &format!("line {i}\n")),
            _ => exchange(i),
        };
        published.push(event.clone());
        log.publish(event);
    }
    (log, published)
}

/// What was published, with the seq and timestamp the log gave each event.
fn same_events(got: &[Arc<Event>], published: &[Event]) {
    assert_eq!(got.len(), published.len());
    for (got, sent) in got.iter().zip(published) {
        let mut expected = sent.clone();
        expected.seq = got.seq;
        expected.timestamp = got.timestamp;
        assert_eq!(**got, expected, "event {}", got.seq);
    }
}

#[test]
fn events_beyond_the_budget_are_spilled_and_read_back_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (log, published) = filled(&dir, 400);

    let stores = log.shared_for_tests().stores.read();
    let in_memory = stores.resident_bytes();
    let spillable = [StoreKind::Log, StoreKind::Traffic];
    let resident: usize = spillable.iter().map(|&k| stores.resident(k).count()).sum();
    let total: usize = spillable.iter().map(|&k| stores.count(k)).sum();
    assert_eq!(stores.resident(StoreKind::Lifecycle).count(), 100);
    drop(stores);
    assert!(
        in_memory <= BUDGET,
        "{in_memory} bytes of output and traffic in memory"
    );
    assert!(resident < total / 10, "{resident} of {total} in memory");
    let spill = std::fs::read_to_string(dir.path().join(SPILL_FILE)).unwrap();
    assert_eq!(spill.lines().count(), total - resident);

    let all = log.events();
    assert_eq!(seqs(&all), (1..=400).collect::<Vec<_>>());
    same_events(&all, &published);
    let traffic: Vec<Event> = published
        .iter()
        .filter(|e| e.event_type == EventType::RequestCompleted)
        .cloned()
        .collect();
    same_events(&log.traffic_events(), &traffic);
    same_events(&log.since(123), &published[123..]);
    // Lifecycle events never leave memory.
    assert_eq!(log.lifecycle_events().len(), 100);
    // Output read back for a tail: the last lines are in memory, older ones in the file.
    assert_eq!(log.service_log_tail("api", 1), "  | line 397");
    let tail = log.service_log_tail("api", 100);
    assert_eq!(tail.lines().count(), 100);
    assert!(tail.starts_with("  | line 1\n  | line 5\n"), "{tail}");
    assert!(tail.ends_with("  | line 393\n  | line 397"), "{tail}");
    // Before a point, newer output skipped whether in memory or spilled.
    assert_eq!(log.service_log_tail_before("api", 1, 397), "  | line 393");
    assert_eq!(log.service_log_tail_before("api", 1, 10), "  | line 5");
}

#[test]
fn the_tail_of_a_service_whose_output_was_all_spilled_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::with_spill(dir.path(), BUDGET);
    log.publish(log_chunk("worker", "starting\nlistening on :8080\n"));
    log.publish(log_chunk("worker", "panic: boom\n"));
    for i in 0..100 {
        log.publish(exchange(i));
    }
    let stores = log.shared_for_tests().stores.read();
    assert_eq!(
        stores.resident(StoreKind::Log).count(),
        0,
        "the output was spilled"
    );
    drop(stores);
    assert_eq!(
        log.service_log_tail("worker", 2),
        "  | listening on :8080\n  | panic: boom"
    );
    assert_eq!(
        log.service_log_tail("worker", 10),
        "  | starting\n  | listening on :8080\n  | panic: boom"
    );
    assert_eq!(log.service_log_tail("other", 10), "");
}

#[tokio::test]
async fn subscribers_read_spilled_events_while_more_are_published_and_spilled() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut published) = filled(&dir, 200);
    let mut from_start = log.subscribe(0, None, CancellationToken::new());
    let mut traffic_only = log.subscribe(
        0,
        Some(EventFilter::traffic_only()),
        CancellationToken::new(),
    );
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut more = Vec::new();
            for i in 200..600 {
                let event = exchange(i);
                more.push(event.clone());
                log.publish(event);
            }
            log.close();
            more
        })
    };
    let mut got = Vec::new();
    while let Some(event) = tokio::time::timeout(PATIENCE, from_start.next())
        .await
        .unwrap()
    {
        got.push(event);
    }
    published.extend(writer.join().unwrap());
    same_events(&got, &published);

    let mut traffic = Vec::new();
    while let Some(event) = tokio::time::timeout(PATIENCE, traffic_only.next())
        .await
        .unwrap()
    {
        traffic.push(event);
    }
    let expected: Vec<Event> = published
        .into_iter()
        .filter(|e| e.event_type == EventType::RequestCompleted)
        .collect();
    same_events(&traffic, &expected);
}

/// The `events.dropped` records of `log`, as (how many, message).
fn dropped_records(log: &EventLog) -> Vec<(u64, String)> {
    log.lifecycle_events()
        .iter()
        .filter(|e| e.event_type == EventType::EventsDropped)
        .map(|e| (e.dropped, e.message.clone()))
        .collect()
}

/// A log whose spill file cannot be written (a full disk, a directory gone) keeps the events
/// it cannot spill in memory, up to twice its budget: beyond that the oldest are dropped,
/// reads skip them, and `events.dropped` records say how many and why. Memory stays bounded
/// however much is published.
#[tokio::test]
async fn a_log_that_cannot_spill_drops_its_oldest_events_beyond_twice_its_budget_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-there");
    let log = EventLog::with_spill(&missing, BUDGET);
    let published: Vec<Event> = (0..100).map(exchange).collect();
    for event in &published {
        log.publish(event.clone());
        let resident = log.shared_for_tests().stores.read().resident_bytes();
        assert!(resident <= 2 * BUDGET, "{resident} bytes in memory");
    }
    assert!(!missing.exists());
    let records = dropped_records(&log);
    assert!(!records.is_empty(), "no events.dropped record");
    let dropped: u64 = records.iter().map(|(n, _)| n).sum();
    let (_, message) = &records[0];
    assert!(message.contains(SPILL_FILE), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
    // What is left is the newest exchanges, whole and in order, and every record.
    let kept: Vec<Arc<Event>> = log
        .events()
        .into_iter()
        .filter(|e| e.event_type == EventType::RequestCompleted)
        .collect();
    assert_eq!(kept.len() as u64 + dropped, published.len() as u64);
    same_events(&kept, &published[published.len() - kept.len()..]);
    let traffic = log.traffic_events();
    assert_eq!(traffic.len(), kept.len());
    let mut sub = log.subscribe(0, None, CancellationToken::new());
    log.close();
    let mut streamed = 0;
    while let Some(event) = tokio::time::timeout(PATIENCE, sub.next()).await.unwrap() {
        streamed += usize::from(event.event_type == EventType::RequestCompleted);
    }
    assert_eq!(streamed, kept.len());
}

/// A spill that failed (a full disk, a directory gone) is tried again: once it works, the
/// events in memory go back down to the budget, and none is lost.
#[test]
fn a_failed_spill_is_tried_again_and_spilling_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet");
    let log = EventLog::with_spill_retry(&missing, BUDGET, Duration::ZERO);
    let published: Vec<Event> = (0..200).map(exchange).collect();
    let resident = |log: &EventLog| {
        let stores = log.shared_for_tests().stores.read();
        stores.resident(StoreKind::Traffic).count()
    };
    // Just beyond the budget, within twice it: nothing is dropped.
    let mut before = 0;
    while log.shared_for_tests().stores.read().resident_bytes() <= BUDGET {
        log.publish(published[before].clone());
        before += 1;
    }
    assert_eq!(resident(&log), before, "nothing could be spilled");
    std::fs::create_dir(&missing).unwrap();
    for event in &published[before..] {
        log.publish(event.clone());
    }
    assert!(
        resident(&log) < before,
        "spilling resumed: {}",
        resident(&log)
    );
    same_events(&log.events(), &published);
    assert_eq!(dropped_records(&log), []);
}

#[test]
fn a_log_without_a_spill_directory_keeps_everything_in_memory() {
    let log = EventLog::new();
    for i in 0..100 {
        log.publish(exchange(i));
    }
    let stores = log.shared_for_tests().stores.read();
    assert_eq!(stores.resident(StoreKind::Traffic).count(), 100);
}

/// On a multi-threaded runtime a spill runs in `block_in_place`; publishing from tasks there
/// spills and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_on_a_multi_threaded_runtime_spill_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::with_spill(dir.path(), BUDGET);
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    log.publish(exchange(t * 1000 + i));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // A publish that raced with another's spill may have left the log over budget; the next
    // publish, alone, brings it back under.
    let last = log.clone();
    tokio::spawn(async move { last.publish(exchange(9999)) })
        .await
        .unwrap();
    let events = log.events();
    assert_eq!(seqs(&events), (1..=201).collect::<Vec<_>>());
    let mut paths: Vec<String> = events
        .iter()
        .map(|e| e.request.as_ref().unwrap().path.clone())
        .collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 201);
    assert!(log.shared_for_tests().stores.read().resident_bytes() <= BUDGET);
    assert!(dir.path().join(SPILL_FILE).exists());
}

/// A log of `chunks` lines of output from `api`, nearly all of it spilled, then closed.
fn spilled_output(dir: &tempfile::TempDir, chunks: usize) -> (EventLog, Vec<Event>) {
    let log = EventLog::with_spill(dir.path(), BUDGET);
    let published: Vec<Event> = (0..chunks)
        .map(|i| log_chunk("api", &format!("line {i} {}\n", "x".repeat(200))))
        .collect();
    for event in &published {
        log.publish(event.clone());
    }
    log.close();
    (log, published)
}

/// The `?logs=rig` reader of `rig up`: rigd's remarks among the output, none here.
fn rig_remarks_only() -> EventFilter {
    EventFilter::all().and_matching(|e| e.log.as_ref().is_some_and(|log| log.stream.is_rig()))
}

/// Counts how often it runs: it yields after each count, so it counts once each time the
/// other tasks of a current-thread runtime let it run.
fn ticker() -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let ticks = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }
    });
    (ticks, task)
}

/// A reader whose predicate rejects every event of a long spilled log does not hold its
/// thread until the end: other tasks of the runtime run after each batch read back from the
/// spill file.
#[tokio::test(flavor = "current_thread")]
async fn a_reader_rejecting_every_spilled_event_lets_other_tasks_run_after_each_batch() {
    const CHUNKS: usize = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = spilled_output(&dir, CHUNKS);
    let spilled = log
        .shared_for_tests()
        .stores
        .read()
        .spilled_count(StoreKind::Log);
    assert!(spilled > CHUNKS * 9 / 10, "{spilled} spilled");

    let (ticks, task) = ticker();
    let mut sub = log.subscribe(0, Some(rig_remarks_only()), CancellationToken::new());
    let end = tokio::time::timeout(PATIENCE, sub.next()).await.unwrap();
    let ticked = ticks.load(Ordering::SeqCst);
    task.abort();
    assert!(end.is_none(), "nothing passes the filter");
    // A subscription reads 256 events at a time.
    let batches = spilled / 256;
    assert!(
        ticked >= batches,
        "the other task ran {ticked} times during {batches} batches"
    );
}

/// The same over events in memory: other tasks run once the reader's cooperative budget is
/// spent.
#[tokio::test(flavor = "current_thread")]
async fn a_reader_rejecting_every_event_in_memory_lets_other_tasks_run() {
    let log = EventLog::new();
    for i in 0..200_000 {
        log.publish(log_chunk("api", &format!("line {i}\n")));
    }
    log.close();
    let (ticks, task) = ticker();
    let mut sub = log.subscribe(0, Some(rig_remarks_only()), CancellationToken::new());
    let end = tokio::time::timeout(PATIENCE, sub.next()).await.unwrap();
    let ticked = ticks.load(Ordering::SeqCst);
    task.abort();
    assert!(end.is_none(), "nothing passes the filter");
    assert!(ticked > 0, "the other task never ran");
}

/// A read dropped while spilled events are read back loses none of them.
#[tokio::test(flavor = "current_thread")]
async fn a_read_of_spilled_events_dropped_midway_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, published) = spilled_output(&dir, 2_000);
    let mut sub = log.subscribe(0, None, CancellationToken::new());
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut read = std::pin::pin!(sub.next());
        if let Poll::Ready(event) = futures_util::poll!(read.as_mut()) {
            got.extend(event);
        }
    }
    while let Some(event) = tokio::time::timeout(PATIENCE, sub.next()).await.unwrap() {
        got.push(event);
    }
    same_events(&got, &published);
}

/// The tail of a service that wrote little reads back its own spilled output only, not that
/// of a service that wrote a lot since.
#[test]
fn a_tail_reads_back_only_its_services_spilled_output() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::with_spill(dir.path(), BUDGET);
    log.publish(log_chunk("quiet", "starting\n"));
    log.publish(log_chunk("quiet", "panic: boom\n"));
    for i in 0..3_000 {
        log.publish(log_chunk(
            "chatty",
            &format!("line {i} {}\n", "x".repeat(200)),
        ));
        if i == 1_000 {
            log.publish(log_chunk("quiet", "after the failure\n"));
        }
    }
    let failed = log.publish(lifecycle(EventType::ServiceFailed, "quiet"));
    assert_eq!(
        log.service_log_tail_before("quiet", 200, failed),
        "  | starting\n  | panic: boom\n  | after the failure"
    );
    assert_eq!(log.spill_reads(), 3, "only the three chunks of quiet");
    // Before a point: what came after is not read back either.
    let before = log.service_log_tail_before("quiet", 200, 1_000);
    assert_eq!(before, "  | starting\n  | panic: boom");
    assert_eq!(log.spill_reads(), 5);
    assert_eq!(log.service_log_tail("chatty", 2).lines().count(), 2);
}
