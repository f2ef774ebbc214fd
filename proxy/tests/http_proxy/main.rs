//! The HTTP proxy against real peers on 127.0.0.1: a hyper origin, `curl`, hyper clients and
//! tokio-tungstenite.

mod basics;
mod bodies;
mod failures;
mod h2_relay;
mod h2_uploads;
mod http2;
mod load;
mod origin;
mod policy;
mod pooling;
mod raw;
mod shutdown;
mod support;
mod upgrade;
