//! Table-driven planner tests.

use std::collections::BTreeMap;

use super::*;

mod order;
mod render;

fn vm(name: &str) -> ResourceId {
    ResourceId::new(ResourceKind::Vm, name)
}

fn net(name: &str) -> ResourceId {
    ResourceId::new(ResourceKind::Network, name)
}

fn tap(name: &str) -> ResourceId {
    ResourceId::new(ResourceKind::Tap, name)
}

fn vol(name: &str) -> ResourceId {
    ResourceId::new(ResourceKind::Volume, name)
}

/// `update(pending) vm a [cpus machine] after [network lan]`
fn describe(action: &Action) -> String {
    let op = match action.op {
        Op::Create => "create".to_string(),
        Op::Delete => "delete".to_string(),
        Op::Update { restart } => format!("update({})", format!("{restart:?}").to_lowercase()),
    };
    let fields: Vec<&str> = action.changes.iter().map(|c| c.field.as_str()).collect();
    let mut s = format!("{op} {} [{}]", action.id, fields.join(" "));
    if !action.after.is_empty() {
        let after: Vec<String> = action.after.iter().map(ToString::to_string).collect();
        s.push_str(&format!(" after [{}]", after.join(", ")));
    }
    s
}

fn describe_all(plan: &Plan) -> Vec<String> {
    plan.actions.iter().map(describe).collect()
}

fn web(cpus: &str, machine: &str) -> Desired {
    Desired::new(vm("web"))
        .field("cpus", cpus)
        .restart_field("machine", machine)
}

fn web_seen(cpus: &str, machine: &str, running: bool) -> Observed {
    Observed::new(vm("web"))
        .field("cpus", cpus)
        .field("machine", machine)
        .running(running)
}

struct Case {
    name: &'static str,
    desired: Vec<Desired>,
    observed: Vec<Observed>,
    expect: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "empty",
            desired: vec![],
            observed: vec![],
            expect: &[],
        },
        Case {
            name: "create",
            desired: vec![web("2", "q35")],
            observed: vec![],
            expect: &["create vm web [cpus machine]"],
        },
        Case {
            name: "delete",
            desired: vec![],
            observed: vec![web_seen("2", "q35", true)],
            expect: &["delete vm web []"],
        },
        Case {
            name: "no-op; observed-only fields are ignored",
            desired: vec![web("2", "q35")],
            observed: vec![web_seen("2", "q35", true).field("mac", "52:54:00:00:00:01")],
            expect: &[],
        },
        Case {
            name: "live field on a running resource",
            desired: vec![web("4", "q35")],
            observed: vec![web_seen("2", "q35", true)],
            expect: &["update(none) vm web [cpus]"],
        },
        Case {
            name: "restart field on a running resource, no auto restart",
            desired: vec![web("4", "pc")],
            observed: vec![web_seen("2", "q35", true)],
            expect: &["update(pending) vm web [cpus machine]"],
        },
        Case {
            name: "restart field on a running resource, auto restart",
            desired: vec![web("2", "pc").auto_restart(true)],
            observed: vec![web_seen("2", "q35", true)],
            expect: &["update(auto) vm web [machine]"],
        },
        Case {
            name: "restart field on a stopped resource",
            desired: vec![web("2", "pc")],
            observed: vec![web_seen("2", "q35", false)],
            expect: &["update(none) vm web [machine]"],
        },
        Case {
            name: "field the system does not report",
            desired: vec![web("2", "q35").field("balloon", "on")],
            observed: vec![web_seen("2", "q35", true)],
            expect: &["update(none) vm web [balloon]"],
        },
        Case {
            name: "creates wait for their dependencies",
            desired: vec![
                Desired::new(vm("a"))
                    .depends_on(net("lan"))
                    .depends_on(vol("a-root")),
                Desired::new(vol("a-root")),
                Desired::new(net("lan")),
            ],
            observed: vec![],
            expect: &[
                "create network lan []",
                "create volume a-root []",
                "create vm a [] after [network lan, volume a-root]",
            ],
        },
        Case {
            name: "a dependency without an action is not waited for",
            desired: vec![
                Desired::new(vm("a")).depends_on(net("lan")),
                Desired::new(net("lan")),
            ],
            observed: vec![Observed::new(net("lan"))],
            expect: &["create vm a []"],
        },
        Case {
            name: "dependencies beat kind order",
            desired: vec![
                Desired::new(net("z")).depends_on(vm("a")),
                Desired::new(vm("a")),
            ],
            observed: vec![],
            expect: &["create vm a []", "create network z [] after [vm a]"],
        },
        Case {
            name: "deletes wait for the deletes and updates of their users",
            desired: vec![web("4", "q35")],
            observed: vec![
                Observed::new(net("old")),
                Observed::new(tap("old0")),
                Observed::new(vm("old"))
                    .depends_on(net("old"))
                    .depends_on(tap("old0")),
                web_seen("2", "q35", true).depends_on(net("old")),
            ],
            expect: &[
                "update(none) vm web [cpus]",
                "delete vm old []",
                "delete tap old0 [] after [vm old]",
                "delete network old [] after [vm old, vm web]",
            ],
        },
        Case {
            name: "independent deletes go by reverse kind",
            desired: vec![],
            observed: vec![
                Observed::new(net("n")),
                Observed::new(vm("v")),
                Observed::new(tap("t")),
            ],
            expect: &["delete vm v []", "delete tap t []", "delete network n []"],
        },
        Case {
            name: "volumes and pools are never deleted",
            desired: vec![],
            observed: vec![
                Observed::new(ResourceId::new(ResourceKind::Pool, "tank")),
                Observed::new(vol("d")),
                Observed::new(vm("v")).depends_on(vol("d")),
            ],
            expect: &["delete vm v []"],
        },
        Case {
            name: "a self dependency is ignored",
            desired: vec![Desired::new(vm("a")).depends_on(vm("a"))],
            observed: vec![],
            expect: &["create vm a []"],
        },
    ]
}

#[test]
fn table() {
    for case in cases() {
        let plan = plan(&case.desired, &case.observed);
        assert_eq!(describe_all(&plan), case.expect, "case: {}", case.name);
        assert!(plan.cycles.is_empty(), "case: {}", case.name);
        assert_eq!(
            plan.is_empty(),
            case.expect.is_empty(),
            "case: {}",
            case.name
        );
        assert_eq!(
            plan.exit_code(),
            if case.expect.is_empty() { 0 } else { 2 },
            "case: {}",
            case.name
        );
    }
}

#[test]
fn equal_input_in_any_order_gives_an_equal_plan() {
    for case in cases() {
        let mut desired = case.desired.clone();
        let mut observed = case.observed.clone();
        desired.reverse();
        observed.reverse();
        assert_eq!(
            plan(&desired, &observed),
            plan(&case.desired, &case.observed),
            "case: {}",
            case.name
        );
    }
}

#[test]
fn sorted_input_takes_the_merge_path_to_the_same_plan() {
    for case in cases() {
        let mut desired = case.desired.clone();
        let mut observed = case.observed.clone();
        desired.sort_by(|a, b| a.id.cmp(&b.id));
        observed.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(
            plan(&desired, &observed),
            plan(&case.desired, &case.observed),
            "case: {}",
            case.name
        );
        let unobserved = BTreeMap::from([(ResourceKind::Network, "down".to_string())]);
        desired.reverse();
        observed.reverse();
        assert_eq!(
            plan_with(&case.desired, &case.observed, &unobserved),
            plan_with(&desired, &observed, &unobserved),
            "case: {}",
            case.name
        );
    }
}

#[test]
fn duplicates_count_once() {
    let desired = vec![
        web("4", "q35"),
        web("8", "q35"),
        Desired::new(vm("new")),
        Desired::new(vm("new")),
    ];
    let observed = vec![
        web_seen("2", "q35", true),
        web_seen("2", "q35", true),
        Observed::new(vm("old")),
        Observed::new(vm("old")),
    ];
    let plan = plan(&desired, &observed);
    assert_eq!(
        describe_all(&plan),
        [
            "create vm new []",
            "update(none) vm web [cpus]",
            "delete vm old []"
        ]
    );
    assert_eq!(plan.actions[1].changes[0].to.as_deref(), Some("4"));
}

/// What a well-behaved backend leaves behind: the system as the next
/// observation would read it.
fn simulate(plan: &Plan, desired: &[Desired], observed: &[Observed]) -> Vec<Observed> {
    let mut system: BTreeMap<ResourceId, Observed> =
        observed.iter().map(|o| (o.id.clone(), o.clone())).collect();
    for action in &plan.actions {
        let Some(action) = action.applicable_now() else {
            continue;
        };
        match action.op {
            Op::Delete => {
                system.remove(&action.id);
            }
            Op::Create => {
                let d = desired.iter().find(|d| d.id == action.id).unwrap();
                let mut o = Observed::new(d.id.clone()).running(true);
                o.depends_on = d.depends_on.clone();
                system.insert(d.id.clone(), o);
            }
            Op::Update { .. } => {
                let d = desired.iter().find(|d| d.id == action.id).unwrap();
                system.get_mut(&d.id).unwrap().depends_on = d.depends_on.clone();
            }
        }
        if let Some(o) = system.get_mut(&action.id) {
            for change in &action.changes {
                o.fields
                    .insert(change.field.clone(), change.to.clone().unwrap());
            }
        }
    }
    system.into_values().collect()
}

#[test]
fn plan_after_apply_is_empty() {
    for case in cases() {
        let first = plan(&case.desired, &case.observed);
        let after = simulate(&first, &case.desired, &case.observed);
        let second = plan(&case.desired, &after);
        // Only a restart the operator has to do survives an apply, and
        // then with nothing left but the changes needing it.
        for action in &second.actions {
            assert_eq!(
                action.op,
                Op::Update {
                    restart: Restart::Pending
                },
                "case: {}",
                case.name
            );
            assert!(
                action.changes.iter().all(|c| !c.live),
                "case: {}",
                case.name
            );
            assert!(action.applicable_now().is_none(), "case: {}", case.name);
        }
        let pending = first.actions.iter().any(|a| {
            a.op == Op::Update {
                restart: Restart::Pending,
            }
        });
        assert_eq!(second.is_empty(), !pending, "case: {}", case.name);
        let third = plan(&case.desired, &simulate(&second, &case.desired, &after));
        assert_eq!(third, second, "case: {}", case.name);
    }
}
