//! Store routing and filter semantics.

use rig_types::{Event, EventType};

use super::{lifecycle, log_chunk, traffic};
use crate::events::{EventFilter, StoreKind};

#[test]
fn every_known_type_belongs_to_exactly_the_expected_store() {
    for t in EventType::KNOWN {
        let expected = match t {
            EventType::ServiceLog => StoreKind::Log,
            EventType::RequestCompleted
            | EventType::ConnectionOpened
            | EventType::ConnectionClosed
            | EventType::ConnectionProgress
            | EventType::GrpcCallCompleted
            | EventType::KafkaRequestCompleted
            | EventType::ObservationsDropped => StoreKind::Traffic,
            _ => StoreKind::Lifecycle,
        };
        assert_eq!(StoreKind::of(t), expected, "{t}");
    }
    assert_eq!(
        StoreKind::of(&EventType::Other("log.header".into())),
        StoreKind::Lifecycle
    );
}

#[test]
fn matches_combines_store_flags_and_predicates() {
    let ready = lifecycle(EventType::ServiceReady, "api");
    let chunk = log_chunk("api", "x");
    let conn = traffic("~test", "api");
    let cases: [(EventFilter, [bool; 3]); 6] = [
        (EventFilter::all(), [true, true, true]),
        (EventFilter::default(), [true, true, true]),
        (EventFilter::without_logs(), [true, false, true]),
        (EventFilter::traffic_only(), [false, false, true]),
        (
            EventFilter::matching(|e: &Event| e.service == "api"),
            [true, true, false],
        ),
        (
            EventFilter::all()
                .with_store(StoreKind::Lifecycle, false)
                .and_matching(|e: &Event| e.event_type != EventType::ServiceLog),
            [false, false, true],
        ),
    ];
    for (filter, expected) in cases {
        let got = [&ready, &chunk, &conn].map(|e| filter.matches(e));
        assert_eq!(got, expected, "{filter:?}");
    }
}
