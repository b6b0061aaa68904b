//! Dependency order: which action waits for which, a deterministic
//! topological sort, cycle breaking and deferral of actions that wait for
//! something that could not be observed.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::{Action, Cycle, Deferred, Desired, Observed, Op, Plan, ResourceId, ResourceKind};

/// Turns unordered actions into a [`Plan`].
/// Each action comes with its desired resource (none for deletes).
pub(super) fn finish(
    mut planned: Vec<(Action, Option<&Desired>)>,
    observed: &[Observed],
    unobserved: &BTreeMap<ResourceKind, String>,
) -> Plan {
    planned.sort_by(|(a, _), (b, _)| priority(a, b));
    let (actions, desired): (Vec<Action>, Vec<Option<&Desired>>) = planned.into_iter().unzip();
    let deps = waits(&actions, &desired, observed, unobserved);
    let deferred = defer(&actions, &deps, &desired, unobserved);
    let (order, cycles) = sort(&deps, &deferred);

    let ids: Vec<ResourceId> = actions.iter().map(|a| a.id.clone()).collect();
    let mut slots: Vec<Option<Action>> = actions.into_iter().map(Some).collect();
    let mut take = |i: usize, dropped: &[(usize, usize)]| {
        let mut action = slots[i]
            .take()
            .unwrap_or_else(|| unreachable!("action {i} taken twice"));
        action.after = deps[i]
            .iter()
            .filter(|&&j| !dropped.contains(&(i, j)))
            .map(|&j| ids[j].clone())
            .collect();
        action.after.sort();
        action
    };
    let dropped: Vec<(usize, usize)> = cycles.iter().map(|(edge, _)| *edge).collect();
    let mut plan = Plan {
        actions: order.iter().map(|&i| take(i, &dropped)).collect(),
        unobserved: unobserved.clone(),
        deferred: Vec::new(),
        cycles: cycles
            .into_iter()
            .map(|(_, members)| Cycle {
                members: members.into_iter().map(|i| ids[i].clone()).collect(),
            })
            .collect(),
    };
    for (i, reason) in deferred.into_iter().enumerate() {
        if let Some(reason) = reason {
            plan.deferred.push(Deferred {
                action: take(i, &[]),
                reason,
            });
        }
    }
    plan
}

/// The order of independent actions: creates and updates by kind, then
/// name; then deletes by reverse kind, then name.
fn priority(a: &Action, b: &Action) -> Ordering {
    let delete_a = a.op == Op::Delete;
    let delete_b = b.op == Op::Delete;
    let kinds = if delete_a && delete_b {
        b.id.kind.cmp(&a.id.kind)
    } else {
        a.id.kind.cmp(&b.id.kind)
    };
    delete_a
        .cmp(&delete_b)
        .then(kinds)
        .then_with(|| a.id.name.cmp(&b.id.name))
}

/// For each action, the (sorted, distinct) actions it waits for: a create
/// or update waits for the creates and updates of what it depends on; a
/// delete waits for the deletes and updates of what uses it.
fn waits(
    actions: &[Action],
    desired: &[Option<&Desired>],
    observed: &[Observed],
    unobserved: &BTreeMap<ResourceKind, String>,
) -> Vec<Vec<usize>> {
    let index: HashMap<&ResourceId, usize> = actions
        .iter()
        .enumerate()
        .map(|(i, a)| (&a.id, i))
        .collect();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); actions.len()];
    for (i, action) in actions.iter().enumerate() {
        if action.op == Op::Delete {
            continue;
        }
        for dep in desired[i].map_or(&[][..], |d| &d.depends_on[..]) {
            if let Some(&j) = index.get(dep)
                && j != i
                && actions[j].op != Op::Delete
            {
                deps[i].push(j);
            }
        }
    }
    let deletes = actions.iter().any(|a| a.op == Op::Delete);
    let users = observed
        .iter()
        .filter(|o| !o.depends_on.is_empty() && !unobserved.contains_key(&o.id.kind));
    for user in users.take_while(|_| deletes) {
        let Some(&u) = index.get(&user.id) else {
            continue;
        };
        if actions[u].op == Op::Create {
            continue;
        }
        for used in &user.depends_on {
            if let Some(&j) = index.get(used)
                && j != u
                && actions[j].op == Op::Delete
            {
                deps[j].push(u);
            }
        }
    }
    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }
    deps
}

/// Which actions are held back, and why: creates and updates depending on
/// a resource of an unobserved kind, every delete while any kind is
/// unobserved, and (transitively) whatever waits for a held-back action.
fn defer(
    actions: &[Action],
    deps: &[Vec<usize>],
    desired: &[Option<&Desired>],
    unobserved: &BTreeMap<ResourceKind, String>,
) -> Vec<Option<String>> {
    let mut reasons: Vec<Option<String>> = vec![None; actions.len()];
    if unobserved.is_empty() {
        return reasons;
    }
    let mut queue = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let reason = if action.op == Op::Delete {
            let kinds: Vec<&str> = unobserved.keys().map(|k| k.as_str()).collect();
            Some(format!(
                "not removed while {} could not be observed",
                kinds.join(", ")
            ))
        } else {
            desired[i]
                .and_then(|d| {
                    d.depends_on
                        .iter()
                        .find(|dep| unobserved.contains_key(&dep.kind))
                })
                .map(|dep| format!("waiting for {dep} ({} could not be observed)", dep.kind))
        };
        if reason.is_some() {
            reasons[i] = reason;
            queue.push(i);
        }
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); actions.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &j in ds {
            dependents[j].push(i);
        }
    }
    while let Some(j) = queue.pop() {
        for &i in &dependents[j] {
            if reasons[i].is_none() {
                reasons[i] = Some(format!("waiting for {}", actions[j].id));
                queue.push(i);
            }
        }
    }
    reasons
}

/// The edge dropped to break a cycle (waiter, waited-for), and the cycle.
type Broken = ((usize, usize), Vec<usize>);

/// Kahn's algorithm over the actions not deferred, always emitting the
/// ready action of highest priority (lowest index). When every remaining
/// action waits, a cycle is found from the lowest remaining index and
/// broken by dropping the wait of its lowest member on the next member.
fn sort(deps: &[Vec<usize>], deferred: &[Option<String>]) -> (Vec<usize>, Vec<Broken>) {
    let n = deps.len();
    let live = |i: usize| deferred[i].is_none();
    let mut waiting: Vec<Vec<usize>> = deps
        .iter()
        .map(|d| d.iter().copied().filter(|&j| live(j)).collect())
        .collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in waiting.iter().enumerate() {
        for &j in ds {
            dependents[j].push(i);
        }
    }
    let mut indegree: Vec<usize> = waiting.iter().map(Vec::len).collect();
    let mut done = vec![false; n];
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n)
        .filter(|&i| live(i) && indegree[i] == 0)
        .map(Reverse)
        .collect();
    let total = (0..n).filter(|&i| live(i)).count();
    let (mut order, mut broken) = (Vec::with_capacity(total), Vec::new());
    while order.len() < total {
        let Some(Reverse(i)) = ready.pop() else {
            let start = (0..n)
                .find(|&i| live(i) && !done[i])
                .unwrap_or_else(|| unreachable!("stalled with nothing left"));
            let cycle = find_cycle(start, &waiting, &done);
            let at = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| **m)
                .map_or(0, |(pos, _)| pos);
            let mut members = cycle;
            members.rotate_left(at);
            let (waiter, waited) = (members[0], members[1 % members.len()]);
            waiting[waiter].retain(|&j| j != waited);
            indegree[waiter] -= 1;
            if indegree[waiter] == 0 {
                ready.push(Reverse(waiter));
            }
            broken.push(((waiter, waited), members));
            continue;
        };
        done[i] = true;
        order.push(i);
        for &k in &dependents[i] {
            if waiting[k].contains(&i) {
                indegree[k] -= 1;
                if indegree[k] == 0 {
                    ready.push(Reverse(k));
                }
            }
        }
    }
    (order, broken)
}

/// Follows the lowest pending wait from `start` until a node repeats; in a
/// stall every pending node waits for another, so one does.
fn find_cycle(start: usize, waiting: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    let mut path = vec![start];
    let mut seen_at: HashMap<usize, usize> = HashMap::from([(start, 0)]);
    let mut cur = start;
    loop {
        let next = waiting[cur]
            .iter()
            .copied()
            .find(|&j| !done[j])
            .unwrap_or(cur);
        if let Some(&pos) = seen_at.get(&next) {
            return path.split_off(pos);
        }
        seen_at.insert(next, path.len());
        path.push(next);
        cur = next;
    }
}
