//! The server side: the accept loop on the proxy's own listener. Each client connection starts
//! on the [raw HTTP/1.1 fast path](super::raw); whatever that path does not take (upgrades,
//! HTTP/1.0, unusual headers, malformed requests) is served by one hyper connection
//! from there on, speaking HTTP/1.x or h2c (switched to by an `Upgrade: h2c` request). A
//! connection that starts with the HTTP/2 preface goes to the [h2c relay](super::h2_relay),
//! which passes its frames to a connection of its own to the target.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rig_types::Timestamp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::MissedTickBehavior;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use super::context::{Context, ServeError};
use super::forward;
use super::h2_relay;
use super::h2_wire::PREFACE;
use super::h2c;
use super::raw;
use super::record::MalformedRecord;
use super::settings::HttpSettings;
use super::upstream::Http1Upstream;
use crate::observe::Observer;
use crate::workers;

/// Pause after an accept error caused by resource exhaustion (out of file descriptors or
/// memory), so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Runs the HTTP proxy on `listener` until `cancel` fires, forwarding every request to
/// `target` (`host:port`) and recording each exchange through `observer`.
///
/// Clients may speak HTTP/1.0, HTTP/1.1 or HTTP/2 with prior knowledge (h2c). Requests are
/// forwarded over keep-alive connections: common HTTP/1.1 requests share the proxy's idle
/// upstream connections, parked between exchanges; other HTTP/1.x client connections get
/// their own upstream connection, h2c clients an h2c one; requests switched to HTTP/2 by
/// `Upgrade: h2c` share one h2c connection. On cancellation the
/// listener closes at once, idle connections close, in-flight exchanges get
/// [`HttpSettings::shutdown_grace`] to finish, and the function returns when every connection
/// and tunnel is gone.
///
/// # Errors
///
/// Returns [`ServeError`] without accepting anything if `target` is not `host:port` or a
/// redacted header name is invalid.
pub async fn serve(
    listener: TcpListener,
    target: String,
    observer: Observer,
    settings: HttpSettings,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let ctx = Arc::new(Context::new(target, observer, &settings, cancel.clone())?);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Requests with more header lines than hyper's default of 100 reach the target, as they
    // would directly (curl and most servers take them).
    builder.http1().max_headers(MAX_REQUEST_HEADERS);
    let builder = Arc::new(builder);
    let mut sweep = tokio::time::interval(ctx.upstream.idle.sweep_period());
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
            _ = sweep.tick() => {
                ctx.upstream.idle.sweep();
                continue;
            }
        };
        match accepted {
            Ok((stream, _peer)) => {
                let serve = {
                    let (ctx, builder) = (ctx.clone(), builder.clone());
                    move |stream| serve_connection(ctx, builder, stream)
                };
                workers::spawn_connection(&ctx.tracker, stream, serve);
            }
            Err(error) if is_per_connection(&error) => {}
            Err(_) => {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    ctx.tracker.close();
    ctx.tracker.wait().await;
    ctx.upstream.idle.close_all();
    Ok(())
}

async fn serve_connection(
    ctx: Arc<Context>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
) {
    // Best effort: a socket that refuses the option still works, only slower.
    let _ = stream.set_nodelay(true);
    let Some(mut fallback) = raw::serve(&ctx, stream).await else {
        return;
    };
    if fallback.buffered.starts_with(PREFACE) && ctx.upstream.response_timeout().is_none() {
        // Boxed, as hyper's state below: most connections never need it.
        match Box::pin(h2_relay::serve(&ctx, fallback.stream, fallback.buffered)).await {
            Some(unreachable) => fallback = unreachable,
            None => return,
        }
    }
    let io = raw::Prefixed::new(fallback.buffered.freeze(), fallback.stream);
    // Boxed: hyper's connection state is about twice the raw path's, and most connections
    // never need it, so it does not make every connection's task that large.
    Box::pin(serve_hyper(ctx, builder, io)).await;
}

/// Header lines per request head hyper's path takes.
const MAX_REQUEST_HEADERS: usize = 256;

/// Serves a connection with hyper: HTTP/1.x with upgrades, or HTTP/2 from its preface.
async fn serve_hyper<I>(ctx: Arc<Context>, builder: Arc<auto::Builder<TokioExecutor>>, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_ctx = ctx.clone();
    let upstream = Arc::new(Http1Upstream::default());
    // The exchange opens when hyper calls the service (see `forward::handle`), so that a
    // request hyper drops unpolled is still recorded.
    let service = service_fn(move |mut request| {
        let (ctx, upstream) = (service_ctx.clone(), upstream.clone());
        // Boxed: hyper spawns a task per HTTP/2 stream and moves it as it goes; a pointer
        // moves for less than the whole exchange's state.
        let forward = |ctx, upstream, request| -> Pin<Box<dyn Future<Output = _> + Send>> {
            Box::pin(forward::handle(ctx, upstream, request))
        };
        let answer = match h2c::asks_to_upgrade(&request).then(|| ctx.target_h2c.get()) {
            // The first upgrade request finds out whether the target speaks h2c.
            Some(None) => Either::Right(Box::pin(async move {
                if h2c::target_speaks_h2c(&ctx).await {
                    if let Some(switching) = h2c::try_upgrade(&ctx, &mut request) {
                        return switching;
                    }
                }
                forward::handle(ctx, upstream, request).await
            }) as Pin<Box<dyn Future<Output = _> + Send>>),
            Some(Some(true)) => match h2c::try_upgrade(&ctx, &mut request) {
                Some(switching) => Either::Left(std::future::ready(switching)),
                None => Either::Right(forward(ctx, upstream, request)),
            },
            _ => Either::Right(forward(ctx, upstream, request)),
        };
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let result = drive(&ctx, connection, |c| c.graceful_shutdown()).await;
    if let Err(error) = result {
        record_rejected_request(&ctx, &*error);
    }
}

/// Serves a connection that is HTTP/2 from here on (an accepted `Upgrade: h2c`).
pub(crate) async fn serve_http2<I>(ctx: Arc<Context>, io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service_ctx = ctx.clone();
    // Unused: HTTP/2 requests go over the shared h2c connection.
    let upstream = Arc::new(Http1Upstream::default());
    let service = service_fn(move |request| {
        // Boxed, as in `serve_hyper`.
        let answer = Box::pin(forward::handle(
            service_ctx.clone(),
            upstream.clone(),
            request,
        ));
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let connection = http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
    // Protocol errors are answered by hyper (GOAWAY, RST_STREAM); there is nothing to record.
    let _ = drive(&ctx, connection, |c| c.graceful_shutdown()).await;
}

/// Runs `connection` to its end; on cancellation asks it to finish gracefully and drops it
/// (closing it) once the grace period is over.
async fn drive<C, E>(
    ctx: &Context,
    connection: C,
    shut_down: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = ctx.cancel.cancelled() => {
            shut_down(connection.as_mut());
            // Past the grace period the connection is dropped, which closes it.
            tokio::time::timeout(ctx.shutdown_grace, connection.as_mut())
                .await
                .unwrap_or(Ok(()))
        }
    }
}

/// hyper answers a malformed HTTP/1 request itself (400, 414 or 431) and ends the connection
/// without calling the proxy; the resulting connection error is all there is to record.
fn record_rejected_request(ctx: &Context, error: &(dyn StdError + 'static)) {
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(e) = current.downcast_ref::<hyper::Error>() {
            if e.is_parse() {
                let status = if e.is_parse_too_large() {
                    // hyper tells the two apart only by their messages.
                    if e.to_string().contains("URI") {
                        414
                    } else {
                        431
                    }
                } else {
                    400
                };
                ctx.observer.record(Box::new(MalformedRecord {
                    status,
                    error: format!("client: malformed request, rejected with {status}: {e}"),
                    started_at: Timestamp::now(),
                }));
            }
            return;
        }
        source = current.source();
    }
}

/// Whether an accept error concerns only the one connection being accepted. Any other error
/// (out of file descriptors or memory) lasts a while and is waited out.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection's task is about the raw path's state: hyper's (boxed), a second copy
    /// of the raw future, or a shutdown timer beside it would make it larger. The raw path's
    /// state is small itself.
    #[tokio::test]
    async fn a_connection_task_is_about_the_raw_paths_size() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = Arc::new(|_: rig_types::Event| {});
        let (observer, _task) = Observer::spawn(Default::default(), sink, 8);
        let settings = HttpSettings::default();
        let ctx = Context::new(
            "127.0.0.1:1".into(),
            observer,
            &settings,
            CancellationToken::new(),
        );
        let ctx = Arc::new(ctx.unwrap());
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let raw = raw::serve(&ctx, TcpStream::connect(addr).await.unwrap());
        let raw_size = std::mem::size_of_val(&raw);
        let stream = TcpStream::connect(addr).await.unwrap();
        let task = serve_connection(ctx.clone(), builder, stream);
        let task_size = std::mem::size_of_val(&task);
        // The rest: the context and hyper's builder, and the raw path's fallback.
        assert!(
            task_size < raw_size + 256,
            "a connection task takes {task_size} bytes, the raw path {raw_size}"
        );
        // What an idle keep-alive connection holds: the exchange under way is boxed, so it is
        // not room every connection carries.
        assert!(
            raw_size < 1024,
            "the raw path takes {raw_size} bytes per connection"
        );
    }
}
