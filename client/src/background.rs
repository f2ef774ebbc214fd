//! The SDK's own runtime: one thread per test process, running a single-threaded Tokio
//! runtime for the work that must go on whatever the test's runtime is doing.
//!
//! It follows every environment's event stream (so traffic is recorded and callbacks are
//! dispatched even while the test thread blocks), sends keepalives, forwards in-test service
//! output, and performs teardown when an [`Environment`](crate::Environment) is dropped. That
//! last part is why it exists: `#[tokio::test]` runs on a current-thread runtime, which is
//! shut down (cancelling its tasks) as soon as the test function returns, and which a `Drop`
//! implementation may not block on. Blocking the test thread while *this* runtime does the
//! `DELETE` is safe: nothing it runs needs the test's runtime.
//!
//! User code (hooks, in-test services) never runs here; it runs on the test's runtime.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};

use crate::error::{Error, Result};

static RUNTIME: OnceLock<std::result::Result<Handle, String>> = OnceLock::new();

/// The background runtime, started on first use.
pub(crate) fn handle() -> Result<Handle> {
    RUNTIME
        .get_or_init(start)
        .clone()
        .map_err(|reason| Error::Runtime { reason })
}

fn start() -> std::result::Result<Handle, String> {
    let runtime = Builder::new_current_thread()
        .enable_all()
        .thread_name("rig-sdk")
        .build()
        .map_err(|e| format!("cannot build a Tokio runtime: {e}"))?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("rig-sdk".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .map_err(|e| format!("cannot spawn the rig-sdk thread: {e}"))?;
    Ok(handle)
}

/// Runs `future` on the background runtime and blocks the calling thread until it is done
/// or `timeout` passes (`None` then; the future keeps running). Callable from anywhere,
/// including `Drop` inside a test's runtime.
pub(crate) fn block_on<F>(future: F, timeout: Duration) -> Option<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = handle().ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv_timeout(timeout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn block_on_works_inside_a_current_thread_runtime() {
        // The future needs a runtime (a timer); the caller's is blocked, the SDK's is not.
        let got = block_on(
            async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                42
            },
            Duration::from_secs(10),
        );
        assert_eq!(got, Some(42));
    }

    #[test]
    fn block_on_gives_up_after_the_timeout() {
        let got = block_on(std::future::pending::<()>(), Duration::from_millis(20));
        assert_eq!(got, None);
    }
}
