//! Tests of the event log: the ports of upstream's `eventlog_test.go` (`upstream.rs`) and our
//! additions for the three stores, concurrency, lossless subscriptions and log tails.

mod concurrency;
mod filter;
mod spill;
mod subscription;
mod tail;
mod upstream;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use rig_types::{ConnectionInfo, Event, EventType, LogStream};

/// A lifecycle event of type `t` for service `svc`.
fn lifecycle(t: EventType, svc: &str) -> Event {
    Event::for_service(t, svc)
}

/// A `service.log` chunk.
fn log_chunk(svc: &str, data: &str) -> Event {
    Event::log(svc, LogStream::Stdout, data)
}

/// A traffic event (`connection.closed`).
fn traffic(source: &str, target: &str) -> Event {
    let mut e = Event::new(EventType::ConnectionClosed);
    e.connection = Some(Box::new(ConnectionInfo {
        source: source.into(),
        target: target.into(),
        ingress: "default".into(),
        ..ConnectionInfo::default()
    }));
    e
}

/// The `i`-th event of a deterministic lifecycle/log/traffic mix (1 lifecycle : 2 log :
/// 1 traffic).
fn mixed(i: usize) -> Event {
    match i % 4 {
        0 => lifecycle(EventType::ServiceStarting, "api"),
        1 | 2 => log_chunk("api", "line"),
        _ => traffic("~test", "api"),
    }
}

fn seqs(events: &[Arc<Event>]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn types(events: &[Arc<Event>]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type.clone()).collect()
}

/// A waker that records whether it was woken.
#[derive(Default)]
struct FlagWaker(AtomicBool);

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl FlagWaker {
    fn woken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Polls `fut` once with `waker`.
fn poll_once<F: Future>(fut: Pin<&mut F>, waker: &Arc<FlagWaker>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::clone(waker));
    fut.poll(&mut Context::from_waker(&waker))
}
