//! The per-environment event log and its subscriptions.
//!
//! - [`EventLog`] (`log.rs`): publish, snapshots (`events`, `lifecycle_events`,
//!   `traffic_events`, `since`), `wait_for` and `service_log_tail`, `close`;
//! - [`Subscription`] (`subscription.rs`): a lossless cursor that follows the log, for the SSE
//!   endpoint and the CLI;
//! - [`EventFilter`] and [`StoreKind`] (`filter.rs`): which stores and events a subscription
//!   reads;
//! - `store.rs`: the three stores (lifecycle, `service.log`, traffic) sharing one sequence
//!   counter, and the merge-by-seq reads over them (where bounding and spill-to-disk will go);
//! - `tail.rs`: formatting of a service's last output lines.

mod filter;
mod log;
mod store;
mod subscription;
mod tail;

pub use filter::{EventFilter, EventPredicate, StoreKind};
pub use log::EventLog;
pub use subscription::Subscription;

#[cfg(test)]
mod tests;
