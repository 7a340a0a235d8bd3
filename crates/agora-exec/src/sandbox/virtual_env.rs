//! Virtual clocks and a seeded random source: the job sees time and randomness that are a
//! pure function of its id, so two honest runs see the same values.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_core::Hash;
use wasi_rand_core::TryRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// 2025-01-01T00:00:00Z in seconds since the Unix epoch: the virtual wall clock starts on
/// that day, at an offset drawn from the job id.
const VIRTUAL_EPOCH_SECS: u64 = 1_735_689_600;
/// Every clock read moves virtual time forward by this much, so that time is monotonic and
/// programs that wait for it to pass make progress (while fuel bounds the waiting).
pub const TICK_NANOS: u64 = 1_000;

/// Virtual time shared by the wall clock, the monotonic clock and `poll_oneoff`.
#[derive(Clone, Debug)]
pub struct VirtualTime {
    inner: Arc<TimeState>,
}

#[derive(Debug)]
struct TimeState {
    /// Nanoseconds of virtual time elapsed since the job started.
    elapsed: AtomicU64,
    /// Wall-clock time at start, in nanoseconds since the Unix epoch.
    wall_start: u64,
}

impl VirtualTime {
    /// Virtual time for `job_id`: the wall clock starts at a job-dependent second of
    /// 2025-01-01 and the monotonic clock at zero.
    pub fn new(job_id: &Hash) -> Self {
        let seed = Hash::tagged("agora.exec.clock.v1", &[job_id.as_bytes()]);
        let mut word = [0u8; 8];
        word.copy_from_slice(&seed.as_bytes()[..8]);
        let offset_secs = u64::from_le_bytes(word) % 86_400;
        let wall_start = (VIRTUAL_EPOCH_SECS + offset_secs) * 1_000_000_000;
        VirtualTime {
            inner: Arc::new(TimeState {
                elapsed: AtomicU64::new(0),
                wall_start,
            }),
        }
    }

    /// Reads the monotonic time and moves it one tick forward.
    fn read(&self) -> u64 {
        self.inner.elapsed.fetch_add(TICK_NANOS, Ordering::Relaxed)
    }

    /// Moves virtual time forward by `nanos` (a virtual sleep).
    pub fn advance(&self, nanos: u64) {
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .inner
            .elapsed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(nanos))
            });
    }

    /// Current monotonic time without moving it.
    pub fn monotonic_now(&self) -> u64 {
        self.inner.elapsed.load(Ordering::Relaxed)
    }

    /// Current wall time in nanoseconds since the Unix epoch, without moving it.
    pub fn wall_now(&self) -> u64 {
        self.inner.wall_start.saturating_add(self.monotonic_now())
    }

    /// The wall clock view.
    pub fn wall_clock(&self) -> VirtualWallClock {
        VirtualWallClock(self.clone())
    }

    /// The monotonic clock view.
    pub fn monotonic_clock(&self) -> VirtualMonotonicClock {
        VirtualMonotonicClock(self.clone())
    }
}

/// The job's `CLOCK_REALTIME`.
pub struct VirtualWallClock(VirtualTime);

impl HostWallClock for VirtualWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(TICK_NANOS)
    }
    fn now(&self) -> Duration {
        let elapsed = self.0.read();
        Duration::from_nanos(self.0.inner.wall_start.saturating_add(elapsed))
    }
}

/// The job's `CLOCK_MONOTONIC`.
pub struct VirtualMonotonicClock(VirtualTime);

impl HostMonotonicClock for VirtualMonotonicClock {
    fn resolution(&self) -> u64 {
        TICK_NANOS
    }
    fn now(&self) -> u64 {
        self.0.read()
    }
}

/// A deterministic random source: the blake3 extendable output of the job id under a
/// domain tag. Unlike `rand`'s `StdRng`, whose algorithm may change between releases,
/// blake3's output is fixed forever, so a job's random bytes never change.
pub struct SeededRandom {
    reader: blake3::OutputReader,
}

impl SeededRandom {
    /// The random stream `stream` (e.g. "secure", "insecure") of job `job_id`.
    pub fn new(job_id: &Hash, stream: &str) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("agora.exec.random.v1");
        hasher.update(stream.as_bytes());
        hasher.update(&[0]);
        hasher.update(job_id.as_bytes());
        SeededRandom {
            reader: hasher.finalize_xof(),
        }
    }

    /// A 128-bit seed for `insecure_random_seed`.
    pub fn seed_u128(job_id: &Hash) -> u128 {
        let mut bytes = [0u8; 16];
        SeededRandom::new(job_id, "insecure-seed")
            .reader
            .fill(&mut bytes);
        u128::from_le_bytes(bytes)
    }
}

impl TryRng for SeededRandom {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.reader.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.reader.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.reader.fill(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_are_a_function_of_the_job_id() {
        let a = VirtualTime::new(&Hash::of(b"job-a"));
        let a2 = VirtualTime::new(&Hash::of(b"job-a"));
        let b = VirtualTime::new(&Hash::of(b"job-b"));
        assert_eq!(a.wall_clock().now(), a2.wall_clock().now());
        assert_ne!(a.wall_now(), b.wall_now());
        let mono = a.monotonic_clock();
        let t1 = mono.now();
        let t2 = mono.now();
        assert_eq!(t2 - t1, TICK_NANOS);
        a.advance(5_000);
        assert_eq!(mono.now(), t2 + TICK_NANOS + 5_000);
    }

    #[test]
    fn random_is_seeded_and_streams_differ() {
        let id = Hash::of(b"job");
        let (mut x, mut y) = (
            SeededRandom::new(&id, "secure"),
            SeededRandom::new(&id, "secure"),
        );
        let mut z = SeededRandom::new(&id, "insecure");
        let (mut bx, mut by, mut bz) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        x.try_fill_bytes(&mut bx).unwrap();
        y.try_fill_bytes(&mut by).unwrap();
        z.try_fill_bytes(&mut bz).unwrap();
        assert_eq!(bx, by);
        assert_ne!(bx, bz);
    }
}
