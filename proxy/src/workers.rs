//! The threads HTTP connections run on: one single-threaded tokio runtime per core, shared by
//! every proxy in the process.
//!
//! A proxy's accept loop runs wherever its caller runs it; each connection it accepts is handed
//! to the next worker in turn and stays there for its whole life. A worker polls its own epoll
//! instance and runs its own tasks: no work stealing, no waking another thread to share a
//! batch of ready connections, no shared run queue. That is how haproxy and nginx run. On a
//! two-core machine, 64 keep-alive HTTP/1.1 connections got 8% more requests per second with
//! 16 B bodies, and 4% more with 64 KiB, than on tokio's multi-threaded scheduler, with less
//! CPU per request. (Only with the observer gathering its records, see
//! [`crate::observe`]: woken across threads for every record, it cost a quarter of the
//! proxy's CPU.)
//!
//! The workers start with the first connection and live as long as the process; idle, they
//! wait in `epoll_wait`. If they cannot be started, connections run on the caller's runtime.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;

use tokio::net::TcpStream;
use tokio::runtime::{Builder, Handle};
use tokio_util::task::TaskTracker;

thread_local! {
    /// The index of the worker running on this thread, if it is one.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// How many workers the process starts (one per core), so that per-worker state can be sized
/// before the first connection starts them.
pub(crate) fn count() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// The index (below [`count`]) of the worker whose thread this is; `None` elsewhere.
pub(crate) fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// The worker runtimes, and which one gets the next connection.
struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

/// Runs `serve` on `stream` on the next worker thread, tracked by `tracker`.
///
/// The stream moves to the worker's own event loop (it is registered there afresh). Without
/// workers it is served where the caller runs.
pub(crate) fn spawn_connection<S, F>(tracker: &TaskTracker, stream: TcpStream, serve: S)
where
    S: FnOnce(TcpStream) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    static WORKERS: OnceLock<Option<Workers>> = OnceLock::new();
    let workers = WORKERS.get_or_init(|| Workers::start(count()));
    match workers {
        Some(workers) => workers.spawn(tracker, stream, serve),
        None => {
            tracker.spawn(serve(stream));
        }
    }
}

impl Workers {
    /// Starts `count` workers; `None` if none could be started.
    fn start(count: usize) -> Option<Workers> {
        let handles: Vec<Handle> = (0..count)
            .filter_map(|index| start_one(index).ok())
            .collect();
        (!handles.is_empty()).then(|| Workers {
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `serve` on `stream` on the next worker, tracked by `tracker`.
    fn spawn<S, F>(&self, tracker: &TaskTracker, stream: TcpStream, serve: S)
    where
        S: FnOnce(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        // Leaves the caller's event loop; a socket that cannot is dropped, as a failed accept.
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        tracker.spawn_on(
            async move {
                // Registers the socket with this worker's event loop; one that refuses it (out
                // of memory) drops the connection, as a failed accept would.
                if let Ok(stream) = TcpStream::from_std(stream) {
                    serve(stream).await;
                }
            },
            &self.handles[index],
        );
    }
}

/// Starts worker `index`: a thread that runs its runtime for the rest of the process.
fn start_one(index: usize) -> std::io::Result<Handle> {
    let runtime = Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    thread::Builder::new()
        .name(format!("rig-proxy-{index}"))
        .spawn(move || {
            INDEX.with(|slot| slot.set(Some(index)));
            runtime.block_on(std::future::pending::<()>())
        })?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    /// Connections are served on the worker threads, in turn, each on a socket that works
    /// there; the tracker sees them to their end.
    #[tokio::test]
    async fn connections_take_turns_on_the_worker_threads() {
        let count = 3;
        let workers = Workers::start(count).expect("workers start");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tracker = TaskTracker::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for _ in 0..count * 3 {
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            workers.spawn(&tracker, accepted, move |mut stream| async move {
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.unwrap();
                stream.write_all(&byte).await.unwrap();
                let name = thread::current().name().map(str::to_string);
                tx.send(name.unwrap_or_default()).unwrap();
            });
            client.write_all(b"x").await.unwrap();
            let mut echo = [0u8; 1];
            client.read_exact(&mut echo).await.unwrap();
            assert_eq!(&echo, b"x");
            clients.push(client);
        }
        drop(tx);
        tracker.close();
        tracker.wait().await;
        let mut served = BTreeMap::new();
        while let Some(name) = rx.recv().await {
            *served.entry(name).or_insert(0) += 1;
        }
        assert_eq!(served.len(), count, "{served:?}");
        for (name, connections) in &served {
            assert!(name.starts_with("rig-proxy-"), "{served:?}");
            assert_eq!(*connections, 3, "{served:?}");
        }
    }
}
