//! Capped exponential backoff between attempts on a failing resource.

use std::time::Duration;

/// Delay before attempt `n + 1` after `n` failures: `base * factor^(n-1)`,
/// never more than `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub factor: u32,
    pub cap: Duration,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s, ... up to 5 minutes.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            factor: 2,
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (zero for none).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let mut delay = self.base;
        if self.factor > 1 {
            for _ in 1..failures {
                if delay >= self.cap || delay.is_zero() {
                    break;
                }
                delay = delay.saturating_mul(self.factor);
            }
        }
        delay.min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let table = [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (9, 256),
            (10, 300),
            (11, 300),
            (u32::MAX, 300),
        ];
        for (failures, seconds) in table {
            assert_eq!(
                Backoff::default().delay(failures),
                Duration::from_secs(seconds),
                "after {failures}"
            );
        }
    }

    #[test]
    fn odd_settings_do_not_hang_or_overflow() {
        let flat = Backoff {
            base: Duration::from_millis(5),
            factor: 1,
            cap: Duration::from_secs(1),
        };
        assert_eq!(flat.delay(u32::MAX), Duration::from_millis(5));
        let zero = Backoff {
            base: Duration::ZERO,
            factor: 2,
            cap: Duration::from_secs(1),
        };
        assert_eq!(zero.delay(u32::MAX), Duration::ZERO);
        let huge = Backoff {
            base: Duration::MAX,
            factor: 10,
            cap: Duration::MAX,
        };
        assert_eq!(huge.delay(3), Duration::MAX);
    }
}
