//! The convergence state of each resource, kept across runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::plan::{Desired, Op, Plan, ResourceId};
use crate::status::model::{ApplyHistogram, ResourceState, ResourceStatus};

/// What one [`Executor::run`](super::Executor::run) did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunReport {
    /// Wall time of the run, for the [`ApplyHistogram`].
    pub duration: Duration,
    /// Actions that succeeded, in completion order.
    pub applied: Vec<ResourceId>,
    /// Actions that were attempted and failed, with the error.
    pub failed: Vec<(ResourceId, String)>,
    /// Actions not attempted, with the reason: deferred by the planner, in
    /// backoff (the last error), or waiting for an action that failed or
    /// was skipped (`waiting for network lan`).
    pub skipped: Vec<(ResourceId, String)>,
    /// When the earliest failed resource may be retried.
    pub next_retry: Option<Instant>,
}

impl RunReport {
    pub fn record(&self, histogram: &mut ApplyHistogram) {
        histogram.observe(self.duration.as_secs_f64());
    }
}

#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) state: ResourceState,
    pub(super) error: Option<String>,
    /// Failures since the last success.
    pub(super) attempts: u32,
    pub(super) next_retry: Option<Instant>,
    pub(super) restart_pending: bool,
}

impl Entry {
    pub(super) fn pending(error: Option<String>) -> Self {
        Entry {
            state: ResourceState::Pending,
            error,
            attempts: 0,
            next_retry: None,
            restart_pending: false,
        }
    }

    pub(super) fn converged(restart_pending: bool) -> Self {
        Entry {
            state: ResourceState::Converged,
            restart_pending,
            ..Entry::pending(None)
        }
    }

    /// The same entry in `state`, keeping its history.
    pub(super) fn now(&self, state: ResourceState) -> Self {
        Entry {
            state,
            ..self.clone()
        }
    }

    pub(super) fn in_backoff(&self, now: Instant) -> bool {
        self.state == ResourceState::Failed && self.next_retry.is_some_and(|at| at > now)
    }

    pub(super) fn status(&self, id: &ResourceId) -> ResourceStatus {
        ResourceStatus {
            kind: id.kind,
            name: id.name.clone(),
            state: self.state,
            error: self.error.clone(),
            restart_pending: self.restart_pending,
            attempts: self.attempts,
            desired: BTreeMap::new(),
            observed: BTreeMap::new(),
        }
    }
}

/// Sets the state of the resources without an action in `plan`, after a
/// run: desired ones are converged unless their kind went unobserved or
/// their action was deferred (they keep their state, with the reason as
/// error); undesired ones are forgotten unless a delete of theirs failed,
/// was skipped or deferred, or their kind went unobserved.
pub(super) fn settle(entries: &mut BTreeMap<ResourceId, Entry>, plan: &Plan, desired: &[Desired]) {
    let planned: HashMap<&ResourceId, Op> = plan.actions.iter().map(|a| (&a.id, a.op)).collect();
    let held: HashMap<&ResourceId, &str> = plan
        .deferred
        .iter()
        .map(|d| (&d.action.id, d.reason.as_str()))
        .collect();
    let reason = |id: &ResourceId| match plan.unobserved.get(&id.kind) {
        Some(error) => Some(format!("{} could not be observed: {error}", id.kind)),
        None => held.get(id).map(|r| (*r).to_string()),
    };
    let wanted: HashSet<&ResourceId> = desired.iter().map(|d| &d.id).collect();
    for id in wanted.iter().filter(|id| !planned.contains_key(*id)) {
        let entry = match reason(id) {
            None => Entry::converged(false),
            Some(reason) => Entry {
                error: Some(reason),
                ..entries
                    .get(*id)
                    .cloned()
                    .unwrap_or_else(|| Entry::pending(None))
            },
        };
        entries.insert((*id).clone(), entry);
    }
    entries.retain(|id, entry| {
        if wanted.contains(id) {
            return true;
        }
        if planned.get(id) == Some(&Op::Delete) {
            return entry.state != ResourceState::Converged;
        }
        match reason(id) {
            Some(reason) => {
                entry.error = Some(reason);
                true
            }
            None => false,
        }
    });
}
