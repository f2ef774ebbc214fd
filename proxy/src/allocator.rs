//! Allocator settings for a process whose proxies carry traffic on glibc's malloc. (rigd
//! itself runs on mimalloc, which frees across threads without the arena locks glibc takes;
//! this is for programs that embed the proxy and keep glibc's allocator.)
//!
//! The HTTP/1.1 path reads into 8 and 72 KiB buffers and records bodies into buffers of up to
//! 64 KiB, so a proxy under load frees and allocates blocks of that size all the time, on
//! every worker thread. glibc's malloc gives the free memory at the top of a thread's heap back
//! to the kernel (`madvise(MADV_DONTNEED)`) as soon as more than 128 KiB of it is free, and
//! the next allocation faults the same pages back in: measured under a 64 KiB load, one
//! `madvise` every 40 requests and a page fault for every request, about 8% of the proxy's
//! CPU time. Keeping up to 16 MiB free per heap makes both go away; memory goes back to the
//! kernel once a heap has more than that free, so what stays is at most what a burst of
//! traffic used.

/// Memory free at the top of a heap that malloc keeps for reuse instead of giving it back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 16 << 20;

/// Allocations from this size up get their own mapping, given back when freed. Setting the
/// trim threshold switches off glibc's moving mmap threshold, so it is set with it (glibc's
/// default starts at 128 KiB, which would map every larger read buffer afresh).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Tunes the process's allocator for proxying: call it once, at the start of a process that
/// runs proxies (rigd does), before its threads start. Returns whether the settings were
/// applied: `false` where the allocator is not glibc's.
pub fn tune_for_proxying() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc parameters; both values are within range.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Page faults of the calling thread so far.
    fn minor_faults() -> i64 {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: initialised by the successful call.
        unsafe { usage.assume_init() }.ru_minflt
    }

    /// On a thread of its own (with a heap of its own), allocates 4 MiB in 64 KiB blocks,
    /// frees them, and counts the page faults of doing it again.
    fn faults_on_reuse() -> i64 {
        std::thread::spawn(|| {
            let cycle = || {
                let blocks: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
                drop(std::hint::black_box(blocks));
            };
            cycle();
            let before = minor_faults();
            cycle();
            minor_faults() - before
        })
        .join()
        .unwrap()
    }

    #[test]
    fn freed_blocks_are_reused_without_faulting_them_in_again() {
        let untuned = faults_on_reuse();
        assert!(
            untuned >= 512,
            "without the tuning, reuse faulted only {untuned} pages: the test cannot tell"
        );
        assert!(tune_for_proxying());
        let tuned = faults_on_reuse();
        assert!(tuned < 64, "{tuned} page faults reusing freed memory");
    }
}
