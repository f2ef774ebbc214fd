//! The `rigd` server binary: runs on mimalloc and hands its arguments to
//! [`rigd::daemon::main_with_args`].
//!
//! The allocator matters because the environments' proxies run in this process: their data
//! path allocates on the per-core workers, and their observer frees that memory on another
//! thread. With glibc's malloc each such free takes the lock of the worker's arena, and the
//! workers wait on it: at 100,000 h2c requests a second a proxy made 13,000 `futex` calls a
//! second, nearly all of them for arena locks (the observer freeing captured bodies, the
//! workers growing HPACK buffers). mimalloc frees across threads without a lock: 11 `futex`
//! calls in 3 seconds of the same load. In interleaved benchmark runs the proxy then used
//! about 5% less CPU per h2c request. mimalloc 2 is used: 3's CPU per request varied between
//! runs by a quarter.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rigd::daemon::main_with_args(std::env::args_os().skip(1))
}
