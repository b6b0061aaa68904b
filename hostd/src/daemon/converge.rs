//! Observe -> plan -> apply, publishing per-resource state.

use std::sync::Arc;

use horcrux_config::Config;
use tokio::time::Instant;

use crate::apply::{Backend, Backoff, Executor, observe_all};
use crate::plan::{Desired, Observed};
use crate::status::{ResourceStatus, StatusHandle};

/// What every registered backend wants of the config, sorted by id (the
/// planner's fast path).
pub fn desired_state(backends: &[Arc<dyn Backend>], config: &Config) -> Vec<Desired> {
    let mut desired: Vec<Desired> = backends.iter().flat_map(|b| b.desired(config)).collect();
    desired.sort_by(|a, b| a.id.cmp(&b.id));
    desired
}

/// Drives the backends towards the current generation. Observations always
/// come from the real system, never from what was applied before.
pub struct Reconciler {
    status: StatusHandle,
    backends: Vec<Arc<dyn Backend>>,
    executor: Executor,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("backends", &self.backends.len())
            .finish()
    }
}

impl Reconciler {
    pub fn new(status: StatusHandle, backends: Vec<Arc<dyn Backend>>) -> Self {
        let mut executor = Executor::new(Backoff::default());
        // Show each resource's progress (converging, failed) as it happens,
        // not only when the whole run is over.
        let live = status.clone();
        executor.on_change(move |changed| {
            live.update(|s| {
                match s
                    .resources
                    .iter_mut()
                    .find(|r| r.kind == changed.kind && r.name == changed.name)
                {
                    Some(r) => {
                        // Keep the fields of the last observation until
                        // the run ends and a new one replaces them.
                        let desired = std::mem::take(&mut r.desired);
                        let observed = std::mem::take(&mut r.observed);
                        *r = changed.clone();
                        r.desired = desired;
                        r.observed = observed;
                    }
                    None => s.resources.push(changed.clone()),
                }
            });
        });
        Reconciler {
            status,
            backends,
            executor,
        }
    }

    /// A new generation deserves a fresh attempt at everything.
    pub fn new_generation(&mut self) {
        self.executor.reset_backoff();
    }

    /// When a failed resource may be retried next.
    pub fn next_retry(&self) -> Option<Instant> {
        self.executor.next_retry()
    }

    /// One full cycle. Without a valid generation nothing is changed: an
    /// unknown desired state must never read as "remove everything".
    pub async fn converge(&mut self, config: Option<&Config>) {
        let Some(config) = config else { return };
        let desired = desired_state(&self.backends, config);
        let observation = observe_all(&self.backends).await;
        for (kind, error) in &observation.failed {
            tracing::warn!(%kind, %error, "cannot observe; its resources are left alone this cycle");
        }
        let plan = observation.plan(&desired);
        // The run publishes progress per resource as it goes; show the new
        // desired fields alongside from the start, not the previous ones.
        self.status
            .update(|s| with_fields(&mut s.resources, &desired, &observation.observed));
        let report = self.executor.run(&plan, &desired, &self.backends).await;
        for (id, error) in &report.failed {
            tracing::warn!(resource = %id, %error, "apply failed");
        }
        // Show what the system looks like after the run, not before it.
        let observation = if plan.actions.is_empty() {
            observation
        } else {
            observe_all(&self.backends).await
        };
        let mut resources = self.executor.statuses();
        with_fields(&mut resources, &desired, &observation.observed);
        self.status.update(|s| {
            report.record(&mut s.counters.apply_duration);
            s.counters.apply_runs += 1;
            for id in &report.applied {
                *s.counters.actions_applied.entry(id.kind).or_default() += 1;
            }
            for (id, _) in &report.failed {
                *s.counters.actions_failed.entry(id.kind).or_default() += 1;
            }
            s.resources = resources;
        });
    }
}

/// Copies each resource's desired and observed fields into its status
/// (both lists are sorted by id, as `desired_state` and `observe_all`
/// return them).
fn with_fields(resources: &mut [ResourceStatus], desired: &[Desired], observed: &[Observed]) {
    for status in resources {
        let key = (status.kind, status.name.as_str());
        if let Ok(i) = desired.binary_search_by(|d| (d.id.kind, d.id.name.as_str()).cmp(&key)) {
            status.desired = desired[i]
                .fields
                .iter()
                .map(|(name, field)| (name.clone(), field.value.clone()))
                .collect();
        }
        if let Ok(i) = observed.binary_search_by(|o| (o.id.kind, o.id.name.as_str()).cmp(&key)) {
            status.observed = observed[i].fields.clone();
        }
    }
}
