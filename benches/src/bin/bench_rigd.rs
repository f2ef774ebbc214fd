//! `bench_rigd`: the `rigd` binary, built inside this package so the startup benchmark can
//! run a real rigd process (its own runtime, its reaper, HTTP over loopback) as a test
//! would. It is exactly `rigd`: the same [`rigd::daemon::main_with_args`].

use std::process::ExitCode;

/// As rigd's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rigd::daemon::main_with_args(std::env::args_os().skip(1))
}
