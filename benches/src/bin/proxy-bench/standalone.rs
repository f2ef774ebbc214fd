//! What every server subcommand shares: its runtime, its announcement and its stop signal.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

/// A multi-threaded tokio runtime with `threads` workers.
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

/// Prints `listening NAME=ADDR ...` on stdout, which the harness waits for.
pub fn announce(addrs: &BTreeMap<&str, SocketAddr>) -> Result<()> {
    let words: Vec<String> = addrs
        .iter()
        .map(|(name, addr)| format!("{name}={addr}"))
        .collect();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening {}", words.join(" ")).context("writing to stdout")?;
    stdout.flush().context("writing to stdout")
}

/// A token cancelled when standard input reaches end of file (the harness closed it or died)
/// or SIGTERM/SIGINT arrives.
pub fn stop_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let on_eof = token.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        on_eof.cancel();
    });
    let on_signal = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        on_signal.cancel();
    });
    token
}
