//! Golden output of `horcrux plan`.

use std::collections::BTreeMap;

use super::*;

#[test]
fn render_golden() {
    let desired = vec![
        Desired::new(net("lan")).field("bridge", "br0"),
        Desired::new(vm("web-1"))
            .field("cpus", "4")
            .depends_on(net("lan")),
        Desired::new(vm("db"))
            .field("cpus", "2")
            .restart_field("machine", "pc")
            .field("name", "db main"),
    ];
    let observed = vec![
        Observed::new(vm("web-1")).field("cpus", "2").running(true),
        Observed::new(vm("db"))
            .field("cpus", "1")
            .field("machine", "q35")
            .running(true),
        Observed::new(net("old")),
    ];
    let expected = "\
+ network lan
! vm db (restart pending)
    cpus: 1 -> 2
    machine: q35 -> pc (needs restart)
    name: (unset) -> \"db main\"
~ vm web-1
    cpus: 2 -> 4
- network old

Plan: 1 to create, 1 to change, 1 to remove, 1 waiting for restart.
";
    assert_eq!(render_plan(&plan(&desired, &observed)), expected);
}

#[test]
fn render_golden_no_changes_cycles_and_unobserved() {
    assert_eq!(render_plan(&plan(&[], &[])), "No changes.\n");
    let desired = vec![
        Desired::new(vm("a")).depends_on(vm("b")),
        Desired::new(vm("b"))
            .depends_on(vm("a"))
            .auto_restart(true)
            .restart_field("machine", "pc"),
        Desired::new(net("lan")),
    ];
    let observed = vec![Observed::new(vm("b")).field("machine", "q35").running(true)];
    let unobserved = BTreeMap::from([(ResourceKind::Network, "permission denied".to_string())]);
    let expected = "\
+ vm a
! vm b (will restart)
    machine: q35 -> pc (needs restart)

Warning: dependency cycle vm a -> vm b -> vm a; vm a does not wait for vm b.
Warning: network could not be observed, nothing of it is planned: permission denied
Plan: 1 to create, 1 to change, 0 to remove, 0 waiting for restart.
";
    assert_eq!(
        render_plan(&plan_with(&desired, &observed, &unobserved)),
        expected
    );
    let expected = "\
Warning: network could not be observed, nothing of it is planned: permission denied
No changes for the kinds observed.
";
    assert_eq!(render_plan(&plan_with(&[], &[], &unobserved)), expected);
}
