//! The `rigd` server binary: parses the flags and hands over to [`rigd::daemon`].

use std::process::ExitCode;

use rigd::daemon::{Config, FlagError, USAGE};

fn main() -> ExitCode {
    match Config::from_args(std::env::args_os().skip(1)) {
        Ok(config) => rigd::daemon::main(config),
        Err(FlagError::HelpRequested) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rigd: {e}");
            eprintln!("Run `rigd --help` for usage.");
            // Go's flag package exits with 2 on a usage error.
            ExitCode::from(2)
        }
    }
}
