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
//! about 5% less CPU per h2c request.
//!
//! Built without transparent huge pages (`no_thp`): mimalloc otherwise asks for them on its
//! eagerly committed memory, and a proxy holding 1,000 idle connections took 8 MiB more
//! where glibc took 1.9 (1.7 with huge pages off).

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rigd::daemon::main_with_args(std::env::args_os().skip(1))
}
