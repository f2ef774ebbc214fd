//! A log's traffic events in the order the exchanges ended, read as a stream and kept as
//! places in the log file where it is one, so `rig traffic` holds a few bytes per event
//! however large the log: each output pass reads the events again from the file.

use rig_types::{Event, Timestamp};

use super::RowBuilder;
use crate::cli::error::CliError;
use crate::cli::logread::{EventReader, LineAt, LogStream};
use crate::logfiles::{exchange_end, happened_at, order_by_time};

/// A traffic event as it is kept between reading and printing.
enum Held {
    /// Where it is in the log file.
    At(LineAt),
    /// The event itself (a pipe or a live log, which cannot be read again); boxed so that an
    /// entry for every other event stays small.
    Event(Box<Event>),
}

/// The traffic events of a log (what its rows are made of), read as a stream: every other
/// event is left out but for its time, which places the exchanges logged late.
#[derive(Default)]
pub(super) struct TrafficEvents {
    /// In log order: each event's time ([`happened_at`]), whether it is an exchange that
    /// may move back ([`exchange_end`]), and for a traffic event the event or its place.
    timeline: Vec<(Timestamp, bool, Option<Held>)>,
    /// True when a proxy wrote anything.
    proxies_ran: bool,
}

impl TrafficEvents {
    /// Reads the rest of `log`; without `payloads`, the headers, bodies and messages of the
    /// exchanges held in memory are not kept.
    pub(super) fn read(log: &mut LogStream, payloads: bool) -> Result<TrafficEvents, CliError> {
        let mut traffic = TrafficEvents::default();
        while let Some((mut event, at)) = log.next_event_at()? {
            if !payloads && at.is_none() {
                event.drop_headers();
                event.drop_bodies();
            }
            traffic.push(event, at);
        }
        Ok(traffic)
    }

    /// Adds `event`, the next in log order, found at `at` in the log file when it is one.
    pub(super) fn push(&mut self, event: Event, at: Option<LineAt>) {
        self.proxies_ran |= event.service.contains("~proxy~");
        let when = happened_at(&event);
        let exchange = exchange_end(&event).is_some();
        let traffic = RowBuilder::default().row(&event).is_some();
        let held = traffic.then(|| match at {
            Some(at) => Held::At(at),
            None => Held::Event(Box::new(event)),
        });
        self.timeline.push((when, exchange, held));
    }

    /// Why a log has no traffic rows.
    pub(super) fn why_none(&self) -> &'static str {
        if self.proxies_ran {
            "its proxies ran but recorded no request or connection"
        } else {
            "no proxy ran: observe is off in the spec, or the run ended before any proxy started"
        }
    }

    /// The traffic events, in the order the exchanges ended, placed as
    /// [`in_time_order`](crate::logfiles::in_time_order) places them: an observation can be
    /// logged well after its exchange (a gRPC call's waits for the target's descriptors).
    /// `log` reads again the events kept as places.
    pub(super) fn in_time_order(self, log: &LogStream) -> Result<OrderedTraffic, CliError> {
        let held: Vec<Held> = order_by_time(self.timeline)
            .into_iter()
            .filter_map(|(_, held)| held)
            .collect();
        let places = held.iter().any(|h| matches!(h, Held::At(_)));
        Ok(OrderedTraffic {
            held,
            reader: if places { log.reader()? } else { None },
        })
    }
}

/// A log's traffic events in order, to be gone through as often as the output needs.
pub(super) struct OrderedTraffic {
    held: Vec<Held>,
    reader: Option<EventReader>,
}

impl OrderedTraffic {
    /// Hands each event to `each`, in order, until it returns false.
    pub(super) fn for_each(
        &mut self,
        mut each: impl FnMut(&Event) -> bool,
    ) -> Result<(), CliError> {
        for held in &self.held {
            let go_on = match held {
                Held::Event(event) => each(event),
                Held::At(at) => {
                    let reader = self
                        .reader
                        .as_mut()
                        .expect("a reader whenever places are held");
                    each(&reader.read(*at)?)
                }
            };
            if !go_on {
                break;
            }
        }
        Ok(())
    }
}
