//! The status snapshot every view renders from.
//!
//! The daemon owns a [`StatusHandle`] and publishes a new immutable
//! [`Status`] whenever something changes; HTTP handlers take the latest
//! snapshot without blocking the daemon.

use std::collections::BTreeMap;
use std::sync::Arc;

use horcrux_config::Diagnostic;
use serde::Serialize;
use tokio::sync::watch;

use crate::backend::vm::orphans::OrphanedVm;
use crate::cluster::ClusterStatus;
use crate::generation::GenerationInfo;
use crate::plan::ResourceKind;

/// Convergence state of one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceState {
    Pending,
    Converging,
    Converged,
    Failed,
}

impl ResourceState {
    pub const ALL: [ResourceState; 4] = [
        ResourceState::Pending,
        ResourceState::Converging,
        ResourceState::Converged,
        ResourceState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Pending => "pending",
            ResourceState::Converging => "converging",
            ResourceState::Converged => "converged",
            ResourceState::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceStatus {
    pub kind: ResourceKind,
    pub name: String,
    pub state: ResourceState,
    /// The last error, for failed (or retrying) resources.
    pub error: Option<String>,
    /// A change that needs a restart is waiting for one.
    pub restart_pending: bool,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// The fields the config wants (`state`, `cpus`, `memory`, ...).
    pub desired: BTreeMap<String, String>,
    /// The fields as last read from the system, status-only ones included
    /// (a VM's `unit_state`, `qmp`, `since`).
    pub observed: BTreeMap<String, String>,
}

/// Apply durations, as a cumulative Prometheus histogram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApplyHistogram {
    /// Upper bounds in seconds (the `+Inf` bucket is `count`).
    pub bounds: Vec<f64>,
    /// Cumulative counts per bound.
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Default for ApplyHistogram {
    fn default() -> Self {
        let bounds = vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
        ApplyHistogram {
            buckets: vec![0; bounds.len()],
            bounds,
            sum_seconds: 0.0,
            count: 0,
        }
    }
}

impl ApplyHistogram {
    pub fn observe(&mut self, seconds: f64) {
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

/// Everything the status views show. Contains no secrets by construction:
/// key files are never read into it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub node: String,
    pub version: &'static str,
    /// RFC 3339 time hostd started.
    pub started_at: String,
    /// The generation being converged; `None` until a valid tree was seen.
    pub generation: Option<GenerationInfo>,
    /// Errors of the newest tree on disk, if it is invalid (the generation
    /// above keeps running meanwhile).
    pub config_errors: Vec<Diagnostic>,
    pub resources: Vec<ResourceStatus>,
    /// Disks and UEFI variables of VMs no longer placed on this node,
    /// kept until `horcrux purge vm NAME`.
    pub orphaned_vms: Vec<OrphanedVm>,
    /// Image imports in progress: volume -> percent done.
    pub imports: BTreeMap<String, f64>,
    /// The snapshot schedule of each VM that has one, by VM name.
    pub snapshot_schedules: BTreeMap<String, ScheduleRun>,
    /// Members, replication and conflicts; `None` without cluster.toml.
    pub cluster: Option<ClusterStatus>,
    /// Whether the first full observe + plan has completed.
    pub ready: bool,
    /// Counters for /metrics.
    #[serde(skip)]
    pub counters: Counters,
}

/// How a VM's snapshot schedule last ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScheduleRun {
    /// `every` of the schedule, e.g. "1h".
    pub every: String,
    pub keep: usize,
    /// The newest scheduled snapshot taken by this hostd.
    pub last: Option<String>,
    /// How late that snapshot was, after its slot began.
    pub delay_seconds: Option<f64>,
    /// "application" (guest agent froze the filesystems) or "crash".
    pub consistency: Option<String>,
    /// Snapshots taken and pruned since hostd started.
    pub taken: u64,
    pub pruned: u64,
    /// The last failure, cleared by the next success.
    pub error: Option<String>,
}

/// A network as the status page and metrics show it.
#[derive(Clone, Copy, Debug)]
pub struct NetworkRow<'a> {
    pub network: &'a ResourceStatus,
    /// VM NICs that should be on its bridge now (running VMs).
    pub taps_wanted: usize,
    /// Of those, the ones the system shows on the bridge.
    pub taps_attached: usize,
}

impl ResourceStatus {
    /// Whether the system matches what the config wants of it.
    pub fn in_sync(&self) -> bool {
        self.desired
            .iter()
            .all(|(key, value)| self.observed.get(key) == Some(value))
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub generations_accepted: u64,
    pub config_rejections: u64,
    pub apply_runs: u64,
    /// Actions carried out per kind (a firewall re-applied after a hand
    /// edit, a bridge recreated), and actions that failed.
    pub actions_applied: BTreeMap<ResourceKind, u64>,
    pub actions_failed: BTreeMap<ResourceKind, u64>,
    pub apply_duration: ApplyHistogram,
}

impl Status {
    /// The resources of one kind, in name order.
    pub fn of_kind(&self, kind: ResourceKind) -> Vec<&ResourceStatus> {
        self.resources.iter().filter(|r| r.kind == kind).collect()
    }

    /// The VM resources, in name order.
    pub fn vms(&self) -> Vec<&ResourceStatus> {
        self.of_kind(ResourceKind::Vm)
    }

    /// Each network with the taps on its bridge (by the taps' desired
    /// bridge), in name order.
    pub fn networks(&self) -> Vec<NetworkRow<'_>> {
        let taps = self.of_kind(ResourceKind::Tap);
        self.of_kind(ResourceKind::Network)
            .into_iter()
            .map(|network| {
                let bridge = network.desired.get("bridge");
                let on_bridge = |tap: &&&ResourceStatus| tap.desired.get("bridge") == bridge;
                let taps_wanted = taps.iter().filter(on_bridge).count();
                let taps_attached = taps
                    .iter()
                    .filter(on_bridge)
                    .filter(|tap| bridge.is_some() && tap.observed.get("bridge") == bridge)
                    .count();
                NetworkRow {
                    network,
                    taps_wanted,
                    taps_attached,
                }
            })
            .collect()
    }

    /// The firewall resource, when this node has one.
    pub fn firewall(&self) -> Option<&ResourceStatus> {
        self.of_kind(ResourceKind::Firewall).into_iter().next()
    }

    pub fn new(node: String) -> Self {
        Status {
            node,
            version: env!("CARGO_PKG_VERSION"),
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            generation: None,
            config_errors: Vec::new(),
            resources: Vec::new(),
            orphaned_vms: Vec::new(),
            imports: BTreeMap::new(),
            snapshot_schedules: BTreeMap::new(),
            cluster: None,
            ready: false,
            counters: Counters::default(),
        }
    }

    /// The one-line summary for systemd's STATUS= and the page header.
    pub fn summary(&self) -> String {
        let generation = self
            .generation
            .as_ref()
            .map_or("none".to_string(), |g| g.id.to_string());
        let failed = self
            .resources
            .iter()
            .filter(|r| r.state == ResourceState::Failed)
            .count();
        let converged = self
            .resources
            .iter()
            .filter(|r| r.state == ResourceState::Converged)
            .count();
        let mut s = format!(
            "generation {generation}; {converged}/{} resources converged",
            self.resources.len()
        );
        if failed > 0 {
            s.push_str(&format!(", {failed} failed"));
        }
        if !self.config_errors.is_empty() {
            s.push_str(&format!(
                "; config invalid ({} errors)",
                self.config_errors.len()
            ));
        }
        s
    }
}

/// Shared access to the latest [`Status`].
#[derive(Clone, Debug)]
pub struct StatusHandle {
    tx: Arc<watch::Sender<Arc<Status>>>,
}

impl StatusHandle {
    pub fn new(initial: Status) -> Self {
        let (tx, _) = watch::channel(Arc::new(initial));
        StatusHandle { tx: Arc::new(tx) }
    }

    /// The latest snapshot; cheap, never blocks the writer for long.
    pub fn snapshot(&self) -> Arc<Status> {
        self.tx.borrow().clone()
    }

    /// Publishes a modified copy of the current status.
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        self.tx.send_modify(|current| f(Arc::make_mut(current)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut h = ApplyHistogram::default();
        h.observe(0.02);
        h.observe(3.0);
        assert_eq!(h.count, 2);
        assert_eq!(h.buckets[0], 0); // <= 0.01
        assert_eq!(h.buckets[1], 1); // <= 0.05
        assert_eq!(*h.buckets.last().unwrap(), 2); // <= 60
    }

    #[test]
    fn updates_are_seen_by_snapshots() {
        let handle = StatusHandle::new(Status::new("n1".into()));
        let before = handle.snapshot();
        handle.update(|s| s.ready = true);
        assert!(!before.ready);
        assert!(handle.snapshot().ready);
        assert!(
            handle
                .snapshot()
                .summary()
                .starts_with("generation none; 0/0")
        );
    }
}
