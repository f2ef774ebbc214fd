//! The `rigd` server binary: tunes the allocator for the proxies it runs and hands its
//! arguments to [`rigd::daemon::main_with_args`].

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread starts: the environments' proxies run in this process.
    rig_proxy::tune_for_proxying();
    rigd::daemon::main_with_args(std::env::args_os().skip(1))
}
