//! `bench_listener`: the smallest possible service for the startup benchmark. Binds
//! `127.0.0.1:$PORT` and accepts connections forever, closing each at once; exits with
//! status 2 when `PORT` is missing or cannot be bound. Stops on SIGINT/SIGTERM (default
//! signal actions).

use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let port = match std::env::var("PORT").map(|p| p.parse::<u16>()) {
        Ok(Ok(port)) => port,
        _ => {
            eprintln!("bench_listener: PORT must be set to a port number");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("bench_listener: bind 127.0.0.1:{port}: {e}");
            return ExitCode::from(2);
        }
    };
    for connection in listener.incoming() {
        // Accept and close: a readiness probe only needs the connection to be accepted.
        drop(connection);
    }
    ExitCode::SUCCESS
}
