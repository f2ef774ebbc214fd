//! The gRPC probe: a plaintext `grpc.health.v1.Health/Check` for the whole server.
//!
//! The call is made by hand over an HTTP/2 prior-knowledge connection: the request is the
//! 5-byte gRPC frame of an empty `HealthCheckRequest`, and only field 1 (`status`) of the
//! `HealthCheckResponse` is decoded, so no generated code is needed.
//!
//! Verdicts, as upstream (which used grpc-go):
//! - `grpc-status: 0` with status `SERVING` is ready; any other serving status is
//!   `grpc health: status <NAME>`;
//! - `grpc-status: 12` (`UNIMPLEMENTED`, a server without the health service) is ready;
//! - any other `grpc-status` is `grpc health: rpc error: code = <NAME> desc = <message>`;
//! - a non-200 HTTP response without `grpc-status` is mapped to a gRPC code the way gRPC
//!   clients do (so `404` means `UNIMPLEMENTED`, which is ready).

use std::time::Duration;

use ::http::header::{CONTENT_TYPE, TE, USER_AGENT};
use ::http::{HeaderMap, Method, Request, Response, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::error::ProbeError;
use super::probe::{drive, PROBE_HEADER, PROBE_USER_AGENT};
use super::tcp;

/// How long one gRPC probe may take. Upstream had no per-probe limit (only the poll
/// deadline); one keeps a hung server from swallowing the whole deadline silently, and is
/// generous enough for slow health handlers.
pub(super) const GRPC_TIMEOUT: Duration = Duration::from_secs(1);

/// The same limit, told to the server in gRPC's `grpc-timeout` syntax.
const GRPC_TIMEOUT_HEADER: &str = "1S";

const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// An empty `HealthCheckRequest` (service `""`) in a gRPC frame: not compressed, length 0.
static EMPTY_REQUEST_FRAME: [u8; 5] = [0; 5];

/// The most response-message bytes kept; a `HealthCheckResponse` is a few bytes.
const MAX_MESSAGE: usize = 4096;

const SERVING: i32 = 1;
const OK: u32 = 0;
const UNIMPLEMENTED: u32 = 12;

/// Calls `Health/Check` on `hostport` within [`GRPC_TIMEOUT`].
pub(super) async fn probe(hostport: &str) -> Result<(), ProbeError> {
    let action = || format!("grpc health check of {hostport}");
    match tokio::time::timeout(GRPC_TIMEOUT, call(hostport, &action)).await {
        Ok(reply) => reply?.verdict(),
        Err(_) => Err(ProbeError::TimedOut {
            action: action(),
            after: GRPC_TIMEOUT,
        }),
    }
}

async fn call(hostport: &str, action: &impl Fn() -> String) -> Result<Reply, ProbeError> {
    let request = build_request(hostport).map_err(|source| ProbeError::InvalidRequest {
        action: action(),
        source,
    })?;
    let stream = tcp::connect(hostport).await?;
    let exchange_error = |source| ProbeError::Exchange {
        action: action(),
        source,
    };
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(exchange_error)?;
    let call = async {
        let response = sender.send_request(request).await.map_err(exchange_error)?;
        read_reply(response).await.map_err(|e| match e {
            ReadError::Body(source) => exchange_error(source),
            ReadError::Malformed(reason) => ProbeError::MalformedGrpc { reason },
        })
    };
    drive(conn, call, action).await
}

fn build_request(hostport: &str) -> Result<Request<Full<Bytes>>, ::http::Error> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(hostport)
        .path_and_query(HEALTH_CHECK_PATH)
        .build()?;
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, "application/grpc")
        .header(TE, "trailers")
        .header(USER_AGENT, PROBE_USER_AGENT)
        .header(PROBE_HEADER, "1")
        .header("grpc-timeout", GRPC_TIMEOUT_HEADER)
        .body(Full::new(Bytes::from_static(&EMPTY_REQUEST_FRAME)))
}

/// What the server answered.
#[derive(Debug, Default)]
struct Reply {
    http_status: u16,
    grpc_status: Option<u32>,
    /// The raw (percent-encoded) `grpc-message`.
    grpc_message: Option<Bytes>,
    /// The response message bytes, gRPC frame prefix included.
    message: Vec<u8>,
}

enum ReadError {
    Body(hyper::Error),
    Malformed(&'static str),
}

/// Reads the response head, body and trailers. A trailers-only response (the usual shape of
/// an error) carries `grpc-status` in the head and nothing else is read.
async fn read_reply(response: Response<Incoming>) -> Result<Reply, ReadError> {
    let (parts, mut body) = response.into_parts();
    let mut reply = Reply {
        http_status: parts.status.as_u16(),
        ..Reply::default()
    };
    reply.take_status(&parts.headers)?;
    if reply.grpc_status.is_some() || reply.http_status != 200 {
        return Ok(reply);
    }
    while let Some(frame) = body.frame().await {
        match frame.map_err(ReadError::Body)?.into_data() {
            Ok(data) => {
                if reply.message.len() + data.len() > MAX_MESSAGE {
                    return Err(ReadError::Malformed("response message larger than 4 KiB"));
                }
                reply.message.extend_from_slice(&data);
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    reply.take_status(&trailers)?;
                }
            }
        }
    }
    Ok(reply)
}

impl Reply {
    fn take_status(&mut self, headers: &HeaderMap) -> Result<(), ReadError> {
        if let Some(value) = headers.get("grpc-status") {
            let code = value
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(ReadError::Malformed("grpc-status is not a number"))?;
            self.grpc_status = Some(code);
        }
        if let Some(value) = headers.get("grpc-message") {
            self.grpc_message = Some(Bytes::copy_from_slice(value.as_bytes()));
        }
        Ok(())
    }

    /// Whether the reply means ready, and if not, why.
    fn verdict(self) -> Result<(), ProbeError> {
        let code = match self.grpc_status {
            Some(code) => code,
            None if self.http_status != 200 => {
                let code = code_for_http_status(self.http_status);
                return match code {
                    UNIMPLEMENTED => Ok(()),
                    _ => Err(ProbeError::GrpcStatus {
                        code,
                        message: format!("unexpected HTTP status code {}", self.http_status),
                    }),
                };
            }
            None => {
                return Err(ProbeError::MalformedGrpc {
                    reason: "response ended without grpc-status",
                })
            }
        };
        match code {
            OK => match serving_status(&self.message)? {
                SERVING => Ok(()),
                status => Err(ProbeError::NotServing { status }),
            },
            UNIMPLEMENTED => Ok(()),
            _ => Err(ProbeError::GrpcStatus {
                code,
                message: rig_protocols::grpc::decode_message(
                    self.grpc_message.as_deref().unwrap_or_default(),
                ),
            }),
        }
    }
}

/// The gRPC code a client infers from an HTTP status when the server sent no `grpc-status`
/// (gRPC's "HTTP to gRPC status code mapping").
fn code_for_http_status(status: u16) -> u32 {
    match status {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => UNIMPLEMENTED,  // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

/// Extracts `HealthCheckResponse.status` from the first gRPC frame in `message`.
fn serving_status(message: &[u8]) -> Result<i32, ProbeError> {
    let malformed = |reason| ProbeError::MalformedGrpc { reason };
    let Some((prefix, rest)) = message.split_first_chunk::<5>() else {
        return Err(malformed(if message.is_empty() {
            "OK status without a response message"
        } else {
            "truncated message frame"
        }));
    };
    if prefix[0] != 0 {
        return Err(malformed(
            "compressed response message, but the probe offered no compression",
        ));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    let body = usize::try_from(len)
        .ok()
        .and_then(|len| rest.get(..len))
        .ok_or(malformed("truncated message frame"))?;
    decode_status_field(body).ok_or(malformed("invalid HealthCheckResponse encoding"))
}

/// Decodes protobuf field 1 (varint) of a message, skipping other fields; absent means 0.
/// `None` when the encoding is invalid.
fn decode_status_field(mut buf: &[u8]) -> Option<i32> {
    let mut status = 0;
    while !buf.is_empty() {
        let key = read_varint(&mut buf)?;
        match (key >> 3, key & 7) {
            (0, _) => return None,
            // Protobuf enums are int32; a varint wider than 32 bits is truncated.
            (1, 0) => status = read_varint(&mut buf)? as i32,
            (_, 0) => {
                read_varint(&mut buf)?;
            }
            (_, 1) => buf = buf.get(8..)?,
            (_, 2) => {
                let len = usize::try_from(read_varint(&mut buf)?).ok()?;
                buf = buf.get(len..)?;
            }
            (_, 5) => buf = buf.get(4..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;
    use tonic::service::interceptor::InterceptedService;
    use tonic::service::Routes;
    use tonic::transport::server::{Router, TcpIncoming};
    use tonic::transport::Server;
    use tonic_health::ServingStatus;

    /// Serves `router` on an ephemeral loopback port for the rest of the test.
    async fn serve(router: Router) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
        addr
    }

    #[tokio::test]
    async fn health_service_serving_then_not_serving() {
        let (reporter, health) = tonic_health::server::health_reporter();
        let addr = serve(Server::builder().add_service(health)).await;

        // A fresh reporter reports the whole server ("") as SERVING.
        probe(&addr).await.unwrap();

        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let err = probe(&addr).await.unwrap_err();
        assert!(
            matches!(err, ProbeError::NotServing { status: 2 }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "grpc health: status NOT_SERVING");

        reporter
            .set_service_status("", ServingStatus::Unknown)
            .await;
        let err = probe(&addr).await.unwrap_err();
        assert_eq!(err.to_string(), "grpc health: status UNKNOWN");

        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        probe(&addr).await.unwrap();
    }

    #[tokio::test]
    async fn server_without_health_service_counts_as_ready() {
        let addr = serve(Server::builder().add_routes(Routes::default())).await;
        // The call itself really fails with UNIMPLEMENTED; that is what counts as ready.
        let reply = call(&addr, &|| String::from("test")).await.unwrap();
        assert_eq!(reply.grpc_status, Some(UNIMPLEMENTED));
        probe(&addr).await.unwrap();
    }

    #[tokio::test]
    async fn probe_requests_are_marked() {
        let seen = Arc::new(Mutex::new(None));
        let seen_by_server = Arc::clone(&seen);
        let (_reporter, health) = tonic_health::server::health_reporter();
        let marked = InterceptedService::new(health, move |request: tonic::Request<()>| {
            let value = request
                .metadata()
                .get(PROBE_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            *seen_by_server.lock().unwrap() = Some(value);
            Ok(request)
        });
        let addr = serve(Server::builder().add_service(marked)).await;
        probe(&addr).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), Some(Some("1".to_string())));
    }

    #[tokio::test]
    async fn other_grpc_errors_are_reported_with_their_message() {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let failing = InterceptedService::new(health, |_: tonic::Request<()>| {
            Err(tonic::Status::unavailable("warming up: 50%"))
        });
        let addr = serve(Server::builder().add_service(failing)).await;
        let err = probe(&addr).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "grpc health: rpc error: code = UNAVAILABLE desc = warming up: 50%"
        );
    }

    #[tokio::test]
    async fn server_closing_immediately_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            drop(conn);
        });
        let err = probe(&addr).await.unwrap_err();
        assert!(matches!(err, ProbeError::Exchange { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("grpc health check of {addr}: ")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn refused_connection_is_a_dial_error() {
        let err = probe("127.0.0.1:1").await.unwrap_err();
        assert_eq!(err.to_string(), "dial tcp 127.0.0.1:1: connection refused");
    }

    #[test]
    fn response_message_decoding() {
        // Frame prefix (uncompressed, length) + HealthCheckResponse.
        let frame = |body: &[u8]| {
            let mut m = vec![0, 0, 0, 0, u8::try_from(body.len()).unwrap()];
            m.extend_from_slice(body);
            m
        };
        assert_eq!(serving_status(&frame(&[0x08, 0x01])).unwrap(), 1);
        assert_eq!(serving_status(&frame(&[0x08, 0x02])).unwrap(), 2);
        // proto3 omits the default: no field means UNKNOWN.
        assert_eq!(serving_status(&frame(&[])).unwrap(), 0);
        // Unknown fields of every wire type are skipped; the last status wins.
        let body = [
            0x08, 0x02, // status = NOT_SERVING
            0x12, 0x02, b'h', b'i', // field 2, bytes
            0x18, 0x96, 0x01, // field 3, varint 150
            0x21, 0, 0, 0, 0, 0, 0, 0, 0, // field 4, fixed64
            0x2d, 0, 0, 0, 0, // field 5, fixed32
            0x08, 0x01, // status = SERVING
        ];
        assert_eq!(serving_status(&frame(&body)).unwrap(), 1);

        let malformed = |m: &[u8]| serving_status(m).unwrap_err().to_string();
        assert_eq!(
            malformed(&[]),
            "grpc health: malformed response: OK status without a response message"
        );
        assert!(malformed(&[0, 0, 0]).contains("truncated message frame"));
        assert!(malformed(&[0, 0, 0, 0, 2, 0x08]).contains("truncated message frame"));
        assert!(malformed(&[1, 0, 0, 0, 2, 0x08, 0x01]).contains("compressed"));
        assert!(malformed(&frame(&[0x08])).contains("invalid HealthCheckResponse"));
        assert!(malformed(&frame(&[0x0b, 0x01])).contains("invalid HealthCheckResponse"));
        assert!(malformed(&frame(&[0x12, 0x05, 0x01])).contains("invalid HealthCheckResponse"));
    }

    #[test]
    fn verdicts() {
        let reply = |http_status, grpc_status, message: &[u8]| Reply {
            http_status,
            grpc_status,
            grpc_message: None,
            message: message.to_vec(),
        };
        assert!(reply(200, Some(0), &[0, 0, 0, 0, 2, 0x08, 0x01])
            .verdict()
            .is_ok());
        assert!(reply(200, Some(12), &[]).verdict().is_ok());
        // No grpc-status: HTTP 404 maps to UNIMPLEMENTED (ready), 503 to UNAVAILABLE.
        assert!(reply(404, None, &[]).verdict().is_ok());
        assert_eq!(
            reply(503, None, &[]).verdict().unwrap_err().to_string(),
            "grpc health: rpc error: code = UNAVAILABLE desc = unexpected HTTP status code 503"
        );
        assert_eq!(
            reply(200, None, &[]).verdict().unwrap_err().to_string(),
            "grpc health: malformed response: response ended without grpc-status"
        );
        let mut not_found = reply(200, Some(5), &[]);
        not_found.grpc_message = Some(Bytes::from_static(b"unknown%20service"));
        assert_eq!(
            not_found.verdict().unwrap_err().to_string(),
            "grpc health: rpc error: code = NOT_FOUND desc = unknown service"
        );
    }
}
