//! gRPC observation on top of the HTTP proxy: `grpc` edges, and `application/grpc` requests on
//! `http` edges, are forwarded by [`crate::http`] like any HTTP/2 exchange (frames and
//! trailers pass through untouched) and recorded as `grpc.call.completed`.
//!
//! ```text
//! data path:     content-type check ─► capture (Bytes clones, both directions) + trailers clone
//!                                             │ try_send
//! observer task: GrpcRecord ─► wait for descriptors (bounded) ─► frame, inflate, decode ─► Event
//!                                  └─ Descriptors: reflection fetch per target (own task, cached)
//! ```
//!
//! Every message of unary and streaming calls is decoded (within
//! [`GrpcSettings::message_capture_limit`] bytes per direction): with the server's reflection
//! descriptors when it offers reflection, else schema-less from the wire format. Nothing of
//! this runs on the request path.

mod descriptors;
mod record;
mod reflection;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use rig_protocols::grpc::DecodeLimits;

pub(crate) use record::GrpcRecord;

use descriptors::Descriptors;

/// How gRPC calls are observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcSettings {
    /// Fetch descriptors through the target's server reflection. Without them (or when the
    /// target offers none) messages are decoded schema-less.
    pub reflection: bool,
    /// How long one reflection fetch may take; an event waits at most this long for
    /// descriptors being fetched.
    pub reflection_timeout: Duration,
    /// Fetch descriptors as soon as the proxy starts (a `grpc` edge), rather than at the first
    /// gRPC call (an `http` edge that may never carry one).
    pub prefetch: bool,
    /// Body bytes kept per direction for decoding messages. The recorded raw bodies stay
    /// within the HTTP capture limit (64 KiB); messages past this limit are not decoded and
    /// the event says so (`*_messages_truncated`).
    pub message_capture_limit: usize,
    /// Bytes one direction's messages may inflate to when decompressed (a decompression bomb
    /// stops here).
    pub max_decompressed: usize,
}

/// Default [`GrpcSettings::message_capture_limit`].
pub const DEFAULT_MESSAGE_CAPTURE_LIMIT: usize = 256 * 1024;

impl Default for GrpcSettings {
    fn default() -> Self {
        GrpcSettings {
            reflection: true,
            reflection_timeout: Duration::from_secs(5),
            prefetch: false,
            message_capture_limit: DEFAULT_MESSAGE_CAPTURE_LIMIT,
            max_decompressed: 1 << 20,
        }
    }
}

/// What the gRPC records of one proxy share.
pub(crate) struct GrpcContext {
    descriptors: Option<Descriptors>,
    /// Raw body bytes recorded per direction.
    pub(crate) body_limit: usize,
    /// Body bytes captured per direction of a gRPC call.
    pub(crate) capture_limit: usize,
    limits: DecodeLimits,
}

impl GrpcContext {
    /// The gRPC side of a proxy to `target`; starts the descriptor fetch when prefetching.
    pub(crate) fn new(
        target: Arc<str>,
        settings: &GrpcSettings,
        body_limit: usize,
    ) -> Arc<GrpcContext> {
        let descriptors = settings
            .reflection
            .then(|| Descriptors::new(target, settings.reflection_timeout));
        if settings.prefetch {
            if let Some(descriptors) = &descriptors {
                descriptors.refresh();
            }
        }
        let capture_limit = settings.message_capture_limit.max(body_limit);
        Arc::new(GrpcContext {
            descriptors,
            body_limit,
            capture_limit,
            limits: DecodeLimits {
                max_message: capture_limit,
                max_decompressed: settings.max_decompressed,
            },
        })
    }
}

impl GrpcContext {
    /// What a record of a call must wait for before it is decoded: the descriptor fetch in
    /// flight, if any.
    pub(crate) fn descriptors_ready(&self) -> Option<crate::observe::Preparation> {
        let descriptors = self.descriptors.clone()?;
        match descriptors.lookup() {
            descriptors::Lookup::Ready(_) => None,
            descriptors::Lookup::Pending(_) => Some(Box::pin(async move {
                descriptors.wait().await;
            })),
        }
    }
}

/// Whether a request is a gRPC call, from its `Content-Type`.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| rig_protocols::grpc::is_grpc_content_type(value.as_bytes()))
}
