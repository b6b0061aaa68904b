//! Scheduled snapshots: a task with its own clock, so a snapshot is taken
//! at the start of its slot (not at the next 30-second drift check) and a
//! long apply never delays one.
//!
//! Each VM's ZFS disks are snapshotted together in one `zfs snapshot`
//! (atomic per pool), with the guest's filesystems frozen when its agent
//! answers. After each snapshot, and after each config change, the
//! scheduled snapshots past `keep` are destroyed; snapshots hostd did not
//! take on a schedule are never touched.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::desired::Schedule;
use super::schedule::{current_slot, delay, is_due, next_slot, snapshot_name, to_prune};
use super::zfs::{SnapshotKind, Zfs, ZfsError, Zvol};
use crate::backend::naming::Layout;
use crate::backend::qemu::qga;
use crate::status::StatusHandle;

/// How long to wait before looking again after ZFS could not be read.
const RETRY: Duration = Duration::from_secs(30);

/// How long a snapshot may wait for the guest agent to answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(3);

/// The handle the daemon keeps: hands each generation's schedules over.
#[derive(Debug)]
pub struct Scheduler {
    schedules: watch::Sender<Vec<Schedule>>,
}

impl Scheduler {
    /// Starts the task; it ends when the handle is dropped.
    pub fn spawn(layout: Layout, status: StatusHandle) -> Scheduler {
        let (tx, rx) = watch::channel(Vec::new());
        tokio::spawn(run(rx, layout, status));
        Scheduler { schedules: tx }
    }

    /// The schedules of the current generation.
    pub fn set(&self, schedules: Vec<Schedule>) {
        self.schedules.send_if_modified(|current| {
            let changed = *current != schedules;
            *current = schedules;
            changed
        });
    }
}

async fn run(mut rx: watch::Receiver<Vec<Schedule>>, layout: Layout, status: StatusHandle) {
    thaw_leftovers(&layout).await;
    let zfs = Zfs::new();
    loop {
        let schedules = rx.borrow_and_update().clone();
        publish_schedules(&status, &schedules);
        let wake = if schedules.is_empty() {
            None
        } else {
            Some(match tick(&zfs, &layout, &status, &schedules).await {
                Ok(()) => next_wake(&schedules, SystemTime::now()),
                Err(e) => {
                    tracing::warn!(error = %crate::errors::chain(&e), "snapshot schedule: cannot read ZFS");
                    RETRY
                }
            })
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = sleep(wake) => {}
        }
    }
}

/// A hostd killed between freezing a guest and thawing it leaves the
/// guest's writes blocked (the agent has no timeout of its own): thaw
/// every VM whose agent answers, once, when hostd starts.
async fn thaw_leftovers(layout: &Layout) {
    let Ok(entries) = std::fs::read_dir(layout.run_dir.join("vm")) else {
        return;
    };
    let mut thaws = tokio::task::JoinSet::new();
    for entry in entries.flatten() {
        let vm = entry.file_name().to_string_lossy().into_owned();
        let socket = layout.qga_socket(&vm);
        if socket.exists() {
            thaws.spawn(async move { (vm, qga::thaw_leftover(&socket, AGENT_TIMEOUT).await) });
        }
    }
    while let Some(Ok((vm, result))) = thaws.join_next().await {
        match result {
            Ok(Some(thawed)) if thawed > 0 => {
                tracing::warn!(
                    vm,
                    thawed,
                    "thawed file systems left frozen by an interrupted snapshot"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(vm, error = %crate::errors::chain(&e), "cannot check the guest agent")
            }
        }
    }
}

async fn sleep(wake: Option<Duration>) {
    match wake {
        Some(after) => tokio::time::sleep(after).await,
        None => std::future::pending().await,
    }
}

/// Time until the earliest next slot, a little after it begins so the
/// clock has certainly crossed it.
fn next_wake(schedules: &[Schedule], now: SystemTime) -> Duration {
    schedules
        .iter()
        .map(|s| next_slot(s.every, now))
        .min()
        .and_then(|at| at.duration_since(now).ok())
        .unwrap_or(RETRY)
        + Duration::from_millis(5)
}

fn publish_schedules(status: &StatusHandle, schedules: &[Schedule]) {
    status.update(|s| {
        let mut runs = BTreeMap::new();
        for schedule in schedules {
            let mut run = s
                .snapshot_schedules
                .remove(&schedule.vm)
                .unwrap_or_default();
            run.every = humantime::format_duration(schedule.every).to_string();
            run.keep = schedule.keep;
            runs.insert(schedule.vm.clone(), run);
        }
        s.snapshot_schedules = runs;
    });
}

/// Takes the due snapshots and prunes past retention.
async fn tick(
    zfs: &Zfs,
    layout: &Layout,
    status: &StatusHandle,
    schedules: &[Schedule],
) -> Result<(), ZfsError> {
    if !Zfs::module_loaded() {
        return Ok(());
    }
    let mut zvols = zfs.zvols().await?;
    let by_dataset: BTreeMap<&str, &Zvol> = zvols.iter().map(|z| (z.dataset.as_str(), z)).collect();
    let mut taken = false;
    for schedule in schedules {
        // A disk not made yet: nothing to snapshot until it is.
        if !schedule
            .datasets
            .iter()
            .all(|d| by_dataset.contains_key(d.as_str()))
        {
            continue;
        }
        let newest = schedule
            .datasets
            .iter()
            .filter_map(|d| by_dataset.get(d.as_str()))
            .flat_map(|z| scheduled(z))
            .map(|(_, created)| UNIX_EPOCH + Duration::from_secs(created))
            .max();
        let now = SystemTime::now();
        if is_due(schedule.every, newest, now) {
            take(
                zfs,
                layout,
                status,
                schedule,
                current_slot(schedule.every, now),
            )
            .await;
            taken = true;
        }
    }
    // The snapshots just taken count towards `keep`: read them back.
    if taken {
        zvols = zfs.zvols().await?;
    }
    for schedule in schedules {
        for zvol in zvols
            .iter()
            .filter(|z| schedule.datasets.contains(&z.dataset))
        {
            prune(zfs, status, schedule, zvol).await;
        }
    }
    Ok(())
}

/// The scheduled snapshots hostd took of a zvol: (name, created).
fn scheduled(zvol: &Zvol) -> Vec<(String, u64)> {
    zvol.snapshots
        .iter()
        .filter(|s| s.kind == SnapshotKind::Scheduled)
        .filter(|s| super::schedule::parse_snapshot_name(&s.name).is_some())
        .map(|s| (s.name.clone(), s.created))
        .collect()
}

async fn take(
    zfs: &Zfs,
    layout: &Layout,
    status: &StatusHandle,
    schedule: &Schedule,
    slot: SystemTime,
) {
    let name = snapshot_name(slot);
    let (result, report) = qga::frozen_report(
        &layout.qga_socket(&schedule.vm),
        AGENT_TIMEOUT,
        zfs.snapshot(&schedule.datasets, &name, SnapshotKind::Scheduled),
    )
    .await;
    let late = delay(slot, SystemTime::now());
    let consistency = match report.consistency {
        qga::Consistency::Application => "application".to_string(),
        qga::Consistency::CrashOnly { .. } => "crash".to_string(),
    };
    // The snapshot is fine, but the guest may be stuck frozen: say so.
    let result = match (result, report.thaw_failed) {
        (Ok(()), Some(thaw)) => Err(format!("VM {} may still be frozen: {thaw}", schedule.vm)),
        (result, _) => result.map_err(|e| crate::errors::chain(&e)),
    };
    match &result {
        Ok(()) => {
            tracing::info!(vm = %schedule.vm, snapshot = %name, delay_ms = late.as_millis() as u64, %consistency, "scheduled snapshot taken")
        }
        Err(e) => {
            tracing::warn!(vm = %schedule.vm, snapshot = %name, error = %e, "scheduled snapshot failed")
        }
    }
    status.update(|s| {
        let run = s.snapshot_schedules.entry(schedule.vm.clone()).or_default();
        match result {
            Ok(()) => {
                run.last = Some(name);
                run.delay_seconds = Some(late.as_secs_f64());
                run.consistency = Some(consistency);
                run.taken += 1;
                run.error = None;
            }
            Err(e) => run.error = Some(e),
        }
    });
}

async fn prune(zfs: &Zfs, status: &StatusHandle, schedule: &Schedule, zvol: &Zvol) {
    let snapshots = scheduled(zvol);
    for name in to_prune(&snapshots, schedule.keep) {
        match zfs.destroy_snapshot(&zvol.dataset, name).await {
            Ok(()) => {
                tracing::info!(dataset = %zvol.dataset, snapshot = name, "pruned scheduled snapshot");
                status.update(|s| {
                    if let Some(run) = s.snapshot_schedules.get_mut(&schedule.vm) {
                        run.pruned += 1;
                    }
                });
            }
            // A clone's origin: kept while the clone lives, said once per tick.
            Err(e) => {
                tracing::warn!(dataset = %zvol.dataset, snapshot = name, error = %crate::errors::chain(&e), "cannot prune");
                status.update(|s| {
                    if let Some(run) = s.snapshot_schedules.get_mut(&schedule.vm) {
                        run.error = Some(crate::errors::chain(&e));
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_at_the_earliest_next_slot() {
        let schedule = |every| Schedule {
            vm: "a".into(),
            every: Duration::from_secs(every),
            keep: 1,
            datasets: vec!["tank/vm-a-disk0".into()],
        };
        let now = UNIX_EPOCH + Duration::from_secs(3600 * 1000 + 30);
        let wake = next_wake(&[schedule(3600), schedule(60)], now);
        assert_eq!(wake, Duration::from_secs(30) + Duration::from_millis(5));
    }
}
