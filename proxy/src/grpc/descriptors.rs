//! The descriptor cache: one reflection fetch per target address at a time, shared by every
//! proxy of the process, with expiry and negative caching.
//!
//! - Keyed by the target's address (`host:port`), never by a service name: two environments'
//!   services of the same name do not share descriptors.
//! - Single-flight: concurrent lookups of a target share one fetch.
//! - A success is reused for [`POSITIVE_TTL`]; after that the next lookup starts a refresh and
//!   keeps using the old descriptors until it lands. A proxy starting in front of a target
//!   ([`Descriptors::refresh`]) drops descriptors older than [`START_MAX_AGE`], so a port
//!   reused by another server (a later environment) is never decoded with stale descriptors.
//! - A failure (no reflection, target gone) is remembered for [`NEGATIVE_TTL`], so calls to a
//!   server without reflection do not each probe it.
//! - An entry lives as long as a proxy uses its target: every [`Descriptors`] (and its clones)
//!   holds it, and the last one to go removes it and stops its fetch in flight. Every
//!   environment gets fresh ports, so a long-lived rigd would otherwise keep one descriptor
//!   set per target it ever proxied. A fetch that lands after its entry went is dropped: it
//!   neither brings the entry back nor fills a later entry of the same address.
//!
//! Fetches run on their own tasks, never on the request path.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use rig_protocols::grpc::Schema;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::reflection;

/// How long fetched descriptors are used before they are refreshed.
pub(crate) const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a failed fetch is remembered.
pub(crate) const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Descriptors older than this are dropped when a proxy starts in front of the target.
pub(crate) const START_MAX_AGE: Duration = Duration::from_secs(5);

/// The outcome of a fetch: descriptors, or why there are none.
pub(crate) type Fetched = Result<Arc<Schema>, Arc<str>>;

/// What a lookup found.
pub(crate) enum Lookup {
    /// Known: descriptors, or known to be unavailable.
    Ready(Fetched),
    /// A fetch is in flight; the receiver turns `true` when it lands.
    Pending(watch::Receiver<bool>),
}

#[derive(Default)]
struct Entry {
    /// The [`User`]s of the target; the entry is removed when the last goes.
    users: usize,
    value: Option<(Fetched, Instant)>,
    fetching: Option<Fetch>,
}

/// A fetch in flight.
struct Fetch {
    /// Turns `true` when the fetch lands.
    done: watch::Receiver<bool>,
    /// Stops the fetch when its entry is removed.
    task: AbortHandle,
}

type Cache = Mutex<HashMap<Arc<str>, Entry>>;

static CACHE: LazyLock<Cache> = LazyLock::new(Cache::default);

/// The descriptors of one target, as seen by one proxy. It and its clones keep the target's
/// cache entry alive.
#[derive(Clone)]
pub(crate) struct Descriptors {
    user: Arc<User>,
    timeout: Duration,
}

/// One proxy's hold on the cache entry of its target: the entry is removed (and its fetch in
/// flight stopped) when the last hold is dropped.
struct User {
    target: Arc<str>,
}

impl User {
    fn new(target: Arc<str>) -> User {
        CACHE.lock().entry(target.clone()).or_default().users += 1;
        User { target }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let mut cache = CACHE.lock();
        let Some(entry) = cache.get_mut(&self.target) else {
            return;
        };
        entry.users = entry.users.saturating_sub(1);
        if entry.users == 0 {
            if let Some(fetch) = cache.remove(&self.target).and_then(|e| e.fetching) {
                fetch.task.abort();
            }
        }
    }
}

impl Descriptors {
    /// Descriptors of `target`, each fetch limited to `timeout`. The target's entry is kept
    /// while this or a clone of it lives.
    pub(crate) fn new(target: Arc<str>, timeout: Duration) -> Descriptors {
        Descriptors {
            user: Arc::new(User::new(target)),
            timeout,
        }
    }

    /// The current descriptors, starting a fetch when there are none or they expired. Never
    /// waits.
    pub(crate) fn lookup(&self) -> Lookup {
        self.lookup_with_max_age(None)
    }

    /// Called when a proxy starts in front of the target: drops descriptors older than
    /// [`START_MAX_AGE`] and fetches anew unless a fetch is in flight.
    pub(crate) fn refresh(&self) {
        self.lookup_with_max_age(Some(START_MAX_AGE));
    }

    /// Waits (at most about the fetch timeout) until the descriptors are known. `None` without
    /// descriptors.
    pub(crate) async fn wait(&self) -> Option<Arc<Schema>> {
        let mut pending = match self.lookup() {
            Lookup::Ready(fetched) => return fetched.ok(),
            Lookup::Pending(pending) => pending,
        };
        // The fetch gives up after its own timeout; the margin lets its failure land.
        let limit = self.timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(limit, pending.wait_for(|done| *done)).await;
        match self.lookup() {
            Lookup::Ready(fetched) => fetched.ok(),
            Lookup::Pending(_) => None,
        }
    }

    fn lookup_with_max_age(&self, max_age: Option<Duration>) -> Lookup {
        let mut cache = CACHE.lock();
        // Never missing: this user keeps the entry.
        let Some(entry) = cache.get_mut(&self.user.target) else {
            return Lookup::Ready(Err("no descriptors".into()));
        };
        let now = Instant::now();
        if let (Some(max_age), Some((_, at))) = (max_age, &entry.value) {
            if now.duration_since(*at) > max_age && entry.fetching.is_none() {
                entry.value = None;
            }
        }
        let expired = match &entry.value {
            None => true,
            Some((Ok(_), at)) => now.duration_since(*at) > POSITIVE_TTL,
            Some((Err(_), at)) => now.duration_since(*at) > NEGATIVE_TTL,
        };
        if expired && entry.fetching.is_none() {
            entry.fetching = self.start_fetch();
        }
        match (&entry.value, &entry.fetching) {
            // A stale success keeps serving while its refresh runs.
            (Some((Ok(schema), _)), _) => Lookup::Ready(Ok(schema.clone())),
            (Some((Err(error), _)), None) => Lookup::Ready(Err(error.clone())),
            (_, Some(fetch)) => Lookup::Pending(fetch.done.clone()),
            (None, None) => Lookup::Ready(Err("no descriptors".into())),
        }
    }

    /// Spawns the fetch on the current runtime; `None` outside a runtime (nothing to fetch
    /// on).
    fn start_fetch(&self) -> Option<Fetch> {
        let (done, pending) = watch::channel(false);
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let target = self.user.target.clone();
        let timeout = self.timeout;
        let own = pending.clone();
        let task = runtime.spawn(async move {
            let fetched = reflection::fetch(&target, timeout)
                .await
                .map(Arc::new)
                .map_err(|e| Arc::<str>::from(e.to_string()));
            let mut cache = CACHE.lock();
            // Only the entry that started this fetch takes its result: after the last user
            // went, the entry is gone or is a new one (a later proxy of the same address).
            let entry = cache.get_mut(&target).filter(|entry| {
                entry
                    .fetching
                    .as_ref()
                    .is_some_and(|f| f.done.same_channel(&own))
            });
            if let Some(entry) = entry {
                entry.value = Some((fetched, Instant::now()));
                entry.fetching = None;
            }
            let _ = done.send(true);
        });
        Some(Fetch {
            done: pending,
            task: task.abort_handle(),
        })
    }
}

/// Whether the cache holds an entry for `target`.
#[cfg(test)]
fn cached(target: &str) -> bool {
    CACHE.lock().contains_key(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A TCP server that accepts and counts connections but never speaks HTTP/2, so every
    /// reflection fetch against it times out.
    async fn silent_server() -> (Arc<str>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: Arc<str> = listener.local_addr().unwrap().to_string().into();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                open.push(stream);
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn fetches_are_single_flight_and_failures_are_remembered() {
        let (target, accepted) = silent_server().await;
        let descriptors = Descriptors::new(target.clone(), Duration::from_millis(200));
        let other = Descriptors::new(target, Duration::from_millis(200));
        assert!(matches!(descriptors.lookup(), Lookup::Pending(_)));
        // A second proxy of the same target joins the fetch in flight.
        assert!(matches!(other.lookup(), Lookup::Pending(_)));
        assert!(descriptors.wait().await.is_none());
        match other.lookup() {
            Lookup::Ready(Err(error)) => {
                assert!(error.contains("did not answer within"), "{error}")
            }
            _ => panic!("the failure is remembered"),
        }
        assert!(other.wait().await.is_none());
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one fetch for all lookups"
        );
    }

    #[tokio::test]
    async fn an_entry_lives_while_a_proxy_uses_its_target() {
        let (target, _) = silent_server().await;
        let first = Descriptors::new(target.clone(), Duration::from_millis(200));
        let second = Descriptors::new(target.clone(), Duration::from_millis(200));
        // A record waiting for descriptors holds a clone.
        let clone = second.clone();
        let Lookup::Pending(mut fetch) = first.lookup() else {
            panic!("a fetch starts");
        };
        drop(first);
        assert!(cached(&target), "kept while another proxy uses it");
        drop(second);
        assert!(cached(&target), "kept while a clone lives");
        drop(clone);
        assert!(!cached(&target), "removed with its last user");
        // The fetch in flight is stopped (or lands) without bringing the entry back.
        let _ = fetch.wait_for(|done| *done).await;
        assert!(!cached(&target));

        // A later proxy of the same address starts afresh: nothing remembered.
        let later = Descriptors::new(target.clone(), Duration::from_millis(200));
        assert!(cached(&target));
        assert!(matches!(later.lookup(), Lookup::Pending(_)));
        assert!(later.wait().await.is_none());
        drop(later);
        assert!(!cached(&target));
    }

    #[tokio::test]
    async fn targets_are_cached_by_address() {
        let (first, first_accepted) = silent_server().await;
        let (second, second_accepted) = silent_server().await;
        let a = Descriptors::new(first, Duration::from_millis(200));
        let b = Descriptors::new(second, Duration::from_millis(200));
        assert!(a.wait().await.is_none());
        assert!(b.wait().await.is_none());
        assert_eq!(first_accepted.load(Ordering::SeqCst), 1);
        assert_eq!(second_accepted.load(Ordering::SeqCst), 1);
    }
}
