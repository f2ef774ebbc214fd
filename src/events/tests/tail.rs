//! `service_log_tail` formatting (upstream `ServiceLogTail`).

use rig_types::{Event, EventType};

use super::{lifecycle, log_chunk};
use crate::events::EventLog;

fn log_with(chunks: &[(&str, &str)]) -> EventLog {
    let log = EventLog::new();
    for (service, data) in chunks {
        log.publish(log_chunk(service, data));
    }
    log
}

#[test]
fn empty_when_the_service_wrote_nothing() {
    let log = log_with(&[("db", "hello\n")]);
    log.publish(lifecycle(EventType::ServiceReady, "api"));
    assert_eq!(log.service_log_tail("api", 10), "");
    assert_eq!(EventLog::new().service_log_tail("api", 10), "");
}

#[test]
fn zero_lines_requested_is_empty() {
    assert_eq!(log_with(&[("api", "a\n")]).service_log_tail("api", 0), "");
}

#[test]
fn trailing_newlines_are_trimmed_and_lines_prefixed() {
    let log = log_with(&[("api", "first\nsecond\n"), ("api", "third\n\n\n")]);
    assert_eq!(
        log.service_log_tail("api", 10),
        "  | first\n  | second\n  | third"
    );
}

#[test]
fn an_empty_chunk_is_one_empty_line() {
    let log = log_with(&[("api", "a"), ("api", ""), ("api", "\n"), ("api", "b")]);
    assert_eq!(log.service_log_tail("api", 10), "  | a\n  | \n  | \n  | b");
}

#[test]
fn keeps_the_last_n_lines_across_chunks() {
    let log = log_with(&[("api", "1\n2\n"), ("db", "x\n"), ("api", "3\n4\n5")]);
    assert_eq!(log.service_log_tail("api", 4), "  | 2\n  | 3\n  | 4\n  | 5");
    assert_eq!(log.service_log_tail("api", 1), "  | 5");
    assert_eq!(
        log.service_log_tail("api", 100),
        "  | 1\n  | 2\n  | 3\n  | 4\n  | 5"
    );
}

#[test]
fn inner_blank_lines_and_carriage_returns_are_kept() {
    let log = log_with(&[("api", "a\n\nb\r\n")]);
    assert_eq!(log.service_log_tail("api", 10), "  | a\n  | \n  | b\r");
}

#[test]
fn log_events_without_a_payload_are_skipped() {
    let log = log_with(&[("api", "a\n")]);
    log.publish(Event::for_service(EventType::ServiceLog, "api"));
    assert_eq!(log.service_log_tail("api", 10), "  | a");
}

#[test]
fn a_tail_before_an_event_leaves_out_what_came_after_it() {
    let log = log_with(&[("api", "a\nb\n")]);
    let failed = log.publish(lifecycle(EventType::ServiceFailed, "api"));
    log.publish(log_chunk("api", "after\n"));
    assert_eq!(
        log.service_log_tail_before("api", 10, failed),
        "  | a\n  | b"
    );
    assert_eq!(log.service_log_tail_before("api", 1, failed), "  | b");
    assert_eq!(log.service_log_tail("api", 1), "  | after");
}
