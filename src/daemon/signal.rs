//! Shutdown triggers, injectable so tests never install handlers for real OS signals.

use std::fmt;

use tokio_util::sync::CancellationToken;

/// Why rigd is shutting down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// An OS signal, by its conventional name (`interrupt`, `terminated`).
    Signal(&'static str),
    /// The embedding program (or a test) asked for it.
    Requested,
    /// No environment and no request for the whole idle timeout.
    IdleTimeout,
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownReason::Signal(name) => write!(f, "received {name}"),
            ShutdownReason::Requested => f.write_str("shutdown requested"),
            ShutdownReason::IdleTimeout => f.write_str("idle timeout"),
        }
    }
}

/// Where shutdown requests come from.
///
/// [`ShutdownSignal::recv`] completes once per request: the first starts the graceful
/// shutdown, a second one tells rigd to stop waiting for environments and exit.
pub struct ShutdownSignal {
    kind: Kind,
}

enum Kind {
    #[cfg(unix)]
    Os {
        interrupt: tokio::signal::unix::Signal,
        terminate: tokio::signal::unix::Signal,
    },
    #[cfg(not(unix))]
    CtrlC,
    Token {
        token: CancellationToken,
        delivered: bool,
    },
    Never,
}

impl ShutdownSignal {
    /// SIGINT and SIGTERM. Installs the handlers now, so a signal that arrives during startup
    /// is not lost. Must be called inside the runtime.
    pub fn os() -> std::io::Result<ShutdownSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignal {
                kind: Kind::Os {
                    interrupt: signal(SignalKind::interrupt())?,
                    terminate: signal(SignalKind::terminate())?,
                },
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ShutdownSignal { kind: Kind::CtrlC })
        }
    }

    /// Shutdown when `token` is cancelled (once; there is no second request).
    pub fn token(token: CancellationToken) -> ShutdownSignal {
        ShutdownSignal {
            kind: Kind::Token {
                token,
                delivered: false,
            },
        }
    }

    /// Never requests shutdown (rigd then stops only on idle timeout).
    pub fn never() -> ShutdownSignal {
        ShutdownSignal { kind: Kind::Never }
    }

    /// Waits for the next shutdown request.
    pub async fn recv(&mut self) -> ShutdownReason {
        match &mut self.kind {
            #[cfg(unix)]
            Kind::Os {
                interrupt,
                terminate,
            } => {
                tokio::select! {
                    _ = interrupt.recv() => ShutdownReason::Signal("interrupt"),
                    _ = terminate.recv() => ShutdownReason::Signal("terminated"),
                }
            }
            #[cfg(not(unix))]
            Kind::CtrlC => match tokio::signal::ctrl_c().await {
                Ok(()) => ShutdownReason::Signal("interrupt"),
                Err(_) => std::future::pending().await,
            },
            Kind::Token { token, delivered } => {
                if *delivered {
                    return std::future::pending().await;
                }
                token.cancelled().await;
                *delivered = true;
                ShutdownReason::Requested
            }
            Kind::Never => std::future::pending().await,
        }
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            #[cfg(unix)]
            Kind::Os { .. } => "os",
            #[cfg(not(unix))]
            Kind::CtrlC => "ctrl-c",
            Kind::Token { .. } => "token",
            Kind::Never => "never",
        };
        f.debug_struct("ShutdownSignal")
            .field("kind", &kind)
            .finish()
    }
}
