//! One probe attempt, dispatched on the [`ProbeKind`], and the pieces the HTTP and gRPC probes
//! share.

use std::future::Future;

use super::error::ProbeError;
use super::kind::ProbeKind;
use super::{database, grpc, http, tcp};

/// Header carried by every HTTP and gRPC probe request (value `1`), so an observing proxy can
/// mark probe traffic.
pub const PROBE_HEADER: &str = "x-rig-probe";

/// `User-Agent` of every HTTP and gRPC probe request.
pub const PROBE_USER_AGENT: &str = "rigd-probe";

/// Runs one probe of `kind` against `hostport` (`host:port`, the host-side address).
///
/// Returns `Ok(())` when the endpoint is ready. Each attempt opens and closes its own
/// connection and is bounded in time: 200 ms for TCP and HTTP, 1 s for gRPC, PostgreSQL,
/// Redis and Kafka.
pub async fn probe(kind: &ProbeKind, hostport: &str) -> Result<(), ProbeError> {
    match kind {
        ProbeKind::Tcp => tcp::probe(hostport).await,
        ProbeKind::TcpHeld => tcp::probe_held(hostport).await,
        ProbeKind::Http { path } => http::probe(hostport, path).await,
        ProbeKind::Grpc => grpc::probe(hostport).await,
        ProbeKind::Postgres => database::postgres(hostport).await,
        ProbeKind::Redis => database::redis(hostport).await,
        ProbeKind::Kafka => database::kafka(hostport).await,
    }
}

/// Runs `call` while driving the client connection `conn` it depends on, in the same task.
///
/// Driving the connection here instead of spawning it means that dropping the probe (on its
/// timeout, or when the poll is cancelled) closes the socket at once; nothing outlives it.
/// `action` names the exchange in errors and is only evaluated on failure.
pub(super) async fn drive<T>(
    conn: impl Future<Output = Result<(), hyper::Error>>,
    call: impl Future<Output = Result<T, ProbeError>>,
    action: impl Fn() -> String,
) -> Result<T, ProbeError> {
    let mut conn = std::pin::pin!(conn);
    let mut call = std::pin::pin!(call);
    tokio::select! {
        biased;
        result = &mut call => result,
        closed = &mut conn => match closed {
            // The connection ended first; the call then fails (or completes) on its own, and
            // its error says more than a clean close.
            Ok(()) => call.await,
            Err(source) => Err(ProbeError::Exchange { action: action(), source }),
        },
    }
}
