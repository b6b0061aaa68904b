//! Applying plans: the [`Backend`] trait every driver implements, the
//! concurrent [`Executor`] with per-resource state and retry backoff, and
//! the [`Trigger`] that decides when to observe and plan again.
//!
//! Nothing here remembers what the system looks like: each cycle observes
//! it afresh ([`observe_all`]), plans, and runs the plan, so drift is
//! repaired like any other difference.

mod backoff;
mod executor;
mod schedule;
mod state;
#[cfg(test)]
mod tests;
mod trigger;

pub use backoff::Backoff;
pub use executor::{DEFAULT_MAX_PARALLEL, Executor};
pub use state::RunReport;
pub use trigger::{DEFAULT_DRIFT_INTERVAL, Events, Trigger, Wake};

use horcrux_config::Config;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::plan::{Action, Desired, Observed, Plan, ResourceKind, plan_with};

/// A boxed future, so [`Backend`] stays object safe without async-trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend call that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub message: String,
    /// Whether trying again soon may help; a permanent error is still
    /// retried (the system may change under it), but at the backoff cap.
    pub retryable: bool,
}

impl BackendError {
    /// A transient error, retried with the normal backoff.
    pub fn new(message: impl Into<String>) -> Self {
        BackendError {
            message: message.into(),
            retryable: true,
        }
    }

    /// An error retrying soon will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        BackendError {
            message: message.into(),
            retryable: false,
        }
    }

    /// A driver's error with its causes, transient or permanent as the
    /// driver classified it.
    pub fn of(e: &dyn std::error::Error, retryable: bool) -> Self {
        BackendError {
            message: crate::errors::chain(e),
            retryable,
        }
    }
}

/// One driver (systemd, QEMU, network, firewall, storage): reads its
/// resources from the real system and applies actions to them.
pub trait Backend: Send + Sync {
    /// The kinds this backend observes and applies; each kind belongs to
    /// exactly one backend.
    fn kinds(&self) -> &'static [ResourceKind];

    /// What the config wants of [`Backend::kinds`] on this node. Pure: no
    /// I/O, so `horcrux plan` and the daemon compute the same thing.
    fn desired(&self, config: &Config) -> Vec<Desired>;

    /// Every resource of [`Backend::kinds`] that exists now, including
    /// ones hostd did not create (they are deleted unless desired).
    fn observe(&self) -> BoxFuture<'_, Result<Vec<Observed>, BackendError>>;

    /// Carries out one action; `desired` is the full desired resource for
    /// creates and updates, `None` for deletes. An update with
    /// [`Restart::Auto`](crate::plan::Restart::Auto) includes the restart;
    /// [`Restart::Pending`](crate::plan::Restart::Pending) updates never
    /// reach a backend (the executor passes their live changes as a plain
    /// update).
    fn apply<'a>(
        &'a self,
        action: &'a Action,
        desired: Option<&'a Desired>,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// What [`observe_all`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    pub observed: Vec<Observed>,
    /// Kinds whose backend failed to observe, with the error. Their
    /// resources are unknown, not absent.
    pub failed: BTreeMap<ResourceKind, String>,
}

impl Observation {
    /// Plans against this observation, leaving failed kinds alone.
    pub fn plan(&self, desired: &[Desired]) -> Plan {
        plan_with(desired, &self.observed, &self.failed)
    }

    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Observes every backend concurrently. A backend that fails (or panics)
/// marks all its kinds as failed, and anything it returned for another
/// kind is dropped, so the planner never mistakes an unreadable resource
/// for a missing one.
pub async fn observe_all(backends: &[Arc<dyn Backend>]) -> Observation {
    let mut tasks = JoinSet::new();
    let mut owners = HashMap::new();
    for backend in backends {
        let kinds = backend.kinds();
        let backend = Arc::clone(backend);
        let id = tasks.spawn(async move { backend.observe().await }).id();
        owners.insert(id, kinds);
    }
    let mut observation = Observation::default();
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) => (
                e.id(),
                Err(BackendError::new(format!("observe panicked: {e}"))),
            ),
        };
        let kinds = owners.get(&id).copied().unwrap_or(&[]);
        match result {
            Ok(found) => {
                let found = found.into_iter().filter(|o| kinds.contains(&o.id.kind));
                observation.observed.extend(found);
            }
            Err(e) => {
                for kind in kinds {
                    observation.failed.insert(*kind, e.to_string());
                }
            }
        }
    }
    let failed = &observation.failed;
    observation
        .observed
        .retain(|o| !failed.contains_key(&o.id.kind));
    observation.observed.sort_by(|a, b| a.id.cmp(&b.id));
    observation
}
