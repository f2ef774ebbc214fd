//! The record of the exchange in flight on a raw connection, and how an exchange cut off
//! half-way is recorded (as the hyper path records it).

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use tokio::time::Instant;

use super::record::{Answer, RawRecord};
use crate::http::capture::Capture;
use crate::http::context::Context;
use crate::http::error::Failure;

/// The stage an exchange is in, for the record of one that is cut off.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Forwarding the request or waiting for the response head.
    Request,
    /// Forwarding the response body.
    Response,
    /// Recorded as it is.
    Done,
}

/// The record of the exchange in flight; handed to the observer when dropped, so an exchange
/// cut off anywhere (client gone, proxy shut down) is recorded exactly once.
pub(crate) struct Flight<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) started: Instant,
    pub(crate) stage: Stage,
    /// A `HEAD` request: a response the proxy makes goes out as its head alone.
    pub(crate) head_method: bool,
    /// Taken when the flight is dropped.
    pub(crate) record: Option<Box<RawRecord>>,
}

impl Flight<'_> {
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn rec(&mut self) -> &mut RawRecord {
        self.record.as_mut().expect("recorded only on drop")
    }

    /// Records `failure` as the answer the client got.
    pub(crate) fn failed(
        &mut self,
        failure: &Failure,
        headers: HeaderMap,
        status: u16,
        body: &Bytes,
    ) {
        let elapsed = self.elapsed();
        let record = self.rec();
        let mut capture = Capture::new(usize::MAX);
        capture.push(body);
        record.answer = Answer::Made(status, headers);
        record.response_body = capture;
        record.response_error = Some(failure.event_error());
        record.latency = elapsed;
        record.duration = elapsed;
        self.stage = Stage::Done;
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let elapsed = self.elapsed();
        let shutting_down = self.ctx.cancel.is_cancelled();
        match self.stage {
            Stage::Done => {}
            Stage::Request => {
                record.latency = elapsed;
                record.duration = elapsed;
                record.response_error = Some(
                    if shutting_down {
                        "proxy: shut down before the target responded"
                    } else {
                        "client: the connection closed before the target responded"
                    }
                    .to_string(),
                );
            }
            Stage::Response => {
                record.duration = elapsed;
                let delivered = record.response_body.total();
                record.response_error = Some(if shutting_down {
                    format!("proxy: shut down after {delivered} bytes of the response body")
                } else {
                    format!(
                        "client: the connection closed after {delivered} bytes of the response body"
                    )
                });
            }
        }
        self.ctx.observer.record(record);
    }
}
