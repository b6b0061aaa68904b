//! Dependency order, cycles and unobserved kinds.

use std::collections::BTreeMap;

use super::*;

#[test]
fn cycles_are_broken_deterministically() {
    let desired = vec![
        Desired::new(vm("c")).depends_on(vm("a")),
        Desired::new(vm("b")).depends_on(vm("a")),
        Desired::new(vm("a")).depends_on(vm("b")),
    ];
    let first = plan(&desired, &[]);
    assert_eq!(
        describe_all(&first),
        [
            "create vm a []",
            "create vm b [] after [vm a]",
            "create vm c [] after [vm a]"
        ]
    );
    assert_eq!(
        first.cycles,
        [Cycle {
            members: vec![vm("a"), vm("b")]
        }]
    );
    let mut reversed = desired.clone();
    reversed.reverse();
    assert_eq!(plan(&reversed, &[]), first);
}

#[test]
fn a_cycle_behind_a_cycle_is_broken_too() {
    // d waits for the a/b cycle and is itself on a d/e cycle.
    let desired = vec![
        Desired::new(vm("a")).depends_on(vm("b")),
        Desired::new(vm("b")).depends_on(vm("a")),
        Desired::new(vm("d"))
            .depends_on(vm("a"))
            .depends_on(vm("e")),
        Desired::new(vm("e")).depends_on(vm("d")),
    ];
    let plan = plan(&desired, &[]);
    assert_eq!(plan.actions.len(), 4);
    assert_eq!(plan.cycles.len(), 2);
    let position = |name: &str| plan.actions.iter().position(|a| a.id == vm(name)).unwrap();
    for action in &plan.actions {
        for dep in &action.after {
            assert!(
                position(&dep.name) < position(&action.id.name),
                "{}",
                describe(action)
            );
        }
    }
}

#[test]
fn unobserved_kinds_are_neither_created_nor_deleted() {
    let desired = vec![
        Desired::new(net("lan")),
        Desired::new(vm("a")).depends_on(net("lan")),
        Desired::new(vm("b")),
        Desired::new(vm("c")).depends_on(vm("a")),
    ];
    let observed = vec![Observed::new(vm("old")), Observed::new(net("stale"))];
    let unobserved = BTreeMap::from([(
        ResourceKind::Network,
        "netlink: permission denied".to_string(),
    )]);
    let plan = plan_with(&desired, &observed, &unobserved);
    assert_eq!(describe_all(&plan), ["create vm b []"]);
    let deferred: Vec<(String, &str)> = plan
        .deferred
        .iter()
        .map(|d| (describe(&d.action), d.reason.as_str()))
        .collect();
    assert_eq!(
        deferred,
        [
            (
                "create vm a []".to_string(),
                "waiting for network lan (network could not be observed)"
            ),
            (
                "create vm c [] after [vm a]".to_string(),
                "waiting for vm a"
            ),
            (
                "delete vm old []".to_string(),
                "not removed while network could not be observed"
            ),
        ]
    );
    assert!(!plan.is_complete());
    assert_eq!(plan.exit_code(), 1);
}

#[test]
fn pending_restart_applies_only_live_changes() {
    let plan = plan(&[web("4", "pc")], &[web_seen("2", "q35", true)]);
    let now = plan.actions[0].applicable_now().unwrap();
    assert_eq!(describe(&now), "update(none) vm web [cpus]");
    let plan = super::plan(&[web("2", "pc")], &[web_seen("2", "q35", true)]);
    assert_eq!(plan.actions[0].applicable_now(), None);
}
