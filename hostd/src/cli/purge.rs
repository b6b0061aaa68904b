//! `horcrux purge vm NAME`: deletes the disks and UEFI variables a
//! removed VM left behind. The only command that deletes VM data, so it
//! refuses while the VM is still wanted or running, and shows what it
//! would delete unless `--yes` is given.

use std::fmt::Write as _;
use std::path::Path;

use super::{Outcome, exit};
use crate::backend::naming::{self, Layout};
use crate::backend::storage::zfs::Zfs;
use crate::backend::vm::orphans;
use crate::errors::chain;

pub fn vm(name: &str, config_dir: &Path, layout: &Layout, yes: bool) -> Outcome {
    let fail =
        |message: String| Outcome::error(exit::INVALID, &format!("horcrux purge: {message}"));
    let config = match horcrux_config::load(config_dir).map(|c| c.into_valid()) {
        Ok(Ok(config)) => config,
        Ok(Err(_)) => {
            return fail(format!(
                "the config tree in {} is invalid, so whether VM {name} is still wanted is \
                 unknown; fix it first (`horcrux check`)",
                config_dir.display()
            ));
        }
        Err(e) => return fail(chain(&e)),
    };
    if let Some((vm_name, _)) = config.vms.iter().find(|(n, _)| n.as_str() == name) {
        return fail(format!(
            "VM {vm_name} is still defined (cluster/vms/{vm_name}.toml); remove its file first"
        ));
    }
    let unit = naming::unit_path(name);
    if unit.exists() || layout.qmp_socket(name).exists() {
        return fail(format!(
            "VM {name} still has a unit or a running QEMU ({}); wait until hostd has stopped \
             and removed it",
            unit.display()
        ));
    }
    let Some(orphan) = orphans::find(&config, layout)
        .into_iter()
        .find(|o| o.name == name)
    else {
        return Outcome::ok(format!("nothing left of VM {name} on this node\n"));
    };
    let mut out = String::new();
    if !yes {
        let _ = writeln!(out, "would delete, for VM {name}:");
        for path in &orphan.paths {
            let _ = writeln!(out, "  {}", path.display());
        }
        let _ = writeln!(out, "run again with --yes to delete them");
        return Outcome {
            stdout: out,
            stderr: String::new(),
            code: exit::INVALID,
        };
    }
    for path in &orphan.paths {
        if let Err(message) = delete(path) {
            let mut outcome = fail(message);
            outcome.stdout = out;
            return outcome;
        }
        let _ = writeln!(out, "deleted {}", path.display());
    }
    Outcome::ok(out)
}

/// Deletes a state dir, a disk file, or a zvol with its snapshots
/// (through `zfs destroy -r`: a zvol is a dataset, not a file; never
/// `-R`, so a clone of one of its snapshots makes it fail, saying which).
fn delete(path: &Path) -> Result<(), String> {
    if let Ok(dataset) = path.strip_prefix("/dev/zvol") {
        let dataset = dataset.to_string_lossy();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        return runtime
            .block_on(Zfs::new().destroy_volume(&dataset))
            .map_err(|e| chain(&e));
    }
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.map_err(|e| format!("cannot delete {}: {e}", path.display()))
}
