//! Runs a [`Plan`]: independent actions concurrently, each only after the
//! actions it waits for succeeded, with per-resource state and backoff.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use tokio::task::{self, JoinSet};
use tokio::time::Instant;

use super::schedule::Schedule;
use super::state::{Entry, RunReport, settle};
use super::{Backend, BackendError, Backoff};
use crate::plan::{Desired, Op, Plan, ResourceId, Restart};
use crate::status::model::{ResourceState, ResourceStatus};

/// How many actions run at once unless [`Executor::with_max_parallel`]
/// says otherwise.
pub const DEFAULT_MAX_PARALLEL: usize = 32;

/// See [`Executor::on_change`].
type OnChange = Box<dyn FnMut(&ResourceStatus) + Send>;

/// Owns the convergence state of every resource of this node.
pub struct Executor {
    entries: BTreeMap<ResourceId, Entry>,
    backoff: Backoff,
    max_parallel: usize,
    on_change: Option<OnChange>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("resources", &self.entries.len())
            .field("backoff", &self.backoff)
            .field("max_parallel", &self.max_parallel)
            .finish_non_exhaustive()
    }
}

impl Default for Executor {
    fn default() -> Self {
        Executor::new(Backoff::default())
    }
}

impl Executor {
    pub fn new(backoff: Backoff) -> Self {
        Executor {
            entries: BTreeMap::new(),
            backoff,
            max_parallel: DEFAULT_MAX_PARALLEL,
            on_change: None,
        }
    }

    /// Limits how many actions run at once (at least one).
    pub fn with_max_parallel(mut self, max: usize) -> Self {
        self.max_parallel = max.max(1);
        self
    }

    /// Called whenever an action starts (converging), ends, or is left
    /// waiting, so a status view can follow a long run; read
    /// [`Executor::statuses`] after the run for the rest.
    pub fn on_change(&mut self, f: impl FnMut(&ResourceStatus) + Send + 'static) {
        self.on_change = Some(Box::new(f));
    }

    /// Every known resource, sorted by kind and name.
    pub fn statuses(&self) -> Vec<ResourceStatus> {
        self.entries.iter().map(|(id, e)| e.status(id)).collect()
    }

    pub fn status(&self, id: &ResourceId) -> Option<ResourceStatus> {
        self.entries.get(id).map(|e| e.status(id))
    }

    /// When the earliest failed resource may be retried.
    pub fn next_retry(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| e.state == ResourceState::Failed)
            .filter_map(|e| e.next_retry)
            .min()
    }

    /// Forgets every backoff, e.g. when a new generation is accepted, so
    /// the next run tries failed resources at once.
    pub fn reset_backoff(&mut self) {
        for entry in self.entries.values_mut() {
            entry.next_retry = None;
        }
    }

    /// Runs `plan` (made from `desired` and a fresh observation) with
    /// `backends`, then sets the state of every resource: desired ones
    /// without an action are converged, undesired ones are forgotten once
    /// deleted. Actions in backoff are skipped (staying failed), and so is
    /// everything waiting for an action that is skipped or fails (left
    /// pending with `waiting for <id>`); nothing else is held up.
    pub async fn run(
        &mut self,
        plan: &Plan,
        desired: &[Desired],
        backends: &[Arc<dyn Backend>],
    ) -> RunReport {
        let started = Instant::now();
        let mut report = RunReport::default();
        let desired_by_id: HashMap<&ResourceId, &Desired> =
            desired.iter().map(|d| (&d.id, d)).collect();
        let mut schedule = Schedule::new(plan);
        for d in &plan.deferred {
            report.skipped.push((d.action.id.clone(), d.reason.clone()));
        }
        for (i, action) in plan.actions.iter().enumerate() {
            if let Some(entry) = self
                .entries
                .get(&action.id)
                .filter(|e| e.in_backoff(started))
            {
                report
                    .skipped
                    .push((action.id.clone(), entry.error.clone().unwrap_or_default()));
                let skipped = schedule.skip(i);
                self.left_waiting(plan, skipped, &mut report);
            }
        }

        let mut tasks = JoinSet::new();
        let mut running: HashMap<task::Id, usize> = HashMap::new();
        loop {
            while tasks.len() < self.max_parallel
                && let Some(i) = schedule.next_ready()
            {
                let action = &plan.actions[i];
                let entry = self
                    .entries
                    .get(&action.id)
                    .cloned()
                    .unwrap_or_else(|| Entry::pending(None));
                self.set(&action.id, entry.now(ResourceState::Converging));
                let backend = backends
                    .iter()
                    .find(|b| b.kinds().contains(&action.id.kind))
                    .cloned();
                let wanted = match action.op {
                    Op::Delete => None,
                    _ => desired_by_id.get(&action.id).map(|d| (*d).clone()),
                };
                // Of a restart the operator has to do, only the live part.
                let now = action.applicable_now();
                let kind = action.id.kind;
                let handle = tasks.spawn(async move {
                    match (now, backend) {
                        (None, _) => Ok(()),
                        (Some(now), Some(b)) => b.apply(&now, wanted.as_ref()).await,
                        (Some(_), None) => Err(BackendError::permanent(format!(
                            "no backend handles {kind}"
                        ))),
                    }
                });
                running.insert(handle.id(), i);
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let (task, result) = match joined {
                Ok((task, result)) => (task, result),
                Err(e) => (
                    e.id(),
                    Err(BackendError::new(format!("apply panicked: {e}"))),
                ),
            };
            let Some(i) = running.remove(&task) else {
                continue;
            };
            let id = &plan.actions[i].id;
            match result {
                Ok(()) => {
                    schedule.succeeded(i);
                    let restart_pending = plan.actions[i].op
                        == Op::Update {
                            restart: Restart::Pending,
                        };
                    self.set(id, Entry::converged(restart_pending));
                    report.applied.push(id.clone());
                }
                Err(e) => {
                    self.set(id, self.failure(id, &e));
                    report.failed.push((id.clone(), e.to_string()));
                    let skipped = schedule.failed(i);
                    self.left_waiting(plan, skipped, &mut report);
                }
            }
        }
        let stranded = schedule.stranded();
        self.left_waiting(plan, stranded, &mut report);
        settle(&mut self.entries, plan, desired);
        report.duration = started.elapsed();
        report.next_retry = self.next_retry();
        report
    }

    fn failure(&self, id: &ResourceId, e: &BackendError) -> Entry {
        let attempts = self
            .entries
            .get(id)
            .map_or(0, |e| e.attempts)
            .saturating_add(1);
        let delay = if e.retryable {
            self.backoff.delay(attempts)
        } else {
            self.backoff.cap
        };
        Entry {
            state: ResourceState::Failed,
            error: Some(e.to_string()),
            attempts,
            next_retry: Some(Instant::now() + delay),
            restart_pending: false,
        }
    }

    /// Marks skipped actions pending, each waiting for its blocker.
    fn left_waiting(&mut self, plan: &Plan, skipped: Vec<(usize, usize)>, report: &mut RunReport) {
        for (i, blocker) in skipped {
            let id = &plan.actions[i].id;
            let reason = format!("waiting for {}", plan.actions[blocker].id);
            let entry = self
                .entries
                .get(id)
                .cloned()
                .unwrap_or_else(|| Entry::pending(None));
            self.set(
                id,
                Entry {
                    error: Some(reason.clone()),
                    ..entry.now(ResourceState::Pending)
                },
            );
            report.skipped.push((id.clone(), reason));
        }
    }

    fn set(&mut self, id: &ResourceId, entry: Entry) {
        if let Some(f) = self.on_change.as_mut() {
            f(&entry.status(id));
        }
        self.entries.insert(id.clone(), entry);
    }
}
