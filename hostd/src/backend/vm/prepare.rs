//! What must be on disk before a VM's unit starts: its directories, its
//! UEFI variable store, its unit file, and its disks.

use std::path::Path;

use crate::apply::BackendError;
use crate::backend::naming::Layout;
use crate::backend::qemu::OVMF_VARS_TEMPLATE;
use crate::fsutil;

fn io_error(action: &str, path: &Path, e: &std::io::Error) -> BackendError {
    BackendError::new(format!("cannot {action} {}: {e}", path.display()))
}

/// The run dir (sockets, seed) and the state dir (UEFI variables). The
/// run dir is private: the serial console and QMP sockets inside it are
/// root's alone.
pub fn directories(layout: &Layout, name: &str) -> Result<(), BackendError> {
    use std::os::unix::fs::PermissionsExt as _;
    for dir in [layout.vm_run_dir(name), layout.vm_state_dir(name)] {
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, &e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error("set permissions of", &dir, &e))?;
    }
    Ok(())
}

/// Copies the pristine OVMF variable store once; an existing copy holds
/// the guest's boot entries and is never replaced.
pub fn ovmf_vars(vars: &Path) -> Result<(), BackendError> {
    if vars.exists() {
        return Ok(());
    }
    let template = Path::new(OVMF_VARS_TEMPLATE);
    let content = std::fs::read(template).map_err(|e| {
        BackendError::permanent(format!(
            "cannot read the UEFI variable template {} (is the `ovmf` package installed?): {e}",
            template.display()
        ))
    })?;
    fsutil::replace_file(vars, &content).map_err(|e| io_error("write", vars, &e))
}

/// Writes the unit file when its content differs; returns whether it did
/// (and systemd must reload).
pub fn write_unit(path: &Path, text: &str) -> Result<bool, BackendError> {
    fsutil::write_if_changed(path, text.as_bytes()).map_err(|e| io_error("write", path, &e))
}

/// Removes a unit file; returns whether there was one.
pub fn remove_unit(path: &Path) -> Result<bool, BackendError> {
    fsutil::remove_if_present(path).map_err(|e| io_error("remove", path, &e))
}

/// Removes the sockets and seed of a VM that is gone.
pub fn remove_run_dir(layout: &Layout, name: &str) -> Result<(), BackendError> {
    let dir = layout.vm_run_dir(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", &dir, &e)),
    }
}

/// Every disk's device or file exists. A VM is never started half-built:
/// while a volume is missing (the storage backend has not made it yet)
/// the VM waits, and says for what.
pub fn disks_ready<'a>(
    name: &str,
    disks: impl Iterator<Item = &'a str>,
) -> Result<(), BackendError> {
    for (index, disk) in disks.enumerate() {
        if !Path::new(disk).exists() {
            return Err(BackendError::new(format!(
                "VM {name} waits for disk {index}: {disk} does not exist yet"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_written_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("units/horcrux-vm-a.service");
        assert!(write_unit(&path, "one\n").unwrap());
        assert!(!write_unit(&path, "one\n").unwrap());
        assert!(write_unit(&path, "two\n").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert!(remove_unit(&path).unwrap());
        assert!(!remove_unit(&path).unwrap());
    }

    #[test]
    fn missing_disks_name_the_vm_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("vm-a-disk0.qcow2");
        std::fs::write(&present, b"").unwrap();
        let present = present.to_string_lossy().into_owned();
        assert!(disks_ready("a", [present.as_str()].into_iter()).is_ok());
        let err = disks_ready(
            "a",
            [present.as_str(), "/dev/zvol/tank/vm-a-disk1"].into_iter(),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "VM a waits for disk 1: /dev/zvol/tank/vm-a-disk1 does not exist yet"
        );
        assert!(err.retryable);
    }

    #[test]
    fn vm_directories_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("run"), dir.path().join("state"));
        directories(&layout, "web").unwrap();
        for d in [layout.vm_run_dir("web"), layout.vm_state_dir("web")] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
        remove_run_dir(&layout, "web").unwrap();
        assert!(!layout.vm_run_dir("web").exists());
        assert!(layout.vm_state_dir("web").exists());
    }
}
