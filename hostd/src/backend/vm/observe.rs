//! Reading VMs back from the real system: unit files in the unit dir,
//! unit state from systemd, and the spec a running QEMU was started with
//! from its environment.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::{render::unit_digest, spec};
use crate::apply::BackendError;
use crate::backend::naming::{self, Layout};
use crate::backend::qemu::qmp::Qmp;
use crate::backend::systemd::{Systemd, UnitState};
use crate::plan::{Observed, ResourceId, ResourceKind};

/// How long observation waits for a VM's QMP answer.
const QMP_TIMEOUT: Duration = Duration::from_secs(2);

const UNIT_PREFIX: &str = "horcrux-vm-";
const UNIT_SUFFIX: &str = ".service";

/// The VM name of a unit name, for units hostd made.
fn vm_of_unit(unit: &str) -> Option<&str> {
    unit.strip_prefix(UNIT_PREFIX)?
        .strip_suffix(UNIT_SUFFIX)
        .filter(|name| !name.is_empty())
}

/// Every VM on this node: a unit file in `unit_dir` or a unit systemd
/// has loaded (a file deleted behind hostd's back still runs a VM).
pub async fn all(
    systemd: &Systemd,
    unit_dir: &Path,
    layout: &Layout,
) -> Result<Vec<Observed>, BackendError> {
    let mut names = BTreeSet::new();
    match std::fs::read_dir(unit_dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if let Some(name) = entry.file_name().to_str().and_then(vm_of_unit) {
                    names.insert(name.to_string());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(BackendError::new(format!(
                "cannot list {}: {e}",
                unit_dir.display()
            )));
        }
    }
    let loaded = systemd
        .units_matching(&format!("{UNIT_PREFIX}*{UNIT_SUFFIX}"))
        .await
        .map_err(|e| BackendError::new(crate::errors::chain(&e)))?;
    names.extend(
        loaded
            .iter()
            .filter_map(|u| vm_of_unit(u))
            .map(String::from),
    );
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(one(systemd, unit_dir, layout, &name).await?);
    }
    Ok(out)
}

async fn one(
    systemd: &Systemd,
    unit_dir: &Path,
    layout: &Layout,
    name: &str,
) -> Result<Observed, BackendError> {
    let unit = naming::unit_name(name);
    let state = systemd
        .unit_state(&unit)
        .await
        .map_err(|e| BackendError::new(crate::errors::chain(&e)))?;
    let text = std::fs::read_to_string(unit_dir.join(&unit)).ok();
    let running = state.is_running();
    let mut observed = Observed::new(ResourceId::new(ResourceKind::Vm, name))
        .running(running)
        .field("state", if running { "running" } else { "stopped" })
        .field(
            "unit",
            text.as_deref().map_or("absent".to_string(), unit_digest),
        )
        .field("unit_state", state.display());
    // What runs is what counts: the spec of the running process, and the
    // unit file's only while nothing runs.
    let spec = match (running, state.main_pid) {
        (true, Some(pid)) => std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|environ| spec::from_environ(&environ)),
        _ => text.as_deref().and_then(spec::from_unit_text),
    };
    for (field, value) in spec.unwrap_or_default() {
        // The QEMU of a running VM holds the taps of its NICs: they are
        // removed only after it stops.
        if running
            && let Some(index) = field.strip_prefix("nic").and_then(|i| i.parse().ok())
            && let Ok(tap) = naming::tap_name(name, index)
        {
            observed = observed.depends_on(ResourceId::new(ResourceKind::Tap, tap));
        }
        observed = observed.field(field, value);
    }
    if running {
        observed = with_runtime(observed, &state, layout, name).await;
    }
    Ok(observed)
}

/// Status-only fields of a running VM: when it started and what QEMU
/// says. Neither is desired, so neither ever causes an action.
async fn with_runtime(
    mut observed: Observed,
    state: &UnitState,
    layout: &Layout,
    name: &str,
) -> Observed {
    if let Some(since) = state.active_since_us {
        let at = UNIX_EPOCH + Duration::from_micros(since);
        observed = observed.field("since", humantime::format_rfc3339_seconds(at).to_string());
    }
    if let Some(pid) = state.main_pid {
        observed = observed.field("pid", pid.to_string());
    }
    let qmp = match Qmp::connect_timeout(&layout.qmp_socket(name), QMP_TIMEOUT).await {
        Ok(mut qmp) => qmp.query_status().await.map(|run| run.status),
        Err(e) => Err(e),
    };
    // Shown, never acted on: QEMU may be busy (a stop in progress holds
    // the one QMP connection) and the unit state is what decides.
    let qmp = qmp.unwrap_or_else(|e| format!("unreachable: {}", crate::errors::chain(&e)));
    observed.field("qmp", qmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_horcrux_vm_units_name_vms() {
        assert_eq!(vm_of_unit("horcrux-vm-web.service"), Some("web"));
        assert_eq!(vm_of_unit("horcrux-vm-a-b.service"), Some("a-b"));
        assert_eq!(vm_of_unit("horcrux-vm-.service"), None);
        assert_eq!(vm_of_unit("horcrux-hostd.service"), None);
        assert_eq!(vm_of_unit("horcrux-vm-web.socket"), None);
    }
}
