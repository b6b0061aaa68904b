//! Terraform-like text for `horcrux plan`.

use std::fmt::Write;

use super::{Action, Op, Plan, Restart};

/// Renders a plan, one line per action (`+` create, `~` change, `!` change
/// needing a restart, `-` remove, `?` deferred), updates followed by their
/// field changes, then warnings and a summary line:
///
/// ```text
/// + network lan
/// ~ vm web-1
///     cpus: 2 -> 4
/// ! vm db (restart pending)
///     machine: q35 -> pc (needs restart)
/// - network old
///
/// Plan: 1 to create, 1 to change, 1 to remove, 1 waiting for restart.
/// ```
pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::new();
    for action in &plan.actions {
        render_action(&mut out, action, action.op.symbol(), None);
    }
    for deferred in &plan.deferred {
        render_action(&mut out, &deferred.action, '?', Some(&deferred.reason));
    }
    if !out.is_empty() {
        out.push('\n');
    }
    for cycle in &plan.cycles {
        let (Some(first), Some(next)) = (
            cycle.members.first(),
            cycle.members.get(1).or(cycle.members.first()),
        ) else {
            continue;
        };
        let names: Vec<String> = cycle.members.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "Warning: dependency cycle {} -> {first}; {first} does not wait for {next}.",
            names.join(" -> ")
        );
    }
    for (kind, error) in &plan.unobserved {
        let _ = writeln!(
            out,
            "Warning: {kind} could not be observed, nothing of it is planned: {error}"
        );
    }

    let count = |f: fn(Op) -> bool| plan.actions.iter().filter(|a| f(a.op)).count();
    let create = count(|op| op == Op::Create);
    let change = count(|op| {
        matches!(
            op,
            Op::Update {
                restart: Restart::None | Restart::Auto
            }
        )
    });
    let remove = count(|op| op == Op::Delete);
    let restart = count(|op| {
        op == Op::Update {
            restart: Restart::Pending,
        }
    });
    if plan.is_empty() {
        out.push_str(if plan.is_complete() {
            "No changes.\n"
        } else {
            "No changes for the kinds observed.\n"
        });
    } else {
        let _ = write!(
            out,
            "Plan: {create} to create, {change} to change, {remove} to remove, {restart} waiting for restart"
        );
        if !plan.deferred.is_empty() {
            let _ = write!(out, ", {} deferred", plan.deferred.len());
        }
        out.push_str(".\n");
    }
    out
}

fn render_action(out: &mut String, action: &Action, symbol: char, deferred: Option<&str>) {
    let _ = write!(out, "{symbol} {}", action.id);
    let restart = match action.op {
        Op::Update { restart } => restart,
        _ => Restart::None,
    };
    match (deferred, restart) {
        (Some(reason), _) => {
            let _ = write!(out, " (deferred: {reason})");
        }
        (None, Restart::Auto) => out.push_str(" (will restart)"),
        (None, Restart::Pending) => out.push_str(" (restart pending)"),
        (None, Restart::None) => {}
    }
    out.push('\n');
    if !matches!(action.op, Op::Update { .. }) {
        return;
    }
    for change in &action.changes {
        let from = change
            .from
            .as_deref()
            .map_or_else(|| "(unset)".to_string(), value);
        let to = change
            .to
            .as_deref()
            .map_or_else(|| "(unset)".to_string(), value);
        let _ = write!(out, "    {}: {from} -> {to}", change.field);
        if !change.live && restart != Restart::None {
            out.push_str(" (needs restart)");
        }
        out.push('\n');
    }
}

/// A value as shown: bare when it is plain, quoted and escaped when it is
/// empty or holds spaces or control characters, so one change stays one line.
fn value(v: &str) -> String {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}
