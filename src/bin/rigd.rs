//! The `rigd` server binary: hands its arguments to [`rigd::daemon::main_with_args`].

use std::process::ExitCode;

fn main() -> ExitCode {
    rigd::daemon::main_with_args(std::env::args_os().skip(1))
}
