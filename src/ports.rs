//! The port allocator: hands out free loopback ports to environment instances.
//!
//! Candidates are the ports 8192 through 32767 (24576 of them: below the Linux ephemeral range,
//! above the well-known ports). The allocator walks them with a cursor that starts at a random
//! offset and advances by a random prime step, so parallel rigd processes (parallel test
//! runs) spread over the range and rarely race for the same port.
//!
//! Unlike upstream, the step is always coprime to the number of candidates (upstream could
//! draw 2 or 3, the prime factors of 24576, and then only ever visit a half or a third of the
//! range), so one cycle of the cursor visits every candidate exactly once.
//!
//! [`PortAllocator::allocate`] binds `127.0.0.1:<port>` for each candidate and returns the
//! **open** listeners: a proxy keeps its listener (no window in which another process can take
//! the port), a service closes it and binds the port itself. Ports stay tracked for their
//! instance until [`PortAllocator::release`], so the same rigd never hands a port out twice,
//! even after its listener was closed, and other rigds on the machine skip it too (see
//! [`reservations`]).

mod forks;
mod reservations;

pub use forks::{forking, Fence, ForkGuard};
use reservations::{Reservation, Reservations};

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use parking_lot::Mutex;

/// The first candidate port (upstream `0x2000`).
pub const PORT_BASE: u16 = 0x2000;
/// How many candidates there are: 8192 through 32767 (upstream `0x8000 - 0x2000`).
pub const PORT_COUNT: u32 = 0x8000 - PORT_BASE as u32;

/// Allocating ports failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Every candidate port was tracked or in use by another process.
    #[error("allocate port: exhausted {candidates} candidates")]
    Exhausted {
        /// How many candidates were tried for the port that could not be found.
        candidates: u32,
    },
}

/// Allocates loopback ports to environment instances; shared by every environment of a rigd.
#[derive(Debug)]
pub struct PortAllocator {
    candidates: Candidates,
    reservations: Reservations,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Port → the instance it is allocated to, and its reservation against other rigds.
    owners: HashMap<u16, (String, Reservation)>,
    /// Instance → its ports, for an O(k) release.
    by_instance: HashMap<String, Vec<u16>>,
    /// The cursor, always in `[0, candidates.len())`.
    offset: u32,
    /// A prime coprime to `candidates.len()`, so the cursor visits every candidate per cycle.
    step: u32,
}

impl Default for PortAllocator {
    fn default() -> Self {
        PortAllocator::new()
    }
}

impl PortAllocator {
    /// An empty allocator over 8192..=32767 with a random start and step.
    pub fn new() -> PortAllocator {
        PortAllocator::with_seed(RandomState::new().hash_one(std::process::id()))
    }

    /// An empty allocator whose start and step are derived from `seed`, for reproducible
    /// tests. Different seeds give different walks.
    pub fn with_seed(seed: u64) -> PortAllocator {
        PortAllocator::with_candidates(
            Candidates::Range {
                base: PORT_BASE,
                count: PORT_COUNT,
            },
            seed,
        )
    }

    fn with_candidates(candidates: Candidates, seed: u64) -> PortAllocator {
        PortAllocator::with_reservations(candidates, seed, Reservations::shared())
    }

    fn with_reservations(
        candidates: Candidates,
        seed: u64,
        reservations: Reservations,
    ) -> PortAllocator {
        let mut rng = SplitMix64(seed);
        let count = candidates.len();
        let offset = rng.below(count);
        let step = coprime_prime_step(count, &mut rng);
        PortAllocator {
            candidates,
            reservations,
            state: Mutex::new(State {
                owners: HashMap::new(),
                by_instance: HashMap::new(),
                offset,
                step,
            }),
        }
    }

    /// Binds `n` free ports on 127.0.0.1 for `instance` and returns their open listeners,
    /// in allocation order. `n == 0` returns an empty list.
    ///
    /// All or nothing: the ports are tracked only when all `n` were found; otherwise every
    /// listener opened by this call is closed and nothing is recorded.
    ///
    /// # Errors
    /// [`PortError::Exhausted`] when a full cycle over the candidates finds no port that is
    /// neither tracked nor in use.
    pub fn allocate(&self, instance: &str, n: usize) -> Result<Vec<TcpListener>, PortError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let count = self.candidates.len();
        // One lock for the whole call: n is small and loopback binds are fast, and holding
        // it keeps concurrent callers from binding the same candidates.
        let mut state = self.state.lock();
        let mut listeners = Vec::with_capacity(n);
        let mut ports: Vec<u16> = Vec::with_capacity(n);
        let mut reserved = Vec::with_capacity(n);
        for _ in 0..n {
            match state.next_free(&self.candidates, &self.reservations, &ports) {
                Some((port, listener, reservation)) => {
                    ports.push(port);
                    listeners.push(listener);
                    reserved.push(reservation);
                }
                // Dropping `listeners` and `reserved` closes and frees every port opened by
                // this call.
                None => return Err(PortError::Exhausted { candidates: count }),
            }
        }
        for (&port, reservation) in ports.iter().zip(reserved) {
            state
                .owners
                .insert(port, (instance.to_string(), reservation));
        }
        state
            .by_instance
            .entry(instance.to_string())
            .or_default()
            .extend_from_slice(&ports);
        Ok(listeners)
    }

    /// Forgets every port allocated to `instance`. Releasing an unknown instance does nothing.
    pub fn release(&self, instance: &str) {
        let mut state = self.state.lock();
        if let Some(ports) = state.by_instance.remove(instance) {
            for port in ports {
                state.owners.remove(&port);
            }
        }
    }

    /// The number of ports currently tracked, over all instances.
    pub fn allocated(&self) -> usize {
        self.state.lock().owners.len()
    }
}

impl State {
    /// Advances the cursor until a candidate is neither tracked, nor opened by the current
    /// call (`taken`), nor reserved by another rigd, and binds; tries each candidate at most
    /// once.
    fn next_free(
        &mut self,
        candidates: &Candidates,
        reservations: &Reservations,
        taken: &[u16],
    ) -> Option<(u16, TcpListener, Reservation)> {
        let count = candidates.len();
        for _ in 0..count {
            let port = candidates.get(self.offset);
            self.offset = advance(self.offset, self.step, count);
            if self.owners.contains_key(&port) || taken.contains(&port) {
                continue;
            }
            let Some(reservation) = reservations.reserve(port) else {
                continue;
            };
            // A bind failure means another process has the port: try the next one.
            if let Ok(listener) = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
                return Some((port, listener, reservation));
            }
        }
        None
    }
}

/// `(offset + step) mod count` without overflow.
fn advance(offset: u32, step: u32, count: u32) -> u32 {
    let next = u64::from(offset) + u64::from(step);
    // The remainder is below `count`, which is a u32.
    u32::try_from(next % u64::from(count)).unwrap_or(0)
}

/// The ports the allocator walks over.
#[derive(Debug)]
enum Candidates {
    /// `base .. base + count`.
    Range { base: u16, count: u32 },
    /// An explicit list, so tests can build tiny ranges out of ports they control.
    #[cfg(test)]
    List(Vec<u16>),
}

impl Candidates {
    fn len(&self) -> u32 {
        match self {
            Candidates::Range { count, .. } => *count,
            #[cfg(test)]
            Candidates::List(ports) => u32::try_from(ports.len()).unwrap_or(u32::MAX),
        }
    }

    /// The `i`-th candidate; `i < len()`.
    fn get(&self, i: u32) -> u16 {
        match self {
            Candidates::Range { base, .. } => {
                u16::try_from(u32::from(*base) + i).unwrap_or(u16::MAX)
            }
            #[cfg(test)]
            Candidates::List(ports) => ports[i as usize],
        }
    }
}

/// A random prime step in `[2, count)` that shares no factor with `count`, so that stepping
/// through `0..count` visits every value once per cycle. Falls back to 1 when no such prime
/// exists (`count <= 2`).
///
/// For `count >= 3` one always exists (any prime factor of `count - 1`), so the search from a
/// random start, wrapping around, always ends.
fn coprime_prime_step(count: u32, rng: &mut SplitMix64) -> u32 {
    if count <= 2 {
        return 1;
    }
    let span = count - 2;
    let start = rng.below(span);
    (0..span)
        .map(|i| 2 + (start + i) % span)
        .find(|&p| is_prime(p) && gcd(p, count) == 1)
        .unwrap_or(1)
}

/// Deterministic primality by trial division (the candidates are below 2^16).
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3u32;
    while u64::from(d) * u64::from(d) <= u64::from(n) {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// SplitMix64: a tiny, well-mixed generator; plenty for choosing a start and a step.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `[0, bound)`; `bound` must be positive. The modulo bias is negligible for
    /// bounds this small.
    fn below(&mut self, bound: u32) -> u32 {
        u32::try_from(self.next_u64() % u64::from(bound.max(1))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn port_of(listener: &TcpListener) -> u16 {
        listener.local_addr().unwrap().port()
    }

    fn ports_of(listeners: &[TcpListener]) -> Vec<u16> {
        listeners.iter().map(port_of).collect()
    }

    /// A loopback port that was free a moment ago (bound to port 0, then closed).
    fn free_port() -> u16 {
        port_of(&TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn list_allocator(ports: Vec<u16>) -> PortAllocator {
        PortAllocator::with_candidates(Candidates::List(ports), 7)
    }

    /// Two rigds, started with different `TMPDIR`s: a port one of them handed to a service,
    /// which has not bound it yet, is not the other's to take; once its environment ends, it
    /// is.
    #[test]
    fn another_rigd_does_not_take_a_port_waiting_for_its_service() {
        let (temp_a, temp_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Outside the candidate range of every rigd on the machine, whose reservations these
        // share.
        let port = free_port();
        let rigd = |seed, temp: &tempfile::TempDir| {
            PortAllocator::with_reservations(
                Candidates::List(vec![port]),
                seed,
                Reservations::shared_with_temp(temp.path()),
            )
        };
        let (a, b) = (rigd(1, &temp_a), rigd(2, &temp_b));
        // The listener is closed at once: the port is free for the service to bind.
        assert_eq!(port_of(&a.allocate("env-a", 1).unwrap()[0]), port);
        assert_eq!(
            b.allocate("env-b", 1).unwrap_err(),
            PortError::Exhausted { candidates: 1 }
        );
        a.release("env-a");
        assert_eq!(port_of(&b.allocate("env-b", 1).unwrap()[0]), port);
    }

    // Upstream TestPortAllocator_AllocateReturnsUniquePorts.
    #[test]
    fn allocate_returns_unique_ports_in_range() {
        let alloc = PortAllocator::new();
        let ports = ports_of(&alloc.allocate("inst-1", 3).unwrap());
        assert_eq!(ports.len(), 3);
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), 3, "{ports:?}");
        for port in ports {
            assert!((8192..=32767).contains(&port), "port {port} out of range");
        }
    }

    // Upstream TestPortAllocator_AllocateZero.
    #[test]
    fn allocate_zero_returns_nothing() {
        let alloc = PortAllocator::new();
        assert!(alloc.allocate("inst-1", 0).unwrap().is_empty());
        assert_eq!(alloc.allocated(), 0);
    }

    // Upstream TestPortAllocator_ListenersAreOpen.
    #[test]
    fn listeners_are_open() {
        let alloc = PortAllocator::new();
        for listener in alloc.allocate("inst-1", 2).unwrap() {
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            client.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
        }
    }

    // Upstream TestPortAllocator_TracksAllocations.
    #[test]
    fn tracks_allocations() {
        let alloc = PortAllocator::new();
        alloc.allocate("inst-1", 2).unwrap();
        alloc.allocate("inst-2", 3).unwrap();
        assert_eq!(alloc.allocated(), 5);
    }

    // Upstream TestPortAllocator_Release.
    #[test]
    fn release_forgets_an_instances_ports() {
        let alloc = PortAllocator::new();
        alloc.allocate("inst-1", 2).unwrap();
        alloc.allocate("inst-2", 3).unwrap();
        alloc.release("inst-1");
        assert_eq!(alloc.allocated(), 3);
        alloc.release("inst-2");
        assert_eq!(alloc.allocated(), 0);
    }

    // Upstream TestPortAllocator_ReleaseNonexistent.
    #[test]
    fn release_unknown_instance_is_a_no_op() {
        let alloc = PortAllocator::new();
        alloc.release("nope");
        assert_eq!(alloc.allocated(), 0);
        alloc.allocate("inst-1", 1).unwrap();
        alloc.release("nope");
        assert_eq!(alloc.allocated(), 1);
    }

    // Upstream TestPortAllocator_MultipleInstancesGetDifferentPorts.
    #[test]
    fn instances_get_different_ports() {
        let alloc = PortAllocator::new();
        let mut all = ports_of(&alloc.allocate("inst-1", 5).unwrap());
        all.extend(ports_of(&alloc.allocate("inst-2", 5).unwrap()));
        let unique: HashSet<u16> = all.iter().copied().collect();
        assert_eq!(unique.len(), 10, "{all:?}");
    }

    #[test]
    fn repeated_allocations_accumulate_and_release_together() {
        let alloc = PortAllocator::new();
        alloc.allocate("inst", 2).unwrap();
        alloc.allocate("inst", 1).unwrap();
        assert_eq!(alloc.allocated(), 3);
        alloc.release("inst");
        assert_eq!(alloc.allocated(), 0);
    }

    #[test]
    fn concurrent_allocations_never_share_a_port() {
        let alloc = PortAllocator::new();
        let per_thread: Vec<Vec<u16>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let alloc = &alloc;
                    s.spawn(move || ports_of(&alloc.allocate(&format!("inst-{t}"), 5).unwrap()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: HashSet<u16> = per_thread.iter().flatten().copied().collect();
        assert_eq!(unique.len(), 20);
        assert_eq!(alloc.allocated(), 20);
    }

    #[test]
    fn step_is_a_prime_coprime_to_the_range_for_many_seeds() {
        let mut steps = HashSet::new();
        for seed in 0..2000 {
            let alloc = PortAllocator::with_seed(seed);
            let state = alloc.state.lock();
            assert!(state.step >= 2 && state.step < PORT_COUNT, "seed {seed}");
            assert!(is_prime(state.step), "seed {seed}: step {}", state.step);
            assert_eq!(
                gcd(state.step, PORT_COUNT),
                1,
                "seed {seed}: step {}",
                state.step
            );
            assert!(state.offset < PORT_COUNT);
            steps.insert(state.step);
        }
        // The step really is random, not a constant.
        assert!(steps.len() > 100, "only {} distinct steps", steps.len());
    }

    #[test]
    fn one_cycle_visits_every_candidate_exactly_once() {
        for seed in [0, 1, 42, 0xdead_beef, u64::MAX] {
            let alloc = PortAllocator::with_seed(seed);
            let (start, step) = {
                let s = alloc.state.lock();
                (s.offset, s.step)
            };
            let mut seen = vec![false; PORT_COUNT as usize];
            let mut offset = start;
            for _ in 0..PORT_COUNT {
                let port = alloc.candidates.get(offset);
                let index = usize::from(port - PORT_BASE);
                assert!(!seen[index], "seed {seed}: port {port} visited twice");
                seen[index] = true;
                offset = advance(offset, step, PORT_COUNT);
            }
            assert!(seen.iter().all(|&v| v), "seed {seed}");
            assert_eq!(offset, start, "seed {seed}: the cycle returns to its start");
        }
    }

    #[test]
    fn small_ranges_get_a_full_cycle_too() {
        for count in 1..300u32 {
            for seed in 0..5 {
                let step = coprime_prime_step(count, &mut SplitMix64(seed));
                assert_eq!(gcd(step, count), 1, "count {count} step {step}");
                assert!(count <= 2 || is_prime(step), "count {count} step {step}");
                let mut offset = 0;
                let mut seen = HashSet::new();
                for _ in 0..count {
                    assert!(seen.insert(offset), "count {count} step {step}");
                    offset = advance(offset, step, count);
                }
                assert_eq!(offset, 0);
            }
        }
        assert_eq!(coprime_prime_step(1, &mut SplitMix64(0)), 1);
        assert_eq!(coprime_prime_step(2, &mut SplitMix64(0)), 1);
        assert_eq!(coprime_prime_step(3, &mut SplitMix64(0)), 2);
        assert_eq!(coprime_prime_step(4, &mut SplitMix64(0)), 3);
    }

    #[test]
    fn seeds_are_reproducible() {
        let a = PortAllocator::with_seed(99);
        let b = PortAllocator::with_seed(99);
        let (sa, sb) = (a.state.lock(), b.state.lock());
        assert_eq!((sa.offset, sa.step), (sb.offset, sb.step));
    }

    #[test]
    fn port_held_by_another_listener_is_skipped() {
        // Find a seed whose first candidate we can hold ourselves.
        let (alloc, held, _guard) = (0..100u64)
            .find_map(|seed| {
                let alloc = PortAllocator::with_seed(seed);
                let first = alloc.candidates.get(alloc.state.lock().offset);
                let guard =
                    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, first)).ok()?;
                Some((alloc, first, guard))
            })
            .expect("no bindable first candidate in 100 seeds");
        let listeners = alloc.allocate("inst", 1).unwrap();
        assert_ne!(port_of(&listeners[0]), held);
        assert_eq!(alloc.allocated(), 1);
    }

    #[test]
    fn tracked_ports_are_not_handed_out_again_until_released() {
        let port = free_port();
        let alloc = list_allocator(vec![port]);
        let first = alloc.allocate("inst-a", 1).unwrap();
        assert_eq!(ports_of(&first), [port]);
        drop(first); // the port is free again, but still tracked for inst-a
        assert_eq!(
            alloc.allocate("inst-b", 1).unwrap_err(),
            PortError::Exhausted { candidates: 1 }
        );
        alloc.release("inst-a");
        assert_eq!(ports_of(&alloc.allocate("inst-b", 1).unwrap()), [port]);
    }

    #[test]
    fn failed_allocation_rolls_back_everything() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let free = free_port();
        let alloc = list_allocator(vec![free, port_of(&held)]);

        let err = alloc.allocate("inst", 2).unwrap_err();
        assert_eq!(err.to_string(), "allocate port: exhausted 2 candidates");
        assert_eq!(alloc.allocated(), 0);
        assert!(alloc.state.lock().by_instance.is_empty());
        // The listener opened on `free` during the failed call was closed.
        drop(TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, free)).unwrap());

        // Nothing was recorded, so the free port can still be allocated.
        assert_eq!(ports_of(&alloc.allocate("inst", 1).unwrap()), [free]);
        assert_eq!(alloc.allocated(), 1);
    }

    #[test]
    fn exhaustion_message_names_the_full_range() {
        assert_eq!(
            PortError::Exhausted {
                candidates: PORT_COUNT
            }
            .to_string(),
            "allocate port: exhausted 24576 candidates"
        );
        assert_eq!((PORT_BASE, PORT_COUNT), (8192, 24576));
    }

    #[test]
    fn primes_and_gcd() {
        let primes: Vec<u32> = (0..40).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]);
        assert!(is_prime(24571));
        assert!(!is_prime(24576));
        assert!(!is_prime(65521 * 3));
        assert!(is_prime(65521));
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(5, 24576), 1);
        assert_eq!(gcd(3, 24576), 3);
    }
}
