//! Minimal clients for the infrastructure protocols rigd speaks itself: enough of PostgreSQL's
//! frontend/backend protocol and of Redis's RESP to probe readiness, administer pooled
//! backends (create and drop databases, flush Redis databases) and run `sql` hooks, without
//! pulling a full driver into rigd.

pub mod postgres;
pub mod resp;
