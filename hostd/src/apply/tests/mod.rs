//! Executor tests against an in-memory backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::time::{Instant, timeout};

use super::*;

mod run;
mod state;
use crate::plan::{Op, Plan, ResourceId, Restart, plan};
use crate::status::model::{ResourceState, ResourceStatus};

fn vm(name: &str) -> ResourceId {
    ResourceId::new(ResourceKind::Vm, name)
}

fn net(name: &str) -> ResourceId {
    ResourceId::new(ResourceKind::Network, name)
}

/// A backend whose "system" is a map; it can fail on purpose.
#[derive(Default)]
struct Mem {
    kinds: &'static [ResourceKind],
    system: Mutex<BTreeMap<ResourceId, Observed>>,
    /// Failures left per resource (`u32::MAX`: always).
    failures: Mutex<HashMap<ResourceId, u32>>,
    observe_error: Mutex<Option<String>>,
    /// Every apply waits on this first, when set.
    barrier: Option<Arc<Barrier>>,
    /// `op id` of every apply call, in call order.
    calls: Mutex<Vec<String>>,
}

impl Mem {
    fn new(kinds: &'static [ResourceKind]) -> Self {
        Mem {
            kinds,
            ..Mem::default()
        }
    }

    fn fail(&self, id: ResourceId, times: u32) {
        self.failures.lock().unwrap().insert(id, times);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn put(&self, o: Observed) {
        self.system.lock().unwrap().insert(o.id.clone(), o);
    }
}

impl Backend for Mem {
    fn kinds(&self) -> &'static [ResourceKind] {
        self.kinds
    }

    fn desired(&self, _config: &horcrux_config::Config) -> Vec<Desired> {
        Vec::new()
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<Observed>, BackendError>> {
        Box::pin(async move {
            if let Some(e) = self.observe_error.lock().unwrap().clone() {
                return Err(BackendError::new(e));
            }
            Ok(self.system.lock().unwrap().values().cloned().collect())
        })
    }

    fn apply<'a>(
        &'a self,
        action: &'a Action,
        desired: Option<&'a Desired>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let op = match action.op {
                Op::Create => "create",
                Op::Update { .. } => "update",
                Op::Delete => "delete",
            };
            self.calls
                .lock()
                .unwrap()
                .push(format!("{op} {}", action.id));
            if let Some(barrier) = &self.barrier {
                barrier.wait().await;
            }
            if let Some(left) = self.failures.lock().unwrap().get_mut(&action.id)
                && *left > 0
            {
                *left = left.saturating_sub(u32::from(*left != u32::MAX));
                return Err(BackendError::new(format!("{} is broken", action.id.name)));
            }
            let mut system = self.system.lock().unwrap();
            match (action.op, desired) {
                (Op::Delete, _) => {
                    system.remove(&action.id);
                }
                (_, Some(d)) => {
                    let o = system
                        .entry(d.id.clone())
                        .or_insert_with(|| Observed::new(d.id.clone()).running(true));
                    for change in &action.changes {
                        o.fields
                            .insert(change.field.clone(), d.fields[&change.field].value.clone());
                    }
                    o.depends_on = d.depends_on.clone();
                }
                (_, None) => return Err(BackendError::permanent("no desired resource")),
            }
            Ok(())
        })
    }
}

/// Short enough for tests, long enough that a busy machine still runs the
/// next cycle well before a retry is due.
fn fast() -> Backoff {
    Backoff {
        base: Duration::from_millis(200),
        factor: 2,
        cap: Duration::from_millis(500),
    }
}

fn state_of(executor: &Executor, id: &ResourceId) -> (ResourceState, Option<String>, u32) {
    let s = executor.status(id).unwrap();
    (s.state, s.error, s.attempts)
}

async fn cycle(
    executor: &mut Executor,
    desired: &[Desired],
    backends: &[Arc<dyn Backend>],
) -> (Plan, RunReport) {
    let plan = observe_all(backends).await.plan(desired);
    let report = executor.run(&plan, desired, backends).await;
    (plan, report)
}
