//! A log's traffic events in the order the exchanges ended, numbered, read as a stream and
//! kept as places in the log file where it is one: `rig traffic` holds a few bytes per
//! exchange however large the log, and reads again only the exchanges it prints.

use rig_types::{Event, Timestamp};

use super::{Index, Row, RowBuilder};
use crate::cli::error::CliError;
use crate::cli::logread::{EventReader, LineAt, LogStream};
use crate::logfiles::{exchange_end, happened_at, order_by_time};

/// Where a traffic event is kept between reading and printing.
enum Place {
    /// Where it is in the log file.
    At(LineAt),
    /// The event itself (a pipe or a live log, which cannot be read again); boxed so that an
    /// entry for every other event stays small.
    Event(Box<Event>),
}

/// A traffic event's row, as kept between reading and printing.
struct Entry {
    place: Place,
    /// A readiness probe (numbered `pN`).
    probe: bool,
    /// The filters keep it.
    kept: bool,
}

/// The traffic events of a log (what its rows are made of), read as a stream: every other
/// event is left out but for its time, which places the exchanges logged late.
#[derive(Default)]
pub(super) struct TrafficEvents {
    /// In log order: each event's time ([`happened_at`]), whether it is an exchange that
    /// may move back ([`exchange_end`]), and for a traffic event its entry.
    timeline: Vec<(Timestamp, bool, Option<Entry>)>,
    /// True when a proxy wrote anything.
    proxies_ran: bool,
}

impl TrafficEvents {
    /// Reads the rest of `log`, handing each traffic event's row (not numbered yet) to
    /// `keep`, which says whether the filters keep it. Without `payloads`, the headers,
    /// bodies and messages of the exchanges held in memory are not kept.
    pub(super) fn read(
        log: &mut LogStream,
        payloads: bool,
        mut keep: impl FnMut(&Row) -> bool,
    ) -> Result<TrafficEvents, CliError> {
        let mut traffic = TrafficEvents::default();
        while let Some((mut event, at)) = log.next_event_at()? {
            let row = RowBuilder::new(log.start())
                .row(&event)
                .map(|row| (row.probe, keep(&row)));
            if !payloads && at.is_none() {
                event.drop_headers();
                event.drop_bodies();
            }
            traffic.push(event, at, row);
        }
        Ok(traffic)
    }

    /// Adds `event`, the next in log order, found at `at` in the log file when it is one;
    /// `row` says, for a traffic event, whether it is a probe and whether it is kept.
    pub(super) fn push(&mut self, event: Event, at: Option<LineAt>, row: Option<(bool, bool)>) {
        self.proxies_ran |= event.service.contains("~proxy~");
        let when = happened_at(&event);
        let exchange = exchange_end(&event).is_some();
        let entry = row.map(|(probe, kept)| Entry {
            place: match at {
                Some(at) => Place::At(at),
                None => Place::Event(Box::new(event)),
            },
            probe,
            kept,
        });
        self.timeline.push((when, exchange, entry));
    }

    /// Why a log has no traffic rows.
    pub(super) fn why_none(&self) -> &'static str {
        if self.proxies_ran {
            "its proxies ran but recorded no request or connection"
        } else {
            "no proxy ran: observe is off in the spec, or the run ended before any proxy started"
        }
    }

    /// The rows, numbered in the order the exchanges ended, placed as
    /// [`in_time_order`](crate::logfiles::in_time_order) places them: an observation can be
    /// logged well after its exchange (a gRPC call's waits for the target's descriptors).
    /// `log` reads again the events kept as places.
    pub(super) fn in_time_order(self, log: &LogStream) -> Result<OrderedTraffic, CliError> {
        let entries: Vec<Entry> = order_by_time(self.timeline)
            .into_iter()
            .filter_map(|(_, entry)| entry)
            .collect();
        let places = entries.iter().any(|e| matches!(e.place, Place::At(_)));
        Ok(OrderedTraffic {
            entries,
            reader: if places { log.reader()? } else { None },
            start: log.start(),
        })
    }
}

/// A log's traffic rows, numbered and in order.
pub(super) struct OrderedTraffic {
    entries: Vec<Entry>,
    reader: Option<EventReader>,
    /// The run's first event's time, which rows' times are measured from.
    start: Option<Timestamp>,
}

impl OrderedTraffic {
    /// The row of `event`, numbered `index`.
    pub(super) fn row<'a>(&self, event: &'a Event, index: Index) -> Option<Row<'a>> {
        Self::row_at(self.start, event, index)
    }

    fn row_at(start: Option<Timestamp>, event: &Event, index: Index) -> Option<Row<'_>> {
        let mut row = RowBuilder::new(start).row(event)?;
        row.index = index;
        Some(row)
    }

    /// Each entry with its number, in order.
    fn numbered(entries: &[Entry]) -> impl Iterator<Item = (Index, &Entry)> {
        let mut numbers = RowBuilder::default();
        entries
            .iter()
            .map(move |entry| (numbers.number(entry.probe), entry))
    }

    /// The numbers of the rows the filters keep.
    pub(super) fn kept(&self) -> impl Iterator<Item = Index> + '_ {
        Self::numbered(&self.entries)
            .filter(|(_, e)| e.kept)
            .map(|(index, _)| index)
    }

    /// Hands the row of each entry whose number `pick` accepts to `each`, in order, reading
    /// its event again if need be, until `each` returns false.
    pub(super) fn for_each(
        &mut self,
        pick: impl Fn(Index, bool) -> bool,
        mut each: impl FnMut(&Row) -> bool,
    ) -> Result<(), CliError> {
        for (index, entry) in Self::numbered(&self.entries).filter(|(i, e)| pick(*i, e.kept)) {
            let read;
            let event = match &entry.place {
                Place::Event(event) => event,
                Place::At(at) => {
                    let reader = self.reader.as_mut().ok_or_else(|| {
                        CliError::failed("rig traffic: the log cannot be read again")
                    })?;
                    read = reader.read(*at)?;
                    &read
                }
            };
            let Some(row) = Self::row_at(self.start, event, index) else {
                continue;
            };
            if !each(&row) {
                break;
            }
        }
        Ok(())
    }
}
