//! The one clock replicas agree on. Offer expiry, wait deadlines and
//! session leases are written by one replica and judged by another: read
//! from each host's own clock, a replica whose clock runs ahead would see
//! every other replica's leases lapse and take their agents offline. A
//! [`Clock`] reads the local clock plus an offset to a shared reference
//! (the state store's `TIME`), measured again on a timer; with no
//! reference (`switchboard dev`, one process) the offset stays zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A round trip longer than this says too little about when the reference
/// read its clock; such a sample is dropped.
pub const MAX_SAMPLE_ROUND_TRIP_MS: i64 = 250;

type LocalSource = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Milliseconds since the Unix epoch on the shared clock. Cheap to clone;
/// clones share the offset.
#[derive(Clone)]
pub struct Clock {
    local: LocalSource,
    offset_ms: Arc<AtomicI64>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Clock").field("offset_ms", &self.offset_ms()).finish()
    }
}

/// What one sample against the reference changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// The offset now in use.
    Adjusted { offset_ms: i64 },
    /// The round trip was too long to trust; the offset is unchanged.
    Dropped { round_trip_ms: i64 },
}

impl Clock {
    /// The host's clock, until [`Clock::sample`] measures an offset.
    pub fn system() -> Clock {
        Clock::reading(crate::time::now_millis)
    }

    /// A clock over another local source (a test passes a skewed one).
    pub fn reading(local: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock { local: Arc::new(local), offset_ms: Arc::new(AtomicI64::new(0)) }
    }

    /// Now, on the shared clock.
    pub fn now_millis(&self) -> i64 {
        (self.local)().saturating_add(self.offset_ms())
    }

    /// Now, on the local source alone (to time a sample).
    pub fn local_millis(&self) -> i64 {
        (self.local)()
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Takes one reading of the reference, `reference_ms`, made between
    /// the local instants `sent_ms` and `received_ms`: the reference read
    /// its clock about halfway through the round trip.
    pub fn sample(&self, sent_ms: i64, reference_ms: i64, received_ms: i64) -> Sample {
        let round_trip_ms = received_ms.saturating_sub(sent_ms);
        if !(0..=MAX_SAMPLE_ROUND_TRIP_MS).contains(&round_trip_ms) {
            return Sample::Dropped { round_trip_ms };
        }
        let midpoint_ms = sent_ms + round_trip_ms / 2;
        let offset_ms = reference_ms.saturating_sub(midpoint_ms);
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
        Sample::Adjusted { offset_ms }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_clock_without_a_reference_is_the_local_one() {
        let clock = Clock::reading(|| 1_000);
        assert_eq!(clock.now_millis(), 1_000);
        assert_eq!(clock.offset_ms(), 0);
    }

    #[test]
    fn a_sample_moves_the_clock_onto_the_reference() {
        // The local clock runs 60 s ahead of the reference.
        let clock = Clock::reading(|| 1_060_000);
        let sample = clock.sample(1_060_000, 1_000_010, 1_060_020);
        assert_eq!(sample, Sample::Adjusted { offset_ms: -60_000 });
        assert_eq!(clock.now_millis(), 1_000_000);
    }

    #[test]
    fn clones_share_the_offset() {
        let clock = Clock::reading(|| 5_000);
        let clone = clock.clone();
        clock.sample(5_000, 7_000, 5_000);
        assert_eq!(clone.now_millis(), 7_000);
    }

    #[test]
    fn a_slow_or_backwards_round_trip_is_dropped() {
        let clock = Clock::reading(|| 0);
        clock.sample(0, 500, 10);
        assert_eq!(clock.sample(0, 99_999, MAX_SAMPLE_ROUND_TRIP_MS + 1), Sample::Dropped { round_trip_ms: 251 });
        assert_eq!(clock.sample(10, 99_999, 0), Sample::Dropped { round_trip_ms: -10 });
        assert_eq!(clock.offset_ms(), 495, "the last trusted offset stays");
    }
}
