use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A backend that counts what happens to it.
struct Fake {
    counters: Arc<Counters>,
    next: AtomicUsize,
    /// Which start made it (1 for the first).
    number: usize,
}

#[derive(Default)]
struct Counters {
    starts: AtomicUsize,
    stops: AtomicUsize,
    dropped: Mutex<Vec<usize>>,
    /// Backends made by a start numbered below this have died.
    dead_below: AtomicUsize,
}

impl Backend for Fake {
    type Lease = usize;

    async fn new_lease(&self) -> Result<usize, String> {
        Ok(self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }

    async fn drop_lease(&self, lease: usize) {
        self.counters.dropped.lock().push(lease);
    }

    async fn stop(&self) {
        self.counters.stops.fetch_add(1, Ordering::SeqCst);
    }

    fn alive(&self) -> bool {
        self.number >= self.counters.dead_below.load(Ordering::SeqCst)
    }
}

fn starter(
    counters: &Arc<Counters>,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<Fake, String>> + Send>> {
    let counters = counters.clone();
    move || {
        Box::pin(async move {
            let number = counters.starts.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Fake {
                counters,
                next: AtomicUsize::new(0),
                number,
            })
        })
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_acquires_share_one_start_and_get_distinct_leases() {
    let pool = Pool::<Fake>::new("fake", Duration::from_secs(120));
    let counters = Arc::new(Counters::default());
    let (a, b) = tokio::join!(
        pool.acquire("k", starter(&counters)),
        pool.acquire("k", starter(&counters))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(counters.starts.load(Ordering::SeqCst), 1);
    assert_ne!(a.get(), b.get());
    assert!(Arc::ptr_eq(a.backend(), b.backend()));
    // Another key gets its own backend.
    let c = pool.acquire("other", starter(&counters)).await.unwrap();
    assert_eq!(counters.starts.load(Ordering::SeqCst), 2);
    let (la, lb) = (*a.get(), *b.get());
    a.release().await;
    b.release().await;
    c.release().await;
    assert_eq!(*counters.dropped.lock(), vec![la, lb, 1]);
}

/// A lease of a backend that died and was replaced does not count against the replacement:
/// releasing it must not leave the replacement looking idle while it is leased.
#[tokio::test(start_paused = true)]
async fn releasing_a_lease_of_a_dead_backend_does_not_idle_its_replacement() {
    let pool = Pool::<Fake>::new("fake", Duration::from_secs(120));
    let counters = Arc::new(Counters::default());
    let old = pool.acquire("k", starter(&counters)).await.unwrap();
    counters.dead_below.store(2, Ordering::SeqCst);
    let new = pool.acquire("k", starter(&counters)).await.unwrap();
    assert_eq!(counters.starts.load(Ordering::SeqCst), 2);
    assert!(!Arc::ptr_eq(old.backend(), new.backend()));
    old.release().await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        counters.stops.load(Ordering::SeqCst),
        1,
        "only the dead backend is stopped; its replacement is still leased"
    );
    assert_eq!(pool.backends(), 1);
    new.release().await;
    tokio::time::sleep(Duration::from_secs(121)).await;
    assert_eq!(
        counters.stops.load(Ordering::SeqCst),
        2,
        "then it idles out"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_backend_stops_after_the_idle_time_unless_leased_again() {
    let pool = Pool::<Fake>::new("fake", Duration::from_secs(120));
    let counters = Arc::new(Counters::default());
    let lease = pool.acquire("k", starter(&counters)).await.unwrap();
    lease.release().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    // Leased again within the idle time: the timer armed at the release is void.
    let lease = pool.acquire("k", starter(&counters)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(counters.stops.load(Ordering::SeqCst), 0);
    assert_eq!(counters.starts.load(Ordering::SeqCst), 1);
    // Dropped without release (a cancelled environment): the reference still goes back.
    drop(lease);
    tokio::time::sleep(Duration::from_secs(121)).await;
    assert_eq!(counters.stops.load(Ordering::SeqCst), 1);
    assert_eq!(pool.backends(), 0);
    // The next acquire starts a new backend.
    pool.acquire("k", starter(&counters)).await.unwrap();
    assert_eq!(counters.starts.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_fails_every_waiter_and_the_next_acquire_retries() {
    let pool = Pool::<Fake>::new("fake", Duration::from_secs(120));
    let failing = || async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err::<Fake, _>("initdb not found".to_string())
    };
    let (a, b) = tokio::join!(pool.acquire("k", failing), pool.acquire("k", failing));
    for result in [a, b] {
        let err = result.err().unwrap();
        assert_eq!(err, "pool: start backend for k: initdb not found");
    }
    let counters = Arc::new(Counters::default());
    pool.acquire("k", starter(&counters)).await.unwrap();
    assert_eq!(counters.starts.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn close_stops_everything_including_backends_still_starting() {
    let pool = Pool::<Fake>::new("fake", Duration::from_secs(120));
    let counters = Arc::new(Counters::default());
    let _a = pool.acquire("a", starter(&counters)).await.unwrap();
    let _b = pool.acquire("b", starter(&counters)).await.unwrap();
    let starting = {
        let pool = pool.clone();
        let counters = counters.clone();
        tokio::spawn(async move { pool.acquire("c", starter(&counters)).await.err() })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    pool.close().await;
    assert_eq!(counters.stops.load(Ordering::SeqCst), 2);
    let err = starting.await.unwrap().expect("the start was cut short");
    assert!(err.contains("shutting down"), "{err}");
    assert_eq!(counters.stops.load(Ordering::SeqCst), 3);
    assert_eq!(pool.backends(), 0);
    // A later acquire starts afresh.
    pool.acquire("a", starter(&counters)).await.unwrap();
    assert_eq!(counters.starts.load(Ordering::SeqCst), 4);
}
