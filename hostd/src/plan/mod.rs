//! The planner: a pure function from what the config wants and what the
//! system has to an ordered list of actions.
//!
//! Resources are described generically, as named fields with display
//! values, so every backend (VMs, networks, firewall, volumes) plugs in by
//! producing [`Desired`] and [`Observed`] values; the planner never knows
//! what a VM is.
//!
//! [`plan`] compares fields: a field present in the desired resource but
//! missing or different in the observed one is a change; fields only the
//! system reports (a MAC address it picked, a pid) are ignored, so backends
//! need not list every detail they can read back.

mod diff;
mod order;
mod render;
#[cfg(test)]
mod tests;

pub use diff::{plan, plan_with};
pub use render::render_plan;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Kinds of resource, in the order they are created: the node's own
/// management address first, networks and firewall
/// before the taps of the NICs that use them, pools before their volumes,
/// volumes before the VMs that use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Management,
    Network,
    Firewall,
    Tap,
    Pool,
    Volume,
    Vm,
    Container,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Management => "management",
            ResourceKind::Network => "network",
            ResourceKind::Firewall => "firewall",
            ResourceKind::Tap => "tap",
            ResourceKind::Pool => "pool",
            ResourceKind::Volume => "volume",
            ResourceKind::Vm => "vm",
            ResourceKind::Container => "container",
        }
    }
}

impl ResourceKind {
    /// Kinds that hold data: the planner never deletes one that is no
    /// longer desired. A removed VM's volumes are kept (shown as
    /// orphaned) until `horcrux purge`; pools are never exported.
    pub fn keeps_data(self) -> bool {
        matches!(self, ResourceKind::Pool | ResourceKind::Volume)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceId {
    pub kind: ResourceKind,
    pub name: String,
}

impl ResourceId {
    pub fn new(kind: ResourceKind, name: impl Into<String>) -> Self {
        ResourceId {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// One setting of a resource as the config wants it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Field {
    pub value: String,
    /// Whether a change can be applied to a running resource; `false` means
    /// it needs a restart (shown as `!`, never done by surprise).
    pub live: bool,
}

/// A resource as the config wants it on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub id: ResourceId,
    pub fields: BTreeMap<String, Field>,
    /// Resources that must exist before this one (and be removed after it).
    pub depends_on: Vec<ResourceId>,
    /// Whether a restart needed by a change may be done automatically
    /// (a VM with `restart = "auto"`).
    pub auto_restart: bool,
    /// What the backend needs to apply the resource (a unit's text, a
    /// seed's documents), keyed by name: neither compared nor shown.
    #[serde(skip)]
    pub payload: BTreeMap<String, String>,
}

/// A resource as read back from the real system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Observed {
    pub id: ResourceId,
    pub fields: BTreeMap<String, String>,
    /// Whether it is running now (restarts only matter for running ones).
    pub running: bool,
    /// Resources the system shows this one using (a VM's tap on a bridge,
    /// its zvol), so that removals are ordered: a resource is deleted only
    /// after the deletes and updates of everything using it. Empty when
    /// the backend cannot tell.
    pub depends_on: Vec<ResourceId>,
}

impl Desired {
    /// A desired resource with no fields, no dependencies and no automatic
    /// restart; fill it with [`Desired::field`] and friends.
    pub fn new(id: ResourceId) -> Self {
        Desired {
            id,
            fields: BTreeMap::new(),
            depends_on: Vec::new(),
            auto_restart: false,
            payload: BTreeMap::new(),
        }
    }

    /// Adds a field that can be changed while the resource runs.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(
            name.into(),
            Field {
                value: value.into(),
                live: true,
            },
        );
        self
    }

    /// Adds a field whose change needs a restart of a running resource.
    pub fn restart_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(
            name.into(),
            Field {
                value: value.into(),
                live: false,
            },
        );
        self
    }

    pub fn depends_on(mut self, id: ResourceId) -> Self {
        self.depends_on.push(id);
        self
    }

    pub fn auto_restart(mut self, auto: bool) -> Self {
        self.auto_restart = auto;
        self
    }

    /// Attaches data for [`crate::apply::Backend::apply`].
    pub fn payload(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.payload.insert(name.into(), value.into());
        self
    }
}

impl Observed {
    /// An observed resource with no fields that is not running.
    pub fn new(id: ResourceId) -> Self {
        Observed {
            id,
            fields: BTreeMap::new(),
            running: false,
            depends_on: Vec::new(),
        }
    }

    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    pub fn running(mut self, running: bool) -> Self {
        self.running = running;
        self
    }

    pub fn depends_on(mut self, id: ResourceId) -> Self {
        self.depends_on.push(id);
        self
    }
}

/// One field as it is and as it will be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    /// The observed value; `None` when the system does not report it (or
    /// the resource does not exist yet).
    pub from: Option<String>,
    /// The desired value; `None` for a resource being removed.
    pub to: Option<String>,
    /// Whether the change can be applied while the resource runs.
    pub live: bool,
}

/// What an update does about a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// Every change is live, or the resource is not running.
    None,
    /// A change needs a restart and the resource allows an automatic one.
    Auto,
    /// A change needs a restart the operator has to do: only the live
    /// changes are applied; the rest waits (shown with `!`).
    Pending,
}

/// The operation of an [`Action`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase", tag = "op")]
pub enum Op {
    Create,
    Update { restart: Restart },
    Delete,
}

impl Op {
    /// The terraform-like marker: `+`, `~`, `!` (needs a restart) or `-`.
    pub fn symbol(self) -> char {
        match self {
            Op::Create => '+',
            Op::Update {
                restart: Restart::None,
            } => '~',
            Op::Update { .. } => '!',
            Op::Delete => '-',
        }
    }
}

/// One step of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Action {
    pub id: ResourceId,
    pub op: Op,
    /// Field changes, sorted by field name: every desired field for a
    /// create, the differing ones for an update, none for a delete.
    pub changes: Vec<Change>,
    /// Other actions of the same plan that must succeed first, sorted.
    pub after: Vec<ResourceId>,
}

impl Action {
    /// The part of a [`Restart::Pending`] update that may be applied now:
    /// its live changes as a plain update, or `None` when there are none.
    /// Any other action is returned unchanged.
    pub fn applicable_now(&self) -> Option<Action> {
        if self.op
            != (Op::Update {
                restart: Restart::Pending,
            })
        {
            return Some(self.clone());
        }
        let changes: Vec<Change> = self.changes.iter().filter(|c| c.live).cloned().collect();
        if changes.is_empty() {
            return None;
        }
        Some(Action {
            id: self.id.clone(),
            op: Op::Update {
                restart: Restart::None,
            },
            changes,
            after: self.after.clone(),
        })
    }
}

/// A dependency cycle the planner broke to keep going.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cycle {
    /// The resources on the cycle, each waiting for the next and the last
    /// for the first, starting with the one whose waits were dropped.
    pub members: Vec<ResourceId>,
}

/// An action held back because something it waits for could not be
/// observed this cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deferred {
    pub action: Action,
    /// Why, for the plan output and the resource's status: `waiting for
    /// network lan (network could not be observed)`.
    pub reason: String,
}

/// The ordered actions that make the system match the config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// In an order that respects every `after`; independent actions are
    /// ordered creates/updates by kind then name, then deletes by reverse
    /// kind then name.
    pub actions: Vec<Action>,
    /// Kinds that could not be observed, with the error: nothing of theirs
    /// is planned (neither creates nor deletes) until they are observed.
    pub unobserved: BTreeMap<ResourceKind, String>,
    /// Actions of observed kinds held back by an unobserved dependency.
    pub deferred: Vec<Deferred>,
    /// Dependency cycles that were broken (their dropped waits are not in
    /// any `after`).
    pub cycles: Vec<Cycle>,
}

impl Plan {
    /// No action is pending: nothing to do, nothing held back, no restart
    /// waiting (a [`Restart::Pending`] update is an action, so a plan
    /// with one is not empty).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.deferred.is_empty()
    }

    /// Every kind was observed, so the plan covers everything.
    pub fn is_complete(&self) -> bool {
        self.unobserved.is_empty()
    }

    /// The exit code of `horcrux plan`: 1 when a kind could not be
    /// observed, 2 when changes are pending, 0 when nothing is.
    pub fn exit_code(&self) -> i32 {
        if !self.is_complete() {
            1
        } else if !self.is_empty() {
            2
        } else {
            0
        }
    }

    pub fn action(&self, id: &ResourceId) -> Option<&Action> {
        self.actions.iter().find(|a| &a.id == id)
    }
}
