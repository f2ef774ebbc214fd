//! Minimal clients for the infrastructure protocols rigd speaks itself: enough of PostgreSQL's
//! frontend/backend protocol, of Redis's RESP and of the S3 and SQS HTTP APIs to probe
//! readiness and administer pooled backends (create and drop databases, flush Redis
//! databases, create and delete buckets and queues on moto), to run `sql` hooks, and of
//! Kafka to probe brokers and create topics, without
//! pulling full drivers and SDKs into rigd.

pub mod aws;
pub mod http;
pub mod kafka;
pub mod postgres;
pub mod resp;
