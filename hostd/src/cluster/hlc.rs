//! Hybrid logical clock: wall-clock milliseconds in the high 48 bits, a
//! counter in the low 16. A timestamp from this clock is greater than
//! every timestamp the node has issued or seen, so "highest clock wins"
//! respects causality even when wall clocks disagree a little.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const COUNTER_BITS: u32 = 16;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// How far ahead of this node's wall clock a remote timestamp may be.
/// A member with a clock far in the future would otherwise win every
/// conflict for as long as its clock is wrong.
pub const MAX_SKEW_MILLIS: u64 = 60_000;

/// A point on the hybrid logical clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The seed timestamp: files a node had before it ever replicated.
    /// Any real edit wins over a seed.
    pub const SEED: Timestamp = Timestamp(0);

    pub fn new(millis: u64, counter: u16) -> Timestamp {
        Timestamp((millis << COUNTER_BITS) | u64::from(counter))
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn millis(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    fn counter(self) -> u64 {
        self.0 & COUNTER_MASK
    }

    /// Whether this timestamp is too far ahead of `wall_millis` to trust.
    pub fn is_ahead_of(self, wall_millis: u64) -> bool {
        self.millis() > wall_millis.saturating_add(MAX_SKEW_MILLIS)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.millis(), self.counter())
    }
}

/// This node's clock.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    last: Timestamp,
}

impl Clock {
    /// Resumes after `last`, the highest timestamp issued or seen before a
    /// restart, so a node never goes back in time across restarts.
    pub fn resume(last: Timestamp) -> Clock {
        Clock { last }
    }

    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A new timestamp for a local change.
    pub fn tick(&mut self, wall_millis: u64) -> Timestamp {
        self.last = if wall_millis > self.last.millis() {
            Timestamp::new(wall_millis, 0)
        } else {
            self.next_after(self.last)
        };
        self.last
    }

    /// Takes in a timestamp seen on a remote change, so the next local
    /// change is ordered after it.
    pub fn observe(&mut self, remote: Timestamp) {
        if remote > self.last {
            self.last = remote;
        }
    }

    fn next_after(&self, t: Timestamp) -> Timestamp {
        if t.counter() == COUNTER_MASK {
            // 65,536 changes in one millisecond: borrow the next one.
            Timestamp::new(t.millis() + 1, 0)
        } else {
            Timestamp(t.0 + 1)
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn wall_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_the_wall_clock_and_never_repeat() {
        let mut clock = Clock::default();
        let a = clock.tick(1_000);
        assert_eq!(a, Timestamp::new(1_000, 0));
        let b = clock.tick(1_000);
        assert_eq!(b, Timestamp::new(1_000, 1));
        // The wall clock stepped back: the clock does not.
        let c = clock.tick(900);
        assert!(c > b);
        assert_eq!(c.millis(), 1_000);
        assert_eq!(clock.tick(2_000), Timestamp::new(2_000, 0));
    }

    #[test]
    fn observed_remote_timestamps_order_the_next_tick() {
        let mut clock = Clock::resume(Timestamp::new(1_000, 3));
        clock.observe(Timestamp::new(5_000, 7));
        clock.observe(Timestamp::new(10, 0));
        assert_eq!(clock.tick(1_500), Timestamp::new(5_000, 8));
    }

    #[test]
    fn counter_overflow_borrows_the_next_millisecond() {
        let mut clock = Clock::resume(Timestamp::new(7, u16::MAX));
        assert_eq!(clock.tick(7), Timestamp::new(8, 0));
    }

    #[test]
    fn skew_bound() {
        let t = Timestamp::new(100_000, 0);
        assert!(!t.is_ahead_of(100_000 - MAX_SKEW_MILLIS));
        assert!(t.is_ahead_of(100_000 - MAX_SKEW_MILLIS - 1));
        assert!(!Timestamp::new(u64::MAX >> 16, 0).is_ahead_of(u64::MAX));
    }
}
