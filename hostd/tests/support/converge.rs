//! One observe -> plan -> apply pass of a single backend, the way the
//! daemon's reconciler does it, for backend integration tests.

use horcrux_config::Config;
use horcrux_hostd::apply::Backend;
use horcrux_hostd::plan::{Plan, plan};

/// Observes and plans, without applying.
pub async fn plan_once(backend: &dyn Backend, config: &Config) -> Plan {
    let desired = backend.desired(config);
    let observed = backend.observe().await.expect("observe");
    plan(&desired, &observed)
}

/// Observes, plans and applies every action in order; returns the plan
/// and the errors of the actions that failed.
pub async fn apply_once(backend: &dyn Backend, config: &Config) -> (Plan, Vec<String>) {
    let desired = backend.desired(config);
    let observed = backend.observe().await.expect("observe");
    let plan = plan(&desired, &observed);
    let mut errors = Vec::new();
    for action in &plan.actions {
        let want = desired.iter().find(|d| d.id == action.id);
        if let Err(e) = backend.apply(action, want).await {
            errors.push(e.message);
        }
    }
    (plan, errors)
}
