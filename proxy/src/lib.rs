//! The observing proxy that rigd puts on every edge of an environment in observe mode.
//!
//! The proxy knows nothing of environments or the event log: it is started from a listener it
//! owns, a target address and a mode, and emits traffic events into a sink. The relays, the
//! HTTP/h2c/WebSocket observers and the bounded observation channel arrive with the
//! "Observe mode" work; until then rigd runs without observation and says so when a spec asks
//! for it.
