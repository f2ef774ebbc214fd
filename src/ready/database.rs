//! Database and broker probes: a PostgreSQL startup handshake, a Redis `PING` and a Kafka
//! `ApiVersions` request, so a server counts as ready when it serves clients, not merely when
//! its port accepts connections (a container's published port accepts them at once).

use std::future::Future;
use std::time::Duration;

use super::error::ProbeError;
use crate::wire::kafka::{self, KafkaError};
use crate::wire::postgres::{self, PgError};
use crate::wire::resp::{self, Reply, RespError};

/// How long one database probe may take, connect included.
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);

/// SQLSTATEs meaning "not accepting connections yet": `57P03` cannot_connect_now (starting
/// up, shutting down, in recovery) and `53300` too_many_connections.
const NOT_READY_STATES: [&str; 2] = ["57P03", "53300"];

/// Ready when the server completes a startup handshake as `postgres` to `postgres`, or
/// refuses it for a reason that shows it accepts connections (unknown role or database,
/// authentication): the rule of `pg_isready`.
pub(super) async fn postgres(hostport: &str) -> Result<(), ProbeError> {
    let login = postgres::Login {
        user: "postgres",
        password: "postgres",
        database: "postgres",
    };
    bounded(hostport, "postgres", async {
        match postgres::Connection::connect(hostport, login).await {
            Ok(conn) => {
                conn.close().await;
                Ok(())
            }
            Err(PgError::Io(source)) => Err(ProbeError::Dial {
                addr: hostport.to_owned(),
                source,
            }),
            Err(e @ PgError::Server(_))
                if e.code().is_some_and(|c| NOT_READY_STATES.contains(&c)) =>
            {
                Err(ProbeError::NotReady {
                    protocol: "postgres",
                    reason: e.to_string(),
                })
            }
            Err(e @ PgError::Protocol(_)) => Err(ProbeError::NotReady {
                protocol: "postgres",
                reason: e.to_string(),
            }),
            // The server answered the handshake: it accepts connections. (A handshake runs
            // no COPY.)
            Err(PgError::Server(_) | PgError::UnsupportedAuth(_) | PgError::CopyFromStdin) => {
                Ok(())
            }
        }
    })
    .await
}

/// Ready when `PING` is answered with `+PONG`, or with an authentication error (the server is
/// up and wants a password); `-LOADING` and other errors are not ready.
pub(super) async fn redis(hostport: &str) -> Result<(), ProbeError> {
    bounded(hostport, "redis", async {
        let mut conn = resp::Connection::connect(hostport)
            .await
            .map_err(|e| resp_error(hostport, e))?;
        match conn
            .command(&[b"PING"])
            .await
            .map_err(|e| resp_error(hostport, e))?
        {
            Reply::Simple(s) if s == "PONG" => Ok(()),
            Reply::Error(e) if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") => Ok(()),
            other => Err(ProbeError::NotReady {
                protocol: "redis",
                reason: format!("PING answered {}", describe(&other)),
            }),
        }
    })
    .await
}

/// Ready when the broker answers an `ApiVersions` request without an error code.
pub(super) async fn kafka(hostport: &str) -> Result<(), ProbeError> {
    bounded(hostport, "kafka", async {
        let mut conn = kafka::Connection::connect(hostport)
            .await
            .map_err(|e| kafka_error(hostport, e))?;
        conn.api_versions()
            .await
            .map(|_| ())
            .map_err(|e| kafka_error(hostport, e))
    })
    .await
}

fn kafka_error(hostport: &str, e: KafkaError) -> ProbeError {
    match e {
        KafkaError::Io(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            ProbeError::Dial {
                addr: hostport.to_owned(),
                source,
            }
        }
        other => ProbeError::NotReady {
            protocol: "kafka",
            reason: format!("ApiVersions: {other}"),
        },
    }
}

fn resp_error(hostport: &str, e: RespError) -> ProbeError {
    match e {
        RespError::Io(source) => ProbeError::Dial {
            addr: hostport.to_owned(),
            source,
        },
        RespError::Protocol(reason) => ProbeError::NotReady {
            protocol: "redis",
            reason,
        },
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Simple(s) => format!("+{s}"),
        Reply::Error(e) => format!("-{e}"),
        other => format!("{other:?}"),
    }
}

async fn bounded(
    hostport: &str,
    protocol: &str,
    probe: impl Future<Output = Result<(), ProbeError>>,
) -> Result<(), ProbeError> {
    tokio::time::timeout(TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::TimedOut {
                action: format!("{protocol} handshake with {hostport}"),
                after: TIMEOUT,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers every connection with `reply` once it has read something.
    async fn fake(reply: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
            }
        });
        addr
    }

    fn pg_error(code: &str) -> &'static [u8] {
        let mut body = format!("SFATAL\0C{code}\0Msome text\0").into_bytes();
        body.push(0);
        let mut msg = vec![b'E'];
        msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        msg.extend_from_slice(&body);
        Box::leak(msg.into_boxed_slice())
    }

    #[tokio::test]
    async fn postgres_starting_up_is_not_ready_but_other_refusals_are() {
        let err = postgres(&fake(pg_error("57P03")).await).await.unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::NotReady {
                    protocol: "postgres",
                    ..
                }
            ),
            "{err}"
        );
        // Unknown database: the server accepts connections.
        postgres(&fake(pg_error("3D000")).await).await.unwrap();
        // AuthenticationOk, then ReadyForQuery.
        let ok: &[u8] = b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I";
        postgres(&fake(ok).await).await.unwrap();
        // Not PostgreSQL at all.
        let err = postgres(&fake(b"HTTP/1.1 400 Bad Request\r\n\r\n").await)
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::NotReady { .. }), "{err}");
        let err = postgres("127.0.0.1:1").await.unwrap_err();
        assert!(matches!(err, ProbeError::Dial { .. }), "{err}");
    }

    #[tokio::test]
    async fn kafka_needs_an_api_versions_answer() {
        // Docker's port proxy accepts, then closes: not ready.
        let err = kafka(&fake(b"").await).await.unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::NotReady {
                    protocol: "kafka",
                    ..
                }
            ),
            "{err}"
        );
        let err = kafka("127.0.0.1:1").await.unwrap_err();
        assert!(matches!(err, ProbeError::Dial { .. }), "{err}");
        // Correlation id 1, error code 0, no API keys (v0 response).
        let ok: &[u8] = b"\0\0\0\x0a\0\0\0\x01\0\0\0\0\0\0";
        kafka(&fake(ok).await).await.unwrap();
    }

    #[tokio::test]
    async fn redis_pong_is_ready_and_loading_is_not() {
        redis(&fake(b"+PONG\r\n").await).await.unwrap();
        redis(&fake(b"-NOAUTH Authentication required.\r\n").await)
            .await
            .unwrap();
        let err = redis(&fake(b"-LOADING Redis is loading\r\n").await)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "redis: PING answered -LOADING Redis is loading"
        );
    }
}
