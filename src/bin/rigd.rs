//! The `rigd` server binary: parses the flags and hands over to [`rigd::daemon`].

use std::process::ExitCode;

use rigd::daemon::{Config, FlagError, USAGE};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == rigd::reaper::REAPER_ARG) {
        let record = args.nth(1).unwrap_or_default();
        return ExitCode::from(rigd::reaper::run(std::path::Path::new(&record)) as u8);
    }
    match Config::from_args(args) {
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
