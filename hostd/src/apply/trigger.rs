//! When to observe and plan again: on a drift timer, on a backend event,
//! or when a failed resource's backoff ends, whichever comes first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};

/// How often the real system is compared with the config when nothing
/// else happens.
pub const DEFAULT_DRIFT_INTERVAL: Duration = Duration::from_secs(30);

/// A handle backends use to ask for an early observation (a unit died, a
/// link went away). Events arriving while a cycle runs are not lost: the
/// next [`Trigger::wait`] returns at once.
#[derive(Clone, Debug, Default)]
pub struct Events(Arc<Notify>);

impl Events {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// Why [`Trigger::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The drift interval passed.
    Drift,
    /// A backend reported a change.
    Event,
    /// A failed resource may be retried.
    Retry,
}

#[derive(Debug)]
pub struct Trigger {
    interval: Duration,
    next_drift: Instant,
    events: Events,
}

impl Trigger {
    /// A trigger whose first drift check is one `interval` from now.
    pub fn new(interval: Duration) -> Self {
        Trigger {
            interval,
            next_drift: Instant::now() + interval,
            events: Events::default(),
        }
    }

    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Waits for the next reason to observe. Every wake restarts the drift
    /// timer, since each wake leads to a full observation anyway.
    pub async fn wait(&mut self, retry_at: Option<Instant>) -> Wake {
        let retry = async {
            match retry_at {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            biased;
            () = self.events.0.notified() => Wake::Event,
            () = retry => Wake::Retry,
            () = sleep_until(self.next_drift) => Wake::Drift,
        };
        self.next_drift = Instant::now() + self.interval;
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_for_events_retries_and_drift() {
        let mut trigger = Trigger::new(Duration::from_millis(50));
        trigger.events().notify();
        assert_eq!(trigger.wait(None).await, Wake::Event);
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(trigger.wait(Some(soon)).await, Wake::Retry);
        let started = Instant::now();
        assert_eq!(trigger.wait(None).await, Wake::Drift);
        assert!(started.elapsed() >= Duration::from_millis(40));
        let late = Instant::now() + Duration::from_secs(60);
        assert_eq!(trigger.wait(Some(late)).await, Wake::Drift);
    }
}
