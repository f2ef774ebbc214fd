//! The per-environment event log and its subscriptions.
//!
//! - [`EventLog`] (`log.rs`): publish, snapshots (`events`, `lifecycle_events`,
//!   `traffic_events`, `since`), `wait_for` and `service_log_tail`, `close`;
//! - [`Subscription`] (`subscription.rs`): a lossless cursor that follows the log, for the SSE
//!   endpoint and the CLI;
//! - [`Replay`] (`replay.rs`): the events so far in batches, for the log files;
//! - [`EventFilter`] and [`StoreKind`] (`filter.rs`): which stores and events a subscription
//!   reads;
//! - `store.rs`: the three stores (lifecycle, `service.log`, traffic) sharing one sequence
//!   counter, the merge-by-seq reads over them, and the memory budget of the traffic store;
//! - `spill.rs`: the spill file traffic events beyond the budget are written to and read
//!   back from;
//! - `size.rs`: the estimate of an event's memory the budget counts in;
//! - `tail.rs`: formatting of a service's last output lines.

mod filter;
mod log;
mod replay;
mod size;
mod spill;
mod store;
mod subscription;
mod tail;

pub use filter::{EventFilter, EventPredicate, StoreKind};
pub use log::{EventLog, DEFAULT_EVENT_MEMORY};
pub use replay::Replay;
pub use spill::SPILL_FILE;
pub use subscription::Subscription;

#[cfg(test)]
mod tests;
