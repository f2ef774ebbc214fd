//! The client side: pooled keep-alive connections to the one target of a proxy.
//!
//! Two pools share one connector: HTTP/1.1 for clients that spoke HTTP/1.x, h2c with prior
//! knowledge for clients that spoke HTTP/2 (gRPC needs HTTP/2 end to end, with trailers). The
//! connector always dials the target, whatever authority the request names, so the request's
//! `Host`/`:authority` reaches the service exactly as the client sent it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::body::RequestBody;
use super::settings::HttpSettings;

/// Why no upstream response arrived.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The client failed: connecting, writing the request or reading the response head.
    Client(hyper_util::client::legacy::Error),
    /// The response headers did not arrive in time.
    Timeout(Duration),
}

/// Pooled clients to the target.
pub(crate) struct Upstream {
    http1: Client<TargetConnector, RequestBody>,
    http2: Client<TargetConnector, RequestBody>,
    response_timeout: Option<Duration>,
}

impl Upstream {
    /// Builds both pools; nothing connects until the first request.
    pub(crate) fn new(target: Arc<str>, settings: &HttpSettings) -> Upstream {
        let connector = TargetConnector {
            target,
            connect_timeout: settings.connect_timeout,
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_timer(TokioTimer::new());
        let http1 = builder.build(connector.clone());
        builder.http2_only(true);
        let http2 = builder.build(connector);
        Upstream {
            http1,
            http2,
            response_timeout: settings.response_timeout,
        }
    }

    /// Sends a request (absolute-form URI; HTTP/2 requests go through the h2c pool) and waits
    /// for the response head, within the response timeout if one is set.
    pub(crate) async fn send(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let client = if request.version() == Version::HTTP_2 {
            &self.http2
        } else {
            &self.http1
        };
        let response = client.request(request);
        match self.response_timeout {
            Some(limit) => match tokio::time::timeout(limit, response).await {
                Ok(result) => result.map_err(SendError::Client),
                Err(_) => Err(SendError::Timeout(limit)),
            },
            None => response.await.map_err(SendError::Client),
        }
    }
}

/// Dials the proxy's target for every pooled connection, with a timeout and `TCP_NODELAY`.
#[derive(Clone)]
pub(crate) struct TargetConnector {
    target: Arc<str>,
    connect_timeout: Duration,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

impl tower_service::Service<Uri> for TargetConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _destination: Uri) -> Connecting {
        let target = self.target.clone();
        let limit = self.connect_timeout;
        Box::pin(async move {
            let stream = tokio::time::timeout(limit, TcpStream::connect(&*target))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no TCP connection within {limit:?}"),
                    )
                })??;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}
